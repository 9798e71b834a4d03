package kcl

import (
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestFairShare(t *testing.T) {
	tests := []struct{ shards, workers, max, low, high int }{
		{8, 4, 0, 2, 2},
		{8, 3, 0, 2, 3},
		{1, 4, 0, 0, 1},
		{0, 2, 0, 0, 0},
		{10, 1, 0, 10, 10},
		{10, 1, 4, 4, 4},
		{7, 0, 0, 7, 7},
	}
	for _, tt := range tests {
		low, high := fairShare(tt.shards, tt.workers, tt.max)
		assert.Equal(t, []int{tt.low, tt.high}, []int{low, high}, "%+v", tt)
	}
}

// leasesOwned builds n leases owned as owners says: owners[i] owns counts[i].
func leasesOwned(me string, owners []string, counts []int) []shareLease {
	var ls []shareLease
	for i, o := range owners {
		for range counts[i] {
			ls = append(ls, shareLease{shardID: fmt.Sprintf("shard-%03d", len(ls)), owner: o, ownedByMe: o == me && o != "", heldByMe: o == me && o != ""})
		}
	}
	return ls
}

func TestPlanTakes(t *testing.T) {
	tests := []struct {
		name              string
		workers           []string
		owners            []string // "" = free
		counts            []int
		max               int
		wantTake, wantClm int
	}{
		{"alone takes every free lease in one pass", []string{"me"}, []string{""}, []int{8}, 0, 8, 0},
		{"a cap limits what is taken", []string{"me"}, []string{""}, []int{8}, 3, 3, 0},
		{"two starting together take half each", []string{"me", "b"}, []string{""}, []int{8}, 0, 4, 0},
		{"three workers, 8 shards: at most 3", []string{"me", "b", "c"}, []string{""}, []int{8}, 0, 3, 0},
		{"a joiner asks the loaded workers for its share", []string{"me", "b", "c", "d"}, []string{"b", "c", "d"}, []int{3, 3, 2}, 0, 0, 2},
		{"a fair assignment is left alone", []string{"me", "b", "c"}, []string{"me", "b", "c"}, []int{3, 3, 2}, 0, 0, 0},
		{"a difference of one is fair", []string{"me", "b"}, []string{"me", "b"}, []int{3, 4}, 0, 0, 0},
		{"free leases before claims", []string{"me", "b"}, []string{"b", ""}, []int{6, 2}, 0, 2, 2},
		{"one joiner among one holder of all", []string{"me", "b"}, []string{"b"}, []int{9}, 0, 0, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			take, claim := planTakes("me", tt.workers, leasesOwned("me", tt.owners, tt.counts), tt.max)
			assert.Len(t, take, tt.wantTake)
			assert.Len(t, claim, tt.wantClm)
		})
	}
}

func TestPlanTakesConvergesToFairShareFromAnyStart(t *testing.T) {
	// Simulate rounds where each worker plans on the same table and hand-offs
	// complete between rounds: every worker ends within [low, high].
	workers := []string{"a", "b", "c", "d", "e"}
	owner := map[string]string{}
	for i := range 23 {
		owner[fmt.Sprintf("s%02d", i)] = "a" // one worker held everything
	}
	for round := range 6 {
		for _, w := range workers {
			var ls []shareLease
			for _, id := range slices.Sorted(maps.Keys(owner)) {
				ls = append(ls, shareLease{shardID: id, owner: owner[id], ownedByMe: owner[id] == w, heldByMe: owner[id] == w})
			}
			take, claim := planTakes(w, workers, ls, 0)
			for _, id := range append(take, claim...) {
				owner[id] = w // a claim is handed over before the next round
			}
		}
		_ = round
	}
	counts := map[string]int{}
	for _, o := range owner {
		counts[o]++
	}
	low, high := fairShare(23, 5, 0)
	for _, w := range workers {
		assert.GreaterOrEqual(t, counts[w], low, "worker %s", w)
		assert.LessOrEqual(t, counts[w], high, "worker %s", w)
	}
}
