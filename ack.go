package kcl

import (
	"context"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
)

// ackWindow tracks the records of one shard delivered under one lease
// acquisition, in delivery order, and turns acks that arrive in any order into
// the contiguous prefix that may be checkpointed.
//
// An ack only sets a bit (ackChunk): it takes no lock and so never contends
// with the reader or with other acks. The acked prefix is worked out when it
// is asked for (state, stats, waitBelow), under mu.
//
// Methods are safe for concurrent use. Once closed (the lease was lost or
// given up), pushes fail and the prefix no longer moves, so a late ack can
// never move a checkpoint that now belongs to another worker.
type ackWindow struct {
	mu      sync.Mutex
	pending queue[pendingRecord] // delivered, not yet part of the acked prefix; the first has index first
	first   uint64
	chunks  queue[*ackChunk] // the chunks of pending, in order; the first holds index first
	acked   checkpoint       // the last record of the acked prefix (or the starting checkpoint)
	closed  bool
	// the acked prefix's records and bytes, for Stats
	ackedRecords, ackedBytes int64
	changed                  chan struct{} // signalled when a waiter's condition holds, or on close
	ended                    chan struct{} // closed by close: the lease is gone from this worker
	onClose                  []func()      // run by close, before it returns (afterClose)
	// waitFor is set while a waiter wants fewer unacked records than it:
	// then acks take mu to work out the prefix and wake it. 0: none waits.
	waitFor atomic.Int64
}

type pendingRecord struct {
	cp      checkpoint
	size    int
	arrival int64 // ApproximateArrivalTimestamp, Unix nanoseconds: for ShardStats.OldestUnackedAge
}

// ackChunk holds the ack marks of up to 64 consecutive records of a window,
// pushed together. Records point to their chunk, so an ack finds its mark
// without a lock. A chunk is never reused: a record acked long after its
// window moved on, or closed, only marks a chunk nobody reads any more.
type ackChunk struct {
	window *ackWindow
	first  uint64        // index of its first record
	n      uint64        // records in it; under window.mu
	marks  atomic.Uint64 // bit i: record first+i was acked
}

// ack marks the record at index as handled. Repeated acks change nothing.
func (c *ackChunk) ack(index uint64) {
	bit := uint64(1) << (index - c.first)
	if c.marks.Load()&bit != 0 {
		return
	}
	c.marks.Or(bit)
	// The mark is set before waitFor is read, and a waiter sets waitFor
	// before it reads the marks: one of the two sees the other.
	if c.window.waitFor.Load() != 0 {
		c.window.wake()
	}
}

func newAckWindow(start checkpoint) *ackWindow {
	return &ackWindow{acked: start, changed: make(chan struct{}, 1), ended: make(chan struct{})}
}

// push registers records about to be delivered, in order, and points each to
// its ack mark (Record.Ack). It must be called before they can reach the
// user, so that no ack can come first. ok is false once the window is
// closed.
func (w *ackWindow) push(recs []Record) (ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return false
	}
	next := w.first + uint64(w.pending.len())
	for len(recs) > 0 {
		c := &ackChunk{window: w, first: next, n: uint64(min(len(recs), 64))}
		w.chunks.push(c)
		for i := range c.n {
			r := &recs[i]
			r.chunk, r.index = c, next+i
			w.pending.push(pendingRecord{cp: checkpoint{seq: r.SequenceNumber, sub: r.SubSequenceNumber}, size: len(r.Data), arrival: r.ApproximateArrivalTimestamp.UnixNano()})
		}
		recs, next = recs[c.n:], next+c.n
	}
	return true
}

// truncate withdraws the records pushed from index on, which could not be
// delivered.
func (w *ackWindow) truncate(index uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if index < w.first {
		return
	}
	w.pending.truncate(int(index - w.first))
	for w.chunks.len() > 0 {
		c := w.chunks.last()
		if c.first+c.n <= index {
			break
		}
		if c.first < index {
			c.n = index - c.first
			break
		}
		w.chunks.truncate(w.chunks.len() - 1)
	}
}

// advance extends the acked prefix over the records acked since, as far as
// it is contiguous. It is called with mu held.
func (w *ackWindow) advance() {
	if w.closed {
		return
	}
	for w.chunks.len() > 0 {
		c := w.chunks.front()
		off := w.first - c.first
		run := min(uint64(bits.TrailingZeros64(^(c.marks.Load() >> off))), c.n-off)
		if run > 0 {
			done := w.pending.items()[:run]
			for _, p := range done {
				w.ackedBytes += int64(p.size)
			}
			w.acked = done[run-1].cp
			w.pending.drop(int(run))
			w.first += run
			w.ackedRecords += int64(run)
		}
		if w.first < c.first+c.n {
			break // a gap
		}
		w.chunks.drop(1)
	}
}

// wake works out the prefix for a waiter and wakes it if its condition
// holds.
func (w *ackWindow) wake() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if n := w.waitFor.Load(); n != 0 {
		w.advance()
		if int64(w.pending.len()) < n {
			w.waitFor.Store(0)
			w.signal()
		}
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
	w.advance()
	return w.acked, w.pending.len()
}

// stats returns the acked prefix, the unacked count, and the records and
// bytes acked so far, in the prefix or past a gap.
//
// oldest is when the oldest record delivered and not acked arrived in
// Kinesis: the first past the acked prefix; zero when none is.
func (w *ackWindow) stats() (acked checkpoint, unacked int, records, bytes int64, oldest time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.advance()
	records, bytes = w.ackedRecords, w.ackedBytes
	pending := w.pending.items()
	for _, c := range w.chunks.items() {
		marks := c.marks.Load()
		for i := range c.n {
			if marks&(1<<i) != 0 && c.first+i >= w.first {
				records++
				bytes += int64(pending[c.first+i-w.first].size)
			}
		}
	}
	if len(pending) > 0 {
		oldest = time.Unix(0, pending[0].arrival)
	}
	return w.acked, len(pending), records, bytes, oldest
}

// close makes the window refuse every later push and keep its prefix
// where it is.
func (w *ackWindow) close() {
	w.mu.Lock()
	w.advance() // the acks so far count: the prefix stops where they end
	if !w.closed {
		close(w.ended)
	}
	w.closed = true
	w.signal()
	fs := w.onClose
	w.onClose = nil
	w.mu.Unlock()
	for _, f := range fs {
		f()
	}
}

// afterClose makes close run f before it returns, on its goroutine; f runs
// at once if the window is closed already. What f does is done by the
// time the write that passes the lease on is sent (writeCheckpoint).
func (w *ackWindow) afterClose(f func()) {
	w.mu.Lock()
	if !w.closed {
		w.onClose = append(w.onClose, f)
		w.mu.Unlock()
		return
	}
	w.mu.Unlock()
	f()
}

// done returns a channel closed once the window is closed: the lease of its
// records was lost, released or handed off, so their acks no longer count.
func (w *ackWindow) done() <-chan struct{} { return w.ended }

// waitBelow blocks until fewer than n delivered records are unacked, the
// window closes, or ctx ends. It reports whether the condition holds. Only one
// goroutine at a time may wait on a window.
func (w *ackWindow) waitBelow(ctx context.Context, n int) bool {
	defer w.waitFor.Store(0)
	for {
		w.mu.Lock()
		// Registered before the marks are read: no ack can slip past.
		w.waitFor.Store(int64(n))
		w.advance()
		unacked, closed := w.pending.len(), w.closed
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
