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
)

// The lease table's layout, as kcl writes it (leasetable.go of the kcl
// package, whose reading code is not exported: keep the two in step;
// TestResetToATimeReplaysFromThere checks that status understands a table
// real kcl workers wrote). The attribute names are the Java KCL 2.x's, plus
// kcl's own.
const (
	attrLeaseKey      = "leaseKey"
	attrOwner         = "leaseOwner"
	attrCounter       = "leaseCounter"
	attrCheckpoint    = "checkpoint"
	attrCheckpointSub = "checkpointSubSequenceNumber"
	attrOwnerSwitches = "ownerSwitchesSinceCheckpoint"
	attrParents       = "parentShardId"
	attrHandoff       = "handoffTo"         // kcl: a worker asked the owner to hand the lease over
	attrStopping      = "workerStopping"    // kcl: on a heartbeat item, the worker is shutting down
	attrStartAt       = "kclStartTimestamp" // kcl: where a LATEST or AT_TIMESTAMP lease opens, Unix ms
	attrEntityType    = "entityType"        // Java KCL 3.5: absent or LEASE on leases
	// The Java KCL 3.x's old owner during its graceful hand-off (leaseOwner
	// is then the new one).
	attrCheckpointOwner = "checkpointOwner"

	// The Java KCL's two-phase checkpoint, removed by every checkpoint it
	// writes (and so by reset).
	attrPending      = "pendingCheckpoint"
	attrPendingSub   = "pendingCheckpointSubSequenceNumber"
	attrPendingState = "pendingCheckpointState"
)

// kcl's own items have a leaseKey starting with kclKeyPrefix; its heartbeat
// items are kcl-worker:<WorkerID>.
const (
	kclKeyPrefix    = "kcl-"
	workerKeyPrefix = "kcl-worker:"
	groupKey        = "kcl-group" // the group item: the workers' shared epoch and verdicts
	entityLease     = "LEASE"
	// kcl marks its own items with entityType KCL_WORKER, KCL_GROUP, ...
	kclEntityPrefix = "KCL_"
)

// Sentinel checkpoints, as the Java KCL and kcl write them.
const (
	trimHorizon = "TRIM_HORIZON"
	latest      = "LATEST"
	atTimestamp = "AT_TIMESTAMP"
	shardEnd    = "SHARD_END"
)

// defaultLeaseDuration is kcl's default Options.LeaseDuration: a worker
// whose heartbeat is unchanged this long is dead.
const defaultLeaseDuration = 10 * time.Second

// lease is one lease item, as the command reads it.
type lease struct {
	key        string // leaseKey: the shard ID, or account:stream:creationEpoch:shardId
	streamID   string // account:stream:creationEpoch in a multi-stream table; "" otherwise
	shard      string // the bare shard ID
	owner      string // "" when unowned
	counter    int64
	checkpoint string // a sequence number or a sentinel
	sub        int64
	parents    []string
	handoffTo  string
	startAt    int64 // kclStartTimestamp, Unix ms; 0 when absent
	// checkpointOwner: in a Java KCL 3.x graceful hand-off, the old owner,
	// still reading until it passes the lease on to owner.
	checkpointOwner string
}

// reader is the worker reading the lease's shard: in a Java KCL 3.x
// graceful hand-off the old owner (checkpointOwner), which reads and renews
// it until it passes it on; otherwise its owner.
func (l lease) reader() string {
	if l.checkpointOwner != "" {
		return l.checkpointOwner
	}
	return l.owner
}

// splitLeaseKey splits a lease key into the stream's identifier ("" for a
// single-stream key) and the shard ID, as splitLeaseKey in the kcl
// package's streams.go: neither stream names nor shard IDs hold a colon.
func splitLeaseKey(key string) (streamID, shardID string) {
	i := strings.LastIndexByte(key, ':')
	if i < 0 {
		return "", key
	}
	return key[:i], key[i+1:]
}

// leaseKey is the lease key of a shard of the stream with identifier
// streamID ("" in a single-stream table: the shard ID itself).
func leaseKey(streamID, shardID string) string {
	if streamID == "" {
		return shardID
	}
	return streamID + ":" + shardID
}

// beat is one worker's heartbeat item.
type beat struct {
	worker   string
	counter  int64
	stopping bool
}

// itemKind is what a lease-table item is, to this command.
type itemKind int

const (
	kindUnknown   itemKind = iota // not understood: a problem to report, never rewritten
	kindLease                     // a lease (entityType absent, not a string, or LEASE)
	kindHeartbeat                 // a kcl worker's heartbeat item
	kindKCL                       // another item of kcl's own (leaseKey kcl-..., or entityType KCL_...): not a lease
	kindJava                      // a Java KCL 3.x item that is not a lease (Leader, Migration3.0, worker metrics...)
)

// tableItem is one classified item.
type tableItem struct {
	kind       itemKind
	key        string // leaseKey; "" when it has none
	entityType string
	lease      lease  // kindLease
	beat       beat   // kindHeartbeat
	why        string // kindUnknown: what is wrong with it
}

// classify says what a lease-table item is. It is the one place that knows
// which items are leases: kcl's own items have a leaseKey starting with
// "kcl-" (kcl-worker:<ID> being its heartbeats) or an entityType starting
// with KCL_; Java KCL 3.x items that are not leases carry another string
// entityType than LEASE. Everything else must read as a lease, as kcl and
// the Java KCL read it (an entityType that is not a string included), or it
// is not understood.
func classify(item map[string]types.AttributeValue) tableItem {
	key, ok := item[attrLeaseKey].(*types.AttributeValueMemberS)
	if !ok || key.Value == "" {
		return tableItem{why: "no string " + attrLeaseKey}
	}
	it := tableItem{key: key.Value}
	if et, ok := item[attrEntityType].(*types.AttributeValueMemberS); ok {
		it.entityType = et.Value
	}
	switch {
	case strings.HasPrefix(it.key, workerKeyPrefix):
		b, err := beatFromItem(it.key, item)
		if err != nil {
			it.why = err.Error()
			return it
		}
		it.kind, it.beat = kindHeartbeat, b
	case strings.HasPrefix(it.key, kclKeyPrefix), strings.HasPrefix(it.entityType, kclEntityPrefix):
		it.kind = kindKCL
	case it.entityType != "" && it.entityType != entityLease:
		it.kind = kindJava
	default:
		l, err := leaseFromItem(it.key, item)
		if err != nil {
			it.why = err.Error()
			return it
		}
		it.kind, it.lease = kindLease, l
	}
	return it
}

func beatFromItem(key string, item map[string]types.AttributeValue) (beat, error) {
	b := beat{worker: strings.TrimPrefix(key, workerKeyPrefix)}
	if b.worker == "" {
		return beat{}, errors.New("heartbeat item without a worker ID")
	}
	var err error
	if b.counter, err = numberAttr(item, attrCounter, true); err != nil {
		return beat{}, fmt.Errorf("%s: %w", attrCounter, err)
	}
	if v, present := item[attrStopping]; present {
		s, ok := v.(*types.AttributeValueMemberBOOL)
		if !ok {
			return beat{}, fmt.Errorf("%s: not a boolean", attrStopping)
		}
		b.stopping = s.Value
	}
	return b, nil
}

// leaseFromItem reads a lease as kcl's leaseFromItem does: what kcl cannot
// read is an error naming the attribute.
func leaseFromItem(key string, item map[string]types.AttributeValue) (lease, error) {
	l := lease{key: key}
	l.streamID, l.shard = splitLeaseKey(key)
	if v, present := item[attrOwner]; present {
		s, ok := v.(*types.AttributeValueMemberS)
		if !ok {
			return lease{}, fmt.Errorf("%s: not a string", attrOwner)
		}
		l.owner = s.Value
	}
	var err error
	if l.counter, err = numberAttr(item, attrCounter, true); err != nil {
		return lease{}, fmt.Errorf("%s: %w", attrCounter, err)
	}
	cp, ok := item[attrCheckpoint].(*types.AttributeValueMemberS)
	if !ok {
		return lease{}, fmt.Errorf("%s: missing or not a string", attrCheckpoint)
	}
	l.checkpoint = cp.Value
	if !isSentinel(cp.Value) && !isSequenceNumber(cp.Value) {
		return lease{}, fmt.Errorf("%s: %q is neither a sequence number nor a sentinel", attrCheckpoint, cp.Value)
	}
	if l.sub, err = numberAttr(item, attrCheckpointSub, false); err != nil {
		return lease{}, fmt.Errorf("%s: %w", attrCheckpointSub, err)
	}
	if _, err = numberAttr(item, attrOwnerSwitches, false); err != nil {
		return lease{}, fmt.Errorf("%s: %w", attrOwnerSwitches, err)
	}
	if v, present := item[attrHandoff]; present {
		s, ok := v.(*types.AttributeValueMemberS)
		if !ok {
			return lease{}, fmt.Errorf("%s: not a string", attrHandoff)
		}
		l.handoffTo = s.Value
	}
	if co, ok := item[attrCheckpointOwner].(*types.AttributeValueMemberS); ok { // as kcl reads it
		l.checkpointOwner = co.Value
	}
	if l.startAt, err = numberAttr(item, attrStartAt, false); err != nil {
		return lease{}, fmt.Errorf("%s: %w", attrStartAt, err)
	}
	if v, present := item[attrParents]; present {
		switch p := v.(type) {
		case *types.AttributeValueMemberSS:
			l.parents = p.Value
		case *types.AttributeValueMemberS: // tolerated by kcl: one parent as a string
			l.parents = []string{p.Value}
		default:
			return lease{}, fmt.Errorf("%s: not a string set", attrParents)
		}
	}
	return l, nil
}

func numberAttr(item map[string]types.AttributeValue, attr string, required bool) (int64, error) {
	v, present := item[attr]
	if !present {
		if required {
			return 0, errors.New("missing")
		}
		return 0, nil
	}
	n, ok := v.(*types.AttributeValueMemberN)
	if !ok {
		return 0, errors.New("not a number")
	}
	i, err := strconv.ParseInt(n.Value, 10, 64)
	if err != nil || i < 0 {
		return 0, fmt.Errorf("%q is not a non-negative integer", n.Value)
	}
	return i, nil
}

func isSentinel(s string) bool {
	switch s {
	case trimHorizon, latest, atTimestamp, shardEnd:
		return true
	}
	return false
}

// isSequenceNumber reports whether s looks like a Kinesis sequence number: up
// to 128 decimal digits.
func isSequenceNumber(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// snapshot is one read of the whole lease table, classified.
type snapshot struct {
	leases  map[string]lease // by leaseKey
	beats   map[string]beat  // by worker ID
	kcl     []string         // keys of kcl's other items
	java    []string         // "key (entityType)" of the Java KCL's non-lease items
	unknown []string         // items not understood, each with why
	// unread are the keys of the items not understood, with why: reset
	// names one that is a listed shard's lease instead of taking it for
	// none.
	unread map[string]string
}

// readTable scans the whole table with consistent reads.
func readTable(ctx context.Context, db DynamoDB, table string) (snapshot, error) {
	snap := snapshot{leases: map[string]lease{}, beats: map[string]beat{}, unread: map[string]string{}}
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
			it := classify(item)
			switch it.kind {
			case kindLease:
				snap.leases[it.key] = it.lease
			case kindHeartbeat:
				snap.beats[it.beat.worker] = it.beat
			case kindKCL:
				if it.key != groupKey { // the group item is kcl's own bookkeeping: nothing to note
					snap.kcl = append(snap.kcl, it.key)
				}
			case kindJava:
				snap.java = append(snap.java, fmt.Sprintf("%s (%s)", it.key, it.entityType))
			default:
				name := strconv.Quote(it.key)
				if it.key == "" {
					name = "without a key"
				}
				snap.unknown = append(snap.unknown, fmt.Sprintf("item %s not understood: %s", name, it.why))
				if it.key != "" {
					snap.unread[it.key] = it.why
				}
			}
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

// watch is the liveness rule of kcl's workers (assess in the kcl
// package's balance.go), made cheap: two reads of the table, a lease
// duration apart. A worker with a heartbeat item is alive when its counter
// changed between them (or the item appeared), or when it read a lease in
// both reads whose counter changed (a checkpoint). A worker without one (a
// Java KCL worker, which renews its leases instead) is alive when a lease
// it reads now changed at all between the reads: a new counter or a new
// owner restarts the workers' clock, so whoever took or renewed it then is
// alive, whoever owned it before. The reader of a lease is its owner, or in
// a Java KCL 3.x graceful hand-off the old owner (checkpointOwner), which
// reads and renews it until it passes it on.
type watch struct {
	before, after snapshot
	watched       time.Duration
}

// observe reads the table, waits d (e.wait) and reads it again.
func observe(ctx context.Context, e *env, db DynamoDB, table string, d time.Duration) (watch, error) {
	before, err := readTable(ctx, db, table)
	if err != nil {
		return watch{}, err
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

// alive reports whether worker id showed a sign of life during the watch.
func (w watch) alive(id string) bool {
	b, beats := w.after.beats[id]
	if beats {
		if a, seen := w.before.beats[id]; !seen || a.counter != b.counter {
			return true
		}
	}
	for key, l := range w.after.leases {
		if l.reader() != id {
			continue
		}
		prev, ok := w.before.leases[key]
		switch {
		case beats:
			if ok && prev.reader() == id && prev.counter != l.counter {
				return true
			}
		case !ok || prev.counter != l.counter || prev.owner != l.owner:
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
		for _, id := range []string{l.owner, l.checkpointOwner} {
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
func (s snapshot) sortedLeases() []lease {
	out := make([]lease, 0, len(s.leases))
	for _, l := range s.leases {
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b lease) int { return strings.Compare(a.key, b.key) })
	return out
}

func number(n int64) *types.AttributeValueMemberN {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
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
		Key:                       map[string]types.AttributeValue{attrLeaseKey: &types.AttributeValueMemberS{Value: groupKey}},
		ConditionExpression:       aws.String("attribute_exists(" + attrLeaseKey + ")"),
		UpdateExpression:          aws.String("ADD kclEpoch :one"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":one": &types.AttributeValueMemberN{Value: "1"}},
	})
}

// multiStream reports whether the table holds leases of the multi-stream
// layout (Options.Streams, or the Java KCL's multi-stream mode): keys
// account:stream:creationEpoch:shardId.
func (s snapshot) multiStream() bool {
	for _, l := range s.leases {
		if l.streamID != "" {
			return true
		}
	}
	return false
}

// streamLeases returns the leases of the stream with identifier streamID
// ("" for the single-stream layout) by bare shard ID, and the table's other
// leases in key order.
func (s snapshot) streamLeases(streamID string) (map[string]lease, []lease) {
	mine := map[string]lease{}
	var others []lease
	for _, l := range s.sortedLeases() {
		if l.streamID == streamID {
			mine[l.shard] = l
		} else {
			others = append(others, l)
		}
	}
	return mine, others
}

// streamIdentifier returns the identifier of stream in a multi-stream lease
// table, as kcl's workers build it (describeStreams in the kcl package's
// streams.go): account:name:creationEpoch, the account and name from the
// stream's ARN and the creation time in seconds, from DescribeStreamSummary.
func streamIdentifier(ctx context.Context, kin Kinesis, stream string) (string, error) {
	out, err := kin.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(stream)})
	if err != nil {
		return "", fmt.Errorf("stream %q: DescribeStreamSummary: %w", stream, err)
	}
	sum := out.StreamDescriptionSummary
	if sum == nil || sum.StreamCreationTimestamp == nil {
		return "", fmt.Errorf("stream %q: DescribeStreamSummary gave no creation time, which the multi-stream lease keys need", stream)
	}
	arn := aws.ToString(sum.StreamARN)
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 || parts[4] == "" || !strings.HasPrefix(parts[5], "stream/") {
		return "", fmt.Errorf("stream %q: DescribeStreamSummary gave no account in its ARN %q, which the multi-stream lease keys need", stream, arn)
	}
	return parts[4] + ":" + strings.TrimPrefix(parts[5], "stream/") + ":" + strconv.FormatInt(sum.StreamCreationTimestamp.Unix(), 10), nil
}

// leasesOf returns the leases of stream in the table as last read, by bare
// shard ID, the table's other leases, and the stream's identifier ("" in a
// single-stream table). A table with multi-stream leases costs one
// DescribeStreamSummary; it is taken for a single-stream table (its
// multi-stream keys strays, each a problem) if none of them is the
// stream's and it holds single-stream leases.
func leasesOf(ctx context.Context, kin Kinesis, stream string, snap snapshot) (map[string]lease, []lease, string, error) {
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
