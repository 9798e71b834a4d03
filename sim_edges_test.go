//go:build go1.25

package kcl

// The simulation's edges (issue 27): enhanced fan-out, with first
// subscriptions that fail before their first event and retention that
// overtakes a subscribed reader; worker clocks that run ahead of Kinesis's;
// and a KPL producer whose shard map is older than a split. Each is drawn
// from a random source of its own (drawEdges), so that the seeds drawn
// before keep their set-up and schedule.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/kclgo/kcl/internal/kinesisfake"
)

var simFanOutOn = flag.Bool("sim.fanout", true, "TestSimulation: let some seeds read with enhanced fan-out (false: every seed polls, its other draws unchanged)")

// simEdges is the part of a seed's set-up drawn by drawEdges.
type simEdges struct {
	// fanOut: every worker reads with EnhancedFanOut, from a consumer the
	// first worker registers. subTTL is how long the fake keeps a
	// subscription (AWS: 5 minutes), heartbeat how long it stays silent
	// without records (AWS: 5 s).
	fanOut            bool
	subTTL, heartbeat time.Duration
	// failFirst is the chance that a shard's first subscription fails
	// before its first event (a dropped connection): the resubscription
	// must open where the first one stood.
	failFirst float64
	// overtakes are more times retention overtakes a reader (overtake),
	// drawn here for fan-out seeds.
	overtakes []time.Duration
	seed      uint64 // for the draws made while running
}

// drawEdges draws a seed's edges from a source of their own.
func drawEdges(seed uint64, chaos time.Duration) simEdges {
	rng := rand.New(rand.NewPCG(seed^0xed9e5, seed+0xed9e))
	var e simEdges
	e.seed = rng.Uint64()
	if rng.IntN(3) == 0 {
		e.fanOut = true
		e.subTTL = time.Duration(300+rng.IntN(2700)) * time.Millisecond
		e.heartbeat = time.Duration(100+rng.IntN(900)) * time.Millisecond
		if rng.IntN(2) == 0 {
			e.failFirst = 0.2 + 0.6*rng.Float64()
		}
		for range rng.IntN(3) {
			e.overtakes = append(e.overtakes, time.Duration(rng.Int64N(int64(chaos))))
		}
	}
	if !*simFanOutOn {
		e.fanOut, e.failFirst, e.overtakes = false, 0, nil
	}
	return e
}

func (e simEdges) String() string {
	var b strings.Builder
	if e.fanOut {
		fmt.Fprintf(&b, " fanOut(subTTL=%v heartbeat=%v failFirst=%.2f overtakes=%d)", e.subTTL, e.heartbeat, e.failFirst, len(e.overtakes))
	}
	return b.String()
}

// kinesisOptions are the fake's options for the edges.
func (e simEdges) kinesisOptions(o *kinesisfake.Options) {
	if e.fanOut {
		o.SubscriptionTTL, o.FanOutHeartbeat = e.subTTL, e.heartbeat
	}
}

// edgeOptions sets a worker's options for the edges.
func (s *simRun) edgeOptions(opts *Options) {
	if s.cfg.edges.fanOut {
		opts.EnhancedFanOut, opts.ConsumerName = true, "sim-app"
	}
}

// errSimDropped is a subscription dropped before its first event.
var errSimDropped = errors.New("sim: subscription dropped before its first event")

// simSubscriptions is what simKinesis keeps of subscriptions: how many
// each shard had, and the draws of failFirst.
type simSubscriptions struct {
	mu        sync.Mutex
	count     map[string]int
	rng       *rand.Rand
	failFirst float64
	dropped   int
}

// SubscribeToShard notes a shard's first open as GetShardIterator does,
// and may drop the shard's first subscription before its first event.
func (k *simKinesis) SubscribeToShard(ctx context.Context, in *kinesis.SubscribeToShardInput, opts ...func(*kinesis.Options)) (*kinesis.SubscribeToShardOutput, error) {
	out, err := k.Server.SubscribeToShard(ctx, in, opts...)
	if err != nil {
		return out, err
	}
	stream, _, _ := strings.Cut(strings.TrimPrefix(aws.ToString(in.ConsumerARN), kinesisfake.StreamARN("")), "/consumer/")
	shard := k.sts.qualify(stream, aws.ToString(in.ShardId))
	k.noteOpen(shard, time.Now())
	subs := &k.subs
	subs.mu.Lock()
	first := subs.count[shard] == 0
	subs.count[shard]++
	drop := first && subs.failFirst > 0 && subs.rng.Float64() < subs.failFirst
	if drop {
		subs.dropped++
	}
	subs.mu.Unlock()
	if drop {
		es := out.GetStream()
		es.Reader = &simDroppedReader{inner: es.Reader, events: closedEvents()}
	}
	return out, nil
}

func closedEvents() chan types.SubscribeToShardEventStream {
	ch := make(chan types.SubscribeToShardEventStream)
	close(ch)
	return ch
}

// simDroppedReader is a subscription whose connection dropped before its
// first event: no event, and an error.
type simDroppedReader struct {
	inner  kinesis.SubscribeToShardEventStreamReader
	events chan types.SubscribeToShardEventStream
}

func (r *simDroppedReader) Events() <-chan types.SubscribeToShardEventStream { return r.events }
func (r *simDroppedReader) Close() error                                     { return r.inner.Close() }
func (r *simDroppedReader) Err() error                                       { return errSimDropped }

// edgeCounts counts what the edges produced in the run.
func (s *simRun) edgeCounts() map[string]int {
	out := map[string]int{}
	if s.cfg.edges.fanOut {
		out["fan-out seeds"]++
		out["subscriptions"] = int(s.kin.Calls(kinesisfake.OpSubscribeToShard))
		k := &s.opens.subs
		k.mu.Lock()
		out["first subscriptions dropped before their first event"] = k.dropped
		k.mu.Unlock()
	}
	return out
}
