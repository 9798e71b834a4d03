package leaseitem

import (
	"fmt"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Lease is a lease item as kcl reads it. Attributes kcl does not use are
// not read; since kcl only ever updates the attributes it owns, they are
// kept.
type Lease struct {
	Key           string // leaseKey
	Owner         string // "" when unowned
	Counter       int64
	Checkpoint    string // a sequence number or a sentinel
	CheckpointSub int64
	OwnerSwitches int64
	// Parents are the lease keys of the parent shards' leases. A
	// multi-stream table stores them as bare shard IDs of the same stream
	// (as the Java KCL does); they are read as full keys.
	Parents   []string
	HandoffTo string // a kcl worker asked the owner to hand the lease over
	// CheckpointOwner is set while the Java KCL 3.x hands the lease over
	// gracefully: the old owner, which reads the shard and renews the lease
	// until it checkpoints and makes Owner (the new one) the owner.
	CheckpointOwner string
	StartAt         int64 // kclStartTimestamp, Unix ms; 0 when not set
	// Writer is who wrote the lease last (kclWriter): zero when the lease
	// is unowned, handed over, or was never written by a kcl that marks it.
	// It speaks for the owner only while Writer.Worker is the owner: a
	// take by the Java KCL, or by a kcl that does not mark leases, keeps
	// the mark of the owner before.
	Writer Writer
	// StreamCreated is when the lease's stream was created (Unix ms) as
	// the worker that created the lease saw it (kclStreamCreated; 0 when
	// not set): in a single-stream table, leases of a stream deleted and
	// created again under its name share their keys with the new one's.
	StreamCreated int64
	// Recreated says the lease was made for a stream deleted and created
	// again under its name while the group read it (kclRecreated).
	Recreated bool
}

// Writer is a kcl worker's mark on a lease it wrote: its WorkerID, its
// process's token (which tells it from another process with the same
// WorkerID), and the counter of the last heartbeat it had confirmed.
type Writer struct {
	Worker string
	Token  string
	Beat   int64
}

// Names of the fields of kclWriter.
const (
	writerWorker = "worker"
	writerToken  = "token"
	writerBeat   = "beat"
)

// Item returns the attribute value that marks a lease written by w.
func (w Writer) Item() types.AttributeValue {
	return &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{
		writerWorker: &types.AttributeValueMemberS{Value: w.Worker},
		writerToken:  &types.AttributeValueMemberS{Value: w.Token},
		writerBeat:   Number(w.Beat),
	}}
}

// OwnerBeat returns the heartbeat counter the lease says its owner had
// when it last wrote the lease: 0 when the mark is not the owner's.
func (l Lease) OwnerBeat() int64 {
	if l.Writer.Worker == "" || l.Writer.Worker != l.Owner {
		return 0
	}
	return l.Writer.Beat
}

func parseWriter(item map[string]types.AttributeValue) (Writer, error) {
	v, present := item[AttrWriter]
	if !present {
		return Writer{}, nil
	}
	m, ok := v.(*types.AttributeValueMemberM)
	if !ok {
		return Writer{}, errNotMap
	}
	var w Writer
	var err error
	if w.Worker, err = optionalString(m.Value, writerWorker); err != nil {
		return Writer{}, fmt.Errorf("%s: %w", writerWorker, err)
	}
	if w.Token, err = optionalString(m.Value, writerToken); err != nil {
		return Writer{}, fmt.Errorf("%s: %w", writerToken, err)
	}
	if w.Beat, err = number(m.Value, writerBeat, false); err != nil {
		return Writer{}, fmt.Errorf("%s: %w", writerBeat, err)
	}
	return w, nil
}

// StreamID returns the identifier of the lease's stream: "" in a
// single-stream table.
func (l Lease) StreamID() string {
	id, _ := SplitKey(l.Key)
	return id
}

// ShardID returns the lease's bare shard ID.
func (l Lease) ShardID() string {
	_, shard := SplitKey(l.Key)
	return shard
}

// Reader returns the worker reading the lease's shard: in a Java KCL 3.x
// graceful hand-off the old owner (CheckpointOwner), otherwise the owner.
func (l Lease) Reader() string {
	if l.CheckpointOwner != "" {
		return l.CheckpointOwner
	}
	return l.Owner
}

// ParseLease reads a lease item. What kcl cannot read is an *Error naming
// the attribute.
//
// It reads as the Java KCL does where the two could differ: a
// checkpointOwner that is not a string is none, and a single parent
// written as a string is tolerated.
func ParseLease(item map[string]types.AttributeValue) (Lease, error) {
	var l Lease
	key, ok := item[AttrLeaseKey].(*types.AttributeValueMemberS)
	if !ok || key.Value == "" {
		return l, &Error{Item: "lease", Attr: AttrLeaseKey, Why: "missing or not a string"}
	}
	l.Key = key.Value
	bad := func(attr, why string) (Lease, error) {
		return Lease{}, &Error{Item: "lease", Key: l.Key, Attr: attr, Why: why}
	}
	var err error
	if l.Owner, err = optionalString(item, AttrOwner); err != nil {
		return bad(AttrOwner, err.Error())
	}
	if l.Counter, err = number(item, AttrCounter, true); err != nil {
		return bad(AttrCounter, err.Error())
	}
	cp, ok := item[AttrCheckpoint].(*types.AttributeValueMemberS)
	if !ok {
		return bad(AttrCheckpoint, "missing or not a string")
	}
	l.Checkpoint = cp.Value
	if !IsSentinel(cp.Value) && !IsSequenceNumber(cp.Value) {
		return bad(AttrCheckpoint, fmt.Sprintf("%q is neither a sequence number nor a sentinel", cp.Value))
	}
	if l.CheckpointSub, err = number(item, AttrCheckpointSub, false); err != nil {
		return bad(AttrCheckpointSub, err.Error())
	}
	if l.OwnerSwitches, err = number(item, AttrOwnerSwitches, false); err != nil {
		return bad(AttrOwnerSwitches, err.Error())
	}
	if l.HandoffTo, err = optionalString(item, AttrHandoff); err != nil {
		return bad(AttrHandoff, err.Error())
	}
	if co, ok := item[AttrCheckpointOwner].(*types.AttributeValueMemberS); ok {
		l.CheckpointOwner = co.Value
	}
	if l.StartAt, err = number(item, AttrStartAt, false); err != nil {
		return bad(AttrStartAt, err.Error())
	}
	if l.Writer, err = parseWriter(item); err != nil {
		return bad(AttrWriter, err.Error())
	}
	if l.StreamCreated, err = number(item, AttrCreated, false); err != nil {
		return bad(AttrCreated, err.Error())
	}
	if v, present := item[AttrRecreated]; present {
		b, ok := v.(*types.AttributeValueMemberBOOL)
		if !ok {
			return bad(AttrRecreated, "not a boolean")
		}
		l.Recreated = b.Value
	}
	if v, present := item[AttrParents]; present {
		switch p := v.(type) {
		case *types.AttributeValueMemberSS:
			l.Parents = p.Value
		case *types.AttributeValueMemberS:
			l.Parents = []string{p.Value}
		default:
			return bad(AttrParents, "not a string set")
		}
	}
	if stream := l.StreamID(); stream != "" {
		l.Parents = slices.Clone(l.Parents) // not the item's own
		for i, p := range l.Parents {
			if !MultiStream(p) {
				l.Parents[i] = Key(stream, p)
			}
		}
	}
	return l, nil
}

// optionalString reads a string attribute, "" when absent.
func optionalString(item map[string]types.AttributeValue, attr string) (string, error) {
	v, present := item[attr]
	if !present {
		return "", nil
	}
	s, ok := v.(*types.AttributeValueMemberS)
	if !ok {
		return "", errNotString
	}
	return s.Value, nil
}

// NewItem returns the item that creates lease l: its key, counter,
// checkpoint, parents, stream's creation time and whether that stream was
// created again, and no owner. A lease of a multi-stream table is
// written as the Java KCL writes it: with streamName and shardId, and its
// parents' bare shard IDs. With entities (the table marks its items, see
// MarksEntities) it carries entityType LEASE, as the Java KCL 3.5 writes
// leases.
func NewItem(l Lease, entities bool) map[string]types.AttributeValue {
	item := map[string]types.AttributeValue{
		AttrLeaseKey:      &types.AttributeValueMemberS{Value: l.Key},
		AttrCounter:       Number(l.Counter),
		AttrCheckpoint:    &types.AttributeValueMemberS{Value: l.Checkpoint},
		AttrCheckpointSub: Number(l.CheckpointSub),
		AttrOwnerSwitches: Number(0),
	}
	stream, shard := SplitKey(l.Key)
	if stream != "" {
		item[AttrStreamName] = &types.AttributeValueMemberS{Value: stream}
		item[AttrShardID] = &types.AttributeValueMemberS{Value: shard}
	}
	if len(l.Parents) > 0 {
		parents := make([]string, len(l.Parents))
		for i, p := range l.Parents {
			parents[i] = strings.TrimPrefix(p, stream+":")
		}
		item[AttrParents] = &types.AttributeValueMemberSS{Value: parents}
	}
	if l.StreamCreated > 0 {
		item[AttrCreated] = Number(l.StreamCreated)
	}
	if l.Recreated {
		item[AttrRecreated] = &types.AttributeValueMemberBOOL{Value: true}
	}
	if entities {
		item[AttrEntityType] = &types.AttributeValueMemberS{Value: EntityLease}
	}
	return item
}
