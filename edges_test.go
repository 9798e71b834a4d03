//go:build go1.25

package kcl

// Regression tests for the edges of issue 27, in virtual time.

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/stretchr/testify/require"

	"github.com/kclgo/kcl/internal/kinesisfake"
)

// A start time ahead of Kinesis's clock (AtTimestamp of a time to come, or
// of time.Now on a host whose clock runs fast) is refused by
// GetShardIterator ("timestampInMillis cannot be greater than
// currentTimestampInMillis"). It is waited out, never fatal: the shard opens
// once Kinesis's clock reaches the start, and nothing at or after it is
// missed. With polling and with fan-out (SubscribeToShard refuses it the
// same way; found by the simulation, seeds 1, 40, 45, 49, 69).
func TestAStartTimeAheadOfKinesisIsWaitedFor(t *testing.T) {
	for _, fanOut := range []bool{false, true} {
		t.Run(map[bool]string{false: "polling", true: "fan-out"}[fanOut], func(t *testing.T) { testStartAhead(t, fanOut) })
	}
}

func testStartAhead(t *testing.T, fanOut bool) {
	noLeak(t)
	synctest.Test(t, func(t *testing.T) {
		kin := kinesisfake.New(kinesisfake.Options{})
		kin.CreateStream("s", 2)
		g := newSchedGroup(t, kin)
		start := time.Now().Add(30 * time.Second)
		w := g.consume(g.newWorker("w", func(o *Options) {
			o.InitialPosition, o.EnhancedFanOut = AtTimestamp(start), fanOut
			if fanOut {
				o.ConsumerName = "c"
			}
		}))
		ctx, stopProducing := context.WithCancel(context.Background())
		g.produce(ctx, "s", 8, 100*time.Millisecond)
		time.Sleep(40 * time.Second)
		stopProducing()
		time.Sleep(5 * time.Second)
		select {
		case <-w.done:
			t.Fatalf("the consumer stopped: %v", w.c.Err())
		default:
		}
		got := map[string]bool{}
		for _, d := range g.deliveries() {
			got[d.data] = true
		}
		var missed, early []string
		for _, r := range kin.Records("s") {
			switch {
			case !r.Arrival.Before(start) && !got[string(r.Data)]:
				missed = append(missed, string(r.Data))
			case r.Arrival.Before(start) && got[string(r.Data)]:
				early = append(early, string(r.Data))
			}
		}
		require.Empty(t, missed, "records at or after the start never delivered")
		require.Empty(t, early, "records before the start delivered")
		require.NotEmpty(t, got)
	})
}

// dropFirstSubscription is the in-process Kinesis whose first
// subscription drops before its first event (simDroppedReader).
type dropFirstSubscription struct {
	*kinesisfake.Server
	dropped atomic.Bool
}

func (k *dropFirstSubscription) SubscribeToShard(ctx context.Context, in *kinesis.SubscribeToShardInput, opts ...func(*kinesis.Options)) (*kinesis.SubscribeToShardOutput, error) {
	out, err := k.Server.SubscribeToShard(ctx, in, opts...)
	if err == nil && k.dropped.CompareAndSwap(false, true) {
		es := out.GetStream()
		es.Reader = &simDroppedReader{inner: es.Reader, events: closedEvents()}
	}
	return out, err
}

// Under fan-out, a shard opened at LATEST whose first subscription drops
// before its first event is subscribed again where this worker's first
// subscription stood (the response's Date, less a second), not at the
// lease's start, a minute before the take: records written before the
// consumer started are never delivered (issue 27, item 7; only the
// simulation caught it, 1 seed in 398).
func TestAFanOutResubscribeBeforeTheFirstEventAtLatestDeliversNothingOlder(t *testing.T) {
	noLeak(t)
	synctest.Test(t, func(t *testing.T) {
		kin := kinesisfake.New(kinesisfake.Options{})
		kin.CreateStream("s", 1)
		g := newSchedGroup(t, kin)
		ctx, stopProducing := context.WithCancel(context.Background())
		g.produce(ctx, "s", 4, 100*time.Millisecond)
		time.Sleep(5 * time.Second)
		stopProducing()
		time.Sleep(3 * time.Second) // more than the second's margin before the start
		start := time.Now()
		kd := &dropFirstSubscription{Server: kin}
		w := g.consume(g.newWorker("w", func(o *Options) {
			o.InitialPosition, o.EnhancedFanOut, o.ConsumerName, o.Kinesis = Latest, true, "c", kd
		}))
		time.Sleep(5 * time.Second) // the first subscription drops; the second opens
		require.True(t, kd.dropped.Load(), "the first subscription was dropped")
		ctx, stopProducing = context.WithCancel(context.Background())
		g.produce(ctx, "s", 4, 100*time.Millisecond)
		time.Sleep(5 * time.Second)
		stopProducing()
		time.Sleep(3 * time.Second)
		require.False(t, w.stopped(), "the consumer stopped: %v", w.c.Err())
		got := map[string]bool{}
		for _, d := range g.deliveries() {
			got[d.data] = true
		}
		var early []string
		for _, r := range kin.Records("s") {
			if r.Arrival.Before(start) && got[string(r.Data)] {
				early = append(early, string(r.Data))
			}
		}
		require.Empty(t, early, "records put before the start delivered")
		require.NotEmpty(t, got)
	})
}

// The first take of a lease at LATEST stores where its later owners open
// it: a minute before the take, on Kinesis's clock. A taker whose clock runs
// two minutes ahead of Kinesis's stored its own clock's time, a minute in
// Kinesis's future: the next owner, taking the lease before any ack, waited
// for it and skipped what the first owner had delivered unacked (issue 27,
// item 2). The workers' clocks run ahead here as Kinesis's runs behind.
func TestAClockAheadOfKinesisStoresNoStartAheadOfIt(t *testing.T) {
	noLeak(t)
	synctest.Test(t, func(t *testing.T) {
		const skew = 2 * time.Minute
		kin := kinesisfake.New(kinesisfake.Options{Now: func() time.Time { return time.Now().Add(-skew) }})
		kin.CreateStream("s", 1)
		g := newSchedGroup(t, kin)
		latest := func(o *Options) { o.InitialPosition = Latest }
		a := g.newWorker("a", latest)
		ctx, cancel := context.WithCancel(context.Background())
		a.cancel = cancel
		ch := a.c.Consume(ctx)
		go func() {
			defer close(a.done)
			for r := range ch {
				g.note(a.name, r) // never acked
			}
		}()
		time.Sleep(2 * time.Second) // a takes the lease and opens the shard at LATEST
		ctx, stopProducing := context.WithCancel(context.Background())
		g.produce(ctx, "s", 4, 100*time.Millisecond)
		time.Sleep(5 * time.Second)
		stopProducing()
		time.Sleep(time.Second)
		first := g.deliveries()
		require.NotEmpty(t, first)
		a.cancel() // its release leaves the lease at LATEST, with the start a stored
		<-a.done
		b := g.consume(g.newWorker("b", latest))
		time.Sleep(2 * time.Minute) // past a start a minute ahead, had one been stored
		require.False(t, b.stopped(), "the consumer stopped: %v", b.c.Err())
		again := map[string]bool{}
		for _, d := range g.deliveries() {
			if d.worker == "b" {
				again[d.data] = true
			}
		}
		var lost []string
		for _, d := range first {
			if !again[d.data] {
				lost = append(lost, d.data)
			}
		}
		require.Empty(t, lost, "delivered by a without an ack, never by b")
	})
}

// lineCounter counts the log lines that hold each of its keys.
type lineCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

func (l *lineCounter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for key := range l.counts {
		if strings.Contains(string(p), key) {
			l.counts[key]++
		}
	}
	return len(p), nil
}

func (l *lineCounter) get(key string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.counts[key]
}

// A shard kept at MaxUnackedPerShard by its receiver is flow control, not a
// stall: nothing is logged above Debug per record (README), and the shard
// resumes only once a quarter of the limit is acked, not after each ack. A
// pause that lasts (LeaseDuration) is a Warn, once, and its end an Info
// with its length (issue 27, item 6: 96 Warn and Info pairs for 300 records
// before).
func TestAShardAtItsUnackedLimitLogsAStallOnce(t *testing.T) {
	noLeak(t)
	synctest.Test(t, func(t *testing.T) {
		kin := kinesisfake.New(kinesisfake.Options{})
		kin.CreateStream("s", 1)
		for i := range 300 {
			if _, _, err := kin.PutRecord("s", "k", fmt.Appendf(nil, "s/k:%d", i)); err != nil {
				t.Fatal(err)
			}
		}
		g := newSchedGroup(t, kin)
		logs := &lineCounter{counts: map[string]int{"level=WARN msg=\"kcl: shard paused": 0, "level=INFO msg=\"kcl: shard resumed": 0}}
		w := g.newWorker("w", func(o *Options) {
			o.MaxUnackedPerShard, o.BufferSize = 8, -1
			o.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
		})
		ctx, cancel := context.WithCancel(context.Background())
		w.cancel = cancel
		ch := w.c.Consume(ctx)
		hold := make(chan struct{})
		var release sync.Once
		t.Cleanup(func() { release.Do(func() { close(hold) }) }) // before the group stops: cleanups run last first
		go func() {
			defer close(w.done)
			n := 0
			for r := range ch {
				n++
				if n == 200 { // a stall: this record is acked only later, so the acked prefix stops at it
					go func() { <-hold; r.Ack() }()
					continue
				}
				time.AfterFunc(5*time.Millisecond, r.Ack)
			}
		}()
		time.Sleep(30 * time.Second)
		require.Equal(t, 0, logs.get("level=INFO msg=\"kcl: shard resumed"), "no stall has ended yet")
		require.Equal(t, 1, logs.get("level=WARN msg=\"kcl: shard paused"), "one stall, one warning")
		release.Do(func() { close(hold) })
		time.Sleep(5 * time.Second)
		require.Equal(t, 1, logs.get("level=INFO msg=\"kcl: shard resumed"), "its end, once")
		require.Equal(t, 1, logs.get("level=WARN msg=\"kcl: shard paused"))
	})
}
