package kcl

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"golang.org/x/sync/errgroup"
)

// nilKinesis answers nothing: the readers of hand-driven workers wait.
type nilKinesis struct{ KinesisAPI }

func (nilKinesis) GetShardIterator(ctx context.Context, in *kinesis.GetShardIteratorInput, optFns ...func(*kinesis.Options)) (*kinesis.GetShardIteratorOutput, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// handDrivenWorker is a Consumer whose lease loop and heartbeats the test
// drives itself (balance, pass, beat), on tbl.
func handDrivenWorker(t *testing.T, tbl leaseTable, id string, ld time.Duration) *Consumer {
	c, err := New(Options{StreamName: "s", WorkerID: id, Kinesis: nilKinesis{}, LeaseDuration: ld,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	c.table = tbl
	readCtx, stopReading := context.WithCancel(context.Background())
	c.readCtx, c.readers = readCtx, new(errgroup.Group)
	t.Cleanup(func() { stopReading(); _ = c.readers.Wait() })                                           // the readers of leases it took
	c.streams.Store(&streamSet{list: c.streamList(), byID: map[string]*kstream{"": c.streamList()[0]}}) // as start's describeStreams leaves one stream
	return c
}

// handDrivenGroup steps hand-driven workers as their goroutines would: each
// beats every LeaseDuration/2 and makes one pass of its lease loop a step,
// and a step ends with LeaseDuration/10 of sleep (the pass interval).
type handDrivenGroup struct {
	t        *testing.T
	ld       time.Duration
	cs       map[string]*Consumer
	lastBeat map[string]time.Time
}

func newHandDrivenGroup(t *testing.T, ld time.Duration) *handDrivenGroup {
	return &handDrivenGroup{t: t, ld: ld, cs: map[string]*Consumer{}, lastBeat: map[string]time.Time{}}
}

func (g *handDrivenGroup) add(tbl leaseTable, id string) {
	g.cs[id] = handDrivenWorker(g.t, tbl, id, g.ld)
}

// beat writes id's heartbeat if one is due.
func (g *handDrivenGroup) beat(ctx context.Context, id string) {
	if time.Since(g.lastBeat[id]) >= g.ld/2 {
		if err := g.cs[id].beat.beat(ctx, running); err != nil {
			g.t.Fatal(err)
		}
		g.lastBeat[id] = time.Now()
	}
}

// step beats (when due) and passes once for each of ids, then sleeps.
func (g *handDrivenGroup) step(ctx context.Context, ids ...string) {
	for _, id := range ids {
		g.beat(ctx, id)
		if err := g.cs[id].keeper.pass(ctx); err != nil {
			g.t.Fatal(err)
		}
	}
	time.Sleep(g.ld / 10)
}

// A worker that died after its first beat is published expired at that
// counter and its heartbeat removed. When it restarts with the same WorkerID
// its new item must not repeat the counter (it once started at 1 again), nor
// may a scanner's old observation of the earlier item count against it: it
// would be taken for dead at once, published, and its heartbeat deleted
// again, for ever.
func TestARestartedWorkerIsNotTakenForItsEarlierSelf(t *testing.T) {
	const ld = 300 * time.Millisecond
	ctx := context.Background()
	tbl := newMemLeases()
	a := handDrivenWorker(t, tbl, "a", ld)
	tick := ld / 10
	// b's first incarnation: one beat, then a crash.
	if _, err := tbl.heartbeat(ctx, "b", "tok1", false, -1, nil); err != nil {
		t.Fatal(err)
	}
	passes := func(d time.Duration, each func()) {
		end := time.Now().Add(d)
		lastBeat := time.Time{}
		for time.Now().Before(end) {
			if time.Since(lastBeat) > ld/2 {
				if err := a.beat.beat(ctx, running); err != nil {
					t.Fatal(err)
				}
				lastBeat = time.Now()
			}
			if err := a.keeper.balance(ctx, true); err != nil {
				t.Fatal(err)
			}
			if each != nil {
				each()
			}
			time.Sleep(tick)
		}
	}
	passes(4*ld, nil)
	snap, _ := tbl.list(ctx, true)
	if _, ok := snap.workers["b"]; ok {
		t.Fatalf("dead b's heartbeat not removed")
	}
	t.Logf("b's heartbeat removed; group expired=%v", snap.group.expired)

	// b restarts with the same WorkerID and beats every LD/2, as a healthy worker.
	last := int64(-1)
	var lastBeat time.Time
	if _, err := tbl.create(ctx, lease{shardID: "s1", checkpoint: checkpoint{seq: checkpointTrimHorizon}}); err != nil {
		t.Fatal(err)
	}
	tookFromB := false
	if n, err := tbl.heartbeat(ctx, "b", "tok2", false, -1, nil); err != nil {
		t.Fatal(err)
	} else {
		last, lastBeat = n, time.Now()
	}
	if l, _, _ := tbl.read(ctx, "s1"); true {
		if _, err := tbl.take(ctx, l, writer{id: "b"}); err != nil {
			t.Fatal(err)
		}
	}
	recreated := 0
	judgedDead := 0
	passes(4*ld, func() {
		if time.Since(lastBeat) >= ld/2 {
			n, err := tbl.heartbeat(ctx, "b", "tok2", false, last, nil)
			if err != nil {
				t.Fatal(err)
			}
			if last >= 0 && n != last+1 {
				recreated++
			}
			last, lastBeat = n, time.Now()
		}
		snap, _ := tbl.list(ctx, true)
		for _, l := range snap.leases {
			if l.shardID == "s1" && l.owner == "" && last > 0 {
				if _, err := tbl.take(ctx, l, writer{id: "b"}); err == nil {
					t.Logf("b took s1")
				}
			}
			if l.shardID == "s1" && l.owner == "a" && !tookFromB {
				tookFromB = true
				t.Logf("a took s1 from b while b beats (b counter %d)", last)
			}
		}
		w, ok := snap.workers["b"]
		if n, pub := snap.group.expired[workerKeyPrefix+"b"]; ok && pub && n == w.counter {
			judgedDead++
		}
	})
	t.Logf("b (alive, beating every LD/2): published expired in %d passes; its item deleted and recreated %d times", judgedDead, recreated)
	if judgedDead > 0 || recreated > 0 {
		t.Errorf("a live, restarted worker is judged dead and its heartbeat deleted")
	}
}

// A dead worker's heartbeat is removed; the worker restarts with the same
// WorkerID and must get its share of leases, not have its claims cleared and
// its heartbeat deleted again and again.
func TestARestartedWorkerGetsItsShare(t *testing.T) {
	const ld = 300 * time.Millisecond
	ctx := context.Background()
	tbl := newMemLeases()
	a := handDrivenWorker(t, tbl, "a", ld)
	for _, id := range []string{"s1", "s2"} {
		tbl.create(ctx, lease{shardID: id, checkpoint: checkpoint{seq: checkpointTrimHorizon}})
	}
	if _, err := tbl.heartbeat(ctx, "b", "tok1", false, -1, nil); err != nil {
		t.Fatal(err)
	}
	var aBeat time.Time
	pass := func() {
		if time.Since(aBeat) > ld/2 {
			if err := a.beat.beat(ctx, running); err != nil {
				t.Fatal(err)
			}
			aBeat = time.Now()
		}
		if err := a.keeper.balance(ctx, true); err != nil {
			t.Fatal(err)
		}
		time.Sleep(ld / 10)
	}
	for end := time.Now().Add(4 * ld); time.Now().Before(end); {
		pass()
	}
	snap, _ := tbl.list(ctx, true)
	if _, ok := snap.workers["b"]; ok {
		t.Fatalf("dead b's heartbeat not removed")
	}
	// b restarts: beats every LD/2, and claims one of a's two leases when
	// its view says so (a joiner's claim).
	last := int64(-1)
	var bBeat time.Time
	recreated, claims, unclaims := 0, 0, 0
	got := false
	for end := time.Now().Add(10 * ld); time.Now().Before(end) && !got; {
		if time.Since(bBeat) >= ld/2 {
			n, err := tbl.heartbeat(ctx, "b", "tok2", false, last, nil)
			if err != nil {
				t.Fatal(err)
			}
			if last >= 0 && n != last+1 {
				recreated++
			}
			last, bBeat = n, time.Now()
		}
		snap, _ := tbl.list(ctx, true)
		for _, l := range snap.leases {
			if l.owner == "b" {
				got = true
			}
		}
		if l, _, _ := tbl.read(ctx, "s1"); l.owner == "a" && l.handoffTo == "" {
			if claims > 0 {
				unclaims++
			}
			if tbl.claim(ctx, l, "b") == nil {
				claims++
			}
		}
		pass()
	}
	t.Logf("b restarted: heartbeat deleted and recreated %d times; claimed %d times, claim cleared %d times; got a lease: %v", recreated, claims, unclaims, got)
	if !got {
		t.Errorf("a live restarted worker never gets a lease in 10 LeaseDuration")
	}
}
