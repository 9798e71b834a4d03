package kcl

// Tests written for scripts/mutants: the in-memory lease table's guards,
// which the simulation (TestSimulation) reaches only by chance. They need
// no emulator.

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A second process with the same WorkerID takes the heartbeat item over;
// the first one's next beat is then errDuplicateWorker.
func TestMutantMemTableHeartbeatRefusesAnotherProcess(t *testing.T) {
	ctx := context.Background()
	tbl := newMemLeases()
	a, err := tbl.heartbeat(ctx, "twin", "token-a", false, -1)
	require.NoError(t, err)
	a, err = tbl.heartbeat(ctx, "twin", "token-a", false, a)
	require.NoError(t, err, "the same process beats on")
	b, err := tbl.heartbeat(ctx, "twin", "token-b", false, -1)
	require.NoError(t, err, "a new process takes the item over")
	_, err = tbl.heartbeat(ctx, "twin", "token-a", false, a)
	require.ErrorIs(t, err, errDuplicateWorker)
	_, err = tbl.heartbeat(ctx, "twin", "token-b", false, b)
	require.NoError(t, err)
}

// Every write of a lease in memory is fenced on the owner and counter read
// before it: a worker that lost the lease, or writes from an old read,
// changes nothing.
func TestMutantMemTableWritesAreFenced(t *testing.T) {
	ctx := context.Background()
	tbl := newMemLeases()
	_, err := tbl.create(ctx, lease{shardID: "s", checkpoint: checkpoint{seq: checkpointTrimHorizon}})
	require.NoError(t, err)
	free, _, _ := tbl.read(ctx, "s")

	a, err := tbl.take(ctx, free, "a")
	require.NoError(t, err)
	_, err = tbl.take(ctx, free, "b")
	require.ErrorIs(t, err, errLeaseLost, "a take from a read before another take")

	a2, err := tbl.checkpoint(ctx, a, checkpoint{seq: "1"}, "a")
	require.NoError(t, err)
	_, err = tbl.checkpoint(ctx, a, checkpoint{seq: "9"}, "a")
	require.ErrorIs(t, err, errLeaseLost, "the owner's write from an old read (counter)")

	b, err := tbl.take(ctx, a2, "b") // taken as expired
	require.NoError(t, err)
	_, err = tbl.checkpoint(ctx, a2, checkpoint{seq: "9"}, "a")
	require.ErrorIs(t, err, errLeaseLost, "the old owner's late checkpoint")
	_, err = tbl.checkpoint(ctx, a2, checkpoint{seq: "9"}, "c")
	require.ErrorIs(t, err, errLeaseLost, "the old owner's late hand-off")
	require.ErrorIs(t, tbl.claim(ctx, a2, "c"), errLeaseLost, "a claim on an owner that is gone")

	stored, _, _ := tbl.read(ctx, "s")
	assert.Equal(t, "b", stored.owner)
	assert.Equal(t, b.counter, stored.counter)
	assert.Equal(t, checkpoint{seq: "1"}, stored.checkpoint)
}
