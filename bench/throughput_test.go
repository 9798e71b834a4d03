// Package bench holds kcl's benchmarks. The throughput and memory ones
// need no emulator: they run against internal/replay, a Kinesis server fast
// enough not to be the bottleneck.
//
//	go test -run '^$' -bench . -benchtime 10x -count 3 ./bench/
//
// The lease-table cost command (cost_test.go) runs kcl consumers against
// dynalite and a stub Kinesis:
//
//	go test -run '^TestLeaseTableCost$' -v -timeout 0 ./bench/ -cost.shards 50,200,500 -cost.workers 4,20,40 -cost.window 60s
package bench

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/kclgo/kcl"
	"github.com/kclgo/kcl/internal/replay"
)

// The throughput benchmark's stream: 8 shards of records of one size,
// served in pages of 1 MB of data (at most 10,000 records, GetRecords' most).
const shards = 8

// sizes are the record sizes BenchmarkThroughput reads.
var sizes = []int{100, 1024, 5120}

// perShard is how many records of size bytes each shard holds: about 5 MB
// of data, served again and again.
func perShard(size int) int { return 5_000_000 / size }

// pageSize is how many records of size bytes one GetRecords answer holds.
func pageSize(size int) int { return min(10000, 1<<20/size) }

// round is how many records each side drains per round: 200 MB of data
// (2,000,000 records of 100 bytes), long enough that the page or so each
// reader fetches across a round's end (a cost that lands in the other side's
// round) is a small part of it.
func round(size int) int { return 200_000_000 / size }

// cpuTime is the CPU time (user and system) the process has used: the bench
// server's share included, the same for every benchmark.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func client(url string) *kinesis.Client {
	return kinesis.NewFromConfig(aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("bench", "bench", ""),
	}, func(o *kinesis.Options) { o.BaseEndpoint = aws.String(url) })
}

// usage is what the process used over one stretch of a benchmark.
type usage struct {
	wall, cpu       time.Duration
	mallocs, bytes  uint64
	records, rounds int
}

// measure runs drain once, from a fresh garbage collection so that no
// stretch inherits another's collection debt, and adds what it used to u.
func (u *usage) measure(drain func() int) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	cpu := cpuTime()
	start := time.Now()
	u.records += drain()
	u.wall += time.Since(start)
	u.cpu += cpuTime() - cpu
	runtime.ReadMemStats(&after)
	u.mallocs += after.Mallocs - before.Mallocs
	u.bytes += after.TotalAlloc - before.TotalAlloc
	u.rounds++
}

func (u *usage) perRecord(d time.Duration) float64 {
	return float64(d.Nanoseconds()) / float64(u.records)
}

// report reports u's figures, each named with prefix.
func (u *usage) report(b *testing.B, prefix string) {
	b.ReportMetric(float64(u.records)/u.wall.Seconds(), prefix+"records/s")
	b.ReportMetric(u.perRecord(u.wall), prefix+"ns/record")
	b.ReportMetric(u.perRecord(u.cpu), prefix+"cpu-ns/record")
	b.ReportMetric(float64(u.mallocs)/float64(u.records), prefix+"allocs/record")
	b.ReportMetric(float64(u.bytes)/float64(u.records), prefix+"B/record")
}

// BenchmarkThroughput reads endless shards (8 shards of about 5 MB of
// records, served again and again, in pages of 1 MB of data) at steady state
// two ways, in alternating rounds of 200 MB of data each, so that both see
// the same machine: the plainest aws-sdk-go-v2 loop (one goroutine per shard,
// GetShardIterator then GetRecords for ever, no per-record work), the limit;
// and one long-lived kcl.Consume, acking every record as a user would. While
// one drains, the other's readers wait on a full channel, and each round
// starts from a fresh garbage collection. It runs at records of 100 B, 1 KB
// and 5 KB, and reports both sides, the ratio of their rates over all rounds
// (kcl/raw) and the median of the rounds' ratios (kcl/raw-median), and logs
// how the ratios spread.
func BenchmarkThroughput(b *testing.B) {
	for _, size := range sizes {
		name := fmt.Sprintf("%dB", size)
		if size >= 1024 {
			name = fmt.Sprintf("%dKB", size/1024)
		}
		b.Run(name, func(b *testing.B) { throughput(b, size) })
	}
}

func throughput(b *testing.B, size int) {
	round := round(size)
	srv, err := replay.Start(shards, perShard(size), size, pageSize(size), true)
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	kc := client(srv.URL)
	ctx, cancel := context.WithCancel(context.Background())

	// The raw loop.
	pages := make(chan int) // records per page read, as the readers go
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel, deferred later
	for sh := range shards {
		wg.Add(1)
		go func() {
			defer wg.Done()
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
		}()
	}
	defer cancel()
	carry := 0 // read past the last round's count
	raw := func() int {
		n := carry
		for n < round {
			n += <-pages
		}
		carry = n - round
		return round
	}

	// kcl.
	c, err := kcl.New(kcl.Options{StreamName: "bench", Kinesis: kc, InitialPosition: kcl.TrimHorizon,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	kctx, stop := context.WithCancel(ctx)
	records := c.Consume(kctx)
	defer func() {
		stop()
		for range records {
		}
	}()
	consume := func() int {
		n := 0
		for n < round {
			r := <-records
			n += min(1, len(r.Data))
			r.Ack()
		}
		return n
	}

	raw() // warm up
	consume()
	runtime.GC()
	b.ResetTimer()
	var rawUse, kclUse usage
	var ratios []float64
	for range b.N {
		r, k := rawUse, kclUse
		rawUse.measure(raw)
		kclUse.measure(consume)
		ratios = append(ratios, (rawUse.wall-r.wall).Seconds()/(kclUse.wall-k.wall).Seconds())
	}
	b.StopTimer()
	if rawUse.records != b.N*round || kclUse.records != b.N*round {
		b.Fatalf("drained %d and %d records, want %d", rawUse.records, kclUse.records, b.N*round)
	}
	rawUse.report(b, "raw-")
	kclUse.report(b, "kcl-")
	b.ReportMetric(rawUse.wall.Seconds()/kclUse.wall.Seconds(), "kcl/raw")
	slices.Sort(ratios)
	q := func(f float64) float64 { return ratios[int(f*float64(len(ratios)-1))] }
	b.ReportMetric(q(0.5), "kcl/raw-median")
	b.Logf("kcl/raw over %d rounds: %.3f; by round: min %.3f, quartiles %.3f %.3f %.3f, max %.3f",
		b.N, rawUse.wall.Seconds()/kclUse.wall.Seconds(), q(0), q(0.25), q(0.5), q(0.75), q(1))
	b.ReportMetric(0, "ns/op")
}

// BenchmarkChannelFloor is the least any channel-per-record consumer costs
// on this machine: 8 goroutines sending round kcl.Record values through one
// buffered channel (kcl's default 128) to one receiver, with no other work.
func BenchmarkChannelFloor(b *testing.B) {
	var u usage
	for range b.N {
		u.measure(func() int {
			ch := make(chan kcl.Record, 128)
			var wg sync.WaitGroup
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range round(100) / 8 {
						ch <- kcl.Record{SequenceNumber: "1"}
					}
				}()
			}
			go func() { wg.Wait(); close(ch) }()
			n := 0
			for range ch {
				n++
			}
			return n
		})
	}
	u.report(b, "")
	b.ReportMetric(0, "ns/op")
}
