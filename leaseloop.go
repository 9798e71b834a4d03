package kcl

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

// leaseKeeper is the lease loop: one goroutine, from the end of start to
// just before the final release, that balances (the one place a lease is
// taken), flushes checkpoints, syncs the shard list and starts readers.
//
//   - Its methods run on the lease loop unless their doc says otherwise.
//   - The heartbeats run beside it on a goroutine of their own
//     (heartbeat.go), so slow lease work never delays them.
//   - It holds *Consumer, not a narrower set: tests and the simulation
//     replace Consumer.table after New, and Stats reads the lease loop's
//     last read before Consume.
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
	renewed    time.Time              // when a pass last asked for a sync to describe the streams again (a newer one seen, or one missing)
	syncOwed   bool                   // a sync asked for (syncNow) has not succeeded yet
	took       map[string]int64       // each lease's counter as this process's last take wrote it: a read-back that finds it is no lost reply
	foreign    foreignWatch           // leases of owners without a heartbeat item: live Java workers (foreign.go)
	// cutTakes are the leases whose take the end of the lease loop's
	// context cut short: the write may have landed. Shutdown reads them
	// back once the loop returned (unsureTakes).
	cutTakes []string
	// parentSync is when a child waiting for its listed parent's lease
	// last asked for a sync (parentsGone).
	parentSync time.Time
	cleanup    cleanup // the ended leases waiting to be deleted (cleanup.go)

	// lastTable is the leases as last read: written by the lease loop, read
	// by Stats and by the shutdown.
	lastTable atomic.Pointer[[]lease]
}

func newLeaseKeeper(c *Consumer) *leaseKeeper {
	return &leaseKeeper{
		c:       c,
		takeNow: make(chan struct{}, 1), syncNow: make(chan struct{}, 1),
		seen: map[string]observation{}, reported: map[string]bool{},
		epoch: -1, busy: true, claimed: map[string]bool{}, confirmed: map[string]int64{}, took: map[string]int64{},
	}
}

// takeInterval is how often the table is read to take, balance and notice
// expiry.
//
//   - A tenth of LeaseDuration: a crashed worker's leases are taken within
//     LeaseDuration plus two reads, 1.2 LeaseDuration.
//   - At least once a second: released leases are taken within about a
//     second.
func (o *Options) takeInterval() time.Duration { return min(o.LeaseDuration/10, time.Second) }

// leasesRead returns the leases as the lease loop last read them. Any
// goroutine may call it.
func (k *leaseKeeper) leasesRead() []lease {
	if p := k.lastTable.Load(); p != nil {
		return *p
	}
	return nil
}

// run keeps this worker's leases until ctx ends: heartbeats on one
// goroutine, the lease loop on another. It returns only fatal errors (the
// lease table or the stream is unusable, or a second process has this
// WorkerID). run's own goroutine only waits.
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
			if k.syncOwed {
				err = k.owedSync(ctx)
			} else {
				err = k.pass(ctx)
			}
		case <-k.takeNow:
			err = k.balance(ctx, false)
		case <-flush.C:
			err = k.flush(ctx)
		case <-shardSync.C:
			if k.scanner { // the others sync when a shard of theirs ends
				err = k.syncAndBalance(ctx)
			}
		case <-k.syncNow:
			k.syncOwed = true
			err = k.owedSync(ctx)
		}
		if err != nil && isFatal(err) {
			return err
		}
		if err != nil && ctx.Err() == nil {
			c.log.Warn("kcl: lease cycle failed; retrying next cycle", "error", err, "code", errorCode(err))
		}
	}
}

// owedSync runs a shard sync asked for (syncNow: a stream created again,
// leases replaced), then a pass. A sync that fails stays owed and is tried
// again on the next take tick: nothing else would ask for it again.
func (k *leaseKeeper) owedSync(ctx context.Context) error {
	if err := k.c.syncShards(ctx, running, nil); err != nil {
		return err
	}
	k.syncOwed = false
	return k.balance(ctx, false)
}

// anyMissing reports whether a stream was last found deleted.
func anyMissing(streams []*kstream) bool {
	return slices.ContainsFunc(streams, func(s *kstream) bool { return s.missing.Load() })
}

func (k *leaseKeeper) syncAndBalance(ctx context.Context) error {
	if err := k.c.syncShards(ctx, running, nil); err != nil {
		return err
	}
	return k.balance(ctx, false)
}

// notify asks for a pass of the loop that reads ch, without waiting. Any
// goroutine may call it.
func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// balance is one pass over a read of the whole lease table, with a
// consistent read when asked: it decides what this worker does about it
// (decide, confirming suspects) and does it (apply). This is the one place
// where a lease is taken.
func (k *leaseKeeper) balance(ctx context.Context, consistent bool) error {
	in, closing, err := k.readTable(ctx, consistent)
	if err != nil || closing {
		return err
	}
	waitForeign, err := k.checkForeign(ctx, in)
	if err != nil {
		return err
	}
	if time.Since(k.renewed) > k.c.opts.LeaseDuration && (newerIncarnation(k.c.streamList(), in.snap.leases) || anyMissing(k.c.streamList())) {
		// Another worker saw a stream created again first, or a stream was
		// last found deleted: describe it, then sync.
		k.renewed = time.Now()
		notify(k.syncNow)
	}
	d, err := k.decideConfirming(ctx, in)
	if err != nil {
		return err
	}
	if waitForeign {
		d.take, d.claim = nil, nil // foreign.go
	}
	defer k.afterPass(ctx, in.snap, d, in.listed)
	return k.apply(ctx, d)
}

// readTable reads the whole lease table and what this worker holds: the
// input of one pass. closing reports that shutdown began: then the pass
// does nothing.
func (k *leaseKeeper) readTable(ctx context.Context, consistent bool) (in assessInput, closing bool, err error) {
	c := k.c
	listed := time.Now()
	snap, err := c.table.list(ctx, consistent)
	if err != nil {
		return in, false, err
	}
	k.reportBadLeases(snap.bad)
	now := time.Now()
	settled := c.beat.settled() // lock-free: never waits on a beat's retries
	k.lastTable.Store(&snap.leases)
	held, closing := c.held.snapshot()
	var created int64 // a single stream's creation, to tell an earlier stream's leases
	if s := c.streamList(); len(s) == 1 && s[0].id == "" && !s[0].created.IsZero() {
		created = s[0].created.UnixMilli()
	}
	return assessInput{
		me: c.opts.WorkerID, snap: snap, held: held, listed: listed, now: now, ours: c.ours,
		leaseDuration: c.opts.LeaseDuration, maxLeases: c.opts.MaxLeasesPerWorker,
		settled: settled, claimed: k.claimed, confirmed: k.confirmed, streamCreated: created,
		token: c.beat.token, firstBeat: c.beat.firstCounter.Load(),
	}, closing, nil
}

// decideConfirming decides on in (decide). Expiry is judged from this
// worker's own observations: each suspect is confirmed with a consistent
// read of its item first, and the pass decided again if any was.
func (k *leaseKeeper) decideConfirming(ctx context.Context, in assessInput) (decisions, error) {
	d := decide(in, k.seen)
	if len(d.suspects) > 0 {
		if confirmed, err := k.confirm(ctx, d.suspects); err != nil {
			return d, err
		} else if confirmed {
			d = decide(in, k.seen)
		}
	}
	k.prune(in.snap, d.byShard)
	return d, nil
}

// apply carries out a pass's decisions, in this order, and stops at the
// first error:
//
//  1. forget claims that came to nothing, and held leases taken from this
//     worker (dropLost);
//  2. after a late heartbeat, fence the leases still held; while the pause
//     gate is shut, do nothing more (fenceIfLate);
//  3. hand off, pass on, release, replace an earlier stream's leases,
//     unclaim, claim, take;
//  4. a scanner removes the heartbeat items of long-dead workers.
func (k *leaseKeeper) apply(ctx context.Context, d decisions) error {
	handoffKeys := slices.Collect(maps.Keys(d.handoffs))
	hs := k.c.held.lookup(append(slices.Clone(d.lost), handoffKeys...)) // one look, as the table was read
	lost, handoffs := hs[:len(d.lost)], hs[len(d.lost):]
	for _, id := range d.staleClaims {
		delete(k.claimed, id)
	}
	if err := k.dropLost(ctx, lost); err != nil {
		return err
	}
	if goOn, err := k.fenceIfLate(ctx); !goOn {
		return err
	}
	for i, h := range handoffs {
		if h != nil {
			k.requestHandoff(h, d.handoffs[handoffKeys[i]])
		}
	}
	if err := k.passOn(ctx, d.pass); err != nil {
		return err
	}
	if err := k.release(ctx, d.release); err != nil {
		return err
	}
	if err := k.replaceStale(ctx, d.replace); err != nil {
		return err
	}
	if err := k.unclaim(ctx, d.unclaim); err != nil {
		return err
	}
	if err := k.claim(ctx, d.claim, d.byShard); err != nil {
		return err
	}
	for _, id := range d.take {
		if gone, err := k.parentsGone(ctx, d.byShard[id], d.byShard); err != nil {
			return err
		} else if !gone {
			continue
		}
		if err := k.take(ctx, d.byShard[id]); err != nil {
			return err
		}
	}
	if k.scanner {
		k.removeDeadWorkers(ctx, d.deadWorkers)
	}
	return nil
}

// dropLost forgets each held lease a read of the table gave to another
// worker, once a consistent read of it agrees (the first read may be
// stale).
func (k *leaseKeeper) dropLost(ctx context.Context, lost []*heldLease) error {
	c := k.c
	for _, h := range lost {
		if h == nil {
			continue // no longer held
		}
		l, ok, err := c.table.read(ctx, h.shardID)
		if err != nil {
			return err
		}
		if !stillOwned(l, ok, c.opts.WorkerID) {
			c.held.forgetLost(h, l.owner)
		}
	}
	return nil
}

// fenceIfLate fences the leases held after a late heartbeat (fence), and
// reports whether the pass goes on: not while the pause gate is shut (no
// trusted heartbeat: take and pass on nothing), nor after a fence that
// failed, whose error it returns.
func (k *leaseKeeper) fenceIfLate(ctx context.Context) (goOn bool, err error) {
	c := k.c
	if pending, _ := c.pause.fencePending(); pending {
		if done, err := k.fence(ctx); !done {
			return false, err
		}
	}
	return !c.pause.isShut(), nil
}

// fence writes every lease still held again, fenced on its counter, after a
// heartbeat that came too late to be trusted: a take another worker decided
// on the older heartbeat then fails.
//
//   - Leases found taken are dropped.
//   - Once all the rest are written, the pause gate reopens.
//   - It reports false if a write failed transiently (the next pass tries
//     again), and returns an error no retry can fix.
func (k *leaseKeeper) fence(ctx context.Context) (bool, error) {
	c := k.c
	_, round := c.pause.fencePending() // each write below carries a heartbeat no older than this round's
	for _, h := range c.held.list() {
		wctx, cancel := context.WithTimeout(ctx, c.opts.heartbeatInterval())
		_, _, err := c.writeCheckpoint(wctx, h, c.opts.WorkerID, false)
		cancel()
		if isFatal(err) {
			return false, fmt.Errorf("lease table %q: fencing shard %q: %w", c.table.name(), h.shardID, err)
		}
		if ignoreLost(err) != nil {
			return false, nil
		}
	}
	c.pause.fenced(round)
	return true, nil
}

// requestHandoff asks the reader of h to stop fetching and hand the lease to
// worker to once what it delivered is acked (shardReader.finishHandoff).
func (k *leaseKeeper) requestHandoff(h *heldLease, to string) {
	h.mu.Lock()
	first := h.handoff == ""
	h.handoff = to
	h.mu.Unlock()
	if first {
		k.c.log.Info("kcl: handing lease off", "shard", h.shardID, "to", to)
		h.stopFetch() // the reader's goroutine sees it and finishes the hand-off
	}
}

// passOn hands each lease an earlier run of this worker ID left to its
// claimant, with the checkpoint it has: nothing of it is delivered here.
func (k *leaseKeeper) passOn(ctx context.Context, pass []lease) error {
	c := k.c
	for _, l := range pass {
		_, err := c.table.checkpoint(ctx, l, l.checkpoint, l.handoffTo, c.beat.writer())
		if err := ignoreLost(err); err != nil {
			return err
		}
		if err == nil {
			c.log.Info("kcl: lease handed off", "shard", l.shardID, "to", l.handoffTo, "checkpoint", l.checkpoint.seq, "unacked_dropped", 0)
		}
	}
	return nil
}

// release gives back leases an earlier run of this worker ID owned, of
// streams this worker does not read (a deploy removed them), fenced on
// their counters, so that a worker that reads them takes them.
func (k *leaseKeeper) release(ctx context.Context, leases []lease) error {
	c := k.c
	for _, l := range leases {
		_, err := c.table.checkpoint(ctx, l, l.checkpoint, "", c.beat.writer())
		if err := ignoreLost(err); err != nil {
			return err
		}
		if err == nil {
			c.log.Info("kcl: lease released; its stream is not read here", "lease", l.shardID, "checkpoint", l.checkpoint.seq)
		}
	}
	return nil
}

// replaceStale replaces leases of an earlier stream of this name that
// nobody reads (assessment.replaceStale) by the stream's own
// (Consumer.renewLease), once the stream was listed since it was created
// again; until then the next pass tries again.
func (k *leaseKeeper) replaceStale(ctx context.Context, leases []lease) error {
	c := k.c
	for _, l := range leases {
		s := c.streamList()[0]
		sh, found, listed := s.listedShard(l.shardID)
		if !listed {
			notify(k.syncNow)
			return nil
		}
		if _, _, err := c.renewLease(ctx, s, l, sh, found); err != nil {
			return err
		}
	}
	if len(leases) > 0 {
		notify(k.syncNow) // children of replaced shards, if the listing grew
	}
	return nil
}

// unclaim clears the claims on this worker's leases whose claimant is gone.
func (k *leaseKeeper) unclaim(ctx context.Context, unclaim []lease) error {
	for _, l := range unclaim {
		if err := ignoreLost(k.c.table.unclaim(ctx, l)); err != nil {
			return err
		}
	}
	return nil
}

// claim asks the owners of ids to hand them over to this worker, and bumps
// the group's epoch if it asked any, so that the owners hand off on their
// next pass.
func (k *leaseKeeper) claim(ctx context.Context, ids []string, byShard map[string]lease) error {
	c := k.c
	claimed := false
	for _, id := range ids {
		err := c.table.claim(ctx, byShard[id], c.opts.WorkerID)
		if err := ignoreLost(err); err != nil {
			return err
		}
		if err == nil {
			claimed = true
			k.claimed[id] = true
			c.log.Info("kcl: hand-off asked", "shard", id, "owner", byShard[id].owner)
		}
	}
	if claimed {
		c.bump(ctx)
	}
	return nil
}

// take takes l, as the table was read, and starts reading its shard. A take
// whose condition failed is read back: it may have taken effect with its
// reply lost, unless what it finds is this process's earlier take, whose
// reader started and was dropped since (a stream created again): that
// acquisition had its reader, and a later pass takes the lease anew. A
// lease this worker reads already is left alone: a stale read showed it
// free, and taking it again would start a second reader.
func (k *leaseKeeper) take(ctx context.Context, l lease) error {
	c := k.c
	if c.held.has(l.shardID) {
		return nil
	}
	storedStart := false
	if l.startAt.IsZero() {
		l.startAt = startTime(l.checkpoint, c.kinesisNow(l.shardID), c.opts.InitialPosition)
		storedStart = !l.startAt.IsZero()
	}
	w := c.beat.writer()
	taken, err := c.table.take(ctx, l, w)
	if err != nil && ctx.Err() != nil {
		k.cutTakes = append(k.cutTakes, l.shardID) // shutdown: it may have landed
	}
	if isLeaseLost(err) {
		// Another worker was faster, or this take took effect and only its
		// reply was lost. A failed read-back counts as the former.
		var ok bool
		taken, ok, err = c.readBack(ctx, l.shardID, func(s lease) bool { return tookEffect(s, l, w) })
		if !ok || err == nil && k.took[l.shardID] == taken.counter {
			return nil
		}
	}
	if err != nil {
		return err
	}
	k.took[l.shardID] = taken.counter
	delete(k.claimed, l.shardID)
	c.log.Info("kcl: lease taken", "shard", l.shardID, "checkpoint", l.checkpoint.seq, "previous_owner", l.owner)
	k.startReader(ctx, taken, storedStart)
	return nil
}

// parentsGone confirms, with a consistent read of each, that the parents of
// l that the pass's read did not hold (byShard) are gone: trimmed from the
// stream, or ended and deleted. A Scan may miss a lease that exists (an
// eventually consistent one returns each item as of its own moment; a
// paged one passes a key before the lease is created), and a child taken
// while its parent is unread breaks per-key order. A parent found unended
// leaves l for a later pass.
func (k *leaseKeeper) parentsGone(ctx context.Context, l lease, byShard map[string]lease) (bool, error) {
	c := k.c
	for _, p := range l.parents {
		if _, ok := byShard[p]; ok {
			continue
		}
		pl, ok, err := c.table.read(ctx, p)
		if err != nil {
			return false, err
		}
		if ok && !parentEnded(l, pl) {
			c.log.Debug("kcl: a parent the read missed is not ended; the child waits", "shard", l.shardID, "parent", p)
			return false, nil
		}
		if !ok && !started(l) && !resetToLatest(l) && !childStarted(p, byShard) && c.listedWithoutLease(l.shardID, p) {
			// No lease, yet in the stream, and no child of it started (nor
			// reset to LATEST, which skips it: skipsAncestors): it
			// was never made, or an earlier stream's lease of that shard ID
			// was deleted (a cleanup by the Java KCL's rule: its children
			// had started). A sync makes it, as it makes the parent of no
			// started shard (ancestorsOfLeased); until then the child
			// waits (found by the simulation, seed 356). The sync is asked
			// for at most once a LeaseDuration.
			c.log.Debug("kcl: a parent in the stream has no lease; the child waits for a sync to make it", "shard", l.shardID, "parent", p)
			if time.Since(k.parentSync) > c.opts.LeaseDuration {
				k.parentSync = time.Now()
				notify(k.syncNow)
			}
			return false, nil
		}
	}
	return true, nil
}

// childStarted reports whether a lease of byShard, the pass's read, names
// parent as its parent and started, or was reset to LATEST: then parent was
// read to its end (the Java KCL deletes a parent's lease once its children
// started) or is skipped, and no sync makes its lease again
// (skipsAncestors).
func childStarted(parent string, byShard map[string]lease) bool {
	for _, l := range byShard {
		if slices.Contains(l.parents, parent) && (started(l) || resetToLatest(l)) {
			return true
		}
	}
	return false
}

// listedWithoutLease reports whether parent, a lease key, names a shard the
// last listing of child's stream holds.
func (c *Consumer) listedWithoutLease(child, parent string) bool {
	s, _, ok := c.streamOf(child)
	if !ok {
		return false
	}
	_, shard := splitLeaseKey(parent)
	_, found, _ := s.listedShard(shard)
	return found
}

// startReader starts reading the shard of a lease just taken, on a
// goroutine of its own; if shutdown began meanwhile, or its stream is no
// longer read (created again under its name while the take was in
// flight), it gives the lease back instead.
func (k *leaseKeeper) startReader(leaseCtx context.Context, l lease, storedStart bool) {
	c := k.c
	stream, shard, ok := c.streamOf(l.shardID) // assess takes only leases of the streams read
	h := newHeldLease(l, stream, shard)
	if !ok || stream.earlierThan(l) {
		// Not a stream read here; or an earlier stream's lease, taken on a
		// read of the table made before this worker found its stream
		// created again: its checkpoint is no position in the new stream
		// (LATEST there would skip the new stream's first records). It is
		// released, and a sync replaces it (incarnation.go).
		c.releaseLease(leaseCtx, h)
		return
	}
	h.startAt, h.storedStart = l.startAt, storedStart
	started := c.held.start(h, func() {
		ctx, cancel := context.WithCancel(c.readCtx)
		fetchCtx, stopFetch := context.WithCancel(ctx)
		h.cancel, h.stopFetch = cancel, stopFetch
		c.readers.Go(func() error {
			defer cancel()
			r := newShardReader(c.readerEnv(), h)
			if err := r.read(fetchCtx); err != nil {
				return err
			}
			r.finishHandoff(ctx)
			return nil
		})
	})
	if !started {
		c.releaseLease(leaseCtx, h) // shutdown began while taking: give it back
	}
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

// removeDeadWorkers deletes the heartbeat items of dead, each if its
// counter is still the one judged (deadWorkers).
func (k *leaseKeeper) removeDeadWorkers(ctx context.Context, dead map[string]int64) {
	c := k.c
	for id, counter := range dead {
		if err := c.table.removeWorker(ctx, id, counter); err == nil {
			c.log.Info("kcl: removed the heartbeat of a dead worker", "dead_worker", id)
		}
	}
}

// reportBadLeases logs each lease item kcl does not understand, once.
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
