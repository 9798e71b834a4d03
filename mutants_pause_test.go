package kcl

// Tests written for scripts/mutants: each kills a planted bug in the pause
// gate's use by deliver and send that no other test catches. They need no
// emulator.

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pausedConsumer returns a Consumer with no lease loop and its channel made,
// for driving deliver directly, and a page of n records of one shard.
func pausedConsumer(t *testing.T, buffer, n int) (*Consumer, *shardReader, *pageRecords) {
	t.Helper()
	c, err := New(Options{StreamName: "s", AWSConfig: &aws.Config{}, Logger: discardLogger(), LeaseDuration: time.Second})
	require.NoError(t, err)
	c.out = make(chan Record, buffer)
	now := time.Now()
	recs := make([]types.Record, n)
	for i := range recs {
		recs[i] = types.Record{Data: []byte(fmt.Sprint(i)), PartitionKey: aws.String("k"),
			SequenceNumber: aws.String(fmt.Sprintf("%056d", i+1)), ApproximateArrivalTimestamp: &now}
	}
	h := newHeldLease(lease{shardID: "shardId-000000000000", checkpoint: checkpoint{seq: checkpointTrimHorizon}}, c.streams[0], "shardId-000000000000")
	var skip checkpoint
	r := newShardReader(c.readerEnv(), h)
	return c, r, newPageRecords(r, recs, &skip)
}

// A process frozen past its delivery deadline wakes before the gate's timer
// fires: deliver's check before the chunk shuts the gate, and nothing of
// the chunk is sent.
func TestMutantDeliverChecksTheDeadlineBeforeEachChunk(t *testing.T) {
	noLeak(t)
	c, r, page := pausedConsumer(t, 100, 3)
	c.pause.stop() // frozen: no timer will fire
	sent := time.Now().Add(-time.Hour)
	c.pause.beat(sent, sent) // the first beat, trusted; its deadline long past
	require.False(t, c.pause.isShut(), "nothing has checked the deadline yet")

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	assert.False(t, r.deliver(ctx, page), "deliver waits on the shut gate until ctx ends")
	assert.Zero(t, len(c.out), "records sent past the deadline")
	assert.True(t, c.pause.isShut())
}

// A send blocked on a full channel when the delivery deadline passes gives
// up: the receiver, once it reads again, gets nothing more from this worker
// until the gate reopens.
func TestMutantBlockedSendGivesUpWhenTheGateShuts(t *testing.T) {
	noLeak(t)
	c, r, page := pausedConsumer(t, 0, 3) // unbuffered, and nobody receives yet
	now := time.Now()
	c.pause.beat(now, now) // deadline 0.9s on; its timer shuts the gate
	defer c.pause.stop()
	shutting := c.pause.closing()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	result := make(chan bool, 1)
	go func() { result <- r.deliver(ctx, page) }()
	select {
	case <-shutting:
	case <-time.After(30 * time.Second):
		t.Fatal("the gate did not shut by its timer")
	}
	select {
	case r := <-c.out:
		t.Errorf("record %s sent after the gate shut", r.SequenceNumber)
	case <-time.After(300 * time.Millisecond):
	}
	cancel()
	assert.False(t, <-result)
}

// A heartbeat confirmed after the delivery deadline reopens the gate only
// once every lease still held was written again: a take another worker
// decided on the older heartbeat (from a read of the lease before) fails.
func TestMutantLateBeatFencesEveryHeldLeaseBeforeReopening(t *testing.T) {
	noLeak(t)
	ctx := context.Background()
	c, err := New(Options{StreamName: "s", AWSConfig: &aws.Config{}, Logger: discardLogger(), LeaseDuration: time.Minute})
	require.NoError(t, err)
	_, err = c.table.create(ctx, lease{shardID: "s", checkpoint: checkpoint{seq: checkpointTrimHorizon}})
	require.NoError(t, err)
	free, _, _ := c.table.read(ctx, "s")
	mine, err := c.table.take(ctx, free, c.opts.WorkerID)
	require.NoError(t, err)
	h := newHeldLease(mine, nil, "s")
	c.held.held["s"] = h

	c.pause.stop() // no timers: the beats below say when
	sent := time.Now()
	require.False(t, c.pause.beat(sent, sent))
	require.True(t, c.pause.beat(sent, sent.Add(time.Hour)), "confirmed after the deadline: late")
	require.True(t, c.pause.isShut())
	seenByOther, _, _ := c.table.read(ctx, "s") // another worker's read, while the old heartbeat stands

	fenced, err := c.keeper.fence(ctx)
	require.NoError(t, err)
	require.True(t, fenced)
	assert.False(t, c.pause.isShut(), "fenced: reopened")
	_, err = c.table.take(ctx, seenByOther, "other")
	assert.ErrorIs(t, err, errLeaseLost, "a take decided before the fence")
}
