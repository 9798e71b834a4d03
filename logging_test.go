package kcl

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// What kcl logs above Debug does not grow with the number of records, and
// no record payload is ever logged, at any level.
func TestLogsAreNotPerRecordAndCarryNoPayload(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 2)
	aggregates := f.putAggregates(3, 5, "SECRET-agg-")
	puts := f.putN(400, 8, "SECRET-")
	bad := aggregate([]userRecord{{partitionKey: "p", data: []byte("SECRET-inside")}})
	bad[len(bad)-1] ^= 0xff
	f.put(20, func(int) string { return "bad" }, func(int) string { return string(bad) })

	var info, debug bytes.Buffer
	opts := f.options()
	opts.Logger = slog.New(multiHandler{
		slog.NewTextHandler(&syncWriter{w: &info}, &slog.HandlerOptions{Level: slog.LevelInfo}),
		slog.NewTextHandler(&syncWriter{w: &debug}, &slog.HandlerOptions{Level: slog.LevelDebug}),
	})
	s := startConsumer(t, opts)
	got := s.receive(len(aggregates)+len(puts)+20, 30*time.Second, ackAll)
	last := map[string]string{}
	for _, r := range got {
		last[r.ShardID] = r.SequenceNumber
	}
	require.Eventually(t, func() bool { // checkpoints flushed, and logged if they log
		for shard, item := range f.leaseItems() {
			if str(item, attrCheckpoint) != last[shard] {
				return false
			}
		}
		return true
	}, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, s.stop(nil))

	lines := strings.Count(info.String(), "\n")
	assert.Less(t, lines, 40, "Info and above: lease and shard events only, not one per record:\n%s", info.String())
	assert.Equal(t, 1, strings.Count(info.String(), "malformed aggregated record"), "malformed records warn once per lease")
	for _, out := range []string{info.String(), debug.String()} {
		assert.NotContains(t, out, "SECRET")
	}
	for _, attr := range []string{"stream=", "worker=", "shard="} {
		assert.Contains(t, info.String(), attr, "stable attribute names")
	}
}

// multiHandler sends each record to every handler that takes its level.
type multiHandler []slog.Handler

func (m multiHandler) Enabled(ctx context.Context, l slog.Level) bool {
	for _, h := range m {
		if h.Enabled(ctx, l) {
			return true
		}
	}
	return false
}

func (m multiHandler) Handle(ctx context.Context, r slog.Record) error {
	for _, h := range m {
		if h.Enabled(ctx, r.Level) {
			_ = h.Handle(ctx, r.Clone())
		}
	}
	return nil
}

func (m multiHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	out := make(multiHandler, len(m))
	for i, h := range m {
		out[i] = h.WithAttrs(attrs)
	}
	return out
}

func (m multiHandler) WithGroup(name string) slog.Handler {
	out := make(multiHandler, len(m))
	for i, h := range m {
		out[i] = h.WithGroup(name)
	}
	return out
}
