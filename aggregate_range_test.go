//go:build go1.25

package kcl

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// throttledListing refuses every ListShards for a limit, as Kinesis does
// while an account's control-plane calls are throttled.
type throttledListing struct{ KinesisAPI }

func (throttledListing) ListShards(context.Context, *kinesis.ListShardsInput, ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error) {
	return nil, &types.LimitExceededException{Message: aws.String("Rate exceeded for stream s")}
}

// A listing for the shard's range that keeps failing leaves the range
// unknown, and the page is delivered unchecked (learnRange's contract):
// it does not hold the page, and stall the shard, for as long as
// ListShards is throttled. It was retried for as long as the reader's
// context lived (found by a review).
func TestALearnRangeListingThatKeepsFailingDoesNotHoldThePage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, err := New(Options{StreamName: "s", Kinesis: throttledListing{}, Logger: discardLogger()})
		require.NoError(t, err)
		const id = "shardId-000000000002"
		r := newShardReader(c.readerEnv(), newHeldLease(lease{shardID: id, checkpoint: checkpoint{seq: checkpointTrimHorizon}}, c.streamList()[0], id))
		agg := []types.Record{{Data: aggregate([]userRecord{{partitionKey: "a", data: []byte("x")}}), PartitionKey: aws.String("p"), SequenceNumber: aws.String("2")}}
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		defer cancel()
		began := time.Now()
		r.learnRange(ctx, agg)
		assert.LessOrEqual(t, time.Since(began), learnRangeWait+retryMaxInterval, "given up within learnRangeWait (and one backoff)")
		assert.False(t, r.shardRange().known)
	})
}
