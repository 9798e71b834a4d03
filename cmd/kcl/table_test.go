package main

import (
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/assert"
)

func TestClassify(t *testing.T) {
	seq := "49590338271490256608559692538361571095921575989136588898"
	with := func(it item, attr string, v types.AttributeValue) item {
		out := item{}
		for k, x := range it {
			out[k] = x
		}
		if v == nil {
			delete(out, attr)
		} else {
			out[attr] = v
		}
		return out
	}
	full := leaseItem("shardId-000000000001", "w1", 7, seq)
	full[attrCheckpointSub] = n(3)
	full[attrParents] = &types.AttributeValueMemberSS{Value: []string{"shardId-000000000000"}}
	full[attrHandoff] = s("w2")
	full[attrStartAt] = n(1700000000000)
	full["throughputKBps"] = n(12) // a Java attribute kcl ignores
	for _, tc := range []struct {
		name string
		item item
		kind itemKind
		want tableItem // checked for leases and heartbeats
		why  string    // substring, for kindUnknown
	}{
		{name: "lease", item: full, kind: kindLease, want: tableItem{key: "shardId-000000000001", lease: lease{
			key: "shardId-000000000001", shard: "shardId-000000000001", owner: "w1", counter: 7, checkpoint: seq, sub: 3,
			parents: []string{"shardId-000000000000"}, handoffTo: "w2", startAt: 1700000000000}}},
		{name: "unowned sentinel lease", item: leaseItem("shardId-000000000002", "", 0, trimHorizon), kind: kindLease,
			want: tableItem{key: "shardId-000000000002", lease: lease{key: "shardId-000000000002", shard: "shardId-000000000002", checkpoint: trimHorizon}}},
		{name: "Java 3.5 lease with entityType LEASE", item: with(leaseItem("shardId-000000000003", "java-1", 2, latest), attrEntityType, s("LEASE")), kind: kindLease,
			want: tableItem{key: "shardId-000000000003", entityType: "LEASE", lease: lease{key: "shardId-000000000003", shard: "shardId-000000000003", owner: "java-1", counter: 2, checkpoint: latest}}},
		{name: "a single parent as a string", item: with(leaseItem("shardId-000000000004", "", 1, shardEnd), attrParents, s("shardId-000000000000")), kind: kindLease,
			want: tableItem{key: "shardId-000000000004", lease: lease{key: "shardId-000000000004", shard: "shardId-000000000004", counter: 1, checkpoint: shardEnd, parents: []string{"shardId-000000000000"}}}},
		{name: "multi-stream lease", item: leaseItem("123:orders:1700000000:shardId-000000000000", "", 1, trimHorizon), kind: kindLease,
			want: tableItem{key: "123:orders:1700000000:shardId-000000000000", lease: lease{key: "123:orders:1700000000:shardId-000000000000", streamID: "123:orders:1700000000", shard: "shardId-000000000000", counter: 1, checkpoint: trimHorizon}}},
		{name: "heartbeat", item: beatItem("w1", 41), kind: kindHeartbeat,
			want: tableItem{key: "kcl-worker:w1", beat: beat{worker: "w1", counter: 41}}},
		{name: "stopping heartbeat with an entityType", item: with(with(beatItem("w2", 1), attrStopping, &types.AttributeValueMemberBOOL{Value: true}), attrEntityType, s("KCL_WORKER")), kind: kindHeartbeat,
			want: tableItem{key: "kcl-worker:w2", entityType: "KCL_WORKER", beat: beat{worker: "w2", counter: 1, stopping: true}}},
		{name: "kcl group item", item: item{attrLeaseKey: s("kcl-group"), attrEntityType: s("KCL_GROUP"), "members": &types.AttributeValueMemberM{}}, kind: kindKCL},
		{name: "kcl item without entityType", item: item{attrLeaseKey: s("kcl-something-new")}, kind: kindKCL},
		{name: "Java leader", item: item{attrLeaseKey: s("Leader"), attrEntityType: s("LEADER"), "ownerName": s("java-1")}, kind: kindJava},
		{name: "Java migration state", item: item{attrLeaseKey: s("Migration3.0"), attrEntityType: s("CLIENT_VERSION_MIGRATION"), "cv": s("CLIENT_VERSION_3X")}, kind: kindJava},
		{name: "Java worker metrics", item: item{attrLeaseKey: s("java-worker-1"), attrEntityType: s("WORKER_METRIC_STATS"), "lut": n(1700000000)}, kind: kindJava},
		{name: "no key", item: item{attrCounter: n(1)}, kind: kindUnknown, why: "no string leaseKey"},
		{name: "numeric key", item: item{attrLeaseKey: n(1)}, kind: kindUnknown, why: "no string leaseKey"},
		{name: "entityType not a string: a lease, as kcl and the Java KCL read it", item: with(leaseItem("shardId-000000000005", "", 0, latest), attrEntityType, n(1)), kind: kindLease,
			want: tableItem{key: "shardId-000000000005", lease: lease{key: "shardId-000000000005", shard: "shardId-000000000005", checkpoint: latest}}},
		{name: "Java KCL 3.x hand-off", item: with(leaseItem("shardId-000000000012", "java-2", 4, seq), attrCheckpointOwner, s("java-1")), kind: kindLease,
			want: tableItem{key: "shardId-000000000012", lease: lease{key: "shardId-000000000012", shard: "shardId-000000000012", owner: "java-2", counter: 4, checkpoint: seq, checkpointOwner: "java-1"}}},
		{name: "kcl entityType under another key", item: item{attrLeaseKey: s("some-future-item"), attrEntityType: s("KCL_SOMETHING")}, kind: kindKCL},
		{name: "bad checkpoint", item: leaseItem("shardId-000000000006", "w1", 1, "yesterday"), kind: kindUnknown, why: `checkpoint: "yesterday" is neither`},
		{name: "no checkpoint", item: with(leaseItem("shardId-000000000007", "w1", 1, latest), attrCheckpoint, nil), kind: kindUnknown, why: "checkpoint: missing"},
		{name: "no counter", item: with(leaseItem("shardId-000000000008", "w1", 1, latest), attrCounter, nil), kind: kindUnknown, why: "leaseCounter: missing"},
		{name: "negative counter", item: with(leaseItem("shardId-000000000008", "w1", 1, latest), attrCounter, n(-1)), kind: kindUnknown, why: "not a non-negative integer"},
		{name: "owner not a string", item: with(leaseItem("shardId-000000000009", "", 1, latest), attrOwner, n(3)), kind: kindUnknown, why: "leaseOwner: not a string"},
		{name: "parents not a set", item: with(leaseItem("shardId-000000000010", "", 1, latest), attrParents, n(3)), kind: kindUnknown, why: "parentShardId: not a string set"},
		{name: "start time not a number", item: with(leaseItem("shardId-000000000011", "", 1, latest), attrStartAt, s("now")), kind: kindUnknown, why: "kclStartTimestamp: not a number"},
		{name: "heartbeat without counter", item: item{attrLeaseKey: s("kcl-worker:w3")}, kind: kindUnknown, why: "leaseCounter: missing"},
		{name: "heartbeat without worker ID", item: item{attrLeaseKey: s("kcl-worker:"), attrCounter: n(1)}, kind: kindUnknown, why: "without a worker ID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := classify(tc.item)
			assert.Equal(t, tc.kind, got.kind, "why: %s", got.why)
			switch tc.kind {
			case kindLease, kindHeartbeat:
				want := tc.want
				want.kind = tc.kind
				assert.Equal(t, want, got)
			case kindUnknown:
				assert.Contains(t, got.why, tc.why)
			}
		})
	}
}

// TestWatchAlive checks the liveness rule against the workers' (assess in
// balance.go).
func TestWatchAlive(t *testing.T) {
	snap := func(beats map[string]int64, leases ...lease) snapshot {
		s := snapshot{leases: map[string]lease{}, beats: map[string]beat{}}
		for id, c := range beats {
			s.beats[id] = beat{worker: id, counter: c}
		}
		for _, l := range leases {
			l.key = l.shard
			s.leases[l.key] = l
		}
		return s
	}
	before := snap(map[string]int64{"beating": 5, "still": 9, "gone": 3, "kclTaker": 2},
		lease{shard: "a", owner: "java", counter: 10}, lease{shard: "b", owner: "still", counter: 4},
		lease{shard: "c", owner: "javaDead", counter: 2}, lease{shard: "d", owner: "old", counter: 6},
		lease{shard: "e", owner: "javaNew", counter: 3, checkpointOwner: "javaOld"},
		lease{shard: "f", owner: "still", counter: 8})
	after := snap(map[string]int64{"beating": 6, "still": 9, "new": 1, "kclTaker": 2},
		lease{shard: "a", owner: "java", counter: 11}, lease{shard: "b", owner: "still", counter: 4},
		lease{shard: "c", owner: "javaDead", counter: 2}, lease{shard: "d", owner: "taker", counter: 7},
		lease{shard: "e", owner: "javaNew", counter: 4, checkpointOwner: "javaOld"},
		lease{shard: "f", owner: "kclTaker", counter: 9},
		lease{shard: "g", owner: "javaCreator", counter: 1})
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
		"nobody":   false,
	} {
		assert.Equal(t, want, w.alive(id), id)
	}
	assert.Equal(t, []string{"beating", "java", "javaCreator", "javaDead", "javaNew", "javaOld", "kclTaker", "new", "still", "taker"}, w.workers())
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
		{in: "trim-horizon", want: target{checkpoint: trimHorizon}},
		{in: "TRIM_HORIZON", want: target{checkpoint: trimHorizon}},
		{in: "latest", want: target{checkpoint: latest}},
		{in: "2026-11-27T08:15:00Z", want: target{checkpoint: atTimestamp, at: time.Date(2026, 11, 27, 8, 15, 0, 0, time.UTC)}, startAt: 1795767300000},
		{in: "2026-11-27T09:15:00.250+01:00", want: target{checkpoint: atTimestamp, at: time.Date(2026, 11, 27, 8, 15, 0, 250e6, time.UTC)}, startAt: 1795767300250},
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
