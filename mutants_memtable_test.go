package kcl

// Tests written for scripts/mutants: the in-memory lease table's guards,
// which the simulation (TestSimulation) reaches only by chance. They need
// no emulator.

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// A second process with the same WorkerID takes the heartbeat item over;
// the first one's next beat is then errDuplicateWorker.
func TestMutantMemTableHeartbeatRefusesAnotherProcess(t *testing.T) {
	ctx := context.Background()
	tbl := newMemLeases()
	a, err := tbl.heartbeat(ctx, "twin", "token-a", false, -1, nil)
	require.NoError(t, err)
	a, err = tbl.heartbeat(ctx, "twin", "token-a", false, a, nil)
	require.NoError(t, err, "the same process beats on")
	b, err := tbl.heartbeat(ctx, "twin", "token-b", false, -1, nil)
	require.NoError(t, err, "a new process takes the item over")
	_, err = tbl.heartbeat(ctx, "twin", "token-a", false, a, nil)
	require.ErrorIs(t, err, errDuplicateWorker)
	_, err = tbl.heartbeat(ctx, "twin", "token-b", false, b, nil)
	require.NoError(t, err)
}

// Every write of a lease in memory is fenced on the owner and counter read
// before it (checkFencedWrites, mutants_leasetable_test.go).
func TestMutantMemTableWritesAreFenced(t *testing.T) {
	checkFencedWrites(t, newMemLeases())
}
