package kcl

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
)

// BenchmarkPutToDelivery measures, one record at a time, the time from
// before PutRecord to the record arriving on the channel, and reports p50
// and p99 for polling at the default PollInterval, polling at its minimum 200ms, and
// enhanced fan-out, side by side on kinesis-local, without the race
// detector (./scripts/test would add it):
//
//	./scripts/setup && go test -run '^$' -bench PutToDelivery -benchtime 40x .
func BenchmarkPutToDelivery(b *testing.B) {
	for _, mode := range []struct {
		name string
		edit func(*Options, *fixture)
	}{
		{"polling-default-1s", func(o *Options, f *fixture) { o.PollInterval = 0 }},
		{"polling-200ms", func(o *Options, f *fixture) { o.PollInterval = 200 * time.Millisecond }},
		{"fanout", func(o *Options, f *fixture) { o.Kinesis, o.EnhancedFanOut = fanOutClient(), true }},
	} {
		b.Run(mode.name, func(b *testing.B) {
			f := newFixture(b, emu.kinesisLocal, 1)
			opts := f.options()
			opts.Logger = discardLogger()
			mode.edit(&opts, f)
			s := startConsumer(b, opts)
			put := func(i int) {
				_, err := f.kin.PutRecord(context.Background(), &kinesis.PutRecordInput{StreamName: &f.stream, PartitionKey: aws.String("k"), Data: []byte(strconv.Itoa(i))})
				if err != nil {
					b.Fatal(err)
				}
			}
			put(-1) // warm up: the shard is open and read once this arrives
			s.receive(1, time.Minute, ackAll)
			latencies := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				start := time.Now()
				put(i)
				r := s.receive(1, time.Minute, ackAll)[0]
				if string(r.Data) != strconv.Itoa(i) {
					b.Fatalf("got %q, want %d", r.Data, i)
				}
				latencies = append(latencies, time.Since(start))
			}
			b.StopTimer()
			slices.Sort(latencies)
			ms := func(q float64) float64 {
				return float64(latencies[min(len(latencies)-1, int(q*float64(len(latencies))))]) / float64(time.Millisecond)
			}
			b.ReportMetric(ms(0.50), "p50-ms")
			b.ReportMetric(ms(0.99), "p99-ms")
			b.ReportMetric(0, "ns/op")
			_ = s.stop(nil)
		})
	}
}
