package kcl

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// ProcessBatch is Process for a handler that takes many records at once (a
// sink such as DynamoDB's BatchWriteItem, Firehose or S3): it calls handle
// with up to Options.BatchSize records, acks those it accepted, and retries
// those it reported failed. It returns as Process does.
//
// Batches: a batch is started once BatchSize records are ready to run, or
// Options.BatchWindow after it began to gather (a handler slot was free and
// records were ready), with what is ready then; with BatchWindow 0 (the
// default) at once, with what is ready. Once Consume's shutdown began, no
// batch waits to fill. Up to Options.Concurrency batches run at once.
//
// Order: a batch holds records of many keys, and may hold several records
// of one key, in their shard's order; it is not capped by the number of
// keys. No two batches in flight hold records of one key, and a key's
// records are handled in their shard's order across batches. The records
// in recs are in the order they were delivered (over several shards, in
// the order they reached ProcessBatch). handle may keep recs.
//
// Failures: handle returns nil when every record was handled, a
// *BatchError (or an error wrapping one) saying which records failed, or
// any other error (or a panic) when the whole batch failed. Each record
// that failed is retried as Process retries it: after its backoff, in its
// key's turn, its attempts counted towards MaxAttempts and MaxRecordAge,
// then given to OnFailure. The later records of its key in the batch are
// not acked, whatever handle said of them: they are given to handle again
// after it, in a later batch, with no attempt counted. The records of
// other keys that handle accepted are acked. Attempt and BatchAttempt tell
// handle which attempt each record runs; OnFailure is called per record.
//
// The context given to handle ends when the lease of any of its records'
// shards is gone (lost, handed off or released), when the delivery
// deadline passes, and at the latest when ProcessBatch returns. A record
// handle reported failed (or the whole batch, if it failed) after its
// context ended is not a failed attempt: records of a lease still held run
// again, the others are left to the next owner. Shutdown is Process's.
//
// A Consumer is consumed once: ProcessBatch returns an error, consuming
// nothing, if Process, ProcessBatch or Consume was called on it before.
func (c *Consumer) ProcessBatch(ctx context.Context, handle func(ctx context.Context, recs []Record) error) error {
	if handle == nil {
		return errors.New("kcl: ProcessBatch: handle is nil")
	}
	if c.used.Swap(true) {
		return errConsumedTwice
	}
	consumeCtx, stopConsuming := context.WithCancel(ctx)
	defer stopConsuming()
	chunks, finished := c.consumeChunks(consumeCtx)
	p := newProcessor(ctx, c, nil, stopConsuming)
	p.name = "ProcessBatch"
	p.handleBatch = handle
	p.batches = make(chan *batch, c.opts.Concurrency)
	defer p.stopHandlers()
	return p.runChunks(chunks, finished)
}

// ProcessBatch builds a Consumer from opts and runs Consumer.ProcessBatch
// with ctx and handle. Errors from New (wrapping ErrInvalidOptions) are
// returned as they are.
func ProcessBatch(ctx context.Context, opts Options, handle func(ctx context.Context, recs []Record) error) error {
	c, err := New(opts)
	if err != nil {
		return err
	}
	return c.ProcessBatch(ctx, handle)
}

// BatchError is what a ProcessBatch handler returns when some records of
// its batch failed and the others were handled (a partial failure, as
// AWS Lambda's ReportBatchItemFailures).
//
// Errs[i] is the error of recs[i], the batch's i-th record, or nil if it
// was handled; records past the end of Errs were handled. A BatchError with
// no error in Errs acks the whole batch; one with more errors than the
// batch has records fails the whole batch.
type BatchError struct {
	Errs []error
}

func (e *BatchError) Error() string {
	n, first := 0, error(nil)
	for _, err := range e.Errs {
		if err != nil {
			if n == 0 {
				first = err
			}
			n++
		}
	}
	if n == 0 {
		return "kcl: batch: no record failed"
	}
	return fmt.Sprintf("kcl: batch: %d records failed, the first: %v", n, first)
}

// Unwrap returns the records' errors, so that errors.Is and errors.As look
// through them.
func (e *BatchError) Unwrap() []error {
	var errs []error
	for _, err := range e.Errs {
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// batchAttempts is the attempt numbers a batch's context carries
// (Attempt, BatchAttempt).
type batchAttempts struct {
	each []int // by index in the batch
	max  int
}

// BatchAttempt returns, from the context ProcessBatch gives its handler,
// which attempt of the batch's i-th record this call is: 1 for its first,
// 2 for its first retry, and so on (Attempt gives the highest of the
// batch). In a context Process gives its handler, or OnFailure, it is
// Attempt's number, whatever i. 0 for any other context or i.
func BatchAttempt(ctx context.Context, i int) int {
	switch v := ctx.Value(attemptKey{}).(type) {
	case int:
		return v
	case *batchAttempts:
		if i >= 0 && i < len(v.each) {
			return v.each[i]
		}
	}
	return 0
}

// batch is one call of a ProcessBatch handler. The dispatcher builds it
// and owns it again once it came back on batches; meanwhile the attempt's
// goroutine owns it and its tasks.
type batch struct {
	// tasks are the batch's records grouped by key, each key's in its
	// order: each key's first record in it is that key's first record.
	tasks []*task
	recs  []Record // what handle gets: tasks by arrival (task.idx)
}

// startBatches starts batches while fewer than Concurrency run, records are
// ready and the pause gate is open, each as soon as it is full or its
// gathering is over (batchDue).
func (p *processor) startBatches() {
	for p.running < p.c.opts.Concurrency && p.ready.len() > 0 && p.gateOpen() && p.batchDue() {
		b := p.gather()
		p.gatherBy = time.Time{}
		p.arm()
		if len(b.tasks) == 0 {
			continue // all dropped
		}
		p.running++
		p.inCalls += len(b.tasks)
		go p.attemptBatch(b, p.open)
	}
}

// batchDue reports whether a batch should start now: it would be full, or
// its gathering is over (BatchWindow passed since it began, or the
// shutdown began). Otherwise it begins the gathering if none is under way.
func (p *processor) batchDue() bool {
	if p.avail >= p.c.opts.BatchSize || p.c.opts.BatchWindow <= 0 || p.err != nil || p.stopping.Err() != nil {
		return true
	}
	now := time.Now()
	if p.gatherBy.IsZero() {
		p.gatherBy = now.Add(p.c.opts.BatchWindow)
		p.arm()
		return false
	}
	return !now.Before(p.gatherBy)
}

// gather takes up to BatchSize ready records: keys in the order ready
// hands them out, each with as many of its records as fit. A record whose
// context ended is not taken: at a key's first record it is dropped, and
// later ones end that key's part of the batch.
func (p *processor) gather() *batch {
	b := &batch{}
	size := p.c.opts.BatchSize
	for len(b.tasks) < size && p.ready.len() > 0 {
		t := p.popReady()
		if dead(t) {
			p.advance(t.key)
			continue
		}
		for _, x := range t.key.tasks.items()[:min(t.key.tasks.len(), size-len(b.tasks))] {
			if dead(x) {
				break
			}
			b.tasks = append(b.tasks, x)
		}
	}
	byArrival := slices.Clone(b.tasks)
	slices.SortFunc(byArrival, func(x, y *task) int { return cmp.Compare(x.n, y.n) })
	b.recs = make([]Record, len(byArrival))
	for i, t := range byArrival {
		t.idx = i
		b.recs[i] = t.rec
	}
	return b
}

// dead reports whether t's lease is gone. The window is asked directly:
// its watcher may not have cancelled the context yet.
func dead(t *task) bool {
	return t.ctx.Err() != nil || t.rec.chunk != nil && windowClosed(t.rec.chunk.window)
}

// attemptBatch calls the batch handler once for b, settles each record as
// attempt does (walking each key's records in order: once one is not
// acked, the later ones of its key wait for it), and sends b back to the
// dispatcher. The context handle gets ends with any of its records' and
// when open ends (the pause gate shut).
func (p *processor) attemptBatch(b *batch, open context.Context) {
	first := b.tasks[0]
	att := &batchAttempts{each: make([]int, len(b.recs))}
	for _, t := range b.tasks {
		att.each[t.idx] = t.attempts + 1
		att.max = max(att.max, t.attempts+1)
	}
	ctx, cancel := context.WithCancel(context.WithValue(first.ctx, attemptKey{}, att))
	stops := []func() bool{context.AfterFunc(open, cancel)}
	seen := []context.Context{first.ctx}
	for _, t := range b.tasks {
		if !slices.Contains(seen, t.ctx) {
			seen = append(seen, t.ctx)
			stops = append(stops, context.AfterFunc(t.ctx, cancel))
		}
	}
	defer func() {
		for _, stop := range stops {
			stop()
		}
		cancel()
		p.batches <- b
	}()
	for _, t := range b.tasks { // unless the call returns (worker)
		t.result, t.err = resultStop, nil // stopErr names the Goexit
	}
	running := &p.c.counters.process.running
	running.Add(int64(len(b.recs)))
	err := func() error {
		defer running.Add(-int64(len(b.recs))) // also if the call ends the goroutine
		return p.callBatchHandler(ctx, b.recs)
	}()
	errs := p.batchErrors(err, len(b.recs))
	var halted *keyQueue // the key whose earlier record in b was not acked
	for _, t := range b.tasks {
		if t.key == halted {
			t.result = resultBehind
			continue
		}
		var err error
		if errs != nil {
			err = errs[t.idx]
		}
		p.settle(t, ctx, err)
		if t.result != resultAcked && t.result != resultDropped {
			halted = t.key
		}
	}
}

// batchErrors returns each record's error given what the handler returned:
// nil if none failed.
func (p *processor) batchErrors(err error, n int) []error {
	if err == nil {
		return nil
	}
	var be *BatchError
	var pe *PanicError
	if errors.As(err, &be) && !errors.As(err, &pe) && len(be.Errs) <= n {
		errs := make([]error, n)
		copy(errs, be.Errs)
		return errs
	}
	if be != nil && len(be.Errs) > n {
		err = fmt.Errorf("kcl: ProcessBatch: the handler's BatchError has %d errors for a batch of %d records; the whole batch failed: %w", len(be.Errs), n, err)
	}
	errs := make([]error, n)
	for i := range errs {
		errs[i] = err
	}
	return errs
}

// batchDone takes a batch's outcome, key by key: the records acked (or
// dropped) at the front of each key are done, and the first that is not is
// taken as done takes a record's outcome; the later ones of its key wait.
func (p *processor) batchDone(b *batch) {
	p.running--
	p.inCalls -= len(b.tasks)
	var first, still []*task // the records whose failure owes the log
	for i := 0; i < len(b.tasks); {
		k := b.tasks[i].key
		j := i
		for j+1 < len(b.tasks) && b.tasks[j+1].key == k {
			j++
		}
		for ; i < j && (b.tasks[i].result == resultAcked || b.tasks[i].result == resultDropped); i++ {
			p.queued--
			p.reuse.putTask(k.tasks.front())
			k.tasks.drop(1)
		}
		switch p.settled(b.tasks[i]) { // its key's first: acked or dropped, it goes on to the next
		case firstFailure:
			first = append(first, b.tasks[i])
		case stillFailing:
			still = append(still, b.tasks[i])
		}
		i = j + 1
	}
	p.logBatchFailures(first, still, len(b.tasks))
}

// logBatchFailures logs the failures of a batch of n records as
// logFailure logs a record's, one Warn for all those failing for the
// first time and one for all those still failing, each naming one record
// (the first; the one failing longest) and how many there are: a batch
// that failed as a whole is one line, not one per record.
func (p *processor) logBatchFailures(first, still []*task, n int) {
	if len(first) > 0 {
		t := first[0]
		p.c.log.Warn("kcl: ProcessBatch: handler failed; retrying the records with backoff", "records", len(first), "batch", n,
			"stream_arn", t.rec.StreamARN, "shard", t.rec.ShardID, "sequence_number", t.rec.SequenceNumber, "sub_sequence_number", t.rec.SubSequenceNumber, "error", t.err)
	}
	if len(still) > 0 {
		t := slices.MinFunc(still, func(x, y *task) int { return x.failing.Compare(y.failing) })
		p.c.log.Warn("kcl: ProcessBatch: records keep failing; their shards' checkpoints cannot pass them", "records", len(still), "batch", n,
			"stream_arn", t.rec.StreamARN, "shard", t.rec.ShardID, "sequence_number", t.rec.SequenceNumber, "sub_sequence_number", t.rec.SubSequenceNumber,
			"attempts", t.attempts, "failing_for", time.Since(t.failing).Round(time.Millisecond), "error", t.err)
	}
}

// callBatchHandler calls the batch handler as callHandler calls handle.
func (p *processor) callBatchHandler(ctx context.Context, recs []Record) (err error) {
	defer p.recovered("handler", recs[0], &err)
	return p.handleBatch(ctx, recs)
}
