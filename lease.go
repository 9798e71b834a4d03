package kcl

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

// A lease gives one worker the right to read one shard and to write its
// checkpoint. Leases live in the lease table (see leasetable.go for the
// DynamoDB layout, that of the Java KCL 2.x).
//
// Liveness: every worker writes a heartbeat item of its own in the lease
// table every LeaseDuration/3, instead of renewing each lease, so the writes
// grow with the number of workers, not of shards. A lease is expired when
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
}

// workerBeat is a worker's heartbeat item.
type workerBeat struct {
	counter  int64
	stopping bool // shutting down: it releases its leases and takes none
}

// tableSnapshot is one read of the whole lease table.
type tableSnapshot struct {
	leases  []lease
	workers map[string]workerBeat
	bad     []error // items kcl does not understand; reported, never rewritten
}

// errLeaseLost says a conditional write found the lease changed: another
// worker owns it now, or it was edited.
var errLeaseLost = errors.New("kcl: lease lost")

// leaseTable stores leases and heartbeats. Lease writes succeed only while
// the stored lease still has the owner and counter of the lease passed in,
// and return errLeaseLost otherwise. Implementations are safe for concurrent
// use.
type leaseTable interface {
	name() string
	ensure(ctx context.Context) error
	list(ctx context.Context) (tableSnapshot, error)
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
	heartbeat(ctx context.Context, worker string, stopping bool) error
	// removeWorker deletes a worker's heartbeat item, if its counter is still
	// counter (any counter when counter < 0).
	removeWorker(ctx context.Context, worker string, counter int64) error
}

// heldLease is a lease this worker owns, with the reader of its shard and the
// acks of what that reader delivered.
type heldLease struct {
	shardID   string
	window    *ackWindow
	cancel    context.CancelFunc // stops the shard's reader
	stopFetch context.CancelFunc // stops fetching only, for a hand-off

	counters        shardCounters
	warnedMalformed bool // reader only

	// stored is the checkpoint as the table holds it and when this worker
	// wrote it (or took the lease): read without mu, which is held across I/O.
	stored atomic.Pointer[storedCheckpoint]

	mu      sync.Mutex // held across every write of the lease: each is conditional on the counter
	lease   lease
	handoff string // worker to hand the lease to, once asked
	gone    bool   // released, ended, handed off or lost: no more writes
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
func (o *Options) heartbeatInterval() time.Duration { return o.LeaseDuration / 3 }

// takeInterval is how often the table is read to take, balance and notice
// expiry: a tenth of LeaseDuration (a crashed worker's leases are taken
// within LeaseDuration plus two reads, 1.2 LeaseDuration), and at least once
// a second (released leases are taken within about a second).
func (o *Options) takeInterval() time.Duration { return min(o.LeaseDuration/10, time.Second) }

const workerKeyPrefix = "kcl-worker:"

// runLeases keeps this worker's leases until ctx ends: it writes heartbeats,
// flushes checkpoints, syncs the shard list, and takes, balances and hands
// off leases. Heartbeats run on their own goroutine, so that slow lease
// work never delays them. It returns only fatal errors (the lease table or
// the stream is unusable).
func (c *Consumer) runLeases(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return c.heartbeats(ctx) })
	g.Go(func() error { return c.keepLeases(ctx) })
	return g.Wait()
}

// heartbeats writes this worker's heartbeat every LeaseDuration/3.
func (c *Consumer) heartbeats(ctx context.Context) error {
	beat := time.NewTicker(c.opts.heartbeatInterval())
	defer beat.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-beat.C:
			if err := c.heartbeat(ctx); err != nil && isFatal(err) {
				return err
			}
		}
	}
}

// keepLeases runs the rest of the lease work on its tickers.
func (c *Consumer) keepLeases(ctx context.Context) error {
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
			err = c.balance(ctx)
		case <-c.takeNow:
			err = c.balance(ctx)
		case <-flush.C:
			c.flushCheckpoints(ctx)
		case <-shardSync.C:
			err = c.syncAndBalance(ctx)
		case <-c.syncNow:
			err = c.syncAndBalance(ctx)
		}
		if err != nil && isFatal(err) {
			return err
		}
		if err != nil && ctx.Err() == nil {
			c.log.Warn("kcl: lease cycle failed; retrying next cycle", "error", err, "code", errorCode(err))
		}
	}
}

func (c *Consumer) syncAndBalance(ctx context.Context) error {
	if err := c.syncShards(ctx); err != nil {
		return err
	}
	return c.balance(ctx)
}

func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// heartbeat writes this worker's heartbeat. A worker whose heartbeat has not
// been written for LeaseDuration pauses every shard (pause.go): others may
// rightly think it dead and take its leases.
func (c *Consumer) heartbeat(ctx context.Context) error {
	c.mu.Lock()
	stopping := c.closing
	c.mu.Unlock()
	// Transient errors are retried within one heartbeat interval.
	bctx, cancel := context.WithTimeout(ctx, c.opts.heartbeatInterval())
	defer cancel()
	var sent time.Time // the write takes effect no earlier than this
	_, err := retry(bctx, &c.counters.retryCounters, c.log, "heartbeat", nil, func() (struct{}, error) {
		sent = time.Now()
		return struct{}{}, c.table.heartbeat(bctx, c.opts.WorkerID, stopping)
	})
	c.mu.Lock()
	if err == nil {
		c.beatAt = sent
	}
	stale := time.Since(c.beatAt) > c.opts.LeaseDuration
	c.mu.Unlock()
	switch {
	case stale && c.pause.close():
		c.log.Warn("kcl: heartbeat not written within LeaseDuration; every shard paused until it is", "shards", len(c.heldLeases()), "error", err)
	case !stale && c.pause.isShut():
		notify(c.takeNow) // the next table read resumes the shards still held
	}
	return err
}

// balance reads the lease table, notices lost leases and hand-off requests,
// and takes this worker's fair share: free and expired leases first, then
// hand-offs from the most loaded workers. This is the one place where a
// lease is taken.
func (c *Consumer) balance(ctx context.Context) error {
	listed := time.Now()
	snap, err := c.table.list(ctx)
	if err != nil {
		return err
	}
	c.reportBadLeases(snap.bad)
	now := time.Now()
	me := c.opts.WorkerID

	c.mu.Lock()
	c.lastTable = snap.leases
	if c.closing || now.Sub(c.beatAt) > c.opts.LeaseDuration {
		c.mu.Unlock()
		return nil
	}
	// A paused worker resumes on a read of the table made after its
	// heartbeat was written again, once it has dropped the leases taken
	// from it meanwhile.
	resume := c.pause.isShut() && listed.After(c.beatAt)
	fresh := func(key string, counter int64, owner string) bool {
		obs, seen := c.seen[key]
		if !seen || obs.counter != counter || obs.owner != owner {
			obs = observation{counter: counter, owner: owner, since: now}
			c.seen[key] = obs
		}
		return now.Sub(obs.since) <= c.opts.LeaseDuration
	}
	workerAlive := map[string]bool{me: true}
	workers := []string{me}
	for id, w := range snap.workers {
		if id == me {
			continue
		}
		if fresh(workerKeyPrefix+id, w.counter, "") {
			workerAlive[id] = true
			if !w.stopping {
				workers = append(workers, id)
			}
		}
	}
	byShard := make(map[string]lease, len(snap.leases))
	for _, l := range snap.leases {
		byShard[l.shardID] = l
	}
	var shares []shareLease
	var toUnclaim []lease
	type handoff struct {
		h  *heldLease
		to string
	}
	var handoffs []handoff
	var lost []*heldLease
	var toPass []lease
	for _, l := range snap.leases {
		leaseFresh := fresh(l.shardID, l.counter, l.owner)
		h, held := c.held[l.shardID]
		if held && l.owner != me {
			lost = append(lost, h)
			held = false
		}
		if l.checkpoint.shardEnd() || !parentsDone(l, byShard) {
			continue
		}
		if _, listed := c.shards[l.shardID]; !listed {
			continue // not a shard of this stream now (trimmed, or another stream's)
		}
		owner := l.owner
		if owner != "" && owner != me && !workerAlive[owner] && !leaseFresh {
			owner = "" // expired
		}
		if !slices.Contains(workers, owner) && owner != "" {
			// A live owner that is stopping, or one without a heartbeat
			// item (a Java KCL worker): counted as a worker of its own.
			if _, beats := snap.workers[owner]; !beats {
				workers = append(workers, owner)
			}
		}
		claimant := l.handoffTo
		if owner == "" {
			claimant = "" // nobody to hand it over: it is free for any worker to take
		} else if claimant != "" && (!workerAlive[claimant] || claimant == owner) {
			if owner == me {
				toUnclaim = append(toUnclaim, l)
			}
			claimant = ""
		}
		switch {
		case held && claimant != "":
			handoffs = append(handoffs, handoff{h, claimant})
		case l.owner == me && !held && claimant != "":
			// Owned by an earlier run of this worker ID, and asked for:
			// nothing of it is delivered here, so it goes to the claimant.
			toPass = append(toPass, l)
		}
		shares = append(shares, shareLease{shardID: l.shardID, owner: owner, claimant: claimant, heldByMe: held, ownedByMe: l.owner == me})
	}
	c.mu.Unlock()

	for _, h := range lost {
		c.forgetLost(h, byShard[h.shardID].owner)
	}
	if resume && c.pause.open() {
		c.log.Info("kcl: heartbeat written again; shards resumed", "shards", len(c.heldLeases()))
	}
	for _, ho := range handoffs {
		c.requestHandoff(ho.h, ho.to)
	}
	for _, l := range toPass {
		if _, err := c.table.checkpoint(ctx, l, l.checkpoint, l.handoffTo); err != nil && !isLeaseLost(err) {
			return err
		} else if err == nil {
			c.log.Info("kcl: lease handed off", "shard", l.shardID, "to", l.handoffTo, "checkpoint", l.checkpoint.seq, "unacked_dropped", 0)
		}
	}
	for _, l := range toUnclaim {
		if err := c.table.unclaim(ctx, l); err != nil && !isLeaseLost(err) {
			return err
		}
	}
	take, claim := planTakes(me, workers, shares, c.opts.MaxLeasesPerWorker)
	for _, id := range claim {
		if err := c.table.claim(ctx, byShard[id], me); err != nil && !isLeaseLost(err) {
			return err
		} else if err == nil {
			c.log.Info("kcl: hand-off asked", "shard", id, "owner", byShard[id].owner)
		}
	}
	for _, id := range take {
		l := byShard[id]
		taken, err := c.table.take(ctx, l, me)
		if isLeaseLost(err) {
			continue // another worker was faster
		}
		if err != nil {
			return err
		}
		c.log.Info("kcl: lease taken", "shard", id, "checkpoint", l.checkpoint.seq, "previous_owner", l.owner)
		c.startReader(ctx, taken)
	}
	c.removeDeadWorkers(ctx, snap, now)
	return nil
}

// removeDeadWorkers deletes the heartbeat items of workers dead for a while
// that own no lease, so crashed workers do not pile up in the table.
func (c *Consumer) removeDeadWorkers(ctx context.Context, snap tableSnapshot, now time.Time) {
	owners := map[string]bool{}
	for _, l := range snap.leases {
		owners[l.owner] = true
	}
	for id, w := range snap.workers {
		c.mu.Lock()
		obs := c.seen[workerKeyPrefix+id]
		c.mu.Unlock()
		if id != c.opts.WorkerID && !owners[id] && now.Sub(obs.since) > 3*c.opts.LeaseDuration {
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

func (c *Consumer) reportBadLeases(bad []error) {
	for _, err := range bad {
		msg := err.Error()
		c.mu.Lock()
		fresh := !c.reported[msg]
		c.reported[msg] = true
		c.mu.Unlock()
		if fresh {
			c.log.Warn("kcl: lease table item not understood; left as it is", "table", c.table.name(), "error", msg)
		}
	}
}

// startReader starts reading the shard of a lease just taken.
func (c *Consumer) startReader(leaseCtx context.Context, l lease) {
	h := &heldLease{shardID: l.shardID, lease: l, window: newAckWindow(l.checkpoint)}
	h.stored.Store(&storedCheckpoint{cp: l.checkpoint, at: time.Now()})
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
		if err := c.readShard(fetchCtx, h); err != nil {
			return err
		}
		c.finishHandoff(ctx, h)
		return nil
	})
}

// requestHandoff asks the reader of h to stop fetching and hand the lease to
// worker to once what it delivered is acked.
func (c *Consumer) requestHandoff(h *heldLease, to string) {
	h.mu.Lock()
	first := h.handoff == ""
	h.handoff = to
	h.mu.Unlock()
	if first {
		c.log.Info("kcl: handing lease off", "shard", h.shardID, "to", to)
		h.stopFetch()
	}
}

// finishHandoff completes a hand-off after the reader of h stopped fetching:
// it waits up to ShutdownTimeout for the delivered records to be acked, then
// checkpoints the acked prefix and makes the claimant the owner, in one
// write. The new owner reads on from exactly there.
func (c *Consumer) finishHandoff(ctx context.Context, h *heldLease) {
	h.mu.Lock()
	to := h.handoff
	h.mu.Unlock()
	if to == "" || ctx.Err() != nil {
		return
	}
	wait, cancel := context.WithTimeout(ctx, c.opts.ShutdownTimeout)
	h.window.waitBelow(wait, 1)
	cancel()
	acked, unacked := h.window.state()
	if err := c.writeCheckpoint(ctx, h, acked, to); err == nil {
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
	h.gone = true
	h.mu.Unlock()
	c.log.Warn("kcl: lease lost; shard no longer delivered", "shard", h.shardID, "owner", owner)
	c.forget(h)
}

// writeLease runs one conditional write of h under its lock. A lease found
// lost is forgotten at once: its shard stops being delivered.
func (c *Consumer) writeLease(h *heldLease, write func(lease) (lease, error)) error {
	h.mu.Lock()
	if h.gone {
		h.mu.Unlock()
		return errLeaseLost
	}
	l, err := write(h.lease)
	if isLeaseLost(err) {
		h.mu.Unlock()
		c.forgetLost(h, "")
		return err
	}
	if err == nil {
		h.lease = l
		h.stored.Store(&storedCheckpoint{cp: l.checkpoint, at: time.Now()})
	}
	h.mu.Unlock()
	return err
}
