package main

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kclgo/kcl/internal/leaseitem"
)

const (
	seqA = "49668000000000000000000000000000000000000000000000000002"
	seqB = "49668000000000000000000000000000000000000000000000000017"
)

// exampleWatch is a group of two kcl workers (w1 alive, w2 dead), a Java
// worker, shards in every state, and an item of each kind.
func exampleWatch() ([]shardInfo, watch) {
	shards := []shardInfo{
		{id: "shardId-000000000000", closed: true},
		{id: "shardId-000000000001"},
		{id: "shardId-000000000002", parents: []string{"shardId-000000000000"}},
		{id: "shardId-000000000003", parents: []string{"shardId-000000000000"}},
		{id: "shardId-000000000004"},
		{id: "shardId-000000000005"},
	}
	before := snapshot{
		leases: map[string]leaseitem.Lease{
			"shardId-000000000000": {Counter: 9, Checkpoint: leaseitem.ShardEnd},
			"shardId-000000000001": {Owner: "w1", Counter: 4, Checkpoint: seqA, CheckpointSub: 2},
			"shardId-000000000002": {Owner: "w2", Counter: 3, Checkpoint: leaseitem.TrimHorizon, Parents: []string{"shardId-000000000000"}, HandoffTo: "w1"},
			"shardId-000000000003": {Owner: "java-1", Counter: 30, Checkpoint: seqB, Parents: []string{"shardId-000000000000"}, CheckpointOwner: "java-0"},
			"shardId-000000000004": {Counter: 1, Checkpoint: leaseitem.Latest, StartAt: 1795767300000},
			"shardId-00000000000a": {Counter: 5, Checkpoint: leaseitem.ShardEnd},
			"shardId-00000000000b": {Owner: "w2", Counter: 5, Checkpoint: seqA},
			"1:other:1:shardId-0":  {Counter: 1, Checkpoint: leaseitem.Latest},
		},
		beats: map[string]leaseitem.Beat{"w1": {Worker: "w1", Counter: 100}, "w2": {Worker: "w2", Counter: 50}},
	}
	after := snapshot{leases: map[string]leaseitem.Lease{}, beats: map[string]leaseitem.Beat{
		"w1": {Worker: "w1", Counter: 103, Stopping: true}, "w2": {Worker: "w2", Counter: 50},
	}}
	for k, l := range before.leases {
		l.Key = k
		before.leases[k] = l
		after.leases[k] = l
	}
	l := after.leases["shardId-000000000003"]
	l.Counter += 3 // the Java worker renews
	after.leases[l.Key] = l
	after.kcl = []string{"kcl-something-new"} // the group item (kcl-group) is not listed: readTable drops it
	after.java = []string{"Leader (LEADER)", "Migration3.0 (CLIENT_VERSION_MIGRATION)"}
	after.unknown = []string{`item "shardId-000000000099" not understood: checkpoint: "yesterday" is neither a sequence number nor a sentinel`}
	return shards, watch{before: before, after: after, watched: 10 * time.Second}
}

func TestStatusOutput(t *testing.T) {
	shards, w := exampleWatch()
	rep := buildStatus("orders", "billing", shards, w, singleStream(w.after))

	byShard := map[string]shardRow{}
	for _, r := range rep.Shards {
		byShard[r.Shard] = r
	}
	assert.Equal(t, "ended", byShard["shardId-000000000000"].State)
	assert.Equal(t, "open", byShard["shardId-000000000001"].State)
	assert.True(t, byShard["shardId-000000000001"].OwnerAlive)
	assert.False(t, byShard["shardId-000000000002"].OwnerAlive, "w2's heartbeat did not change")
	assert.True(t, byShard["shardId-000000000003"].OwnerAlive, "a Java owner renews its lease")
	assert.Equal(t, "", byShard["shardId-000000000005"].Checkpoint, "no lease yet")
	assert.Len(t, rep.Problems, 3, "the unlisted open lease, the multi-stream lease, the item not understood: %q", rep.Problems)

	var human bytes.Buffer
	require.NoError(t, rep.print(&human))
	golden(t, "status", human.String())

	// -lag: where the next owner opens each shard, and the figures.
	want := map[string]struct {
		typ ktypes.ShardIteratorType
		at  string
	}{
		"shardId-000000000001": {ktypes.ShardIteratorTypeAfterSequenceNumber, seqA},
		"shardId-000000000002": {ktypes.ShardIteratorTypeTrimHorizon, ""},
		"shardId-000000000004": {ktypes.ShardIteratorTypeAtTimestamp, ""},
	}
	for _, r := range rep.Shards {
		if wt, ok := want[r.Shard]; ok {
			assert.Equal(t, wt.typ, r.lagFrom, r.Shard)
			assert.Equal(t, wt.at, r.lagAt, r.Shard)
		}
	}
	assert.True(t, time.UnixMilli(1795767300000).Equal(byShard["shardId-000000000004"].lagStart))
	rep.Lag = true
	for i, ms := range []int64{0, 1500, 61000, 0, 250} {
		rep.Shards[i].MillisBehind = aws.Int64(ms)
	}
	human.Reset()
	require.NoError(t, rep.print(&human))
	golden(t, "status-lag", human.String())

	var js bytes.Buffer
	enc := json.NewEncoder(&js)
	enc.SetIndent("", "  ")
	require.NoError(t, enc.Encode(rep))
	golden(t, "status-json", js.String())
	// The documented shape, exactly: these keys and no others.
	var doc map[string]any
	require.NoError(t, json.Unmarshal(js.Bytes(), &doc))
	assert.ElementsMatch(t, []string{"stream", "table", "shards", "workers", "problems"}, keys(doc))
	shard := doc["shards"].([]any)[1].(map[string]any)
	assert.ElementsMatch(t, []string{"shard", "state", "owner", "owner_alive", "checkpoint", "sub_sequence", "parents", "millis_behind"}, keys(shard))
	assert.ElementsMatch(t, []string{"id", "alive", "leases"}, keys(doc["workers"].([]any)[0].(map[string]any)))
	unleased := doc["shards"].([]any)[5].(map[string]any)
	assert.NotContains(t, unleased, "millis_behind", "no lease, no lag")
}

func TestStatusJSONWithoutLagHasNoMillisBehind(t *testing.T) {
	rep := buildStatus("orders", "billing", []shardInfo{{id: "shardId-000000000000"}}, watch{}, streamLeases{})
	out, err := json.Marshal(rep)
	require.NoError(t, err)
	assert.JSONEq(t, `{"stream":"orders","table":"billing","shards":[{"shard":"shardId-000000000000","state":"open","owner":"","owner_alive":false,"checkpoint":"","sub_sequence":0,"parents":[]}],"workers":[],"problems":[]}`, string(out))
}

// singleStream is the single-stream view of a snapshot, as leasesOf makes
// it for a table with no multi-stream lease of the stream.
func singleStream(snap snapshot) streamLeases {
	byShard, others := snap.streamLeases("")
	return streamLeases{byShard: byShard, others: others}
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestPlanReset(t *testing.T) {
	shards, w := exampleWatch()
	at := time.Date(2026, 11, 27, 8, 15, 0, 0, time.UTC)

	rep, err := planReset("orders", "billing", target{checkpoint: leaseitem.AtTimestamp, at: at}, shards, singleStream(w.after), w.after.unread, nil)
	require.NoError(t, err)
	var got []string
	for _, r := range rep.rows {
		got = append(got, r.shard+" "+r.result)
	}
	assert.Equal(t, []string{
		"shardId-000000000000 would reset", "shardId-000000000001 would reset", "shardId-000000000002 would reset",
		"shardId-000000000003 would reset", "shardId-000000000004 would reset",
	}, got, "every leased shard of the stream; the unleased and unlisted ones noted")
	rep.dryRun = true
	var out bytes.Buffer
	require.NoError(t, rep.print(&out))
	golden(t, "reset-dry-run", out.String())

	// A written reset, with -force over a live worker and a shard a worker
	// wrote in between.
	rep, err = planReset("orders", "billing", target{checkpoint: leaseitem.Latest}, shards, singleStream(w.after), w.after.unread, nil)
	require.NoError(t, err)
	for i := range rep.rows {
		if rep.rows[i].shard == "shardId-000000000004" {
			assert.Equal(t, "would reset", rep.rows[i].result, "LATEST with a start time is not LATEST without one")
		}
		rep.rows[i].result = "reset"
	}
	rep.rows[1].result = "left alone: written since it was read (a worker wrote it)"
	rep.leftAlone = []string{rep.rows[1].shard}
	rep.live = []string{"w1"}
	out.Reset()
	require.NoError(t, rep.print(&out))
	golden(t, "reset-force", out.String())

	// Refusals and choices.
	_, err = planReset("orders", "billing", target{checkpoint: leaseitem.TrimHorizon}, shards, singleStream(w.after), w.after.unread, []string{"shardId-000000000000"})
	assert.ErrorContains(t, err, `shard "shardId-000000000000" is ended and its child "shardId-000000000002" would not be reset`)
	rep, err = planReset("orders", "billing", target{checkpoint: leaseitem.TrimHorizon}, shards, singleStream(w.after), w.after.unread, []string{"shardId-000000000000", "shardId-000000000002", "shardId-000000000003"})
	require.NoError(t, err, "a parent with all its children")
	assert.Len(t, rep.rows, 3)
	rep, err = planReset("orders", "billing", target{checkpoint: leaseitem.Latest}, shards, singleStream(w.after), w.after.unread, []string{"shardId-000000000000"})
	require.NoError(t, err, "latest leaves ended shards ended, so the children go on")
	assert.Empty(t, rep.rows)
	_, err = planReset("orders", "billing", target{checkpoint: leaseitem.TrimHorizon}, shards, singleStream(w.after), w.after.unread, []string{"shardId-00000000000b"})
	assert.ErrorContains(t, err, `stream "orders" does not list shard "shardId-00000000000b"`)
	_, err = planReset("orders", "billing", target{checkpoint: leaseitem.TrimHorizon}, shards, singleStream(w.after), w.after.unread, []string{"shardId-000000000005"})
	assert.ErrorContains(t, err, `no lease for shard "shardId-000000000005"`)
	rep, err = planReset("orders", "billing", target{checkpoint: leaseitem.TrimHorizon}, shards, singleStream(w.after), w.after.unread, []string{"shardId-000000000002"})
	require.NoError(t, err)
	assert.Equal(t, "would reset", rep.rows[0].result, "an owned lease is written even at the target: its owner, frozen past the watch, must fail its next write (issue 27, item 9)")
	free := w.after.leases["shardId-000000000002"]
	free.Owner, free.HandoffTo = "", ""
	w.after.leases["shardId-000000000002"] = free
	rep, err = planReset("orders", "billing", target{checkpoint: leaseitem.TrimHorizon}, shards, singleStream(w.after), w.after.unread, []string{"shardId-000000000002"})
	require.NoError(t, err)
	assert.Equal(t, "unchanged", rep.rows[0].result, "a free lease already at TRIM_HORIZON")
	_, err = planReset("orders", "billing", target{checkpoint: leaseitem.TrimHorizon}, []shardInfo{{id: "shardId-000000000009"}}, singleStream(w.after), w.after.unread, nil)
	assert.ErrorContains(t, err, "nothing to reset")
}

func TestForgetOutput(t *testing.T) {
	_, w := exampleWatch()
	rep := planForget("billing", "w2", w.after)
	var out bytes.Buffer
	rep.dryRun = true
	require.NoError(t, rep.print(&out))
	golden(t, "forget-dry-run", out.String())

	rep.dryRun = false
	rep.rows[0].result = "released"
	rep.rows[1].result = "left alone: written since it was read"
	rep.rows[2].result = "deleted"
	rep.leftAlone = []string{rep.rows[1].key}
	out.Reset()
	require.NoError(t, rep.print(&out))
	golden(t, "forget", out.String())
}

// A parent whose lease the Java KCL deleted is made a lease again at the
// target, before its children; re-reading it while a child goes on (the
// child not reset) is refused, as for an ended parent (issue 27, item 10).
func TestPlanResetReReadsDeletedParents(t *testing.T) {
	shards := []shardInfo{
		{id: "shardId-000000000000", closed: true},
		{id: "shardId-000000000001", parents: []string{"shardId-000000000000"}},
		{id: "shardId-000000000002", parents: []string{"shardId-000000000000"}},
	}
	children := map[string]leaseitem.Lease{
		"shardId-000000000001": {Key: "shardId-000000000001", Counter: 4, Checkpoint: leaseitem.TrimHorizon, Parents: []string{"shardId-000000000000"}, StreamCreated: 7},
		"shardId-000000000002": {Key: "shardId-000000000002", Counter: 4, Checkpoint: leaseitem.TrimHorizon, Parents: []string{"shardId-000000000000"}, StreamCreated: 7},
	}
	sl := streamLeases{byShard: children}
	rep, err := planReset("orders", "billing", target{checkpoint: leaseitem.TrimHorizon}, shards, sl, nil, nil)
	require.NoError(t, err)
	require.Len(t, rep.rows, 3)
	assert.Equal(t, resetRow{shard: "shardId-000000000000", key: "shardId-000000000000", from: "no lease (read to its end; its lease deleted)", to: "TRIM_HORIZON",
		result: "would re-read", create: true, stamp: 7}, rep.rows[0], "first, made a lease with its children's stamp")
	assert.Empty(t, rep.notes, "not a shard with no lease yet")
	rep, err = planReset("orders", "billing", target{checkpoint: leaseitem.Latest, at: time.Unix(1, 0)}, shards, sl, nil, nil)
	require.NoError(t, err)
	assert.Len(t, rep.rows, 2, "-to latest re-reads nothing")
	_, err = planReset("orders", "billing", target{checkpoint: leaseitem.TrimHorizon}, shards, sl, nil, []string{"shardId-000000000001"})
	assert.ErrorContains(t, err, `its child "shardId-000000000002" would not be reset`)
}
