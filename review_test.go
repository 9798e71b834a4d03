//go:build go1.25

package kcl

// Schedules a hostile review of the fixes of issue 21 found still breaking
// kcl's guarantees, each built in virtual time with schedule_test.go's
// harness. Each test fails on the code it was written against.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kclgo/kcl/internal/kinesisfake"
)

// takeWatch notes, for every take a worker's table applies, whether it took
// the lease from another worker that was still reading it with its pause
// gate open: a take from a live owner, which "No overlap between owners"
// rules out.
type takeWatch struct {
	g *schedGroup

	mu   sync.Mutex
	prev map[string]string // lease key -> owner just before a take of it
	bad  []string
}

// watch installs the watch on w's table.
func (tw *takeWatch) watch(w *schedWorker) {
	w.table.set(func(h *hookTable) {
		h.before = func(op, key string) error {
			if op == "take" {
				tw.mu.Lock()
				tw.prev[key] = tw.g.owner(key)
				tw.mu.Unlock()
			}
			return nil
		}
		h.after = func(op, key string, err error) {
			if op != "take" || err != nil {
				return
			}
			tw.mu.Lock()
			defer tw.mu.Unlock()
			prev := tw.prev[key]
			for _, o := range tw.g.workers {
				if o != w && o.c.opts.WorkerID == prev && o.c.held.has(key) && o.c.pause.check() {
					tw.bad = append(tw.bad, fmt.Sprintf("%s took %s from %s, which still read it with its gate open", w.name, key, prev))
				}
			}
		}
	})
}

func (tw *takeWatch) takes() []string {
	tw.mu.Lock()
	defer tw.mu.Unlock()
	return append([]string(nil), tw.bad...)
}

// A multi-stream group whose stream is deleted and created again: each
// worker switches to the new incarnation on its own, and its heartbeat
// names the streams it reads (kclStreams) only from its next beat, up to
// LeaseDuration/2 later. Meanwhile another worker that switched too sees
// the first one own leases of a stream its heartbeat says it does not read,
// counts those leases as unowned (assessment.judgeLease: "nobody reads the
// shard") and takes them, conditional only on owner and counter: from a
// live worker that reads them, with its gate open. Both deliver the shard
// until the owner's next pass finds the lease gone.
func TestReviewNoTakeFromALiveOwnerWhoseHeartbeatNamesTheOldIncarnation(t *testing.T) {
	noLeak(t)
	synctest.Test(t, func(t *testing.T) {
		kin := kinesisfake.New(kinesisfake.Options{})
		kin.CreateStream("s", 2)
		g := newSchedGroup(t, kin)
		edit := func(o *Options) {
			o.StreamName, o.Streams = "", []string{"s"}
			o.LeaseDuration = 10 * time.Second // beats every 5s, passes every second
		}
		tw := &takeWatch{g: g, prev: map[string]string{}}
		o := g.newWorker("o", edit)
		y := g.newWorker("y", edit)
		tw.watch(o)
		tw.watch(y)
		g.consume(o)
		g.consume(y)
		ctx, stopProducing := context.WithCancel(context.Background())
		g.produce(ctx, "s", 8, 5*time.Millisecond)
		time.Sleep(5 * time.Second)
		stopProducing()
		time.Sleep(time.Second)
		require.NoError(t, kin.DeleteStream("s"))
		time.Sleep(2 * time.Second)
		kin.CreateStream("s", 2)
		ctx, stopProducing = context.WithCancel(context.Background())
		g.produce(ctx, "s", 8, 5*time.Millisecond)
		time.Sleep(15 * time.Second)
		stopProducing()
		time.Sleep(time.Second)
		g.stop()
		require.Empty(t, tw.takes(), "takes from a live owner (records delivered by both: %d)", len(both(g.deliveries(), "o", "y")))
	})
}

// A single-stream worker whose reader finds its stream created again
// switches to the new incarnation and forgets the old one's leases,
// unwritten: the table still names it their owner, at the old stream's
// checkpoints. The shard sync that replaces them is asked for, but one
// throttled write fails it (the lease loop retries next cycle), and the next
// pass sees leases the table gives to this worker that it does not read:
// it takes them (an earlier run's, it thinks) and reads the old checkpoint
// on the new stream. Kinesis refuses the sequence number (InvalidArgument),
// the stream is the one it knows, and the error stops the consumer.
func TestReviewASwitchedWorkerDoesNotRetakeTheOldIncarnationsLeases(t *testing.T) {
	noLeak(t)
	synctest.Test(t, func(t *testing.T) {
		kin := kinesisfake.New(kinesisfake.Options{})
		kin.CreateStream("s", 1)
		g := newSchedGroup(t, kin)
		w := g.newWorker("w", nil)
		var mu sync.Mutex
		throttleReplace := 1
		w.table.set(func(h *hookTable) {
			h.before = func(op, key string) error {
				mu.Lock()
				defer mu.Unlock()
				if op == "replace" && throttleReplace > 0 {
					throttleReplace--
					return throttled()
				}
				return nil
			}
		})
		g.consume(w)
		ctx, stopProducing := context.WithCancel(context.Background())
		g.produce(ctx, "s", 8, 5*time.Millisecond)
		time.Sleep(2 * time.Second)
		stopProducing()
		time.Sleep(time.Second)
		require.NoError(t, kin.DeleteStream("s"))
		time.Sleep(2 * time.Second)
		kin.CreateStream("s", 1)
		ctx, stopProducing = context.WithCancel(context.Background())
		g.produce(ctx, "s", 8, 5*time.Millisecond)
		time.Sleep(3 * time.Second)
		stopProducing()
		time.Sleep(2 * time.Second)
		select {
		case <-w.done:
			t.Fatalf("the consumer stopped: %v", w.c.Err())
		default:
		}
		require.Empty(t, g.undelivered("s"), "records of the new stream never delivered")
	})
}

// The fence after a late heartbeat writes each held lease with the beat the
// writer knows then (writer.beat), and the gate reopens from the send time
// of the latest late beat (pauseGate.fenceAt). A beat confirmed while the
// fence runs moves fenceAt on, but not the beat the fence's writes already
// carry: the gate reopens for a deadline that the leases do not record.
//
// W's table is unreachable: its gate shuts and Y confirms W dead at n. W's
// beat n+1 gets through (late), but its lease writes and further beats are
// throttled, long enough for Y to see n+1 unchanged for LeaseDuration and
// confirm it too. Then W's fence writes the lease with n+1 while its beat
// n+2 is confirmed; the gate reopens until n+2's deadline. Y's next read of
// the table returns W's heartbeat at n+1 (an older item than the lease) and
// the lease as the fence left it, marked with n+1: the judgement at n+1
// frees it, and Y's take, conditional on the fenced counter, succeeds while
// W delivers the shard.
func TestReviewTheGateReopensOnlyForTheBeatTheFenceRecorded(t *testing.T) {
	noLeak(t)
	synctest.Test(t, func(t *testing.T) {
		kin := kinesisfake.New(kinesisfake.Options{})
		kin.CreateStream("s", 1)
		g := newSchedGroup(t, kin)
		ctx, stopProducing := context.WithCancel(context.Background())
		defer stopProducing()
		g.produce(ctx, "s", 4, 5*time.Millisecond)
		w := g.consume(g.newWorker("w", func(o *Options) { o.CheckpointInterval = time.Hour }))
		waitFor(t, 5*time.Second, "w takes the lease", func() bool { return g.owner(shard0) == "w" })

		y := g.newWorker("y", nil)
		var mu sync.Mutex
		seen := []int64{}  // w's heartbeat counters as y's consistent reads found them
		stale := int64(-1) // when set, y's reads of the whole table return w's heartbeat at this counter
		throttleTakes := true
		badTakes := 0
		y.table.set(func(h *hookTable) {
			h.onBeat = func(worker string, b workerBeat, ok bool) {
				mu.Lock()
				defer mu.Unlock()
				if worker == "w" && ok && (len(seen) == 0 || seen[len(seen)-1] != b.counter) {
					seen = append(seen, b.counter)
				}
			}
			h.onList = func(s *tableSnapshot) {
				mu.Lock()
				defer mu.Unlock()
				if b, ok := s.workers["w"]; ok && stale >= 0 {
					b.counter = stale
					s.workers["w"] = b
				}
			}
			h.before = func(op, key string) error {
				mu.Lock()
				defer mu.Unlock()
				if op == "take" && key == shard0 && throttleTakes {
					return throttled()
				}
				return nil
			}
			h.after = func(op, key string, err error) {
				if op == "take" && key == shard0 && err == nil && w.c.held.has(shard0) && w.c.pause.check() {
					mu.Lock()
					badTakes++
					mu.Unlock()
				}
			}
		})
		g.consume(y)
		time.Sleep(time.Second)
		require.Equal(t, "w", g.owner(shard0), "y took nothing from a live w")
		seenLen := func() int {
			mu.Lock()
			defer mu.Unlock()
			return len(seen)
		}
		confirmedBefore := seenLen()

		// A: w cut off; y confirms w dead at n.
		w.table.cutOff()
		waitFor(t, 5*time.Second, "y confirms w dead", func() bool { return seenLen() > confirmedBefore })
		require.True(t, w.c.pause.isShut(), "w's gate shut before anyone could judge it dead")
		n := w.c.beat.confirmed.Load()

		// B: w's beat n+1 gets through; its lease writes and later beats
		// do not, until y confirms n+1.
		var bmu sync.Mutex
		beats, phaseC, beatAgain := 0, false, false
		w.table.set(func(h *hookTable) {
			h.before = func(op, key string) error {
				bmu.Lock()
				c := phaseC
				bmu.Unlock()
				switch {
				case op == "heartbeat":
					bmu.Lock()
					defer bmu.Unlock()
					beats++
					if beats > 1 && !beatAgain {
						return throttled()
					}
				case op == "checkpoint" && key == shard0 && !c:
					return throttled()
				case op == "checkpoint" && key == shard0:
					// C: the fence's write, which carries n+1, lands once
					// w's next beat is confirmed.
					bmu.Lock()
					beatAgain = true
					bmu.Unlock()
					waitFor(t, 5*time.Second, "w's beat n+2", func() bool { return w.c.beat.confirmed.Load() > n+1 })
				}
				return nil
			}
		})
		waitFor(t, 5*time.Second, "w's late beat n+1", func() bool { return w.c.beat.confirmed.Load() == n+1 })
		mu.Lock()
		stale = n + 1
		mu.Unlock()
		waitFor(t, 5*time.Second, "y confirms w dead at n+1", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return seen[len(seen)-1] == n+1
		})
		bmu.Lock()
		phaseC = true
		bmu.Unlock()
		waitFor(t, 5*time.Second, "w fences its lease and reopens", func() bool {
			l, _, _ := g.table.read(context.Background(), shard0)
			return l.owner == "w" && l.ownerBeat() > n && w.c.pause.check()
		})
		l, _, _ := g.table.read(context.Background(), shard0)
		t.Logf("w reopened its gate with its lease marked %d (the late beats: %d, %d)", l.ownerBeat(), n+1, n+2)
		// D: y's takes get through.
		mu.Lock()
		throttleTakes = false
		mu.Unlock()
		time.Sleep(time.Second)
		stopProducing()
		g.stop()
		mu.Lock()
		defer mu.Unlock()
		require.Zero(t, badTakes, "y took w's lease while w's gate was open (w delivered %d records after y's first)", deliveredAfter(g.deliveries(), "w", "y"))
	})
}

// deliveredAfter returns how many records a delivered after b's first
// delivery.
func deliveredAfter(log []schedDelivery, a, b string) int {
	first, n := int64(-1), 0
	for _, d := range log {
		switch {
		case d.worker == b && first < 0:
			first = d.n
		case d.worker == a && first >= 0 && d.n > first:
			n++
		}
	}
	return n
}

// A lease's writer mark (kclWriter, kclOwnerBeat) is written by this
// version's takes and checkpoints only; a kcl worker of the version before
// it (a rolling upgrade) takes a lease with an update that sets owner and
// counter and leaves the mark as it was. The lease then names the old
// worker as owner beside the heartbeat counter of the new worker that
// wrote it last. Heartbeat counters start at the time in microseconds, so a
// worker started later counts higher: once the old worker dies, its
// heartbeat expires at a counter below the mark, the mark says the lease
// was written after a later beat than the one judged dead
// (leaseitem.Liveness.Alive), and no worker ever takes the lease. Its
// heartbeat item stays too (a scanner removes only those of workers that
// own no lease).
func TestReviewALeaseTakenByAnEarlierKCLIsTakenOnceItsOwnerDied(t *testing.T) {
	noLeak(t)
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		kin := kinesisfake.New(kinesisfake.Options{})
		kin.CreateStream("s", 1)
		g := newSchedGroup(t, kin)

		// o, a worker of the earlier version, beats from the start.
		oBeat, oDone := make(chan struct{}), make(chan struct{})
		var oLast atomic.Int64
		oLast.Store(-1)
		go func() {
			defer close(oDone)
			for {
				n, err := g.table.heartbeat(ctx, "o", "o-token", false, oLast.Load(), nil)
				if err != nil {
					t.Errorf("o's heartbeat: %v", err)
					return
				}
				oLast.Store(n)
				select {
				case <-oBeat:
					return
				case <-time.After(500 * time.Millisecond):
				}
			}
		}()
		time.Sleep(time.Second)

		// n, a worker of this version, takes the lease, then crashes: its
		// table is cut off, so nothing of its shutdown reaches it.
		n := g.consume(g.newWorker("n", nil))
		waitFor(t, 5*time.Second, "n takes the lease", func() bool { return g.owner(shard0) == "n" })
		time.Sleep(time.Second)
		n.table.cutOff()
		n.cancel()
		<-n.done

		// o takes it as the earlier version does: owner and counter, the
		// mark left alone.
		g.table.mu.Lock()
		l := g.table.leases[shard0]
		l.owner, l.counter, l.ownerSwitches = "o", l.counter+1, l.ownerSwitches+1
		g.table.leases[shard0] = l
		g.table.mu.Unlock()
		t.Logf("lease taken by o at its heartbeat %d, marked with n's beat %d", oLast.Load(), l.ownerBeat())

		// o crashes; y, of this version, starts.
		time.Sleep(time.Second)
		close(oBeat)
		<-oDone
		y := g.consume(g.newWorker("y", nil))
		time.Sleep(10 * time.Second)
		require.Equal(t, "y", g.owner(shard0), "the lease of a dead worker, 10 LeaseDurations after it died")
		y.cancel()
		<-y.done
	})
}

// In a multi-stream table, the lease loop decides to take a lease of stream
// s (a dead worker's, say) and, while the take is in flight, a reader of
// this worker finds s deleted and created again and switches to the new
// incarnation: the old identifier leaves the stream set. The take then
// lands, and startReader looks the lease's stream up, finds none, and
// starts a reader on a nil *kstream: a nil dereference on the reader's
// goroutine, which crashes the program. The schedule runs in a child
// process, so that the crash fails this test alone.
func TestReviewNoPanicWhenATakeLandsAfterItsStreamWasCreatedAgain(t *testing.T) {
	if os.Getenv("KCL_REVIEW_CHILD") == "" {
		var env []string
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "KCL_EMULATORS_DIR=") && !strings.HasPrefix(kv, "KCL_REQUIRE_EMULATORS=") {
				env = append(env, kv)
			}
		}
		cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
		cmd.Env = append(env, "KCL_REVIEW_CHILD=1", "KCL_EMULATORS_DIR="+t.TempDir())
		out, err := cmd.CombinedOutput()
		if err != nil {
			lines := strings.Split(string(out), "\n")
			for i, l := range lines {
				if strings.HasPrefix(l, "panic:") {
					lines = lines[i:min(len(lines), i+24)]
					break
				}
			}
			t.Fatalf("the schedule failed or crashed its process (%v):\n%s", err, strings.Join(lines[max(0, len(lines)-40):], "\n"))
		}
		return
	}
	noLeak(t)
	synctest.Test(t, func(t *testing.T) {
		kin := kinesisfake.New(kinesisfake.Options{})
		kin.CreateStream("s", 2)
		g := newSchedGroup(t, kin)
		multi := func(o *Options) { o.StreamName, o.Streams = "", []string{"s"} }
		w := g.consume(g.newWorker("w", multi))
		waitFor(t, 5*time.Second, "w takes the leases", func() bool { return len(w.c.held.list()) == 2 })
		oldID := w.c.streamList()[0].id
		z := g.consume(g.newWorker("z", multi))
		waitFor(t, 5*time.Second, "z takes one", func() bool { return len(z.c.held.list()) == 1 && len(w.c.held.list()) == 1 })
		zKey := z.c.held.list()[0].shardID

		taking := make(chan struct{})
		var once sync.Once
		w.table.set(func(h *hookTable) {
			h.before = func(op, key string) error {
				if op == "take" && key == zKey {
					once.Do(func() { close(taking) })
					waitFor(t, 10*time.Second, "w switches to the new stream", func() bool { return w.c.streamList()[0].id != oldID })
				}
				return nil
			}
		})
		z.table.cutOff() // z crashes
		z.cancel()
		<-z.done
		<-taking // w decided to take z's lease
		require.NoError(t, kin.DeleteStream("s"))
		time.Sleep(2 * time.Second)
		kin.CreateStream("s", 2)
		time.Sleep(5 * time.Second)
		g.stop()
	})
}

// DescribeStreamSummary has a limit of 20 calls a second per account,
// shared with every other application of the account. Each shard sync
// while running describes its streams (renewStreams), and a shard's end
// syncs from its reader: resharding a stream of 64 shards to 128 ends 64
// shards at about the same moment, and so makes 64 calls at once (here 32
// to 64, with 32 calls), where the
// end of a shard says nothing about its stream being created again (the
// lease loop's periodic sync, and a reader's ResourceNotFound or refused
// sequence number, find that). Here: at most a sync's worth per worker.
func TestReviewAShardEndDoesNotDescribeTheStream(t *testing.T) {
	noLeak(t)
	synctest.Test(t, func(t *testing.T) {
		kin := kinesisfake.New(kinesisfake.Options{})
		kin.CreateStream("s", 32)
		g := newSchedGroup(t, kin)
		workers := []string{"a", "b"}
		for _, n := range workers {
			g.consume(g.newWorker(n, func(o *Options) {
				o.ShardSyncInterval, o.LeaseDuration, o.Logger = time.Hour, 10*time.Second, discardLogger()
			}))
		}
		time.Sleep(5 * time.Second)
		before := kin.Calls("DescribeStreamSummary")
		require.NoError(t, kin.UpdateShardCount("s", 64))
		time.Sleep(20 * time.Second)
		calls := kin.Calls("DescribeStreamSummary") - before
		g.stop()
		require.LessOrEqual(t, calls, int64(len(workers)), "DescribeStreamSummary calls in the 20s after resharding 32 shards to 64, 2 workers")
	})
}

// With MaxLeasesPerWorker, a worker takes a free lease beyond its fair
// share when no other worker that reads its stream has room; "room" is
// counted against the other's fair share, not against the cap, which that
// worker has too. During a rolling deploy that adds a stream, a worker that
// reads both streams can have a share above the cap: the other worker then
// takes the free lease of the common stream for it, and it, at its cap,
// never does. The shard stays unread for as long as the deploy lasts, though
// a worker with room reads its stream.
func TestReviewAFreeLeaseIsTakenByAWorkerBelowTheCap(t *testing.T) {
	reads := func(w, stream string) bool { return w == "b" || stream == "s1" } // a reads s1; b reads s1 and s2
	leases := []shareLease{
		{shardID: "s1:0", stream: "s1", owner: "a", heldByMe: true, ownedByMe: true, claimable: true},
		{shardID: "s1:1", stream: "s1"}, // free
		{shardID: "s2:0", stream: "s2", owner: "b", claimable: true},
		{shardID: "s2:1", stream: "s2", owner: "b", claimable: true},
		{shardID: "s2:2", stream: "s2", owner: "b", claimable: true},
		{shardID: "s2:3", stream: "s2"}, // free: only b reads s2, and b is at its cap
	}
	asB := make([]shareLease, len(leases)) // the same table as b sees it
	for i, l := range leases {
		l.heldByMe, l.ownedByMe = l.owner == "b", l.owner == "b"
		asB[i] = l
	}
	takeB, _ := planTakes("b", []string{"b", "a"}, reads, asB, 3)
	require.NotContains(t, takeB, "s1:1", "b is at its cap")
	take, _ := planTakes("a", []string{"a", "b"}, reads, leases, 3)
	require.NotContains(t, take, "s1:1", "a leaves it to b, which it thinks has room (b's cap is not in the table)")
	leases[1].longFree = true // a LeaseDuration later, still free
	take, _ = planTakes("a", []string{"a", "b"}, reads, leases, 3)
	require.Contains(t, take, "s1:1", "a, at 1 lease of a cap of 3, takes a lease left free for LeaseDuration")
}
