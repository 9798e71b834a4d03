package kcl

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/kclgo/kcl/internal/kinesisfake"
)

// A shard sync while running finds a stream created again by its creation
// time alone, though no reader of this worker met it (a worker that holds
// none of its leases, or a Kinesis that lets an old iterator read on, as
// kinesalite does): the stream is switched and, in a single-stream table,
// the old stream's leases replaced by the new one's at TRIM_HORIZON.
func TestASyncFindsAStreamCreatedAgain(t *testing.T) {
	ctx := context.Background()
	clock := kinesisfake.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	kin := kinesisfake.New(kinesisfake.Options{Now: clock.Now})
	kin.CreateStream("s", 1)
	c, err := New(Options{StreamName: "s", Kinesis: kin, InitialPosition: TrimHorizon, Logger: discardLogger()})
	require.NoError(t, err)
	require.NoError(t, c.describeStreams(ctx))
	require.NoError(t, c.syncShards(ctx, starting, nil))
	old, ok, err := c.table.read(ctx, "shardId-000000000000")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, clock.Now().UnixMilli(), old.streamCreated, "kcl stamps the leases of a single-stream table")

	require.NoError(t, kin.DeleteStream("s"))
	created := clock.Advance(time.Minute)
	kin.CreateStream("s", 1)
	require.NoError(t, c.syncShards(ctx, running, nil))

	assert.Equal(t, created, c.streamList()[0].created.UTC(), "the stream read is the new one")
	l, ok, err := c.table.read(ctx, "shardId-000000000000")
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, created.UnixMilli(), l.streamCreated, "the lease is the new stream's")
	assert.Equal(t, checkpointTrimHorizon, l.checkpoint.seq)
	assert.Greater(t, l.counter, old.counter, "replaced fenced on its counter")
}

// The shard sync replaces only the old stream's leases that nobody may be
// reading: a free one, not another worker's. That one is left to its owner,
// which may still be reading the old stream (kinesalite lets an old
// iterator read the new one): it replaces the lease itself once it finds the
// stream created again, or another worker does once it is dead.
func TestASyncLeavesAnotherWorkersOldStreamLeaseToIt(t *testing.T) {
	ctx := context.Background()
	clock := kinesisfake.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	kin := kinesisfake.New(kinesisfake.Options{Now: clock.Now})
	kin.CreateStream("s", 2)
	c, err := New(Options{StreamName: "s", WorkerID: "me", Kinesis: kin, InitialPosition: TrimHorizon, Logger: discardLogger()})
	require.NoError(t, err)
	require.NoError(t, c.describeStreams(ctx))
	require.NoError(t, c.syncShards(ctx, starting, nil))
	owned, ok, err := c.table.read(ctx, "shardId-000000000001")
	require.NoError(t, err)
	require.True(t, ok)
	owned, err = c.table.take(ctx, owned, writer{id: "other"})
	require.NoError(t, err)

	require.NoError(t, kin.DeleteStream("s"))
	created := clock.Advance(time.Minute)
	kin.CreateStream("s", 2)
	require.NoError(t, c.syncShards(ctx, running, nil))

	free, _, err := c.table.read(ctx, "shardId-000000000000")
	require.NoError(t, err)
	assert.Equal(t, created.UnixMilli(), free.streamCreated, "the free lease is the new stream's")
	l, _, err := c.table.read(ctx, "shardId-000000000001")
	require.NoError(t, err)
	assert.Equal(t, owned, l, "another worker's lease is left to it")
}

// A stream created again and resharded reuses the earlier stream's shard
// IDs: a child of the new stream may have a lease of the old one (replaced
// by the sync at TRIM_HORIZON) while its new parent has none (the Java KCL
// deleted the old parent's lease once its children started). That lease,
// never started in the new stream, proves nothing of the parent, which
// must get a lease and be read first: it is not taken for read and
// cleaned up.
func TestASyncCreatesTheParentOfAReplacedChild(t *testing.T) {
	ctx := context.Background()
	clock := kinesisfake.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	kin := kinesisfake.New(kinesisfake.Options{Now: clock.Now})
	kin.CreateStream("s", 1)
	c, err := New(Options{StreamName: "s", WorkerID: "me", Kinesis: kin, InitialPosition: TrimHorizon, Logger: discardLogger()})
	require.NoError(t, err)
	require.NoError(t, c.describeStreams(ctx))
	require.NoError(t, kin.SplitShard("s", "shardId-000000000000", "170141183460469231731687303715884105728"))
	require.NoError(t, c.syncShards(ctx, starting, nil))
	// The old stream: the children started, the parent's lease deleted.
	_, seq, err := kin.PutRecord("s", "k", []byte("old"))
	require.NoError(t, err)
	for _, id := range []string{"shardId-000000000001", "shardId-000000000002"} {
		l, ok, err := c.table.read(ctx, id)
		require.NoError(t, err)
		require.True(t, ok)
		l, err = c.table.take(ctx, l, writer{id: "me"})
		require.NoError(t, err)
		_, err = c.table.checkpoint(ctx, l, checkpoint{seq: seq}, "", writer{id: "me"})
		require.NoError(t, err)
	}
	parent, _, err := c.table.read(ctx, "shardId-000000000000")
	require.NoError(t, err)
	require.NoError(t, c.table.remove(ctx, parent))

	require.NoError(t, kin.DeleteStream("s"))
	clock.Advance(time.Minute)
	kin.CreateStream("s", 1)
	require.NoError(t, kin.SplitShard("s", "shardId-000000000000", "170141183460469231731687303715884105728"))
	require.NoError(t, c.syncShards(ctx, running, nil))

	l, ok, err := c.table.read(ctx, "shardId-000000000000")
	require.NoError(t, err)
	require.True(t, ok, "the new parent has a lease")
	assert.Equal(t, checkpointTrimHorizon, l.checkpoint.seq)
	for _, id := range []string{"shardId-000000000001", "shardId-000000000002"} {
		l, _, err := c.table.read(ctx, id)
		require.NoError(t, err)
		assert.Equal(t, checkpointTrimHorizon, l.checkpoint.seq, "%s: the new stream's", id)
		assert.Equal(t, []string{"shardId-000000000000"}, l.parents, "%s: after its new parent", id)
	}
}

// With Streams and InitialPosition Latest, a stream created again is read
// from its first record: the group was reading that name. Every worker's
// sync must agree on it, also one that runs after another worker's first
// sync of the new stream created some of its leases and failed (a throttle):
// the rest start at TRIM_HORIZON too, not at LATEST, which would skip what
// was written to those shards meanwhile.
func TestASyncAfterAPartialOneReadsAStreamCreatedAgainFromItsStart(t *testing.T) {
	ctx := context.Background()
	clock := kinesisfake.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	kin := kinesisfake.New(kinesisfake.Options{Now: clock.Now})
	kin.CreateStream("s", 2)
	c, err := New(Options{Streams: []string{"s"}, WorkerID: "me", Kinesis: kin, InitialPosition: Latest, Logger: discardLogger()})
	require.NoError(t, err)
	require.NoError(t, c.describeStreams(ctx))
	require.NoError(t, c.syncShards(ctx, starting, nil))

	require.NoError(t, kin.DeleteStream("s"))
	clock.Advance(time.Minute)
	kin.CreateStream("s", 2)
	require.NoError(t, c.describeStreams(ctx))
	s := c.streamList()[0]
	// Another worker's first sync of the new stream created one lease, then
	// failed.
	_, err = c.table.create(ctx, s.newLease(shardInfo{id: "shardId-000000000000"}, checkpoint{seq: checkpointTrimHorizon}))
	require.NoError(t, err)
	require.NoError(t, c.syncShards(ctx, running, nil))

	l, ok, err := c.table.read(ctx, leaseKey(s.id, "shardId-000000000001"))
	require.NoError(t, err)
	require.True(t, ok, "the new stream's other shard has a lease")
	assert.Equal(t, checkpointTrimHorizon, l.checkpoint.seq, "read from its first record")
}

// A take decided on a read of the table made before this worker found its
// stream created again lands after the switch: the lease it took is the
// earlier stream's, whose LATEST would open the new stream at its tip and
// skip its first records (found by the simulation, seed 968113271 with
// -sim.recreate). It is never read: released, for a sync to replace it.
func TestALeaseOfAnEarlierStreamTakenLateIsNeverRead(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kin := kinesisfake.New(kinesisfake.Options{})
	kin.CreateStream("s", 1)
	c, err := New(Options{StreamName: "s", WorkerID: "me", Kinesis: kin, InitialPosition: Latest, Logger: discardLogger()})
	require.NoError(t, err)
	require.NoError(t, c.describeStreams(ctx))
	c.readers, c.readCtx = errgroup.WithContext(ctx)
	defer func() { cancel(); _ = c.readers.Wait() }()
	earlier := c.streamList()[0].created.Add(-time.Hour).UnixMilli()
	const id = "shardId-000000000000"
	_, err = c.table.create(ctx, lease{shardID: id, checkpoint: checkpoint{seq: checkpointLatest}, streamCreated: earlier})
	require.NoError(t, err)
	l, _, err := c.table.read(ctx, id)
	require.NoError(t, err)
	taken, err := c.table.take(ctx, l, c.beat.writer())
	require.NoError(t, err)
	c.keeper.startReader(ctx, taken, false)
	assert.False(t, c.held.has(id), "an earlier stream's lease is never read")
	l, _, err = c.table.read(ctx, id)
	require.NoError(t, err)
	assert.Empty(t, l.owner, "released, for a sync to replace")
}

// In a multi-stream table, only the leases of an earlier incarnation of a
// stream (its identifier's creation epoch before this one's) say the stream
// was created again, so that a sync reads the new one from its first record.
// A later incarnation's say this worker's view is stale: they start nothing
// at TRIM_HORIZON here. Epochs compare as numbers, not as strings.
func TestOtherIncarnationIsOnlyAnEarlierOne(t *testing.T) {
	s := &kstream{id: "123:orders:1700000000"}
	of := func(id string) lease { return lease{shardID: id + ":shardId-000000000000"} }
	for _, tc := range []struct {
		name   string
		leases []lease
		other  string
		own    bool
	}{
		{"none", nil, "", false},
		{"its own only", []lease{of("123:orders:1700000000")}, "", true},
		{"an earlier incarnation's", []lease{of("123:orders:1600000000")}, "123:orders:1600000000", false},
		{"an earlier one's beside its own (a partial first sync)", []lease{of("123:orders:1600000000"), of("123:orders:1700000000")}, "123:orders:1600000000", true},
		{"a later incarnation's: this view is stale", []lease{of("123:orders:1800000000")}, "", false},
		{"an earlier epoch with fewer digits", []lease{of("123:orders:999999999")}, "123:orders:999999999", false},
		{"another stream's", []lease{of("123:orders-eu:1600000000"), of("456:orders:1600000000")}, "", false},
	} {
		other, own := otherIncarnation(s, tc.leases)
		assert.Equal(t, tc.other, other, tc.name)
		assert.Equal(t, tc.own, own, tc.name)
	}
}

// A sync that replaced an earlier stream's lease and then failed (a create
// throttled) leaves no earlier lease for the next attempt to see: that one
// must still read the new stream from its first record, not create the
// rest at LATEST (found by the simulation with -sim.recreate, seed
// 311924395: a loss).
func TestASyncRetriedAfterReplacingAnEarlierStreamsLeasesStillStartsAtTheFirstRecord(t *testing.T) {
	ctx := context.Background()
	kin := kinesisfake.New(kinesisfake.Options{})
	kin.CreateStream("s", 2)
	c, err := New(Options{StreamName: "s", WorkerID: "me", Kinesis: kin, InitialPosition: Latest, Logger: discardLogger()})
	require.NoError(t, err)
	require.NoError(t, c.describeStreams(ctx))
	earlier := c.streamList()[0].created.Add(-time.Hour).UnixMilli()
	_, err = c.table.create(ctx, lease{shardID: "shardId-000000000000", checkpoint: checkpoint{seq: "49000000000000000000000000000000000000000000000000000007"}, streamCreated: earlier})
	require.NoError(t, err)
	hooked := &hookTable{inner: c.table}
	failed := false
	hooked.set(func(h *hookTable) {
		h.before = func(op, key string) error {
			if op == "create" && !failed {
				failed = true
				return errors.New("throttled (test)")
			}
			return nil
		}
	})
	c.table = hooked
	require.Error(t, c.syncShards(ctx, running, nil), "the first attempt replaces shard 0's lease, then fails")
	require.NoError(t, c.syncShards(ctx, running, nil))
	for _, id := range []string{"shardId-000000000000", "shardId-000000000001"} {
		l, ok, err := c.table.read(ctx, id)
		require.NoError(t, err)
		require.True(t, ok)
		assert.Equal(t, checkpointTrimHorizon, l.checkpoint.seq, "%s read from the new stream's first record", id)
	}
}

// The same when the first attempt deleted the earlier stream's only lease
// (of a shard the new stream does not list) instead of replacing it: no
// lease then says the stream was created again, so only this worker's
// memory of the deletion (kstream.followsEarlier) starts the new stream's
// leases at its first record.
func TestASyncRetriedAfterDeletingAnEarlierStreamsLeaseStillStartsAtTheFirstRecord(t *testing.T) {
	ctx := context.Background()
	kin := kinesisfake.New(kinesisfake.Options{})
	kin.CreateStream("s", 2)
	c, err := New(Options{StreamName: "s", WorkerID: "me", Kinesis: kin, InitialPosition: Latest, Logger: discardLogger()})
	require.NoError(t, err)
	require.NoError(t, c.describeStreams(ctx))
	earlier := c.streamList()[0].created.Add(-time.Hour).UnixMilli()
	_, err = c.table.create(ctx, lease{shardID: "shardId-000000000007", checkpoint: checkpoint{seq: "49000000000000000000000000000000000000000000000000000007"}, streamCreated: earlier})
	require.NoError(t, err)
	hooked := &hookTable{inner: c.table}
	failed := false
	hooked.set(func(h *hookTable) {
		h.before = func(op, key string) error {
			if op == "create" && !failed {
				failed = true
				return errors.New("throttled (test)")
			}
			return nil
		}
	})
	c.table = hooked
	require.Error(t, c.syncShards(ctx, running, nil), "the first attempt deletes shard 7's lease, then fails")
	_, ok, err := c.table.read(ctx, "shardId-000000000007")
	require.NoError(t, err)
	require.False(t, ok, "the earlier stream's lease was deleted")
	require.NoError(t, c.syncShards(ctx, running, nil))
	for _, id := range []string{"shardId-000000000000", "shardId-000000000001"} {
		l, ok, err := c.table.read(ctx, id)
		require.NoError(t, err)
		require.True(t, ok)
		assert.Equal(t, checkpointTrimHorizon, l.checkpoint.seq, "%s read from the new stream's first record", id)
	}
}

// A shard end's sync that finds its stream deleted marks it missing: the
// reader that ended was perhaps its worker's last, and the periodic sync
// may be an hour away, so only the lease loop's look for a missing stream
// finds it created again (found by the simulation, seed 66524777 with
// -sim.recreate: the new stream was never read).
func TestAShardEndsSyncMarksADeletedStreamMissing(t *testing.T) {
	ctx := context.Background()
	kin := kinesisfake.New(kinesisfake.Options{})
	kin.CreateStream("s", 1)
	c, err := New(Options{StreamName: "s", Kinesis: kin, Logger: discardLogger()})
	require.NoError(t, err)
	require.NoError(t, c.describeStreams(ctx))
	require.NoError(t, c.syncShards(ctx, starting, nil))
	s := c.streamList()[0]
	require.NoError(t, kin.DeleteStream("s"))
	require.NoError(t, c.syncShards(ctx, running, s, shardInfo{id: "shardId-000000000001", parents: []string{"shardId-000000000000"}}))
	assert.True(t, s.missing.Load(), "the lease loop must look for it")
	assert.True(t, anyMissing(c.streamList()))
}

// A worker that replaced every lease of an earlier stream of this name, and
// then died before it made the leases of the new stream's other shards,
// leaves the fact in the table: the replacements are marked
// (lease.recreated). Another worker, which never saw the earlier stream
// (it started after) and finds no earlier lease left, still reads the new
// stream's other shards from their first record, not at LATEST, which
// would skip what was written to them since the stream was created again.
func TestAnotherWorkerReadsAStreamCreatedAgainFromItsStartAfterTheReplacerDied(t *testing.T) {
	ctx := context.Background()
	kin := kinesisfake.New(kinesisfake.Options{})
	kin.CreateStream("s", 2)
	opts := Options{StreamName: "s", WorkerID: "replacer", Kinesis: kin, InitialPosition: Latest, Logger: discardLogger()}
	c, err := New(opts)
	require.NoError(t, err)
	require.NoError(t, c.describeStreams(ctx))
	tbl := c.table
	earlier := c.streamList()[0].created.Add(-time.Hour).UnixMilli()
	_, err = tbl.create(ctx, lease{shardID: "shardId-000000000000", checkpoint: checkpoint{seq: "49000000000000000000000000000000000000000000000000000007"}, streamCreated: earlier})
	require.NoError(t, err)
	hooked := &hookTable{inner: tbl}
	hooked.set(func(h *hookTable) {
		h.before = func(op, key string) error {
			if op == "create" {
				return errors.New("throttled (test)")
			}
			return nil
		}
	})
	c.table = hooked
	require.Error(t, c.syncShards(ctx, running, nil), "shard 0's lease replaced, then the worker dies")

	opts.WorkerID = "other"
	other, err := New(opts)
	require.NoError(t, err)
	other.table = tbl
	require.NoError(t, other.describeStreams(ctx))
	require.NoError(t, other.syncShards(ctx, starting, nil))
	l, ok, err := tbl.read(ctx, "shardId-000000000001")
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, checkpointTrimHorizon, l.checkpoint.seq, "read from the new stream's first record")
}
