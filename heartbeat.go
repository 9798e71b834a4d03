package kcl

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"
)

// heartbeat is this worker's heartbeat item, and the goroutine that writes
// it (run), beside the lease loop.
//
//   - It is written every LeaseDuration/2, first while starting and once
//     more while stopping.
//   - Each write confirmed in time extends the delivery deadline (pause.go).
//   - Methods are safe for concurrent use: writes are serialised on mu.
//   - It holds *Consumer, not a narrower set, because tests and the
//     simulation replace Consumer.table after New.
type heartbeat struct {
	c     *Consumer // immutable
	token string    // immutable: tells this process's writes from another's with the same WorkerID

	mu      chanLock // held across a beat's retries; the held set's lock is never taken under it
	counter int64    // synchronized on mu: the counter this process last wrote, -1 before the first
	// first is when the first beat was sent (Unix nanoseconds, 0 before):
	// written once under mu, read without it, so that the lease loop never
	// waits on a beat's retries.
	first atomic.Int64
	// last is when the last beat written was sent (Unix nanoseconds): run
	// schedules the next from it.
	last atomic.Int64
	// confirmed is the counter of the last beat written (0 before the
	// first), which this process's lease writes carry (writer.beat): set
	// under mu before the beat counts for the pause gate, read without it.
	confirmed atomic.Int64
	// firstCounter is the counter of this process's first beat written (0
	// before it): a lease write of this WorkerID by another process that
	// followed a later beat is a live twin's (assessInput.twinWrote).
	firstCounter atomic.Int64
}

// heartbeatInterval is how often a worker beats: twice per LeaseDuration,
// a third fewer writes than three times.
//
//   - A beat that fails is retried with backoff until the next is due,
//     which follows at once.
//   - The worker pauses (pause.go) only when none is confirmed within
//     LeaseDuration less a tenth of the last one sent. So it rides out a
//     DynamoDB outage of up to 0.4 LeaseDuration that starts just before a
//     beat is due (0.9 LeaseDuration at best).
func (o *Options) heartbeatInterval() time.Duration { return o.LeaseDuration / 2 }

func isDuplicateWorker(err error) bool { return errors.Is(err, errDuplicateWorker) }

// writer returns who this process's lease writes say wrote them: its
// WorkerID, its token, and its last heartbeat confirmed. Any goroutine may
// call it.
func (hb *heartbeat) writer() writer {
	return writer{id: hb.c.opts.WorkerID, token: hb.token, beat: hb.confirmed.Load()}
}

func newHeartbeat(c *Consumer, token string) *heartbeat {
	return &heartbeat{c: c, token: token, counter: -1, mu: newChanLock()}
}

// run writes the heartbeat until ctx ends: LeaseDuration/2 after the last
// one written was sent (so a slow start, which beat first, does not push the
// second beat past the delivery deadline), and at once again after a beat
// that failed (each beat retries with backoff for up to an interval). It
// returns only fatal errors.
func (hb *heartbeat) run(ctx context.Context) error {
	interval := hb.c.opts.heartbeatInterval()
	timer := time.NewTimer(0)
	defer timer.Stop()
	var pause time.Duration // after a beat that failed fast: never a busy loop
	for {
		wait := interval
		if last := hb.last.Load(); last != 0 {
			wait -= time.Since(time.Unix(0, last))
		}
		timer.Reset(max(wait, pause))
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		began := time.Now()
		err := hb.beat(ctx, running)
		if err != nil && isFatal(err) {
			return err
		}
		pause = 0
		if err != nil && time.Since(began) < interval/10 {
			pause = interval / 10
		}
	}
}

// beat writes the heartbeat from the counter this process last wrote, with
// the stopping flag once shutdown began. It runs on the caller's goroutine:
// run's at start (st is starting) and at shutdown, the heartbeat's own
// otherwise.
//
//   - A reply that came in time extends the delivery deadline. One that
//     came late has the lease loop fence the leases still held first.
//   - Transient errors are retried within one heartbeat interval.
//   - Another process writing this worker's heartbeat is a fatal error
//     naming the WorkerID.
func (hb *heartbeat) beat(ctx context.Context, st stage) error {
	c := hb.c
	stopping := c.held.isClosing()
	hb.mu.Lock()
	defer hb.mu.Unlock()
	bctx, cancel := context.WithTimeout(ctx, c.opts.heartbeatInterval())
	defer cancel()
	var sent time.Time // the write takes effect no earlier than this
	counter, err := retry(bctx, st, &c.counters.retryCounters, c.log, "heartbeat", isDuplicateWorker, func() (int64, error) {
		sent = time.Now()
		return c.table.heartbeat(bctx, c.opts.WorkerID, hb.token, stopping, hb.counter, c.streamIDs())
	})
	if isDuplicateWorker(err) {
		return fmt.Errorf("lease table %q: WorkerID %q: %w", c.table.name(), c.opts.WorkerID, err)
	}
	if err != nil {
		return err
	}
	hb.counter = counter
	hb.confirmed.Store(counter)
	hb.first.CompareAndSwap(0, sent.UnixNano())
	hb.firstCounter.CompareAndSwap(0, counter)
	hb.last.Store(sent.UnixNano())
	if c.pause.beat(sent, time.Now()) {
		notify(c.keeper.takeNow) // late: the lease loop's next pass fences the leases still held
	}
	return nil
}

// remove deletes this process's heartbeat item, unless another process
// wrote it since (the same WorkerID, run twice), or this process never
// settled and the table holds a lease of its WorkerID that another process
// wrote (twinHolds): then it may be the twin of a live process that its
// first beat has not stopped yet (a freeze), whose leases, their heartbeat
// item gone, would be judged on their own counters, which kcl workers do
// not renew, and taken under it (found by the simulation, seed 311925255).
// The item then expires as a dead worker's does.
func (hb *heartbeat) remove(ctx context.Context) {
	hb.mu.Lock()
	counter := hb.counter
	hb.mu.Unlock()
	if counter < 0 {
		return
	}
	if !hb.settled() && hb.twinHolds(ctx) {
		hb.c.log.Info("kcl: heartbeat item left: another process with this WorkerID may be running")
		return
	}
	if err := hb.c.table.removeWorker(ctx, hb.c.opts.WorkerID, counter); err != nil {
		hb.c.log.Warn("kcl: heartbeat item not removed; another worker removes it later", "error", err)
	}
}

// settled reports whether this process has beaten for longer than
// LeaseDuration. Until then, leases that the table gives to this WorkerID
// but that this process does not read may be another live process's with
// the same WorkerID (which this process's first beat makes stop within a
// heartbeat interval): they are neither taken, passed on nor released.
func (hb *heartbeat) settled() bool {
	first := hb.first.Load()
	return first != 0 && time.Since(time.Unix(0, first)) > hb.c.opts.LeaseDuration
}

// twinHolds reports whether the table, read consistently, holds a lease
// owned by this WorkerID that another process wrote last; a read that
// fails counts as yes.
func (hb *heartbeat) twinHolds(ctx context.Context) bool {
	snap, err := hb.c.table.list(ctx, true)
	if err != nil {
		return true
	}
	me := hb.c.opts.WorkerID
	return slices.ContainsFunc(snap.leases, func(l lease) bool {
		return l.owner == me && l.writer.id == me && l.writer.token != hb.token
	})
}
