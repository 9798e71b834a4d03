package leaseitem

import (
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// A lease key is the shard ID in a single-stream table. In the Java KCL's
// multi-stream layout it is the stream's identifier,
// account:stream:creationEpoch, then ":" and the shard ID. Neither stream
// names nor shard IDs hold a colon, so the shard ID is what follows the
// last one.

// Key returns the lease key of a shard of the stream with identifier
// streamID ("" in a single-stream table: the shard ID itself).
func Key(streamID, shardID string) string {
	if streamID == "" {
		return shardID
	}
	return streamID + ":" + shardID
}

// SplitKey splits a lease key into the stream's identifier ("" for a
// single-stream key) and the shard ID.
func SplitKey(key string) (streamID, shardID string) {
	i := strings.LastIndexByte(key, ':')
	if i < 0 {
		return "", key
	}
	return key[:i], key[i+1:]
}

// MultiStream reports whether a lease key is of the multi-stream layout.
func MultiStream(key string) bool { return strings.Contains(key, ":") }

// StreamID returns the Java KCL's identifier of a stream in a multi-stream
// table (StreamIdentifier.serialize): account:name:creationEpoch, the
// account and name from the stream's ARN
// (arn:partition:kinesis:region:account:stream/name), the creation time in
// seconds. ok is false if the ARN names no account or stream.
func StreamID(arn string, created time.Time) (id string, ok bool) {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 || parts[4] == "" || !strings.HasPrefix(parts[5], "stream/") {
		return "", false
	}
	return parts[4] + ":" + strings.TrimPrefix(parts[5], "stream/") + ":" + strconv.FormatInt(created.Unix(), 10), true
}

// WorkerKey returns the key of a worker's heartbeat item.
func WorkerKey(worker string) string { return WorkerKeyPrefix + worker }

// ItemKey returns the DynamoDB key of the item with lease key key.
func ItemKey(key string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{AttrLeaseKey: &types.AttributeValueMemberS{Value: key}}
}
