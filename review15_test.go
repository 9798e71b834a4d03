//go:build go1.25

package kcl

// Review 15: the LATEST start on Kinesis's clock (issue 27 items 2 and 7).

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/stretchr/testify/require"

	"github.com/kclgo/kcl/internal/kinesisfake"
)

// A worker reads two streams, each through its own client
// (Options.KinesisFor), whose answers carry Dates of two clocks: stream s's
// Kinesis is right, stream t's endpoint (another region's proxy, an
// emulator) writes a Date two minutes ahead. The start stored in s's LATEST
// lease must be on s's own Kinesis's clock. The worker keeps one estimate
// for all its streams, the last Date noted (t's, listed after s's), so s's
// start is a minute in s's Kinesis's future: the next owner, taking the
// lease before any ack, waits for it and skips what the first owner
// delivered without acks.
func TestReview15AStreamsStartIsOnItsOwnKinesissClock(t *testing.T) {
	noLeak(t)
	synctest.Test(t, func(t *testing.T) {
		const skew = 2 * time.Minute
		kin := kinesisfake.New(kinesisfake.Options{})
		kin.CreateStream("s", 1)
		other := kinesisfake.New(kinesisfake.Options{Now: func() time.Time { return time.Now().Add(skew) }})
		other.CreateStream("t", 1)
		g := newSchedGroup(t, kin)
		opts := func(o *Options) {
			o.InitialPosition, o.StreamName, o.Streams = Latest, "", []string{"s", "t"}
			o.KinesisFor = func(stream string) KinesisAPI {
				if stream == "t" {
					return other
				}
				return nil // the consumer's client, kin
			}
		}
		a := g.newWorker("a", opts)
		ctx, cancel := context.WithCancel(context.Background())
		a.cancel = cancel
		ch := a.c.Consume(ctx)
		go func() {
			defer close(a.done)
			for r := range ch {
				g.note(a.name, r) // never acked
			}
		}()
		time.Sleep(2 * time.Second) // a takes both leases and opens both shards at LATEST
		ctx, stopProducing := context.WithCancel(context.Background())
		g.produce(ctx, "s", 4, 100*time.Millisecond)
		time.Sleep(5 * time.Second)
		stopProducing()
		time.Sleep(time.Second)
		first := g.deliveries()
		require.NotEmpty(t, first)
		a.cancel() // its release leaves s's lease at LATEST, with the start a stored
		<-a.done
		b := g.consume(g.newWorker("b", opts))
		time.Sleep(2 * time.Minute) // past a start a minute ahead
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
		require.Empty(t, lost, "delivered by a without an ack, never by b (%d of %d)", len(lost), len(first))
	})
}

// deregisterOnFirstSubscribe is the in-process Kinesis whose fan-out
// consumer is deregistered just as the first subscription is asked for:
// that subscription is refused (ResourceNotFound) before it opened
// anything, and kcl registers the consumer again (renewConsumer).
type deregisterOnFirstSubscribe struct {
	*kinesisfake.Server
	done atomic.Bool
}

func (k *deregisterOnFirstSubscribe) SubscribeToShard(ctx context.Context, in *kinesis.SubscribeToShardInput, opts ...func(*kinesis.Options)) (*kinesis.SubscribeToShardOutput, error) {
	if k.done.CompareAndSwap(false, true) {
		if _, err := k.Server.DeregisterStreamConsumer(ctx, &kinesis.DeregisterStreamConsumerInput{ConsumerARN: in.ConsumerARN}); err != nil {
			return nil, err
		}
	}
	return k.Server.SubscribeToShard(ctx, in, opts...)
}

// Under fan-out at LATEST, a first subscription refused before it opened
// anything (its consumer deregistered meanwhile, then registered again) is
// asked for again at the lease's start, a minute before the take, not at
// LATEST: records written before the consumer started are delivered, with
// no lease move (issue 27 item 7's rule: startingPosition counts a refused
// open as the first).
func TestReview15AFirstSubscriptionRefusedAtLatestDeliversNothingOlder(t *testing.T) {
	noLeak(t)
	synctest.Test(t, func(t *testing.T) {
		kin := kinesisfake.New(kinesisfake.Options{})
		kin.CreateStream("s", 1)
		g := newSchedGroup(t, kin)
		ctx, stopProducing := context.WithCancel(context.Background())
		g.produce(ctx, "s", 4, 100*time.Millisecond)
		time.Sleep(5 * time.Second)
		stopProducing()
		time.Sleep(3 * time.Second)
		start := time.Now()
		kd := &deregisterOnFirstSubscribe{Server: kin}
		w := g.consume(g.newWorker("w", func(o *Options) {
			o.InitialPosition, o.EnhancedFanOut, o.ConsumerName, o.Kinesis = Latest, true, "c", kd
		}))
		time.Sleep(10 * time.Second)
		require.True(t, kd.done.Load(), "the first subscription was refused")
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
		require.NotEmpty(t, got)
		require.Empty(t, early, "records put before the start delivered (%d)", len(early))
	})
}
