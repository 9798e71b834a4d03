package kcl

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/kclgo/kcl/internal/kinesisfake"
)

// simStreams are a run's streams and how its log names their shards and
// keys. With one stream (Options.StreamName) a shard is named by its ID, as
// the lease table keys it, and a key is the producer's. With several
// (Options.Streams) shard IDs repeat across streams (each has its
// shardId-000000000000), and so do sequence numbers (the fake numbers each
// stream apart), so the log names every shard, and every producer key (so
// every record's data), "stream/x": a delivery (Record.StreamARN and
// ShardID), a lease-table write (lease key
// account:stream:creationEpoch:shardId) and a put (the fake's ledger of the
// stream) of one shard then carry one name, and the checker's
// cross-references never mix two streams.
//
// A stream deleted and created again under its name is another stream (an
// incarnation, numbered by its generation from 0): a new creation time,
// shard IDs from shardId-000000000000 again, sequence numbers of its own
// (above the old ones in the fake and on AWS, but nothing here relies on
// that), and the same ARN and name. So a shard of generation g > 0 is named
// "stream@g/x" in either mode (generation 0 keeps the names above), and so
// is a put's key for the checker's per-key order: a key's order is kept
// within an incarnation only.
//   - A put's generation is its place in the fake's ledger of the name
//     (Records): each incarnation's records follow the earlier ones'.
//   - A delivery's is its record's: the Record carries the ARN, which the
//     incarnations share, so its data (unique in a run) says which
//     incarnation it was written to (genOf, noted when the incarnation was
//     deleted; data not there is of the current one).
//   - A lease's is its key's creation epoch (multi-stream), or the
//     creation time kcl stamps on a single-stream lease (streamCreated).
//
// names and byARN are immutable; the rest is guarded by mu.
type simStreams struct {
	names []string
	byARN map[string]string // stream ARN -> name

	mu    sync.Mutex
	byID  map[string]simIncarnation // multi-stream identifier, account:stream:creationEpoch -> its incarnation
	incs  map[string][]simIncarnation
	gone  map[string]bool  // deleted, not yet created again
	genOf map[string]int   // data of a record of a deleted incarnation -> its generation
	stamp map[int64]string // creation time (Unix ms) -> "stream@gen": single-stream leases
}

// simIncarnation is one incarnation of a stream name.
type simIncarnation struct {
	name    string
	gen     int
	created time.Time
	first   int // index in the name's ledger (kinesisfake Records) of its first record
}

// newSimStreams creates the streams, of shards shards each, in kin.
func newSimStreams(t testing.TB, kin *kinesisfake.Server, shards int, names ...string) *simStreams {
	sts := emptySimStreams(names)
	for _, name := range names {
		arn := kin.CreateStream(name, shards)
		out, err := kin.DescribeStreamSummary(context.Background(), &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(name)})
		if err != nil {
			t.Fatalf("DescribeStreamSummary: %v", err)
		}
		sts.byARN[arn] = name
		sts.note(name, *out.StreamDescriptionSummary.StreamCreationTimestamp, 0)
	}
	return sts
}

func emptySimStreams(names []string) *simStreams {
	return &simStreams{names: names, byARN: map[string]string{}, byID: map[string]simIncarnation{},
		incs: map[string][]simIncarnation{}, gone: map[string]bool{}, genOf: map[string]int{}, stamp: map[int64]string{}}
}

// simStreamsAt returns the naming of streams of the fake created at
// created, with no Kinesis behind them: for hand-made logs.
func simStreamsAt(created time.Time, names ...string) *simStreams {
	sts := emptySimStreams(names)
	for _, name := range names {
		sts.byARN[kinesisfake.StreamARN(name)] = name
		sts.note(name, created, 0)
	}
	return sts
}

// note records a new incarnation of name created at created, whose records
// start at ledger index first. Callers hold mu, or own sts alone.
func (n *simStreams) note(name string, created time.Time, first int) simIncarnation {
	inc := simIncarnation{name: name, gen: len(n.incs[name]), created: created, first: first}
	n.incs[name] = append(n.incs[name], inc)
	// The Java KCL's identifier (StreamIdentifier.serialize), built here
	// apart from kcl's own code.
	n.byID[kinesisfake.Account+":"+name+":"+strconv.FormatInt(created.Unix(), 10)] = inc
	n.stamp[created.UnixMilli()] = n.label(name, inc.gen)
	return inc
}

// label is how the log names incarnation gen of stream: the name, or
// "name@gen" after the first.
func (n *simStreams) label(stream string, gen int) string {
	if gen == 0 {
		return stream
	}
	return stream + "@" + strconv.Itoa(gen)
}

func (n *simStreams) multi() bool { return len(n.names) > 1 }

// pick draws a stream; with one, it draws nothing.
func (n *simStreams) pick(rng *rand.Rand) string {
	if !n.multi() {
		return n.names[0]
	}
	return n.names[rng.IntN(len(n.names))]
}

// qualify names x, a shard ID of the current incarnation of stream, as the
// log does.
func (n *simStreams) qualify(stream, x string) string {
	return n.qualifyGen(stream, n.gen(stream), x)
}

// qualifyGen names x, a shard ID (or a bare producer key) of incarnation gen
// of stream.
func (n *simStreams) qualifyGen(stream string, gen int, x string) string {
	if !n.multi() && gen == 0 {
		return x
	}
	return n.label(stream, gen) + "/" + x
}

// qualifyKey names a producer's key k of stream, whatever its incarnation:
// the partition key it writes with.
func (n *simStreams) qualifyKey(stream, k string) string {
	if !n.multi() {
		return k
	}
	return stream + "/" + k
}

// keyOf names partition key pk (qualifyKey's) of a record of incarnation
// gen of stream, for the checker's per-key order.
func (n *simStreams) keyOf(stream string, gen int, pk string) string {
	if gen == 0 {
		return pk
	}
	return n.qualifyGen(stream, gen, strings.TrimPrefix(pk, stream+"/"))
}

// gen returns the generation of the current incarnation of stream (the
// last one created).
func (n *simStreams) gen(stream string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.incs[stream]) - 1
}

// ofRecord names the shard of a delivered record of the current
// incarnation of its stream.
func (n *simStreams) ofRecord(streamARN, shardID string) string {
	name, ok := n.byARN[streamARN]
	if !ok {
		return "unknown-stream(" + streamARN + ")/" + shardID
	}
	return n.qualify(name, shardID)
}

// ofDelivery names the shard of a delivered record, whose data says which
// incarnation of its stream it was written to.
func (n *simStreams) ofDelivery(streamARN, shardID, data string) string {
	name, ok := n.byARN[streamARN]
	if !ok {
		return "unknown-stream(" + streamARN + ")/" + shardID
	}
	n.mu.Lock()
	gen, old := n.genOf[data]
	if !old {
		gen = len(n.incs[name]) - 1
	}
	n.mu.Unlock()
	return n.qualifyGen(name, gen, shardID)
}

// ofLeaseKey names the shard of a lease key of a multi-stream table,
// account:stream:creationEpoch:shardId, whose identifier must be one of
// the run's incarnations (an unknown one stays apart, so that a delivery
// under it has no take); with one stream, the shard ID of the first
// incarnation (ofLease tells them apart).
func (n *simStreams) ofLeaseKey(key string) string {
	if !n.multi() {
		return key
	}
	i := strings.LastIndexByte(key, ':')
	if i < 0 {
		return "unknown-lease-key(" + key + ")"
	}
	n.mu.Lock()
	inc, ok := n.byID[key[:i]]
	n.mu.Unlock()
	if !ok {
		return "unknown-lease-key(" + key + ")"
	}
	return n.qualifyGen(inc.name, inc.gen, key[i+1:])
}

// ofLease names the shard of the lease at key, stamped with its stream's
// creation time (Unix ms; 0: unstamped). In a single-stream table the
// stamp is the incarnation (unstamped: the first); in a multi-stream one
// the key says it.
func (n *simStreams) ofLease(key string, streamCreated int64) string {
	if n.multi() || streamCreated == 0 {
		return n.ofLeaseKey(key)
	}
	n.mu.Lock()
	label, ok := n.stamp[streamCreated]
	n.mu.Unlock()
	if !ok {
		return "unknown-incarnation(" + strconv.FormatInt(streamCreated, 10) + ")/" + key
	}
	if label == n.names[0] {
		return key
	}
	return label + "/" + key
}

// genOfPut returns the generation of the i-th record of the name's ledger.
func (n *simStreams) genOfPut(stream string, i int) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	incs := n.incs[stream]
	for g := len(incs) - 1; g > 0; g-- {
		if incs[g].first <= i {
			return g
		}
	}
	return 0
}

// missing reports whether stream is being deleted and created again: from
// just before its deletion until just after its new incarnation exists.
func (n *simStreams) missing(stream string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.gone[stream]
}

// recreate deletes stream from kin, and returns a function that creates it
// again with shards shards (no earlier than a second later, so that the
// creation epoch, in seconds, differs), which returns the new incarnation.
// Between the two, missing reports it; every record of the old incarnation
// is noted (genOf) before the new one exists.
func (n *simStreams) recreate(kin *kinesisfake.Server, stream string) (create func(shards int) (simIncarnation, error), err error) {
	n.mu.Lock()
	n.gone[stream] = true
	n.mu.Unlock()
	if err := kin.DeleteStream(stream); err != nil {
		return nil, err
	}
	ledger := kin.Records(stream) // the old incarnations' only: no stream of the name exists now
	deleted := time.Now()
	n.mu.Lock()
	incs := n.incs[stream]
	gen := incs[len(incs)-1].gen
	for _, r := range ledger[incs[len(incs)-1].first:] {
		n.genOf[string(r.Data)] = gen
	}
	n.mu.Unlock()
	return func(shards int) (simIncarnation, error) {
		if d := time.Second - time.Since(deleted); d > 0 {
			time.Sleep(d)
		}
		// Under mu, so that no delivery of the new incarnation's records is
		// named before it is noted. The fake creates it at time.Now(): in
		// virtual time, the clock cannot move while this goroutine runs.
		n.mu.Lock()
		created := time.Now()
		kin.CreateStream(stream, shards)
		inc := n.note(stream, created, len(ledger))
		delete(n.gone, stream)
		n.mu.Unlock()
		out, err := kin.DescribeStreamSummary(context.Background(), &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(stream)})
		if err == nil && !out.StreamDescriptionSummary.StreamCreationTimestamp.Equal(created) {
			return inc, fmt.Errorf("stream %s created at %v, noted at %v", stream, *out.StreamDescriptionSummary.StreamCreationTimestamp, created)
		}
		return inc, nil // an error is a fault the run injects: nothing to check
	}, nil
}
