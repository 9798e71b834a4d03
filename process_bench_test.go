package kcl

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kclgo/kcl/internal/kinesisfake"
)

// BenchmarkProcess measures what Concurrency buys with a slow handler: one
// shard, 2,000 records over 200 partition keys, a handler that sleeps 5ms.
// Each iteration runs Process at Concurrency 1, 4, 16 and 64 on an
// in-process Kinesis (kinesisfake) with leases in memory, so neither the
// emulators nor the network are measured. It reports, at each level N,
// records per second (rec/s-cN), the speed-up over Concurrency 1
// (xN-over-c01), and the share of the ideal rate, N handlers back to back
// for the time the handlers really took (sleeps overshoot 5ms):
// efficiency-cN, 1 meaning kcl added nothing.
//
//	go test -run '^$' -bench 'BenchmarkProcess$' -benchtime 1x .
func BenchmarkProcess(b *testing.B) {
	const records, keys = 2000, 200
	levels := []int{1, 4, 16, 64}
	rates := make([]float64, len(levels))
	efficiency := make([]float64, len(levels))
	for range b.N {
		for i, conc := range levels {
			rate, handlerSeconds := processRate(b, conc, records, keys)
			rates[i] += rate
			efficiency[i] += rate * handlerSeconds / float64(conc)
		}
	}
	base := rates[0] / float64(b.N)
	for i, conc := range levels {
		rate := rates[i] / float64(b.N)
		b.ReportMetric(rate, fmt.Sprintf("rec/s-c%02d", conc))
		b.ReportMetric(efficiency[i]/float64(b.N), fmt.Sprintf("efficiency-c%02d", conc))
		if i > 0 {
			b.ReportMetric(rate/base, fmt.Sprintf("x%02d-over-c01", conc))
		}
	}
}

// processRate runs Process over a fresh stream of records records until
// every one was handled, and returns records per second and the mean time
// a handler call took.
func processRate(b *testing.B, concurrency, records, keys int) (rate, handlerSeconds float64) {
	b.StopTimer()
	kin := kinesisfake.New(kinesisfake.Options{})
	kin.CreateStream("bench", 1)
	data := make([]byte, 100)
	for i := range records {
		if _, _, err := kin.PutRecord("bench", fmt.Sprintf("key-%d", i%keys), data); err != nil {
			b.Fatal(err)
		}
	}
	c, err := New(Options{
		StreamName:      "bench",
		Kinesis:         kin,
		InitialPosition: TrimHorizon,
		Concurrency:     concurrency,
		Logger:          discardLogger(),
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var handled, handlerNanos atomic.Int64
	all := make(chan struct{})
	returned := make(chan error, 1)
	b.StartTimer()
	start := time.Now()
	go func() {
		returned <- c.Process(ctx, func(context.Context, Record) error {
			t := time.Now()
			time.Sleep(5 * time.Millisecond)
			handlerNanos.Add(int64(time.Since(t)))
			if handled.Add(1) == int64(records) {
				close(all)
			}
			return nil
		})
	}()
	<-all
	elapsed := time.Since(start)
	b.StopTimer()
	cancel()
	if err := <-returned; err != nil {
		b.Fatal(err)
	}
	b.StartTimer()
	return float64(records) / elapsed.Seconds(), time.Duration(handlerNanos.Load() / int64(records)).Seconds()
}

// BenchmarkProcessOverhead measures what Process itself costs per record,
// against Consume and Ack: 100,000 records of 100 bytes over 200 keys on one
// shard of the in-process Kinesis, a handler that does nothing. Each
// iteration runs Consume (a loop that acks), then Process at Concurrency 1,
// 16 and 64, one after the other. It reports, for each, ns/record,
// cpu-ns/record (the process's CPU time over all threads: on a machine
// other jobs share, it moves less with their load) and allocs/record (the
// reading included in both, the same in both), and Process's rate as a
// share of Consume's, rate-cNN (issue 23, item 6: at least 0.8).
//
//	go test -run '^$' -bench BenchmarkProcessOverhead -benchtime 3x .
func BenchmarkProcessOverhead(b *testing.B) {
	const records, keys = 100000, 200
	modes := []int{0, 1, 16, 64} // 0: Consume
	total := make([]time.Duration, len(modes))
	cpu := make([]time.Duration, len(modes))
	allocs := make([]uint64, len(modes))
	for range b.N {
		for i, conc := range modes {
			r := overheadRun(b, conc, records, keys)
			total[i] += r.elapsed
			cpu[i] += r.cpu
			allocs[i] += r.allocs
		}
	}
	for i, conc := range modes {
		name := fmt.Sprintf("process-c%02d", conc)
		if conc == 0 {
			name = "consume"
		}
		b.ReportMetric(float64(total[i].Nanoseconds())/float64(b.N*records), "ns/record-"+name)
		b.ReportMetric(float64(cpu[i].Nanoseconds())/float64(b.N*records), "cpu-ns/record-"+name)
		b.ReportMetric(float64(allocs[i])/float64(b.N*records), "allocs/record-"+name)
		if conc > 0 {
			b.ReportMetric(float64(total[0])/float64(total[i]), fmt.Sprintf("rate-c%02d", conc))
		}
	}
}

// overheadResult is what one overheadRun measured, from its start until
// the last record was handled.
type overheadResult struct {
	elapsed time.Duration
	cpu     time.Duration // the whole process's
	allocs  uint64        // the whole process's
}

// overheadRun reads records records with Consume (concurrency 0) or
// Process, and measures it until the last was handled.
func overheadRun(b *testing.B, concurrency, records, keys int) overheadResult {
	b.StopTimer()
	defer b.StartTimer()
	kin := kinesisfake.New(kinesisfake.Options{})
	kin.CreateStream("bench", 1)
	data := make([]byte, 100)
	for i := range records {
		if _, _, err := kin.PutRecord("bench", fmt.Sprintf("key-%d", i%keys), data); err != nil {
			b.Fatal(err)
		}
	}
	c, err := New(Options{StreamName: "bench", Kinesis: kin, InitialPosition: TrimHorizon,
		Concurrency: max(1, concurrency), Logger: discardLogger()})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var handled atomic.Int64
	var r overheadResult
	var before, after runtime.MemStats
	runtime.GC() // not the set-up's garbage
	runtime.ReadMemStats(&before)
	b.StartTimer()
	start, cpuStart := time.Now(), cpuTime()
	done := func() {
		r.elapsed, r.cpu = time.Since(start), cpuTime()-cpuStart
		runtime.ReadMemStats(&after)
		r.allocs = after.Mallocs - before.Mallocs
		cancel()
	}
	if concurrency == 0 {
		for r := range c.Consume(ctx) {
			r.Ack()
			if handled.Add(1) == int64(records) {
				done()
			}
		}
		return r
	}
	err = c.Process(ctx, func(context.Context, Record) error {
		if handled.Add(1) == int64(records) {
			done()
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return r
}

// BenchmarkProcessBatch measures what a batch sink gains from ProcessBatch
// over Process at the same Concurrency: one shard, 2,000 records over 200
// keys, a sink that costs 5ms a call plus 20µs a record (a write of many
// records at once, as DynamoDB's BatchWriteItem or Firehose's
// PutRecordBatch). Process calls it with one record, ProcessBatch with up
// to BatchSize 100 (BatchWindow 10ms). It reports records per second of
// each at Concurrency 4 and 16, and their ratio.
//
//	go test -run '^$' -bench 'BenchmarkProcessBatch$' -benchtime 1x .
func BenchmarkProcessBatch(b *testing.B) {
	const records, keys = 2000, 200
	levels := []int{4, 16}
	per, batched := make([]float64, len(levels)), make([]float64, len(levels))
	for range b.N {
		for i, conc := range levels {
			per[i] += sinkRate(b, conc, 0, records, keys)
			batched[i] += sinkRate(b, conc, 100, records, keys)
		}
	}
	for i, conc := range levels {
		b.ReportMetric(per[i]/float64(b.N), fmt.Sprintf("rec/s-process-c%02d", conc))
		b.ReportMetric(batched[i]/float64(b.N), fmt.Sprintf("rec/s-batch-c%02d", conc))
		b.ReportMetric(batched[i]/per[i], fmt.Sprintf("x-batch-over-process-c%02d", conc))
	}
}

// sinkRate runs Process (batchSize 0) or ProcessBatch over a fresh stream
// of records records, with the batch sink's cost, until every record was
// handled, and returns records per second.
func sinkRate(b *testing.B, concurrency, batchSize, records, keys int) float64 {
	b.StopTimer()
	defer b.StartTimer()
	kin := kinesisfake.New(kinesisfake.Options{})
	kin.CreateStream("bench", 1)
	data := make([]byte, 100)
	for i := range records {
		if _, _, err := kin.PutRecord("bench", fmt.Sprintf("key-%d", i%keys), data); err != nil {
			b.Fatal(err)
		}
	}
	c, err := New(Options{StreamName: "bench", Kinesis: kin, InitialPosition: TrimHorizon,
		Concurrency: concurrency, BatchSize: batchSize, BatchWindow: 10 * time.Millisecond, Logger: discardLogger()})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var handled atomic.Int64
	var elapsed time.Duration // until the last record was handled
	var start time.Time
	sink := func(n int) {
		time.Sleep(5*time.Millisecond + time.Duration(n)*20*time.Microsecond)
		if handled.Add(int64(n)) == int64(records) {
			elapsed = time.Since(start)
			cancel()
		}
	}
	b.StartTimer()
	start = time.Now()
	if batchSize == 0 {
		err = c.Process(ctx, func(_ context.Context, _ Record) error { sink(1); return nil })
	} else {
		err = c.ProcessBatch(ctx, func(_ context.Context, recs []Record) error { sink(len(recs)); return nil })
	}
	if err != nil {
		b.Fatal(err)
	}
	return float64(records) / elapsed.Seconds()
}
