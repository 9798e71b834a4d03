package leaseitem

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/assert"
)

func TestClassify(t *testing.T) {
	key := func(k string, attrs ...string) item {
		it := item{AttrLeaseKey: s(k)}
		for i := 0; i+1 < len(attrs); i += 2 {
			it[attrs[i]] = s(attrs[i+1])
		}
		return it
	}
	numericEntity := key("shardId-000000000001")
	numericEntity[AttrEntityType] = n(1)
	for _, tc := range []struct {
		name     string
		item     item
		want     Kind
		entities bool // MarksEntities
	}{
		{"a 2.x lease", key("shardId-000000000000"), KindLease, false},
		{"a 3.5 lease", key("shardId-000000000000", AttrEntityType, "LEASE"), KindLease, true},
		{"an entityType that is not a string is none, as the Java serializer reads it (DynamoUtils.safeGetString)", numericEntity, KindLease, false},
		{"the leader's lock", key("Leader", AttrEntityType, "LEADER"), KindJava, true},
		{"the client version", key("Migration3.0", AttrEntityType, "CLIENT_VERSION_MIGRATION"), KindJava, true},
		{"the table migration", key("TableMigration3.5", AttrEntityType, "TABLE_MIGRATION"), KindJava, true},
		{"a worker's metrics", key("java-worker-1", AttrEntityType, "WORKER_METRIC_STATS"), KindJava, true},
		{"a stream", key("123456789012:orders:1700000000", AttrEntityType, "STREAM"), KindJava, true},
		{"an entity of a later Java KCL", key("Something", AttrEntityType, "SOMETHING_NEW"), KindJava, true},
		{"an empty entityType is a string other than LEASE", key("Something", AttrEntityType, ""), KindJava, true},
		{"a kcl heartbeat", key(WorkerKey("w1"), AttrEntityType, EntityKCLWorker), KindBeat, false},
		{"a heartbeat of an older kcl, without entityType", key(WorkerKey("w1")), KindBeat, false},
		{"kcl's group item", key(GroupKey, AttrEntityType, EntityKCLGroup), KindGroup, false},
		{"another item of kcl's own", key("kcl-something", AttrEntityType, EntityKCLGroup), KindKCL, false},
		{"a kcl key without kcl's entityType is read as a lease, as the Java KCL reads it", key("kcl-something"), KindLease, false},
		{"an entityType kcl does not know is the Java KCL's", key("some-item", AttrEntityType, "KCL_SOMETHING"), KindJava, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, Classify(tc.item))
			assert.Equal(t, tc.entities, MarksEntities(tc.item))
		})
	}
}

// TestRead reads items as the workers and the command both do, and
// names the attribute at fault in what they cannot read.
func TestRead(t *testing.T) {
	full := leaseItem("shardId-000000000001", "w1", 7, seq)
	full[AttrCheckpointSub] = n(3)
	full[AttrOwnerSwitches] = n(2)
	full[AttrParents] = ss("shardId-000000000000")
	full[AttrHandoff] = s("w2")
	full[AttrStartAt] = n(1700000000000)
	full[AttrWriter] = Writer{Worker: "w1", Token: "tok", Beat: 1700000000000001}.Item()
	full["throughputKBps"] = n(12) // a Java attribute kcl ignores
	multi := leaseItem("123:orders:1700000000:shardId-000000000003", "", 1, TrimHorizon)
	multi[AttrParents] = ss("shardId-000000000001", "123:orders:1700000000:shardId-000000000002")
	for _, tc := range []struct {
		name string
		item item
		want Item
		err  string // the whole message, when the item cannot be read
	}{
		{name: "lease", item: full, want: Item{Kind: KindLease, Key: "shardId-000000000001", Lease: Lease{
			Key: "shardId-000000000001", Owner: "w1", Counter: 7, Checkpoint: seq, CheckpointSub: 3, OwnerSwitches: 2,
			Parents: []string{"shardId-000000000000"}, HandoffTo: "w2", StartAt: 1700000000000, Writer: Writer{Worker: "w1", Token: "tok", Beat: 1700000000000001}}}},
		{name: "unowned sentinel lease", item: leaseItem("shardId-000000000002", "", 0, TrimHorizon),
			want: Item{Kind: KindLease, Key: "shardId-000000000002", Lease: Lease{Key: "shardId-000000000002", Checkpoint: TrimHorizon}}},
		{name: "Java 3.5 lease with entityType LEASE", item: with(leaseItem("shardId-000000000003", "java-1", 2, Latest), AttrEntityType, s("LEASE")),
			want: Item{Kind: KindLease, Key: "shardId-000000000003", Entity: "LEASE", Lease: Lease{Key: "shardId-000000000003", Owner: "java-1", Counter: 2, Checkpoint: Latest}}},
		{name: "a single parent as a string", item: with(leaseItem("shardId-000000000004", "", 1, ShardEnd), AttrParents, s("shardId-000000000000")),
			want: Item{Kind: KindLease, Key: "shardId-000000000004", Lease: Lease{Key: "shardId-000000000004", Counter: 1, Checkpoint: ShardEnd, Parents: []string{"shardId-000000000000"}}}},
		{name: "multi-stream lease: bare parents read as keys of the same stream", item: multi,
			want: Item{Kind: KindLease, Key: "123:orders:1700000000:shardId-000000000003", Lease: Lease{
				Key: "123:orders:1700000000:shardId-000000000003", Counter: 1, Checkpoint: TrimHorizon,
				Parents: []string{"123:orders:1700000000:shardId-000000000001", "123:orders:1700000000:shardId-000000000002"}}}},
		{name: "Java KCL 3.x hand-off", item: with(leaseItem("shardId-000000000012", "java-2", 4, seq), AttrCheckpointOwner, s("java-1")),
			want: Item{Kind: KindLease, Key: "shardId-000000000012", Lease: Lease{Key: "shardId-000000000012", Owner: "java-2", Counter: 4, Checkpoint: seq, CheckpointOwner: "java-1"}}},
		{name: "checkpointOwner not a string is none, as the Java KCL reads it", item: with(leaseItem("shardId-000000000013", "java-2", 4, seq), AttrCheckpointOwner, n(1)),
			want: Item{Kind: KindLease, Key: "shardId-000000000013", Lease: Lease{Key: "shardId-000000000013", Owner: "java-2", Counter: 4, Checkpoint: seq}}},
		{name: "entityType not a string: a lease", item: with(leaseItem("shardId-000000000005", "", 0, Latest), AttrEntityType, n(1)),
			want: Item{Kind: KindLease, Key: "shardId-000000000005", Lease: Lease{Key: "shardId-000000000005", Checkpoint: Latest}}},
		{name: "heartbeat", item: item{AttrLeaseKey: s(WorkerKey("w1")), AttrCounter: n(41)},
			want: Item{Kind: KindBeat, Key: "kcl-worker:w1", Beat: Beat{Worker: "w1", Counter: 41}}},
		{name: "stopping heartbeat with an entityType", item: item{AttrLeaseKey: s(WorkerKey("w2")), AttrCounter: n(1), AttrStopping: &types.AttributeValueMemberBOOL{Value: true}, AttrEntityType: s(EntityKCLWorker)},
			want: Item{Kind: KindBeat, Key: "kcl-worker:w2", Entity: EntityKCLWorker, Beat: Beat{Worker: "w2", Counter: 1, Stopping: true}}},
		{name: "workerStopping not a boolean: not stopping", item: item{AttrLeaseKey: s(WorkerKey("w3")), AttrCounter: n(1), AttrStopping: s("yes")},
			want: Item{Kind: KindBeat, Key: "kcl-worker:w3", Beat: Beat{Worker: "w3", Counter: 1}}},
		{name: "group item", item: item{AttrLeaseKey: s(GroupKey), AttrEntityType: s(EntityKCLGroup), AttrEpoch: n(3), AttrScans: n(9), AttrDigest: s("d"),
			AttrExpired: &types.AttributeValueMemberM{Value: item{"kcl-worker:w9": n(5)}}},
			want: Item{Kind: KindGroup, Key: GroupKey, Entity: EntityKCLGroup, Group: Group{Epoch: 3, Scans: 9, Digest: "d", Expired: map[string]int64{"kcl-worker:w9": 5}}}},
		{name: "Java leader", item: item{AttrLeaseKey: s("Leader"), AttrEntityType: s("LEADER"), "ownerName": s("java-1")},
			want: Item{Kind: KindJava, Key: "Leader", Entity: "LEADER"}},

		{name: "no key", item: item{AttrCounter: n(1)}, err: "item without a string leaseKey"},
		{name: "numeric key", item: item{AttrLeaseKey: n(1)}, err: "item without a string leaseKey"},
		{name: "bad checkpoint", item: leaseItem("shardId-000000000006", "w1", 1, "yesterday"),
			err: `lease "shardId-000000000006": checkpoint: "yesterday" is neither a sequence number nor a sentinel`},
		{name: "no checkpoint", item: with(leaseItem("shardId-000000000007", "w1", 1, Latest), AttrCheckpoint, nil),
			err: `lease "shardId-000000000007": checkpoint: missing or not a string`},
		{name: "no counter", item: with(leaseItem("shardId-000000000008", "w1", 1, Latest), AttrCounter, nil),
			err: `lease "shardId-000000000008": leaseCounter: missing`},
		{name: "negative counter", item: with(leaseItem("shardId-000000000008", "w1", 1, Latest), AttrCounter, n(-1)),
			err: `lease "shardId-000000000008": leaseCounter: "-1" is not a non-negative integer`},
		{name: "owner not a string", item: with(leaseItem("shardId-000000000009", "", 1, Latest), AttrOwner, n(3)),
			err: `lease "shardId-000000000009": leaseOwner: not a string`},
		{name: "parents not a set", item: with(leaseItem("shardId-000000000010", "", 1, Latest), AttrParents, n(3)),
			err: `lease "shardId-000000000010": parentShardId: not a string set`},
		{name: "start time not a number", item: with(leaseItem("shardId-000000000011", "", 1, Latest), AttrStartAt, s("now")),
			err: `lease "shardId-000000000011": kclStartTimestamp: not a number`},
		{name: "a kcl key that is no lease", item: item{AttrLeaseKey: s("kcl-something-new")},
			err: `lease "kcl-something-new": leaseCounter: missing`},
		{name: "heartbeat without counter", item: item{AttrLeaseKey: s(WorkerKey("w3"))},
			err: `heartbeat "kcl-worker:w3": leaseCounter: missing`},
		{name: "group item with a bad epoch", item: item{AttrLeaseKey: s(GroupKey), AttrEpoch: s("3")},
			err: `group item "kcl-group": kclEpoch: not a number`},
		{name: "group item with a bad verdict", item: item{AttrLeaseKey: s(GroupKey), AttrExpired: &types.AttributeValueMemberM{Value: item{"shardId-1": s("5")}}},
			err: `group item "kcl-group": kclExpired.shardId-1: not a number`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Read(tc.item)
			if tc.err != "" {
				var e *Error
				if assert.ErrorAs(t, got.Err, &e) {
					assert.EqualError(t, e, tc.err)
				}
				return
			}
			assert.NoError(t, got.Err)
			assert.Equal(t, tc.want, got)
		})
	}
}
