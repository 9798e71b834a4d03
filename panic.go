package kcl

import (
	"context"
	"fmt"
	"runtime/debug"
)

// PanicError is the error a Process handler call, or OnFailure, gives when
// it panics instead of returning: Process recovers the panic, logs it at
// Error with its stack, and counts it as a failed attempt of the record
// (retried, towards MaxAttempts, then given to OnFailure as this error).
// One record that panics must not crash the worker: after a restart it
// would come first again, and crash every worker that takes its shard.
type PanicError struct {
	Value any    // what was passed to panic
	Stack []byte // the panicking goroutine's stack, as debug.Stack gives it
}

func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// Unwrap returns the panic value if it is an error (panic(err)).
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// callHandler calls handle for rec, turning a panic into a *PanicError,
// logged at Error with its stack. It runs on the attempt's goroutine.
func (p *processor) callHandler(ctx context.Context, rec Record) (err error) {
	defer p.recovered("handler", rec, &err)
	return p.handle(ctx, rec)
}

// callOnFailure calls Options.OnFailure as callHandler calls the handler.
func (p *processor) callOnFailure(ctx context.Context, rec Record, failure error) (err error) {
	defer p.recovered("OnFailure", rec, &err)
	return p.c.opts.OnFailure(ctx, rec, failure)
}

// recovered, deferred, turns a panic of what into *err.
func (p *processor) recovered(what string, rec Record, err *error) {
	v := recover()
	if v == nil {
		return
	}
	pe := &PanicError{Value: v, Stack: debug.Stack()}
	*err = pe
	p.c.log.Error("kcl: "+p.name+": "+what+" panicked; counted as a failed attempt", "stream_arn", rec.StreamARN, "shard", rec.ShardID,
		"sequence_number", rec.SequenceNumber, "sub_sequence_number", rec.SubSequenceNumber, "panic", fmt.Sprint(v), "stack", string(pe.Stack))
}

// goexited is the error Process stops with when a call of the handler, or
// of OnFailure, for rec ends its goroutine (runtime.Goexit) instead of
// returning: the record was neither handled nor refused, and retrying a
// call that does so would only do it again.
//
// It is made only when needed (stopErr): a task's outcome is set to stop
// with no error before each call, which costs nothing, and every call that
// returns overwrites it.
func (p *processor) goexited(rec Record) error {
	return fmt.Errorf("kcl: %s: stream %q, shard %q, record %s/%d: the handler or OnFailure called runtime.Goexit (t.FailNow?) instead of returning",
		p.name, rec.StreamARN, rec.ShardID, rec.SequenceNumber, rec.SubSequenceNumber)
}

// stopErr is the error Process stops with for t, whose outcome is
// resultStop: its own, or, when it has none, that its call ended its
// goroutine (goexited).
func (p *processor) stopErr(t *task) error {
	if t.err != nil {
		return t.err
	}
	return p.goexited(t.rec)
}
