//go:build go1.25

package kcl

// Schedules a second hostile review (of f1f2f52 and e3adc25: fence rounds,
// live owners keeping their leases, old-stream leases replaced by those
// who may) found breaking kcl's guarantees, each built with
// schedule_test.go's harness. Each test fails on the code it was written
// against.

import (
	"context"
	"fmt"
	"sync"
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
		g.produceAndRequireRead(t, w, "s", 5*time.Second, func() string { return fmt.Sprintf("the lease: %+v", g.leaseOf(shard0)) })
		g.stop()
	})
}

// leaseOf returns the lease with key as the table holds it.
func (g *schedGroup) leaseOf(key string) lease {
	l, _, _ := g.table.read(context.Background(), key)
	return l
}

// After a late heartbeat the gate reopens only once a fence round, begun
// after it, wrote every held lease with no later late beat meanwhile
// (pauseGate.fenced(gen), since f1f2f52). While the gate is shut every
// beat counts as late (beat: g.fence), so a beat confirmed during a round
// voids it. A round writes the held leases one after the other; when that
// takes longer than a heartbeat interval (many leases, or a throttled
// table whose writes the SDK retries), every round has a beat in it and
// the gate never reopens. The worker beats on, so nobody takes its leases:
// its shards stay unread for as long as writes stay that slow.
//
//  1. w reads 4 shards (LeaseDuration 1s: a beat every 500ms).
//  2. Its table is cut off for 1.5s: its gate shuts at its deadline.
//  3. The table comes back, each lease write taking 150ms (a round: 600ms).
//     Beats are confirmed again, each late (the fence is pending), each
//     bumping the round; every round ends after a later beat and leaves
//     the gate shut.
//
// Ten seconds on, nothing written since has been delivered.
func TestReview2AFenceSlowerThanAHeartbeatIntervalStillReopensTheGate(t *testing.T) {
	noLeak(t)
	synctest.Test(t, func(t *testing.T) {
		kin := kinesisfake.New(kinesisfake.Options{})
		kin.CreateStream("s", 4)
		g := newSchedGroup(t, kin)
		w := g.consume(g.newWorker("w", nil))
		ctx, stopProducing := context.WithCancel(context.Background())
		defer stopProducing()
		g.produce(ctx, "s", 8, 10*time.Millisecond)
		waitFor(t, 5*time.Second, "w reads the 4 shards", func() bool { return len(w.c.held.list()) == 4 })
		time.Sleep(time.Second)

		w.table.cutOff()
		time.Sleep(1500 * time.Millisecond)
		require.True(t, w.c.pause.isShut(), "the gate shut at the deadline")
		w.table.set(func(h *hookTable) {
			h.before = func(op, key string) error {
				if op == "checkpoint" {
					time.Sleep(150 * time.Millisecond)
				}
				return nil
			}
		})
		healed := time.Now()
		time.Sleep(10 * time.Second)
		stopProducing()
		time.Sleep(time.Second)
		shut := w.c.pause.isShut()
		g.stop()
		got := map[string]bool{}
		for _, d := range g.deliveries() {
			got[d.data] = true
		}
		after := 0
		for _, r := range kin.Records("s") {
			if !got[string(r.Data)] && r.Arrival.After(healed) {
				after++
			}
		}
		require.False(t, shut, "the gate is still shut 10s after the table came back (%d records written since not delivered)", after)
	})
}

// When a worker dies, each survivor takes its fair share of the dead
// worker's leases in one pass ("Each holds ⌊S/W⌋ or ⌈S/W⌉ leases, taken in
// one pass"). Since e3adc25 a lease whose owner expired counts as
// longFree whenever its own counter stood still for LeaseDuration
// (share: owner == "" && suspect), which every lease of a dead worker
// does by the time its heartbeat is confirmed expired; and a longFree lease
// is taken beyond the fair share (planTakes), meant for a lease left free
// because another worker's room was an illusion. So the first survivor to
// pass takes all of them, and the others then ask hand-offs back.
//
//  1. a, b and c read 9 shards, 3 each.
//  2. c crashes. Its 3 leases' counters, like its heartbeat, stand still.
//  3. The first of a and b to confirm c dead (here a: b's reads of the
//     table are slow for 3s) takes its share (to 5) and, the rest being
//     longFree, the rest too: 6.
//  4. The other finds itself at 3 of a share of 4.5 and asks a hand-off.
//
// A crash thus moves leases twice, and its shards pause once more for each
// hand-off (the owner stops fetching and waits for acks).
func TestReview2ACrashedWorkersLeasesAreSharedInOnePass(t *testing.T) {
	noLeak(t)
	synctest.Test(t, func(t *testing.T) {
		kin := kinesisfake.New(kinesisfake.Options{})
		kin.CreateStream("s", 9)
		g := newSchedGroup(t, kin)
		ctx, stopProducing := context.WithCancel(context.Background())
		defer stopProducing()
		g.produce(ctx, "s", 16, 10*time.Millisecond)
		var ws []*schedWorker
		for _, n := range []string{"a", "b", "c"} {
			ws = append(ws, g.consume(g.newWorker(n, nil)))
			time.Sleep(300 * time.Millisecond)
		}
		waitFor(t, 10*time.Second, "3 leases each", func() bool {
			return len(ws[0].c.held.list()) == 3 && len(ws[1].c.held.list()) == 3 && len(ws[2].c.held.list()) == 3
		})
		stopProducing() // idle shards: the leases' counters stand still
		time.Sleep(2 * time.Second)

		var mu sync.Mutex
		var moves []string
		crashed := time.Now().Add(time.Hour)
		for _, w := range ws[:2] {
			w.table.set(func(h *hookTable) {
				h.before = func(op, key string) error {
					mu.Lock()
					wait := time.Until(crashed.Add(3 * time.Second))
					mu.Unlock()
					if w.name == "b" && op == "list" && wait > 0 {
						time.Sleep(wait) // a confirms c dead first, as one of them always does
					}
					return nil
				}
				h.after = func(op, key string, err error) {
					if err == nil && (op == "take" || op == "hand-off" || op == "claim") {
						mu.Lock()
						moves = append(moves, fmt.Sprintf("%s %s %s", w.name, op, key))
						mu.Unlock()
					}
				}
			})
		}
		mu.Lock()
		crashed = time.Now()
		mu.Unlock()
		ws[2].table.cutOff() // c crashes
		ws[2].cancel()
		<-ws[2].done
		time.Sleep(5 * time.Second)
		counts := []int{len(ws[0].c.held.list()), len(ws[1].c.held.list())}
		stopProducing()
		g.stop()
		mu.Lock()
		defer mu.Unlock()
		require.ElementsMatch(t, []int{4, 5}, counts)
		for _, m := range moves {
			require.NotContains(t, m, "hand-off", "a hand-off after the crash; the moves: %v", moves)
		}
	})
}

// The shard sync replaces only the old stream's leases that are free or
// this worker's (mayRenew, since e3adc25); the lease loop replaces a dead
// owner's (replaceStale), but only a lease it judges at all: one that is
// not ended and whose parents are done (readableNow). A dead worker's
// lease of a child shard of the old stream names old parents; once the
// sync replaced the parent's lease (free, at SHARD_END) by the new
// stream's at TRIM_HORIZON, the parent is no longer done, so the child's
// lease is never judged again, never replaced, and blocks the new stream's
// shard of that ID for good.
//
//  1. d reads s (1 shard), which is split: shardId-000000000000 ends, and
//     d reads its children shardId-000000000001 and -2 (parent -0).
//  2. d crashes: its children's leases stay its own, stamped with s's
//     creation.
//  3. s is deleted and created again with 3 open shards, and w starts.
//     Its sync replaces the free SHARD_END lease of -0 by a new one at
//     TRIM_HORIZON, and leaves -1 and -2 to d.
//  4. d's heartbeat expires, but -1 and -2 wait for a parent (-0, now the
//     new stream's open shard) that will never end.
//
// The new stream's -1 and -2 are never read.
func TestReview2ADeadOwnersOldChildLeaseIsReplacedWhenItsParentWas(t *testing.T) {
	noLeak(t)
	synctest.Test(t, func(t *testing.T) {
		kin := kinesisfake.New(kinesisfake.Options{})
		kin.CreateStream("s", 1)
		g := newSchedGroup(t, kin)
		d := g.consume(g.newWorker("d", nil))
		ctx, stopProducing := context.WithCancel(context.Background())
		g.produce(ctx, "s", 8, 10*time.Millisecond)
		time.Sleep(2 * time.Second)
		require.NoError(t, kin.UpdateShardCount("s", 2))
		waitFor(t, 10*time.Second, "d reads the children", func() bool { return len(d.c.held.list()) == 2 })
		time.Sleep(time.Second)
		stopProducing()
		time.Sleep(time.Second)
		d.table.cutOff() // d crashes
		d.cancel()
		<-d.done
		t.Logf("the table: %v", g.owners("shardId"))

		require.NoError(t, kin.DeleteStream("s"))
		time.Sleep(2 * time.Second)
		kin.CreateStream("s", 3)
		w := g.consume(g.newWorker("w", nil))
		ctx, stopProducing = context.WithCancel(context.Background())
		g.produce(ctx, "s", 8, 10*time.Millisecond)
		time.Sleep(10 * time.Second)
		stopProducing()
		time.Sleep(2 * time.Second)
		select {
		case <-w.done:
			t.Fatalf("the consumer stopped: %v", w.c.Err())
		default:
		}
		lost := g.undelivered("s") // the old stream's records count as trimmed
		require.Empty(t, lost[:min(len(lost), 5)], "%d records of the new stream never delivered; the leases' owners: %v", len(lost), g.owners("shardId"))
		g.stop()
	})
}
