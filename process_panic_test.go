package kcl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A handler that panics on one record does not crash the worker: each
// panic is a failed attempt, logged at Error with its stack, counted
// towards MaxAttempts, and the record goes to OnFailure with a *PanicError
// carrying the value and the stack; the other records go on (issue 23,
// item 3). On the emulators.
func TestProcessHandlerPanicIsAFailedAttempt(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 1)
	const n = 20
	puts := f.putN(n, 4, "")
	lines := &lineCounter{counts: map[string]int{"handler panicked": 0, "goroutine ": 0}}
	opts := f.options()
	opts.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(testOutput{t}, lines), nil))
	opts.Concurrency = 2
	opts.MaxAttempts = 2
	const bad = "k1:000001"
	var calls, done atomic.Int64
	var mu sync.Mutex
	var got error
	opts.OnFailure = func(ctx context.Context, r Record, err error) error {
		mu.Lock()
		got = err
		mu.Unlock()
		done.Add(1)
		return nil
	}
	r := startProcess(t, opts, func(ctx context.Context, r Record) error {
		if string(r.Data) == bad {
			calls.Add(1)
			panic(fmt.Errorf("nil map in %s", r.Data))
		}
		done.Add(1)
		return nil
	})
	require.Eventually(t, func() bool { return done.Load() == n }, 60*time.Second, 10*time.Millisecond)
	require.NoError(t, r.stop())
	assert.Equal(t, int64(2), calls.Load(), "two attempts, as MaxAttempts says")
	var pe *PanicError
	require.ErrorAs(t, got, &pe)
	assert.Contains(t, pe.Error(), "nil map in "+bad)
	assert.Contains(t, string(pe.Stack), "process_panic_test.go", "the stack of the panic")
	assert.NotNil(t, errors.Unwrap(pe), "a panic with an error unwraps to it")
	assert.Equal(t, 2, lines.get("handler panicked"), "logged at each attempt")
	assert.Equal(t, puts[n-1].seq, str(f.leaseItems()[puts[0].shard], attrCheckpoint), "the checkpoint passes the record OnFailure accepted")
}

// A panic in OnFailure is its refusal: Process stops, returning the
// *PanicError, and the worker is not crashed (issue 23, item 3).
func TestProcessOnFailurePanicStopsProcess(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 1)
	f.putN(4, 1, "")
	opts := f.options()
	opts.MaxAttempts = 1
	opts.ShutdownTimeout = 200 * time.Millisecond
	opts.OnFailure = func(ctx context.Context, r Record, err error) error { panic("dead-letter queue down") }
	r := startProcess(t, opts, func(ctx context.Context, r Record) error { return errors.New("fails") })
	err := r.returned(t, 60*time.Second)
	var pe *PanicError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "dead-letter queue down", pe.Value)
}

// The handler learns which attempt of its record it runs (Attempt), and
// OnFailure how many failed; the wait before a retry is RetryDelay, doubling
// (issue 23, item 4). On the emulators.
func TestProcessAttemptNumbersAndRetryDelay(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 1)
	f.putN(1, 1, "")
	opts := f.options()
	opts.MaxAttempts = 3
	opts.RetryDelay, opts.MaxRetryDelay = 400*time.Millisecond, time.Second
	var mu sync.Mutex
	var attempts []int
	var at []time.Time
	failed := make(chan int, 1)
	opts.OnFailure = func(ctx context.Context, r Record, err error) error {
		failed <- Attempt(ctx)
		return nil
	}
	r := startProcess(t, opts, func(ctx context.Context, r Record) error {
		mu.Lock()
		defer mu.Unlock()
		attempts, at = append(attempts, Attempt(ctx)), append(at, time.Now())
		return errors.New("fails")
	})
	select {
	case n := <-failed:
		assert.Equal(t, 3, n, "OnFailure: the failed attempts")
	case <-time.After(60 * time.Second):
		t.Fatal("OnFailure never called")
	}
	require.NoError(t, r.stop())
	assert.Equal(t, []int{1, 2, 3}, attempts)
	assert.GreaterOrEqual(t, at[1].Sub(at[0]), 200*time.Millisecond, "RetryDelay 400ms, ±50%")
	assert.Zero(t, Attempt(context.Background()))
}

// What bounds shutdown when a handler ignores its context (issue 23, item
// 7): the group is held only ShutdownTimeout (the leases are released
// while the handler still runs), and Process returns only once the handler
// returned. On the emulators.
func TestProcessReleasesLeasesBeforeAHandlerThatIgnoresItsContextReturns(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 1)
	puts := f.putN(1, 1, "")
	opts := f.options()
	opts.ShutdownTimeout = 300 * time.Millisecond
	running, release := make(chan struct{}), make(chan struct{})
	var returned atomic.Bool
	r := startProcess(t, opts, func(ctx context.Context, r Record) error {
		close(running)
		<-release // ignores ctx
		returned.Store(true)
		return nil
	})
	<-running
	r.cancel()
	require.Eventually(t, func() bool {
		return str(f.leaseItems()[puts[0].shard], "leaseOwner") == ""
	}, 30*time.Second, 20*time.Millisecond, "the lease is released while the handler runs")
	select {
	case <-r.done:
		t.Fatal("Process returned while its handler ran")
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	require.NoError(t, r.stop())
	assert.True(t, returned.Load())
}

// A record that keeps failing gets no more attempts once it is older than
// MaxRecordAge: it goes to OnFailure, though MaxAttempts allows more (issue
// 23, item 2; without it, one bad record held its shard back for as long
// as the stream kept it). On the emulators.
func TestProcessMaxRecordAgeEndsTheRetries(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 1)
	f.putN(1, 1, "")
	opts := f.options()
	opts.MaxRecordAge = time.Second
	opts.RetryDelay = 100 * time.Millisecond
	failed := make(chan int, 1)
	opts.OnFailure = func(ctx context.Context, r Record, err error) error {
		failed <- Attempt(ctx)
		return nil
	}
	r := startProcess(t, opts, func(ctx context.Context, r Record) error { return errors.New("poison") })
	select {
	case n := <-failed:
		assert.Greater(t, n, 1, "retried while younger than MaxRecordAge")
	case <-time.After(60 * time.Second):
		t.Fatal("retried for ever: MaxAttempts is 0, and the age limit never ended it")
	}
	require.NoError(t, r.stop())
}

// A record that keeps failing is logged at its first failure, then about
// every LeaseDuration while it goes on (attempts, for how long), not once
// for good: a stalled shard stays visible in the log (issue 23, item 2).
// On the emulators.
func TestProcessLogsARecordThatKeepsFailing(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 1)
	f.putN(1, 1, "")
	lines := &lineCounter{counts: map[string]int{"handler failed; retrying": 0, "a record keeps failing": 0, "failing_for=": 0}}
	opts := f.options() // LeaseDuration 1s
	opts.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(testOutput{t}, lines), nil))
	opts.RetryDelay, opts.MaxRetryDelay = 100*time.Millisecond, 200*time.Millisecond
	r := startProcess(t, opts, func(ctx context.Context, r Record) error { return errors.New("poison") })
	require.Eventually(t, func() bool { return lines.get("a record keeps failing") >= 2 }, 30*time.Second, 50*time.Millisecond)
	require.NoError(t, r.stop())
	assert.Equal(t, 1, lines.get("handler failed; retrying"), "the first failure, once")
	assert.Equal(t, lines.get("a record keeps failing"), lines.get("failing_for="), "each says for how long")
}
