package kcl

import (
	"context"
	"sync"
	"sync/atomic"
)

// pauseGate holds back the deliveries of every shard while this worker's
// heartbeat is stale: other workers may then rightly think it dead and take
// its leases, so it must not hand out more records it may no longer own. The
// shards keep their ack windows, so acks still count and checkpoints (fenced
// on owner and counter) are still written. Once the heartbeat is written
// again and a read of the lease table has dropped the leases taken
// meanwhile, the gate opens and the shards go on from where they were:
// nothing acked is delivered twice.
//
// The zero value is open. Methods are safe for concurrent use; wait costs one
// atomic load while the gate is open.
type pauseGate struct {
	mu   sync.Mutex
	shut atomic.Pointer[chan struct{}] // nil while open; else closed on reopening
}

// close shuts the gate; it reports whether it was open.
func (g *pauseGate) close() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.shut.Load() != nil {
		return false
	}
	ch := make(chan struct{})
	g.shut.Store(&ch)
	return true
}

// open opens the gate and releases its waiters; it reports whether it was
// shut.
func (g *pauseGate) open() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	ch := g.shut.Load()
	if ch == nil {
		return false
	}
	close(*ch)
	g.shut.Store(nil)
	return true
}

func (g *pauseGate) isShut() bool { return g.shut.Load() != nil }

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
