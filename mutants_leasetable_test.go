package kcl

// Tests written for scripts/mutants: the lease table's fencing, call by
// call. Races between workers reach these conditions only by chance in the
// end-to-end tests.

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Every write of a lease in DynamoDB is fenced on the owner and counter read
// before it.
func TestMutantLeaseTableWritesAreFenced(t *testing.T) {
	tbl := &dynamoLeases{db: dynamoClient(t), table: "app-" + uniqueName(t)}
	require.NoError(t, tbl.ensure(context.Background()))
	checkFencedWrites(t, tbl)
}

// checkFencedWrites checks that a take, checkpoint, hand-off or claim made
// from an outdated read of a lease (another worker wrote it since, or this
// one did) fails with errLeaseLost and changes nothing.
func checkFencedWrites(t *testing.T, tbl leaseTable) {
	ctx := context.Background()
	_, err := tbl.create(ctx, lease{shardID: "s", checkpoint: checkpoint{seq: checkpointTrimHorizon}})
	require.NoError(t, err)
	free, _, err := tbl.read(ctx, "s")
	require.NoError(t, err)

	a, err := tbl.take(ctx, free, writer{id: "a"})
	require.NoError(t, err)
	_, err = tbl.take(ctx, free, writer{id: "b"})
	require.ErrorIs(t, err, errLeaseLost, "a take of a free lease from a read before another take")

	a2, err := tbl.checkpoint(ctx, a, checkpoint{seq: "1"}, "a", writer{})
	require.NoError(t, err)
	_, err = tbl.checkpoint(ctx, a, checkpoint{seq: "9"}, "a", writer{})
	require.ErrorIs(t, err, errLeaseLost, "the owner's write from an old read (counter)")
	_, err = tbl.take(ctx, a, writer{id: "b"})
	require.ErrorIs(t, err, errLeaseLost, "a take of an owned lease from an old read (counter)")

	b, err := tbl.take(ctx, a2, writer{id: "b"}) // taken as expired
	require.NoError(t, err)
	_, err = tbl.take(ctx, a2, writer{id: "c"})
	require.ErrorIs(t, err, errLeaseLost, "a take of an owned lease from a read before another take")
	_, err = tbl.checkpoint(ctx, a2, checkpoint{seq: "9"}, "a", writer{})
	require.ErrorIs(t, err, errLeaseLost, "the old owner's late checkpoint")
	_, err = tbl.checkpoint(ctx, a2, checkpoint{seq: "9"}, "c", writer{})
	require.ErrorIs(t, err, errLeaseLost, "the old owner's late hand-off")
	require.ErrorIs(t, tbl.claim(ctx, a2, "c"), errLeaseLost, "a claim on an owner that is gone")

	require.NoError(t, tbl.claim(ctx, b, "c"))
	require.ErrorIs(t, tbl.claim(ctx, b, "d"), errLeaseLost, "a second claim")

	stored, _, err := tbl.read(ctx, "s")
	require.NoError(t, err)
	assert.Equal(t, "b", stored.owner)
	assert.Equal(t, b.counter, stored.counter)
	assert.Equal(t, checkpoint{seq: "1"}, stored.checkpoint)
	assert.Equal(t, "c", stored.handoffTo)
}
