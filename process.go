package kcl

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Process consumes like Consume and calls handle for every record, acking it
// when handle returns nil. It returns when ctx ends (nil) or on a fatal error
// (the error Err would return), after the same shutdown as Consume.
//
// Order and concurrency: up to Options.Concurrency calls of handle run at
// once, over all shards (default 1: one record at a time, in the order
// delivered). Records with the same PartitionKey never run at once and run
// in the order their shard delivered them; records of other keys run beside
// them. With several streams (Options.Streams), a key is one across them: a
// record of it that keeps failing in one stream holds it back in the others
// too. Records ready to run start taking the shards in turn, each shard's
// oldest delivered first: a backlog on one shard never starves another,
// and checkpoints move along soonest (a few calls are handed out at once,
// at most Concurrency and at least 4 queued for the workers, 5 at
// Concurrency 1: a record that becomes ready meanwhile starts after them).
// handle and OnFailure are called from several goroutines at once when
// Concurrency is above 1.
//
// Failures: a record whose handle returns an error is called again, in its
// turn, after an exponential backoff with jitter (Options.RetryDelay, 100ms
// by default, then doubling up to Options.MaxRetryDelay, 10s by default);
// only later records of its key wait meanwhile. Attempt tells handle which
// attempt it runs. After Options.MaxAttempts failed calls (0: no limit), or
// a failed call once the record is older than Options.MaxRecordAge, it goes to
// Options.OnFailure: nil from OnFailure acks the record and goes on; an
// error stops Process, which returns that error as it is. Without OnFailure,
// Process stops with the last error of handle, wrapped with the record's
// stream ARN, shard and sequence number. The record is not acked then, so the
// checkpoint stays before it and it is delivered again after a restart.
// Stopping is the shutdown below; as the refused record is never acked, it
// takes the whole ShutdownTimeout.
//
// A record is acked only once handle returned nil for it or OnFailure
// accepted it: at-least-once delivery, as with Consume. A handler may see a
// record again (after a crash, a lease move, a shutdown timeout) and must be
// idempotent.
//
// The context given to handle (and to OnFailure) carries ctx's values, but
// not its cancellation: it ends when the worker no longer holds the record's
// shard (lease lost, handed off to another worker, or released by the
// shutdown; a hand-off or release ends it before its write is sent), or
// when its delivery deadline passes (no heartbeat confirmed in
// time: another worker may take the shard), so that a long handler can give
// up work another worker redoes, and at the latest when the shutdown is
// over, as Process returns (not when the call returns: the calls of a
// lease share it; derive a cancellable context for work that must end
// with the call). No
// call starts while the deadline is past; a call cut short by it is no
// failed attempt, and runs again once a heartbeat is written. A handler that
// ignores its context may still be running when another worker starts the
// same key. When ctx ends, handlers in flight
// are not cancelled at once: like Consume, the shutdown gives the records
// already delivered up to Options.ShutdownTimeout to be handled and acked
// (records waiting in Process's queues, and retries, included), then
// checkpoints, releases the leases (which ends the handlers' contexts) and
// returns once every handler call returned: however long a handler that
// ignores its context takes, Process waits for it (its return must not
// let the program exit under the handler), but the group does not: the
// leases are released before. A record whose context ended is
// not called again, and one that has not started by then is not started:
// another worker, or the next run, delivers them again.
//
// Memory is bounded as with Consume: a shard stops fetching while
// Options.MaxUnackedPerShard of its records are unacked, so the records
// waiting for their key in Process are bounded by that too.
//
// A panic in handle is recovered: it is a failed attempt of the record,
// logged at Error with its stack, counted towards MaxAttempts and given to
// OnFailure as a *PanicError (which carries the value and the stack). One
// record that panics never crashes the worker: after a restart it would
// come first again, on every worker that takes its shard. A panic in
// OnFailure is its refusal: Process stops with that *PanicError. A call
// of either that ends its goroutine (runtime.Goexit, as t.FailNow does)
// stops Process with an error naming the record.
//
// A Consumer is consumed once: Process returns an error, consuming nothing,
// if Process or Consume was called on it before.
func (c *Consumer) Process(ctx context.Context, handle func(ctx context.Context, rec Record) error) error {
	if handle == nil {
		return errors.New("kcl: Process: handle is nil")
	}
	if c.used.Swap(true) { // as Consume does: one of two racing calls wins
		return errConsumedTwice
	}
	consumeCtx, stopConsuming := context.WithCancel(ctx)
	defer stopConsuming()
	chunks, finished := c.consumeChunks(consumeCtx)
	p := newProcessor(ctx, c, handle, stopConsuming)
	defer p.stopHandlers()
	return p.runChunks(chunks, finished)
}

// Process builds a Consumer from opts and runs Consumer.Process with ctx and
// handle. Errors from New (wrapping ErrInvalidOptions) are returned as they
// are.
func Process(ctx context.Context, opts Options, handle func(ctx context.Context, rec Record) error) error {
	c, err := New(opts)
	if err != nil {
		return err
	}
	return c.Process(ctx, handle)
}

// attemptKey is the context key of Attempt's number.
type attemptKey struct{}

// Attempt returns, from the context Process gives its handler, which call
// of the handler for the record this is: 1 for the first, 2 for the first
// retry, and so on. In the context OnFailure gets, it is the number of
// failed attempts. 0 for any other context. Only failed attempts count: a
// call cut short by the pause gate is made again with the same number. A
// record delivered again (to another worker, or after a restart) starts
// at 1 there. In a ProcessBatch handler's context it is the highest of its
// records' (BatchAttempt gives each).
func Attempt(ctx context.Context) int {
	switch v := ctx.Value(attemptKey{}).(type) {
	case int:
		return v
	case *batchAttempts:
		return v.max
	}
	return 0
}

var errConsumedTwice = errors.New("kcl: the Consumer was already consumed (one of Consume, Process and ProcessBatch may be called, once per Consumer)")

// processor is one run of Process. Its state is owned by the dispatcher:
// the goroutine that runs dispatch. Process's attempts run on a pool of up
// to Concurrency workers (worker), through hand; a worker owns a task from
// taking it to handing it back. At Concurrency 1 the dispatcher runs them
// itself (startInline), on a goroutine of its own that a call ending it
// hands on (dispatchInline). A ProcessBatch attempt runs on a goroutine of
// its own.
type processor struct {
	c             *Consumer
	name          string // immutable: "Process" or "ProcessBatch", for errors and logs
	handle        func(context.Context, Record) error
	stopConsuming context.CancelFunc // starts Consume's shutdown
	base          context.Context    // ctx's values; ends when run is over
	stopHandlers  context.CancelFunc // ends base
	err           error              // why Process stops, if a record made it

	// ProcessBatch's handler (batch.go), nil for Process, whose handle is
	// nil then.
	handleBatch func(context.Context, []Record) error

	keys     map[string]*keyQueue // records delivered and not done, by partition key
	reuse    reuse                // tasks and keyQueues done with, for the next ones
	ready    fairReady            // keys' first records, ready to run: shards in turn, each oldest first
	waiting  taskHeap             // keys' first records, backing off: soonest due first
	timer    *time.Timer          // fires when waiting's first is due
	timerC   <-chan time.Time     // timer's channel while armed; nil otherwise
	running  int                  // attempts in flight: given to the workers (or a batch's goroutine), not yet back
	queued   int                  // records delivered and not done: in keys' queues, running or backing off
	inCalls  int                  // records in the attempts in flight
	next     uint64               // arrival number of the next record
	hand     *handoff             // Process's attempts to the workers and back
	chunks   <-chan *recordChunk  // the records, a chunk at a time (delivery.go); nil once closed
	inline   bool                 // immutable: Process at Concurrency 1, whose calls the dispatcher makes (startInline)
	calling  *task                // the record of the call the dispatcher makes now, if inline
	nowait   <-chan struct{}      // closed while the dispatcher has calls to make (startInline); nil otherwise
	workers  int                  // workers started, up to Concurrency
	started  []*task              // the dispatcher's: startReady's attempts, for hand.give
	outcomes []*task              // the dispatcher's: outcomes from hand.take
	batches  chan *batch          // ProcessBatch's attempts done, as results; nil for Process
	avail    int                  // records of the keys in ready: what a batch could take now
	// gatherBy is when the batch being gathered starts, full or not
	// (BatchWindow after it began); zero while none is gathered.
	gatherBy time.Time
	stopping context.Context // ends when Consume's shutdown starts: batches no longer wait to fill

	newBackOff func() *backoff.ExponentialBackOff // immutable: RetryDelay, MaxRetryDelay; tests lengthen it

	// The lanes, one per ack window (a shard under one lease), each with
	// the handler context of its records: it ends when its window closes
	// (the window's close cancels it, afterClose). A watcher goroutine per
	// window reports the window on windowClosed. Records from no window
	// (tests) have a lane per stream and shard in bare.
	windows      map[*ackWindow]*lane
	bare         map[laneKey]*lane
	lastWindow   *ackWindow // the window of the last record added, and its lane:
	lastLane     *lane      // a page's records come one after another
	windowClosed chan *ackWindow
	watchers     sync.WaitGroup

	// The pause gate (pause.go): no attempt starts while it is shut, and
	// each attempt's context also ends when it shuts. open ends when the
	// gate shuts (a watcher cancels it), and is made anew once it reopens.
	gate *pauseGate         // immutable
	open context.Context    // the dispatcher's
	shut context.CancelFunc // ends open

	// calls holds the contexts Process's handler calls get while open
	// lasts, one per record context (a window's, or base): each ends with
	// its record context and with open. Made anew with open; a window's
	// goes when the window closes.
	calls map[context.Context]callContext
}

// callContext is a handler calls' context (processor.calls): a record
// context's, ending also when the pause gate shuts. Its Attempt is 1.
type callContext struct {
	ctx    context.Context
	cancel context.CancelFunc
	stop   func() bool // unregisters cancel from open
}

// newProcessor prepares a run of Process for c. The handlers' contexts
// carry ctx's values; stopConsuming must end what c.Consume was given.
func newProcessor(ctx context.Context, c *Consumer, handle func(context.Context, Record) error, stopConsuming context.CancelFunc) *processor {
	base, stopHandlers := context.WithCancel(context.WithoutCancel(ctx))
	return &processor{
		c:             c,
		inline:        handle != nil && c.opts.Concurrency == 1,
		name:          "Process",
		handle:        handle,
		stopConsuming: stopConsuming,
		base:          base,
		stopHandlers:  stopHandlers,
		keys:          map[string]*keyQueue{},
		waiting:       taskHeap{byDue: true},
		hand:          newHandoff(c.opts.Concurrency),
		stopping:      ctx,
		newBackOff: func() *backoff.ExponentialBackOff {
			b := newBackOff()
			b.InitialInterval, b.MaxInterval = c.opts.RetryDelay, c.opts.MaxRetryDelay
			b.Reset()
			return b
		},
		windows:      map[*ackWindow]*lane{},
		bare:         map[laneKey]*lane{},
		windowClosed: make(chan *ackWindow),
		gate:         c.pause,
	}
}

// maxInFlight is how many of Process's attempts may be out with the
// workers at once: Concurrency running, and as many queued behind them (at
// least 4), so that a worker done with one finds the next without waiting
// for the dispatcher. Only Concurrency run at once: there are no more
// workers. A record that becomes ready meanwhile starts after those
// queued, at most one more round of calls later.
func maxInFlight(concurrency int) int { return concurrency + max(concurrency, 4) }

// task is one delivered record in Process.
type task struct {
	rec      Record
	ctx      context.Context // the record's: ends when its lease is gone
	lane     *lane           // its shard's
	call     context.Context // while out with a worker: the call's (processor.callContext)
	key      *keyQueue
	n        uint64 // arrival order
	idx      int    // in a batch: its index in the records handle gets
	attempts int
	backoff  *backoff.ExponentialBackOff // made at the first failure
	failing  time.Time                   // when its first attempt failed
	warned   time.Time                   // when its failing was last logged
	due      time.Time                   // while waiting: when to try again
	result   attemptResult               // of the last attempt
	err      error                       // with resultStop: what Process returns; nil: the call ended its goroutine (stopErr)
}

type attemptResult int

const (
	resultAcked   attemptResult = iota // handle returned nil, or OnFailure accepted it
	resultRetry                        // failed; try again after a backoff
	resultDropped                      // its context ended: not ours any more
	resultPaused                       // the pause gate shut: run it again once it reopens
	resultStop                         // Process must stop with task.err
	resultBehind                       // in a batch, behind a record of its key not acked: runs again later, no attempt counted
)

// keyQueue holds the records of one partition key not yet done, in
// delivery order. Only the first one is ever ready, running or waiting;
// a batch (ProcessBatch) runs the first few at once.
type keyQueue struct {
	key   string
	tasks queue[*task]
	ready bool // its first record is in ready
}

// runChunks dispatches records until chunks, where the consumer delivers
// them, closes, then ends the handlers' contexts and waits for every
// attempt and watcher to return. finished is closed once the consumer's
// shutdown is over, just before chunks closes.
//
// The handlers' contexts end as soon as finished is closed: a call the
// dispatcher makes itself (startInline) may wait for its context, and
// the dispatcher would not see chunks close before it returns.
func (p *processor) runChunks(chunks <-chan *recordChunk, finished <-chan struct{}) error {
	p.chunks = chunks
	p.watchers.Add(1)
	go func() {
		defer p.watchers.Done()
		select {
		case <-finished:
			p.stopHandlers()
		case <-p.base.Done():
		}
	}()
	if p.inline {
		done := make(chan struct{})
		go p.dispatchInline(done)
		<-done
	} else {
		p.dispatch()
	}
	return p.finish()
}

// dispatchInline runs dispatch on this goroutine, which makes the calls
// at Concurrency 1. A call that ends it (runtime.Goexit, as t.FailNow
// does) leaves its record's outcome set to stop (attempt): a new goroutine
// takes the outcome and goes on dispatching, so that Process stops with
// an error naming the record instead of waiting for ever. done is closed
// once dispatch returns.
func (p *processor) dispatchInline(done chan<- struct{}) {
	returned := false
	defer func() {
		t := p.calling
		if returned || t == nil {
			close(done)
			return
		}
		p.calling = nil
		go func() {
			p.done(t)
			p.dispatchInline(done)
		}()
	}()
	p.dispatch()
	returned = true
}

// dispatch hands records to the handler until they stop coming (their
// channel closes). Only the dispatcher runs it.
func (p *processor) dispatch() {
	for p.chunks != nil {
		p.startReady()
		p.publish()
		select {
		case <-p.nowait: // closed while startInline has more to call
		case <-p.gate.opened(): // nil, never ready, while the gate is open
		case ch, ok := <-p.chunks:
			if !ok {
				p.chunks = nil
				continue
			}
			p.addChunk(ch)
		case <-p.hand.settled:
			p.takeSettled()
		case b := <-p.batches: // nil, never ready, for Process
			p.batchDone(b)
		case <-p.timerC:
			p.timerC = nil
			p.wakeDue()
		case w := <-p.windowClosed:
			if l := p.windows[w]; l != nil {
				if c, ok := p.calls[l.ctx]; ok {
					c.stop()
					c.cancel()
					delete(p.calls, l.ctx)
				}
			}
			delete(p.windows, w)
			if p.lastWindow == w {
				p.lastWindow, p.lastLane = nil, nil
			}
			p.dropWaiting()
		}
		p.drain()
	}
}

// finish, once dispatch returned, ends the handlers' contexts, waits for
// every attempt and watcher to return, and returns what Process returns.
func (p *processor) finish() error {
	// The shutdown is over (leases released, checkpoints written): nothing
	// more is started, and what runs sees its context end.
	p.stopHandlers()
	p.dropCalls()
	for p.running > 0 {
		var done []*task
		select {
		case <-p.hand.settled:
			done = p.hand.take(nil)
			p.running -= len(done)
		case b := <-p.batches:
			done = b.tasks
			p.running--
		}
		for _, t := range done {
			if t.result == resultStop && p.err == nil {
				p.err = p.stopErr(t)
			}
		}
	}
	if p.timer != nil {
		p.timer.Stop()
	}
	p.hand.close()
	p.watchers.Wait()
	p.c.counters.process.clear() // nothing is in Process any more
	if p.err != nil {
		return p.err
	}
	return p.c.Err()
}

// drainMax is the most records drain takes at once, but for ProcessBatch,
// BatchSize if more.
const drainMax = 64

// drain takes, without blocking, the attempts' outcomes at hand and the
// records already delivered, up to drainMax: one select of dispatch's
// costs more than a record's work. For ProcessBatch, up to a whole batch:
// with no BatchWindow, a batch starts with every record delivered by
// then, not only the first. It sets p.chunks to nil once it is closed.
func (p *processor) drain() {
	if !p.inline { // no worker hands outcomes back then
		p.takeSettled()
	}
	n := drainMax
	if p.handleBatch != nil {
		n = max(n, p.c.opts.BatchSize)
	}
	for n > 0 {
		select {
		case ch, ok := <-p.chunks:
			if !ok {
				p.chunks = nil
				return
			}
			n -= len(ch.recs)
			p.addChunk(ch)
			continue
		default:
		}
		return
	}
}

// takeSettled takes the attempts' outcomes at hand.
func (p *processor) takeSettled() {
	p.outcomes = p.hand.take(p.outcomes[:0])
	for _, t := range p.outcomes {
		p.done(t)
	}
	clear(p.outcomes)
}

// publish writes where the records are to Stats (ProcessStats). The calls
// count their records as running themselves: records handed to a worker
// whose call has not begun are ready.
func (p *processor) publish() {
	n := &p.c.counters.process
	n.handed.Store(int64(p.inCalls))
	n.ready.Store(int64(p.ready.len()))
	n.backingOff.Store(int64(p.waiting.len()))
	n.waiting.Store(int64(p.queued - p.inCalls - p.ready.len() - p.waiting.len()))
}

// addChunk adds the records of ch, and gives it back.
func (p *processor) addChunk(ch *recordChunk) {
	for i := range ch.recs {
		p.add(&ch.recs[i])
	}
	putChunk(ch)
}

// add queues a record behind the earlier ones of its key.
func (p *processor) add(rec *Record) {
	l := p.laneOf(rec)
	if l.ctx.Err() != nil {
		return // its lease is gone already: the next owner delivers it
	}
	k := p.keys[rec.PartitionKey]
	if k == nil {
		k = p.reuse.key(rec.PartitionKey)
		p.keys[rec.PartitionKey] = k
	}
	t := p.reuse.task() // zero: only these fields are set
	t.rec, t.ctx, t.lane, t.key, t.n = *rec, l.ctx, l, k, p.next
	p.next++
	k.tasks.push(t)
	p.queued++
	switch {
	case k.tasks.len() == 1:
		p.pushReady(t)
	case k.ready:
		p.avail++
	}
}

// pushReady makes t, its key's first record, ready to run.
func (p *processor) pushReady(t *task) {
	t.key.ready = true
	p.avail += t.key.tasks.len()
	p.ready.push(t)
}

// popReady takes the next ready record (fairReady.pop).
func (p *processor) popReady() *task {
	t := p.ready.pop()
	t.key.ready = false
	p.avail -= t.key.tasks.len()
	return t
}

// laneOf returns the lane of rec's shard, whose context handle gets for
// rec: ending when rec's ack window closes (its lease is gone from this
// worker), or when Process is over. A record from no window gets base.
func (p *processor) laneOf(rec *Record) *lane {
	if rec.chunk == nil {
		key := laneKey{stream: rec.StreamARN, shard: rec.ShardID}
		l := p.bare[key]
		if l == nil {
			l = &lane{ctx: p.base}
			p.bare[key] = l
		}
		return l
	}
	w := rec.chunk.window
	if w == p.lastWindow {
		return p.lastLane
	}
	if l, ok := p.windows[w]; ok {
		p.lastWindow, p.lastLane = w, l
		return l
	}
	if windowClosed(w) {
		// The lease was lost before the record got here: its context is
		// over before it starts, and no watcher is needed.
		ctx, cancel := context.WithCancel(p.base)
		cancel()
		return &lane{ctx: ctx}
	}
	ctx, cancel := context.WithCancel(p.base)
	l := &lane{ctx: ctx}
	p.windows[w] = l
	p.lastWindow, p.lastLane = w, l
	w.afterClose(cancel) // at once, before a write passing the lease on is sent
	p.watchers.Add(1)
	go func() {
		defer p.watchers.Done()
		defer cancel()
		select {
		case <-w.done(): // close cancelled ctx (afterClose): drop the window's queued records
			select {
			case p.windowClosed <- w:
			case <-p.base.Done():
			}
		case <-p.base.Done():
		}
	}()
	return l
}

// lane is one shard's part in Process: its records' context, and those
// of its records ready to run. Only touched by the dispatcher.
type lane struct {
	ctx   context.Context // the records' (laneOf)
	ready readyQueue      // its ready records, oldest delivered first
	// call is the handler calls' context of ctx (callContext), made while
	// open was p.open.
	call context.Context
	open context.Context
}

// laneKey names the lane of a record from no ack window (processor.bare).
type laneKey struct{ stream, shard string }

// fairReady holds the records ready to run, by shard (lane), each shard's
// oldest delivered first, and hands them out taking the shards in turn: a
// backlog on one shard never starves another (issue 23, item 5). Only
// touched by the dispatcher.
type fairReady struct {
	turns queue[*lane] // the lanes with ready records, in the order of their turns
	n     int          // ready records
}

func (r *fairReady) len() int { return r.n }

func (r *fairReady) push(t *task) {
	l := t.lane
	if l.ready.len() == 0 {
		r.turns.push(l)
	}
	l.ready.push(t)
	r.n++
}

// pop returns the oldest ready record of the shard whose turn it is; that
// shard's next turn comes after every other shard's.
func (r *fairReady) pop() *task {
	l := r.turns.front()
	r.turns.drop(1)
	t := l.ready.pop()
	r.n--
	if l.ready.len() > 0 {
		r.turns.push(l)
	}
	return t
}

// startReady starts the oldest ready records while fewer than Concurrency
// attempts run and the pause gate is open. A record whose context ended is
// dropped instead.
func (p *processor) startReady() {
	if p.handleBatch != nil {
		p.startBatches()
		return
	}
	if p.inline {
		p.startInline()
		return
	}
	if p.ready.len() == 0 || p.running >= maxInFlight(p.c.opts.Concurrency) || !p.gateOpen() {
		return
	}
	// The gate is asked once: the workers ask it again before each call.
	for p.running < maxInFlight(p.c.opts.Concurrency) && p.ready.len() > 0 {
		t := p.popReady()
		// The window is asked directly: its watcher may not have cancelled
		// the context yet, and a closed window's record must not start.
		if dead(t) {
			p.advance(t.key)
			continue
		}
		p.running++
		p.inCalls++
		if p.workers < p.c.opts.Concurrency && p.workers < p.running {
			p.workers++
			p.watchers.Add(1)
			go p.worker(nil)
		}
		t.call = p.callContext(t)
		p.started = append(p.started, t)
	}
	p.hand.give(p.started)
	clear(p.started)
	p.started = p.started[:0]
}

// inlineRound is how many calls startInline makes before the dispatcher
// looks at what else came: as many as wait queued for a worker at
// Concurrency 1 (maxInFlight), so that a record that becomes ready
// meanwhile waits no longer than with a worker.
var inlineRound = maxInFlight(1)

// startInline makes the calls of the oldest ready records itself, at
// Concurrency 1, up to inlineRound of them, while the pause gate is open:
// a hand-off to a worker and back cost more than the rest of a record's
// work in Process. A record whose context ended is dropped instead. It
// sets nowait when more could be called now, so that dispatch does not
// wait for something else to happen first.
func (p *processor) startInline() {
	p.nowait = nil
	for range inlineRound {
		if p.ready.len() == 0 || !p.gateOpen() { // the gate asked before each call, as a worker does
			return
		}
		t := p.popReady()
		if dead(t) {
			p.advance(t.key)
			continue
		}
		ctx := p.callContext(t)
		p.running++
		p.inCalls++
		p.publish()
		p.calling = t
		if ctx.Err() != nil { // the gate shut since it was asked
			t.result = resultPaused
		} else {
			p.call(t, ctx)
		}
		p.calling = nil
		p.done(t)
	}
	if p.ready.len() > 0 {
		p.nowait = closedChan
	}
}

// closedChan is ready at once: dispatch's case for calls still to make.
var closedChan = func() chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}()

// callContext returns the context for a handler call of t, while p.open
// lasts.
func (p *processor) callContext(t *task) context.Context {
	l := t.lane
	if l.open == p.open && l.call != nil {
		return l.call
	}
	l.call, l.open = p.callContextOf(t.ctx), p.open
	return l.call
}

// callContextOf returns the context for a handler call of a record whose
// context is ctx, while p.open lasts.
func (p *processor) callContextOf(ctx context.Context) context.Context {
	if c, ok := p.calls[ctx]; ok {
		return c.ctx
	}
	call, cancel := context.WithCancel(context.WithValue(ctx, attemptKey{}, 1))
	c := callContext{ctx: call, cancel: cancel, stop: context.AfterFunc(p.open, cancel)}
	if p.calls == nil {
		p.calls = map[context.Context]callContext{}
	}
	p.calls[ctx] = c
	return call
}

// dropCalls ends the handler calls' contexts and forgets them: open ended.
func (p *processor) dropCalls() {
	for _, c := range p.calls {
		c.stop()
		c.cancel()
	}
	clear(p.calls)
}

// gateOpen reports whether the pause gate is open (checking its deadline,
// as a reader does before it sends), and makes p.open anew if the gate
// reopened since the last one ended. While the gate is shut, another worker
// may rightly take this worker's leases: no handler call may start.
func (p *processor) gateOpen() bool {
	if !p.mayStart() {
		return false
	}
	if p.open == nil || p.open.Err() != nil {
		p.dropCalls()
		p.open, p.shut = context.WithCancel(p.base)
		closing, open, shut := p.gate.closing(), p.open, p.shut
		p.watchers.Add(1)
		go func() { // ends open at the deadline, as the gate shuts
			defer p.watchers.Done()
			select {
			case <-closing:
			case <-open.Done():
			}
			shut()
		}()
	}
	return true
}

// mayStart reports whether a handler call may start now: the pause gate
// is open, its deadline checked (which shuts it if passed). The dispatcher
// asks before it hands calls to the workers, and a worker before each
// call: a call queued for a worker may wait a while.
func (p *processor) mayStart() bool { return p.gate.check() }

// attempt calls handle once for t, on a worker, and settles it (OnFailure
// if that was the last attempt allowed, the ack if either accepted it). The
// context they get, t.call, ends with t's and when the pause gate shuts.
// A record whose lease went, or whose call would start once the gate shut,
// while it was queued for the worker, is not called.
func (p *processor) attempt(t *task) {
	ctx := t.call
	t.call = nil
	switch {
	case dead(t):
		t.result = resultDropped
		return
	case ctx.Err() != nil || !p.mayStart():
		t.result = resultPaused
		return
	}
	p.call(t, ctx)
}

// call calls handle for t, in ctx (t.call), and settles it. It runs on a
// worker (attempt) or on the dispatcher (startInline).
func (p *processor) call(t *task, ctx context.Context) {
	if t.attempts > 0 {
		ctx = context.WithValue(ctx, attemptKey{}, t.attempts+1)
	}
	t.result, t.err = resultStop, nil // unless the call returns: it ended its goroutine (stopErr)
	running := &p.c.counters.process.running
	running.Add(1)
	err := func() error {
		defer running.Add(-1) // also if the call ends the goroutine
		return p.callHandler(ctx, t.rec)
	}()
	p.settle(t, ctx, err)
}

// settle sets t's outcome from err, what the handler call that ran it in
// ctx returned, calling OnFailure if that was its last attempt allowed, and
// acks t if either accepted it. It runs on the attempt's goroutine.
func (p *processor) settle(t *task, ctx context.Context, err error) {
	maxAttempts := p.c.opts.MaxAttempts
	switch {
	case err == nil:
		t.rec.Ack()
		t.result = resultAcked
		return
	case t.ctx.Err() != nil:
		t.result = resultDropped
		return
	case ctx.Err() != nil:
		// Cut short by the gate (or, in a batch, by another record's lease
		// ending): not a failure of the record's. It runs again, as it
		// stands, once the gate reopens.
		t.result = resultPaused
		return
	}
	t.attempts++
	p.c.counters.process.failed.Add(1)
	tooOld := p.c.opts.MaxRecordAge > 0 && time.Since(t.rec.ApproximateArrivalTimestamp) > p.c.opts.MaxRecordAge
	switch {
	case !tooOld && (maxAttempts == 0 || t.attempts < maxAttempts):
		t.result, t.err = resultRetry, err
	case p.c.opts.OnFailure == nil:
		t.result = resultStop
		why := fmt.Sprintf("handler failed %d times", t.attempts)
		if tooOld {
			why = fmt.Sprintf("handler failed %d times, the record older than MaxRecordAge (%v)", t.attempts, p.c.opts.MaxRecordAge)
		}
		t.err = fmt.Errorf("kcl: %s: stream %q, shard %q, record %s/%d: %s: %w", p.name, t.rec.StreamARN, t.rec.ShardID, t.rec.SequenceNumber, t.rec.SubSequenceNumber, why, err)
	default:
		p.c.counters.process.toOnFailure.Add(1)
		ferr := p.callOnFailure(context.WithValue(ctx, attemptKey{}, t.attempts), t.rec, err)
		switch {
		case ferr == nil:
			t.rec.Ack()
			t.result = resultAcked
		case t.ctx.Err() != nil:
			t.result = resultDropped
		case ctx.Err() != nil:
			t.attempts--
			t.result = resultPaused
		default:
			t.result, t.err = resultStop, ferr
		}
	}
}

// done takes an attempt's outcome: the key goes on to its next record, or
// waits for the retry, or (stop) stays blocked while Process shuts down.
func (p *processor) done(t *task) {
	p.running--
	p.inCalls--
	p.logFailure(t, p.settled(t))
}

// failureNote is what a record's failure owes the log (settled).
type failureNote int

const (
	noNote       failureNote = iota
	firstFailure             // its first failure: logged once
	stillFailing             // failing for about another LeaseDuration since it was last logged
)

// logFailure logs t's failure as note says, for Process. While a record
// fails, its shard's checkpoint cannot pass it, and after
// MaxUnackedPerShard more records the shard stops fetching: logged at its
// first failure, then about every LeaseDuration while it goes on failing.
// ProcessBatch logs a batch's at once (logBatchFailures).
func (p *processor) logFailure(t *task, note failureNote) {
	switch note {
	case firstFailure:
		p.c.log.Warn("kcl: Process: handler failed; retrying the record with backoff", "stream_arn", t.rec.StreamARN, "shard", t.rec.ShardID,
			"sequence_number", t.rec.SequenceNumber, "sub_sequence_number", t.rec.SubSequenceNumber, "error", t.err)
	case stillFailing:
		p.c.log.Warn("kcl: Process: a record keeps failing; its shard's checkpoint cannot pass it", "stream_arn", t.rec.StreamARN, "shard", t.rec.ShardID,
			"sequence_number", t.rec.SequenceNumber, "sub_sequence_number", t.rec.SubSequenceNumber, "attempts", t.attempts,
			"failing_for", time.Since(t.failing).Round(time.Millisecond), "error", t.err)
	}
}

// settled takes the outcome of t, its key's first record, no longer in
// flight: as done says. It returns what t's failure owes the log, if it
// is to be retried.
func (p *processor) settled(t *task) failureNote {
	note := noNote
	switch t.result {
	case resultAcked, resultDropped:
		p.advance(t.key)
	case resultPaused:
		p.pushReady(t) // still its key's first: startReady starts it once the gate reopens
	case resultRetry:
		if t.ctx.Err() != nil || t.rec.chunk != nil && windowClosed(t.rec.chunk.window) {
			// The lease went while this attempt ran, perhaps after its
			// window's closing was handled: no retry is owed.
			p.advance(t.key)
			return noNote
		}
		now := time.Now()
		switch {
		case t.backoff == nil:
			t.backoff, t.failing, t.warned = p.newBackOff(), now, now
			note = firstFailure
		case now.Sub(t.warned) >= p.c.opts.LeaseDuration:
			t.warned = now
			note = stillFailing
		}
		t.due = now.Add(t.backoff.NextBackOff())
		p.waiting.push(t)
		p.arm()
	case resultStop:
		// The record stays first of its key, unacked: later records of the
		// key never run before it.
		if p.err == nil {
			p.err = p.stopErr(t)
			p.stopConsuming()
		}
	}
	return note
}

// advance removes the first record of k, which is done, and makes the next
// one ready.
func (p *processor) advance(k *keyQueue) {
	p.queued--
	p.reuse.putTask(k.tasks.front())
	k.tasks.drop(1)
	if k.tasks.len() == 0 {
		delete(p.keys, k.key)
		p.reuse.putKey(k)
		return
	}
	p.pushReady(k.tasks.front())
}

// wakeDue makes the records whose backoff is over ready again.
func (p *processor) wakeDue() {
	now := time.Now()
	for p.waiting.len() > 0 && !p.waiting.peek().due.After(now) {
		p.pushReady(p.waiting.pop())
	}
	p.arm()
}

// dropWaiting makes the records backing off whose context ended ready, so
// that startReady drops them now rather than when their wait is over: the
// later records of their keys (delivered again, should this worker take the
// shard back) need not wait for them.
func (p *processor) dropWaiting() {
	all := p.waiting.items
	p.waiting.items = nil
	for _, it := range all {
		if t := it.t; t.ctx.Err() != nil {
			p.pushReady(t)
		} else {
			p.waiting.push(t)
		}
	}
	p.arm()
}

// arm sets the timer for the first record waiting, if any, or for the
// batch being gathered if it starts sooner.
func (p *processor) arm() {
	var at time.Time
	if p.waiting.len() > 0 {
		at = p.waiting.peek().due
	}
	// A gathering already over waits for a free slot or the gate, not for
	// the timer: arming it for the past would spin.
	if !p.gatherBy.IsZero() && p.gatherBy.After(time.Now()) && (at.IsZero() || p.gatherBy.Before(at)) {
		at = p.gatherBy
	}
	if at.IsZero() {
		if p.timer != nil {
			p.timer.Stop()
		}
		p.timerC = nil
		return
	}
	d := time.Until(at)
	if p.timer == nil {
		p.timer = time.NewTimer(d)
	} else {
		p.timer.Reset(d) // Go 1.23 timers: no stale tick after Reset
	}
	p.timerC = p.timer.C
}

// readyQueue holds a lane's ready records, oldest delivered (task.n)
// first. Most come in that order (a record with no earlier one of its key
// is the newest yet; with keys taking turns, so is a key's next record):
// those are queued in order, at no cost, the others kept in a heap.
type readyQueue struct {
	inOrder queue[*task] // pushed with n rising
	others  taskHeap
}

func (q *readyQueue) len() int { return q.inOrder.len() + q.others.len() }

func (q *readyQueue) push(t *task) {
	if q.inOrder.len() == 0 || q.inOrder.last().n < t.n {
		q.inOrder.push(t)
		return
	}
	q.others.push(t)
}

func (q *readyQueue) pop() *task {
	if q.others.len() > 0 && (q.inOrder.len() == 0 || q.others.items[0].n < q.inOrder.front().n) {
		return q.others.pop()
	}
	t := q.inOrder.front()
	q.inOrder.drop(1)
	return t
}

// taskHeap is a binary heap of tasks: by arrival (task.n), or with byDue
// by due time, then arrival. Each item carries its keys, so that a
// comparison reads no task.
type taskHeap struct {
	items []heapItem
	byDue bool
}

type heapItem struct {
	due int64 // with byDue: task.due on the monotonic clock (since dueOrigin); else 0
	n   uint64
	t   *task
}

// dueOrigin is where taskHeap's due times are counted from.
var dueOrigin = time.Now()

func (a heapItem) less(b heapItem) bool { return a.due < b.due || a.due == b.due && a.n < b.n }

func (h *taskHeap) len() int    { return len(h.items) }
func (h *taskHeap) peek() *task { return h.items[0].t }

func (h *taskHeap) push(t *task) {
	it := heapItem{n: t.n, t: t}
	if h.byDue {
		it.due = int64(t.due.Sub(dueOrigin))
	}
	h.items = append(h.items, it)
	i := len(h.items) - 1
	for i > 0 {
		parent := (i - 1) / 2
		if !h.items[i].less(h.items[parent]) {
			break
		}
		h.items[i], h.items[parent] = h.items[parent], h.items[i]
		i = parent
	}
}

func (h *taskHeap) pop() *task {
	top := h.items[0].t
	last := len(h.items) - 1
	h.items[0] = h.items[last]
	h.items[last] = heapItem{}
	h.items = h.items[:last]
	for i := 0; ; {
		smallest, l, r := i, 2*i+1, 2*i+2
		if l < last && h.items[l].less(h.items[smallest]) {
			smallest = l
		}
		if r < last && h.items[r].less(h.items[smallest]) {
			smallest = r
		}
		if smallest == i {
			break
		}
		h.items[i], h.items[smallest] = h.items[smallest], h.items[i]
		i = smallest
	}
	return top
}

// windowClosed reports whether w's lease is gone, without waiting.
func windowClosed(w *ackWindow) bool {
	select {
	case <-w.done():
		return true
	default:
		return false
	}
}
