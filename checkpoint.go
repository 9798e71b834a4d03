package kcl

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"
)

// Sentinel checkpoints, as the Java KCL writes them in the lease table.
const (
	checkpointTrimHorizon = "TRIM_HORIZON"
	checkpointLatest      = "LATEST"
	checkpointAtTimestamp = "AT_TIMESTAMP"
	checkpointShardEnd    = "SHARD_END"
)

// checkpoint is a place in a shard: the sequence number and sub-sequence
// number of the last record handled, or one of the sentinels above (with
// sub 0).
type checkpoint struct {
	seq string
	sub int64
}

func (c checkpoint) isSentinel() bool {
	switch c.seq {
	case checkpointTrimHorizon, checkpointLatest, checkpointAtTimestamp, checkpointShardEnd:
		return true
	}
	return false
}

func (c checkpoint) shardEnd() bool { return c.seq == checkpointShardEnd }

// writeCheckpoint stores the acked prefix of h (SHARD_END when shardEnd) as
// its checkpoint, fenced by the lease owner and counter, and passes the
// lease to next in the same write. It runs on the caller's goroutine.
//
//   - next is this worker's ID: it keeps the lease; "" releases it; another
//     worker's ID hands it over. A write that passes the lease on closes
//     h's ack window first (unless ctx is over): the prefix it writes is
//     the one acked by then. Once passed on, h is forgotten.
//   - This is the one place a checkpoint of a held lease is written: by the
//     periodic flush, the fence after a late heartbeat, at shard end, on
//     hand-off and on shutdown.
//   - Transient errors are retried until ctx ends. Each attempt
//     (checkpointOnce) writes the prefix as it is then (as it was at the
//     close, for a write that passes the lease on), read under the
//     lease's lock, so no write ever moves the checkpoint back behind one
//     written before it.
//   - A lost lease is forgotten (heldSet.forgetLost).
//
// It returns what it wrote, and how many delivered records were not acked
// then.
func (c *Consumer) writeCheckpoint(ctx context.Context, h *heldLease, next string, shardEnd bool) (checkpoint, int, error) {
	var cp checkpoint
	var unacked int
	if next != c.opts.WorkerID && ctx.Err() == nil {
		// Passing the lease on: its records' acks stop counting, and
		// Process ends its handler contexts and starts no more calls of it,
		// before the write is sent. A lost reply would leave them live
		// until a retry read the lease back, beside the next owner.
		h.window.close()
	}
	err := retryErr(ctx, running, &c.counters.retryCounters, c.log.With("shard", h.shardID), "checkpoint write", isLeaseLost, func() error {
		var err error
		cp, unacked, err = c.checkpointOnce(ctx, h, shardEnd, next)
		return err
	})
	if isLeaseLost(err) {
		c.held.forgetLost(h, "")
	}
	if err != nil {
		return cp, unacked, err
	}
	c.log.Debug("kcl: checkpoint written", "shard", h.shardID, "checkpoint", cp.seq, "sub", cp.sub, "owner", next)
	if next != c.opts.WorkerID && ctx.Err() == nil {
		h.markGone()
		c.held.forget(h)
	}
	return cp, unacked, nil
}

// checkpointOnce makes one attempt at writing the acked prefix of h
// (SHARD_END when shardEnd) and passing the lease to next. It returns what
// it wrote and how many delivered records were not acked then.
//
//   - It holds h.mu for one bounded attempt: writes of one lease never
//     interleave, the prefix it reads is never behind one already written,
//     and the lock is never held across a retry's wait.
//   - A write that failed without an answer may still have taken effect: it
//     is remembered (h.unsure), with every other since the last write
//     confirmed. All were conditioned on the same counter, so at most one
//     of them took effect.
//   - A write that passes the lease on (released, ended or handed off)
//     leaves h.lease naming the next owner: no later write of this worker
//     touches the lease, though it was queued behind this one (a flush).
//   - When a write's condition fails, the lease is read back (readBack). If
//     it holds exactly what this write, or an unsure one that kept the
//     lease, wrote (the next counter, the checkpoint, the owner, and this
//     process's token if it kept the lease), that write took effect and
//     only its reply was lost. For an unsure one the lease moves on from
//     what the table holds and this write is made again (errWriteAgain,
//     retried). Anything else is a lost lease.
func (c *Consumer) checkpointOnce(ctx context.Context, h *heldLease, shardEnd bool, next string) (checkpoint, int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	cp, unacked := h.window.state()
	if shardEnd {
		cp = checkpoint{seq: checkpointShardEnd}
	}
	if h.gone || h.lease.owner != c.opts.WorkerID {
		return cp, unacked, errLeaseLost // ended for this worker: no write of its touches it again
	}
	// One attempt, bounded: a call that never answers must not hold the
	// lock, and with it every other writer of this lease, for ever.
	ctx, cancel := context.WithTimeout(ctx, c.opts.heartbeatInterval())
	defer cancel()
	before, w := h.lease, c.beat.writer()
	this := leaseWrite{cp: cp, next: next, w: w}
	l, err := c.table.checkpoint(ctx, before, cp, next, w)
	if ignoreLost(err) != nil {
		h.remember(this)
		return cp, unacked, err
	}
	if isLeaseLost(err) {
		wrote := func(s lease, lw leaseWrite) bool {
			return s.counter == before.counter+1 && s.checkpoint == lw.cp && s.owner == lw.next && (lw.next != lw.w.id || s.writer == lw.w)
		}
		earlier := func(s lease) bool { // an unsure write that kept the lease
			return s.owner == w.id && slices.ContainsFunc(h.unsure, func(u leaseWrite) bool { return wrote(s, u) })
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

// maxUnsure caps the writes remembered as unsure (heldLease.remember).
const maxUnsure = 64

// remember notes w, a write that failed without an answer, among those
// that may have taken effect (h.mu held). Each distinct write is noted
// once; past maxUnsure the oldest is dropped: should it be the one that
// took effect, the next write's read-back takes the lease for lost, which
// only delivers again what was acked since the last write confirmed.
func (h *heldLease) remember(w leaseWrite) {
	if slices.Contains(h.unsure, w) {
		return
	}
	if len(h.unsure) == maxUnsure {
		h.unsure = slices.Delete(h.unsure, 0, 1)
	}
	h.unsure = append(h.unsure, w)
}

// leaseWrite is what a checkpoint write writes.
type leaseWrite struct {
	cp   checkpoint
	next string
	w    writer // the mark it wrote when it kept the lease: its beat is that moment's
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

// flush writes the acked prefix of every held shard whose checkpoint moved
// since it was last written, up to 8 at a time. It runs on the lease loop.
//
//   - Each write gets at most a heartbeat interval: a write that keeps
//     failing is retried by the next flush, and never holds up the other
//     shards or the lease loop for longer.
//   - A write that no retry can fix is returned.
func (k *leaseKeeper) flush(ctx context.Context) error {
	c := k.c
	var g errgroup.Group
	g.SetLimit(8)
	for _, h := range c.held.list() {
		acked, _ := h.window.state()
		if acked == h.stored.Load().cp {
			continue
		}
		g.Go(func() error {
			wctx, cancel := context.WithTimeout(ctx, c.opts.heartbeatInterval())
			_, _, err := c.writeCheckpoint(wctx, h, c.opts.WorkerID, false)
			cancel()
			if isFatal(err) {
				return fmt.Errorf("lease table %q: checkpoint of shard %q: %w", c.table.name(), h.shardID, err)
			}
			if ignoreLost(err) != nil && ctx.Err() == nil {
				c.log.Warn("kcl: checkpoint write failed; retrying next flush", "shard", h.shardID, "error", err)
			}
			return nil
		})
	}
	return g.Wait()
}

// releaseLease writes the acked prefix of h and gives the lease up, so that
// another worker can start the shard at once, right after it. It runs on
// the caller's goroutine (run's shutdown, or the lease loop).
func (c *Consumer) releaseLease(ctx context.Context, h *heldLease) {
	acked, unacked, err := c.writeCheckpoint(ctx, h, "", false)
	if ignoreLost(err) != nil {
		c.log.Warn("kcl: lease not released; it expires after LeaseDuration", "shard", h.shardID, "error", err)
		return
	}
	if err == nil {
		c.log.Info("kcl: lease released", "shard", h.shardID, "checkpoint", acked.seq, "unacked_dropped", unacked)
	}
}
