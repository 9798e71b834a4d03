//go:build go1.25

package kcl

// Schedules a second hostile review (of f1f2f52 and e3adc25: fence rounds,
// live owners keeping their leases, old-stream leases replaced by those
// who may) found breaking kcl's guarantees, each built with
// schedule_test.go's harness. Each test fails on the code it was written
// against.

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kclgo/kcl/internal/kinesisfake"
)

// A single-stream table the Java KCL wrote (no kclStreamCreated on its
// leases) holds shardId-000000000000 at SHARD_END, still owned by the Java
// worker that ended it (the Java KCL keeps the owner on an ended lease
// until its cleanup deletes it). The stream is deleted and created again
// while the group is down, and kcl takes the table over.
//
//  1. w's start sync lists the new stream: its shardId-000000000000 is open,
//     so the lease's SHARD_END says it is the old stream's (oldIncarnation).
//  2. renewLeases may replace it only if it is free or w's own (mayRenew,
//     since e3adc25): it is the Java worker's, so it is left as it is, and
//     it counts as leased, so no lease is created for the shard.
//  3. The lease loop's replaceStale replaces only leases stamped with an
//     earlier creation (staleIncarnation): this one is unstamped. And a
//     SHARD_END lease is never readable, so it is never taken, and no
//     reader ever meets Kinesis refusing it (renewRefused).
//
// The new stream's only shard is never read: every record written to it
// is lost to the group, for good. (Before e3adc25 the sync replaced it.)
func TestReview2AnUnstampedEndedLeaseOfADeadOwnerIsReplaced(t *testing.T) {
	noLeak(t)
	synctest.Test(t, func(t *testing.T) {
		kin := kinesisfake.New(kinesisfake.Options{})
		kin.CreateStream("s", 1)
		require.NoError(t, kin.DeleteStream("s"))
		time.Sleep(time.Second)
		kin.CreateStream("s", 1)
		g := newSchedGroup(t, kin)
		old := lease{shardID: shard0, counter: 7, checkpoint: checkpoint{seq: checkpointShardEnd}}
		_, err := g.table.create(context.Background(), old)
		require.NoError(t, err)
		_, err = g.table.take(context.Background(), old, writer{id: "java-worker"})
		require.NoError(t, err)
		w := g.consume(g.newWorker("w", nil))
		ctx, stopProducing := context.WithCancel(context.Background())
		g.produce(ctx, "s", 4, 10*time.Millisecond)
		time.Sleep(5 * time.Second)
		stopProducing()
		time.Sleep(2 * time.Second)
		select {
		case <-w.done:
			t.Fatalf("the consumer stopped: %v", w.c.Err())
		default:
		}
		lost := g.undelivered("s")
		require.Empty(t, lost[:min(len(lost), 5)], "%d records of the new stream never delivered; the lease: %+v", len(lost), g.leaseOf(shard0))
		g.stop()
	})
}

// leaseOf returns the lease with key as the table holds it.
func (g *schedGroup) leaseOf(key string) lease {
	l, _, _ := g.table.read(context.Background(), key)
	return l
}
