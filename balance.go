package kcl

import (
	"math"
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
	// token and firstBeat are this process's writer token and the counter
	// of its first beat (0 before it): see twinWrote.
	token     string
	firstBeat int64
	// ours reports whether a lease key is of a stream this worker reads
	// (Consumer.ours); the others are left alone. Nil: a single stream, whose
	// lease keys are shard IDs.
	ours func(key string) bool
	// streamCreated is when the stream of a single-stream table was created
	// (Unix ms; 0: not known): a lease stamped earlier is an earlier
	// stream's (incarnation.go).
	streamCreated int64
}

// staleIncarnation reports whether l is a lease of an earlier stream of
// this name, in a single-stream table.
func (in assessInput) staleIncarnation(l lease) bool {
	return in.streamCreated != 0 && l.streamCreated != 0 && l.streamCreated < in.streamCreated
}

// decisions is what one pass decides (decide); apply carries them out.
type decisions struct {
	byShard  map[string]lease
	lost     []string          // held leases the table gives to another worker
	handoffs map[string]string // held shard -> live claimant to hand it to
	pass     []lease           // owned by an earlier run of this worker ID, not read here, asked for: pass to the claimant
	release  []lease           // owned by an earlier run of this worker ID, of a stream this worker does not read: give back
	replace  []lease           // of an earlier stream of this name (single-stream), read by nobody: replace by the stream's own
	unclaim  []lease           // owned by this worker, claimed by a worker that is gone, stopping or the owner
	take     []string
	claim    []string

	staleClaims []string         // hand-offs this process asked for that came to nothing: forget them
	deadWorkers map[string]int64 // heartbeats a scanner removes, with their counters (deadWorkers)

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
	return len(d.lost)+len(d.handoffs)+len(d.pass)+len(d.release)+len(d.replace)+len(d.unclaim)+len(d.take)+len(d.claim) > 0
}

// decide is what one pass does about one read of the lease table: assess's
// decisions, the claims to forget (staleClaims) and the heartbeat items a
// scanner removes (deadWorkers). It is pure but for seen (assess).
func decide(in assessInput, seen map[string]observation) decisions {
	d := assess(in, seen)
	d.staleClaims = staleClaims(in.me, in.claimed, d.byShard)
	d.deadWorkers = deadWorkers(in, seen)
	return d
}

// staleClaims returns the shards me asked a hand-off of (claimed) whose
// lease is gone, or neither names me as the claimant nor as the owner: the
// claim came to nothing.
func staleClaims(me string, claimed map[string]bool, byShard map[string]lease) []string {
	var stale []string
	for id := range claimed {
		if l, ok := byShard[id]; !ok || l.handoffTo != me && l.owner != me {
			stale = append(stale, id)
		}
	}
	return stale
}

// deadWorkers returns the workers, with their counters, whose heartbeat in
// has seen unchanged for three LeaseDurations and that own no lease: a
// scanner removes their items, so that crashed workers do not pile up in
// the table.
func deadWorkers(in assessInput, seen map[string]observation) map[string]int64 {
	owners := map[string]bool{}
	for _, l := range in.snap.leases {
		owners[l.owner] = true
	}
	dead := map[string]int64{}
	for id, w := range in.snap.workers {
		obs, ok := seen[workerKeyPrefix+id]
		if ok && obs.counter == w.counter && id != in.me && !owners[id] && in.now.Sub(obs.since) > 3*in.leaseDuration {
			dead[id] = w.counter
		}
	}
	return dead
}

// stillOwned reports whether a consistent read of a held lease (found: it
// exists) shows it still this worker's, me: no other owner, and no Java
// hand-off of it begun.
func stillOwned(l lease, found bool, me string) bool {
	return found && l.owner == me && l.checkpointOwner == ""
}

// tookEffect reports whether stored, read back after a take of l by w
// failed its condition, is what that take wrote: its reply was lost.
//
//   - The writer's token tells it from a take of another process with the
//     same WorkerID (a twin), which wrote the same owner and counter.
//   - The checkpoint, and the owner switches the take counted, tell it from
//     a checkpoint write of this process that landed late on the lease it
//     held before (it writes the same owner, counter and token).
func tookEffect(stored, l lease, w writer) bool {
	return stored.owner == w.id && stored.counter == l.counter+1 && stored.writer.token == w.token &&
		stored.checkpoint == l.checkpoint && stored.ownerSwitches == l.ownerSwitches+1
}

// latestSkew is how far before its first take a lease at LATEST starts for
// its later owners. The take reads Kinesis's clock (kinesisClock), which
// never runs ahead of Kinesis's own, so the start is never past where the
// first owner opened the shard, whatever this worker's clock says. The
// margin is for a KinesisAPI whose answers carry no Date, where this
// worker's clock stands in: ahead of Kinesis's by less than this, it loses
// nothing. Records written up to this long before the group first read the
// shard may be delivered when such a lease moves before its first
// checkpoint.
const latestSkew = time.Minute

// startTime returns the start to store in a lease still at cp when it is
// first taken, now (Kinesis's clock): a little before now for LATEST, the
// initial position's time for AT_TIMESTAMP, zero otherwise.
func startTime(cp checkpoint, now time.Time, initial Position) time.Time {
	switch {
	case cp.seq == checkpointLatest:
		return now.Add(-latestSkew)
	case cp.seq == checkpointAtTimestamp && initial.kind == positionAtTimestamp:
		return initial.timestamp
	}
	return time.Time{}
}

// observation is what this worker last saw of an item's counter, on its own
// clock.
type observation struct {
	counter int64
	owner   string
	since   time.Time
}

// assess decides what this worker does about one read of the lease table.
// It is pure but for seen, the observations of counters it keeps across
// passes.
//
//   - A worker's heartbeat or a lease's counter seen unchanged for
//     leaseDuration is a suspect. The clock of an observation starts when
//     this worker first sees the value (after the read, so no earlier than
//     the write).
//   - A read of the whole table may be stale, so a suspect is expired only
//     once a consistent read of the item still finds its counter
//     (leaseKeeper.confirm). That read starts after the observation is
//     leaseDuration old, so the owner's own delivery deadline (pause.go),
//     counted from before its last beat was sent, always comes first.
//   - What a scanner published as expired, with the counter the item still
//     has, is expired too.
func assess(in assessInput, seen map[string]observation) decisions {
	a := newAssessment(in, seen)
	a.judgeWorkers()
	for _, l := range in.snap.leases {
		a.d.byShard[l.shardID] = l
	}
	for _, l := range in.snap.leases {
		a.judgeLease(l)
	}
	a.d.take, a.d.claim = planTakes(in.me, a.workers, a.reads, a.shares, in.maxLeases)
	a.d.digest = digest(a.d.live, a.stoppingIDs, a.d.expired, a.shares)
	return a.d
}

// assessment is assess's work on one read.
type assessment struct {
	in   assessInput
	seen map[string]observation
	ours func(key string) bool
	d    decisions

	alive       map[string]bool // live workers, stopping or not, this one included
	stopping    map[string]bool // live workers by whether they stop
	stoppingIDs []string        // the live workers that stop, sorted
	// workers are those the leases are shared by: the live workers that do
	// not stop (this one first, the others sorted), then owners without a
	// heartbeat item (Java KCL workers) as their leases are met.
	workers []string
	shares  []shareLease    // the leases that may be read now, of every stream
	mine    map[string]bool // the streams of the leases in shares that this worker reads
}

func newAssessment(in assessInput, seen map[string]observation) *assessment {
	ours := in.ours
	if ours == nil {
		ours = func(key string) bool { return !multiStreamKey(key) }
	}
	return &assessment{
		in: in, seen: seen, ours: ours,
		d:     decisions{byShard: make(map[string]lease, len(in.snap.leases)), handoffs: map[string]string{}, expired: map[string]int64{}, suspects: map[string]int64{}},
		alive: map[string]bool{in.me: true}, stopping: map[string]bool{}, workers: []string{in.me}, mine: map[string]bool{},
	}
}

// status says whether the item at key is expired (published or confirmed
// at this counter) or a suspect, and notes what it sees in seen.
func (a *assessment) status(key string, counter int64, owner string) (expired, suspect bool) {
	in := a.in
	if n, ok := in.snap.group.expired[key]; ok && n == counter {
		return true, false
	}
	if n, ok := in.confirmed[key]; ok && n == counter {
		return true, false
	}
	obs, ok := a.seen[key]
	if !ok || obs.counter != counter || obs.owner != owner {
		obs = observation{counter: counter, owner: owner, since: in.now}
		a.seen[key] = obs
	}
	return false, in.listed.Sub(obs.since) > in.leaseDuration
}

// judgeWorkers sorts the other workers' heartbeats into expired, live and
// stopping.
func (a *assessment) judgeWorkers() {
	for id, w := range a.in.snap.workers {
		if id == a.in.me {
			continue
		}
		expired, suspect := a.status(workerKeyPrefix+id, w.counter, "")
		if expired {
			a.d.expired[workerKeyPrefix+id] = w.counter
			continue
		}
		if suspect {
			a.d.suspects[workerKeyPrefix+id] = w.counter // alive until confirmed
		}
		a.alive[id] = true
		a.stopping[id] = w.stopping
		if w.stopping {
			a.stoppingIDs = append(a.stoppingIDs, id)
		} else {
			a.workers = append(a.workers, id)
		}
	}
	slices.Sort(a.workers[1:]) // map order must not decide anything
	slices.Sort(a.stoppingIDs)
	a.d.live = slices.Sorted(slices.Values(a.workers))
}

// judgeLease decides about one lease: lost, a suspect, expired, to hand
// off, pass on or unclaim; and, if it may be read now, its share.
//
//   - A lease whose owner beats is expired when its owner is: the owner
//     stopped delivering before anyone could judge it dead (pause.go), and
//     a take is fenced on the lease's counter, so a checkpoint it still
//     writes makes the take fail.
//   - The lease of an owner without a heartbeat item (a Java KCL worker,
//     which renews its leases) is expired when its own counter is: seen
//     unchanged for leaseDuration and confirmed, or published.
func (a *assessment) judgeLease(l lease) {
	in, me := a.in, a.in.me
	expired, suspect := a.status(l.shardID, l.counter, l.owner)
	_, ownerBeats := in.snap.workers[l.owner]
	if suspect && judgedOnItsCounter(l, me, ownerBeats) {
		a.d.suspects[l.shardID] = l.counter
	}
	held := in.held[l.shardID]
	if held && notMineToRead(l, me) {
		// The read may be stale: balance makes sure before it forgets the
		// lease; until then it is this worker's, and never one to take
		// again.
		a.d.lost = append(a.d.lost, l.shardID)
		l.owner = me
	}
	// A Java KCL 3.x graceful hand-off (checkpointOwner, the old owner,
	// reads the shard and renews the lease until it passes the lease to
	// owner): left alone while the lease's counter moves. A heartbeat under
	// the old owner's name says nothing (a kcl worker of that name never
	// finishes a Java hand-off). Once the counter stood still for
	// LeaseDuration, the lease is the owner's as usual, and a take removes
	// checkpointOwner.
	if a.ours(l.shardID) && in.staleIncarnation(l) {
		// An earlier stream's: judged on its owner alone, never on its
		// parents or its checkpoint (which are the old stream's).
		a.replaceStale(l, held, ownerBeats, !expired)
		return
	}
	if l.checkpointOwner != "" && !expired {
		return
	}
	if !a.readableNow(l) {
		return
	}
	stream, _ := splitLeaseKey(l.shardID)
	switch {
	case !a.ours(l.shardID):
		a.shareOthers(l, stream, ownerBeats, !expired)
	case !in.mayBeTwins(l, held):
		a.mine[stream] = true
		a.share(l, stream, held, ownerBeats, expired, suspect)
	default:
		a.mine[stream] = true
	}
}

// share decides about l, a lease of a stream this worker reads that may be
// read now: to hand off or pass on, and its share (planTakes).
func (a *assessment) share(l lease, stream string, held, ownerBeats, expired, suspect bool) {
	in, me := a.in, a.in.me
	owner := l.owner
	if a.ownerExpired(l, ownerBeats, !expired) {
		owner = ""
		if !ownerBeats {
			a.d.expired[l.shardID] = l.counter
		}
	}
	if l.handoffTo == me && l.owner != me {
		a.d.waiting = true
	}
	if !slices.Contains(a.workers, owner) && owner != "" {
		// A live owner that is stopping, or one without a heartbeat item (a
		// Java KCL worker): counted as a worker of its own.
		if _, beats := in.snap.workers[owner]; !beats {
			a.workers = append(a.workers, owner)
		}
	}
	claimant := a.claimant(l, owner, stream)
	switch {
	case held && claimant != "":
		a.d.handoffs[l.shardID] = claimant
	case l.owner == me && !held && claimant != "":
		// Owned by an earlier run of this worker ID, and asked for: nothing
		// of it is delivered here, so it goes to the claimant.
		a.d.pass = append(a.d.pass, l)
	}
	a.shares = append(a.shares, shareLease{shardID: l.shardID, stream: stream, owner: owner, claimant: claimant, heldByMe: held, ownedByMe: l.owner == me,
		claimable: ownerBeats && l.checkpointOwner == "", longFree: l.owner == "" && suspect})
}

// replaceStale decides about l, a lease of an earlier stream of this name in
// a single-stream table (incarnation.go): never read, and replaced by the
// stream's own lease once nobody may read it: free, its owner dead, or
// owned by an earlier run of this worker ID. A worker that reads it ends it
// itself when it finds the stream created again.
func (a *assessment) replaceStale(l lease, held, ownerBeats, leaseFresh bool) {
	if held {
		return
	}
	if l.owner == "" || l.owner == a.in.me && a.in.settled && !a.in.twinWrote(l) || a.ownerExpired(l, ownerBeats, leaseFresh) {
		a.d.replace = append(a.d.replace, l)
	}
}

// shareOthers counts l, a lease of a stream this worker does not read, in
// the share of the worker that holds it (or will, once a hand-off it was
// asked for is done), so that every worker's fair share counts, per
// stream, the leases of the streams it reads and only the workers that
// read them (planTakes).
func (a *assessment) shareOthers(l lease, stream string, ownerBeats, leaseFresh bool) {
	owner := l.owner
	// Not one this worker still reads: an old stream's lease held until
	// the switch to its new incarnation forgets it (switchIncarnation).
	mine := owner == a.in.me && a.in.settled && l.checkpointOwner == "" && !a.in.held[l.shardID] && !a.in.twinWrote(l)
	switch {
	case mine && l.handoffTo != "" && !a.cannotReceive(l.handoffTo, owner, stream):
		// Owned by this worker ID (an earlier run, or a worker that handed
		// it to this one before a deploy removed the stream from it), and
		// asked for by a worker that reads it: nothing of it is delivered
		// here, so it goes to the claimant.
		a.d.pass = append(a.d.pass, l)
	case mine && l.handoffTo != "":
		// Asked for by a worker that is gone or no longer reads the stream
		// (a rolling deploy removed it there too): only the owner clears a
		// claim, and a worker that reads the stream can ask only then
		// (found by the simulation, seed 110937603).
		a.d.unclaim = append(a.d.unclaim, l)
	case mine && l.writer.id == a.in.me:
		// Owned and last written by an earlier kcl run of this worker ID,
		// which read the stream: nobody reads it, and no kcl worker may
		// take it while this worker lives. It is given back, fenced on its
		// counter. One the Java KCL wrote is left alone: a Java worker
		// takes it once its counter stands still.
		a.d.release = append(a.d.release, l)
	}
	if owner == a.in.me || a.ownerExpired(l, ownerBeats, leaseFresh) {
		owner = ""
	}
	claimant := l.handoffTo
	if owner == "" || claimant != "" && a.cannotReceive(claimant, owner, stream) {
		claimant = ""
	}
	a.shares = append(a.shares, shareLease{shardID: l.shardID, stream: stream, owner: owner, claimant: claimant, others: true})
}

// reads reports whether worker w reads the stream with identifier stream:
// this worker, the streams of its leases (ours); another, what its
// heartbeat says (workerBeat.reads); a worker without a heartbeat item (a
// Java KCL worker), every stream.
func (a *assessment) reads(w, stream string) bool {
	if w == a.in.me {
		return a.mine[stream]
	}
	b, beats := a.in.snap.workers[w]
	return !beats || b.reads(stream)
}

// judgedOnItsCounter reports whether l's expiry rests on its own counter,
// not on its owner's heartbeat: another owner without a heartbeat item (a
// Java KCL worker), or a Java hand-off in progress.
func judgedOnItsCounter(l lease, me string, ownerBeats bool) bool {
	return l.owner != "" && l.owner != me && !ownerBeats || l.checkpointOwner != ""
}

// notMineToRead reports whether the table no longer lets me read l: it names
// another owner, or a Java hand-off of it began.
func notMineToRead(l lease, me string) bool {
	return l.owner != me || l.checkpointOwner != ""
}

// readableNow reports whether l's shard may be read now: not ended, and
// every parent done.
func (a *assessment) readableNow(l lease) bool {
	return !l.checkpoint.shardEnd() && parentsDone(l, a.d.byShard)
}

// mayBeTwins reports whether l, which the table gives to this WorkerID but
// this process does not read, may be a live twin's (another process with
// this WorkerID): this process has not settled, and did not claim it.
func (in assessInput) mayBeTwins(l lease, held bool) bool {
	return l.owner == in.me && !held && (!in.settled || in.twinWrote(l)) && !in.claimed[l.shardID]
}

// twinWrote reports whether l was last written by another process with
// this WorkerID after this process's first beat: a live twin, started
// after this one, whose first beat makes this one stop within a heartbeat
// interval. Settled or not, this process leaves such a lease alone (found
// by the simulation, seed 1271: a settled process released the lease its
// twin was reading). An earlier run of this WorkerID wrote its leases
// before this process's first beat.
func (in assessInput) twinWrote(l lease) bool { return twinWrote(l, in.me, in.token, in.firstBeat) }

// twinWrote reports whether l was last written by a process with WorkerID
// me other than the one with token, after that one's first beat (counter
// firstBeat, 0 before it): assessInput.twinWrote.
func twinWrote(l lease, me, token string, firstBeat int64) bool {
	return l.writer.id == me && l.writer.token != token && firstBeat > 0 && l.writer.beat >= firstBeat
}

// ownerExpired reports whether l's owner, another worker, is dead: its
// heartbeat expired, at a counter no later than the beat l says its last
// write followed (a take may succeed only once its owner's deadline had
// passed, whatever mix of item ages the read returned); or, without a
// heartbeat item, the lease's own counter did (leaseFresh false).
func (a *assessment) ownerExpired(l lease, ownerBeats, leaseFresh bool) bool {
	return l.owner != "" && l.owner != a.in.me && leaseitem.Liveness{
		Owner: l.owner, CheckpointOwner: l.checkpointOwner, OwnerBeats: ownerBeats, OwnerLive: a.alive[l.owner], LeaseLive: leaseFresh,
		OwnerBeat: l.ownerBeat(), JudgedBeat: a.in.snap.workers[l.owner].counter,
	}.Alive() != l.owner
}

// claimant returns the live worker l is to be handed to, or "". A claim
// made by a worker that can receive nothing is dropped, and cleared from
// the table when l is this worker's (decisions.unclaim).
func (a *assessment) claimant(l lease, owner, stream string) string {
	switch {
	case owner == "" || l.checkpointOwner != "":
		// Nobody to hand it over: it is free for any worker to take; or a
		// Java hand-off whose old owner died: its owner takes it.
		return ""
	case l.handoffTo != "" && a.cannotReceive(l.handoffTo, owner, stream):
		if owner == a.in.me {
			a.d.unclaim = append(a.d.unclaim, l)
		}
		return ""
	}
	return l.handoffTo
}

// cannotReceive reports whether claimant can receive no hand-off from owner
// of a lease of stream: it is gone, stopping or does not read stream (a
// rolling deploy removed it there after it asked), so it would not read the
// shard; or it is the owner.
func (a *assessment) cannotReceive(claimant, owner, stream string) bool {
	return !a.alive[claimant] || a.stopping[claimant] || claimant == owner || !a.reads(claimant, stream)
}

// parentsDone reports whether every parent of l has been read to its end. A
// parent with no lease is taken as done: it was trimmed from the stream.
func parentsDone(l lease, byShard map[string]lease) bool {
	for _, p := range l.parents {
		if pl, ok := byShard[p]; ok && !parentEnded(l, pl) {
			return false
		}
	}
	return true
}

// parentEnded reports whether parent, the lease of a parent of l, says the
// parent was read to its end. In a single-stream table a lease stamped with
// another creation time than l's is an earlier stream's of that shard ID
// (a read that returned it before the sync replaced it): it says nothing of
// l's parent. An unstamped one (the Java KCL's) is taken as l's stream's.
func parentEnded(l, parent lease) bool {
	other := l.streamCreated != 0 && parent.streamCreated != 0 && parent.streamCreated != l.streamCreated
	return parent.checkpoint.shardEnd() && !other
}

// shareLease is what the balancer needs to know of one lease that may be
// read now (not ended, parents done).
type shareLease struct {
	shardID   string
	stream    string // the identifier of its stream ("" in a single-stream table)
	others    bool   // of a stream this worker does not read: counted, never taken or claimed
	owner     string // live owner, or "" when unowned or its owner is dead
	claimant  string // live worker a hand-off was asked for, or ""
	heldByMe  bool   // this worker is reading it
	ownedByMe bool   // the table names this worker as owner
	claimable bool   // its owner is a kcl worker, which hands a lease off when asked
	longFree  bool   // free in the table, and seen unchanged for LeaseDuration: whoever should have taken it did not
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
// ends with its fair share. reads says which worker reads which stream (nil:
// each reads all). A worker takes all it needs in one pass.
//
//   - A worker's fair share is, over the streams it reads, its part of each
//     stream's leases split evenly among the workers that read that stream
//     (shares): with one stream, or every worker reading every stream, the
//     leases over the workers. So a rolling deploy that adds or removes a
//     stream leaves no shard unread: a worker that does not read a stream
//     counts in nobody's share of it.
//   - A free lease is taken up to the fair share (capped by max), and beyond
//     it (up to max) when no other worker that reads its stream has room,
//     or when it stayed free for LeaseDuration: another worker's room may
//     be an illusion (its own MaxLeasesPerWorker, which the table does not
//     say; a worker of another version).
//   - A lease moves by a hand-off only from a worker whose excess over its
//     share is at least two more than the taker's: with one stream, loads
//     that differ by less than 2 are fair, so a fair assignment is stable.
func planTakes(me string, workers []string, reads func(w, stream string) bool, leases []shareLease, max int) (take, claim []string) {
	if reads == nil {
		reads = func(string, string) bool { return true }
	}
	share := shares(workers, reads, leases)
	high := func(w string) int { return int(math.Ceil(share[w] - 1e-9)) }
	mine := high(me)
	if max > 0 {
		mine = min(mine, max)
	}
	load := map[string]int{}
	for _, w := range workers {
		load[w] = 0
	}
	var free []shareLease
	for _, l := range leases {
		switch {
		case !l.others && l.ownedByMe && !l.heldByMe && l.claimant == "":
			take = append(take, l.shardID)
			load[me]++
		case l.holder() == "":
			if !l.others {
				free = append(free, l)
			}
		default:
			load[l.holder()]++
		}
	}
	// roomElsewhere reports whether another worker that reads stream is
	// below its share: it will take a free lease of it.
	roomElsewhere := func(stream string) bool {
		return slices.ContainsFunc(workers, func(w string) bool { return w != me && reads(w, stream) && load[w] < high(w) })
	}
	// Free leases are taken in random order, so that workers starting
	// together rarely race for the same ones.
	rand.Shuffle(len(free), func(i, j int) { free[i], free[j] = free[j], free[i] })
	for _, l := range free {
		if load[me] >= mine && (max > 0 && load[me] >= max || roomElsewhere(l.stream) && !l.longFree) {
			continue
		}
		take = append(take, l.shardID)
		load[me]++
	}
	// A lease whose live owner does not read its stream (a deploy removed
	// it there after the lease was handed to it) is asked for whatever the
	// shares: its owner never reads it, and passes it on when asked.
	for _, l := range leases {
		if !l.others && l.claimable && l.claimant == "" && l.owner != "" && l.owner != me && !reads(l.owner, l.stream) && (max == 0 || load[me] < max) {
			claim = append(claim, l.shardID)
			load[l.owner]--
			load[me]++
		}
	}
	excess := func(w string) float64 { return float64(load[w]) - share[w] }
	for load[me] < mine {
		claimable := func(l shareLease) bool {
			return !l.others && l.claimable && l.claimant == "" && !slices.Contains(claim, l.shardID)
		}
		victim := ""
		for _, w := range workers {
			asked := slices.ContainsFunc(leases, func(l shareLease) bool { return l.owner == w && claimable(l) })
			if w != me && asked && (victim == "" || excess(w) > excess(victim) || excess(w) == excess(victim) && w < victim) {
				victim = w
			}
		}
		if victim == "" || excess(victim)-excess(me) < 2-1e-9 {
			break
		}
		i := slices.IndexFunc(leases, func(l shareLease) bool { return l.owner == victim && claimable(l) })
		claim = append(claim, leases[i].shardID)
		load[victim]--
		load[me]++
	}
	return take, claim
}

// shares returns each worker's fair share of leases: over the streams it
// reads, each stream's leases divided by the number of workers that read it.
func shares(workers []string, reads func(w, stream string) bool, leases []shareLease) map[string]float64 {
	perStream := map[string]int{}
	for _, l := range leases {
		perStream[l.stream]++
	}
	share := make(map[string]float64, len(workers))
	for stream, n := range perStream {
		readers := 0
		for _, w := range workers {
			if reads(w, stream) {
				readers++
			}
		}
		for _, w := range workers {
			if reads(w, stream) {
				share[w] += float64(n) / float64(readers)
			}
		}
	}
	return share
}
