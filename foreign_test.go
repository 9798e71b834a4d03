package kcl

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestForeignWatch: which owners observe calls live, read after read (one
// read a second, LeaseDuration 3 s), and whether it is unsure yet.
func TestForeignWatch(t *testing.T) {
	snap := func(workers []string, leases ...lease) tableSnapshot {
		s := tableSnapshot{leases: leases, workers: map[string]workerBeat{}}
		for _, w := range workers {
			s.workers[w] = workerBeat{}
		}
		return s
	}
	l := func(key, owner string, counter int64) lease {
		return lease{shardID: key, owner: owner, counter: counter}
	}
	java := func(counters ...int64) []tableSnapshot {
		var out []tableSnapshot
		for _, c := range counters {
			out = append(out, snap(nil, l("a", "java", c)))
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		reads  []tableSnapshot
		live   []string // after the last read
		unsure bool
	}{
		{"a Java owner renewing twice", java(1, 2, 3), []string{"java"}, true},
		{"renewed once (an operator's reset): not live", java(1, 3), nil, true},
		{"a dead Java owner: its leases never move; sure once LeaseDuration passed", java(5, 5, 5, 5), nil, false},
		{"a Java owner that stopped renewing LeaseDuration ago", java(1, 2, 3, 3, 3, 3), nil, false},
		{"a Java owner still renewing after LeaseDuration", java(1, 2, 3, 3, 3, 4), []string{"java"}, false},
		{"a kcl worker: its heartbeat item is there", []tableSnapshot{
			snap([]string{"w2"}, l("a", "w2", 1)), snap([]string{"w2"}, l("a", "w2", 2)), snap([]string{"w2"}, l("a", "w2", 3)),
		}, nil, false},
		{"this worker", []tableSnapshot{
			snap(nil, l("a", "me", 1)), snap(nil, l("a", "me", 2)), snap(nil, l("a", "me", 3)),
		}, nil, false},
		{"the lease changed hands between the renewals", []tableSnapshot{
			snap(nil, l("a", "java", 1)), snap(nil, l("a", "java", 2)), snap(nil, l("a", "java2", 3)),
		}, nil, true},
		{"an older copy in between counts as no renewal, and is not remembered", java(3, 2, 3, 4), nil, false},
		{"renewals of two leases of one owner are counted per lease", []tableSnapshot{
			snap(nil, l("a", "java", 1), l("b", "java", 1)), snap(nil, l("a", "java", 2), l("b", "java", 1)), snap(nil, l("a", "java", 2), l("b", "java", 2)),
		}, nil, true},
		{"a lease of a stream this worker does not read", []tableSnapshot{
			snap(nil, l("theirs", "java", 1)), snap(nil, l("theirs", "java", 2)), snap(nil, l("theirs", "java", 3)),
		}, nil, false},
		{"a SHARD_END lease a Java worker left (read by nobody)", []tableSnapshot{
			snap(nil, lease{shardID: "a", owner: "java", counter: 1, checkpoint: checkpoint{seq: checkpointShardEnd}}),
		}, nil, false},
		{"a kcl worker's writes (its kclWriter mark), its heartbeat item missing a while", []tableSnapshot{
			snap(nil, lease{shardID: "a", owner: "w4", counter: 1, writer: writer{id: "w4", token: "t"}}),
			snap(nil, lease{shardID: "a", owner: "w4", counter: 2, writer: writer{id: "w4", token: "t"}}),
			snap(nil, lease{shardID: "a", owner: "w4", counter: 3, writer: writer{id: "w4", token: "t"}}),
		}, nil, true},
		{"a Java take keeps the mark of the kcl owner before: still counted", []tableSnapshot{
			snap(nil, lease{shardID: "a", owner: "java", counter: 1, writer: writer{id: "w4"}}),
			snap(nil, lease{shardID: "a", owner: "java", counter: 2, writer: writer{id: "w4"}}),
			snap(nil, lease{shardID: "a", owner: "java", counter: 3, writer: writer{id: "w4"}}),
		}, []string{"java"}, true},
		{"unowned", []tableSnapshot{
			snap(nil, l("a", "", 1)), snap(nil, l("a", "", 2)), snap(nil, l("a", "", 3)),
		}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var w foreignWatch
			t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			var live []string
			var unsure bool
			for i, s := range tc.reads {
				live, unsure = w.observe(s, "me", func(key string) bool { return key != "theirs" }, t0.Add(time.Duration(i)*time.Second), 3*time.Second)
			}
			assert.Equal(t, tc.live, live, "live")
			assert.Equal(t, tc.unsure, unsure, "unsure")
		})
	}
}

// javaRenewer renews, every 100 ms until stop is closed, each of keys
// owned by owner, as a Java KCL worker does: counter + 1, no heartbeat
// item. It closes done when it returns.
func javaRenewer(tbl *dynamoLeases, owner string, keys []string, stop, done chan struct{}) {
	defer close(done)
	ctx := context.Background()
	for {
		select {
		case <-stop:
			return
		case <-time.After(100 * time.Millisecond):
		}
		for _, id := range keys {
			if l, ok, err := tbl.read(ctx, id); err == nil && ok && l.owner == owner {
				_, _ = tbl.checkpoint(ctx, l, l.checkpoint, owner, writer{}) // a renewal
			}
		}
	}
}

// A kcl worker started while the Java KCL's workers still run (a rolling
// migration whose Java workers are stopping) takes no lease while they
// renew theirs, not even a free one (a Java taker would take it from kcl as
// expired, kcl renewing nothing while a shard is idle), with a warning
// naming them, and reads their shards once they stopped and their leases
// expired (issue 27, item 11). On the emulators.
func TestAKCLWorkerWaitsForTheJavaWorkersToStop(t *testing.T) {
	noLeak(t)
	ctx := context.Background()
	f := newFixture(t, emu.kinesisLocal, 3)
	tbl := &dynamoLeases{db: f.ddb, table: f.app}
	require.NoError(t, tbl.ensure(ctx))
	keys := []string{"shardId-000000000000", "shardId-000000000001"}
	for _, id := range append(keys, "shardId-000000000002") { // the third one free: a Java taker would take it too
		_, err := tbl.create(ctx, lease{shardID: id, checkpoint: checkpoint{seq: checkpointTrimHorizon}})
		require.NoError(t, err)
	}
	for _, id := range keys {
		l, _, err := tbl.read(ctx, id)
		require.NoError(t, err)
		_, err = tbl.take(ctx, l, writer{id: "java-worker-1"})
		require.NoError(t, err)
	}
	f.putN(20, 6, "")
	stop, done := make(chan struct{}), make(chan struct{})
	go javaRenewer(tbl, "java-worker-1", keys, stop, done)

	lines := &lineCounter{counts: map[string]int{"taking no lease until they stop": 0, "java-worker-1": 0}}
	opts := f.options()
	opts.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(testOutput{t}, lines), &slog.HandlerOptions{Level: slog.LevelInfo}))
	s := startConsumer(t, opts)
	s.quiet(2 * time.Second) // not even the free lease: a Java taker would take it as expired, kcl renewing nothing
	assert.Equal(t, 1, lines.get("taking no lease until they stop"), "the wait is logged once")
	assert.Positive(t, lines.get("java-worker-1"), "naming the Java worker")
	close(stop)
	<-done
	got := s.receive(20, 30*time.Second, ackAll)
	assert.Len(t, got, 20)
	require.NoError(t, s.stop(ackAll))
}

// A Java KCL worker started beside kcl's (it took a lease of theirs and
// renews it) ends the kcl worker that holds leases, with an error naming
// it: the two would read one shard at once (issue 27, item 11). On the
// emulators.
func TestAJavaWorkerStartedBesideKCLEndsIt(t *testing.T) {
	noLeak(t)
	ctx := context.Background()
	f := newFixture(t, emu.kinesisLocal, 2)
	f.putN(20, 4, "")
	s := startConsumer(t, f.options())
	s.receive(20, 30*time.Second, ackAll)

	tbl := &dynamoLeases{db: f.ddb, table: f.app}
	l, _, err := tbl.read(ctx, "shardId-000000000001")
	require.NoError(t, err)
	_, err = tbl.take(ctx, l, writer{id: "java-worker-1"}) // a Java take: steals it
	require.NoError(t, err)
	stop, done := make(chan struct{}), make(chan struct{})
	go javaRenewer(tbl, "java-worker-1", []string{"shardId-000000000001"}, stop, done)
	defer func() { close(stop); <-done }()

	err = s.ends(30 * time.Second)
	require.ErrorIs(t, err, errForeignWorkers)
	assert.Contains(t, err.Error(), "java-worker-1")
}
