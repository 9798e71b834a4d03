package kcl

import (
	"context"
	"math/big"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kclgo/kcl/internal/kinesisfake"
)

// Which leases cleanup may delete, on one read of the table and one
// listing (endedLeases).
func TestEndedLeases(t *testing.T) {
	const created = 1000
	marked := writer{id: "w1", token: "t", beat: 3}
	ended := func(key string, parents ...string) lease {
		return lease{shardID: key, counter: 7, checkpoint: checkpoint{seq: checkpointShardEnd}, parents: parents, writer: marked, streamCreated: created}
	}
	at := func(key, seq string, parents ...string) lease {
		return lease{shardID: key, counter: 3, checkpoint: checkpoint{seq: seq}, parents: parents, streamCreated: created}
	}
	// The listing: p (0-99) split into c1 (0-49) and c2 (50-99); q and r
	// (100-199, 200-299) merged into m.
	shard := func(id string, first, last int64, closed bool, parents ...string) shardInfo {
		return shardInfo{id: id, first: big.NewInt(first), last: big.NewInt(last), closed: closed, parents: parents}
	}
	listing := map[string]shardInfo{
		"p": shard("p", 0, 99, true), "c1": shard("c1", 0, 49, false, "p"), "c2": shard("c2", 50, 99, false, "p"),
		"q": shard("q", 100, 199, true), "r": shard("r", 200, 299, true), "m": shard("m", 100, 299, false, "q", "r"),
	}
	single := map[string]cleanupStream{"": {created: created, single: true, shards: listing}}
	without := func(ids ...string) map[string]cleanupStream {
		l := map[string]shardInfo{}
		for id, sh := range listing {
			if !slices.Contains(ids, id) {
				l[id] = sh
			}
		}
		return map[string]cleanupStream{"": {created: created, single: true, shards: l}}
	}
	seq := "49590338271490256608559692538361571095921575989136588898"
	for _, tc := range []struct {
		name    string
		leases  []lease
		streams map[string]cleanupStream
		want    []string
	}{
		{"a split's parent, both children started", []lease{ended("p"), at("c1", seq, "p"), at("c2", seq, "p")}, single, []string{"p"}},
		{"a merge's parents, the child started", []lease{ended("q"), ended("r"), at("m", seq, "q", "r")}, single, []string{"q", "r"}},
		{"a child ended counts as started (listed open: itself stays)", []lease{ended("p"), ended("c1", "p"), at("c2", seq, "p")}, single, []string{"p"}},
		{"a child at TRIM_HORIZON", []lease{ended("p"), at("c1", seq, "p"), at("c2", checkpointTrimHorizon, "p")}, single, nil},
		{"a child at LATEST", []lease{ended("p"), at("c1", seq, "p"), at("c2", checkpointLatest, "p")}, single, nil},
		{"a child at AT_TIMESTAMP", []lease{ended("p"), at("c1", seq, "p"), at("c2", checkpointAtTimestamp, "p")}, single, nil},
		{"a child created ended, never read", []lease{ended("p"), at("c1", seq, "p"), {shardID: "c2", checkpoint: checkpoint{seq: checkpointShardEnd}, parents: []string{"p"}, streamCreated: created}}, single, nil},
		{"a listed child without a lease", []lease{ended("p"), at("c1", seq, "p")}, single, nil},
		{"a listing caught mid-reshard (one child listed)", []lease{ended("p"), at("c1", seq, "p")}, without("c2"), nil},
		{"a listing from before the parent closed", []lease{ended("p"), at("c1", seq, "p"), at("c2", seq, "p")},
			map[string]cleanupStream{"": {created: created, single: true, shards: map[string]shardInfo{"p": shard("p", 0, 99, false)}}}, nil},
		{"a parent past retention, its children started", []lease{ended("p"), at("c1", seq, "p"), at("c2", seq, "p")}, without("p"), []string{"p"}},
		{"a parent past retention, a listed child without a lease", []lease{ended("p"), at("c1", seq, "p")}, without("p"), nil},
		{"a parent past retention, its children's leases gone", []lease{ended("p")}, without("p", "c1", "c2"), []string{"p"}},
		{"not listed yet", []lease{ended("p"), at("c1", seq, "p"), at("c2", seq, "p")}, map[string]cleanupStream{"": {created: created, single: true}}, nil},
		{"ended by the Java KCL (owner kept, no mark)", []lease{func() lease { l := ended("p"); l.owner, l.writer = "java-1", writer{}; return l }(), at("c1", seq, "p"), at("c2", seq, "p")}, single, nil},
		{"ended without kcl's mark", []lease{func() lease { l := ended("p"); l.writer = writer{}; return l }(), at("c1", seq, "p"), at("c2", seq, "p")}, single, nil},
		{"owned", []lease{func() lease { l := ended("p"); l.owner = "w1"; return l }(), at("c1", seq, "p"), at("c2", seq, "p")}, single, nil},
		{"in a Java hand-off", []lease{func() lease { l := ended("p"); l.checkpointOwner = "w2"; return l }(), at("c1", seq, "p"), at("c2", seq, "p")}, single, nil},
		{"an earlier stream's lease", []lease{func() lease { l := ended("p"); l.streamCreated = created - 1; return l }(), at("c1", seq, "p"), at("c2", seq, "p")}, single, nil},
		{"an earlier stream's lineage", func() []lease {
			ls := []lease{ended("p"), at("c1", seq, "p"), at("c2", seq, "p")}
			for i := range ls {
				ls[i].streamCreated = created - 1
			}
			return ls
		}(), single, nil},
		{"a child of a later stream", []lease{ended("p"), at("c1", seq, "p"), func() lease { l := at("c2", seq, "p"); l.streamCreated = created + 1; return l }()}, single, nil},
		{"the stream's creation unknown", []lease{ended("p"), at("c1", seq, "p"), at("c2", seq, "p")}, map[string]cleanupStream{"": {single: true, shards: listing}}, nil},
		{"not a lease of a stream read here", []lease{ended("1:s:1:p"), at("1:s:1:c1", seq, "1:s:1:p"), at("1:s:1:c2", seq, "1:s:1:p")},
			map[string]cleanupStream{"1:t:1": {shards: listing}}, nil},
		{"a multi-stream table", []lease{
			{shardID: "1:s:1:p", counter: 7, checkpoint: checkpoint{seq: checkpointShardEnd}, writer: marked},
			{shardID: "1:s:1:c1", counter: 3, checkpoint: checkpoint{seq: seq}, parents: []string{"1:s:1:p"}},
			{shardID: "1:s:1:c2", counter: 3, checkpoint: checkpoint{seq: seq}, parents: []string{"1:s:1:p"}},
		}, map[string]cleanupStream{"1:s:1": {shards: listing}, "1:t:1": {shards: listing}}, []string{"1:s:1:p"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, l := range endedLeases(tc.leases, tc.streams) {
				got = append(got, l.shardID)
			}
			assert.ElementsMatch(t, tc.want, got)
		})
	}
}

// A lease is deleted only once found deletable, with one counter, for the
// whole delay (cleanup.due).
func TestCleanupWaitsForTheDelay(t *testing.T) {
	const delay = 10 * time.Second
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := lease{shardID: "p", counter: 4}
	keys := func(ls []lease) []string {
		var out []string
		for _, l := range ls {
			out = append(out, l.shardID)
		}
		return out
	}
	var c cleanup
	assert.Empty(t, c.due([]lease{p}, t0, delay), "first found")
	assert.Empty(t, c.due([]lease{p}, t0.Add(delay-time.Millisecond), delay), "inside the delay")
	assert.Equal(t, []string{"p"}, keys(c.due([]lease{p}, t0.Add(delay), delay)), "the delay passed")

	c = cleanup{}
	c.due([]lease{p}, t0, delay)
	p2 := p
	p2.counter++
	assert.Empty(t, c.due([]lease{p2}, t0.Add(delay), delay), "written since: the delay starts over")
	assert.Equal(t, []string{"p"}, keys(c.due([]lease{p2}, t0.Add(2*delay), delay)))

	c = cleanup{}
	c.due([]lease{p}, t0, delay)
	c.due(nil, t0.Add(delay/2), delay) // not deletable in one pass (a child's lease replaced)
	assert.Empty(t, c.due([]lease{p}, t0.Add(delay), delay), "not deletable in a pass: the delay starts over")
	assert.Equal(t, 1, c.waiting())
}

// The delete is fenced: a lease written after the read it was decided on
// (its counter, its checkpoint or its stream stamp changed) stays. On both
// tables.
func TestCleanupDeleteIsFenced(t *testing.T) {
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
			w := writer{id: "w1", token: "t", beat: 1}
			// p: taken, read to its end and released by w1, as endShard does.
			_, err := tbl.create(ctx, lease{shardID: "p", checkpoint: checkpoint{seq: checkpointTrimHorizon}, streamCreated: 1000})
			require.NoError(t, err)
			free, _, err := tbl.read(ctx, "p")
			require.NoError(t, err)
			held, err := tbl.take(ctx, free, w)
			require.NoError(t, err)
			endRead, err := tbl.checkpoint(ctx, held, checkpoint{seq: checkpointShardEnd}, "", w)
			require.NoError(t, err)
			read, _, err := tbl.read(ctx, "p")
			require.NoError(t, err)
			assert.Equal(t, w, read.writer, "the shard end keeps kcl's mark")
			assert.Equal(t, endRead.writer, read.writer)
			assert.Empty(t, read.owner, "the shard end releases the lease")

			stale := read
			stale.counter--
			assert.ErrorIs(t, tbl.remove(ctx, stale), errLeaseLost, "a delete decided on an older counter")
			other := read
			other.checkpoint = checkpoint{seq: "123"}
			assert.ErrorIs(t, tbl.remove(ctx, other), errLeaseLost, "a delete decided on another checkpoint")
			earlier := read
			earlier.streamCreated = 999
			assert.ErrorIs(t, tbl.remove(ctx, earlier), errLeaseLost, "a delete decided on an earlier stream's lease")
			_, ok, err := tbl.read(ctx, "p")
			require.NoError(t, err)
			require.True(t, ok, "every fenced delete failed")

			require.NoError(t, tbl.remove(ctx, read), "a delete decided on the lease as it is")
			_, ok, err = tbl.read(ctx, "p")
			require.NoError(t, err)
			assert.False(t, ok)
		})
	}
}

// stalledRead is a lease table whose first read of the whole table runs
// late: before it, meanwhile happens (a process frozen between its shard
// listing and its read of the table).
type stalledRead struct {
	leaseTable
	once      sync.Once
	meanwhile func()
}

func (s *stalledRead) list(ctx context.Context, consistent bool) (tableSnapshot, error) {
	s.once.Do(s.meanwhile)
	return s.leaseTable.list(ctx, consistent)
}

// A sync whose listing shows a shard still open, and whose read of the
// table comes after the shard ended, its children started and its lease was
// deleted, lists again: on the old listing it would make the shard's lease
// again, at TRIM_HORIZON, and read it all over.
func TestASyncOnAListingOlderThanTheCleanupDelayListsAgain(t *testing.T) {
	ctx := context.Background()
	kin := kinesisfake.New(kinesisfake.Options{})
	kin.CreateStream("s", 1)
	const parent = "shardId-000000000000"
	mem := newMemLeases()
	table := &stalledRead{leaseTable: mem, meanwhile: func() {
		require.NoError(t, kin.SplitShard("s", parent, "170141183460469231731687303715884105728"))
		for _, child := range []string{"shardId-000000000001", "shardId-000000000002"} {
			_, err := mem.create(ctx, lease{shardID: child, counter: 5, checkpoint: checkpoint{seq: "49590338271490256608559692538361571095921575989136588898"}, parents: []string{parent}})
			require.NoError(t, err)
		}
		time.Sleep(60 * time.Millisecond) // frozen
	}}
	c, err := New(Options{StreamName: "s", WorkerID: "me", Kinesis: kin, Logger: testLogger(t)})
	require.NoError(t, err)
	c.table, c.cleanupDelay = table, 100*time.Millisecond
	require.NoError(t, c.syncShards(ctx, running, c.streamList()[0]))
	_, made, err := mem.read(ctx, parent)
	require.NoError(t, err)
	assert.False(t, made, "no lease made again for the ended parent of started children")
}
