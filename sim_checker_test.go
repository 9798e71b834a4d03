package kcl

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestSimChecker feeds the simulation's invariant checker hand-made logs:
// a clean one, whose duplicates it must classify, and one per kind of
// violation, each of which it must report.
func TestSimChecker(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	seq := func(n int) string { return fmt.Sprintf("49%054d", n) }
	put := func(n int, key, shard string) simPut {
		return simPut{Data: fmt.Sprintf("%s:%d", key, n), Key: key, Shard: shard, Seq: seq(n), Arrival: at(n), Owed: true}
	}
	del := func(worker string, window, index int, p simPut, atMs, ackMs int) simDelivery {
		d := simDelivery{Worker: worker, ID: strings.Split(worker, "#")[0], Window: window, Index: index, Shard: p.Shard, Seq: p.Seq, Data: p.Data, Key: p.Key, At: at(atMs)}
		if ackMs >= 0 {
			d.AckedAt = at(ackMs)
		}
		return d
	}
	take := func(ms int, shard, by string) simWrite {
		return simWrite{At: at(ms), Shard: shard, Op: "take", By: by, Owner: by}
	}
	cp := func(ms int, shard, by, owner string, n int) simWrite {
		return simWrite{At: at(ms), Shard: shard, Op: "checkpoint", By: by, Owner: owner, CP: checkpoint{seq: seq(n)}}
	}

	// A clean log: shard A read by w1, which acks 1 (checkpointed) and 2,
	// leaves 3 unacked, and is frozen (outage) at 250 ms; w2 takes A at
	// 1000 ms from the checkpoint at 1 and delivers 2 (class b: acked 20 ms
	// before the outage) and 3 (class a). Shard B: w3 hands B over while 11 sits in its
	// buffer, and delivers it after w2 already did (class c). Key k1 moves
	// from A to B in order.
	p1, p2, p3 := put(1, "k1", "A"), put(2, "k2", "A"), put(3, "k3", "A")
	p10, p11 := put(10, "k1", "B"), put(11, "k2", "B")
	clean := simLog{
		Puts: []simPut{p1, p2, p3, p10, p11},
		Deliveries: []simDelivery{
			del("w1#1", 1, 0, p1, 100, 110),
			del("w1#1", 1, 1, p2, 120, 230),
			del("w1#1", 1, 2, p3, 200, -1),
			del("w2#1", 2, 0, p2, 1100, 1110),
			del("w2#1", 2, 1, p3, 1120, 1130),
			del("w2#1", 3, 2, p11, 1300, 1310),
			del("w3#1", 4, 0, p10, 1250, 1260),
			del("w3#1", 4, 1, p11, 1400, 1410), // after the hand-off at 1280
		},
		Writes: []simWrite{
			take(50, "A", "w1"), cp(150, "A", "w1", "w1", 1), take(1000, "A", "w2"),
			take(1200, "B", "w3"), cp(1280, "B", "w3", "w2", 10), take(1290, "B", "w2"),
		},
		Outages:  []simOutage{{Worker: "w1#1", From: at(250), To: at(1500)}},
		Stops:    []simStop{{Worker: "w1#1", Graceful: true}},
		Bound:    4,
		LagBound: 300 * time.Millisecond,
	}
	rep := checkSim(&clean)
	if len(rep.Violations) != 0 {
		t.Fatalf("clean log: violations %q", rep.Violations)
	}
	want := map[string]int{dupUnacked: 1, dupLag: 1, dupStale: 1}
	for k, v := range want {
		if rep.Dups[k] != v {
			t.Errorf("duplicates %q: %d, want %d (all: %v)", k, rep.Dups[k], v, rep.Dups)
		}
	}

	cases := []struct {
		name string
		edit func(l *simLog)
		want string
	}{
		{"lost record", func(l *simLog) {
			l.Puts = append(l.Puts, put(12, "k9", "B"))
		}, "lost:"},
		{"trimmed unread record is excused", func(l *simLog) {
			p := put(12, "k9", "B")
			p.Trimmed = true
			l.Puts = append(l.Puts, p)
		}, ""},
		{"record not owed (Latest) is not required", func(l *simLog) {
			p := put(12, "k9", "B")
			p.Owed = false
			l.Puts = append(l.Puts, p)
		}, ""},
		{"key out of order across a reshard", func(l *simLog) {
			// k1's second record (in B) first delivered before its first (in A).
			l.Deliveries[0].At = at(1350)
			l.Deliveries[0].AckedAt = at(1360)
		}, "key order:"},
		{"unexplained duplicate: acked long before the lease moved", func(l *simLog) {
			l.Outages = nil // w1 could write its checkpoint for 800 ms and did not
		}, "duplicate:"},
		{"rewind: redelivered behind a checkpoint", func(l *simLog) {
			l.Writes[1] = cp(150, "A", "w1", "w1", 3) // checkpoint covered 3 before w2's take
		}, "rewind:"},
		{"order within one lease acquisition", func(l *simLog) {
			l.Deliveries[4].Index, l.Deliveries[3].Index = 0, 1 // w2 delivered 3 before 2
		}, "order:"},
		{"overlap: old owner delivers beyond the bound", func(l *simLog) {
			for i := range 6 {
				p := put(20+i, fmt.Sprintf("x%d", i), "B")
				l.Puts = append(l.Puts, p)
				l.Deliveries = append(l.Deliveries, del("w2#1", 3, 3+i, p, 1320+i, 1321+i))
				l.Deliveries = append(l.Deliveries, del("w3#1", 4, 2+i, p, 1450+i, 1451+i))
			}
		}, "overlap:"},
		{"stale beyond the bound", func(l *simLog) {
			for i := range 6 {
				p := put(20+i, fmt.Sprintf("x%d", i), "B")
				l.Puts = append(l.Puts, p)
				l.Deliveries = append(l.Deliveries, del("w3#1", 4, 2+i, p, 1450+i, 1451+i))
			}
		}, "stale:"},
		{"delivery without a take", func(l *simLog) {
			l.Writes = l.Writes[1:]
		}, "lease:"},
		{"phantom record", func(l *simLog) {
			l.Puts = l.Puts[:4]
		}, "phantom:"},
		{"error on a graceful stop", func(l *simLog) {
			l.Stops[0].Err = fmt.Errorf("kcl: boom")
		}, "err:"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := clean
			l.Puts = append([]simPut(nil), clean.Puts...)
			l.Deliveries = append([]simDelivery(nil), clean.Deliveries...)
			l.Writes = append([]simWrite(nil), clean.Writes...)
			l.Outages = append([]simOutage(nil), clean.Outages...)
			l.Stops = append([]simStop(nil), clean.Stops...)
			c.edit(&l)
			rep := checkSim(&l)
			if c.want == "" {
				if len(rep.Violations) != 0 {
					t.Fatalf("violations %q, want none", rep.Violations)
				}
				return
			}
			for _, v := range rep.Violations {
				if strings.HasPrefix(v, c.want) {
					t.Logf("reported: %s", v)
					return
				}
			}
			t.Fatalf("no %q violation; got %q", c.want, rep.Violations)
		})
	}
}
