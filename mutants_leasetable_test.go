package kcl

// Tests written for scripts/mutants: the lease table's fencing, call by
// call. Races between workers reach these conditions only by chance in the
// end-to-end tests.

import (
	"context"
	"fmt"
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

// A lease deleted and made again under its key (a stream created again, in
// a single-stream table) starts its counter over. A take, replacement or
// deletion decided on a read of the earlier lease that finds the later one
// at the same counter fails: the stream creation time it was stamped with
// differs (found by the simulation, seed 311924255 with -sim.recreate: a
// stale read's SHARD_END lease of the earlier stream replaced the new
// stream's lease while another worker read it). On both tables.
func TestAWriteDecidedOnALeaseMadeAgainUnderItsKeyFails(t *testing.T) {
	for _, tc := range []struct {
		name string
		tbl  func(t *testing.T) leaseTable
	}{
		{"in memory", func(t *testing.T) leaseTable { return newMemLeases() }},
		{"DynamoDB", func(t *testing.T) leaseTable {
			tbl := &dynamoLeases{db: dynamoClient(t), table: "app-" + uniqueName(t)}
			require.NoError(t, tbl.ensure(context.Background()))
			return tbl
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			tbl := tc.tbl(t)
			// ended: the earlier stream's lease, as a stale read still shows
			// it after its deletion.
			for _, earlier := range []int64{0, 1000} { // unstamped (the Java KCL's), stamped
				key := fmt.Sprintf("s%d", earlier)
				_, err := tbl.create(ctx, lease{shardID: key, checkpoint: checkpoint{seq: checkpointShardEnd}, streamCreated: earlier})
				require.NoError(t, err)
				ended, _, err := tbl.read(ctx, key)
				require.NoError(t, err)
				require.NoError(t, tbl.remove(ctx, ended))
				_, err = tbl.create(ctx, lease{shardID: key, checkpoint: checkpoint{seq: checkpointTrimHorizon}, streamCreated: 2000})
				require.NoError(t, err)
				later, _, err := tbl.read(ctx, key)
				require.NoError(t, err)
				require.Equal(t, ended.counter, later.counter, "the counter started over")

				_, err = tbl.take(ctx, ended, writer{id: "b"})
				assert.ErrorIs(t, err, errLeaseLost, "a take decided on the earlier lease")
				assert.ErrorIs(t, tbl.replace(ctx, ended, lease{shardID: key, checkpoint: checkpoint{seq: checkpointTrimHorizon}, counter: ended.counter + 1, streamCreated: 3000}),
					errLeaseLost, "a replacement decided on the earlier lease")
				assert.ErrorIs(t, tbl.remove(ctx, ended), errLeaseLost, "a deletion decided on the earlier lease")
				stored, _, err := tbl.read(ctx, key)
				require.NoError(t, err)
				assert.Equal(t, later, stored, "the later lease is untouched")

				_, err = tbl.take(ctx, later, writer{id: "b"})
				assert.NoError(t, err, "a take decided on the later lease")
			}
		})
	}
}
