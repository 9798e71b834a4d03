package leaseitem

import (
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// anyValues are values of every DynamoDB type, well and badly formed.
var anyValues = []types.AttributeValue{
	s("x"), s(""), s("5"), s(TrimHorizon), s(strings.Repeat("9", 129)),
	&types.AttributeValueMemberN{Value: "-1"}, &types.AttributeValueMemberN{Value: "1.5"},
	&types.AttributeValueMemberN{Value: "abc"}, &types.AttributeValueMemberN{Value: "99999999999999999999"}, n(5),
	&types.AttributeValueMemberBOOL{Value: true}, &types.AttributeValueMemberNULL{Value: true},
	ss("a", "shardId-000000000009"), &types.AttributeValueMemberNS{Value: []string{"1"}},
	&types.AttributeValueMemberB{Value: []byte("x")}, &types.AttributeValueMemberBS{Value: [][]byte{[]byte("x")}},
	&types.AttributeValueMemberL{Value: []types.AttributeValue{s("x")}},
	&types.AttributeValueMemberM{Value: item{"k": s("v")}}, &types.AttributeValueMemberM{Value: item{"k": n(3)}},
	nil, // removed
}

// TestHandEditedItems: an item edited by hand, any attribute kcl reads set
// to any value or removed, is read or fails with an *Error naming that
// attribute; never a panic.
func TestHandEditedItems(t *testing.T) {
	lease := leaseItem("123:orders:1700000000:shardId-000000000003", "w1", 7, seq)
	for attr, v := range map[string]types.AttributeValue{
		AttrParents: ss("shardId-000000000001"), AttrHandoff: s("w2"), AttrCheckpointOwner: s("java-1"), AttrStartAt: n(1700000000000),
		AttrWriter: Writer{Worker: "w1", Token: "tok", Beat: 1700000000000001}.Item(), AttrCreated: n(1700000000000), AttrRecreated: &types.AttributeValueMemberBOOL{Value: true},
	} {
		lease[attr] = v
	}
	bases := []struct {
		item  item
		attrs []string // those kcl reads, but for leaseKey and entityType, which classify it
	}{
		{lease, []string{AttrOwner, AttrCounter, AttrCheckpoint, AttrCheckpointSub, AttrOwnerSwitches, AttrParents, AttrHandoff, AttrCheckpointOwner, AttrStartAt, AttrWriter, AttrCreated, AttrRecreated}},
		{item{AttrLeaseKey: s(WorkerKey("w1")), AttrCounter: n(41), AttrStopping: &types.AttributeValueMemberBOOL{}, AttrStreams: ss("1:a:2")}, []string{AttrCounter, AttrStopping, AttrStreams}},
		{item{AttrLeaseKey: s(GroupKey), AttrEpoch: n(3), AttrScans: n(9), AttrDigest: s("d"), AttrExpired: &types.AttributeValueMemberM{Value: item{"k": n(1)}}},
			[]string{AttrEpoch, AttrScans, AttrDigest, AttrExpired}},
	}
	failed := 0
	for _, b := range bases {
		kind := Classify(b.item)
		for _, attr := range b.attrs {
			for _, v := range anyValues {
				got := Read(with(b.item, attr, v))
				require.Equal(t, kind, got.Kind)
				if got.Err == nil {
					continue
				}
				failed++
				var e *Error
				require.ErrorAs(t, got.Err, &e)
				assert.True(t, e.Attr == attr || strings.HasPrefix(e.Attr, attr+"."), "%s = %#v: %v", attr, v, got.Err)
				assert.Contains(t, got.Err.Error(), e.Attr)
				assert.Equal(t, b.item[AttrLeaseKey].(*types.AttributeValueMemberS).Value, e.Key)
			}
		}
	}
	assert.Greater(t, failed, 50, "most hand edits are errors")
}

// FuzzRead: whatever an item holds, Read never panics, names the attribute
// of what it cannot read, and a lease it reads is written back by NewItem
// as read.
func FuzzRead(f *testing.F) {
	f.Add("shardId-000000000001", uint8(0), uint8(0), "w1")
	f.Add("123:orders:1700000000:shardId-000000000003", uint8(5), uint8(2), "shardId-000000000001")
	f.Add("kcl-worker:w1", uint8(1), uint8(1), "-3")
	f.Add("kcl-group", uint8(12), uint8(4), "x")
	attrs := []string{AttrOwner, AttrCounter, AttrCheckpoint, AttrCheckpointSub, AttrOwnerSwitches, AttrParents, AttrHandoff,
		AttrCheckpointOwner, AttrStartAt, AttrWriter, AttrEntityType, AttrStopping, AttrStreams, AttrLeaseDuration, AttrEpoch, AttrScans, AttrDigest, AttrExpired, AttrLeaseKey, AttrRecreated}
	f.Fuzz(func(t *testing.T, key string, attr, typ uint8, val string) {
		it := leaseItem(key, "w1", 7, seq)
		it[AttrParents] = ss("shardId-000000000000", "1:s:2:shardId-000000000001")
		var v types.AttributeValue
		switch typ % 6 {
		case 0:
			v = s(val)
		case 1:
			v = &types.AttributeValueMemberN{Value: val}
		case 2:
			v = ss(val, "shardId-000000000002")
		case 3:
			v = &types.AttributeValueMemberM{Value: item{val: &types.AttributeValueMemberN{Value: val}}}
		case 4:
			v = &types.AttributeValueMemberBOOL{Value: val != ""}
		}
		got := Read(with(it, attrs[int(attr)%len(attrs)], v))
		if got.Err != nil {
			var e *Error
			require.ErrorAs(t, got.Err, &e)
			require.NotEmpty(t, e.Attr)
			require.True(t, e.Key == "" || strings.Contains(e.Error(), e.Attr), e.Error())
			return
		}
		if got.Kind != KindLease || !asWritten(got.Lease) {
			return
		}
		l := got.Lease
		back, err := ParseLease(NewItem(l, false))
		require.NoError(t, err)
		want := Lease{Key: l.Key, Counter: l.Counter, Checkpoint: l.Checkpoint, CheckpointSub: l.CheckpointSub, Parents: l.Parents, Recreated: l.Recreated}
		if len(want.Parents) == 0 {
			want.Parents = nil
		}
		require.Equal(t, want, back)
	})
}

// asWritten reports whether a lease's key and parents are of the forms kcl
// and the Java KCL write, for which NewItem writes back what ParseLease
// read: a stream identifier of three parts (account:stream:creationEpoch),
// and in a single-stream table parents that do not start with a colon
// (NewItem strips the stream's identifier and a colon off each parent,
// and so a leading colon off a single-stream one; shard IDs never hold
// one).
func asWritten(l Lease) bool {
	id := l.StreamID()
	if id != "" {
		return strings.Count(id, ":") == 2
	}
	for _, p := range l.Parents {
		if strings.HasPrefix(p, ":") {
			return false
		}
	}
	return true
}

func TestParseBeatLeaseDuration(t *testing.T) {
	base := item{AttrLeaseKey: s(WorkerKey("w1")), AttrCounter: n(41)}
	for _, tc := range []struct {
		name string
		v    types.AttributeValue
		want time.Duration
	}{
		{"absent: a worker from before it was written", nil, 0},
		{"milliseconds", n(20000), 20 * time.Second},
		{"not a number: says nothing", s("20s"), 0},
		{"negative: says nothing", n(-1), 0},
	} {
		b, err := ParseBeat(with(base, AttrLeaseDuration, tc.v))
		require.NoError(t, err, tc.name)
		assert.Equal(t, tc.want, b.LeaseDuration, tc.name)
	}
}
