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

// TestReview12MemoryBoundWithLargePages is TestMemoryStaysFlatWithASlowConsumer
// with large pages and few unacked records: the lean decoder's pool keeps
// answer bodies of up to 32 MB (the SDK's keeps 64 KiB at most), which the
// documented bound does not count.
func TestReview12MemoryBoundWithLargePages(t *testing.T) {
	const (
		shards, perShard, size = 2, 2500, 10 << 10
		maxRecords, maxUnacked = 1000, 1
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
	base := heap()
	c, err := kcl.New(kcl.Options{StreamName: "bench", Kinesis: client(srv.URL), InitialPosition: kcl.TrimHorizon,
		MaxRecords: maxRecords, MaxUnackedPerShard: maxUnacked, BufferSize: 1, PollInterval: 10 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var samples []uint64
	stop := time.AfterFunc(4*time.Second, cancel)
	defer stop.Stop()
	next := time.Now().Add(200 * time.Millisecond)
	n := 0
	for r := range c.Consume(ctx) {
		n++
		r.Ack()
		if n%2 == 0 {
			time.Sleep(2 * time.Millisecond)
		}
		if time.Now().After(next) {
			h := heap()
			samples = append(samples, h-min(base, h))
			next = time.Now().Add(200 * time.Millisecond)
		}
	}
	require.NoError(t, c.Err())
	require.Greater(t, len(samples), 5)
	bound := uint64(shards * ((2*maxRecords+maxUnacked)*(size+512) + 3*maxRecords*size))
	t.Logf("read %d records; heap above the server's: median %d KiB, peak %d KiB, bound %d KiB", n, median(samples)>>10, slices.Max(samples)>>10, bound>>10)
	assert.LessOrEqual(t, slices.Max(samples), bound, "within the documented bound")
}
