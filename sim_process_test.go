//go:build go1.25

package kcl

// Process runs in the simulation (sim_test.go): in some seeds some or all
// workers run Consumer.Process instead of ranging over Consume. Each
// incarnation draws its Concurrency (1 to 8) and a handler: calls of drawn
// virtual durations (some longer than the delivery margin, so that one can
// span a worker's delivery deadline), failures (unlimited retries, or
// MaxAttempts then OnFailure, which accepts the record or, once, refuses it
// and so stops Process), and calls that ignore their context for a drawn
// time after it ends. The adversary's faults apply to them as to a Consume
// loop:
//   - A freeze stops the handlers as it stops the user loop: a call waits
//     for the thaw before it returns, and a call started meanwhile waits
//     before it does anything. kcl's goroutines run on (sim_test.go's
//     limits), so contexts end during a freeze.
//   - A crash ends every call at once: a dead process runs nothing. Calls
//     block until their context ends (the kill), and calls started after
//     the crash are not logged.
//   - A Process that stopped on a refused record is an expected stop: a
//     supervisor starts the worker again under its WorkerID (not once the
//     quiet phase began).
//
// Some incarnations run Consumer.ProcessBatch instead (a BatchSize of 1 to
// 20, a BatchWindow of 0 to 50ms): a batch is one call with the plan of its
// first record, each record failing on its own (reported in a *BatchError,
// or the batch failing as a whole when all do). The checker holds its
// records as calls of one batch: exclusion between batches, per-key order
// across them; the handler checks the order within one.
//
// Every call is logged (simCall) with its start and end steps, when its
// context ended, and how it returned; the checker holds them to Process's
// contract (sim_process_check_test.go). In the quiet phase handlers are
// quick, never fail and never ignore their context, so that the group
// drains.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// simProcConfig is which workers of a seed run Process.
type simProcConfig struct {
	share float64 // the chance that a worker ID runs Process: 0 (none), 1 (all) or between
}

// drawProcConfig draws a seed's Process runs from a stream of their own, so
// that the rest of its set-up and schedule stay as they were.
func drawProcConfig(seed uint64) simProcConfig {
	rng := rand.New(rand.NewPCG(seed^0x9c0ce55, seed+1))
	switch x := rng.IntN(10); {
	case x < 4:
		return simProcConfig{}
	case x < 7:
		return simProcConfig{share: 0.5}
	default:
		return simProcConfig{share: 1}
	}
}

func (c simProcConfig) String() string {
	switch c.share {
	case 0:
		return ""
	case 1:
		return " process=all"
	default:
		return fmt.Sprintf(" process=%.0f%%", 100*c.share)
	}
}

// simProcRun is a run's Process workers and their calls.
type simProcRun struct {
	// restart is held by a supervisor's restart, by quietProcess and while
	// a stream is deleted and created again with every worker down: a
	// worker is started again before the quiet phase, and so stopped with
	// the others at the end, or not at all. A chanLock: its holder sleeps
	// in virtual time, which a goroutine waiting on a sync.Mutex would stop.
	restart chanLock

	// Guarded by simRun.mu.
	byID    map[string]bool // worker ID -> runs Process: drawn by its first incarnation, kept by later ones
	calls   []simCall       // in the order they started
	batches int             // ProcessBatch calls so far (simCall.Batch)
	// quiet: the quiet phase began: no call fails or ignores its context
	// from now on, and no worker is started again after a refusal.
	quiet bool
	// quietC is closed when quiet is set: calls that work until their
	// context ends (simCallPlan.untilCtx) end then too.
	quietC chan struct{}
}

// quietChan returns simProcRun.quietC, made at its first use (run.mu held).
func (r *simProcRun) quietChan() chan struct{} {
	if r.quietC == nil {
		r.quietC = make(chan struct{})
	}
	return r.quietC
}

// simProcParams is one incarnation's Process options and handler.
type simProcParams struct {
	concurrency, maxAttempts int
	refuseAt                 int           // OnFailure refuses its refuseAt-th record (and accepts the others); 0: never
	short                    time.Duration // a short call takes up to twice this
	longP                    float64       // the chance that a call is long: 0.1 to 1.5 LeaseDuration
	failP                    float64       // the chance that a call fails
	ignoreP                  float64       // the chance that a call ignores its context once it ends, for up to LeaseDuration/2
	// untilCtxP is the chance that a call works until its context ends (a
	// handler waiting on a downstream call that only its context ends),
	// or until the quiet phase begins. Drawn from a stream of its own.
	untilCtxP   float64
	batchSize   int           // > 0: ProcessBatch, with this BatchSize
	batchWindow time.Duration // ProcessBatch's BatchWindow
}

func (p simProcParams) String() string {
	onFailure := "none"
	switch {
	case p.maxAttempts > 0 && p.refuseAt > 0:
		onFailure = fmt.Sprintf("refuses its record #%d", p.refuseAt)
	case p.maxAttempts > 0:
		onFailure = "accepts"
	}
	batch := ""
	if p.batchSize > 0 {
		batch = fmt.Sprintf(" ProcessBatch BatchSize=%d BatchWindow=%v", p.batchSize, p.batchWindow)
	}
	return fmt.Sprintf("Concurrency=%d short=%v long=%.2f fail=%.2f MaxAttempts=%d OnFailure=%s ignore=%.2f untilCtx=%.2f%s",
		p.concurrency, p.short, p.longP, p.failP, p.maxAttempts, onFailure, p.ignoreP, p.untilCtxP, batch)
}

// errSimFailed is what a failing call returns; errSimRefused is what
// OnFailure returns when it refuses a record.
var (
	errSimFailed  = errors.New("sim: handler failed")
	errSimRefused = errors.New("sim: OnFailure refused the record")
)

// simProcWorker is one incarnation's Process run.
type simProcWorker struct {
	run    *simRun       // immutable
	seed   uint64        // immutable: for the incarnation a supervisor starts after this one
	params simProcParams // immutable
	lease  time.Duration // immutable: LeaseDuration
	w      *simWorker    // set before Process is called, then immutable
	dead   chan struct{} // immutable: closed when the worker crashes

	freezing chan struct{} // guarded by w.mu: closed when the worker freezes; nil while frozen

	// Guarded by run.mu.
	rng        *rand.Rand
	untilRNG   *rand.Rand     // draws simCallPlan.untilCtx, apart from rng so that a seed's other draws stay as they were
	deadAt     simMoment      // the crash
	last       map[string]int // record (lastKey) -> index in run.proc.calls of its last call here
	onFailures int            // OnFailure calls so far
	refused    bool           // OnFailure refused a record: Process stops
	again      bool           // and the worker is to be started again
	spinAt     time.Time      // the instant of spinN
	spinN      map[string]int // calls of each record started at spinAt
	spinning   bool           // a busy loop was seen: every call takes virtual time from now on
	batchCalls map[int][]int  // ProcessBatch call -> its records' calls, in the order of recs
}

// processOptions decides whether the incarnation name of worker id runs
// Process; if so it sets opts for it and returns its run (to start once the
// Consumer exists), else nil.
func (s *simRun) processOptions(opts *Options, seed uint64, id, name string) *simProcWorker {
	rng := rand.New(rand.NewPCG(seed, 0x9c0c))
	s.mu.Lock()
	if s.proc.byID == nil {
		s.proc.byID = map[string]bool{}
	}
	on, seen := s.proc.byID[id]
	if !seen {
		on = rng.Float64() < s.cfg.process.share
		s.proc.byID[id] = on
	}
	s.mu.Unlock()
	if !on {
		return nil
	}
	p := simProcParams{
		concurrency: 1 + rng.IntN(8),
		short:       []time.Duration{0, 2 * time.Millisecond, 10 * time.Millisecond}[rng.IntN(3)],
		longP:       []float64{0, 0.05, 0.2}[rng.IntN(3)],
		failP:       []float64{0, 0.05, 0.2}[rng.IntN(3)],
		maxAttempts: []int{0, 0, 1, 2, 3}[rng.IntN(5)],
		ignoreP:     []float64{0, 0, 0.1, 0.5}[rng.IntN(4)],
	}
	if p.maxAttempts > 0 && rng.IntN(3) == 0 {
		p.refuseAt = 1 + rng.IntN(10)
	}
	// ProcessBatch, in a third of the incarnations: drawn from a stream of
	// its own, so that a seed's other draws stay as they were.
	p.untilCtxP = []float64{0, 0, 0.02, 0.1}[rand.New(rand.NewPCG(seed, 0x0c7e)).IntN(4)]
	if brng := rand.New(rand.NewPCG(seed, 0xba7c)); brng.IntN(3) == 0 {
		p.batchSize = 1 + brng.IntN(20)
		p.batchWindow = []time.Duration{0, 0, 5 * time.Millisecond, 50 * time.Millisecond}[brng.IntN(4)]
		opts.BatchSize, opts.BatchWindow = p.batchSize, p.batchWindow
	}
	opts.Concurrency, opts.MaxAttempts = p.concurrency, p.maxAttempts
	pw := &simProcWorker{
		run: s, seed: rng.Uint64(), params: p, lease: s.cfg.leaseDuration, dead: make(chan struct{}),
		rng: rand.New(rand.NewPCG(rng.Uint64(), 13)), last: map[string]int{}, spinN: map[string]int{},
	}
	pw.untilRNG = rand.New(rand.NewPCG(pw.seed, 0x0c7f))
	if p.maxAttempts > 0 {
		opts.OnFailure = pw.onFailure
	}
	s.event("process %s: %s", name, p)
	return pw
}

// quietProcess begins the quiet phase for the Process workers.
func (s *simRun) quietProcess() {
	s.proc.restart.Lock()
	defer s.proc.restart.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.proc.quiet = true
	close(s.proc.quietChan())
}

// handledLocked adds to out the records a Process call handled (run.mu
// held).
func (s *simRun) handledLocked(out map[string]bool) {
	for _, c := range s.proc.calls {
		if c.handled() && !c.OldLease {
			out[c.Data] = true
		}
	}
}

// idleLocked reports whether no Process worker named in names has a call
// running (run.mu held).
func (s *simRun) idleLocked(names map[string]bool) bool {
	for _, c := range s.proc.calls {
		if names[c.Worker] && c.End.step == 0 {
			return false
		}
	}
	return true
}

// serve runs Process for w until it returns, then logs how w ended. A
// refusal was expected; the worker is started again unless the simulation
// was stopping it.
func (p *simProcWorker) serve(w *simWorker, ctx context.Context) {
	p.w = w
	var err error
	if p.params.batchSize > 0 {
		err = w.c.ProcessBatch(ctx, p.handleBatch)
	} else {
		err = w.c.Process(ctx, p.handle)
	}
	s := p.run
	s.mu.Lock()
	refused, again := p.refused, p.again
	s.mu.Unlock()
	if refused && errors.Is(err, errSimRefused) {
		s.event("%s: Process stopped: %v", w.name, err)
		err = nil // what the simulation asked for
	}
	w.ended(err)
	close(w.done)
	if !again {
		return
	}
	s.proc.restart.Lock() // the supervisor
	defer s.proc.restart.Unlock()
	// A worker started while a stream it lists is missing ends with an
	// error, as documented: the supervisor waits for the stream, as one
	// that retries would.
	for slices.ContainsFunc(s.sts.names, s.sts.missing) {
		time.Sleep(50 * time.Millisecond)
	}
	s.mu.Lock()
	quiet := s.proc.quiet
	s.mu.Unlock()
	// Nor does it start a second process of the ID (a deploy, or a stream
	// created again while every worker was down, started it again).
	live := slices.ContainsFunc(s.live(), func(x *simWorker) bool { return x.id == w.id })
	if !quiet && !live {
		s.event("supervisor: start %s again", w.id)
		s.startWorker(p.seed, w.id)
	}
}

// froze wakes the calls of a worker that froze, so that their clocks stop
// (w.mu held). Nil-safe (a Consume loop).
func (p *simProcWorker) froze() {
	if p != nil && p.freezing != nil {
		close(p.freezing)
		p.freezing = nil
	}
}

// crash ends every call of a crashed worker. Nil-safe (a Consume loop).
func (p *simProcWorker) crash() {
	if p == nil {
		return
	}
	s := p.run
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.deadAt.step == 0 {
		p.deadAt.at, p.deadAt.step = s.now()
		close(p.dead)
	}
}

// simCallPlan is what one call does, drawn when it starts.
type simCallPlan struct {
	dur    time.Duration // its work
	fail   bool          // it fails once its work is done
	ignore time.Duration // how long it runs on once its context ended; 0: it returns at once
	// untilCtx: it works until its context ends, or the quiet phase
	// begins unless its worker is stopping, however long (dur is ignored):
	// a stopping worker's Process must end it, or the stop's wait reports
	// a Process that did not return.
	untilCtx bool
}

// begin logs the start of a call of r (in ProcessBatch call batch, or 0)
// and draws what it does; it returns the call's index, or -1 for a call of
// a crashed worker, which is not logged.
func (p *simProcWorker) begin(r Record, batch int) (int, simCallPlan) {
	s := p.run
	s.mu.Lock()
	defer s.mu.Unlock()
	at, step := s.now()
	if !at.Equal(p.spinAt) {
		p.spinAt = at
		clear(p.spinN)
	}
	p.spinN[string(r.Data)]++
	if p.spinN[string(r.Data)] >= simSpinCalls {
		p.spinning = true
	}
	var plan simCallPlan
	switch x := p.rng.Float64(); {
	case s.proc.quiet:
		plan.dur = time.Duration(p.rng.Int64N(int64(2*time.Millisecond) + 1))
	case x < p.params.longP:
		plan.dur = time.Duration(float64(p.lease) * (0.1 + 1.4*p.rng.Float64()))
	default:
		plan.dur = time.Duration(p.rng.Int64N(int64(2*p.params.short) + 1))
	}
	if !s.proc.quiet && p.params.untilCtxP > 0 && p.untilRNG.Float64() < p.params.untilCtxP {
		plan.untilCtx = true
	}
	if !s.proc.quiet {
		plan.fail = p.rng.Float64() < p.params.failP
		if p.rng.Float64() < p.params.ignoreP {
			plan.ignore = time.Duration(p.rng.Int64N(int64(p.lease/2))) + 1
		}
	}
	if p.spinning { // break the loop: let virtual time go on
		plan.dur, plan.ignore = max(plan.dur, 10*time.Millisecond), max(plan.ignore, 10*time.Millisecond)
	}
	if p.deadAt.step != 0 {
		return -1, plan
	}
	shard := s.sts.ofDelivery(r.StreamARN, r.ShardID, string(r.Data))
	win, oldLease := s.windowLocked(p.w, r, shard)
	key, _, _ := strings.Cut(string(r.Data), ":")
	s.proc.calls = append(s.proc.calls, simCall{
		Worker: p.w.name, ID: p.w.id, Window: win, Shard: shard, Seq: r.SequenceNumber, Sub: r.SubSequenceNumber,
		Data: string(r.Data), Key: key, Start: simMoment{at, step}, Ignore: plan.ignore, OldLease: oldLease, Batch: batch,
	})
	i := len(s.proc.calls) - 1
	p.last[lastKey(r)] = i
	if key != r.PartitionKey {
		s.t.Errorf("record %q has partition key %q", r.Data, r.PartitionKey)
	}
	return i, plan
}

// finish logs the end of call i with result, and when its context ended
// (ctxEnd, or now if it ended unseen at this instant).
func (p *simProcWorker) finish(i int, ctx context.Context, result string, ctxEnd simMoment) {
	if i < 0 {
		return
	}
	s := p.run
	s.mu.Lock()
	defer s.mu.Unlock()
	c := &s.proc.calls[i]
	if c.End.step != 0 {
		return // ended by the crash
	}
	c.End.at, c.End.step = s.now()
	if ctxEnd.step == 0 && ctx.Err() != nil {
		ctxEnd = c.End
	}
	c.CtxEnd, c.Result = ctxEnd, result
	if p.deadAt.step != 0 {
		c.End, c.Result = p.deadAt, callCrashed
	}
}

// crashed ends calls idx at the crash (their context having ended at
// ctxEnd, if before), and blocks until ctx ends, as the call of a dead
// process never returns: Process's shutdown ends it (the kill).
func (p *simProcWorker) crashed(idx []int, ctx context.Context, ctxEnd simMoment) error {
	s := p.run
	s.mu.Lock()
	for _, i := range idx {
		if i < 0 {
			continue
		}
		c := &s.proc.calls[i]
		if c.End.step == 0 {
			c.End, c.Result = p.deadAt, callCrashed
			if ctxEnd.step != 0 && !ctxEnd.after(p.deadAt) {
				c.CtxEnd = ctxEnd
			}
		}
	}
	s.mu.Unlock()
	<-ctx.Done()
	s.mu.Lock()
	spinning := p.spinning
	s.mu.Unlock()
	if spinning {
		time.Sleep(10 * time.Millisecond) // break the loop
	}
	return ctx.Err()
}

// handle is the handler: it works for its drawn time, and fails or not;
// if its context ends first it returns at once, or after ignoring it for
// its drawn time. Its clock stops while its worker is frozen: it does no
// work then, and never returns.
func (p *simProcWorker) handle(ctx context.Context, r Record) error {
	i, plan := p.begin(r, 0)
	if i < 0 {
		return p.crashed(nil, ctx, simMoment{})
	}
	ctxEnd, how := p.work(ctx, plan)
	switch how {
	case workCrashed:
		return p.crashed([]int{i}, ctx, ctxEnd)
	case workCtx:
		p.finish(i, ctx, callCtx, ctxEnd)
		return ctx.Err()
	}
	s := p.run
	s.mu.Lock()
	fail := plan.fail && !s.proc.quiet
	s.mu.Unlock()
	if fail {
		result := callFailed
		if ctx.Err() != nil {
			result = callCtx // not counted by Process: its context ended
		}
		p.finish(i, ctx, result, ctxEnd)
		return errSimFailed
	}
	p.finish(i, ctx, callOK, ctxEnd)
	return nil
}

// handleBatch is ProcessBatch's handler: one call, as handle's, with the
// plan of its first record, each record failing or not by its own plan.
// It reports the failed ones in a *BatchError, or fails the whole batch
// when all fail; the records of a key behind one that failed are not
// acked, whatever it says of them. It checks that each key's records come
// in their shard's order.
func (p *simProcWorker) handleBatch(ctx context.Context, recs []Record) error {
	s := p.run
	s.mu.Lock()
	s.proc.batches++
	batch := s.proc.batches
	s.mu.Unlock()
	idx := make([]int, len(recs))
	fails := make([]bool, len(recs))
	var plan simCallPlan
	last := map[string]Record{} // by key: its latest record in recs
	for k, r := range recs {
		i, pl := p.begin(r, batch)
		idx[k], fails[k] = i, pl.fail
		if i >= 0 {
			s.mu.Lock()
			if p.batchCalls == nil {
				p.batchCalls = map[int][]int{}
			}
			p.batchCalls[batch] = append(p.batchCalls[batch], i)
			s.mu.Unlock()
		}
		if k == 0 {
			plan = pl
		}
		if prev, ok := last[r.PartitionKey]; ok && prev.ShardID == r.ShardID && prev.StreamARN == r.StreamARN && !recordBefore(prev, r) {
			s.t.Errorf("batch %d of %s: key %s: %q (%s/%d) after %q (%s/%d)", batch, p.w.name, r.PartitionKey, r.Data, r.SequenceNumber, r.SubSequenceNumber, prev.Data, prev.SequenceNumber, prev.SubSequenceNumber)
		}
		last[r.PartitionKey] = r
	}
	if idx[0] < 0 {
		return p.crashed(nil, ctx, simMoment{})
	}
	ctxEnd, how := p.work(ctx, plan)
	switch how {
	case workCrashed:
		return p.crashed(idx, ctx, ctxEnd)
	case workCtx:
		for _, i := range idx {
			p.finish(i, ctx, callCtx, ctxEnd)
		}
		return ctx.Err()
	}
	s.mu.Lock()
	quiet := s.proc.quiet
	s.mu.Unlock()
	errs := make([]error, len(recs))
	failed := 0
	halted := map[string]bool{} // keys with a record not acked
	for k, r := range recs {
		said := callOK
		if fails[k] && !quiet {
			errs[k], failed = errSimFailed, failed+1
			said = callFailed
			if ctx.Err() != nil {
				said = callCtx // not counted by ProcessBatch: its context ended
			}
		}
		result := said
		if halted[r.PartitionKey] {
			result = callBehind
		}
		if said != callOK {
			halted[r.PartitionKey] = true // unless OnFailure accepts it (onFailure)
		}
		p.finish(idx[k], ctx, result, ctxEnd)
		s.mu.Lock()
		s.proc.calls[idx[k]].said = said
		s.mu.Unlock()
	}
	switch {
	case failed == 0:
		return nil
	case failed == len(recs):
		return errSimFailed
	}
	return &BatchError{Errs: errs}
}

// recordBefore reports whether a comes before b in their shard.
func recordBefore(a, b Record) bool {
	if a.SequenceNumber != b.SequenceNumber {
		return seqBefore(a.SequenceNumber, b.SequenceNumber)
	}
	return a.SubSequenceNumber < b.SubSequenceNumber
}

// How a call's work ended (work).
const (
	workDone    = iota // its work is done
	workCtx            // its context ended, and it ignored it for its drawn time, if any
	workCrashed        // its worker crashed
)

// work runs a call's plan: its work, stopping once its context ended (at
// once, or after ignoring it for its drawn time). Its clock stops while
// its worker is frozen. It returns how it ended, and when the context
// ended if it did.
func (p *simProcWorker) work(ctx context.Context, plan simCallPlan) (ctxEnd simMoment, how int) {
	done := ctx.Done()
	noteCtx := func() {
		if ctxEnd.step == 0 {
			ctxEnd.at, ctxEnd.step = p.run.now()
		}
		done = nil
	}
	// hold waits while the worker is frozen (noting its context's end),
	// and returns the channel that is closed when it freezes next; nil:
	// it crashed.
	hold := func() <-chan struct{} {
		for {
			p.w.mu.Lock()
			frozen, crashed := p.w.frozen, p.w.crashed
			if frozen == nil && p.freezing == nil {
				p.freezing = make(chan struct{})
			}
			freezing := p.freezing
			p.w.mu.Unlock()
			switch {
			case crashed:
				return nil
			case frozen == nil:
				return freezing
			}
			select {
			case <-frozen:
			case <-done:
				noteCtx()
			case <-p.dead:
				return nil
			}
		}
	}
	work, ignore := plan.dur, plan.ignore // running time left
	var quiet <-chan struct{}
	if plan.untilCtx {
		work = time.Duration(math.MaxInt64) // until its context ends, or the quiet phase begins
		p.run.mu.Lock()
		quiet = p.run.proc.quietChan()
		p.run.mu.Unlock()
	}
	for {
		freezing := hold()
		if freezing == nil {
			return ctxEnd, workCrashed
		}
		ignoring := ctxEnd.step != 0
		if ignoring && ignore <= 0 {
			return ctxEnd, workCtx
		}
		if work <= 0 {
			return ctxEnd, workDone
		}
		wait := work
		if ignoring {
			wait = min(wait, ignore)
		}
		began := time.Now()
		timer := time.NewTimer(wait)
		select {
		case <-timer.C:
		case <-done:
			noteCtx()
		case <-quiet:
			quiet = nil
			p.w.mu.Lock()
			stopping := p.w.stopping
			p.w.mu.Unlock()
			if !stopping { // a stopping worker's call waits on: its context must end
				work = 0
			}
		case <-freezing:
		case <-p.dead:
		}
		timer.Stop()
		ran := time.Since(began)
		work -= ran
		if ignoring {
			ignore -= ran
		}
	}
}

// lastKey names r in simProcWorker.last: by its data and its place in the
// stream, since a KPL producer puts a user record again (the same data at
// another sequence number), and a batch may hold both copies.
func lastKey(r Record) string {
	return fmt.Sprintf("%s\x00%s\x00%d", r.Data, r.SequenceNumber, r.SubSequenceNumber)
}

// onFailure is OnFailure: it accepts the record, but refuses the
// refuseAt-th (not in the quiet phase), which stops Process. The call
// whose failure it follows ends with it.
func (p *simProcWorker) onFailure(ctx context.Context, r Record, err error) error {
	s := p.run
	s.mu.Lock()
	p.onFailures++
	refuse := p.params.refuseAt == p.onFailures && !s.proc.quiet && !p.refused
	i, ok := p.last[lastKey(r)]
	if ok {
		c := &s.proc.calls[i]
		if c.End.step != 0 && c.Result != callCrashed {
			c.End.at, c.End.step = s.now()
			c.Result = callAccepted
			if refuse {
				c.Result = callRefused
			}
		}
	}
	if refuse {
		p.refused = true
	} else if ok {
		p.acceptedInBatchLocked(i)
	}
	s.mu.Unlock()
	if !refuse {
		return nil
	}
	p.w.mu.Lock()
	// The stop is expected: the worker is no longer live. A supervisor
	// starts it again, unless the simulation was stopping it anyway.
	again := !p.w.stopping && !p.w.crashed
	p.w.stopping = true
	p.w.mu.Unlock()
	s.mu.Lock()
	p.again = again
	s.mu.Unlock()
	s.event("%s: OnFailure refuses %q", p.w.name, r.Data)
	return errSimRefused
}

// acceptedInBatchLocked follows OnFailure's acceptance of the record of
// call i, if it was in a batch: ProcessBatch acked it, so the records of
// its key after it in the batch are settled by what the handler said of
// them, now, up to the next that failed (run.mu held).
func (p *simProcWorker) acceptedInBatchLocked(i int) {
	s := p.run
	c := s.proc.calls[i]
	if c.Batch == 0 {
		return
	}
	after := false
	for _, j := range p.batchCalls[c.Batch] {
		x := &s.proc.calls[j]
		switch {
		case j == i:
			after = true
		case !after || x.Key != c.Key || x.Result != callBehind:
		default:
			// Settled now, after the acceptance: the ack of a record
			// comes after its key's earlier one was accepted.
			x.Result = x.said
			x.End.at, x.End.step = s.now()
			if x.said != callOK {
				return
			}
		}
	}
}

// dumpCalls logs, for each key a violation names ("key K:"), every Process
// call of it, and the lease-table writes of the shards they came from.
func (s *simRun) dumpCalls(violations []string) {
	keys := map[string]bool{}
	for _, v := range violations {
		for _, prefix := range []string{"key order: key ", "exclusion: key "} {
			if after, ok := strings.CutPrefix(v, prefix); ok {
				key, _, _ := strings.Cut(after, ":")
				keys[key] = true
			}
		}
	}
	if len(keys) == 0 {
		return
	}
	l := s.log()
	shards := map[string]bool{}
	for _, c := range l.Calls {
		if !keys[c.Key] {
			continue
		}
		shards[c.Shard] = true
		s.t.Logf("call %-7s window %-3d %s %q: %s step %d .. %s step %d, %s, context ended %s step %d, ignores it %v",
			c.Worker, c.Window, c.Shard, c.Data, c.Start.at.Format("15:04:05.000000"), c.Start.step, c.End.at.Format("15:04:05.000000"), c.End.step,
			c.Result, fmtMoment(c.CtxEnd), c.CtxEnd.step, c.Ignore.Round(time.Millisecond))
	}
	for _, w := range l.Writes {
		if shards[w.Shard] {
			s.t.Logf("write %s step %-7d %s %-10s by %-4s owner %-4q -> %-4q checkpoint %s/%d", w.At.Format("15:04:05.000000"), w.Step, w.Shard, w.Op, w.By, w.Prev, w.Owner, w.CP.seq, w.CP.sub)
		}
	}
	for _, o := range l.Outages {
		s.t.Logf("outage %s: %s step %d .. %s step %d", o.Worker, o.From.Format("15:04:05.000000"), o.FromStep, fmtEnd(o.To), o.ToStep)
	}
}
