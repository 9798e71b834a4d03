package kcl

import (
	"math/rand/v2"
	"slices"
)

// shareLease is what the balancer needs to know of one lease that may be
// read now (not ended, parents done).
type shareLease struct {
	shardID   string
	owner     string // live owner, or "" when unowned or its owner is dead
	claimant  string // live worker a hand-off was asked for, or ""
	heldByMe  bool   // this worker is reading it
	ownedByMe bool   // the table names this worker as owner
}

// holder is whom the lease counts for: the claimant once a hand-off is asked.
func (l shareLease) holder() string {
	if l.claimant != "" {
		return l.claimant
	}
	return l.owner
}

// fairShare returns the least and most leases each of workers should hold
// for shards leases, capped by max (0: no cap).
func fairShare(shards, workers, max int) (low, high int) {
	if workers < 1 {
		workers = 1
	}
	low, high = shards/workers, (shards+workers-1)/workers
	if max > 0 {
		low, high = min(low, max), min(high, max)
	}
	return low, high
}

// planTakes decides, for worker me among the live workers, which leases to
// take now (free ones, and its own that it does not read yet) and from which
// it asks a hand-off (held by the most loaded workers), so that every worker
// ends with its fair share. A worker takes all it needs in one pass. Workers
// never move a lease between two workers whose loads differ by less than 2,
// so a fair assignment is stable.
func planTakes(me string, workers []string, leases []shareLease, max int) (take, claim []string) {
	_, high := fairShare(len(leases), len(workers), max)
	load := map[string]int{}
	for _, w := range workers {
		load[w] = 0
	}
	var free []string
	for _, l := range leases {
		switch {
		case l.ownedByMe && !l.heldByMe && l.claimant == "":
			take = append(take, l.shardID)
			load[me]++
		case l.holder() == "":
			free = append(free, l.shardID)
		default:
			load[l.holder()]++
		}
	}
	// Free leases are taken in random order, so that workers starting
	// together rarely race for the same ones.
	rand.Shuffle(len(free), func(i, j int) { free[i], free[j] = free[j], free[i] })
	for _, id := range free {
		if load[me] >= high {
			break
		}
		take = append(take, id)
		load[me]++
	}
	for load[me] < high {
		victim := ""
		for _, w := range workers {
			if w != me && (victim == "" || load[w] > load[victim] || load[w] == load[victim] && w < victim) {
				victim = w
			}
		}
		if victim == "" || load[victim]-load[me] < 2 {
			break
		}
		i := slices.IndexFunc(leases, func(l shareLease) bool {
			return l.owner == victim && l.claimant == "" && !slices.Contains(claim, l.shardID)
		})
		if i < 0 {
			break
		}
		claim = append(claim, leases[i].shardID)
		load[victim]--
		load[me]++
	}
	return take, claim
}
