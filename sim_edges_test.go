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
	"crypto/md5"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"google.golang.org/protobuf/encoding/protowire"

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
	// skew: InitialPosition is AtTimestamp(the group's start + the
	// worker's skew), the skew a clock that runs fast: 0 for most
	// WorkerIDs, up to maxSkew for some (skewOf). Kinesis refuses a
	// start ahead of its clock; kcl must wait for it, and deliver every
	// record written from the latest start any worker may store.
	skew    bool
	maxSkew time.Duration
	// kpl: one more producer aggregates KPL-style by a shard map it
	// refreshes every kplRefresh, and puts again the user records of an
	// aggregate that landed on another shard (simKPL). Not with streams
	// created again (their names follow each record's data).
	kpl        bool
	kplRefresh time.Duration
	// keepMisplaced: with kpl, the workers set KeepMisplacedAggregates, so
	// a misplaced aggregate's user records are delivered beside the copies
	// the KPL put again (duplicate class e).
	keepMisplaced bool
	seed          uint64 // for the draws made while running
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
	if rng.IntN(4) == 0 {
		e.skew, e.maxSkew = true, time.Duration(200+rng.IntN(2800))*time.Millisecond
	}
	if rng.IntN(3) == 0 {
		e.kpl, e.kplRefresh = true, time.Duration(100+rng.IntN(1500))*time.Millisecond
	}
	if e.kpl {
		e.keepMisplaced = rng.IntN(3) == 0 // drawn last: the draws above keep their seeds
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
	if e.skew {
		fmt.Fprintf(&b, " skew<=%v(AtTimestamp)", e.maxSkew)
	}
	if e.kpl {
		fmt.Fprintf(&b, " kpl(map refreshed every %v", e.kplRefresh)
		if e.keepMisplaced {
			b.WriteString(", KeepMisplacedAggregates")
		}
		b.WriteString(")")
	}
	return b.String()
}

// kinesisOptions are the fake's options for the edges.
func (e simEdges) kinesisOptions(o *kinesisfake.Options) {
	if e.fanOut {
		o.SubscriptionTTL, o.FanOutHeartbeat = e.subTTL, e.heartbeat
	}
}

// simEdgeRun is what a run keeps of its edges.
type simEdgeRun struct {
	mu    sync.Mutex
	start time.Time // the group's start (skew): when its first worker started
}

// edgeOptions sets a worker's options for the edges.
func (s *simRun) edgeOptions(opts *Options, id string) {
	e := s.cfg.edges
	if e.fanOut {
		opts.EnhancedFanOut, opts.ConsumerName = true, "sim-app"
	}
	opts.KeepMisplacedAggregates = e.keepMisplaced
	if e.skew {
		s.edgeRun.mu.Lock()
		if s.edgeRun.start.IsZero() {
			s.edgeRun.start = time.Now()
		}
		start := s.edgeRun.start
		s.edgeRun.mu.Unlock()
		skew := e.skewOf(id)
		opts.InitialPosition = AtTimestamp(start.Add(skew))
		if skew > 0 {
			s.event("%s: clock %v fast: InitialPosition AtTimestamp(start + %v)", id, skew.Round(time.Millisecond), skew.Round(time.Millisecond))
		}
	}
}

// skewOf is how fast WorkerID id's clock runs: the same for every
// incarnation (a host), drawn from the seed and the ID.
func (e simEdges) skewOf(id string) time.Duration {
	var h uint64
	for _, c := range id {
		h = h*31 + uint64(c)
	}
	rng := rand.New(rand.NewPCG(e.seed, h))
	if rng.IntN(2) == 0 {
		return 0
	}
	return time.Duration(1 + rng.Int64N(int64(e.maxSkew)))
}

// skewOwedSince is when records start to be owed with skew: the latest
// start a worker may store in a lease.
func (s *simRun) skewOwedSince() time.Time {
	s.edgeRun.mu.Lock()
	defer s.edgeRun.mu.Unlock()
	return s.edgeRun.start.Add(s.cfg.edges.maxSkew)
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
	var pos types.ShardIteratorType
	if in.StartingPosition != nil {
		pos = in.StartingPosition.Type
	}
	k.noteOpen(shard, time.Now(), pos)
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
	if n := s.cleaned.Load(); n > 0 {
		out["ended leases deleted by kcl's cleanup"] = int(n)
	}
	if s.cfg.edges.fanOut {
		out["fan-out seeds"]++
		out["subscriptions"] = int(s.kin.Calls(kinesisfake.OpSubscribeToShard))
		k := &s.opens.subs
		k.mu.Lock()
		out["first subscriptions dropped before their first event"] = k.dropped
		k.mu.Unlock()
	}
	if s.cfg.edges.skew {
		out["skewed seeds"]++
	}
	if s.cfg.edges.kpl {
		s.kpl.mu.Lock()
		out["KPL seeds"]++
		out["KPL aggregates"] += len(s.kpl.aggs)
		out["KPL aggregates on another shard than predicted (user records put again)"] += s.kpl.reps
		s.kpl.mu.Unlock()
	}
	return out
}

// simKPL is a producer that aggregates user records KPL-style by a shard
// map it refreshes only now and then (and after a wrong shard), as the
// KPL does: an aggregate of one predicted shard is put with the explicit
// hash key of its first user record, so after a split it may land on a
// child that does not own the others' keys. The KPL then puts every user
// record of that aggregate again (its retrier: "Wrong Shard"), by a fresh
// map. Its keys are its own ("p<producers>k<i>").
type simKPL struct {
	mu   sync.Mutex
	aggs map[string][]simUser // the user records of each aggregate, by stream and sequence number
	reps int                  // aggregates that landed on another shard than predicted
	// misplaced are the aggregates (as aggs) with a user record whose key
	// the shard they landed on does not own: kcl drops them whole, as the
	// Java KCL does (Options.KeepMisplacedAggregates), and the KPL has put
	// every user record of them again.
	misplaced map[string]bool
}

// simUser is one user record of an aggregate.
type simUser struct{ key, data string }

// kplAggregate encodes users in the KPL format: magic, a protobuf
// AggregatedRecord (partition key table, records), its MD5.
func kplAggregate(users []simUser) []byte {
	var keys []string
	var body []byte
	index := map[string]uint64{}
	var recs [][]byte
	for _, u := range users {
		i, ok := index[u.key]
		if !ok {
			i = uint64(len(keys))
			index[u.key] = i
			keys = append(keys, u.key)
		}
		var r []byte
		r = protowire.AppendTag(r, 1, protowire.VarintType)
		r = protowire.AppendVarint(r, i)
		r = protowire.AppendTag(r, 3, protowire.BytesType)
		r = protowire.AppendBytes(r, []byte(u.data))
		recs = append(recs, r)
	}
	for _, k := range keys {
		body = protowire.AppendTag(body, 1, protowire.BytesType)
		body = protowire.AppendString(body, k)
	}
	for _, r := range recs {
		body = protowire.AppendTag(body, 3, protowire.BytesType)
		body = protowire.AppendBytes(body, r)
	}
	sum := md5.Sum(body)
	return append(append([]byte{0xF3, 0x89, 0x9A, 0xC2}, body...), sum[:]...)
}

// produceKPL runs the KPL producer p until ctx ends.
func (s *simRun) produceKPL(ctx context.Context, rng *rand.Rand, p int) {
	type mapped struct {
		shards []kinesisTypesShard
		at     time.Time
	}
	maps := map[string]mapped{}
	counters := map[string]int{}
	refresh := s.cfg.edges.kplRefresh
	predict := func(stream, key string) string {
		m := maps[stream]
		if m.shards == nil || time.Since(m.at) > refresh {
			m = mapped{s.openShards(stream), time.Now()}
			maps[stream] = m
		}
		h := new(big.Int).SetBytes(md5Of(key))
		for _, sh := range m.shards {
			if sh.first.Cmp(h) <= 0 && h.Cmp(sh.last) <= 0 {
				return sh.id
			}
		}
		return ""
	}
	put := func(stream string, users []simUser) (again []simUser) {
		byShard := map[string][]simUser{}
		var order []string
		for _, u := range users {
			sh := predict(stream, u.key)
			if _, ok := byShard[sh]; !ok {
				order = append(order, sh)
			}
			byShard[sh] = append(byShard[sh], u)
		}
		for _, predicted := range order {
			us := byShard[predicted]
			ehk := new(big.Int).SetBytes(md5Of(us[0].key)).String()
			got, seq, err := s.kin.PutRecordHashKey(stream, us[0].key, ehk, kplAggregate(us))
			if err != nil {
				if !s.sts.missing(stream) {
					s.t.Errorf("PutRecordHashKey: %v", err)
				}
				return nil
			}
			misplaced := got != predicted && s.strays(stream, got, us)
			s.kpl.mu.Lock()
			s.kpl.aggs[stream+"/"+seq] = us
			if got != predicted {
				s.kpl.reps++
			}
			if misplaced {
				s.kpl.misplaced[stream+"/"+seq] = true
			}
			s.kpl.mu.Unlock()
			if got != predicted { // the KPL's retrier: every user record again, by a fresh map
				delete(maps, stream)
				again = append(again, us...)
			}
		}
		return again
	}
	for ctx.Err() == nil {
		stream := s.sts.pick(rng)
		var users []simUser
		for range 2 + rng.IntN(6) {
			key := s.sts.qualifyKey(stream, fmt.Sprintf("p%dk%d", p, rng.IntN(s.cfg.keys)))
			counters[key]++
			users = append(users, simUser{key, fmt.Sprintf("%s:%d", key, counters[key])})
		}
		for again := put(stream, users); len(again) > 0; again = put(stream, again) {
		}
		sleep(ctx, time.Duration(3+rng.IntN(12))*time.Millisecond)
	}
}

// strays reports whether a key of users is outside the hash-key range of
// shard, a shard of stream (closed since, perhaps).
func (s *simRun) strays(stream, shard string, users []simUser) bool {
	shards, err := s.kin.Shards(stream)
	if err != nil {
		s.t.Errorf("Shards: %v", err)
		return false
	}
	for _, sh := range shards {
		if *sh.ShardId != shard {
			continue
		}
		first, _ := new(big.Int).SetString(*sh.HashKeyRange.StartingHashKey, 10)
		last, _ := new(big.Int).SetString(*sh.HashKeyRange.EndingHashKey, 10)
		for _, u := range users {
			h := new(big.Int).SetBytes(md5Of(u.key))
			if h.Cmp(first) < 0 || h.Cmp(last) > 0 {
				return true
			}
		}
	}
	return false
}

// kplMisplaced reports whether the aggregate stream/seq is misplaced
// (simKPL.misplaced).
func (s *simRun) kplMisplaced(stream, seq string) bool {
	s.kpl.mu.Lock()
	defer s.kpl.mu.Unlock()
	return s.kpl.misplaced[stream+"/"+seq]
}

func md5Of(s string) []byte {
	sum := md5.Sum([]byte(s))
	return sum[:]
}

// kplUsers returns the user records of the aggregate stream/seq that the
// KPL producer put, or nil for a plain record.
func (s *simRun) kplUsers(stream, seq string) []simUser {
	s.kpl.mu.Lock()
	defer s.kpl.mu.Unlock()
	return s.kpl.aggs[stream+"/"+seq]
}
