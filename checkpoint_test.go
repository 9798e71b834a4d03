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

// A checkpoint write retried after an error writes the acked prefix as it
// is at the retry, never the older one it first tried: found by the
// simulation (seed 212536924), where a hand-off retried through a partition
// stored a checkpoint behind one a flush wrote meanwhile, and the new owner
// delivered acked records again.
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
	assert.Equal(t, "200", cp.seq)
	stored, _, err := c.table.read(ctx, "s1")
	require.NoError(t, err)
	assert.Equal(t, "200", stored.checkpoint.seq, "the checkpoint written is the prefix at the retry")
	assert.Equal(t, "other", stored.owner)
}
