package kcl

import (
	"context"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

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
type simStreams struct {
	names []string
	byARN map[string]string // stream ARN -> name
	byID  map[string]string // multi-stream identifier, account:stream:creationEpoch -> name
}

// newSimStreams creates the streams, of shards shards each, in kin.
func newSimStreams(t testing.TB, kin *kinesisfake.Server, shards int, names ...string) *simStreams {
	sts := &simStreams{names: names, byARN: map[string]string{}, byID: map[string]string{}}
	for _, name := range names {
		arn := kin.CreateStream(name, shards)
		out, err := kin.DescribeStreamSummary(context.Background(), &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(name)})
		if err != nil {
			t.Fatalf("DescribeStreamSummary: %v", err)
		}
		sts.byARN[arn] = name
		// The Java KCL's identifier (StreamIdentifier.serialize), built
		// here apart from kcl's own code.
		sts.byID[kinesisfake.Account+":"+name+":"+strconv.FormatInt(out.StreamDescriptionSummary.StreamCreationTimestamp.Unix(), 10)] = name
	}
	return sts
}

func (n *simStreams) multi() bool { return len(n.names) > 1 }

// pick draws a stream; with one, it draws nothing.
func (n *simStreams) pick(rng *rand.Rand) string {
	if !n.multi() {
		return n.names[0]
	}
	return n.names[rng.IntN(len(n.names))]
}

// qualify names x, a shard ID or a producer key of stream, as the log does.
func (n *simStreams) qualify(stream, x string) string {
	if !n.multi() {
		return x
	}
	return stream + "/" + x
}

// ofRecord names the shard of a delivered record.
func (n *simStreams) ofRecord(streamARN, shardID string) string {
	name, ok := n.byARN[streamARN]
	if !ok {
		name = "unknown-stream(" + streamARN + ")"
	}
	return n.qualify(name, shardID)
}

// ofLeaseKey names the shard of a lease key: the shard ID with one stream;
// with several, account:stream:creationEpoch:shardId, whose identifier must
// be one of the run's streams (an unknown one stays apart, so that a
// delivery under it has no take).
func (n *simStreams) ofLeaseKey(key string) string {
	if !n.multi() {
		return key
	}
	i := strings.LastIndexByte(key, ':')
	if i < 0 {
		return "unknown-lease-key(" + key + ")"
	}
	name, ok := n.byID[key[:i]]
	if !ok {
		return "unknown-lease-key(" + key + ")"
	}
	return n.qualify(name, key[i+1:])
}
