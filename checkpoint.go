package kcl

import (
	"context"
	"errors"
	"fmt"

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
// lease to next in the same write: this worker keeps it when next is its own
// ID, "" releases it, another worker's ID hands it over. This is the one
// place a checkpoint of a held lease is written: by the periodic flush, the
// fence after a late heartbeat, at shard end, on hand-off and on shutdown.
// Transient errors are retried until ctx ends; each attempt writes the
// prefix as it is then, read under the lease's lock, so no write ever moves
// the checkpoint back behind one written before it. It returns what it wrote,
// and how many delivered records were not acked then.
func (c *Consumer) writeCheckpoint(ctx context.Context, h *heldLease, next string, shardEnd bool) (checkpoint, int, error) {
	var cp checkpoint
	var unacked int
	_, err := retry(ctx, &c.counters.retryCounters, c.log.With("shard", h.shardID), "checkpoint write", isLeaseLost, func() (struct{}, error) {
		var err error
		cp, unacked, err = c.checkpointOnce(ctx, h, shardEnd, next)
		return struct{}{}, err
	})
	if isLeaseLost(err) {
		c.forgetLost(h, "")
	}
	if err != nil {
		return cp, unacked, err
	}
	c.log.Debug("kcl: checkpoint written", "shard", h.shardID, "checkpoint", cp.seq, "sub", cp.sub, "owner", next)
	if next != c.opts.WorkerID {
		h.mu.Lock()
		h.gone = true
		h.mu.Unlock()
		c.forget(h)
	}
	return cp, unacked, nil
}

func isLeaseLost(err error) bool { return errors.Is(err, errLeaseLost) }

// flush writes the acked prefix of every held shard whose
// checkpoint moved since it was last written, up to 8 at a time. Each write
// gets at most a heartbeat interval: a write that keeps failing is retried
// by the next flush, and never holds up the other shards or the lease loop
// for longer. A write that no retry can fix is returned.
func (k *leaseKeeper) flush(ctx context.Context) error {
	c := k.c
	var g errgroup.Group
	g.SetLimit(8)
	for _, h := range c.heldLeases() {
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
			if err != nil && !isLeaseLost(err) && ctx.Err() == nil {
				c.log.Warn("kcl: checkpoint write failed; retrying next flush", "shard", h.shardID, "error", err)
			}
			return nil
		})
	}
	return g.Wait()
}

// releaseLease writes the acked prefix of h and gives the lease up, so that
// another worker can start the shard at once, right after it.
func (c *Consumer) releaseLease(ctx context.Context, h *heldLease) {
	acked, unacked, err := c.writeCheckpoint(ctx, h, "", false)
	if err != nil && !isLeaseLost(err) {
		c.log.Warn("kcl: lease not released; it expires after LeaseDuration", "shard", h.shardID, "error", err)
		return
	}
	if err == nil {
		c.log.Info("kcl: lease released", "shard", h.shardID, "checkpoint", acked.seq, "unacked_dropped", unacked)
	}
}
