package kcl

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// chunkReader returns a Consumer set up for Process's way of delivery (a
// chunk at a time) with no lease loop, and a reader of one shard.
func chunkReader(t *testing.T) (*Consumer, *shardReader) {
	t.Helper()
	c, err := New(Options{StreamName: "s", AWSConfig: &aws.Config{}, Logger: discardLogger()})
	require.NoError(t, err)
	c.chunks = make(chan *recordChunk, 4)
	keepDelivering(c)
	const id = "shardId-000000000000"
	h := newHeldLease(lease{shardID: id, checkpoint: checkpoint{seq: checkpointTrimHorizon}}, c.streamList()[0], id)
	return c, newShardReader(c.readerEnv(), h)
}

// A chunk given back to the pool keeps no record's data (putChunk's
// contract, docs/tuning.md): pageRecords.fill writes each Kinesis record
// into the slot after the last record kept before it knows whether that
// record is kept, so a skipped one (an aggregate's end, a record at or
// before the resume checkpoint, a misplaced aggregate) is left in ch.buf
// past ch.recs, which putChunk does not clear. The pool then keeps the
// whole aggregate (up to 1 MiB) alive for as long as the chunk sits there.
func TestReview13PooledChunkKeepsNoDataOfASkippedRecord(t *testing.T) {
	agg := aggregate([]userRecord{{partitionKey: "a", data: []byte("one")}, {partitionKey: "b", data: []byte("two")}})
	pageOf := func(r *shardReader, skip *checkpoint) *pageRecords {
		return newPageRecords(r, []types.Record{{Data: agg, PartitionKey: aws.String("p"), SequenceNumber: aws.String("100"),
			ApproximateArrivalTimestamp: aws.Time(time.Now())}}, skip)
	}
	kept := func(ch *recordChunk) int {
		n := 0
		for i := range ch.buf {
			n += len(ch.buf[i].Data)
		}
		return n
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	t.Run("an aggregate ends the page", func(t *testing.T) {
		c, r := chunkReader(t)
		var skip checkpoint
		require.True(t, r.deliver(ctx, pageOf(r, &skip)))
		ch := <-c.chunks
		require.Len(t, ch.recs, 2)
		putChunk(ch) // as the dispatcher does once it copied the records out
		assert.Zero(t, kept(ch), "bytes of record data the pooled chunk keeps")
	})
	t.Run("every user record at or before the resume checkpoint", func(t *testing.T) {
		// deliver gives the chunk it filled, empty, back to the pool; the
		// pool's next Get on this goroutine returns it (unless the race
		// detector's random drops intervene: tried a few times).
		_, r := chunkReader(t)
		most := 0
		for range 10 {
			skip := checkpoint{seq: "100", sub: 1}
			require.True(t, r.deliver(ctx, pageOf(r, &skip)))
			ch := getChunk()
			most = max(most, kept(ch))
			putChunk(ch)
		}
		assert.Zero(t, most, "bytes of record data a pooled chunk keeps")
	})
}
