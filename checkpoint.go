package kcl

import (
	"context"
	"errors"
	"sync"
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

// ackWindow tracks the records of one shard delivered under one lease
// acquisition, in delivery order, and turns acks that arrive in any order into
// the contiguous prefix that may be checkpointed.
//
// Methods are safe for concurrent use. Once closed (the lease was lost or
// given up), pushes fail and acks are ignored, so a late ack can never move a
// checkpoint that now belongs to another worker.
type ackWindow struct {
	mu      sync.Mutex
	pending []pendingRecord // delivered, not yet part of the acked prefix; pending[head] has index first
	head    int
	first   uint64
	acked   checkpoint // the last record of the acked prefix (or the starting checkpoint)
	closed  bool
	// counted acks, for Stats
	ackedRecords, ackedBytes int64
	changed                  chan struct{} // signalled when a waiter's condition holds, or on close
	waitFor                  int           // a waiter wants fewer unacked than this; 0: none waits
}

type pendingRecord struct {
	cp    checkpoint
	size  int
	acked bool
}

func newAckWindow(start checkpoint) *ackWindow {
	return &ackWindow{acked: start, changed: make(chan struct{}, 1)}
}

// push registers records about to be delivered, in order, and returns the
// index of the first. It must be called before they can reach the user, so
// that no ack can come first. ok is false once the window is closed.
func (w *ackWindow) push(recs []Record) (first uint64, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, false
	}
	first = w.first + uint64(len(w.pending)-w.head)
	for i := range recs {
		w.pending = append(w.pending, pendingRecord{cp: checkpoint{seq: recs[i].SequenceNumber, sub: recs[i].SubSequenceNumber}, size: len(recs[i].Data)})
	}
	return first, true
}

// truncate withdraws the records pushed from index on, which could not be
// delivered.
func (w *ackWindow) truncate(index uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if index >= w.first {
		if keep := w.head + int(index-w.first); keep < len(w.pending) {
			w.pending = w.pending[:keep]
		}
	}
}

// ack marks the record at index as handled and extends the acked prefix as
// far as it is contiguous. Unknown, repeated and late acks are ignored.
func (w *ackWindow) ack(index uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || index < w.first || index >= w.first+uint64(len(w.pending)-w.head) {
		return
	}
	p := &w.pending[w.head+int(index-w.first)]
	if !p.acked {
		p.acked = true
		w.ackedRecords++
		w.ackedBytes += int64(p.size)
	}
	if index != w.first {
		return
	}
	for w.head < len(w.pending) && w.pending[w.head].acked {
		w.acked = w.pending[w.head].cp
		w.pending[w.head] = pendingRecord{}
		w.head++
		w.first++
	}
	// Reuse the slice's front once most of it is consumed.
	if w.head == len(w.pending) {
		w.pending, w.head = w.pending[:0], 0
	} else if w.head > 1024 && w.head > len(w.pending)/2 {
		w.pending = append(w.pending[:0], w.pending[w.head:]...)
		w.head = 0
	}
	// Wake a waiter only when its condition holds: most acks find none.
	if w.waitFor > 0 && len(w.pending)-w.head < w.waitFor {
		w.waitFor = 0
		w.signal()
	}
}

func (w *ackWindow) signal() {
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// state returns the acked prefix's checkpoint and how many delivered records
// are not part of it.
func (w *ackWindow) state() (acked checkpoint, unacked int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.acked, len(w.pending) - w.head
}

// stats returns the acked prefix, the unacked count, and the records and
// bytes acked so far.
func (w *ackWindow) stats() (acked checkpoint, unacked int, records, bytes int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.acked, len(w.pending) - w.head, w.ackedRecords, w.ackedBytes
}

// close makes the window ignore every later push and ack.
func (w *ackWindow) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	w.signal()
}

// waitBelow blocks until fewer than n delivered records are unacked, the
// window closes, or ctx ends. It reports whether the condition holds. Only one
// goroutine at a time may wait on a window.
func (w *ackWindow) waitBelow(ctx context.Context, n int) bool {
	for {
		w.mu.Lock()
		unacked, closed := len(w.pending)-w.head, w.closed
		if !closed && unacked >= n {
			w.waitFor = n // registered under the lock: no ack can slip past
		}
		w.mu.Unlock()
		if closed {
			return false
		}
		if unacked < n {
			return true
		}
		select {
		case <-w.changed:
		case <-ctx.Done():
			return false
		}
	}
}

// writeCheckpoint stores cp as the checkpoint of h, fenced by the lease
// owner and counter, and passes the lease to next in the same write: this
// worker keeps it when next is its own ID, "" releases it, another worker's
// ID hands it over. This is the one place a checkpoint is written: by the
// periodic flush, at shard end, on hand-off and on shutdown. Transient errors
// are retried until ctx ends.
func (c *Consumer) writeCheckpoint(ctx context.Context, h *heldLease, cp checkpoint, next string) error {
	err := c.writeLease(h, func(l lease) (lease, error) {
		return retry(ctx, &c.counters.retryCounters, c.log.With("shard", h.shardID), "checkpoint write", isLeaseLost, func() (lease, error) {
			return c.table.checkpoint(ctx, l, cp, next)
		})
	})
	if err != nil {
		return err
	}
	c.log.Debug("kcl: checkpoint written", "shard", h.shardID, "checkpoint", cp.seq, "sub", cp.sub, "owner", next)
	if next != c.opts.WorkerID {
		h.mu.Lock()
		h.gone = true
		h.mu.Unlock()
		c.forget(h)
	}
	return nil
}

func isLeaseLost(err error) bool { return errors.Is(err, errLeaseLost) }

// flushCheckpoints writes the acked prefix of every held shard whose
// checkpoint moved since it was last written. Each write gets at most a
// heartbeat interval: a write that keeps failing is retried by the next
// flush, and never holds up the lease loop's heartbeats.
func (c *Consumer) flushCheckpoints(ctx context.Context) {
	for _, h := range c.heldLeases() {
		acked, _ := h.window.state()
		if acked == h.stored.Load().cp {
			continue
		}
		wctx, cancel := context.WithTimeout(ctx, c.opts.heartbeatInterval())
		err := c.writeCheckpoint(wctx, h, acked, c.opts.WorkerID)
		cancel()
		if err != nil && !isLeaseLost(err) && ctx.Err() == nil {
			c.log.Warn("kcl: checkpoint write failed; retrying next flush", "shard", h.shardID, "error", err)
		}
	}
}

// releaseLease writes the acked prefix of h and gives the lease up, so that
// another worker can start the shard at once, right after it.
func (c *Consumer) releaseLease(ctx context.Context, h *heldLease) {
	acked, unacked := h.window.state()
	if err := c.writeCheckpoint(ctx, h, acked, ""); err != nil && !isLeaseLost(err) {
		c.log.Warn("kcl: lease not released; it expires after LeaseDuration", "shard", h.shardID, "error", err)
		return
	}
	c.log.Info("kcl: lease released", "shard", h.shardID, "checkpoint", acked.seq, "unacked_dropped", unacked)
}
