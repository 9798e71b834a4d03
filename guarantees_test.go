//go:build go1.25

package kcl

// Regression tests for the schedules of issue 21 that broke kcl's
// guarantees, each built step by step in virtual time (schedule_test.go).

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/stretchr/testify/require"

	"github.com/kclgo/kcl/internal/kinesisfake"
)

const shard0 = "shardId-000000000000"

// waitFor polls cond every 10ms of virtual time, for at most limit.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(limit); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, limit)
		}
	}
}

// A take may succeed only if its owner's delivery deadline had passed when
// it was written, whatever mix of item ages the taker's reads returned.
//
// W is cut off from the table for longer than LeaseDuration: its gate
// shuts. Y confirms W dead with a consistent read of W's heartbeat (counter
// n), and its take is throttled. W comes back: its late beat (n+1) makes it
// fence its lease (a write that bumps the lease's counter), and its gate
// reopens. Y's next read of the table returns W's heartbeat still at n (an
// eventually consistent read, or a page read before the beat) but the
// lease as the fence left it: a take fenced only on that counter succeeds,
// and two live workers deliver one shard.
func TestATakeDecidedOnAnOldHeartbeatFailsAfterTheFence(t *testing.T) {
	noLeak(t)
	synctest.Test(t, func(t *testing.T) {
		kin := kinesisfake.New(kinesisfake.Options{})
		kin.CreateStream("s", 1)
		g := newSchedGroup(t, kin)
		ctx, stopProducing := context.WithCancel(context.Background())
		defer stopProducing()
		g.produce(ctx, "s", 4, 5*time.Millisecond)
		w := g.consume(g.newWorker("w", nil))
		waitFor(t, 5*time.Second, "w takes the lease", func() bool { return g.owner(shard0) == "w" })

		y := g.newWorker("y", nil)
		var mu sync.Mutex
		confirmed := int64(-1) // w's heartbeat counter as y's consistent read found it
		throttleTakes := true
		takes, badTakes := 0, 0
		y.table.set(func(h *hookTable) {
			h.onBeat = func(worker string, b workerBeat, ok bool) {
				mu.Lock()
				defer mu.Unlock()
				if worker == "w" && ok && confirmed < 0 {
					confirmed = b.counter
				}
			}
			// From the confirmation on, every read of the whole table
			// returns w's heartbeat as the confirmation found it.
			h.onList = func(s *tableSnapshot) {
				mu.Lock()
				defer mu.Unlock()
				if b, ok := s.workers["w"]; ok && confirmed >= 0 {
					b.counter = confirmed
					s.workers["w"] = b
				}
			}
			h.before = func(op, key string) error {
				mu.Lock()
				defer mu.Unlock()
				if op == "take" && key == shard0 {
					takes++
					if throttleTakes {
						return throttled()
					}
				}
				return nil
			}
			h.after = func(op, key string, err error) {
				if op == "take" && key == shard0 && err == nil && w.c.pause.check() {
					mu.Lock()
					badTakes++
					mu.Unlock()
				}
			}
		})
		g.consume(y)
		time.Sleep(time.Second)
		require.Equal(t, "w", g.owner(shard0), "y took nothing from a live w")

		before, _, _ := g.table.read(context.Background(), shard0)
		w.table.cutOff()
		waitFor(t, 5*time.Second, "y confirms w dead and tries to take", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return confirmed >= 0 && takes > 0
		})
		require.True(t, w.c.pause.isShut(), "w's gate shut before anyone could judge it dead")
		w.table.heal()
		waitFor(t, 5*time.Second, "w fences its lease after its late heartbeat", func() bool {
			l, _, _ := g.table.read(context.Background(), shard0)
			return l.owner == "w" && l.counter > before.counter && w.c.pause.check()
		})
		mu.Lock()
		throttleTakes = false
		mu.Unlock()
		time.Sleep(2 * time.Second)

		stopProducing()
		g.stop()
		mu.Lock()
		defer mu.Unlock()
		require.Zero(t, badTakes, "y took w's lease while w's gate was open (records delivered by both: %v)", both(g.deliveries(), "w", "y"))
	})
}

// A take's read-back tells this process's write from a twin's: two
// processes with one WorkerID race for a free lease, the first's take
// lands, the second's fails its condition and reads the lease back. The
// lease names their common WorkerID with the counter the second's take
// would have written, but the second must not take it for its own lost
// reply and read the shard beside the first.
func TestATwinsTakeIsNotMistakenForOnesOwnLostReply(t *testing.T) {
	noLeak(t)
	synctest.Test(t, func(t *testing.T) {
		kin := kinesisfake.New(kinesisfake.Options{})
		kin.CreateStream("s", 1)
		g := newSchedGroup(t, kin)
		ctx, stopProducing := context.WithCancel(context.Background())
		defer stopProducing()
		g.produce(ctx, "s", 4, 5*time.Millisecond)

		// p1's take of the lease waits until p2 tries too; p2's until p1's
		// landed.
		p2Tries, p1Took := make(chan struct{}), make(chan struct{})
		p1 := g.newWorker("p1", func(o *Options) { o.WorkerID = "w" })
		p1.table.set(func(h *hookTable) {
			h.before = func(op, key string) error {
				if op == "take" && key == shard0 {
					<-p2Tries
				}
				return nil
			}
			h.after = func(op, key string, err error) {
				if op == "take" && key == shard0 {
					close(p1Took)
				}
			}
		})
		p1 = g.consume(p1)
		time.Sleep(200 * time.Millisecond)
		p2 := g.newWorker("p2", func(o *Options) { o.WorkerID = "w" })
		var once sync.Once
		p2.table.set(func(h *hookTable) {
			h.before = func(op, key string) error {
				if op == "take" && key == shard0 {
					once.Do(func() {
						close(p2Tries)
						<-p1Took
					})
				}
				return nil
			}
		})
		g.consume(p2)
		<-p1.done // p1's next heartbeat finds p2's and stops it
		time.Sleep(time.Second)
		stopProducing()
		g.stop()

		var p1Last, p2First int64 = 0, -1
		for _, d := range g.deliveries() {
			switch d.worker {
			case "p1":
				p1Last = d.n
			case "p2":
				if p2First < 0 {
					p2First = d.n
				}
			}
		}
		require.True(t, p2First < 0 || p2First > p1Last, "p2 delivered the shard (first at event %d) while p1 still did (last at %d)", p2First, p1Last)
		require.ErrorIs(t, p1.c.Err(), errDuplicateWorker, "p1 stops with an error naming the WorkerID")
	})
}

// writeLog notes the lease-table writes of one worker that took effect.
type writeLog struct {
	mu     sync.Mutex
	writes []tableWrite
}

type tableWrite struct{ op, key string }

func (l *writeLog) note(op, key string, err error) {
	switch op {
	case "take", "checkpoint", "shard-end", "release", "hand-off":
	default:
		return
	}
	if err == nil {
		l.mu.Lock()
		l.writes = append(l.writes, tableWrite{op, key})
		l.mu.Unlock()
	}
}

// after returns the writes to key that followed its first write of op.
func (l *writeLog) after(op, key string) (found bool, later []tableWrite) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, w := range l.writes {
		switch {
		case w.key != key:
		case found:
			later = append(later, w)
		case w.op == op:
			found = true
		}
	}
	return found, later
}

// Once a lease has ended for a worker (shard end, hand-off), no later write
// of that worker touches it. A checkpoint flush that finds the acked prefix
// ahead of the checkpoint written waits for the lease's write lock while a
// slow shard-end or hand-off write holds it; it must not then write its
// older checkpoint on the lease as that write left it (with the in-memory
// table, the SHARD_END checkpoint moved back and the closed parent was read
// again; with DynamoDB, the hand-off was undone).
func TestNoWriteFollowsTheWriteThatEndedALease(t *testing.T) {
	// A 300 ms table: every lease write takes that long to land.
	slowWrites := func(log *writeLog) func(h *hookTable) {
		return func(h *hookTable) {
			h.before = func(op, key string) error {
				switch op {
				case "take", "checkpoint", "shard-end", "release", "hand-off":
					time.Sleep(300 * time.Millisecond)
				}
				return nil
			}
			if log != nil {
				h.after = log.note
			}
		}
	}
	t.Run("shard end", func(t *testing.T) {
		noLeak(t)
		synctest.Test(t, func(t *testing.T) {
			kin := kinesisfake.New(kinesisfake.Options{})
			kin.CreateStream("s", 1)
			g := newSchedGroup(t, kin)
			var log writeLog
			w := g.newWorker("w", nil)
			w.table.set(slowWrites(&log))
			g.consumeAckingAfter(w, 7*time.Millisecond)
			ctx, stopProducing := context.WithCancel(context.Background())
			defer stopProducing()
			g.produce(ctx, "s", 4, 5*time.Millisecond)
			time.Sleep(time.Second)
			if err := kin.SplitShard("s", shard0, "170141183460469231731687303715884105728"); err != nil {
				t.Fatal(err)
			}
			time.Sleep(3 * time.Second)
			stopProducing()
			g.stop()
			ended, later := log.after("shard-end", shard0)
			require.True(t, ended, "the parent was ended")
			require.Empty(t, later, "writes to the parent's lease after its SHARD_END write")
		})
	})
	t.Run("hand-off", func(t *testing.T) {
		noLeak(t)
		synctest.Test(t, func(t *testing.T) {
			kin := kinesisfake.New(kinesisfake.Options{})
			kin.CreateStream("s", 2)
			g := newSchedGroup(t, kin)
			var log writeLog
			w := g.newWorker("w", nil)
			w.table.set(slowWrites(&log))
			g.consumeAckingAfter(w, 7*time.Millisecond)
			ctx, stopProducing := context.WithCancel(context.Background())
			defer stopProducing()
			g.produce(ctx, "s", 8, 5*time.Millisecond)
			time.Sleep(time.Second)
			y := g.newWorker("y", nil)
			y.table.set(slowWrites(nil))
			g.consume(y)
			// Virtual time: a long wait costs nothing, and a hand-off
			// under 300 ms writes has rarely taken over 3 s (a claim, the
			// owner's next pass, its write).
			time.Sleep(10 * time.Second)
			stopProducing()
			g.stop()
			var handed []string
			for _, key := range []string{shard0, "shardId-000000000001"} {
				if ok, later := log.after("hand-off", key); ok {
					handed = append(handed, key)
					require.Empty(t, later, "w's writes to %s after it handed it off", key)
				}
			}
			require.Len(t, handed, 1, "w handed one lease to y")
		})
	})
}

// While a rolling deploy changes Options.Streams, workers of one group list
// different streams. A worker's fair share counts, per stream, only the
// workers that read it: otherwise a worker that reads a stream stops short
// of its shards because it counts a worker that does not read them, and a
// shard stays unread for as long as that worker runs.
func TestEveryShardIsReadWhileWorkersListDifferentStreams(t *testing.T) {
	streams := func(names ...string) func(*Options) {
		return func(o *Options) { o.StreamName, o.Streams = "", names }
	}
	check := func(t *testing.T, g *schedGroup, reader string) {
		t.Helper()

		for key, owner := range g.owners(":s2:") {
			require.Equal(t, reader, owner, "the lease of %s", key)
		}
		require.Empty(t, g.undelivered("s2"), "records of s2 never delivered")
	}
	t.Run("a deploy adds a stream", func(t *testing.T) {
		noLeak(t)
		synctest.Test(t, func(t *testing.T) {
			kin := kinesisfake.New(kinesisfake.Options{})
			kin.CreateStream("s1", 2)
			kin.CreateStream("s2", 4)
			g := newSchedGroup(t, kin)
			g.consume(g.newWorker("old", streams("s1")))
			time.Sleep(time.Second)
			g.consume(g.newWorker("new", streams("s1", "s2")))
			ctx, stopProducing := context.WithCancel(context.Background())
			g.produce(ctx, "s2", 16, 5*time.Millisecond)
			time.Sleep(5 * time.Second)
			stopProducing()
			time.Sleep(time.Second)
			check(t, g, "new")
			g.stop()
		})
	})
	t.Run("a deploy removes a stream", func(t *testing.T) {
		noLeak(t)
		synctest.Test(t, func(t *testing.T) {
			kin := kinesisfake.New(kinesisfake.Options{})
			kin.CreateStream("s1", 2)
			kin.CreateStream("s2", 4)
			g := newSchedGroup(t, kin)
			a := g.consume(g.newWorker("a", streams("s1", "s2")))
			g.consume(g.newWorker("b", streams("s1", "s2")))
			time.Sleep(2 * time.Second)
			a.cancel()
			<-a.done
			g.consume(g.newWorker("a2", streams("s1")))
			ctx, stopProducing := context.WithCancel(context.Background())
			g.produce(ctx, "s2", 16, 5*time.Millisecond)
			time.Sleep(5 * time.Second)
			stopProducing()
			time.Sleep(time.Second)
			check(t, g, "b")
			g.stop()
		})
	})
}

// Process starts no handler call once the worker's pause gate is shut (its
// delivery deadline passed: another worker may rightly take its leases),
// and a running call's context ends at that deadline. A worker cut off from
// the table cannot learn that its lease moved, so its ack windows stay
// open: the gate is all that stops it.
func TestProcessRunsNoHandlerPastTheDeliveryDeadline(t *testing.T) {
	noLeak(t)
	synctest.Test(t, func(t *testing.T) {
		kin := kinesisfake.New(kinesisfake.Options{})
		kin.CreateStream("s", 1)
		for i := range 400 {
			if _, _, err := kin.PutRecord("s", "k", fmt.Appendf(nil, "s/k:%d", i)); err != nil {
				t.Fatal(err)
			}
		}
		g := newSchedGroup(t, kin)
		var mu sync.Mutex
		var startedShut, ranPast int
		gateShutAt := map[*schedWorker]time.Time{}
		handler := func(w **schedWorker) func(context.Context, Record) error {
			return func(ctx context.Context, r Record) error {
				gate := (*w).c.pause
				shutAtStart := gate.isShut()
				var err error
				select {
				case <-time.After(150 * time.Millisecond):
				case <-ctx.Done():
					err = ctx.Err()
				}
				mu.Lock()
				defer mu.Unlock()
				if shutAtStart {
					startedShut++
				} else if shut := gateShutAt[*w]; !shut.IsZero() && time.Now().After(shut) && ctx.Err() == nil {
					ranPast++
				}
				return err
			}
		}
		var w1, w2 *schedWorker
		w1 = g.newWorker("w1", nil)
		gateShutAt[w1] = time.Time{}
		go func() {
			<-w1.c.pause.closing() // the first time w1's gate shuts
			mu.Lock()
			gateShutAt[w1] = time.Now()
			mu.Unlock()
		}()
		g.process(w1, handler(&w1))
		waitFor(t, 5*time.Second, "w1 takes the lease", func() bool { return g.owner(shard0) == "w1" })
		w2 = g.newWorker("w2", nil)
		g.process(w2, handler(&w2))
		time.Sleep(500 * time.Millisecond)
		w1.table.cutOff()
		waitFor(t, 5*time.Second, "w2 takes the lease", func() bool { return g.owner(shard0) == "w2" })
		time.Sleep(time.Second)
		g.stop()
		mu.Lock()
		defer mu.Unlock()
		require.Zero(t, startedShut, "handler calls w1 started after its gate shut (records handled by both: %d)", len(both(g.deliveries(), "w1", "w2")))
		require.Zero(t, ranPast, "handler calls whose context outlived w1's delivery deadline")
	})
}

// A worker that hands a lease off ends the contexts of its handler calls of
// that lease, and starts no more, before it sends the write: should the
// write's reply be lost, it learns that the write took effect only when a
// retry reads the lease back, and the new owner may be handling the same
// keys by then.
func TestProcessEndsALeasesCallsBeforeHandingItOff(t *testing.T) {
	noLeak(t)
	synctest.Test(t, func(t *testing.T) {
		kin := kinesisfake.New(kinesisfake.Options{})
		kin.CreateStream("s", 2)
		g := newSchedGroup(t, kin)
		var mu sync.Mutex
		calls := map[string][]context.Context{} // w1's handler contexts, by shard
		w1 := g.newWorker("w1", func(o *Options) { o.Concurrency = 8 })
		var handedOff, live atomic.Int32
		var handedKey string // synchronized on mu
		calledBefore := 0    // synchronized on mu: w1's calls of the lease it handed off, begun before the write
		w1.table.set(func(t *hookTable) {
			t.before = func(op, key string) error {
				if op != "hand-off" {
					return nil
				}
				mu.Lock()
				defer mu.Unlock()
				handedOff.Add(1)
				handedKey = key
				calledBefore += len(calls[key])
				for _, ctx := range calls[key] {
					if ctx.Err() == nil {
						live.Add(1)
					}
				}
				return nil
			}
		})
		g.process(w1, func(ctx context.Context, r Record) error {
			mu.Lock()
			calls[r.ShardID] = append(calls[r.ShardID], ctx)
			mu.Unlock()
			<-ctx.Done() // a call that runs until kcl ends it
			return ctx.Err()
		})
		ctx, stopProducing := context.WithCancel(context.Background())
		defer stopProducing()
		g.produce(ctx, "s", 8, 20*time.Millisecond)
		waitFor(t, 5*time.Second, "w1 takes both leases", func() bool {
			o := g.owners("shardId")
			return len(o) == 2 && o[shard0] == "w1" && o["shardId-000000000001"] == "w1"
		})
		// A caught-up shard is read again after PollInterval (200ms at
		// least): w2 joins once w1 runs a call of each shard.
		waitFor(t, 5*time.Second, "w1 runs a handler call of each shard", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(calls[shard0]) > 0 && len(calls["shardId-000000000001"]) > 0
		})
		g.process(g.newWorker("w2", nil), func(ctx context.Context, r Record) error { return nil })
		waitFor(t, 10*time.Second, "w1 hands a lease off", func() bool { return handedOff.Load() > 0 })
		stopProducing()
		mu.Lock()
		require.NotZero(t, calledBefore, "w1 started no handler call of %s before handing it off", handedKey)
		mu.Unlock()
		require.Zero(t, live.Load(), "handler calls of the lease w1 handed off still had their contexts live when it sent the write")
		g.stop()
	})
}

// The gate's timer shuts it at the deadline by itself, for a reader
// blocked on a full channel that checks nothing: also when the timer fires
// at the very instant of the deadline, as it always does in virtual time
// (deliveries stop AT the deadline, not after it).
func TestTheGateShutsByItsTimerAtTheDeadlineInstant(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newPauseGate(time.Second, discardLogger())
		defer g.stop()
		now := time.Now()
		g.beat(now, now)
		shutting := g.closing()
		time.Sleep(900 * time.Millisecond) // LeaseDuration less the tenth
		synctest.Wait()
		select {
		case <-shutting:
		default:
			t.Fatal("the gate did not shut at its deadline")
		}
		require.True(t, g.isShut())
	})
}

// A stream deleted and created again under its name is read as a new
// stream, from TRIM_HORIZON whatever InitialPosition says (the group was
// reading that name, so nothing written to the new one may be skipped),
// while running and after a restart, and the consumer goes on. The old
// incarnation's leases never block or mislead the new one: its
// shardId-000000000000 at SHARD_END, or at a checkpoint of another
// incarnation's sequence numbers.
func TestAStreamCreatedAgainUnderItsNameIsRead(t *testing.T) {
	multi := func(o *Options) { o.StreamName, o.Streams = "", []string{"s"} }
	latest := func(o *Options) { o.InitialPosition = Latest }
	for _, tc := range []struct {
		name    string
		edit    func(*Options)
		restart bool // the stream is created again while the worker is down
	}{
		{"multi-stream, while running", multi, false},
		{"multi-stream, while down, at Latest", func(o *Options) { multi(o); latest(o) }, true},
		{"single stream, while running", nil, false},
		{"single stream, while down", nil, true},
		{"single stream, while down, at Latest", latest, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			noLeak(t)
			synctest.Test(t, func(t *testing.T) {
				kin := kinesisfake.New(kinesisfake.Options{})
				kin.CreateStream("s", 2)
				g := newSchedGroup(t, kin)
				w := g.consume(g.newWorker("w", tc.edit))
				ctx, stopProducing := context.WithCancel(context.Background())
				g.produce(ctx, "s", 8, 5*time.Millisecond)
				time.Sleep(2 * time.Second)
				stopProducing()
				time.Sleep(time.Second)
				if tc.restart {
					w.cancel()
					<-w.done
				}
				if err := kin.DeleteStream("s"); err != nil {
					t.Fatal(err)
				}
				time.Sleep(2 * time.Second)
				kin.CreateStream("s", 1)
				ctx, stopProducing = context.WithCancel(context.Background())
				g.produce(ctx, "s", 8, 5*time.Millisecond)
				time.Sleep(time.Second)
				if tc.restart {
					w = g.consume(g.newWorker("w", tc.edit))
				}
				time.Sleep(2 * time.Second)
				stopProducing()
				time.Sleep(3 * time.Second)
				require.Empty(t, g.undelivered("s"), "records of the new stream never delivered")
				select {
				case <-w.done:
					t.Fatalf("the consumer stopped: %v", w.c.Err())
				default:
				}
			})
		})
	}
}

// A fan-out subscription's stall timer measures the server's silence only:
// time spent handing records to a slow receiver (or waiting for room under
// MaxUnackedPerShard) is not silence, and must not end the subscription.
func TestFanOutStallTimerStopsWhileDelivering(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, err := New(Options{StreamName: "s", AWSConfig: &aws.Config{}, Logger: discardLogger()})
		require.NoError(t, err)
		c.out = make(chan Record)
		keepDelivering(c)
		c.fanOutStall = 200 * time.Millisecond
		h := newHeldLease(lease{shardID: shard0, checkpoint: checkpoint{seq: checkpointTrimHorizon}}, c.streamList()[0], shard0)
		reader := newShardReader(c.readerEnv(), h)
		event := func(cont string, first int) types.SubscribeToShardEventStream {
			var recs []types.Record
			for i := first; i < first+3; i++ {
				recs = append(recs, types.Record{Data: fmt.Appendf(nil, "%d", i), PartitionKey: aws.String("k"), SequenceNumber: aws.String(fmt.Sprint(100 + i))})
			}
			return &types.SubscribeToShardEventStreamMemberSubscribeToShardEvent{Value: types.SubscribeToShardEvent{
				Records: recs, ContinuationSequenceNumber: aws.String(cont), MillisBehindLatest: aws.Int64(0)}}
		}
		events := make(chan types.SubscribeToShardEventStream)
		received := make(chan int, 16)
		ctx, cancel := context.WithCancel(context.Background())
		receiverDone := make(chan struct{})
		go func() { // a receiver that takes 150ms a record
			defer close(receiverDone)
			for r := range c.out {
				received <- len(r.Data) // room for all
				time.Sleep(150 * time.Millisecond)
				r.Ack()
			}
		}()
		go func() { // the server: the next event 100ms after the last record of one was received
			for e := range 3 {
				select {
				case events <- event(fmt.Sprint(102+3*e), 3*e):
				case <-ctx.Done():
					return
				}
				for range 3 {
					select {
					case <-received:
					case <-ctx.Done():
						return
					}
				}
				time.Sleep(100 * time.Millisecond)
			}
		}()
		stream := kinesis.NewSubscribeToShardEventStream(func(es *kinesis.SubscribeToShardEventStream) { es.Reader = eventReader{events: events} })
		var skip checkpoint
		cont := ""
		done := make(chan error, 1)
		go func() {
			_, _, err := reader.readSubscription(ctx, stream, &skip, &cont)
			done <- err
		}()
		defer func() {
			cancel()
			<-done
			close(c.out)
			<-receiverDone
		}()
		select {
		case err := <-done: // the server falls silent after its third event
			done <- err
			require.Equal(t, "108", cont, "the subscription ended with events to come: %v", err)
		case <-time.After(3 * time.Second):
			t.Fatal("the subscription did not end once the server fell silent")
		}
	})
}

// A lease of an earlier stream of this name that kcl did not stamp (the
// Java KCL wrote it), owned by a worker that is gone, is taken once it
// expires; Kinesis refuses its checkpoint on the stream created since
// (InvalidArgument). The reader replaces it by the stream's own at
// TRIM_HORIZON, fenced on its counter, instead of ending the consumer.
func TestARefusedCheckpointOfAnEarlierStreamIsReplaced(t *testing.T) {
	noLeak(t)
	synctest.Test(t, func(t *testing.T) {
		kin := kinesisfake.New(kinesisfake.Options{})
		kin.CreateStream("s", 1)
		_, seq, err := kin.PutRecord("s", "k", []byte("old"))
		require.NoError(t, err)
		require.NoError(t, kin.DeleteStream("s"))
		time.Sleep(time.Second)
		kin.CreateStream("s", 1)
		g := newSchedGroup(t, kin)
		old := lease{shardID: "shardId-000000000000", counter: 7, checkpoint: checkpoint{seq: seq}}
		_, err = g.table.create(context.Background(), old)
		require.NoError(t, err)
		_, err = g.table.take(context.Background(), old, writer{id: "java-worker"})
		require.NoError(t, err)
		w := g.newWorker("w", nil)
		g.consume(w)
		g.produceAndRequireRead(t, w, "s", 4*time.Second, func() string { return "the new stream's" })
		g.stop()
	})
}

// A shard sync asked for (a stream created again) that fails once is tried
// again on the next tick: nothing else need ask for it again, and a worker
// that is not a scanner syncs on no timer. Here the new stream's first
// lease creation is throttled; the new stream is read all the same.
func TestAFailedSyncAskedForIsTriedAgain(t *testing.T) {
	noLeak(t)
	synctest.Test(t, func(t *testing.T) {
		kin := kinesisfake.New(kinesisfake.Options{})
		kin.CreateStream("s", 1)
		g := newSchedGroup(t, kin)
		var mu sync.Mutex
		deleted, throttle := false, 3 // the sync the switch asks for, and any asked for meanwhile
		w := g.newWorker("w", func(o *Options) { o.StreamName, o.Streams = "", []string{"s"} })
		w.table.set(func(h *hookTable) {
			h.before = func(op, key string) error {
				mu.Lock()
				defer mu.Unlock()
				if op == "create" && deleted && throttle > 0 {
					throttle--
					return throttled()
				}
				return nil
			}
		})
		g.consume(w)
		ctx, stopProducing := context.WithCancel(context.Background())
		g.produce(ctx, "s", 4, 10*time.Millisecond)
		time.Sleep(2 * time.Second)
		stopProducing()
		time.Sleep(time.Second)
		require.NoError(t, kin.DeleteStream("s"))
		mu.Lock()
		deleted = true
		mu.Unlock()
		time.Sleep(2 * time.Second)
		kin.CreateStream("s", 1)
		ctx, stopProducing = context.WithCancel(context.Background())
		g.produce(ctx, "s", 4, 10*time.Millisecond)
		time.Sleep(3 * time.Second)
		stopProducing()
		time.Sleep(2 * time.Second)
		g.stop()
		require.Empty(t, g.undelivered("s"), "records of the new stream never delivered")
	})
}

// A reader whose shard is not found asks the stream's listing whether the
// shard left it (retention). When the stream itself is deleted meanwhile,
// the listing fails with ResourceNotFound too: that is the stream missing,
// waited for like any read the stream's deletion refuses, not an error that
// ends the consumer (found by the simulation, seed 705198061).
//
// The listing is the first of a single-stream table's reader, which asks
// whether its lease is an earlier stream's (renewRefused); with Streams it
// is the one that asks whether the shard left the stream (shardGone).
func TestAShardGoneWhileItsStreamIsDeletedIsWaitedFor(t *testing.T) {
	for _, multi := range []bool{false, true} {
		t.Run(fmt.Sprintf("multi=%v", multi), func(t *testing.T) { shardGoneWhileItsStreamIsDeleted(t, multi) })
	}
}

func shardGoneWhileItsStreamIsDeleted(t *testing.T, multi bool) {
	noLeak(t)
	synctest.Test(t, func(t *testing.T) {
		kin := kinesisfake.New(kinesisfake.Options{})
		kin.CreateStream("s", 1)
		g := newSchedGroup(t, kin)
		w := g.consume(g.newWorker("w", func(o *Options) {
			if multi {
				o.StreamName, o.Streams = "", []string{"s"}
			}
		}))
		time.Sleep(2 * time.Second)
		var refused, deleted atomic.Bool
		kin.SetFault(func(op, stream, shardID string) kinesisfake.Fault {
			switch {
			case op == "GetRecords" && refused.CompareAndSwap(false, true):
				return kinesisfake.Fault{Err: &types.ResourceNotFoundException{Message: aws.String("Shard " + shardID + " in stream s does not exist (test)")}}
			case op == "ListShards" && refused.Load() && deleted.CompareAndSwap(false, true):
				if err := kin.DeleteStream("s"); err != nil {
					t.Errorf("DeleteStream: %v", err)
				}
			}
			return kinesisfake.Fault{}
		})
		waitFor(t, 10*time.Second, "the stream is deleted", deleted.Load)
		time.Sleep(time.Second)
		kin.CreateStream("s", 1)
		g.produceAndRequireRead(t, w, "s", 5*time.Second, func() string { return "the new stream's" })
		g.stop()
	})
}

// The Java KCL deletes a parent's lease once every child started. A sync's
// read may return a child's lease as it was before it started (an
// eventually consistent read, or a page read before it moved) and the
// parent's as deleted: an unstarted child says nothing of its parent, but
// the parent was read to its end all the same. The sync confirms with a
// consistent read of the child before it makes the parent a lease again,
// which would read it all again.
func TestASyncConfirmsAChildUnstartedInItsReadBeforeRecreatingItsParent(t *testing.T) {
	ctx := context.Background()
	kin := kinesisfake.New(kinesisfake.Options{})
	kin.CreateStream("s", 1)
	c, err := New(Options{StreamName: "s", WorkerID: "me", Kinesis: kin, InitialPosition: TrimHorizon, Logger: discardLogger()})
	require.NoError(t, err)
	require.NoError(t, c.describeStreams(ctx))
	require.NoError(t, kin.SplitShard("s", "shardId-000000000000", "170141183460469231731687303715884105728"))
	require.NoError(t, c.syncShards(ctx, starting, nil))
	_, seq, err := kin.PutRecord("s", "k", []byte("x"))
	require.NoError(t, err)
	children := []string{"shardId-000000000001", "shardId-000000000002"}
	for _, id := range children {
		l, ok, err := c.table.read(ctx, id)
		require.NoError(t, err)
		require.True(t, ok)
		l, err = c.table.take(ctx, l, writer{id: "me"})
		require.NoError(t, err)
		_, err = c.table.checkpoint(ctx, l, checkpoint{seq: seq}, "", writer{id: "me"})
		require.NoError(t, err)
	}
	parent, _, err := c.table.read(ctx, "shardId-000000000000")
	require.NoError(t, err)
	require.NoError(t, c.table.remove(ctx, parent)) // the Java KCL's cleanup

	hooked := &hookTable{inner: c.table}
	hooked.set(func(t *hookTable) {
		t.onList = func(snap *tableSnapshot) { // the children as they were before they started
			for i, l := range snap.leases {
				if slices.Contains(children, l.shardID) {
					snap.leases[i].checkpoint = checkpoint{seq: checkpointTrimHorizon}
				}
			}
		}
	})
	c.table = hooked
	require.NoError(t, c.syncShards(ctx, running, nil))
	_, found, err := c.table.read(ctx, "shardId-000000000000")
	require.NoError(t, err)
	require.False(t, found, "the parent, read to its end, gets no lease again")
}

// A reader whose shard is not found, and whose stream's listing is then
// refused once (a deletion in progress that did not last, or a listing
// behind a describe), lists it again with the read's own error at hand:
// if the shard is still listed, that error is what stops the consumer, not
// an empty one (found by a review).
func TestAShardGoneKeepsItsErrorAcrossARefusedListing(t *testing.T) {
	noLeak(t)
	synctest.Test(t, func(t *testing.T) {
		kin := kinesisfake.New(kinesisfake.Options{})
		kin.CreateStream("s", 1)
		g := newSchedGroup(t, kin)
		w := g.consume(g.newWorker("w", func(o *Options) { o.StreamName, o.Streams = "", []string{"s"} }))
		time.Sleep(2 * time.Second)
		var refused, listRefused atomic.Bool
		kin.SetFault(func(op, stream, shardID string) kinesisfake.Fault {
			switch {
			case op == "GetRecords" || op == "GetShardIterator":
				if refused.Load() || refused.CompareAndSwap(false, true) {
					return kinesisfake.Fault{Err: &types.ResourceNotFoundException{Message: aws.String("Shard " + shardID + " in stream s does not exist (test)")}}
				}
			case op == "ListShards" && refused.Load() && listRefused.CompareAndSwap(false, true):
				return kinesisfake.Fault{Err: &types.ResourceNotFoundException{Message: aws.String("Stream s not found (test)")}}
			}
			return kinesisfake.Fault{}
		})
		waitFor(t, 30*time.Second, "the consumer stops", w.stopped)
		var notFound *types.ResourceNotFoundException
		require.ErrorAs(t, w.c.Err(), &notFound, "the read's own error")
		g.stop()
	})
}

// A reader that finds its shard gone (retention) while records it
// delivered are still unacked records the shard's children in the table
// before it waits for those acks. Otherwise, when a child is split and
// leaves the stream too while the parent's acks are pending, a worker that
// syncs then finds the grandchildren with a parent neither listed nor
// leased, reads them at once, and delivers a key's later records before
// the grandparent's earlier ones are done (found by the simulation, seed
// 613099921: a Process worker still retrying a record of the removed
// shard).
func TestAGrandchildWaitsForAGrandparentRemovedWhileItsRecordsAreUnacked(t *testing.T) {
	noLeak(t)
	synctest.Test(t, func(t *testing.T) {
		const ackAfter = 15 * time.Second
		kin := kinesisfake.New(kinesisfake.Options{})
		kin.CreateStream("s", 1)
		g := newSchedGroup(t, kin)
		g.consumeAckingAfter(g.newWorker("a", func(o *Options) { o.ShutdownTimeout = time.Minute }), ackAfter)
		time.Sleep(2 * time.Second) // a holds shard 0
		for i := range 3 {
			_, _, err := kin.PutRecord("s", "k", fmt.Appendf(nil, "old%d", i))
			require.NoError(t, err)
		}
		waitFor(t, 5*time.Second, "a delivers the old records", func() bool { return len(g.deliveries()) == 3 })
		delivered := g.deliveries()[2].at
		const half, quarter, threeQuarters = "170141183460469231731687303715884105728", "85070591730234615865843651857942052864", "255211775190703847597530955573826158592"
		require.NoError(t, kin.SplitShard("s", "shardId-000000000000", half))
		require.NoError(t, kin.RemoveShard("s", "shardId-000000000000")) // retention overtakes a
		time.Sleep(time.Second)                                          // a finds shard 0 gone
		require.NoError(t, kin.SplitShard("s", "shardId-000000000001", quarter))
		require.NoError(t, kin.SplitShard("s", "shardId-000000000002", threeQuarters))
		require.NoError(t, kin.RemoveShard("s", "shardId-000000000001"))
		require.NoError(t, kin.RemoveShard("s", "shardId-000000000002"))
		_, _, err := kin.PutRecord("s", "k", []byte("new"))
		require.NoError(t, err)
		g.consume(g.newWorker("b", nil)) // its first sync finds shards 3 to 6, whose parents left
		waitFor(t, 2*ackAfter, "the new record is delivered", func() bool {
			return slices.ContainsFunc(g.deliveries(), func(d schedDelivery) bool { return d.data == "new" })
		})
		for _, d := range g.deliveries() {
			if d.data == "new" {
				require.False(t, d.at.Before(delivered.Add(ackAfter)), "the new record (a grandchild's) delivered at %v, before the old ones (their grandparent's) were acked at %v", d.at, delivered.Add(ackAfter))
			}
		}
		g.stop()
	})
}

// A second process with a worker's WorkerID (a twin) that stops before it
// settled leaves the heartbeat item: the first process may be alive, cut off
// or frozen, and not yet stopped by the twin's beat. With its heartbeat item
// deleted, its leases were judged on their own counters, which kcl workers
// do not renew, and another worker took one before the first process's
// delivery deadline had passed (found by the simulation, seed 311925255
// with -sim.twins -sim.recreate).
func TestATwinThatStopsBeforeSettlingLeavesTheHeartbeatItem(t *testing.T) {
	noLeak(t)
	synctest.Test(t, func(t *testing.T) {
		kin := kinesisfake.New(kinesisfake.Options{})
		kin.CreateStream("s", 1)
		g := newSchedGroup(t, kin)
		first := g.consume(g.newWorker("first", func(o *Options) { o.WorkerID = "w" }))
		time.Sleep(3 * time.Second) // settled, reading the shard
		frozen := make(chan struct{})
		first.table.set(func(h *hookTable) {
			h.before = func(op, key string) error { <-frozen; return nil } // its calls hang
		})
		twin := g.consume(g.newWorker("twin", func(o *Options) { o.WorkerID = "w" }))
		time.Sleep(200 * time.Millisecond) // its first beat written; LeaseDuration is 1s
		twin.cancel()
		<-twin.done
		_, ok, err := g.table.readBeat(context.Background(), "w")
		require.NoError(t, err)
		require.True(t, ok, "the heartbeat item is left for the process that may be alive")
		close(frozen)
		g.stop()
	})
}

// A settled process that stops releases the leases of its WorkerID that an
// earlier run left, but not one a live twin (another process with its
// WorkerID, started after it) wrote and reads: released, it was taken by
// another worker while the twin's handler ran (found by the simulation,
// seed 1293).
func TestAStopReleasesAnEarlierRunsLeasesButNotATwins(t *testing.T) {
	kin := kinesisfake.New(kinesisfake.Options{})
	kin.CreateStream("s", 1)
	c, err := New(Options{StreamName: "s", WorkerID: "me", Kinesis: kin, Logger: discardLogger()})
	require.NoError(t, err)
	require.NoError(t, c.describeStreams(context.Background()))
	c.beat.firstCounter.Store(10)
	earlier := lease{shardID: "shardId-000000000000", owner: "me", checkpoint: checkpoint{seq: "5"}, writer: writer{id: "me", token: "old", beat: 9}}
	twins := lease{shardID: "shardId-000000000001", owner: "me", checkpoint: checkpoint{seq: "5"}, writer: writer{id: "me", token: "twin", beat: 11}}
	c.keeper.lastTable.Store(&[]lease{earlier, twins})
	require.Equal(t, []lease{earlier}, c.ownedNotHeld())
}

// A shutdown that lands while a reader waits for acks to finish a hand-off
// ends that wait without writing the hand-off: the shutdown waits its own
// ShutdownTimeout for the acks, checkpoints what they acked, and releases.
// Written before the acks, the hand-off would close the lease's acks and
// hand over a checkpoint behind records the user acked during shutdown,
// which the next owner would deliver again (found by a review).
func TestAShutdownDuringAHandOffsWaitCheckpointsTheAcksThatFollow(t *testing.T) {
	noLeak(t)
	synctest.Test(t, func(t *testing.T) {
		kin := kinesisfake.New(kinesisfake.Options{})
		kin.CreateStream("s", 2)
		g := newSchedGroup(t, kin)
		a := g.consumeAckingAfter(g.newWorker("a", func(o *Options) { o.ShutdownTimeout = 3 * time.Second }), time.Second)
		time.Sleep(time.Second)
		for i := range 20 {
			_, _, err := kin.PutRecord("s", fmt.Sprint("k", i), fmt.Appendf(nil, "r%d", i))
			require.NoError(t, err)
		}
		waitFor(t, 2*time.Second, "a delivers them", func() bool { return len(g.deliveries()) == 20 }) // acked a second later
		g.consume(g.newWorker("b", nil))                                                               // asks for one of a's two shards
		waitFor(t, 2*time.Second, "b asks for a shard", func() bool {
			return g.leaseOf("shardId-000000000000").handoffTo == "b" || g.leaseOf("shardId-000000000001").handoffTo == "b"
		})
		time.Sleep(100 * time.Millisecond) // a's reader waits for the acks
		a.cancel()
		<-a.done
		time.Sleep(3 * time.Second)
		seen := map[string]string{}
		for _, d := range g.deliveries() {
			if w, ok := seen[d.data]; ok {
				t.Fatalf("%s delivered by %s and again by %s, though a acked it during its shutdown", d.data, w, d.worker)
			}
			seen[d.data] = d.worker
		}
		g.stop()
	})
}
