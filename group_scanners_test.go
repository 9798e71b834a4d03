package kcl

import (
	"context"
	"testing"
	"time"
)

// Both scanners die together: the others notice that the group's scans
// counter stopped, judge the scanners dead themselves, and take their leases
// (about twice LeaseDuration; it once took two judgeIntervals).
func TestBothScannersDyingTogether(t *testing.T) {
	const ld = 300 * time.Millisecond
	ctx := context.Background()
	tbl := newMemLeases()
	ids := []string{"a", "b", "c", "d"}
	g := newHandDrivenGroup(t, ld)
	for _, id := range ids {
		g.add(tbl, id)
	}
	for i := range 8 {
		tbl.create(ctx, lease{shardID: "s" + string(rune('0'+i)), checkpoint: checkpoint{seq: checkpointTrimHorizon}})
	}
	alive := ids
	for end := time.Now().Add(5 * ld); time.Now().Before(end); {
		g.step(ctx, alive...)
	}
	snap, _ := tbl.list(ctx, true)
	own := map[string]int{}
	for _, l := range snap.leases {
		own[l.owner]++
	}
	t.Logf("before the crash: %v; scanners: a=%v b=%v c=%v d=%v", own, g.cs["a"].keeper.scanner, g.cs["b"].keeper.scanner, g.cs["c"].keeper.scanner, g.cs["d"].keeper.scanner)
	alive = []string{"c", "d"} // a and b, the scanners, die
	crash := time.Now()
	// About 2 LeaseDuration by design (the scans counter seen still for one,
	// then the scanners' heartbeats for one); the bound only tells that
	// apart from the others' periodic read (judgeInterval) doing the work.
	for time.Since(crash) < 3*ld {
		g.step(ctx, alive...)
		snap, _ := tbl.list(ctx, true)
		left := 0
		for _, l := range snap.leases {
			if l.owner == "a" || l.owner == "b" {
				left++
			}
		}
		if left == 0 {
			t.Logf("every lease of a and b taken %.1f LeaseDuration after the crash", float64(time.Since(crash))/float64(ld))
			return
		}
	}
	t.Errorf("leases of a and b not taken within 3 LeaseDuration")
}
