package kcl

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// BenchmarkDeliver is kcl's own cost per record, with no Kinesis call: 8
// shard readers deliver decoded pages of 10,000 records of 100 bytes
// through the channel to one consumer that acks each, as a user does. The
// throughput benchmark (bench/) sets it against the SDK's cost of reading
// the same records.
func BenchmarkDeliver(b *testing.B) {
	const shards, pageSize = 8, 10000
	c, err := New(Options{StreamName: "s", AWSConfig: &aws.Config{}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	c.out = make(chan Record, c.opts.BufferSize)
	keepDelivering(c)
	page := make([]types.Record, pageSize)
	now := time.Now()
	for i := range page {
		page[i] = types.Record{Data: make([]byte, 100), PartitionKey: aws.String(fmt.Sprint(i)),
			SequenceNumber: aws.String(fmt.Sprintf("%056d", i)), ApproximateArrivalTimestamp: &now}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	perShard := b.N/shards + 1
	cpu := cpuTime()
	b.ResetTimer()
	var wg sync.WaitGroup
	for sh := range shards {
		id := fmt.Sprintf("shardId-%012d", sh)
		h := newHeldLease(lease{shardID: id, checkpoint: checkpoint{seq: checkpointTrimHorizon}}, c.streams[0], id)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var skip checkpoint
			r := newShardReader(c.readerEnv(), h)
			for n := 0; n < perShard; n += pageSize {
				recs := page[:min(pageSize, perShard-n)]
				if !r.deliver(ctx, newPageRecords(r, recs, &skip)) {
					b.Error("deliver stopped")
					return
				}
			}
		}()
	}
	for range shards * perShard {
		r := <-c.out
		r.Ack()
	}
	wg.Wait()
	n := float64(shards * perShard)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/record")
	b.ReportMetric(float64((cpuTime()-cpu).Nanoseconds())/n, "cpu-ns/record")
}

// cpuTime is the CPU time (user and system) the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
