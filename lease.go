package kcl

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// A lease gives one worker the right to read one shard and to write its
// checkpoint. Leases live in the lease table (see leasetable.go for the
// DynamoDB layout, that of the Java KCL 2.x).
type lease struct {
	shardID       string
	owner         string // empty: unassigned
	counter       int64  // bumped by every write; writes are conditional on it
	checkpoint    checkpoint
	ownerSwitches int64
	parents       []string
}

// errLeaseLost says a conditional write found the lease changed: another
// worker owns it now, or it was edited.
var errLeaseLost = errors.New("kcl: lease lost")

// leaseTable stores leases. take, renew and checkpoint succeed only if the
// stored lease still has the counter (and owner) of the lease passed in, and
// return errLeaseLost otherwise. Implementations are safe for concurrent use.
type leaseTable interface {
	name() string
	ensure(ctx context.Context) error
	list(ctx context.Context) (leases []lease, bad []error, err error)
	create(ctx context.Context, l lease) (created bool, err error)
	take(ctx context.Context, l lease, owner string) (lease, error)
	renew(ctx context.Context, l lease) (lease, error)
	checkpoint(ctx context.Context, l lease, cp checkpoint, release bool) (lease, error)
}

// heldLease is a lease this worker owns, with the reader of its shard and the
// acks of what that reader delivered.
type heldLease struct {
	shardID string
	window  *ackWindow
	cancel  context.CancelFunc // stops the shard's reader

	mu        sync.Mutex // held across every write of the lease: each is conditional on the counter
	lease     lease
	written   checkpoint // the checkpoint as stored in the table
	renewedAt time.Time  // last successful write, on this worker's clock
	gone      bool       // released, ended or lost: no more writes
}

// observation is what this worker last saw of another worker's lease, on its
// own clock: a lease whose counter has not moved for LeaseDuration is expired.
// No clock synchronisation between workers is needed.
type observation struct {
	counter int64
	owner   string
	since   time.Time
}

// runLeases keeps this worker's leases: it renews them, flushes checkpoints,
// syncs the shard list and takes free or expired leases, until ctx ends. It
// returns only fatal errors (the lease table or the stream is unusable).
func (c *Consumer) runLeases(ctx context.Context) error {
	renew := time.NewTicker(c.opts.LeaseDuration / 3)
	defer renew.Stop()
	flush := time.NewTicker(c.opts.CheckpointInterval)
	defer flush.Stop()
	shardSync := time.NewTicker(c.opts.ShardSyncInterval)
	defer shardSync.Stop()
	for {
		var err error
		select {
		case <-ctx.Done():
			return nil
		case <-renew.C:
			c.renewLeases(ctx)
			err = c.takeLeases(ctx)
		case <-flush.C:
			c.flushCheckpoints(ctx)
		case <-shardSync.C:
			err = c.syncAndTake(ctx)
		case <-c.syncNow:
			err = c.syncAndTake(ctx)
		case <-c.takeNow:
			err = c.takeLeases(ctx)
		}
		if err != nil && isFatal(err) {
			return err
		}
		if err != nil && ctx.Err() == nil {
			c.log.Warn("kcl: lease cycle failed; retrying next cycle", "error", err, "code", errorCode(err))
		}
	}
}

func (c *Consumer) syncAndTake(ctx context.Context) error {
	if err := c.syncShards(ctx); err != nil {
		return err
	}
	return c.takeLeases(ctx)
}

func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// takeLeases reads the lease table and takes every lease that is unowned or
// expired and whose shard may be read now: not ended, and every parent ended.
// This is the one place where a lease is taken.
func (c *Consumer) takeLeases(ctx context.Context) error {
	leases, bad, err := c.table.list(ctx)
	if err != nil {
		return err
	}
	c.reportBadLeases(bad)
	now := time.Now()
	byShard := make(map[string]lease, len(leases))
	for _, l := range leases {
		byShard[l.shardID] = l
	}

	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return nil
	}
	var candidates []lease
	for _, l := range leases {
		obs, seen := c.seen[l.shardID]
		if !seen || obs.counter != l.counter || obs.owner != l.owner {
			obs = observation{counter: l.counter, owner: l.owner, since: now}
			c.seen[l.shardID] = obs
		}
		if _, held := c.held[l.shardID]; held || l.checkpoint.shardEnd() {
			continue
		}
		if _, listed := c.shards[l.shardID]; !listed {
			continue // not a shard of this stream now (trimmed, or another stream's)
		}
		free := l.owner == "" || l.owner == c.opts.WorkerID || now.Sub(obs.since) > c.opts.LeaseDuration
		if free && parentsDone(l, byShard) {
			candidates = append(candidates, l)
		}
	}
	c.mu.Unlock()

	for _, l := range candidates {
		taken, err := c.table.take(ctx, l, c.opts.WorkerID)
		if errors.Is(err, errLeaseLost) {
			continue // another worker was faster
		}
		if err != nil {
			return err
		}
		c.log.Info("kcl: lease taken", "shard", l.shardID, "checkpoint", l.checkpoint.seq, "previous_owner", l.owner)
		c.startReader(ctx, taken)
	}
	return nil
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
	h := &heldLease{shardID: l.shardID, lease: l, written: l.checkpoint, renewedAt: time.Now(), window: newAckWindow(l.checkpoint)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		// Shutdown began while taking: give the lease straight back.
		c.mu.Unlock()
		c.releaseLease(leaseCtx, h)
		c.mu.Lock()
		return
	}
	ctx, cancel := context.WithCancel(c.readCtx)
	h.cancel = cancel
	c.held[l.shardID] = h
	c.readers.Go(func() error {
		defer cancel()
		return c.readShard(ctx, h)
	})
}

// heldLeases returns a snapshot of the leases held.
func (c *Consumer) heldLeases() []*heldLease {
	c.mu.Lock()
	defer c.mu.Unlock()
	hs := make([]*heldLease, 0, len(c.held))
	for _, h := range c.held {
		hs = append(hs, h)
	}
	slices.SortFunc(hs, func(a, b *heldLease) int { return compareStrings(a.shardID, b.shardID) })
	return hs
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
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

// writeLease runs one conditional write of h under its lock. A lease found
// lost is forgotten at once: its shard stops being delivered.
func (c *Consumer) writeLease(h *heldLease, write func(lease) (lease, error)) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.gone {
		return errLeaseLost
	}
	l, err := write(h.lease)
	switch {
	case errors.Is(err, errLeaseLost):
		h.gone = true
		c.log.Warn("kcl: lease lost; shard no longer delivered", "shard", h.shardID)
		c.forget(h)
		return err
	case err != nil:
		if time.Since(h.renewedAt) > c.opts.LeaseDuration {
			// Others may rightly think it expired: stop before they start.
			h.gone = true
			c.log.Warn("kcl: lease not renewed within LeaseDuration; shard no longer delivered", "shard", h.shardID, "error", err)
			c.forget(h)
		}
		return err
	}
	h.lease, h.written, h.renewedAt = l, l.checkpoint, time.Now()
	return nil
}

// renewLeases bumps the counter of every lease held, a few at a time.
func (c *Consumer) renewLeases(ctx context.Context) {
	var g errgroup.Group
	g.SetLimit(8)
	for _, h := range c.heldLeases() {
		g.Go(func() error {
			err := c.writeLease(h, func(l lease) (lease, error) { return c.table.renew(ctx, l) })
			if err != nil && !errors.Is(err, errLeaseLost) && ctx.Err() == nil {
				c.log.Warn("kcl: lease renewal failed; retrying next cycle", "shard", h.shardID, "error", err, "code", errorCode(err))
			}
			return nil
		})
	}
	_ = g.Wait()
}
