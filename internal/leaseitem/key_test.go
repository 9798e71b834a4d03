package leaseitem

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestKeys(t *testing.T) {
	for _, tc := range []struct{ key, stream, shard string }{
		{"shardId-000000000001", "", "shardId-000000000001"},
		{"123456789012:orders:1700000000:shardId-000000000001", "123456789012:orders:1700000000", "shardId-000000000001"},
	} {
		stream, shard := SplitKey(tc.key)
		assert.Equal(t, tc.stream, stream, tc.key)
		assert.Equal(t, tc.shard, shard, tc.key)
		assert.Equal(t, tc.key, Key(stream, shard), tc.key)
		assert.Equal(t, tc.stream != "", MultiStream(tc.key), tc.key)
		l := Lease{Key: tc.key}
		assert.Equal(t, tc.stream, l.StreamID(), tc.key)
		assert.Equal(t, tc.shard, l.ShardID(), tc.key)
	}
	assert.Equal(t, "kcl-worker:w1", WorkerKey("w1"))
}

func TestStreamID(t *testing.T) {
	created := time.Unix(1700000000, 999e6)
	for arn, want := range map[string]string{
		"arn:aws:kinesis:us-east-1:123456789012:stream/orders":    "123456789012:orders:1700000000",
		"arn:aws-cn:kinesis:cn-north-1:123456789012:stream/a-b_c": "123456789012:a-b_c:1700000000",
		"arn:aws:kinesis:us-east-1::stream/orders":                "", // no account
		"arn:aws:kinesis:us-east-1:123456789012:orders":           "", // no stream/
		"orders": "",
	} {
		id, ok := StreamID(arn, created)
		assert.Equal(t, want, id, arn)
		assert.Equal(t, want != "", ok, arn)
	}
}

// TestNewItem: a new lease is written as the Java KCL writes it.
func TestNewItem(t *testing.T) {
	single := NewItem(Lease{Key: "shardId-000000000002", Counter: 1, Checkpoint: ShardEnd, Parents: []string{"shardId-000000000000"}, Owner: "ignored", OwnerSwitches: 4}, false)
	assert.Equal(t, item{
		AttrLeaseKey: s("shardId-000000000002"), AttrCounter: n(1), AttrCheckpoint: s(ShardEnd), AttrCheckpointSub: n(0),
		AttrOwnerSwitches: n(0), AttrParents: ss("shardId-000000000000"),
	}, single, "no owner, no owner switches")

	multi := NewItem(Lease{Key: "1:s:2:shardId-000000000003", Checkpoint: Latest,
		Parents: []string{"1:s:2:shardId-000000000001", "1:s:2:shardId-000000000002"}}, true)
	assert.Equal(t, item{
		AttrLeaseKey: s("1:s:2:shardId-000000000003"), AttrCounter: n(0), AttrCheckpoint: s(Latest), AttrCheckpointSub: n(0),
		AttrOwnerSwitches: n(0), AttrParents: ss("shardId-000000000001", "shardId-000000000002"),
		AttrStreamName: s("1:s:2"), AttrShardID: s("shardId-000000000003"), AttrEntityType: s(EntityLease),
	}, multi, "the multi-stream layout: streamName, shardId and bare parents; entityType LEASE in a table that marks its items")
}
