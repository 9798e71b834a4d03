package kcl

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// heldLease is a lease this worker owns, with the reader of its shard and
// the acks of what that reader delivered.
//
//   - The lease loop creates it when it takes the lease (startReader).
//   - The reader, the lease loop and run's shutdown may each write it, one
//     attempt at a time under mu (checkpointOnce).
//   - Once gone, no write of this worker touches the lease again.
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

	mu      chanLock     // held across each attempt at a write of the lease (each is conditional on the counter); newHeldLease makes it
	lease   lease        // synchronized on mu
	unsure  []leaseWrite // synchronized on mu: writes since the last one confirmed that failed without an answer; one may have taken effect
	handoff string       // synchronized on mu: worker to hand the lease to, once asked
	gone    bool         // synchronized on mu: released, ended, handed off or lost; no more writes
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

// markGone notes that no write of this worker may touch h's lease again,
// and reports whether it was gone already.
func (h *heldLease) markGone() (wasGone bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	wasGone = h.gone
	h.gone = true
	return wasGone
}

// heldSet is the leases this worker holds, by lease key, and whether
// shutdown began. Its methods are safe for concurrent use.
//
//   - The lease loop adds to it (start); readers, the lease loop and run
//     remove from it (forget); Stats and shutdown read it.
//   - Once close was called, start adds nothing.
//   - mu is held only inside these methods, never together with another
//     lock of kcl's but in start's callback.
type heldSet struct {
	log *slog.Logger // immutable

	mu      sync.Mutex
	closing bool                  // synchronized on mu: shutdown began, no reader starts any more
	held    map[string]*heldLease // synchronized on mu: by lease key
}

func newHeldSet(log *slog.Logger) *heldSet {
	return &heldSet{log: log, held: map[string]*heldLease{}}
}

// start adds h and calls run, both under the lock, unless shutdown began;
// it reports whether it did. Under the lock, a reader that run starts is
// started before close returns, so that run's wait for the readers counts
// it.
func (s *heldSet) start(h *heldLease, run func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.held[h.shardID] = h
	run()
	return true
}

// close marks that shutdown began: start adds nothing any more.
func (s *heldSet) close() {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
}

// isClosing reports whether shutdown began.
func (s *heldSet) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// snapshot returns the keys held and whether shutdown began, from one look.
func (s *heldSet) snapshot() (keys map[string]bool, closing bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys = make(map[string]bool, len(s.held))
	for id := range s.held {
		keys[id] = true
	}
	return keys, s.closing
}

// has reports whether the lease of key is held.
func (s *heldSet) has(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.held[key]
	return ok
}

// lookup returns the held lease of each of keys, in their order, nil for
// one not held, from one look.
func (s *heldSet) lookup(keys []string) []*heldLease {
	s.mu.Lock()
	defer s.mu.Unlock()
	hs := make([]*heldLease, len(keys))
	for i, id := range keys {
		hs[i] = s.held[id]
	}
	return hs
}

// list returns the leases held, sorted by lease key.
func (s *heldSet) list() []*heldLease {
	s.mu.Lock()
	defer s.mu.Unlock()
	hs := make([]*heldLease, 0, len(s.held))
	for _, h := range s.held {
		hs = append(hs, h)
	}
	slices.SortFunc(hs, func(a, b *heldLease) int { return strings.Compare(a.shardID, b.shardID) })
	return hs
}

// forget stops the reader of h and forgets the lease. Later acks of its
// records are ignored.
func (s *heldSet) forget(h *heldLease) {
	h.window.close()
	if h.cancel != nil {
		h.cancel()
	}
	s.mu.Lock()
	if s.held[h.shardID] == h {
		delete(s.held, h.shardID)
	}
	s.mu.Unlock()
}

// forgetLost forgets h, a lease that owner (if known) took from this worker,
// and logs the loss once.
func (s *heldSet) forgetLost(h *heldLease, owner string) {
	if !h.markGone() {
		s.log.Warn("kcl: lease lost; shard no longer delivered", "shard", h.shardID, "owner", owner)
	}
	s.forget(h)
}
