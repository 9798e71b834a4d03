// Package bench holds kcl's benchmarks that need no emulator: they run
// against internal/replay, a Kinesis server fast enough not to be the
// bottleneck.
//
//	go test -run '^$' -bench . -benchtime 5x ./bench/
package bench

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/kclgo/kcl"
	"github.com/kclgo/kcl/internal/replay"
)

const (
	shards   = 8
	perShard = 50000
	size     = 100
	total    = shards * perShard
)

func client(url string) *kinesis.Client {
	return kinesis.NewFromConfig(aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("bench", "bench", ""),
	}, func(o *kinesis.Options) { o.BaseEndpoint = aws.String(url) })
}

// measure runs drain b.N times and reports records per second and the
// allocations and bytes allocated per record.
func measure(b *testing.B, drain func() int) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	b.ResetTimer()
	records := 0
	for range b.N {
		records += drain()
	}
	b.StopTimer()
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	if records != b.N*total {
		b.Fatalf("drained %d records, want %d", records, b.N*total)
	}
	b.ReportMetric(float64(records)/elapsed.Seconds(), "records/s")
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(records), "ns/record")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(records), "allocs/record")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(records), "B/record")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkThroughput reads endless shards (8 x 50,000 records of 100 bytes,
// served again and again) at steady state, each op 400,000 records: first
// with the plainest aws-sdk-go-v2 loop (one goroutine per shard,
// GetShardIterator then GetRecords for ever, no per-record work), the limit;
// then with one long-lived kcl.Consume, acking every record as a user would.
func BenchmarkThroughput(b *testing.B) {
	srv, err := replay.Start(shards, perShard, size, 10000, true)
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	kc := client(srv.URL)

	b.Run("raw-GetRecords-loop", func(b *testing.B) {
		ctx, cancel := context.WithCancel(context.Background())
		pages := make(chan int) // records per page read, as the readers go
		var wg sync.WaitGroup
		for sh := range shards {
			wg.Go(func() {
				it, err := kc.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String("bench"),
					ShardId: aws.String(fmt.Sprintf("shardId-%012d", sh)), ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
				if err != nil {
					b.Error(err)
					return
				}
				iter := it.ShardIterator
				for ctx.Err() == nil {
					out, err := kc.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter, Limit: aws.Int32(10000)})
					if err != nil {
						return
					}
					n := 0
					for _, r := range out.Records {
						n += min(1, len(r.Data))
					}
					select {
					case pages <- n:
					case <-ctx.Done():
					}
					iter = out.NextShardIterator
				}
			})
		}
		carry := 0 // read past the last op's count
		drain := func() int {
			n := carry
			for n < total {
				n += <-pages
			}
			carry = n - total
			return total
		}
		drain() // warm up
		measure(b, drain)
		cancel()
		wg.Wait()
	})

	b.Run("kcl-Consume-Ack", func(b *testing.B) {
		c, err := kcl.New(kcl.Options{StreamName: "bench", Kinesis: kc, InitialPosition: kcl.TrimHorizon,
			Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		records := c.Consume(ctx)
		drain := func() int {
			n := 0
			for n < total {
				r := <-records
				n += min(1, len(r.Data))
				r.Ack()
			}
			return n
		}
		drain() // warm up
		measure(b, drain)
		cancel()
		for range records {
		}
	})
}

// BenchmarkChannelFloor is the least any channel-per-record consumer costs
// on this machine: 8 goroutines sending total kcl.Record values through one
// buffered channel (kcl's default 128) to one receiver, with no other work.
func BenchmarkChannelFloor(b *testing.B) {
	measure(b, func() int {
		ch := make(chan kcl.Record, 128)
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range total / 8 {
					ch <- kcl.Record{SequenceNumber: "1"}
				}
			})
		}
		go func() { wg.Wait(); close(ch) }()
		n := 0
		for range ch {
			n++
		}
		return n
	})
}
