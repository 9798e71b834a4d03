package kcl

import "sync"

// handoff passes Process's attempts between the dispatcher and the
// workers: two queues under one lock, and a wake-up only for a side that
// waits. A channel send per attempt each way cost more than the rest of
// a record's work in Process.
//
//   - The dispatcher adds attempts (give) and takes the outcomes (take);
//     workers take attempts and add outcomes (next).
//   - A worker with nothing to do waits on wake, counted in idle; give
//     sends a token per idle worker it has work for, and takes them out
//     of idle. Tokens in wake never outnumber the workers waiting, so a
//     send never blocks (room for Concurrency).
//   - A worker that adds the first outcome to an empty done sends on
//     settled (room for one; a send that finds it full is not needed).
//   - Once closed, a worker with nothing to do returns.
type handoff struct {
	mu     sync.Mutex
	todo   queue[*task] // attempts for the workers; guarded by mu
	done   []*task      // outcomes for the dispatcher; guarded by mu
	idle   int          // workers waiting on wake, with no token sent; guarded by mu
	closed bool         // guarded by mu

	wake    chan struct{} // immutable
	settled chan struct{} // immutable
}

func newHandoff(workers int) *handoff {
	return &handoff{wake: make(chan struct{}, workers), settled: make(chan struct{}, 1)}
}

// give queues ts for the workers and wakes as many idle ones as it can
// keep busy. The dispatcher calls it.
func (h *handoff) give(ts []*task) {
	h.mu.Lock()
	for _, t := range ts {
		h.todo.push(t)
	}
	n := min(h.idle, h.todo.len())
	h.idle -= n
	h.mu.Unlock()
	for range n {
		h.wake <- struct{}{}
	}
}

// take appends the outcomes at hand to into, without waiting. The
// dispatcher calls it.
func (h *handoff) take(into []*task) []*task {
	h.mu.Lock()
	into = append(into, h.done...)
	clear(h.done)
	h.done = h.done[:0]
	h.mu.Unlock()
	return into
}

// close lets the workers return once no attempt is left. The dispatcher
// calls it.
func (h *handoff) close() {
	h.mu.Lock()
	h.closed = true
	n := h.idle
	h.idle = 0
	h.mu.Unlock()
	for range n {
		h.wake <- struct{}{}
	}
}

// next hands back the outcome of last (nil at first) and returns the
// next attempt to run, waiting for one; nil once closed. A worker calls
// it.
func (h *handoff) next(last *task) *task {
	h.mu.Lock()
	if last != nil {
		h.done = append(h.done, last)
		if len(h.done) == 1 {
			select {
			case h.settled <- struct{}{}:
			default:
			}
		}
	}
	for h.todo.len() == 0 {
		if h.closed {
			h.mu.Unlock()
			return nil
		}
		h.idle++
		h.mu.Unlock()
		<-h.wake
		h.mu.Lock()
	}
	t := h.todo.front()
	h.todo.drop(1)
	h.mu.Unlock()
	return t
}

// worker runs Process's attempts, one at a time, until the handoff is
// closed, handing back first the outcome of t (nil at first).
//
// A call that ends its goroutine (runtime.Goexit, as t.FailNow does)
// leaves the outcome attempt set before it: Process stops with an error
// naming the record. A new worker hands it back and takes this one's
// place, so that the pool does not shrink and Process does not wait for
// the record for ever.
func (p *processor) worker(t *task) {
	defer p.watchers.Done()
	defer func() {
		if t != nil { // only a call that ended the goroutine leaves the loop with one
			p.watchers.Add(1)
			go p.worker(t)
		}
	}()
	for t = p.hand.next(t); t != nil; t = p.hand.next(t) {
		p.attempt(t)
	}
}
