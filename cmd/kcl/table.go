package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/kclgo/kcl/internal/leaseitem"
)

// defaultLeaseDuration is kcl's default Options.LeaseDuration: a worker
// whose heartbeat is unchanged this long is dead.
const defaultLeaseDuration = 10 * time.Second

// snapshot is one read of the whole lease table, classified and read as
// kcl's workers read it (leaseitem.Read).
type snapshot struct {
	leases  map[string]leaseitem.Lease // by leaseKey
	beats   map[string]leaseitem.Beat  // by worker ID
	kcl     []string                   // keys of kcl's other items
	java    []string                   // "key (entityType)" of the Java KCL's non-lease items
	unknown []string                   // items not understood, each with why
	// unread are the keys of the items not understood, with why: reset
	// names one that is a listed shard's lease instead of taking it for
	// none.
	unread map[string]string
}

// readTable scans the whole table with consistent reads.
func readTable(ctx context.Context, db DynamoDB, table string) (snapshot, error) {
	snap := snapshot{leases: map[string]leaseitem.Lease{}, beats: map[string]leaseitem.Beat{}, unread: map[string]string{}}
	in := &dynamodb.ScanInput{TableName: aws.String(table), ConsistentRead: aws.Bool(true)}
	for {
		out, err := db.Scan(ctx, in)
		var notFound *types.ResourceNotFoundException
		if errors.As(err, &notFound) {
			return snapshot{}, fmt.Errorf("lease table %q not found (check -app, -table and the AWS region)", table)
		}
		if err != nil {
			return snapshot{}, fmt.Errorf("lease table %q: %w", table, err)
		}
		for _, item := range out.Items {
			snap.add(leaseitem.Read(item))
		}
		if len(out.LastEvaluatedKey) == 0 {
			slices.Sort(snap.kcl)
			slices.Sort(snap.java)
			slices.Sort(snap.unknown)
			return snap, nil
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
}

// add files one item read. The group item is kcl's own bookkeeping,
// which every running group has: nothing to note unless it cannot be read.
func (s *snapshot) add(it leaseitem.Item) {
	switch {
	case it.Kind == leaseitem.KindKCL:
		s.kcl = append(s.kcl, it.Key)
	case it.Kind == leaseitem.KindJava:
		s.java = append(s.java, fmt.Sprintf("%s (%s)", it.Key, it.Entity))
	case it.Err != nil:
		why := it.Err.Error()
		var e *leaseitem.Error
		if errors.As(it.Err, &e) {
			why = e.Reason()
		}
		name := strconv.Quote(it.Key)
		if it.Key == "" {
			name = "without a key"
		}
		s.unknown = append(s.unknown, fmt.Sprintf("item %s not understood: %s", name, why))
		if it.Key != "" {
			s.unread[it.Key] = why
		}
	case it.Kind == leaseitem.KindLease:
		s.leases[it.Key] = it.Lease
	case it.Kind == leaseitem.KindBeat:
		s.beats[it.Beat.Worker] = it.Beat
	}
}

// watch is the liveness watch: two reads of the table, a lease duration
// apart. An item whose sign (leaseitem.Sign) changed between them, or
// that appeared, moved within a lease duration; one that did not stood
// still for one. That is the observer's clock of kcl's workers, made
// cheap. Whom a lease shows alive is then their rule,
// leaseitem.Liveness.
type watch struct {
	before, after snapshot
	watched       time.Duration
}

// observe reads the table, waits as long as lw says for it (e.wait),
// noting on e.progress (unless quiet) how long and why, and reads it again.
func observe(ctx context.Context, e *env, db DynamoDB, table string, lw *leaseWatch, why string, quiet bool) (watch, error) {
	before, err := readTable(ctx, db, table)
	if err != nil {
		return watch{}, err
	}
	d := lw.of(before)
	if !quiet {
		fmt.Fprintf(e.progress, "watching lease table %s for %v %s ...\n", table, d, why)
	}
	if err := e.wait(ctx, d); err != nil {
		return watch{}, fmt.Errorf("watching lease table %q: %w", table, err)
	}
	after, err := readTable(ctx, db, table)
	if err != nil {
		return watch{}, err
	}
	return watch{before: before, after: after, watched: d}, nil
}

// beatMoved reports whether worker id's heartbeat item moved during the
// watch.
func (w watch) beatMoved(id string) bool {
	b, ok := w.after.beats[id]
	if !ok {
		return false
	}
	a, seen := w.before.beats[id]
	return !seen || a.Sign() != b.Sign()
}

// liveness is what the watch saw of the items that tell whether the
// reader of lease l lives.
func (w watch) liveness(l leaseitem.Lease) leaseitem.Liveness {
	b, beats := w.after.beats[l.Owner]
	prev, seen := w.before.leases[l.Key]
	return leaseitem.Liveness{
		Owner: l.Owner, CheckpointOwner: l.CheckpointOwner,
		OwnerBeats: beats, OwnerLive: w.beatMoved(l.Owner),
		LeaseLive: !seen || prev.Sign() != l.Sign(),
		OwnerBeat: l.OwnerBeat(), JudgedBeat: b.Counter,
	}
}

// alive reports whether worker id showed a sign of life during the watch:
// its heartbeat item moved, or a lease shows it alive (a Java KCL worker,
// which renews its leases, or the old owner of a Java KCL 3.x hand-off).
func (w watch) alive(id string) bool {
	if w.beatMoved(id) {
		return true
	}
	for _, l := range w.after.leases {
		if w.liveness(l).Alive() == id {
			return true
		}
	}
	return false
}

// workers returns every worker the second read names, sorted: those with a
// heartbeat item, the owners of leases and the old owners of Java KCL 3.x
// hand-offs (checkpointOwner), which still read them.
func (w watch) workers() []string {
	var ids []string
	for id := range w.after.beats {
		ids = append(ids, id)
	}
	for _, l := range w.after.leases {
		for _, id := range []string{l.Owner, l.CheckpointOwner} {
			if id != "" {
				ids = append(ids, id)
			}
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// live returns the workers alive during the watch, sorted.
func (w watch) live() []string {
	var ids []string
	for _, id := range w.workers() {
		if w.alive(id) {
			ids = append(ids, id)
		}
	}
	return ids
}

// sortedLeases returns the leases of a snapshot in key order.
func (s snapshot) sortedLeases() []leaseitem.Lease {
	out := make([]leaseitem.Lease, 0, len(s.leases))
	for _, l := range s.leases {
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b leaseitem.Lease) int { return strings.Compare(a.Key, b.Key) })
	return out
}

func isConditionFailed(err error) bool {
	var ccf *types.ConditionalCheckFailedException
	return errors.As(err, &ccf)
}

// bumpGroup tells a running group to read the whole table at once, as kcl's
// workers do after a change others must act on: it adds one to the epoch of
// the group item (kcl-group), if there is one. Without it the workers learn
// of the change a little later, from their own reads; so a failure is
// ignored.
func bumpGroup(ctx context.Context, db DynamoDB, table string) {
	_, _ = db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 &table,
		Key:                       leaseitem.ItemKey(leaseitem.GroupKey),
		ConditionExpression:       aws.String("attribute_exists(" + leaseitem.AttrLeaseKey + ")"),
		UpdateExpression:          aws.String("ADD " + leaseitem.AttrEpoch + " :one"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":one": leaseitem.Number(1)},
	})
}

// multiStream reports whether the table holds leases of the multi-stream
// layout (Options.Streams, or the Java KCL's multi-stream mode): keys
// account:stream:creationEpoch:shardId.
func (s snapshot) multiStream() bool {
	for _, l := range s.leases {
		if leaseitem.MultiStream(l.Key) {
			return true
		}
	}
	return false
}

// streamLeases returns the leases of the stream with identifier streamID
// ("" for the single-stream layout) by bare shard ID, and the table's other
// leases in key order.
func (s snapshot) streamLeases(streamID string) (map[string]leaseitem.Lease, []leaseitem.Lease) {
	mine := map[string]leaseitem.Lease{}
	var others []leaseitem.Lease
	for _, l := range s.sortedLeases() {
		if l.StreamID() == streamID {
			mine[l.ShardID()] = l
		} else {
			others = append(others, l)
		}
	}
	return mine, others
}

// streamIdentifier returns the identifier of stream in a multi-stream lease
// table, as kcl's workers build it (leaseitem.StreamID), from
// DescribeStreamSummary.
func streamIdentifier(ctx context.Context, kin Kinesis, stream string) (string, error) {
	arn, created, err := describeStream(ctx, kin, stream)
	if err != nil {
		return "", err
	}
	id, ok := leaseitem.StreamID(arn, created)
	if !ok {
		return "", fmt.Errorf("stream %q: DescribeStreamSummary gave no account in its ARN %q, which the multi-stream lease keys need", stream, arn)
	}
	return id, nil
}

// describeStream returns the stream's ARN and creation time.
func describeStream(ctx context.Context, kin Kinesis, stream string) (arn string, created time.Time, err error) {
	in := &kinesis.DescribeStreamSummaryInput{}
	in.StreamName, in.StreamARN = streamInput(stream)
	out, err := kin.DescribeStreamSummary(ctx, in)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("stream %q: DescribeStreamSummary: %w", stream, err)
	}
	sum := out.StreamDescriptionSummary
	if sum == nil || sum.StreamCreationTimestamp == nil {
		return "", time.Time{}, fmt.Errorf("stream %q: DescribeStreamSummary gave no creation time", stream)
	}
	return aws.ToString(sum.StreamARN), *sum.StreamCreationTimestamp, nil
}

// leasesOf returns the leases of stream in the table as last read, by bare
// shard ID, the table's other leases, and the stream's identifier ("" in a
// single-stream table). A table with multi-stream leases costs one
// DescribeStreamSummary; it is taken for a single-stream table (its
// multi-stream keys strays, each a problem) if none of them is the
// stream's and it holds single-stream leases.
func leasesOf(ctx context.Context, kin Kinesis, stream string, snap snapshot) (map[string]leaseitem.Lease, []leaseitem.Lease, string, error) {
	var id string
	if snap.multiStream() {
		var err error
		if id, err = streamIdentifier(ctx, kin, stream); err != nil {
			return nil, nil, "", err
		}
	}
	mine, others := snap.streamLeases(id)
	if id != "" && len(mine) == 0 {
		if single, rest := snap.streamLeases(""); len(single) > 0 {
			return single, rest, "", nil
		}
	}
	return mine, others, id, nil
}

// streamInput names the stream given by -stream in a request: by ARN when
// it is one, else by name. Kinesis looks a name up in the caller's own
// account, and consults a stream's resource policy (another account's
// stream) only for a request that carries its ARN.
func streamInput(stream string) (name, arn *string) {
	if strings.HasPrefix(stream, "arn:") {
		return nil, aws.String(stream)
	}
	return aws.String(stream), nil
}
