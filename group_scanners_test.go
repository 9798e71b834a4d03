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
	cs := map[string]*Consumer{}
	for _, id := range ids {
		cs[id] = handDrivenWorker(t, tbl, id, ld)
	}
	for i := range 8 {
		tbl.create(ctx, lease{shardID: "s" + string(rune('0'+i)), checkpoint: checkpoint{seq: checkpointTrimHorizon}})
	}
	lastBeat := map[string]time.Time{}
	dead := map[string]bool{}
	step := func() {
		for _, id := range ids {
			if dead[id] {
				continue
			}
			c := cs[id]
			if time.Since(lastBeat[id]) >= ld/2 {
				if err := c.beat.beat(ctx); err != nil {
					t.Fatal(err)
				}
				lastBeat[id] = time.Now()
			}
			if err := c.keeper.pass(ctx); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(ld / 10)
	}
	for end := time.Now().Add(5 * ld); time.Now().Before(end); {
		step()
	}
	snap, _ := tbl.list(ctx, true)
	own := map[string]int{}
	for _, l := range snap.leases {
		own[l.owner]++
	}
	t.Logf("before the crash: %v; scanners: a=%v b=%v c=%v d=%v", own, cs["a"].keeper.scanner, cs["b"].keeper.scanner, cs["c"].keeper.scanner, cs["d"].keeper.scanner)
	dead["a"], dead["b"] = true, true
	crash := time.Now()
	// About 2 LeaseDuration by design (the scans counter seen still for one,
	// then the scanners' heartbeats for one); the bound only tells that
	// apart from judgeInterval (4 LeaseDuration) doing the work.
	for time.Since(crash) < 3*ld {
		step()
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
