//go:build !race

package bench

import (
	"context"
	"log/slog"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kclgo/kcl"
	"github.com/kclgo/kcl/internal/replay"
)

// TestMemoryStaysFlatWithASlowConsumer reads a large backlog (4 shards of
// 20,000 records of 1 KiB) with a consumer far slower than the stream, and
// samples the heap: it stays flat and under the documented bound,
// shards x (2 x MaxRecords + MaxUnackedPerShard) x (record size + 512 bytes
// of bookkeeping), because a shard stops fetching while MaxUnackedPerShard of
// its records are unacked. Not built with -race: the race detector multiplies
// memory use, so scripts/test runs this package a second time without it.
func TestMemoryStaysFlatWithASlowConsumer(t *testing.T) {
	const (
		shards, perShard, size = 4, 20000, 1024
		maxRecords, maxUnacked = 1000, 500
	)
	srv, err := replay.Start(shards, perShard, size, maxRecords, false)
	require.NoError(t, err)
	defer srv.Close()
	heap := func() uint64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	base := heap() // the server's pre-encoded pages

	c, err := kcl.New(kcl.Options{StreamName: "bench", Kinesis: client(srv.URL), InitialPosition: kcl.TrimHorizon,
		MaxRecords: maxRecords, MaxUnackedPerShard: maxUnacked, PollInterval: 10 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	records := c.Consume(ctx)

	var samples []uint64
	stop := time.AfterFunc(4*time.Second, cancel)
	defer stop.Stop()
	next := time.Now().Add(200 * time.Millisecond)
	n := 0
	for r := range records {
		n++
		r.Ack()
		if n%50 == 0 {
			time.Sleep(5 * time.Millisecond) // about 10,000 records/s: far slower than the server
		}
		if time.Now().After(next) {
			h := heap()
			samples = append(samples, h-min(base, h))
			next = time.Now().Add(200 * time.Millisecond)
		}
	}
	require.NoError(t, c.Err())
	require.Greater(t, len(samples), 10)
	require.Less(t, n, shards*perShard, "the consumer was slower than the stream")

	bound := uint64(shards * (2*maxRecords + maxUnacked) * (size + 512))
	// Samples catch pages mid-decode now and then: growth shows in the
	// medians, the bound applies to every sample.
	third := len(samples) / 3
	early, late, peak := median(samples[1:third]), median(samples[2*third:]), slices.Max(samples)
	t.Logf("read %d of %d records; heap above the server's: median %d KiB in the first third, %d KiB in the last, peak %d KiB, bound %d KiB",
		n, shards*perShard, early>>10, late>>10, peak>>10, bound>>10)
	assert.LessOrEqual(t, peak, bound, "within the documented bound")
	assert.LessOrEqual(t, float64(late), 1.25*float64(early)+512<<10, "flat: no growth while reading")
}

func median(xs []uint64) uint64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
