package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kclgo/kcl"
	"github.com/kclgo/kcl/internal/leaseitem"
)

// putRecords writes n records and returns their sequence numbers by shard.
func (h *harness) putRecords(n int) map[string][]string {
	h.t.Helper()
	seqs := map[string][]string{}
	for i := range n {
		out, err := h.kin.PutRecord(context.Background(), &kinesis.PutRecordInput{
			StreamName: &h.stream, PartitionKey: aws.String(fmt.Sprint("key-", i)), Data: []byte(fmt.Sprint("r", i)),
		})
		require.NoError(h.t, err)
		seqs[*out.ShardId] = append(seqs[*out.ShardId], *out.SequenceNumber)
	}
	return seqs
}

func TestStatus(t *testing.T) {
	h := newHarness(t, 3)
	ids := h.shardIDs()
	seqs := h.putRecords(30)
	require.NotEmpty(t, seqs[ids[1]])
	h.put(leaseItem(ids[0], "w1", 3, leaseitem.TrimHorizon))
	h.put(leaseItem(ids[1], "w2", 8, seqs[ids[1]][0]))
	h.put(leaseItem("shardId-000000000099", "java-1", 20, seqs[ids[1]][0]))
	h.put(beatItem("w1", 100))
	h.put(beatItem("w2", 7))
	h.put(item{leaseitem.AttrLeaseKey: s("Leader"), leaseitem.AttrEntityType: s("LEADER"), "ownerName": s("java-1")})
	h.put(item{leaseitem.AttrLeaseKey: s("kcl-group")}) // kcl's own bookkeeping: not noted
	h.put(item{leaseitem.AttrLeaseKey: s("kcl-something-new"), leaseitem.AttrEntityType: s(leaseitem.EntityKCLWorker)})
	h.put(leaseItem("shardId-000000000098", "", 1, "yesterday"))
	h.during = func() { // w1 beats; the Java worker renews its lease; w2 is dead
		h.bump("kcl-worker:w1")
		h.bump("shardId-000000000099")
	}

	code, stdout, stderr := h.run("status", "-app", h.table, "-stream", h.stream, "-json", "-lag")
	require.Equal(t, 0, code, stderr)
	assert.Empty(t, stderr, "-json: nothing on stderr")
	var rep struct {
		Stream, Table string
		Shards        []struct {
			Shard, State, Owner, Checkpoint string
			OwnerAlive                      bool `json:"owner_alive"`
			SubSequence                     int64
			Parents                         []string
			MillisBehind                    *int64 `json:"millis_behind"`
		}
		Workers []struct {
			ID     string
			Alive  bool
			Leases int
		}
		Problems []string
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &rep), stdout)
	assert.Equal(t, h.stream, rep.Stream)
	assert.Equal(t, h.table, rep.Table)
	require.Len(t, rep.Shards, 3)
	assert.Equal(t, ids[0], rep.Shards[0].Shard)
	assert.Equal(t, "open", rep.Shards[0].State)
	assert.Equal(t, "w1", rep.Shards[0].Owner)
	assert.True(t, rep.Shards[0].OwnerAlive)
	assert.Equal(t, leaseitem.TrimHorizon, rep.Shards[0].Checkpoint)
	assert.Equal(t, "w2", rep.Shards[1].Owner)
	assert.False(t, rep.Shards[1].OwnerAlive)
	assert.Equal(t, seqs[ids[1]][0], rep.Shards[1].Checkpoint)
	assert.Equal(t, "", rep.Shards[2].Checkpoint, "no lease")
	require.NotNil(t, rep.Shards[0].MillisBehind, "-lag")
	require.NotNil(t, rep.Shards[1].MillisBehind, "-lag")
	assert.Nil(t, rep.Shards[2].MillisBehind, "no lease: no checkpoint to measure from")
	assert.Equal(t, []string{"java-1", "w1", "w2"}, []string{rep.Workers[0].ID, rep.Workers[1].ID, rep.Workers[2].ID})
	assert.True(t, rep.Workers[0].Alive, "a Java owner that renews is alive")
	assert.True(t, rep.Workers[1].Alive)
	assert.False(t, rep.Workers[2].Alive)
	assert.Equal(t, 1, rep.Workers[2].Leases)
	require.Len(t, rep.Problems, 2, "%q", rep.Problems)
	assert.Contains(t, rep.Problems[0], `lease "shardId-000000000099" is for a shard stream `+h.stream+" does not list")
	assert.Contains(t, rep.Problems[1], `item "shardId-000000000098" not understood`)

	code, stdout, stderr = h.run("status", "-table", h.table, "-stream", h.stream)
	require.Equal(t, 0, code, stderr)
	assert.Empty(t, stderr)
	assert.Contains(t, h.progress.String(), "watching lease table "+h.table+" for 10s", "on a terminal")
	for _, want := range []string{
		"stream " + h.stream + ", lease table " + h.table,
		ids[0] + "  open   w1     yes    TRIM_HORIZON",
		"w2      no     1",
		"problems (2):",
		"note: other kcl items: kcl-something-new\n",
		"note: Java KCL items that are not leases: Leader (LEADER)",
	} {
		assert.Contains(t, stdout, want)
	}
	assert.NotContains(t, stdout, "BEHIND", "lag only with -lag")
}

// failingKinesis fails GetShardIterator for one shard.
type failingKinesis struct {
	Kinesis
	shard string
}

func (f failingKinesis) GetShardIterator(ctx context.Context, in *kinesis.GetShardIteratorInput, o ...func(*kinesis.Options)) (*kinesis.GetShardIteratorOutput, error) {
	if aws.ToString(in.ShardId) == f.shard {
		return nil, errors.New("AccessDeniedException: not allowed")
	}
	return f.Kinesis.GetShardIterator(ctx, in, o...)
}

func TestStatusLagOfAShardThatFails(t *testing.T) {
	h := newHarness(t, 2)
	ids := h.shardIDs()
	h.put(leaseItem(ids[0], "", 1, leaseitem.TrimHorizon))
	h.put(leaseItem(ids[1], "", 1, leaseitem.TrimHorizon))
	h.kinAPI = failingKinesis{Kinesis: h.kin, shard: ids[1]}
	code, stdout, stderr := h.run("status", "-app", h.table, "-stream", h.stream, "-lag")
	require.Equal(t, 0, code, stderr)
	assert.Regexp(t, ids[0]+` +open .* 0s\n`, stdout)
	assert.Regexp(t, ids[1]+` +open .* -\n`, stdout)
	assert.Contains(t, stdout, "problems (1):\n  shard \""+ids[1]+"\": lag not measured: GetShardIterator TRIM_HORIZON: AccessDeniedException: not allowed\n")
}

func TestStatusErrors(t *testing.T) {
	h := newHarness(t, 1)
	code, _, stderr := h.run("status", "-app", h.table, "-stream", "no-such-stream")
	assert.Equal(t, 1, code)
	assert.Regexp(t, `^kcl status: stream "no-such-stream": ListShards: .*ResourceNotFoundException.*\n$`, stderr)

	code, _, stderr = h.run("status", "-app", "no-such-table", "-stream", h.stream)
	assert.Equal(t, 1, code)
	assert.Equal(t, `kcl status: lease table "no-such-table" not found (check -app, -table and the AWS region)`+"\n", stderr)
}

// TestStatusOfARunningGroupNotesNothing: the group item (kcl-group) is
// kcl's own bookkeeping, not a note; the outputs in README and
// docs/operating.md end "problems: none" (of a table with the protection
// docs/security.md recommends, which dynalite cannot show).
func TestStatusOfARunningGroupNotesNothing(t *testing.T) {
	h := newHarness(t, 2)
	h.ddb = &protectedTable{DynamoDB: h.db, protection: true, pitr: types.PointInTimeRecoveryStatusEnabled}
	data := h.putData("a-", 2)
	w := h.startWorker("worker-1")
	w.receive(data...)
	require.Eventually(t, func() bool { return h.get("kcl-group") != nil }, 30*time.Second, 20*time.Millisecond, "the group item")
	h.during = func() { time.Sleep(1200 * time.Millisecond) }
	code, stdout, stderr := h.run("status", "-app", h.table, "-stream", h.stream, "-lease", "1s")
	require.Equal(t, 0, code, stderr)
	assert.True(t, strings.HasSuffix(stdout, "\nproblems: none\n"), "no note after the problems:\n%s", stdout)
	w.stop()
}

// TestStatusJavaHandoff: in a Java KCL 3.x graceful hand-off the old owner
// (checkpointOwner) reads the shard and renews the lease: the counter
// change is its sign of life, and it is listed among the workers. forget-
// worker refuses it while it renews, and once it is dead ends the hand-off
// (the lease stays the new owner's).
func TestStatusJavaHandoff(t *testing.T) {
	h := newHarness(t, 1)
	shard := h.shardIDs()[0]
	it := leaseItem(shard, "java-B", 7, "49590338271490256608559692538361571095921575989136588898")
	it[leaseitem.AttrCheckpointOwner] = s("java-A")
	h.put(it)
	h.during = func() { h.bump(shard) } // A renews, as the Java KCL's lease renewer does while checkpointOwner is A
	code, stdout, stderr := h.run("status", "-app", h.table, "-stream", h.stream, "-json")
	require.Equal(t, 0, code, stderr)
	var rep statusReport
	require.NoError(t, json.Unmarshal([]byte(stdout), &rep))
	assert.Equal(t, []workerRow{{ID: "java-A", Alive: true}, {ID: "java-B", Alive: false, Leases: 1}}, rep.Workers)
	assert.True(t, rep.Shards[0].OwnerAlive, "the shard is read by a live worker")

	code, _, stderr = h.run("forget-worker", "-app", h.table, "-worker", "java-A")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, `worker "java-A" is alive`)

	h.during = nil // A died
	code, stdout, stderr = h.run("forget-worker", "-app", h.table, "-worker", "java-A")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "hand-off ended")
	l := h.lease(shard)
	assert.Equal(t, "java-B", l.Owner)
	assert.Equal(t, "", l.CheckpointOwner)
	assert.Equal(t, int64(7+2+1), l.Counter, "two renewals, then the conditional write")
}

// A stream deleted and created again under its name: status says which
// leases are of the earlier stream, in either table layout.
func TestRecreatedNotes(t *testing.T) {
	created := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	before := created.Add(-time.Hour).UnixMilli()
	single := streamLeases{created: created, byShard: map[string]leaseitem.Lease{
		"shardId-000000000000": {Key: "shardId-000000000000", StreamCreated: before},
		"shardId-000000000001": {Key: "shardId-000000000001", StreamCreated: created.UnixMilli()},
		"shardId-000000000002": {Key: "shardId-000000000002"}, // unstamped: not known
	}}
	notes := recreatedNotes("orders", single, nil)
	require.Len(t, notes, 1)
	assert.Contains(t, notes[0], "stream orders was created again (created 2026-12-01T10:00:00Z)")
	assert.Contains(t, notes[0], "shardId-000000000000 (stream created 2026-12-01T09:00:00Z)")
	assert.NotContains(t, notes[0], "shardId-000000000001")
	assert.NotContains(t, notes[0], "shardId-000000000002")

	multi := streamLeases{streamID: "123:orders:1764583200", created: created}
	notes = recreatedNotes("orders", multi, map[string]int{"123:orders:1764579600": 4})
	require.Len(t, notes, 1)
	assert.Contains(t, notes[0], "4 leases of 123:orders:1764579600, an earlier stream of this name, are left alone")
	assert.Empty(t, recreatedNotes("orders", streamLeases{created: created}, nil), "nothing earlier")
}

// Without -lease, the watch lasts the longest LeaseDuration the heartbeats
// name: kcl workers write theirs. With the old fixed 10 s, a healthy worker
// of a group with LeaseDuration 20 s, quiet for 15 s between beats, was
// called dead (issue 27, item 12).
func TestTheWatchLastsTheGroupsLeaseDuration(t *testing.T) {
	h := newHarness(t, 1)
	c, err := kcl.New(kcl.Options{
		StreamName: h.stream, AppName: h.table, WorkerID: "slow", Kinesis: h.kin, DynamoDB: h.db,
		LeaseDuration: 20 * time.Second, Logger: slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	records := c.Consume(ctx)
	defer func() {
		cancel()
		for range records {
		}
	}()
	require.Eventually(t, func() bool { return h.get(leaseitem.WorkerKey("slow")) != nil }, 30*time.Second, 50*time.Millisecond)
	assert.Equal(t, 20*time.Second, h.beat("slow").LeaseDuration, "the heartbeat carries it")

	code, _, stderr := h.run("status", "-app", h.table, "-stream", h.stream)
	require.Equal(t, 0, code, stderr)
	assert.Equal(t, 20*time.Second, h.waited)
	assert.Contains(t, h.progress.String(), "for 20s to tell live workers from dead ones")

	code, _, stderr = h.run("status", "-app", h.table, "-stream", h.stream, "-lease", "3s")
	require.Equal(t, 0, code, stderr)
	assert.Equal(t, 3*time.Second, h.waited, "-lease given wins")
}

// status counts the ended leases that kcl deletes once their delay passed,
// as the workers judge them (cleanup.go, endedLeases): those it ended (its
// mark), with no hand-off asked, of this stream (its creation time), whose
// children all started and whose listed children cover its range.
func TestStatusAwaitingDeletion(t *testing.T) {
	seq := "49590338271490256608559692538361571095921575989136588898"
	mark := leaseitem.Writer{Worker: "w1", Token: "t", Beat: 2}
	created := time.UnixMilli(1700000000000)
	stamp := created.UnixMilli()
	span := func(id string, first, last int64, parents ...string) shardInfo {
		return shardInfo{id: id, parents: parents, first: big.NewInt(first), last: big.NewInt(last)}
	}
	listing := func() []shardInfo {
		return []shardInfo{
			span("p", 0, 99), span("c1", 0, 49, "p"), span("c2", 50, 99, "p"),
			span("q", 100, 199), span("d1", 100, 149, "q"), span("d2", 150, 199, "q"),
			span("j", 200, 299), span("e1", 200, 299, "j"),
		}
	}
	leases := func() streamLeases {
		return streamLeases{created: created, byShard: map[string]leaseitem.Lease{
			"p":  {Key: "p", Counter: 5, Checkpoint: leaseitem.ShardEnd, Writer: mark, StreamCreated: stamp},
			"c1": {Key: "c1", Counter: 3, Checkpoint: seq, Parents: []string{"p"}, StreamCreated: stamp},
			"c2": {Key: "c2", Counter: 3, Checkpoint: leaseitem.ShardEnd, Parents: []string{"p"}, Writer: mark, StreamCreated: stamp},
			"q":  {Key: "q", Counter: 5, Checkpoint: leaseitem.ShardEnd, Writer: mark, StreamCreated: stamp},
			"d1": {Key: "d1", Counter: 3, Checkpoint: seq, Parents: []string{"q"}, StreamCreated: stamp},
			"d2": {Key: "d2", Counter: 1, Checkpoint: leaseitem.TrimHorizon, Parents: []string{"q"}, StreamCreated: stamp}, // not started
			"j":  {Key: "j", Counter: 5, Checkpoint: leaseitem.ShardEnd, Owner: "java-1", StreamCreated: stamp},            // the Java KCL's
			"e1": {Key: "e1", Counter: 3, Checkpoint: seq, Parents: []string{"j"}, StreamCreated: stamp},
			"g":  {Key: "g", Counter: 5, Checkpoint: leaseitem.ShardEnd, Writer: mark, StreamCreated: stamp}, // past retention, no child
		}}
	}
	for _, c := range []struct {
		name   string
		change func(shards []shardInfo, sl *streamLeases) []shardInfo
		want   []string
	}{
		{"every child started", nil, []string{"g", "p"}},
		{"a hand-off asked", func(sh []shardInfo, sl *streamLeases) []shardInfo {
			edit(sl, "p", func(l *leaseitem.Lease) { l.HandoffTo = "w2" })
			return sh
		}, []string{"g"}},
		{"the Java KCL's graceful hand-off", func(sh []shardInfo, sl *streamLeases) []shardInfo {
			edit(sl, "p", func(l *leaseitem.Lease) { l.CheckpointOwner = "java-2" })
			return sh
		}, []string{"g"}},
		{"an earlier stream's lease", func(sh []shardInfo, sl *streamLeases) []shardInfo {
			edit(sl, "p", func(l *leaseitem.Lease) { l.StreamCreated = stamp - 1 })
			return sh
		}, []string{"g"}},
		{"a lease with no creation time", func(sh []shardInfo, sl *streamLeases) []shardInfo {
			edit(sl, "g", func(l *leaseitem.Lease) { l.StreamCreated = 0 })
			return sh
		}, []string{"p"}},
		{"the stream's creation time unknown", func(sh []shardInfo, sl *streamLeases) []shardInfo {
			sl.created = time.Time{}
			return sh
		}, nil},
		{"a multi-stream table: its keys name the stream", func(sh []shardInfo, sl *streamLeases) []shardInfo {
			sl.streamID, sl.created = "123456789012:s:1700000000", time.Time{}
			for k := range sl.byShard {
				edit(sl, k, func(l *leaseitem.Lease) {
					// As leaseitem.ParseLease gives them: full keys.
					l.StreamCreated, l.Key = 0, leaseitem.Key(sl.streamID, l.Key)
					for i, p := range l.Parents {
						l.Parents[i] = leaseitem.Key(sl.streamID, p)
					}
				})
			}
			return sh
		}, []string{"g", "p"}},
		{"a child of an earlier stream", func(sh []shardInfo, sl *streamLeases) []shardInfo {
			edit(sl, "c1", func(l *leaseitem.Lease) { l.StreamCreated = stamp - 1 })
			return sh
		}, []string{"g"}},
		{"a child not started", func(sh []shardInfo, sl *streamLeases) []shardInfo {
			edit(sl, "c1", func(l *leaseitem.Lease) { l.Checkpoint = leaseitem.TrimHorizon })
			return sh
		}, []string{"g"}},
		{"a listed child whose lease does not name it", func(sh []shardInfo, sl *streamLeases) []shardInfo {
			edit(sl, "c2", func(l *leaseitem.Lease) { l.Parents = nil })
			return sh
		}, []string{"g"}},
		{"a listing caught mid-reshard: the children do not cover the range", func(sh []shardInfo, sl *streamLeases) []shardInfo {
			edit(sl, "c2", func(l *leaseitem.Lease) { l.Checkpoint = seq }) // not ended itself
			return slices.DeleteFunc(sh, func(s shardInfo) bool { return s.id == "c2" })
		}, []string{"g"}},
		{"a parent no longer listed: its leased children suffice", func(sh []shardInfo, sl *streamLeases) []shardInfo {
			return slices.DeleteFunc(sh, func(s shardInfo) bool { return s.id == "p" })
		}, []string{"g", "p"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			shards, sl := listing(), leases()
			if c.change != nil {
				shards = c.change(shards, &sl)
			}
			assert.Equal(t, c.want, awaitingDeletion(shards, sl))
		})
	}
}

// edit changes the lease of shard in sl.
func edit(sl *streamLeases, shard string, change func(*leaseitem.Lease)) {
	l := sl.byShard[shard]
	change(&l)
	sl.byShard[shard] = l
}
