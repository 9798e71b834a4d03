package kcl

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// assess decides on one read of the lease table; these cases drive each
// branch with hand-made tables and clocks. Each case runs one or two passes:
// the first (at t0) lets the observer see the counters, the second (at
// t0+after) is the one checked.
func TestAssess(t *testing.T) {
	const ld = 10 * time.Second
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(seq string) checkpoint { return checkpoint{seq: seq} }
	trim := at(checkpointTrimHorizon)
	beats := func(ws ...string) map[string]workerBeat {
		m := map[string]workerBeat{}
		for _, w := range ws {
			m[w] = workerBeat{counter: 1}
		}
		return m
	}
	type pass struct {
		snap tableSnapshot
		held []string
		// listed and now are offsets from t0; now defaults to listed.
		listed, now time.Duration
		settled     bool
		claimed     []string
		// moved: the consistent read of each suspect finds it changed (by
		// default it finds the counter the pass saw, which confirms it).
		moved   bool
		streams []string // the streams read (Streams); nil: a single stream
	}
	tests := []struct {
		name   string
		passes []pass
		want   decisions // byShard is not compared
	}{
		{
			name: "free leases are taken, up to the fair share",
			passes: []pass{{snap: tableSnapshot{
				leases:  []lease{{shardID: "s1", checkpoint: trim}, {shardID: "s2", checkpoint: trim}},
				workers: beats("me", "b"),
			}}},
			want: decisions{take: []string{"?"}}, // one of the two
		},
		{
			name: "a live worker's lease is left alone",
			passes: []pass{{snap: tableSnapshot{
				leases:  []lease{{shardID: "s1", owner: "b", counter: 3, checkpoint: trim}},
				workers: beats("me", "b"),
			}}},
		},
		{
			name: "a worker whose heartbeat is unchanged for LeaseDuration, judged at the read's start, is dead",
			passes: []pass{
				{snap: tableSnapshot{leases: []lease{{shardID: "s1", owner: "b", counter: 3, checkpoint: trim}}, workers: beats("me", "b")}},
				{snap: tableSnapshot{leases: []lease{{shardID: "s1", owner: "b", counter: 3, checkpoint: trim}}, workers: beats("me", "b")}, listed: ld + time.Millisecond},
			},
			want: decisions{take: []string{"s1"}},
		},
		{
			name: "a lease handed to this process at its claim is taken before it settles",
			passes: []pass{{snap: tableSnapshot{
				leases:  []lease{{shardID: "s1", owner: "me", counter: 4, checkpoint: trim}, {shardID: "s2", owner: "me", counter: 4, checkpoint: trim}, {shardID: "s3", owner: "b", counter: 4, checkpoint: trim}},
				workers: beats("me", "b"),
			}, claimed: []string{"s1"}}},
			want: decisions{take: []string{"s1"}},
		},
		{
			name: "a stale read showing a held lease free or another's: make sure it is lost, never take it again",
			passes: []pass{{snap: tableSnapshot{
				leases:  []lease{{shardID: "s1", counter: 4, checkpoint: trim}, {shardID: "s2", owner: "b", counter: 4, checkpoint: trim}},
				workers: beats("me", "b"),
			}, held: []string{"s1", "s2"}}},
			want: decisions{lost: []string{"s1", "s2"}},
		},
		{
			name: "a suspect a consistent read finds changed is not expired",
			passes: []pass{
				{snap: tableSnapshot{leases: []lease{{shardID: "s1", owner: "b", counter: 3, checkpoint: trim}}, workers: beats("me", "b")}},
				{snap: tableSnapshot{leases: []lease{{shardID: "s1", owner: "b", counter: 3, checkpoint: trim}}, workers: beats("me", "b")}, listed: ld + time.Millisecond, moved: true},
			},
			want: decisions{live: []string{"b", "me"}, expired: map[string]int64{}},
		},
		{
			name: "what a scanner published as expired is expired without watching it, and the dead worker's leases with it",
			passes: []pass{{snap: tableSnapshot{
				leases:  []lease{{shardID: "s1", owner: "b", counter: 3, checkpoint: trim}},
				workers: beats("me", "b"),
				group:   groupItem{present: true, expired: map[string]int64{workerKeyPrefix + "b": 1, "s1": 3}},
			}}},
			want: decisions{take: []string{"s1"}, live: []string{"me"}, expired: map[string]int64{workerKeyPrefix + "b": 1}},
		},
		{
			name: "a published expiry holds only at the counter judged",
			passes: []pass{{snap: tableSnapshot{
				leases:  []lease{{shardID: "s1", owner: "b", counter: 4, checkpoint: trim}},
				workers: map[string]workerBeat{"me": {counter: 1}, "b": {counter: 2}},
				group:   groupItem{present: true, expired: map[string]int64{workerKeyPrefix + "b": 1, "s1": 3}},
			}}},
			want: decisions{live: []string{"b", "me"}, expired: map[string]int64{}},
		},
		{
			name: "a worker that asked for a hand-off waits for it; stopping workers are not live",
			passes: []pass{{snap: tableSnapshot{
				leases:  []lease{{shardID: "s1", owner: "b", handoffTo: "me", counter: 3, checkpoint: trim}, {shardID: "s2", owner: "b", counter: 3, checkpoint: trim}},
				workers: map[string]workerBeat{"me": {counter: 1}, "b": {counter: 1}, "c": {counter: 1, stopping: true}},
			}}},
			want: decisions{live: []string{"b", "me"}, waiting: true},
		},
		{
			name: "a read that started within LeaseDuration keeps the owner alive, however late it returned",
			passes: []pass{
				{snap: tableSnapshot{leases: []lease{{shardID: "s1", owner: "b", counter: 3, checkpoint: trim}}, workers: beats("me", "b")}},
				{snap: tableSnapshot{leases: []lease{{shardID: "s1", owner: "b", counter: 3, checkpoint: trim}}, workers: beats("me", "b")}, listed: ld - time.Millisecond, now: 3 * ld},
			},
		},
		{
			name: "a heartbeat that changed restarts the observer's clock",
			passes: []pass{
				{snap: tableSnapshot{leases: []lease{{shardID: "s1", owner: "b", counter: 3, checkpoint: trim}}, workers: beats("me", "b")}},
				{snap: tableSnapshot{leases: []lease{{shardID: "s1", owner: "b", counter: 3, checkpoint: trim}}, workers: map[string]workerBeat{"me": {counter: 1}, "b": {counter: 2}}}, listed: ld + time.Second},
			},
		},
		{
			name: "a Java KCL owner (no heartbeat item) keeps a lease it renews, counts as a worker, and is never asked for a hand-off it would not make",
			passes: []pass{
				{snap: tableSnapshot{leases: []lease{{shardID: "s1", owner: "java", counter: 3, checkpoint: trim}, {shardID: "s2", owner: "java", counter: 7, checkpoint: trim}}, workers: beats("me")}},
				{snap: tableSnapshot{leases: []lease{{shardID: "s1", owner: "java", counter: 4, checkpoint: trim}, {shardID: "s2", owner: "java", counter: 8, checkpoint: trim}}, workers: beats("me")}, listed: ld + time.Second},
			},
		},
		{
			name: "a Java KCL lease not renewed for LeaseDuration is expired",
			passes: []pass{
				{snap: tableSnapshot{leases: []lease{{shardID: "s1", owner: "java", counter: 3, checkpoint: trim}}, workers: beats("me")}},
				{snap: tableSnapshot{leases: []lease{{shardID: "s1", owner: "java", counter: 3, checkpoint: trim}}, workers: beats("me")}, listed: ld + time.Second},
			},
			want: decisions{take: []string{"s1"}},
		},
		{
			name: "a held lease the table gives to another worker is lost",
			passes: []pass{{snap: tableSnapshot{
				leases:  []lease{{shardID: "s1", owner: "b", counter: 4, checkpoint: trim}, {shardID: "s2", owner: "me", counter: 1, checkpoint: trim}},
				workers: beats("me", "b"),
			}, held: []string{"s1", "s2"}}},
			want: decisions{lost: []string{"s1"}},
		},
		{
			name: "a live claimant of a held lease gets it handed off",
			passes: []pass{{snap: tableSnapshot{
				leases:  []lease{{shardID: "s1", owner: "me", counter: 1, checkpoint: trim, handoffTo: "b"}, {shardID: "s2", owner: "me", counter: 1, checkpoint: trim}},
				workers: beats("me", "b"),
			}, held: []string{"s1", "s2"}}},
			want: decisions{handoffs: map[string]string{"s1": "b"}},
		},
		{
			name: "a claim by a worker with no heartbeat, a stopping one, or the owner itself is cleared",
			passes: []pass{{snap: tableSnapshot{
				leases: []lease{
					{shardID: "s1", owner: "me", counter: 1, checkpoint: trim, handoffTo: "gone"},
					{shardID: "s2", owner: "me", counter: 1, checkpoint: trim, handoffTo: "stopping"},
					{shardID: "s3", owner: "me", counter: 1, checkpoint: trim, handoffTo: "me"},
				},
				workers: map[string]workerBeat{"me": {counter: 1}, "stopping": {counter: 1, stopping: true}},
			}, held: []string{"s1", "s2", "s3"}}},
			want: decisions{unclaim: []lease{
				{shardID: "s1", owner: "me", counter: 1, checkpoint: trim, handoffTo: "gone"},
				{shardID: "s2", owner: "me", counter: 1, checkpoint: trim, handoffTo: "stopping"},
				{shardID: "s3", owner: "me", counter: 1, checkpoint: trim, handoffTo: "me"},
			}},
		},
		{
			name: "a lease an earlier run of this worker ID owns is taken back, or passed on when asked for",
			passes: []pass{{snap: tableSnapshot{
				leases: []lease{
					{shardID: "s1", owner: "me", counter: 1, checkpoint: trim},
					{shardID: "s2", owner: "me", counter: 1, checkpoint: trim, handoffTo: "b"},
				},
				workers: beats("me", "b"),
			}, settled: true}},
			want: decisions{take: []string{"s1"}, pass: []lease{{shardID: "s2", owner: "me", counter: 1, checkpoint: trim, handoffTo: "b"}}},
		},
		{
			name: "until this process has beaten for LeaseDuration, leases of its WorkerID it does not read may be a live twin's: left alone",
			passes: []pass{{snap: tableSnapshot{
				leases: []lease{
					{shardID: "s1", owner: "me", counter: 1, checkpoint: trim},
					{shardID: "s2", owner: "me", counter: 1, checkpoint: trim, handoffTo: "b"},
				},
				workers: beats("me", "b"),
			}}},
		},
		{
			name: "a child waits for every parent to end; a parent with no lease left the stream",
			passes: []pass{{snap: tableSnapshot{
				leases: []lease{
					{shardID: "p1", owner: "b", counter: 1, checkpoint: at("123")},
					{shardID: "p2", checkpoint: at(checkpointShardEnd)},
					{shardID: "c1", checkpoint: trim, parents: []string{"p1", "p2"}},
					{shardID: "c2", checkpoint: trim, parents: []string{"p2", "trimmed"}},
				},
				workers: beats("me", "b"),
			}}},
			want: decisions{take: []string{"c2"}},
		},
		{
			name: "a stopping worker is not counted, and its leases are not asked for",
			passes: []pass{{snap: tableSnapshot{
				leases: []lease{
					{shardID: "s1", owner: "b", counter: 1, checkpoint: trim},
					{shardID: "s2", owner: "b", counter: 1, checkpoint: trim},
				},
				workers: map[string]workerBeat{"me": {counter: 1}, "b": {counter: 1, stopping: true}},
			}}},
		},
		{
			// Such a table is refused at start (checkLayout, see
			// TestStreamsAndSingleStreamTablesNeverMix); assess never takes
			// the lease of a stream it does not read in any case.
			name: "single stream: a lease of the Java KCL's multi-stream layout is not a shard of this stream: never taken",
			passes: []pass{{snap: tableSnapshot{
				leases:  []lease{{shardID: "123456789012:orders:1700000000:shardId-000000000000", checkpoint: trim}},
				workers: beats("me"),
			}}},
		},
		{
			name: "several streams: leases of every stream read count for the fair share; a stream not read is left alone",
			passes: []pass{{snap: tableSnapshot{
				leases: []lease{
					{shardID: "1:orders:7:s1", owner: "b", counter: 1, checkpoint: trim},
					{shardID: "1:orders:7:s2", owner: "b", counter: 1, checkpoint: trim},
					{shardID: "1:payments:8:s1", owner: "b", counter: 1, checkpoint: trim},
					{shardID: "1:payments:8:s2", owner: "b", counter: 1, checkpoint: trim},
					{shardID: "1:gone:9:s1", checkpoint: trim},
					{shardID: "1:gone:9:s2", owner: "me", counter: 1, checkpoint: trim},
				},
				workers: beats("me", "b"),
			}, settled: true, streams: []string{"1:orders:7", "1:payments:8"}}},
			want: decisions{claim: []string{"1:orders:7:s1", "1:orders:7:s2"}},
		},
		{
			name: "several streams: a child waits for its parent of the same stream, not for a shard of that ID in another",
			passes: []pass{{snap: tableSnapshot{
				leases: []lease{
					{shardID: "1:orders:7:s1", checkpoint: trim},
					{shardID: "1:orders:7:s2", checkpoint: trim, parents: []string{"1:orders:7:s1"}},
					{shardID: "1:payments:8:s1", checkpoint: at(checkpointShardEnd)},
				},
				workers: beats("me"),
			}, streams: []string{"1:orders:7", "1:payments:8"}}},
			want: decisions{take: []string{"1:orders:7:s1"}},
		},
		{
			name: "items kcl does not understand change nothing",
			passes: []pass{{snap: tableSnapshot{
				leases:  []lease{{shardID: "s1", owner: "me", counter: 1, checkpoint: trim}},
				workers: beats("me"),
				bad:     []error{assert.AnError},
			}, held: []string{"s1"}}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			seen := map[string]observation{}
			var d decisions
			for _, p := range tc.passes {
				held := map[string]bool{}
				for _, id := range p.held {
					held[id] = true
				}
				now := p.now
				if now == 0 {
					now = p.listed
				}
				claimed := map[string]bool{}
				for _, id := range p.claimed {
					claimed[id] = true
				}
				var ours func(string) bool
				if p.streams != nil {
					ours = func(key string) bool { id, _ := splitLeaseKey(key); return slices.Contains(p.streams, id) }
				}
				in := assessInput{me: "me", snap: p.snap, held: held, listed: t0.Add(p.listed), now: t0.Add(now), leaseDuration: ld, settled: p.settled, claimed: claimed, confirmed: map[string]int64{}, ours: ours}
				if p.moved {
					d = assess(in, seen)
				} else {
					d = assessConfirming(in, seen)
				}
			}
			sameOrOneOf := func(want, got []string, what string) {
				if len(want) == 1 && want[0] == "?" {
					assert.Len(t, got, 1, what)
					return
				}
				slices.Sort(got)
				assert.Equal(t, want, got, what)
			}
			sameOrOneOf(tc.want.take, d.take, "take")
			sameOrOneOf(tc.want.claim, d.claim, "claim")
			assert.Equal(t, tc.want.lost, d.lost, "lost")
			if tc.want.handoffs == nil {
				tc.want.handoffs = map[string]string{}
			}
			assert.Equal(t, tc.want.handoffs, d.handoffs, "handoffs")
			assert.Equal(t, tc.want.pass, d.pass, "pass")
			assert.Equal(t, tc.want.unclaim, d.unclaim, "unclaim")
			if tc.want.expired != nil {
				assert.Equal(t, tc.want.expired, d.expired, "expired")
			}
			if tc.want.live != nil {
				assert.Equal(t, tc.want.live, d.live, "live")
			}
			assert.Equal(t, tc.want.waiting, d.waiting, "waiting")
		})
	}
}

// The digest is what scanners compare to decide whether to publish: the same
// view gives the same digest whatever the order, and any change other
// workers act on changes it.
func TestDigest(t *testing.T) {
	shares := []shareLease{{shardID: "s1", owner: "a"}, {shardID: "s2", owner: "b", claimant: "c"}}
	base := digest([]string{"a", "b"}, nil, map[string]int64{"kcl-worker:x": 3}, shares)
	assert.Equal(t, base, digest([]string{"a", "b"}, nil, map[string]int64{"kcl-worker:x": 3}, []shareLease{shares[1], shares[0]}), "order of leases")
	for name, other := range map[string]string{
		"a worker joins":       digest([]string{"a", "b", "c"}, nil, map[string]int64{"kcl-worker:x": 3}, shares),
		"a worker stops":       digest([]string{"a"}, []string{"b"}, map[string]int64{"kcl-worker:x": 3}, shares),
		"another expiry":       digest([]string{"a", "b"}, nil, map[string]int64{"kcl-worker:x": 4}, shares),
		"a lease changes hand": digest([]string{"a", "b"}, nil, map[string]int64{"kcl-worker:x": 3}, []shareLease{{shardID: "s1", owner: "b"}, shares[1]}),
		"a claim":              digest([]string{"a", "b"}, nil, map[string]int64{"kcl-worker:x": 3}, []shareLease{{shardID: "s1", owner: "a", claimant: "b"}, shares[1]}),
	} {
		assert.NotEqual(t, base, other, name)
	}
}

// assessConfirming runs assess as balance does when a consistent read of
// every suspect finds its counter unchanged: once more, with the suspects
// confirmed. in.confirmed must not be nil.
func assessConfirming(in assessInput, seen map[string]observation) decisions {
	d := assess(in, seen)
	if len(d.suspects) > 0 {
		maps.Copy(in.confirmed, d.suspects)
		d = assess(in, seen)
	}
	return d
}
