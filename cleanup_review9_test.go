package kcl

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kclgo/kcl/internal/kinesisfake"
)

// stalledCreate is a lease table whose first lease create runs late:
// before it, meanwhile happens (a process frozen between its read of the
// table and its creates, or a create retried for long).
type stalledCreate struct {
	leaseTable
	once      sync.Once
	meanwhile func()
}

func (s *stalledCreate) create(ctx context.Context, l lease) (bool, error) {
	s.once.Do(s.meanwhile)
	return s.leaseTable.create(ctx, l)
}

// A sync frozen after its read of the table, not before it, makes a lease
// on a listing from before the shard ended: the shard's lease was made,
// read to its end, its children started and it was deleted meanwhile, and
// the sync's create (conditional only on the key being absent) makes it
// again at TRIM_HORIZON. The listing's age is checked before each create,
// not only when the read ends.
func TestASyncFrozenBeforeItsCreatesDoesNotMakeADeletedLeaseAgain(t *testing.T) {
	ctx := context.Background()
	kin := kinesisfake.New(kinesisfake.Options{})
	kin.CreateStream("s", 2)
	const parent = "shardId-000000000001" // created after shardId-000000000000, whose create is late
	mem := newMemLeases()
	table := &stalledCreate{leaseTable: mem, meanwhile: func() {
		require.NoError(t, kin.SplitShard("s", parent, "255211775190703847597530955573826158592"))
		for _, child := range []string{"shardId-000000000002", "shardId-000000000003"} {
			_, err := mem.create(ctx, lease{shardID: child, counter: 5, checkpoint: checkpoint{seq: "49590338271490256608559692538361571095921575989136588898"}, parents: []string{parent}})
			require.NoError(t, err)
		}
		time.Sleep(60 * time.Millisecond) // frozen
	}}
	c, err := New(Options{StreamName: "s", WorkerID: "me", Kinesis: kin, InitialPosition: TrimHorizon, Logger: testLogger(t)})
	require.NoError(t, err)
	c.table, c.cleanupDelay = table, 100*time.Millisecond
	require.NoError(t, c.syncShards(ctx, running, c.streamList()[0]))
	l, made, err := mem.read(ctx, parent)
	require.NoError(t, err)
	assert.False(t, made, "no lease made again for the ended parent of started children; made at %q", l.checkpoint.seq)
}

// The first scanner deletes on its own delay, 5 minutes or 10 of its
// LeaseDurations: a worker with a longer LeaseDuration must not trust a
// listing for longer than half the shortest delay of any worker (5
// minutes), or the first scanner's deletion falls inside its listing's age.
func TestListingMaxAgeIsUnderEveryWorkersDelay(t *testing.T) {
	for _, d := range []time.Duration{time.Second, 10 * time.Second, time.Minute, 2 * time.Minute} {
		c, err := New(Options{StreamName: "s", WorkerID: "me", Kinesis: kinesisfake.New(kinesisfake.Options{}), LeaseDuration: d, Logger: testLogger(t)})
		require.NoError(t, err)
		shortest := (&Options{LeaseDuration: time.Second}).cleanupDelay()
		assert.LessOrEqual(t, c.listingMaxAge(), shortest/2, "LeaseDuration %v", d)
	}
}

// After kcl reset -to latest of every shard, the children of a shard whose
// lease cleanup deleted are at LATEST, not started: a sync must not make
// the parent's lease again and read it from its start (the user asked to
// skip to the tip).
func TestASyncAfterAResetToLatestDoesNotReReadADeletedParent(t *testing.T) {
	ctx := context.Background()
	kin := kinesisfake.New(kinesisfake.Options{})
	kin.CreateStream("s", 1)
	const parent = "shardId-000000000000"
	require.NoError(t, kin.SplitShard("s", parent, "170141183460469231731687303715884105728"))
	mem := newMemLeases()
	for _, child := range []string{"shardId-000000000001", "shardId-000000000002"} {
		// as kcl reset -to latest writes it, after the children started
		_, err := mem.create(ctx, lease{shardID: child, counter: 7, checkpoint: checkpoint{seq: checkpointLatest}, parents: []string{parent}})
		require.NoError(t, err)
	}
	c, err := New(Options{StreamName: "s", WorkerID: "me", Kinesis: kin, InitialPosition: TrimHorizon, Logger: testLogger(t)})
	require.NoError(t, err)
	c.table = mem
	require.NoError(t, c.syncShards(ctx, running, c.streamList()[0]))
	l, made, err := mem.read(ctx, parent)
	require.NoError(t, err)
	assert.False(t, made, "the deleted parent made again at %q", l.checkpoint.seq)
}
