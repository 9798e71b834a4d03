package kcl

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// failingOnce fails the first checkpoint write that passes a lease to
// another worker, calling meanwhile before it answers: a hand-off write
// that waits out an error while acks go on.
type failingOnce struct {
	leaseTable
	meanwhile func()
	failed    atomic.Bool
}

func (t *failingOnce) checkpoint(ctx context.Context, l lease, cp checkpoint, next string, w writer) (lease, error) {
	if next != l.owner && next != "" && t.failed.CompareAndSwap(false, true) {
		t.meanwhile()
		return l, &ddbtypes.ProvisionedThroughputExceededException{Message: aws.String("throttled (test)")}
	}
	return t.leaseTable.checkpoint(ctx, l, cp, next, w)
}

// A checkpoint write retried after an error never writes a prefix behind
// one written meanwhile: found by the simulation (seed 212536924), where a
// hand-off retried through a partition stored a checkpoint behind one a
// flush wrote meanwhile, and the new owner delivered acked records again.
// A write that passes the lease on closes the window first: the prefix
// stops where the acks stood then, for it and any flush behind it, and an
// ack that comes later is delivered again by the new owner.
func TestARetriedCheckpointWriteNeverMovesTheCheckpointBack(t *testing.T) {
	c, err := New(Options{StreamName: "s", AWSConfig: &aws.Config{}, WorkerID: "me", Logger: discardLogger()})
	require.NoError(t, err)
	ctx := context.Background()
	_, err = c.table.create(ctx, lease{shardID: "s1", checkpoint: checkpoint{seq: checkpointTrimHorizon}})
	require.NoError(t, err)
	l, err := c.table.take(ctx, lease{shardID: "s1", checkpoint: checkpoint{seq: checkpointTrimHorizon}}, writer{id: "me"})
	require.NoError(t, err)
	h := newHeldLease(l, nil, "s1")
	h.cancel = func() {}
	recs := []Record{{SequenceNumber: "100"}, {SequenceNumber: "200"}}
	require.True(t, h.window.push(recs))
	recs[0].Ack()
	c.table = &failingOnce{leaseTable: c.table, meanwhile: func() { recs[1].Ack() }}

	cp, _, err := c.writeCheckpoint(ctx, h, "other", false)
	require.NoError(t, err)
	assert.Equal(t, "100", cp.seq)
	stored, _, err := c.table.read(ctx, "s1")
	require.NoError(t, err)
	assert.Equal(t, "100", stored.checkpoint.seq, "the checkpoint written is the prefix at the close")
	assert.Equal(t, "other", stored.owner)
	acked, _ := h.window.state()
	assert.Equal(t, "100", acked.seq, "no write of this worker may go past it")
}

// scriptedWrites answers the checkpoint writes of a lease table by script:
// each call takes the next step ("lost": applied, its reply lost;
// "throttled": refused before it is applied; "" or past the end: as the
// table answers).
type scriptedWrites struct {
	leaseTable
	steps []string
	calls int
}

func (t *scriptedWrites) checkpoint(ctx context.Context, l lease, cp checkpoint, next string, w writer) (lease, error) {
	step := ""
	if t.calls < len(t.steps) {
		step = t.steps[t.calls]
	}
	t.calls++
	throttled := &ddbtypes.ProvisionedThroughputExceededException{Message: aws.String("throttled (test)")}
	switch step {
	case "lost":
		if _, err := t.leaseTable.checkpoint(ctx, l, cp, next, w); err != nil {
			return l, err
		}
		return l, throttled
	case "throttled":
		return l, throttled
	}
	return t.leaseTable.checkpoint(ctx, l, cp, next, w)
}

// A write whose reply was lost is recognised by a later write's read-back
// even when another attempt failed in between: every write since the last
// one confirmed may have taken effect, not only the last (found by the
// simulation in virtual time, seeds 804224592 and 567488684: the worker
// took its lease for lost with the table reachable, and the records acked
// since its last checkpoint were delivered again).
func TestAWriteWhoseReplyWasLostIsRecognisedAfterAnotherFailed(t *testing.T) {
	c, err := New(Options{StreamName: "s", AWSConfig: &aws.Config{}, WorkerID: "me", Logger: discardLogger()})
	require.NoError(t, err)
	ctx := context.Background()
	_, err = c.table.create(ctx, lease{shardID: "s1", checkpoint: checkpoint{seq: checkpointTrimHorizon}})
	require.NoError(t, err)
	l, err := c.table.take(ctx, lease{shardID: "s1", checkpoint: checkpoint{seq: checkpointTrimHorizon}}, c.beat.writer())
	require.NoError(t, err)
	h := newHeldLease(l, nil, "s1")
	h.cancel = func() {}
	recs := []Record{{SequenceNumber: "100"}, {SequenceNumber: "200"}, {SequenceNumber: "300"}}
	require.True(t, h.window.push(recs))
	recs[0].Ack()
	table := &scriptedWrites{leaseTable: c.table, steps: []string{"lost", "throttled"}}
	c.table = table

	_, _, err = c.checkpointOnce(ctx, h, false, "me") // 100: applied, reply lost
	require.Error(t, err)
	c.beat.confirmed.Add(1) // a heartbeat between: later writes carry another beat in their mark
	recs[1].Ack()
	_, _, err = c.checkpointOnce(ctx, h, false, "me") // 200: refused
	require.Error(t, err)
	recs[2].Ack()
	cp, _, err := c.writeCheckpoint(ctx, h, "me", false) // 300: its condition fails on the first write's counter
	require.NoError(t, err, "the lease is still this worker's")
	assert.Equal(t, "300", cp.seq)
	stored, _, err := c.table.read(ctx, "s1")
	require.NoError(t, err)
	assert.Equal(t, "300", stored.checkpoint.seq)
	assert.Equal(t, "me", stored.owner)
}
