package kcl

import (
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
			ls = append(ls, shareLease{shardID: fmt.Sprintf("shard-%03d", len(ls)), owner: o, ownedByMe: o == me && o != "", heldByMe: o == me && o != "", claimable: o != ""})
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
		{"a Java KCL worker is never asked: it does not hand off", []string{"me", "java"}, []string{"java"}, []int{9}, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leases := leasesOwned("me", tt.owners, tt.counts)
			for i := range leases {
				leases[i].claimable = leases[i].claimable && leases[i].owner != "java"
			}
			take, claim := planTakes("me", tt.workers, leases, tt.max)
			assert.Len(t, take, tt.wantTake)
			assert.Len(t, claim, tt.wantClm)
		})
	}
}

func TestPlanTakesConvergesToFairShareFromAnyStart(t *testing.T) {
	// Rounds in which each worker in turn plans on the table as it is then:
	// a take makes it the owner at once; a claim only sets the claimant (as
	// the conditional handoffTo write does, on a lease nobody claimed), and
	// the owner passes the lease on one round later, so other workers plan
	// meanwhile on leases that are claimed but not yet handed over. Every
	// worker ends within [low, high], and then nothing moves.
	workers := []string{"a", "b", "c", "d", "e"}
	type state struct {
		owner, claimant string
		claimedIn       int // the round of the claim
	}
	table := map[string]*state{}
	for i := range 23 {
		table[fmt.Sprintf("s%02d", i)] = &state{owner: "a"} // one worker held everything
	}
	ids := slices.Sorted(maps.Keys(table))
	low, high := fairShare(23, 5, 0)
	fair := func() bool {
		counts := map[string]int{}
		for _, l := range table {
			counts[l.owner]++
		}
		for _, w := range workers {
			if counts[w] < low || counts[w] > high {
				return false
			}
		}
		return true
	}
	fairAt, claims := -1, 0
	for round := 0; round < 12; round++ {
		// Hand-offs asked for in an earlier round complete now.
		for _, l := range table {
			if l.claimant != "" && l.claimedIn < round {
				l.owner, l.claimant = l.claimant, ""
			}
		}
		moved := false
		for _, w := range workers {
			var ls []shareLease
			for _, id := range ids {
				l := table[id]
				ls = append(ls, shareLease{shardID: id, owner: l.owner, claimant: l.claimant, ownedByMe: l.owner == w, heldByMe: l.owner == w, claimable: l.owner != ""})
			}
			take, claim := planTakes(w, workers, ls, 0)
			for _, id := range take {
				l := table[id]
				assert.True(t, l.owner == "" || l.owner == w, "round %d: %s takes %s owned by %s", round, w, id, l.owner)
				l.owner = w
				moved = true
			}
			for _, id := range claim {
				l := table[id]
				assert.Empty(t, l.claimant, "round %d: %s claims %s, already claimed by %s", round, w, id, l.claimant)
				assert.NotEqual(t, w, l.owner, "round %d: %s claims its own lease %s", round, w, id)
				l.claimant, l.claimedIn = w, round
				claims++
				moved = true
			}
		}
		if fairAt < 0 && !moved && fair() {
			fairAt = round
		}
		if fairAt >= 0 {
			assert.False(t, moved, "round %d: a lease moved after the fair share was reached in round %d", round, fairAt)
		}
	}
	require.GreaterOrEqual(t, fairAt, 0, "no fair share within 12 rounds: %v", table)
	kept := 0
	for _, l := range table {
		if l.owner == "a" {
			kept++
		}
	}
	assert.Equal(t, 23-kept, claims, "each hand-off moves a lease off the loaded worker once: no churn")
	t.Logf("fair share after %d rounds, %d hand-offs", fairAt, claims)
}
