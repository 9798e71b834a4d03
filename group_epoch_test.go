package kcl

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// staleLeases answers one eventually consistent list with the group item as
// it is now and the other items as they were (DynamoDB's replicas are per
// partition: a Scan may be fresh for one item and stale for another).
type staleLeases struct {
	*memLeases
	armed atomic.Bool
	old   tableSnapshot
}

func (s *staleLeases) list(ctx context.Context, consistent bool) (tableSnapshot, error) {
	fresh, err := s.memLeases.list(ctx, consistent)
	if err != nil || consistent || !s.armed.CompareAndSwap(true, false) {
		return fresh, err
	}
	return tableSnapshot{leases: s.old.leases, workers: s.old.workers, group: fresh.group}, nil
}

// releasedLeaseTakenAfter returns how long after its release s5 was taken,
// and by whom.
func releasedLeaseTakenAfter(t *testing.T, stale bool) (time.Duration, string) {
	const ld = 300 * time.Millisecond
	ctx := context.Background()
	tbl := newMemLeases()
	ids := []string{"a", "b", "c", "d"}
	owners := []string{"a", "a", "b", "b", "c", "d"}
	for i, o := range owners {
		id := "s" + string(rune('0'+i))
		tbl.create(ctx, lease{shardID: id, checkpoint: checkpoint{seq: checkpointTrimHorizon}})
		l, _, _ := tbl.read(ctx, id)
		tbl.take(ctx, l, writer{id: o})
	}
	sc := &staleLeases{memLeases: tbl}
	g := newHandDrivenGroup(t, ld)
	for _, id := range ids {
		if id == "c" {
			g.add(sc, id)
		} else {
			g.add(tbl, id)
		}
	}
	for end := time.Now().Add(ld + ld/5); time.Now().Before(end); { // settle first: no claims from unsettled processes
		for _, id := range ids {
			g.beat(ctx, id)
		}
		time.Sleep(ld / 10)
	}
	for end := time.Now().Add(ld); time.Now().Before(end); {
		g.step(ctx, ids...)
	}
	for _, id := range ids {
		if n := len(g.cs[id].held.list()); n != map[string]int{"a": 2, "b": 2, "c": 1, "d": 1}[id] {
			snap, _ := tbl.list(ctx, true)
			t.Logf("%+v", snap.leases)
			t.Fatalf("%s holds %d", id, n)
		}
	}
	sc.old, _ = tbl.list(ctx, true)
	// d stops gracefully: releases s5, bumps, removes its heartbeat.
	l, _, _ := tbl.read(ctx, "s5")
	if _, err := tbl.checkpoint(ctx, l, l.checkpoint, "", writer{}); err != nil {
		t.Fatal(err)
	}
	tbl.bump(ctx)
	tbl.removeWorker(ctx, "d", -1)
	released := time.Now()
	for range 3 { // the scanners see it and publish
		g.step(ctx, "a", "b")
	}
	sc.armed.Store(stale)
	for time.Since(released) < 6*ld {
		g.step(ctx, "a", "b", "c")
		if l, _, _ := tbl.read(ctx, "s5"); l.owner != "" {
			return time.Since(released), l.owner
		}
	}
	t.Fatalf("s5 not taken within 6 LD")
	return 0, ""
}

// A worker that reads the table because the group's epoch moved must see
// what moved it: an eventually consistent Scan may return the group item
// fresh and the lease released stale, after which nothing moves the epoch
// again: the shard waits until some worker takes it as left free for
// LeaseDuration, or, without that net, for judgeInterval. The read is
// consistent.
func TestAnEpochChangeIsReadConsistently(t *testing.T) {
	const ld = 300 * time.Millisecond
	fresh, _ := releasedLeaseTakenAfter(t, false)
	stale, by := releasedLeaseTakenAfter(t, true)
	t.Logf("released lease taken after %.1f LD with fresh scans, %.1f LD after one mixed-stale scan, by %s", float64(fresh)/float64(ld), float64(stale)/float64(ld), by)
	// c, below its share, takes it on the read the epoch asked for; a
	// stale one leaves it to the net for leases left free for LeaseDuration,
	// which a worker at its share (a) takes.
	if by != "c" {
		t.Errorf("the released lease was taken by %s after %.1f LD, not by c on the read the epoch's move asked for", by, float64(stale)/float64(ld))
	}
	if stale > 2*ld+fresh {
		t.Errorf("one stale scan after the epoch moved leaves a released shard unread until judgeInterval")
	}
}
