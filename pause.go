package kcl

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// pauseGate holds back the deliveries of every shard once this worker may
// be taken for dead: other workers may then rightly take its leases, so it
// must not hand out more records it may no longer own. The shards keep their
// ack windows, so acks still count and checkpoints (fenced on owner and
// counter) are still written.
//
// The gate keeps a deadline: the time the last trusted heartbeat was sent
// plus LeaseDuration less a margin. Another worker judges this one dead only
// after seeing its heartbeat unchanged for LeaseDuration on its own clock,
// from a read of the table that started after it first saw that heartbeat,
// so no other worker can take a lease before the deadline. The gate shuts
// when the deadline passes: by a timer, for readers blocked on a full
// channel, and by check, which readers call before each chunk they send, for
// a process that was frozen and whose timer has not fired yet.
//
// The deadline is kept on both clocks, and passes when either says so: Go's
// monotonic clock stands still while a Linux host is suspended, the wall
// clock does not, so a host that wakes from a suspend finds the deadline
// passed (a wall clock stepped forward only shuts the gate early, which is
// safe; one stepped back changes nothing, the monotonic clock still
// counts). A send blocked on a full channel when the host was suspended is
// not timed out by the wall clock; it may complete, but the next chunk's
// check shuts the gate.
//
// A heartbeat extends the deadline only if its reply came before the
// deadline. One that came later (a freeze, a partition, a throttled table)
// may follow another worker's judgement that this one is dead: the gate then
// stays shut until every lease still held has been written again, fenced on
// its counter (fenced), so that a take decided on the old heartbeat fails;
// only then does it reopen, and the shards go on from where they were.
//
// Methods are safe for concurrent use; wait costs one atomic load while the
// gate is open.
type pauseGate struct {
	epoch    time.Time     // immutable: monotonic origin of deadline
	lease    time.Duration // immutable: LeaseDuration less the margin
	log      *slog.Logger  // immutable
	deadline atomic.Int64  // nanoseconds since epoch (monotonic); deliveries stop at it
	wallLine atomic.Int64  // the same deadline on the wall clock, Unix nanoseconds
	// clock reads the time since epoch on the monotonic clock, and the wall
	// clock in Unix nanoseconds. Immutable; tests replace it before use.
	clock func() (mono time.Duration, wall int64)

	shut atomic.Pointer[chan struct{}] // nil while open; else closed on reopening

	mu       sync.Mutex    // guards the fields below
	shutting chan struct{} // closed when the gate shuts; nil until asked for
	started  bool          // a heartbeat was trusted once
	fence    bool          // a heartbeat came after the deadline: fenced must run
	fenceAt  time.Time     // when that heartbeat was sent
	fenceGen uint64        // counts fence rounds: beats too late for the pending one start another
	timer    *time.Timer   // shuts the gate at the deadline
	stopped  bool          // stop was called: no timer is armed any more
}

// newPauseGate returns a gate for a worker whose leases last leaseDuration.
// It is open, with a deadline already passed: nothing is delivered before
// the first heartbeat.
func newPauseGate(leaseDuration time.Duration, log *slog.Logger) *pauseGate {
	g := &pauseGate{epoch: time.Now(), lease: leaseDuration - deliveryMargin(leaseDuration), log: log}
	g.clock = func() (time.Duration, int64) {
		now := time.Now()
		return now.Sub(g.epoch), now.UnixNano()
	}
	return g
}

// deliveryMargin is how long before another worker could judge it dead this
// worker stops delivering: it covers clock rate differences and the time
// between a reader's check and its send.
func deliveryMargin(leaseDuration time.Duration) time.Duration { return leaseDuration / 10 }

func (g *pauseGate) since(t time.Time) int64 { return int64(t.Sub(g.epoch)) }

// beat records a heartbeat write sent at sent whose reply came at returned.
// It reports whether the heartbeat came too late to be trusted: the gate is
// then shut until fenced.
//
//   - Late: confirmed after the deadline, or after the gate shut (a check
//     that ran between the reply and this call saw the deadline pass). A
//     fence must then write every held lease again (a take decided on an
//     older heartbeat then fails) before the gate reopens.
//   - While a fence is pending, a beat confirmed within LeaseDuration of
//     the pending one is in time: nobody can judge this worker dead at the
//     pending beat, so the fence under way still covers it, and the gate
//     will reopen to this beat's deadline. A beat later than that starts a
//     new fence round.
func (g *pauseGate) beat(sent, returned time.Time) (late bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.started && g.fence {
		if returned.Sub(g.fenceAt) >= g.lease || returned.UnixNano()-g.fenceAt.UnixNano() >= int64(g.lease) {
			g.fenceGen++
		}
		g.fenceAt = sent
		return true
	}
	if g.started && (g.shut.Load() != nil || g.since(returned) >= g.deadline.Load() || returned.UnixNano() >= g.wallLine.Load()) {
		g.fence, g.fenceAt = true, sent
		g.fenceGen++
		g.closeLocked()
		return true
	}
	g.extendLocked(sent)
	if !g.started {
		g.started = true
		if ch := g.shut.Load(); ch != nil { // shut by a check before the first beat
			close(*ch)
			g.shut.Store(nil)
		}
	}
	return false
}

// fenced says that every lease still held was written again after the late
// heartbeat of fence round gen (fencePending), so no take decided before it
// can succeed. The gate reopens if the latest beat still leaves time; it
// reports whether it reopened. If a beat came too late for the round (a
// new round began since: beat), the gate stays shut: the leases carry the
// round's heartbeat, and a take decided on that one could still succeed;
// the next pass fences again.
func (g *pauseGate) fenced(gen uint64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.fence || gen != g.fenceGen {
		return false
	}
	g.fence = false
	g.extendLocked(g.fenceAt)
	if g.passed() {
		g.closeLocked()
		return false
	}
	return g.openLocked()
}

// fencePending reports whether a late heartbeat waits for fenced, and the
// fence round to pass to fenced.
func (g *pauseGate) fencePending() (bool, uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.fence, g.fenceGen
}

func (g *pauseGate) extendLocked(sent time.Time) {
	d := g.since(sent.Add(g.lease))
	g.deadline.Store(d)
	g.wallLine.Store(sent.UnixNano() + int64(g.lease))
	if g.stopped {
		return
	}
	mono, _ := g.clock()
	wait := time.Duration(d) - mono
	if g.timer == nil {
		g.timer = time.AfterFunc(wait, func() { g.check() })
	} else {
		g.timer.Reset(wait)
	}
}

// check shuts the gate if the deadline has passed, and reports whether the
// gate is open. Readers call it before each chunk they send.
func (g *pauseGate) check() bool {
	if !g.passed() {
		return g.shut.Load() == nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.passed() {
		g.closeLocked()
	}
	return g.shut.Load() == nil
}

// passed reports whether the deadline has come, on either clock:
// deliveries stop AT it. (The timer set for the deadline may fire at that
// very instant, as it always does in virtual time; a gate open until after
// it would then stay open.)
func (g *pauseGate) passed() bool {
	mono, wall := g.clock()
	return mono >= time.Duration(g.deadline.Load()) || wall >= g.wallLine.Load()
}

// stop disarms the timer for good.
func (g *pauseGate) stop() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stopped = true
	if g.timer != nil {
		g.timer.Stop()
	}
}

func (g *pauseGate) closeLocked() {
	if g.shut.Load() != nil {
		return
	}
	ch := make(chan struct{})
	g.shut.Store(&ch)
	g.log.Warn("kcl: heartbeat not written within LeaseDuration; every shard paused until it is")
	if g.shutting != nil {
		close(g.shutting)
		g.shutting = nil
	}
}

func (g *pauseGate) openLocked() bool {
	ch := g.shut.Load()
	if ch == nil {
		return false
	}
	close(*ch)
	g.shut.Store(nil)
	g.log.Info("kcl: heartbeat written again; shards resumed")
	return true
}

// isShut reports whether the gate is shut.
func (g *pauseGate) isShut() bool { return g.shut.Load() != nil }

// closing returns a channel closed when the gate shuts (at once if it is
// shut), for a send blocked on a full channel.
func (g *pauseGate) closing() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.shut.Load() != nil {
		closed := make(chan struct{})
		close(closed)
		return closed
	}
	if g.shutting == nil {
		g.shutting = make(chan struct{})
	}
	return g.shutting
}

// opened returns a channel closed when the gate reopens, or nil while it is
// open.
func (g *pauseGate) opened() <-chan struct{} {
	if ch := g.shut.Load(); ch != nil {
		return *ch
	}
	return nil
}

// wait blocks while the gate is shut. It reports false if ctx ended first.
func (g *pauseGate) wait(ctx context.Context) bool {
	ch := g.shut.Load()
	if ch == nil {
		return true
	}
	select {
	case <-*ch:
		return true
	case <-ctx.Done():
		return false
	}
}
