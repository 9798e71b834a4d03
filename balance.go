package kcl

import (
	"math/rand/v2"
	"slices"
	"time"

	"github.com/kclgo/kcl/internal/leaseitem"
)

// assessInput is what one pass of the lease loop knows: the table as just
// read, the leases this worker reads, and when.
type assessInput struct {
	me            string
	snap          tableSnapshot
	held          map[string]bool // shards this worker reads
	listed        time.Time       // when the read of the table started
	now           time.Time       // when it returned
	leaseDuration time.Duration
	maxLeases     int
	// claimed: shards this process asked a hand-off of; one handed to it is
	// its own, settled or not.
	claimed map[string]bool
	// confirmed: heartbeats and leases a consistent read found unchanged
	// after assess suspected them (decisions.suspects), with their counters.
	confirmed map[string]int64
	// settled: this process has beaten for longer than LeaseDuration, so a
	// lease the table gives to its WorkerID that it does not read is an
	// earlier run's, not a live twin's (heartbeat.settled).
	settled bool
	// ours reports whether a lease key is of a stream this worker reads
	// (Consumer.ours); the others are left alone. Nil: a single stream, whose
	// lease keys are shard IDs.
	ours func(key string) bool
}

// decisions is what assess decides; balance carries them out.
type decisions struct {
	byShard  map[string]lease
	lost     []string          // held leases the table gives to another worker
	handoffs map[string]string // held shard -> live claimant to hand it to
	pass     []lease           // owned by an earlier run of this worker ID, not read here, asked for: pass to the claimant
	unclaim  []lease           // owned by this worker, claimed by a worker that is gone, stopping or the owner
	take     []string
	claim    []string

	// For the group (group.go).
	live    []string         // live workers that are not stopping, this one included, sorted
	expired map[string]int64 // heartbeats and leases expired, with their counters
	// suspects are heartbeats and leases seen unchanged for leaseDuration,
	// which a read that may be stale cannot tell: expired once a consistent
	// read confirms their counters (assessInput.confirmed).
	suspects map[string]int64
	digest   string // of what other workers act on
	waiting  bool   // this worker waits for a hand-off it asked for
}

// acted reports whether the pass decided anything to do.
func (d decisions) acted() bool {
	return len(d.lost)+len(d.handoffs)+len(d.pass)+len(d.unclaim)+len(d.take)+len(d.claim) > 0
}

// assess decides what this worker does about one read of the lease table.
// It is pure but for seen, the observations of counters it keeps across
// passes (updated here when judge is set): a worker's heartbeat or a lease's
// counter seen unchanged for leaseDuration is expired. The clock of an
// observation starts when this worker first sees the value (after the read,
// so no earlier than the write). A read of the whole table may be stale, so
// what it finds unchanged is only a suspect; a consistent read of the item
// that still finds its counter confirms it (balance). That read starts after
// the observation is leaseDuration old, so the owner's own delivery deadline
// (pause.go), counted from before its last beat was sent, always comes
// first. What a scanner published as expired, with the counter the item
// still has, is expired too.
func assess(in assessInput, seen map[string]observation) decisions {
	me := in.me
	published := in.snap.group.expired
	// status says whether the item at key is expired (published or
	// confirmed at this counter) or a suspect.
	status := func(key string, counter int64, owner string) (expired, suspect bool) {
		if n, ok := published[key]; ok && n == counter {
			return true, false
		}
		if n, ok := in.confirmed[key]; ok && n == counter {
			return true, false
		}
		obs, ok := seen[key]
		if !ok || obs.counter != counter || obs.owner != owner {
			obs = observation{counter: counter, owner: owner, since: in.now}
			seen[key] = obs
		}
		return false, in.listed.Sub(obs.since) > in.leaseDuration
	}
	ours := in.ours
	if ours == nil {
		ours = func(key string) bool { return !multiStreamKey(key) }
	}
	d := decisions{byShard: make(map[string]lease, len(in.snap.leases)), handoffs: map[string]string{}, expired: map[string]int64{}, suspects: map[string]int64{}}
	workerAlive := map[string]bool{me: true}
	stopping := map[string]bool{}
	var stoppingIDs []string
	workers := []string{me}
	for id, w := range in.snap.workers {
		if id == me {
			continue
		}
		expired, suspect := status(workerKeyPrefix+id, w.counter, "")
		if expired {
			d.expired[workerKeyPrefix+id] = w.counter
			continue
		}
		if suspect {
			d.suspects[workerKeyPrefix+id] = w.counter // alive until confirmed
		}
		workerAlive[id] = true
		stopping[id] = w.stopping
		if w.stopping {
			stoppingIDs = append(stoppingIDs, id)
		} else {
			workers = append(workers, id)
		}
	}
	slices.Sort(workers[1:]) // map order must not decide anything
	slices.Sort(stoppingIDs)
	d.live = slices.Sorted(slices.Values(workers))
	for _, l := range in.snap.leases {
		d.byShard[l.shardID] = l
	}
	var shares []shareLease
	for _, l := range in.snap.leases {
		// A lease whose owner beats is expired when its owner is: the owner
		// stopped delivering before anyone could judge it dead (pause.go),
		// and a take is fenced on the lease's counter, so a checkpoint it
		// still writes makes the take fail. The lease of an owner without a
		// heartbeat item (a Java KCL worker, which renews its leases) is
		// expired when its own counter is: seen unchanged for leaseDuration
		// and confirmed, or published.
		expired, suspect := status(l.shardID, l.counter, l.owner)
		_, ownerBeats := in.snap.workers[l.owner]
		leaseFresh := !expired
		if suspect && (l.owner != "" && l.owner != me && !ownerBeats || l.checkpointOwner != "") {
			d.suspects[l.shardID] = l.counter
		}
		held := in.held[l.shardID]
		if held && (l.owner != me || l.checkpointOwner != "") { // checkpointOwner: someone began a Java hand-off of it
			// The read may be stale: balance makes sure before it forgets
			// the lease; until then it is this worker's, and never one to
			// take again.
			d.lost = append(d.lost, l.shardID)
			l.owner = me
		}
		// A Java KCL 3.x graceful hand-off (checkpointOwner, the old owner,
		// reads the shard and renews the lease until it passes the lease to
		// owner): left alone while the lease's counter moves. A heartbeat
		// under the old owner's name says nothing (a kcl worker of that name
		// never finishes a Java hand-off). Once the counter stood still for
		// LeaseDuration, the lease is the owner's as usual, and a take
		// removes checkpointOwner.
		if l.checkpointOwner != "" && leaseFresh {
			continue
		}
		if l.checkpoint.shardEnd() || !parentsDone(l, d.byShard) || !ours(l.shardID) {
			continue
		}
		if l.owner == me && !held && !in.settled && !in.claimed[l.shardID] {
			continue // perhaps a live twin's: left alone until settled
		}
		owner := l.owner
		if owner != "" && owner != me && (leaseitem.Liveness{Owner: owner, CheckpointOwner: l.checkpointOwner, OwnerBeats: ownerBeats, OwnerLive: workerAlive[owner], LeaseLive: leaseFresh}).Alive() != owner {
			owner = "" // expired
			if !ownerBeats {
				d.expired[l.shardID] = l.counter
			}
		}
		if l.handoffTo == me && l.owner != me {
			d.waiting = true
		}
		if !slices.Contains(workers, owner) && owner != "" {
			// A live owner that is stopping, or one without a heartbeat
			// item (a Java KCL worker): counted as a worker of its own.
			if _, beats := in.snap.workers[owner]; !beats {
				workers = append(workers, owner)
			}
		}
		claimant := l.handoffTo
		if owner == "" || l.checkpointOwner != "" {
			// Nobody to hand it over: it is free for any worker to take; or
			// a Java hand-off whose old owner died: its owner takes it.
			claimant = ""
		} else if claimant != "" && (!workerAlive[claimant] || stopping[claimant] || claimant == owner) {
			// Gone, stopping (it would not read the shard), or the owner.
			if owner == me {
				d.unclaim = append(d.unclaim, l)
			}
			claimant = ""
		}
		switch {
		case held && claimant != "":
			d.handoffs[l.shardID] = claimant
		case l.owner == me && !held && claimant != "":
			// Owned by an earlier run of this worker ID, and asked for:
			// nothing of it is delivered here, so it goes to the claimant.
			d.pass = append(d.pass, l)
		}
		shares = append(shares, shareLease{shardID: l.shardID, owner: owner, claimant: claimant, heldByMe: held, ownedByMe: l.owner == me, claimable: ownerBeats && l.checkpointOwner == ""})
	}
	d.take, d.claim = planTakes(me, workers, shares, in.maxLeases)
	d.digest = digest(d.live, stoppingIDs, d.expired, shares)
	return d
}

// shareLease is what the balancer needs to know of one lease that may be
// read now (not ended, parents done).
type shareLease struct {
	shardID   string
	owner     string // live owner, or "" when unowned or its owner is dead
	claimant  string // live worker a hand-off was asked for, or ""
	heldByMe  bool   // this worker is reading it
	ownedByMe bool   // the table names this worker as owner
	claimable bool   // its owner is a kcl worker, which hands a lease off when asked
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
		claimable := func(l shareLease) bool { return l.claimable && l.claimant == "" && !slices.Contains(claim, l.shardID) }
		victim := ""
		for _, w := range workers {
			asked := slices.ContainsFunc(leases, func(l shareLease) bool { return l.owner == w && claimable(l) })
			if w != me && asked && (victim == "" || load[w] > load[victim] || load[w] == load[victim] && w < victim) {
				victim = w
			}
		}
		if victim == "" || load[victim]-load[me] < 2 {
			break
		}
		i := slices.IndexFunc(leases, func(l shareLease) bool { return l.owner == victim && claimable(l) })
		if i < 0 {
			break
		}
		claim = append(claim, leases[i].shardID)
		load[victim]--
		load[me]++
	}
	return take, claim
}
