package main

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/kclgo/kcl/internal/leaseitem"
)

// TestReadTableFilesItems: each item, read as the workers read it
// (leaseitem.Read), lands where status and reset look for it.
func TestReadTableFilesItems(t *testing.T) {
	bad := leaseItem("shardId-000000000006", "w1", 1, "yesterday")
	badGroup := item{leaseitem.AttrLeaseKey: s(leaseitem.GroupKey), leaseitem.AttrEpoch: s("three")}
	var snap snapshot
	snap.leases, snap.beats, snap.unread = map[string]leaseitem.Lease{}, map[string]leaseitem.Beat{}, map[string]string{}
	for _, it := range []item{
		leaseItem("shardId-000000000001", "w1", 7, leaseitem.TrimHorizon),
		beatItem("w1", 41),
		{leaseitem.AttrLeaseKey: s(leaseitem.GroupKey), leaseitem.AttrEntityType: s(leaseitem.EntityKCLGroup), leaseitem.AttrEpoch: n(3)},
		{leaseitem.AttrLeaseKey: s("kcl-something"), leaseitem.AttrEntityType: s(leaseitem.EntityKCLWorker)},
		{leaseitem.AttrLeaseKey: s("Leader"), leaseitem.AttrEntityType: s("LEADER")},
		bad, badGroup,
		{leaseitem.AttrCounter: n(1)},
	} {
		snap.add(leaseitem.Read(it))
	}
	assert.Equal(t, []string{"shardId-000000000001"}, slices.Collect(maps.Keys(snap.leases)))
	assert.Equal(t, map[string]leaseitem.Beat{"w1": {Worker: "w1", Counter: 41}}, snap.beats)
	assert.Equal(t, []string{"kcl-something"}, snap.kcl, "the group item is known and not noted")
	assert.Equal(t, []string{"Leader (LEADER)"}, snap.java)
	assert.Equal(t, []string{
		`item "shardId-000000000006" not understood: checkpoint: "yesterday" is neither a sequence number nor a sentinel`,
		`item "kcl-group" not understood: kclEpoch: not a number`,
		`item without a key not understood: leaseKey: missing or not a string`,
	}, snap.unknown)
	assert.Equal(t, map[string]string{
		"shardId-000000000006": `checkpoint: "yesterday" is neither a sequence number nor a sentinel`,
		"kcl-group":            "kclEpoch: not a number",
	}, snap.unread)
}

// TestWatchAlive: the watch applies the workers' rule (leaseitem.Liveness,
// which assess in balance.go calls too) to what changed between two reads.
func TestWatchAlive(t *testing.T) {
	snap := func(beats map[string]int64, leases ...leaseitem.Lease) snapshot {
		s := snapshot{leases: map[string]leaseitem.Lease{}, beats: map[string]leaseitem.Beat{}}
		for id, c := range beats {
			s.beats[id] = leaseitem.Beat{Worker: id, Counter: c}
		}
		for _, l := range leases {
			s.leases[l.Key] = l
		}
		return s
	}
	before := snap(map[string]int64{"beating": 5, "still": 9, "gone": 3, "kclTaker": 2, "stuck": 4},
		leaseitem.Lease{Key: "a", Owner: "java", Counter: 10}, leaseitem.Lease{Key: "b", Owner: "still", Counter: 4},
		leaseitem.Lease{Key: "c", Owner: "javaDead", Counter: 2}, leaseitem.Lease{Key: "d", Owner: "old", Counter: 6},
		leaseitem.Lease{Key: "e", Owner: "javaNew", Counter: 3, CheckpointOwner: "javaOld"},
		leaseitem.Lease{Key: "f", Owner: "still", Counter: 8},
		leaseitem.Lease{Key: "h", Owner: "stuck", Counter: 1},
		leaseitem.Lease{Key: "i", Owner: "javaNewer", Counter: 5, CheckpointOwner: "javaGone"})
	after := snap(map[string]int64{"beating": 6, "still": 9, "new": 1, "kclTaker": 2, "stuck": 4},
		leaseitem.Lease{Key: "a", Owner: "java", Counter: 11}, leaseitem.Lease{Key: "b", Owner: "still", Counter: 4},
		leaseitem.Lease{Key: "c", Owner: "javaDead", Counter: 2}, leaseitem.Lease{Key: "d", Owner: "taker", Counter: 7},
		leaseitem.Lease{Key: "e", Owner: "javaNew", Counter: 4, CheckpointOwner: "javaOld"},
		leaseitem.Lease{Key: "f", Owner: "kclTaker", Counter: 9},
		leaseitem.Lease{Key: "g", Owner: "javaCreator", Counter: 1},
		leaseitem.Lease{Key: "h", Owner: "stuck", Counter: 2},
		leaseitem.Lease{Key: "i", Owner: "javaNewer", Counter: 5, CheckpointOwner: "javaGone"})
	w := watch{before: before, after: after}
	for id, want := range map[string]bool{
		"beating":  true,  // heartbeat changed
		"new":      true,  // heartbeat item appeared
		"java":     true,  // no heartbeat item; its lease's counter changed
		"still":    false, // heartbeat and lease unchanged; a lease taken from it is no sign of its life
		"javaDead": false,
		"gone":     false, // heartbeat item deleted (a graceful stop)
		// No heartbeat item: it took a lease during the watch (a new owner
		// and counter restart the workers' clock, assess in balance.go).
		"taker":       true,
		"javaCreator": true, // no heartbeat item; a lease it owns appeared
		// A Java KCL 3.x hand-off: the old owner reads and renews the lease,
		// so the change is its sign of life, not the waiting new owner's.
		"javaOld": true,
		"javaNew": false,
		// A kcl worker is judged by its heartbeat: a lease it took while
		// its heartbeat stood still does not make it alive (kcl's workers
		// judge it by its heartbeat item too).
		"kclTaker": false,
		// Nor does a checkpoint of a lease it reads: the workers take the
		// leases of a worker whose heartbeat stood still for a lease
		// duration, and fence the take on the lease's counter.
		"stuck": false,
		// A Java hand-off whose lease stood still: the old owner is dead,
		// and the new one, without a heartbeat item, shows no life either.
		"javaGone":  false,
		"javaNewer": false,
		"nobody":    false,
	} {
		assert.Equal(t, want, w.alive(id), id)
	}
	assert.Equal(t, []string{"beating", "java", "javaCreator", "javaDead", "javaGone", "javaNew", "javaNewer", "javaOld", "kclTaker", "new", "still", "stuck", "taker"}, w.workers())
	assert.Equal(t, []string{"beating", "java", "javaCreator", "javaOld", "new", "taker"}, w.live())
}

func TestParseTarget(t *testing.T) {
	now := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in      string
		want    target
		startAt int64
		err     string
	}{
		{in: "trim-horizon", want: target{checkpoint: leaseitem.TrimHorizon}},
		{in: "TRIM_HORIZON", want: target{checkpoint: leaseitem.TrimHorizon}},
		{in: "latest", want: target{checkpoint: leaseitem.Latest, at: now.Add(-time.Minute)}, startAt: now.Add(-time.Minute).UnixMilli()}, // the reset's time, less a minute
		{in: "2026-11-27T08:15:00Z", want: target{checkpoint: leaseitem.AtTimestamp, at: time.Date(2026, 11, 27, 8, 15, 0, 0, time.UTC)}, startAt: 1795767300000},
		{in: "2026-11-27T09:15:00.250+01:00", want: target{checkpoint: leaseitem.AtTimestamp, at: time.Date(2026, 11, 27, 8, 15, 0, 250e6, time.UTC)}, startAt: 1795767300250},
		{in: "", err: "-to is required"},
		{in: "2026-11-27 08:15", err: "want trim-horizon, latest or an RFC 3339 time"},
		{in: "2026-11-27T09:00:01Z", err: "in the future"},
		{in: "1960-01-01T00:00:00Z", err: "not after 1970"},
	} {
		got, err := parseTarget(tc.in, now)
		if tc.err != "" {
			assert.ErrorContains(t, err, tc.err, tc.in)
			assert.ErrorAs(t, err, new(usageError), tc.in)
			continue
		}
		if assert.NoError(t, err, tc.in) {
			assert.Equal(t, tc.want.checkpoint, got.checkpoint, tc.in)
			assert.True(t, tc.want.at.Equal(got.at), tc.in)
			assert.Equal(t, tc.startAt, got.startAt(), tc.in)
		}
	}
}
