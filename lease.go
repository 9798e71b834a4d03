package kcl

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

// A lease gives one worker the right to read one shard and to write its
// checkpoint. Leases live in the lease table (see leasetable.go for the
// DynamoDB layout, that of the Java KCL 2.x).
//
// Liveness: every worker writes a heartbeat item of its own in the lease
// table every LeaseDuration/2, instead of renewing each lease, so the writes
// grow with the number of workers, not of shards. Who reads the table when
// is in group.go. A lease is expired when
// neither its owner's heartbeat nor its own counter has changed for
// LeaseDuration, as seen on the observer's clock: no clock synchronisation is
// needed, and owners that renew the lease itself (the Java KCL) keep it.
//
// Every lease write is conditional on the owner and counter read before it,
// so a worker that lost a lease can never move its new owner's checkpoint.
type lease struct {
	shardID       string
	owner         string // empty: unassigned
	counter       int64  // bumped by every write of kcl's but a hand-off claim
	checkpoint    checkpoint
	ownerSwitches int64
	parents       []string
	handoffTo     string // a worker asked the owner to hand the lease over
	// checkpointOwner is set while the Java KCL 3.x hands the lease over
	// gracefully: the old owner, which reads the shard until it checkpoints
	// and makes owner (the new one) the owner. kcl never sets it, never reads
	// a shard while it is set, and removes it when it takes the lease (see
	// assess; java-kcl-3x.md §3).
	checkpointOwner string
	// startAt is where a lease still at LATEST or AT_TIMESTAMP is opened by
	// its later owners: set by the first take of such a lease (kcl's own
	// attribute; the Java KCL ignores it). Zero: not set.
	startAt time.Time
}

// workerBeat is a worker's heartbeat item.
type workerBeat struct {
	counter  int64
	stopping bool   // shutting down: it releases its leases and takes none
	token    string // the process writing it (memLeases only)
}

// tableSnapshot is one read of the whole lease table.
type tableSnapshot struct {
	leases  []lease
	workers map[string]workerBeat
	group   groupItem
	bad     []error // items kcl does not understand; reported, never rewritten
}

// errLeaseLost says a conditional write found the lease changed: another
// worker owns it now, or it was edited.
var errLeaseLost = errors.New("lease lost")

// errDuplicateWorker says another process writes this worker's heartbeat:
// two processes run with one WorkerID. No retry can fix it.
var errDuplicateWorker = errors.New("another process is running with this WorkerID; each process needs its own")

// leaseTable stores leases and heartbeats. Lease writes succeed only while
// the stored lease still has the owner and counter of the lease passed in,
// and return errLeaseLost otherwise. Implementations are safe for concurrent
// use.
type leaseTable interface {
	name() string
	ensure(ctx context.Context) error
	// list reads every item, with a strongly consistent read if consistent.
	list(ctx context.Context, consistent bool) (tableSnapshot, error)
	// read reads one lease (ok false: no such lease), with a consistent read.
	read(ctx context.Context, shardID string) (l lease, ok bool, err error)
	create(ctx context.Context, l lease) (created bool, err error)
	// take makes owner the owner, clearing any hand-off claim.
	take(ctx context.Context, l lease, owner string) (lease, error)
	// claim asks l's owner to hand l over to taker (no counter change).
	claim(ctx context.Context, l lease, taker string) error
	// unclaim clears a claim whose claimant is gone.
	unclaim(ctx context.Context, l lease) error
	// checkpoint writes cp and passes the lease to next: l.owner keeps it,
	// "" releases it, another worker receives it (a hand-off).
	checkpoint(ctx context.Context, l lease, cp checkpoint, next string) (lease, error)
	// heartbeat bumps the worker's heartbeat counter from last, the counter
	// this process wrote before (< 0: none yet, create or take the item over),
	// and returns the new counter. It fails with errDuplicateWorker when the
	// item was last written by another process (token) of the same worker.
	heartbeat(ctx context.Context, worker, token string, stopping bool, last int64) (int64, error)
	// removeWorker deletes a worker's heartbeat item, if its counter is still
	// counter (any counter when counter < 0).
	removeWorker(ctx context.Context, worker string, counter int64) error
	// readBeat reads a worker's heartbeat item with a consistent read (ok
	// false: there is none).
	readBeat(ctx context.Context, worker string) (w workerBeat, ok bool, err error)

	// The group item (group.go).
	//
	// group reads it, perhaps stale (present false: there is none).
	group(ctx context.Context) (groupItem, error)
	// bump adds one to its epoch, making it if there is none.
	bump(ctx context.Context) error
	// tick bumps its scans counter, making it if there is none.
	tick(ctx context.Context) error
	// publish stores a scanner's judgement and bumps the epoch, unless the
	// item holds digest already (errLeaseLost).
	publish(ctx context.Context, expired map[string]int64, digest string) error
	// removeGroup deletes it if its epoch is still epoch (errLeaseLost if not).
	removeGroup(ctx context.Context, epoch int64) error
}

// heldLease is a lease this worker owns, with the reader of its shard and the
// acks of what that reader delivered. The lease loop creates it when it
// takes the lease (startReader); the reader, the lease loop and run's
// shutdown may each write it, one attempt at a time under mu.
type heldLease struct {
	// Immutable.
	shardID   string   // the lease key: the shard ID, or stream:shard ID in a multi-stream table (streams.go)
	stream    *kstream // the shard's stream
	shard     string   // the shard ID
	window    *ackWindow
	cancel    context.CancelFunc // stops the shard's reader
	stopFetch context.CancelFunc // stops fetching only, for a hand-off
	// Where a lease at LATEST or AT_TIMESTAMP starts (see startingPosition),
	// and whether this worker's take stored it.
	startAt     time.Time
	storedStart bool

	counters shardCounters // atomics: written by the reader, read by Stats

	// stored is the checkpoint as the table holds it and when this worker
	// wrote it (or took the lease): written under mu, read without it.
	stored atomic.Pointer[storedCheckpoint]

	mu      chanLock    // held across each attempt at a write of the lease (each is conditional on the counter); newHeldLease makes it
	lease   lease       // synchronized on mu
	unsure  *leaseWrite // synchronized on mu: the last write failed without an answer; it may have taken effect
	handoff string      // synchronized on mu: worker to hand the lease to, once asked
	gone    bool        // synchronized on mu: released, ended, handed off or lost; no more writes
}

// newHeldLease returns the held lease of l, a lease just taken, whose shard
// is shard of stream.
func newHeldLease(l lease, stream *kstream, shard string) *heldLease {
	h := &heldLease{shardID: l.shardID, stream: stream, shard: shard, lease: l, window: newAckWindow(l.checkpoint), mu: newChanLock()}
	h.stored.Store(&storedCheckpoint{cp: l.checkpoint, at: time.Now()})
	return h
}

type storedCheckpoint struct {
	cp checkpoint
	at time.Time
}

// observation is what this worker last saw of an item's counter, on its own
// clock.
type observation struct {
	counter int64
	owner   string
	since   time.Time
}

// Timings derived from LeaseDuration.
//
// heartbeatInterval is how often a worker beats: twice per LeaseDuration, a
// third fewer writes than three times. A beat that fails is retried with
// backoff until the next is due, which follows at once; the worker pauses (pause.go) only when none is confirmed within
// LeaseDuration less a tenth of the last one sent, so it rides out a
// DynamoDB outage of up to 0.4 LeaseDuration that starts just before a
// beat is due (0.9 LeaseDuration at best).
func (o *Options) heartbeatInterval() time.Duration { return o.LeaseDuration / 2 }

// takeInterval is how often the table is read to take, balance and notice
// expiry: a tenth of LeaseDuration (a crashed worker's leases are taken
// within LeaseDuration plus two reads, 1.2 LeaseDuration), and at least once
// a second (released leases are taken within about a second).
func (o *Options) takeInterval() time.Duration { return min(o.LeaseDuration/10, time.Second) }

// leaseKeeper is the lease loop: one goroutine, from the end of start to
// just before the final release, that balances (the one place a lease is
// taken), flushes checkpoints, syncs the shard list and starts readers. The
// heartbeats run beside it on a goroutine of their own (heartbeat.go), so
// slow lease work never delays them.
type leaseKeeper struct {
	c *Consumer // immutable

	// Any goroutine may signal these (notify) to ask for a pass now.
	takeNow chan struct{} // a balance pass
	syncNow chan struct{} // a shard sync, then a balance pass

	// Only touched by the lease loop.
	seen       map[string]observation // others' counters as last seen by a consistent read, for expiry
	reported   map[string]bool        // lease items already reported as not understood
	epoch      int64                  // the group's epoch as of the last read of the whole table
	scanned    time.Time              // when the last read of the whole table started
	ticked     time.Time              // when this worker, a scanner, last bumped the group's scans counter
	scans      int64                  // the group's scans counter as last polled
	scansSince time.Time              // when this worker first polled that value
	scanner    bool                   // this worker reads the whole table every pass (group.go)
	busy       bool                   // this worker reads the whole table every pass until it has no business
	claimed    map[string]bool        // shards this process asked a hand-off of and does not read yet
	confirmed  map[string]int64       // suspects a consistent read confirmed expired, with their counters

	// lastTable is the leases as last read: written by the lease loop, read
	// by Stats and by the shutdown.
	lastTable atomic.Pointer[[]lease]
}

func newLeaseKeeper(c *Consumer) *leaseKeeper {
	return &leaseKeeper{
		c:       c,
		takeNow: make(chan struct{}, 1), syncNow: make(chan struct{}, 1),
		seen: map[string]observation{}, reported: map[string]bool{},
		epoch: -1, busy: true, claimed: map[string]bool{}, confirmed: map[string]int64{},
	}
}

// leasesRead returns the leases as the lease loop last read them.
func (k *leaseKeeper) leasesRead() []lease {
	if p := k.lastTable.Load(); p != nil {
		return *p
	}
	return nil
}

// run keeps this worker's leases until ctx ends: heartbeats on one
// goroutine, the lease loop on another. It returns only fatal errors (the
// lease table or the stream is unusable, or a second process has this
// WorkerID).
func (k *leaseKeeper) run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return k.c.beat.run(ctx) })
	g.Go(func() error { return k.loop(ctx) })
	return g.Wait()
}

// loop does the lease work on its tickers, and when asked.
func (k *leaseKeeper) loop(ctx context.Context) error {
	c := k.c
	take := time.NewTicker(c.opts.takeInterval())
	defer take.Stop()
	flush := time.NewTicker(c.opts.CheckpointInterval)
	defer flush.Stop()
	shardSync := time.NewTicker(c.opts.ShardSyncInterval)
	defer shardSync.Stop()
	for {
		var err error
		select {
		case <-ctx.Done():
			return nil
		case <-take.C:
			err = k.pass(ctx)
		case <-k.takeNow:
			err = k.balance(ctx, false)
		case <-flush.C:
			err = k.flush(ctx)
		case <-shardSync.C:
			if k.scanner { // the others sync when a shard of theirs ends
				err = k.syncAndBalance(ctx)
			}
		case <-k.syncNow:
			err = k.syncAndBalance(ctx)
		}
		if err != nil && isFatal(err) {
			return err
		}
		if err != nil && ctx.Err() == nil {
			c.log.Warn("kcl: lease cycle failed; retrying next cycle", "error", err, "code", errorCode(err))
		}
	}
}

func (k *leaseKeeper) syncAndBalance(ctx context.Context) error {
	if err := k.c.syncShards(ctx, nil); err != nil {
		return err
	}
	return k.balance(ctx, false)
}

func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func isDuplicateWorker(err error) bool { return errors.Is(err, errDuplicateWorker) }

// fence writes every lease still held again, fenced on its counter, after a
// heartbeat that came too late to be trusted: a take another worker decided
// on the older heartbeat then fails. Leases found taken are dropped; once
// all the rest are written the pause gate reopens. It reports false if a
// write failed transiently (the next pass tries again), and returns an error
// no retry can fix.
func (k *leaseKeeper) fence(ctx context.Context) (bool, error) {
	c := k.c
	for _, h := range c.heldLeases() {
		wctx, cancel := context.WithTimeout(ctx, c.opts.heartbeatInterval())
		_, _, err := c.writeCheckpoint(wctx, h, c.opts.WorkerID, false)
		cancel()
		if isFatal(err) {
			return false, fmt.Errorf("lease table %q: fencing shard %q: %w", c.table.name(), h.shardID, err)
		}
		if err != nil && !isLeaseLost(err) {
			return false, nil
		}
	}
	c.pause.fenced()
	return true, nil
}

// balance reads the lease table, with a consistent read when asked,
// decides (assess, balance.go) what this worker does about it, and does it:
// forgets leases taken from it, fences the leases it holds after a late
// heartbeat, hands off, passes on and unclaims, asks for hand-offs and takes
// its fair share. It judges expiry from its own observations, confirming
// each suspect with a consistent read of the item. This is the one place
// where a lease is taken.
func (k *leaseKeeper) balance(ctx context.Context, consistent bool) error {
	c := k.c
	listed := time.Now()
	snap, err := c.table.list(ctx, consistent)
	if err != nil {
		return err
	}
	k.reportBadLeases(snap.bad)
	now := time.Now()
	me := c.opts.WorkerID
	settled := c.beat.settled() // not under c.mu: the two locks are never held together

	c.mu.Lock()
	k.lastTable.Store(&snap.leases)
	closing := c.closing
	held := make(map[string]bool, len(c.held))
	for id := range c.held {
		held[id] = true
	}
	c.mu.Unlock()
	if closing {
		return nil
	}
	in := assessInput{
		me: me, snap: snap, held: held, listed: listed, now: now, ours: c.ours,
		leaseDuration: c.opts.LeaseDuration, maxLeases: c.opts.MaxLeasesPerWorker,
		settled: settled, claimed: k.claimed, confirmed: k.confirmed,
	}
	d := assess(in, k.seen)
	if len(d.suspects) > 0 {
		if confirmed, err := k.confirm(ctx, d.suspects); err != nil {
			return err
		} else if confirmed {
			d = assess(in, k.seen)
		}
	}
	k.prune(snap, d.byShard)

	c.mu.Lock()
	lost := make([]*heldLease, 0, len(d.lost))
	for _, id := range d.lost {
		if h := c.held[id]; h != nil {
			lost = append(lost, h)
		}
	}
	handoffs := make(map[*heldLease]string, len(d.handoffs))
	for id, to := range d.handoffs {
		if h := c.held[id]; h != nil {
			handoffs[h] = to
		}
	}
	c.mu.Unlock()

	defer k.afterPass(ctx, snap, d, listed)
	for id := range k.claimed { // forget claims that came to nothing
		if l, ok := d.byShard[id]; !ok || l.handoffTo != me && l.owner != me {
			delete(k.claimed, id)
		}
	}
	for _, h := range lost {
		// The read may be stale: make sure with a consistent one.
		l, ok, err := c.table.read(ctx, h.shardID)
		if err != nil {
			return err
		}
		if ok && l.owner == me && l.checkpointOwner == "" {
			continue
		}
		c.forgetLost(h, l.owner)
	}
	if pending, _ := c.pause.fencePending(); pending {
		if done, err := k.fence(ctx); !done {
			return err
		}
	}
	if c.pause.isShut() {
		return nil // no trusted heartbeat: take and pass on nothing
	}
	for h, to := range handoffs {
		k.requestHandoff(h, to)
	}
	for _, l := range d.pass {
		if _, err := c.table.checkpoint(ctx, l, l.checkpoint, l.handoffTo); err != nil && !isLeaseLost(err) {
			return err
		} else if err == nil {
			c.log.Info("kcl: lease handed off", "shard", l.shardID, "to", l.handoffTo, "checkpoint", l.checkpoint.seq, "unacked_dropped", 0)
		}
	}
	for _, l := range d.unclaim {
		if err := c.table.unclaim(ctx, l); err != nil && !isLeaseLost(err) {
			return err
		}
	}
	claimed := false
	for _, id := range d.claim {
		if err := c.table.claim(ctx, d.byShard[id], me); err != nil && !isLeaseLost(err) {
			return err
		} else if err == nil {
			claimed = true
			k.claimed[id] = true
			c.log.Info("kcl: hand-off asked", "shard", id, "owner", d.byShard[id].owner)
		}
	}
	if claimed {
		c.bump(ctx) // the owners hand off on their next pass
	}
	for _, id := range d.take {
		c.mu.Lock()
		_, reading := c.held[id]
		c.mu.Unlock()
		if reading { // a stale read showed it free: taking it again would start a second reader
			continue
		}
		l := d.byShard[id]
		storedStart := false
		if l.startAt.IsZero() {
			l.startAt = c.startTime(l.checkpoint)
			storedStart = !l.startAt.IsZero()
		}
		taken, err := c.table.take(ctx, l, me)
		if isLeaseLost(err) {
			// Another worker was faster, or this take took effect and
			// only its reply was lost.
			var ok bool
			taken, ok, err = c.readBack(ctx, id, func(s lease) bool { return s.owner == me && s.counter == l.counter+1 })
			if !ok {
				continue
			}
		}
		if err != nil {
			return err
		}
		delete(k.claimed, id)
		c.log.Info("kcl: lease taken", "shard", id, "checkpoint", l.checkpoint.seq, "previous_owner", l.owner)
		k.startReader(ctx, taken, storedStart)
	}
	if k.scanner {
		k.removeDeadWorkers(ctx, snap, now)
	}
	return nil
}

// confirm reads each suspect (a heartbeat or lease seen unchanged for
// LeaseDuration in a read that may be stale) with a consistent read, and
// notes as expired those whose counter it still finds, or that are gone. It
// reports whether it confirmed any.
func (k *leaseKeeper) confirm(ctx context.Context, suspects map[string]int64) (bool, error) {
	c := k.c
	any := false
	for _, key := range slices.Sorted(maps.Keys(suspects)) {
		var n int64
		var ok bool
		var err error
		if id, worker := strings.CutPrefix(key, workerKeyPrefix); worker {
			var w workerBeat
			w, ok, err = c.table.readBeat(ctx, id)
			n = w.counter
		} else {
			var l lease
			l, ok, err = c.table.read(ctx, key)
			n = l.counter
		}
		if err != nil {
			return any, err
		}
		if !ok || n == suspects[key] {
			k.confirmed[key] = suspects[key]
			any = true
		}
	}
	return any, nil
}

// prune forgets observations and confirmations of items that are gone, and
// confirmations of items that changed.
func (k *leaseKeeper) prune(snap tableSnapshot, byShard map[string]lease) {
	counter := func(key string) (int64, bool) {
		if id, worker := strings.CutPrefix(key, workerKeyPrefix); worker {
			w, ok := snap.workers[id]
			return w.counter, ok
		}
		l, ok := byShard[key]
		return l.counter, ok
	}
	for key, n := range k.confirmed {
		if cur, ok := counter(key); !ok || cur != n {
			delete(k.confirmed, key)
		}
	}
	for key := range k.seen {
		if _, ok := counter(key); !ok {
			delete(k.seen, key)
		}
	}
}

// latestSkew is how far before its first take a lease at LATEST starts for
// its later owners: records arrive with the server's clock, the start time
// is taken on this worker's, and a clock ahead of the server's by less than
// this loses nothing. Records written up to this long before the group first
// read the shard may be delivered when such a lease moves before its first
// checkpoint.
const latestSkew = time.Minute

// startTime returns the start to store in a lease still at cp when it is
// first taken: a little before now for LATEST, InitialPosition's time for
// AT_TIMESTAMP, zero otherwise.
func (c *Consumer) startTime(cp checkpoint) time.Time {
	switch {
	case cp.seq == checkpointLatest:
		return time.Now().Add(-latestSkew)
	case cp.seq == checkpointAtTimestamp && c.opts.InitialPosition.kind == positionAtTimestamp:
		return c.opts.InitialPosition.timestamp
	}
	return time.Time{}
}

// removeDeadWorkers deletes the heartbeat items of workers dead for a while
// that own no lease, so crashed workers do not pile up in the table.
func (k *leaseKeeper) removeDeadWorkers(ctx context.Context, snap tableSnapshot, now time.Time) {
	c := k.c
	owners := map[string]bool{}
	for _, l := range snap.leases {
		owners[l.owner] = true
	}
	for id, w := range snap.workers {
		obs, seen := k.seen[workerKeyPrefix+id]
		if seen && obs.counter == w.counter && id != c.opts.WorkerID && !owners[id] && now.Sub(obs.since) > 3*c.opts.LeaseDuration {
			if err := c.table.removeWorker(ctx, id, w.counter); err == nil {
				c.log.Info("kcl: removed the heartbeat of a dead worker", "dead_worker", id)
			}
		}
	}
}

// parentsDone reports whether every parent of l has been read to its end. A
// parent with no lease is taken as done: it was trimmed from the stream.
func parentsDone(l lease, byShard map[string]lease) bool {
	for _, p := range l.parents {
		if pl, ok := byShard[p]; ok && !pl.checkpoint.shardEnd() {
			return false
		}
	}
	return true
}

func (k *leaseKeeper) reportBadLeases(bad []error) {
	c := k.c
	for _, err := range bad {
		msg := err.Error()
		fresh := !k.reported[msg]
		k.reported[msg] = true
		if fresh {
			c.log.Warn("kcl: lease table item not understood; left as it is", "table", c.table.name(), "error", msg)
		}
	}
}

// startReader starts reading the shard of a lease just taken.
func (k *leaseKeeper) startReader(leaseCtx context.Context, l lease, storedStart bool) {
	c := k.c
	stream, shard, _ := c.streamOf(l.shardID) // assess takes only leases of the streams read
	h := newHeldLease(l, stream, shard)
	h.startAt, h.storedStart = l.startAt, storedStart
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		c.releaseLease(leaseCtx, h) // shutdown began while taking: give it back
		return
	}
	defer c.mu.Unlock()
	ctx, cancel := context.WithCancel(c.readCtx)
	fetchCtx, stopFetch := context.WithCancel(ctx)
	h.cancel, h.stopFetch = cancel, stopFetch
	c.held[l.shardID] = h
	c.readers.Go(func() error {
		defer cancel()
		r := newShardReader(c, h)
		if err := r.read(fetchCtx); err != nil {
			return err
		}
		r.finishHandoff(ctx)
		return nil
	})
}

// requestHandoff asks the reader of h to stop fetching and hand the lease to
// worker to once what it delivered is acked.
func (k *leaseKeeper) requestHandoff(h *heldLease, to string) {
	c := k.c
	h.mu.Lock()
	first := h.handoff == ""
	h.handoff = to
	h.mu.Unlock()
	if first {
		c.log.Info("kcl: handing lease off", "shard", h.shardID, "to", to)
		h.stopFetch()
	}
}

// finishHandoff completes a hand-off after the reader stopped fetching:
// it waits up to ShutdownTimeout for the delivered records to be acked, then
// checkpoints the acked prefix and makes the claimant the owner, in one
// write. The new owner reads on from exactly there.
func (r *shardReader) finishHandoff(ctx context.Context) {
	c, h := r.c, r.h
	h.mu.Lock()
	to := h.handoff
	h.mu.Unlock()
	if to == "" || ctx.Err() != nil {
		return
	}
	wait, cancel := context.WithTimeout(ctx, c.opts.ShutdownTimeout)
	h.window.waitBelow(wait, 1)
	cancel()
	if acked, unacked, err := c.writeCheckpoint(ctx, h, to, false); err == nil {
		c.log.Info("kcl: lease handed off", "shard", h.shardID, "to", to, "checkpoint", acked.seq, "unacked_dropped", unacked)
	}
}

// heldLeases returns a snapshot of the leases held, by shard ID.
func (c *Consumer) heldLeases() []*heldLease {
	c.mu.Lock()
	defer c.mu.Unlock()
	hs := make([]*heldLease, 0, len(c.held))
	for _, h := range c.held {
		hs = append(hs, h)
	}
	slices.SortFunc(hs, func(a, b *heldLease) int { return strings.Compare(a.shardID, b.shardID) })
	return hs
}

// forget stops the reader of h and forgets the lease. Later acks of its
// records are ignored.
func (c *Consumer) forget(h *heldLease) {
	h.window.close()
	if h.cancel != nil {
		h.cancel()
	}
	c.mu.Lock()
	if c.held[h.shardID] == h {
		delete(c.held, h.shardID)
	}
	c.mu.Unlock()
}

func (c *Consumer) forgetLost(h *heldLease, owner string) {
	h.mu.Lock()
	wasGone := h.gone
	h.gone = true
	h.mu.Unlock()
	if !wasGone {
		c.log.Warn("kcl: lease lost; shard no longer delivered", "shard", h.shardID, "owner", owner)
	}
	c.forget(h)
}

// checkpointOnce makes one attempt at writing the acked prefix of h
// (SHARD_END when shardEnd) and passing the lease to next. It runs under
// h.mu, which it holds for one bounded attempt, so that writes of one lease
// never interleave, the prefix it reads is never behind one already
// written, and the lock is never held across a retry's wait. It returns
// what it wrote and how many delivered records were not acked then.
//
// A write that failed without an answer may still have taken effect: it is
// remembered (h.unsure). When a later write's condition fails, the lease is
// read back: if it holds exactly what this write, or the unsure one, wrote
// (the next counter, the checkpoint, the owner), the write took effect and
// only its reply was lost. In the unsure case the lease moves on from what
// the table holds and this write is made again (errWriteAgain, retried).
// Anything else is a lost lease.
func (c *Consumer) checkpointOnce(ctx context.Context, h *heldLease, shardEnd bool, next string) (checkpoint, int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	cp, unacked := h.window.state()
	if shardEnd {
		cp = checkpoint{seq: checkpointShardEnd}
	}
	if h.gone {
		return cp, unacked, errLeaseLost
	}
	// One attempt, bounded: a call that never answers must not hold the
	// lock, and with it every other writer of this lease, for ever.
	ctx, cancel := context.WithTimeout(ctx, c.opts.heartbeatInterval())
	defer cancel()
	before := h.lease
	l, err := c.table.checkpoint(ctx, before, cp, next)
	if err != nil && !isLeaseLost(err) {
		h.unsure = &leaseWrite{cp: cp, next: next}
		return cp, unacked, err
	}
	if isLeaseLost(err) {
		wrote := func(s lease, w leaseWrite) bool {
			return s.counter == before.counter+1 && s.checkpoint == w.cp && s.owner == w.next
		}
		this := leaseWrite{cp: cp, next: next}
		earlier := func(s lease) bool { // the unsure write, which kept the lease
			return h.unsure != nil && wrote(s, *h.unsure) && s.owner == c.opts.WorkerID
		}
		stored, ok, rerr := c.readBack(ctx, h.shardID, func(s lease) bool { return wrote(s, this) || earlier(s) })
		switch {
		case rerr != nil:
			return cp, unacked, rerr
		case !ok:
			return cp, unacked, errLeaseLost
		case !wrote(stored, this):
			h.lease, h.unsure = stored, nil
			h.stored.Store(&storedCheckpoint{cp: stored.checkpoint, at: time.Now()})
			return cp, unacked, errWriteAgain
		}
		l, err = stored, nil
	}
	h.lease, h.unsure = l, nil
	h.stored.Store(&storedCheckpoint{cp: l.checkpoint, at: time.Now()})
	return cp, unacked, nil
}

// leaseWrite is what a checkpoint write writes.
type leaseWrite struct {
	cp   checkpoint
	next string
}

// errWriteAgain says a write must be made again on the lease as now known.
var errWriteAgain = errors.New("an earlier lease write took effect; writing again")

// readBack reads a lease after a conditional write of it failed, and
// reports whether it holds what the write would have written (wrote).
func (c *Consumer) readBack(ctx context.Context, shardID string, wrote func(lease) bool) (lease, bool, error) {
	l, found, err := c.table.read(ctx, shardID)
	if err != nil || !found || !wrote(l) {
		return lease{}, false, err
	}
	c.log.Debug("kcl: a lease write took effect though its reply was lost", "shard", shardID)
	return l, true, nil
}
