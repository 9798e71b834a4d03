package kcl

import (
	"context"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/kclgo/kcl/internal/kinesisfake"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// openWatch tells when a shard is first opened (GetShardIterator answered).
type openWatch struct {
	KinesisAPI
	shard  string
	opened chan struct{}
	once   sync.Once
}

func (w *openWatch) GetShardIterator(ctx context.Context, in *kinesis.GetShardIteratorInput, opts ...func(*kinesis.Options)) (*kinesis.GetShardIteratorOutput, error) {
	out, err := w.KinesisAPI.GetShardIterator(ctx, in, opts...)
	if err == nil && aws.ToString(in.ShardId) == w.shard {
		w.once.Do(func() { close(w.opened) })
	}
	return out, err
}

// racingTable is the lease table as another worker writes it meanwhile:
// right after this worker creates the lease of shard after, the other's
// create of l lands.
type racingTable struct {
	*memLeases
	after string
	l     lease
}

func (t *racingTable) create(ctx context.Context, l lease) (bool, error) {
	created, err := t.memLeases.create(ctx, l)
	if l.shardID == t.after {
		t.memLeases.create(ctx, t.l)
	}
	return created, err
}

// A group starting at Latest on a stream resharded before: shards 0, 1 and
// 2 closed, 0 and 1 merged into 3 (closed too), 3 and 2 into 4, the one
// open shard. The group's first workers sync together: the other, finding
// no lease, creates 0, 1 and 2 at SHARD_END (closed: nothing will come in)
// and, after this one created 3, 4 at LATEST; this one read the table when
// the other had created 0 only. That ended lease was never read, so 3 has
// nothing to go on from: it starts at SHARD_END too, and 4 is read at once.
// Taking 3 for the descendant of a leased shard started it at TRIM_HORIZON:
// it replayed what was written before the group started, and 4, held back
// until its parent ended, was opened at LATEST only then, skipping all
// written to it meanwhile (TestSimulation, seed 95250335, whose streams have
// a reshard history).
func TestLatestShardAfterEndedLeasesIsNotReplayed(t *testing.T) {
	noLeak(t)
	kin := kinesisfake.New(kinesisfake.Options{})
	kin.CreateStream("s", 3)
	put := func(what string, n int) {
		for i := range n {
			_, _, err := kin.PutRecord("s", fmt.Sprintf("k%d", i), fmt.Appendf(nil, "%s %d", what, i))
			require.NoError(t, err)
		}
	}
	put("old", 30)
	require.NoError(t, kin.MergeShards("s", "shardId-000000000000", "shardId-000000000001"))
	put("old", 30) // some in 3
	require.NoError(t, kin.MergeShards("s", "shardId-000000000003", "shardId-000000000002"))
	put("old", 10)

	four := "shardId-000000000004"
	table := &racingTable{memLeases: newMemLeases(), after: "shardId-000000000003",
		l: lease{shardID: four, checkpoint: checkpoint{seq: checkpointLatest}, parents: []string{"shardId-000000000003", "shardId-000000000002"}}}
	table.leases["shardId-000000000000"] = lease{shardID: "shardId-000000000000", checkpoint: checkpoint{seq: checkpointShardEnd}}

	watch := &openWatch{KinesisAPI: kin, shard: four, opened: make(chan struct{})}
	c, err := New(Options{StreamName: "s", Kinesis: watch, InitialPosition: Latest, PollInterval: 10 * time.Millisecond, Logger: testLogger(t)})
	require.NoError(t, err)
	c.table = table
	ctx, cancel := context.WithCancel(context.Background())
	s := &session{t: t, c: c, ch: c.Consume(ctx), cancel: cancel}
	defer s.stop(ackAll)

	var got []Record
	select {
	case <-watch.opened:
	case r := <-s.ch: // held unacked: a shard delivering it does not end
		got = append(got, r)
	case <-time.After(10 * time.Second):
		t.Fatal("shard 4 not opened, and nothing delivered, within 10s")
	}
	put("new", 20) // after the group started and read: owed
	for _, r := range got {
		r.Ack()
	}
	newCount := func() int {
		n := 0
		for _, r := range got {
			if strings.HasPrefix(string(r.Data), "new ") {
				n++
			}
		}
		return n
	}
	deadline := time.After(5 * time.Second)
	for newCount() < 20 {
		select {
		case r := <-s.ch:
			got = append(got, r)
			r.Ack()
		case <-deadline:
			t.Fatalf("%d of the 20 records written after shard 4 was opened delivered within 5s; delivered: %q", newCount(), dataOf(got))
		}
	}
	s.quiet(200 * time.Millisecond)
	for _, r := range got {
		assert.False(t, strings.HasPrefix(string(r.Data), "old "), "%q was written before the group started, at Latest", r.Data)
	}
	l, ok, err := table.read(context.Background(), "shardId-000000000003")
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, checkpointShardEnd, l.checkpoint.seq, "shard 3, closed, after ended leases only")
}

// listingMidReshard answers ListShards as Kinesis may while a reshard is in
// progress (amazon-kinesis-client issue 164): with hide, without the
// children of parent (and without hidden); with open, with parent still
// open.
type listingMidReshard struct {
	KinesisAPI
	parent     string
	hidden     string // with hide, this shard too
	hide, open atomic.Bool
}

func (m *listingMidReshard) ListShards(ctx context.Context, in *kinesis.ListShardsInput, opts ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error) {
	out, err := m.KinesisAPI.ListShards(ctx, in, opts...)
	if err != nil {
		return out, err
	}
	cp := *out
	cp.Shards = nil
	for _, s := range out.Shards {
		if m.hide.Load() && (m.parent != "" && (aws.ToString(s.ParentShardId) == m.parent || aws.ToString(s.AdjacentParentShardId) == m.parent) || aws.ToString(s.ShardId) == m.hidden) {
			continue
		}
		if m.open.Load() && aws.ToString(s.ShardId) == m.parent {
			r := *s.SequenceNumberRange
			r.EndingSequenceNumber = nil
			s.SequenceNumberRange = &r
		}
		cp.Shards = append(cp.Shards, s)
	}
	return &cp, nil
}

// A group starting at Latest lists a closed shard without its children
// (caught mid-reshard). Created ended, the shard would never be read, and
// the children, listed later, would start at LATEST then: all written to
// them since the group started skipped (0 of 20 before the fix; found by a
// cold review). The shard is created at LATEST instead, taken, ends at once,
// and its children go on from it.
func TestAClosedShardListedBeforeItsChildrenLeadsToThem(t *testing.T) {
	noLeak(t)
	kin := kinesisfake.New(kinesisfake.Options{})
	kin.CreateStream("s", 2)
	for i := range 10 {
		_, _, err := kin.PutRecord("s", fmt.Sprintf("k%d", i), fmt.Appendf(nil, "old %d", i))
		require.NoError(t, err)
	}
	require.NoError(t, kin.MergeShards("s", "shardId-000000000000", "shardId-000000000001"))
	m := &listingMidReshard{KinesisAPI: kin, parent: "shardId-000000000000"}
	m.hide.Store(true)
	table := newMemLeases()
	s := consumeAtLatest(t, m, table, time.Hour)
	defer s.stop(ackAll)
	ctx := context.Background()
	require.Eventually(t, func() bool {
		_, ok, _ := table.read(ctx, "shardId-000000000000")
		return ok
	}, 5*time.Second, 10*time.Millisecond, "the first sync")
	for i := range 20 { // after the group started: owed
		_, _, err := kin.PutRecord("s", fmt.Sprintf("k%d", i), fmt.Appendf(nil, "new %d", i))
		require.NoError(t, err)
	}
	m.hide.Store(false)
	got := s.receive(20, 10*time.Second, ackAll) // those written after the group started
	for _, r := range got {
		assert.True(t, strings.HasPrefix(string(r.Data), "new "), "%q was written before the group started, at Latest", r.Data)
	}
}

// A group starting at Latest lists a shard still open beside its children
// (caught mid-reshard). The children wait for their parent, which is read
// first; made at LATEST, they would be opened only once it ends, skipping
// what came in meanwhile (found by a cold review). They go on from it, at
// TRIM_HORIZON.
func TestAChildListedBesideItsOpenParentGoesOnFromIt(t *testing.T) {
	noLeak(t)
	kin := kinesisfake.New(kinesisfake.Options{})
	kin.CreateStream("s", 1)
	listed, err := kin.ListShards(context.Background(), &kinesis.ListShardsInput{StreamName: aws.String("s")})
	require.NoError(t, err)
	require.NoError(t, kin.SplitShard("s", "shardId-000000000000", "170141183460469231731687303715884105728"))
	m := &listingMidReshard{KinesisAPI: kin, parent: *listed.Shards[0].ShardId}
	m.open.Store(true)
	table := newMemLeases()
	s := consumeAtLatest(t, m, table, time.Hour)
	defer s.stop(ackAll)
	ctx := context.Background()
	require.Eventually(t, func() bool {
		snap, _ := table.list(ctx, true)
		return len(snap.leases) == 3
	}, 5*time.Second, 10*time.Millisecond, "the first sync")
	for _, child := range []string{"shardId-000000000001", "shardId-000000000002"} {
		l, ok, err := table.read(ctx, child)
		require.NoError(t, err)
		require.True(t, ok)
		assert.Equal(t, checkpointTrimHorizon, l.checkpoint.seq, "child %s of a parent to be read", child)
	}
}

// Where a child starts when another worker made its parent's lease first:
// at LATEST if that lease was made ended (nothing of it is read), at
// TRIM_HORIZON if it is to be read (the other worker's listing showed the
// parent still open), so that the child is not opened late.
func TestAChildFollowsTheParentLeaseAnotherWorkerMade(t *testing.T) {
	for _, tc := range []struct {
		parent, child string // the other worker's position for shard 1; shard 2's
	}{
		{checkpointShardEnd, checkpointLatest},
		{checkpointLatest, checkpointTrimHorizon},
	} {
		t.Run(tc.parent, func(t *testing.T) {
			noLeak(t)
			kin := kinesisfake.New(kinesisfake.Options{})
			kin.CreateStream("s", 2)
			require.NoError(t, kin.MergeShards("s", "shardId-000000000000", "shardId-000000000001"))
			// Right after this worker creates 0, the other's create of 1 lands.
			table := &racingTable{memLeases: newMemLeases(), after: "shardId-000000000000",
				l: lease{shardID: "shardId-000000000001", checkpoint: checkpoint{seq: tc.parent}}}
			s := consumeAtLatest(t, kin, table, time.Hour)
			defer s.stop(ackAll)
			ctx := context.Background()
			var child lease
			require.Eventually(t, func() bool {
				var ok bool
				child, ok, _ = table.read(ctx, "shardId-000000000002")
				return ok
			}, 5*time.Second, 10*time.Millisecond, "the first sync")
			assert.Equal(t, tc.child, child.checkpoint.seq)
		})
	}
}

func TestCoveredByChildren(t *testing.T) {
	r := func(id string, first, last int64, parents ...string) shardInfo {
		return shardInfo{id: id, parents: parents, first: big.NewInt(first), last: big.NewInt(last)}
	}
	for _, tc := range []struct {
		name   string
		shards []shardInfo
		want   map[string]bool
	}{
		{"a split, both halves listed", []shardInfo{r("p", 0, 99), r("a", 0, 49, "p"), r("b", 50, 99, "p")}, map[string]bool{"p": true}},
		{"a split, the upper half only", []shardInfo{r("p", 0, 99), r("b", 50, 99, "p")}, map[string]bool{"p": false}},
		{"a split, the lower half only", []shardInfo{r("p", 0, 99), r("a", 0, 49, "p")}, map[string]bool{"p": false}},
		{"a merge", []shardInfo{r("p", 0, 49), r("q", 50, 99), r("m", 0, 99, "p", "q")}, map[string]bool{"p": true, "q": true}},
		{"no child listed", []shardInfo{r("p", 0, 99)}, map[string]bool{}},
		{"a child of unknown range", []shardInfo{r("p", 0, 99), {id: "a", parents: []string{"p"}}}, map[string]bool{}},
		{"a split of a split", []shardInfo{r("p", 0, 99), r("a", 0, 49, "p"), r("b", 50, 99, "p"), r("c", 50, 74, "b"), r("d", 75, 99, "b")}, map[string]bool{"p": true, "b": true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, coveredByChildren(tc.shards))
		})
	}
}

// A group starting at Latest lists a closed shard with one of its two
// children (caught mid-reshard). Created ended, the shard would leave the
// other child, listed later, to start at LATEST then, skipping what came
// in until then (21 of 40 records; found by a cold review). It stays at
// LATEST until its children cover it.
func TestAClosedShardListedWithHalfItsChildrenLeadsToBoth(t *testing.T) {
	noLeak(t)
	kin := kinesisfake.New(kinesisfake.Options{})
	kin.CreateStream("s", 1)
	require.NoError(t, kin.SplitShard("s", "shardId-000000000000", "170141183460469231731687303715884105728"))
	m := &listingMidReshard{KinesisAPI: kin, hidden: "shardId-000000000002"}
	m.hide.Store(true)
	table := newMemLeases()
	s := consumeAtLatest(t, m, table, 300*time.Millisecond)
	defer s.stop(ackAll)
	ctx := context.Background()
	require.Eventually(t, func() bool {
		_, ok, _ := table.read(ctx, "shardId-000000000001")
		return ok
	}, 5*time.Second, 10*time.Millisecond, "the first sync")
	for i := range 40 { // after the group started: owed
		_, _, err := kin.PutRecord("s", fmt.Sprintf("k%d", i), fmt.Appendf(nil, "new %d", i))
		require.NoError(t, err)
	}
	m.hide.Store(false)
	s.receive(40, 10*time.Second, ackAll) // those written after the group started
}

// consumeAtLatest starts a consumer of stream "s" of kin at Latest, on
// table.
func consumeAtLatest(t *testing.T, kin KinesisAPI, table leaseTable, shardSync time.Duration) *session {
	t.Helper()
	c, err := New(Options{StreamName: "s", Kinesis: kin, InitialPosition: Latest, PollInterval: 10 * time.Millisecond, ShardSyncInterval: shardSync, Logger: testLogger(t)})
	require.NoError(t, err)
	c.table = table
	ctx, cancel := context.WithCancel(context.Background())
	return &session{t: t, c: c, ch: c.Consume(ctx), cancel: cancel}
}

// Once the group has read the stream, a parent neither listed nor leased
// left the stream (retention) while the group should have been reading it:
// its children, and theirs, start at TRIM_HORIZON. A group that has not read
// yet starts everything at InitialPosition, even when another of its first
// workers created some leases already (found by review: with Latest, half
// the shards could otherwise replay the whole retention period).
func TestMutantChildrenOfAParentGoneFromTheStreamDescend(t *testing.T) {
	shards := []shardInfo{
		{id: "other"},
		{id: "child", parents: []string{"gone"}},
		{id: "grandchild", parents: []string{"child"}},
	}
	assert.Equal(t, map[string]bool{"child": true, "grandchild": true}, descendsFromLeased(shards, map[string]bool{"other": true}, nil, true))
	assert.Empty(t, descendsFromLeased(shards, map[string]bool{}, nil, false))
	assert.Empty(t, descendsFromLeased(shards, map[string]bool{"other": true}, nil, false), "leases created, none taken yet")
}

// A lease created at SHARD_END (a closed shard at Latest) and never taken
// was never read: its children start at InitialPosition. One created at
// Latest, or one read to its end, is followed: its children start at
// TRIM_HORIZON (TestLatestShardAfterEndedLeasesIsNotReplayed).
func TestMutantChildrenOfALeaseCreatedEndedDoNotDescend(t *testing.T) {
	shards := []shardInfo{
		{id: "ended"},
		{id: "child", parents: []string{"ended"}},
		{id: "grandchild", parents: []string{"child"}},
	}
	leased := map[string]bool{"ended": true}
	assert.Empty(t, descendsFromLeased(shards, leased, map[string]bool{"ended": true}, false))
	assert.Empty(t, descendsFromLeased(shards, leased, map[string]bool{"ended": true}, true))
	assert.Equal(t, map[string]bool{"child": true, "grandchild": true}, descendsFromLeased(shards, leased, map[string]bool{"ended": false}, false))
}

// Every descendant of a leased shard descends, however deep: a consumer down
// across two reshards reads its grandchildren from TRIM_HORIZON (with
// AT_TIMESTAMP nothing else would start them there:
// TestGrandchildrenStartAtTrimHorizonAfterTwoReshardsWhileDown runs at
// Latest, where a child made in the same sync leads its own children too).
func TestMutantGrandchildrenOfALeasedShardDescend(t *testing.T) {
	shards := []shardInfo{
		{id: "leased"},
		{id: "child", parents: []string{"leased"}},
		{id: "grandchild", parents: []string{"child"}},
		{id: "other"},
	}
	assert.Equal(t, map[string]bool{"child": true, "grandchild": true}, descendsFromLeased(shards, map[string]bool{"leased": true}, nil, true))
}

// confirmUnstarted finds the leased shards with an unleased ancestor in one
// pass: a stream scaled up and down every few hours has a lineage whose
// paths double with each split and merge, and a walk of every path (as it
// once was) did not end (found by a review). 60 rounds: 2^60 paths.
func TestConfirmUnstartedIsLinearInTheLineage(t *testing.T) {
	var shards []shardInfo
	leased, begun := map[string]bool{}, map[string]bool{}
	last := "shardId-000000000000"
	shards = append(shards, shardInfo{id: last})
	for i := range 60 {
		a, b, c := fmt.Sprintf("a%d", i), fmt.Sprintf("b%d", i), fmt.Sprintf("c%d", i)
		shards = append(shards, shardInfo{id: a, parents: []string{last}}, shardInfo{id: b, parents: []string{last}}, shardInfo{id: c, parents: []string{a, b}})
		last = c
	}
	for _, sh := range shards {
		leased[sh.id] = true
	}
	c, err := New(Options{StreamName: "s", WorkerID: "me", Kinesis: kinesisfake.New(kinesisfake.Options{}), Logger: discardLogger()})
	require.NoError(t, err)
	require.NoError(t, c.confirmUnstarted(context.Background(), &kstream{}, shards, leased, begun))
	require.Empty(t, begun, "nothing to confirm: every ancestor is leased")
}
