package kcl

// Tests of ProcessBatch with the in-process Kinesis (kinesisfake) or the
// dispatcher alone: batches filling to BatchSize across keys and several
// records of one key, the batching window, the pause gate, a batch over two
// leases, panics, BatchError's forms, options. The contract tests on the
// emulators are in batch_contract_test.go.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kclgo/kcl/internal/kinesisfake"
)

// batchRun is one ProcessBatch running in a test.
type batchRun struct {
	c      *Consumer
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

func startBatches(t *testing.T, opts Options, handle func(context.Context, []Record) error) *batchRun {
	t.Helper()
	c, err := New(opts)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	r := &batchRun{c: c, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = c.ProcessBatch(ctx, handle)
	}()
	t.Cleanup(func() { r.stop() })
	return r
}

func (r *batchRun) stop() error {
	r.cancel()
	<-r.done
	return r.err
}

func (r *batchRun) returned(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case <-r.done:
		return r.err
	case <-time.After(timeout):
		t.Fatalf("ProcessBatch did not return within %v", timeout)
		return nil
	}
}

// batchCall is one call of a batch handler, as a test saw it.
type batchCall struct {
	data       []string
	attempts   []int
	start, end time.Time
}

type batchCalls struct {
	mu  sync.Mutex
	all []batchCall
}

func (c *batchCalls) add(ctx context.Context, recs []Record, start time.Time) {
	x := batchCall{start: start, end: time.Now()}
	for i, r := range recs {
		x.data = append(x.data, string(r.Data))
		x.attempts = append(x.attempts, BatchAttempt(ctx, i))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.all = append(c.all, x)
}

func (c *batchCalls) snapshot() []batchCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]batchCall(nil), c.all...)
}

// handled returns, for each record's data, how many calls held it.
func (c *batchCalls) handled() map[string]int {
	out := map[string]int{}
	for _, x := range c.snapshot() {
		for _, d := range x.data {
			out[d]++
		}
	}
	return out
}

// fakeStream makes a one-shard stream of n records over keys partition
// keys, data "kK:index".
func fakeStream(t *testing.T, n, keys int) *kinesisfake.Server {
	t.Helper()
	kin := kinesisfake.New(kinesisfake.Options{})
	kin.CreateStream("s", 1)
	for i := range n {
		_, _, err := kin.PutRecord("s", fmt.Sprintf("k%d", i%keys), fmt.Appendf(nil, "k%d:%06d", i%keys, i))
		require.NoError(t, err)
	}
	return kin
}

// Batches fill to BatchSize over many keys, and with few keys hold several
// records of one key: they are not capped by the number of keys (the
// complaint of parallel-consumer's users, its issues 18 and 551).
func TestProcessBatchFillsToBatchSizeAcrossKeys(t *testing.T) {
	noLeak(t)
	for _, keys := range []int{200, 2} {
		t.Run(fmt.Sprintf("%d keys", keys), func(t *testing.T) {
			const n = 200
			kin := fakeStream(t, n, keys)
			opts := fakeOptions(kin, "s")
			opts.BatchSize, opts.BatchWindow = 50, 5*time.Second // the records are there: batches fill at once
			var rec batchCalls
			var handled atomic.Int64
			r := startBatches(t, opts, func(ctx context.Context, recs []Record) error {
				rec.add(ctx, recs, time.Now())
				handled.Add(int64(len(recs)))
				return nil
			})
			require.Eventually(t, func() bool { return handled.Load() == n }, 30*time.Second, 5*time.Millisecond)
			require.NoError(t, r.stop())
			got := rec.snapshot()
			require.Len(t, got, n/50, "batches of BatchSize")
			for _, x := range got {
				assert.Len(t, x.data, 50)
				var idx []string // "kK:index": index, in the order delivered
				for _, d := range x.data {
					idx = append(idx, d[strings.Index(d, ":")+1:])
				}
				assert.IsIncreasing(t, idx, "in the order delivered")
			}
		})
	}
}

// A batch that cannot fill waits at most BatchWindow after it began to
// gather, then runs with what is ready; with no window it runs at once.
func TestProcessBatchWaitsAtMostTheWindow(t *testing.T) {
	noLeak(t)
	for _, window := range []time.Duration{0, time.Second} {
		t.Run(fmt.Sprint(window), func(t *testing.T) {
			kin := fakeStream(t, 0, 1)
			opts := fakeOptions(kin, "s")
			opts.BatchSize, opts.BatchWindow = 100, window
			opts.PollInterval = 10 * time.Millisecond
			type seen struct {
				n  int
				at time.Time
			}
			calls := make(chan seen, 100)
			r := startBatches(t, opts, func(ctx context.Context, recs []Record) error {
				calls <- seen{len(recs), time.Now()}
				return nil
			})
			// The shard is read (and caught up) before the first put; it is
			// read again every 200ms (the floor of PollInterval), so each
			// put comes in a read of its own.
			time.Sleep(300 * time.Millisecond)
			var first time.Time
			for i := range 4 {
				_, _, err := kin.PutRecord("s", fmt.Sprint("k", i), []byte("x"))
				require.NoError(t, err)
				if i == 0 {
					first = time.Now()
				}
				time.Sleep(200 * time.Millisecond)
			}
			var c seen
			select {
			case c = <-calls:
			case <-time.After(10 * time.Second):
				t.Fatal("no batch")
			}
			waited := c.at.Sub(first)
			t.Logf("window %v: first batch of %d records, %v after the first put", window, c.n, waited)
			if window == 0 {
				assert.Less(t, c.n, 4, "no window: a batch starts with what is ready")
				assert.Less(t, waited, 400*time.Millisecond)
			} else {
				assert.Equal(t, 4, c.n, "the records of the window in one batch")
				assert.GreaterOrEqual(t, waited, window, "it waited for a fuller batch")
				assert.Less(t, waited, window+400*time.Millisecond, "at most the window (after a read)")
			}
			require.NoError(t, r.stop())
		})
	}
}

// A panic in the batch handler is a failed attempt of each of its records:
// retried, then given to OnFailure one by one as a *PanicError; the worker
// goes on.
func TestProcessBatchHandlerPanicIsAFailedAttempt(t *testing.T) {
	noLeak(t)
	kin := fakeStream(t, 10, 10)
	opts := fakeOptions(kin, "s")
	opts.BatchSize, opts.BatchWindow = 10, 5*time.Second
	opts.MaxAttempts = 2
	opts.RetryDelay = 10 * time.Millisecond
	var mu sync.Mutex
	failed := map[string]error{}
	opts.OnFailure = func(ctx context.Context, r Record, err error) error {
		mu.Lock()
		defer mu.Unlock()
		failed[string(r.Data)] = err
		return nil
	}
	var calls atomic.Int64
	r := startBatches(t, opts, func(ctx context.Context, recs []Record) error {
		calls.Add(1)
		panic("sink client is nil")
	})
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(failed) == 10 }, 30*time.Second, 5*time.Millisecond)
	require.NoError(t, r.stop())
	for d, err := range failed {
		var pe *PanicError
		require.ErrorAs(t, err, &pe, d)
		assert.Equal(t, "sink client is nil", pe.Value)
	}
	assert.Equal(t, int64(2), calls.Load(), "one batch, two attempts")
}

// A BatchError with more errors than the batch has records is the handler's
// mistake: the whole batch fails, saying so. One with no error acks the
// batch.
func TestProcessBatchErrorForms(t *testing.T) {
	noLeak(t)
	be := &BatchError{Errs: []error{nil, errors.New("a"), nil, errors.New("b")}}
	assert.Equal(t, "kcl: batch: 2 records failed, the first: a", be.Error())
	assert.Len(t, be.Unwrap(), 2)
	assert.Equal(t, "kcl: batch: no record failed", (&BatchError{}).Error())

	kin := fakeStream(t, 3, 3)
	opts := fakeOptions(kin, "s")
	opts.BatchSize, opts.BatchWindow = 3, 200*time.Millisecond
	opts.MaxAttempts = 1
	var got error
	opts.OnFailure = func(ctx context.Context, r Record, err error) error { got = err; return errors.New("refused") }
	var calls atomic.Int64
	r := startBatches(t, opts, func(ctx context.Context, recs []Record) error {
		if calls.Add(1) == 1 {
			return fmt.Errorf("wrapped: %w", &BatchError{Errs: make([]error, len(recs))}) // none failed
		}
		return &BatchError{Errs: make([]error, len(recs)+1)}
	})
	time.Sleep(300 * time.Millisecond)
	_, _, err := kin.PutRecord("s", "k", []byte("x"))
	require.NoError(t, err)
	require.ErrorContains(t, r.returned(t, 30*time.Second), "refused")
	require.ErrorContains(t, got, "BatchError has 2 errors for a batch of 1 records")
	assert.Equal(t, int64(2), calls.Load(), "the first batch acked: only the new record ran again")
}

// A batch holds records of two leases; one is lost while the handler runs.
// Its context ends; the lost lease's records are not run again, the other
// lease's are, with no attempt counted.
func TestProcessBatchOverTwoLeasesOneLost(t *testing.T) {
	noLeak(t)
	c, err := New(Options{StreamName: "s", AWSConfig: &aws.Config{}, Concurrency: 2, BatchSize: 4, BatchWindow: time.Minute, Logger: discardLogger()})
	require.NoError(t, err)
	keepDelivering(c)
	lost := newAckWindow(checkpoint{seq: checkpointTrimHorizon})
	kept := newAckWindow(checkpoint{seq: checkpointTrimHorizon})
	lostRecs := []Record{{PartitionKey: "a", SequenceNumber: "1", Data: []byte("a1")}, {PartitionKey: "b", SequenceNumber: "2", Data: []byte("b2")}}
	keptRecs := []Record{{PartitionKey: "c", SequenceNumber: "1", Data: []byte("c1")}, {PartitionKey: "c", SequenceNumber: "2", Data: []byte("c2")}}
	require.True(t, lost.push(lostRecs))
	require.True(t, kept.push(keptRecs))
	var rec batchCalls
	first := make(chan struct{})
	handle := func(ctx context.Context, recs []Record) error {
		start := time.Now()
		defer rec.add(ctx, recs, start)
		if len(rec.snapshot()) == 0 {
			close(first)
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := newProcessor(ctx, c, nil, cancel)
	p.handleBatch = handle
	p.batches = make(chan *batch, 2)
	feeding, fed := context.WithCancel(context.Background())
	p.stopping = feeding // once over, no batch waits for BatchWindow
	in := make(chan Record)
	returned := make(chan error, 1)
	go func() { returned <- p.run(in) }()
	for _, r := range append(append([]Record{}, keptRecs...), lostRecs...) { // the batch's first record from the lease kept
		in <- r
	}
	<-first // c1, c2, a1, b2: BatchSize, one batch
	fed()
	lost.close()
	require.Eventually(t, func() bool { return len(rec.snapshot()) == 2 }, 5*time.Second, 5*time.Millisecond)
	close(in)
	require.NoError(t, <-returned)
	p.stopHandlers()
	got := rec.snapshot()
	assert.Equal(t, []string{"c1", "c2", "a1", "b2"}, got[0].data, "one batch over both leases, in arrival order")
	assert.Equal(t, []string{"c1", "c2"}, got[1].data, "the kept lease's records run again")
	assert.Equal(t, []int{1, 1}, got[1].attempts, "a call cut short is no failed attempt")
	_, unacked := kept.state()
	assert.Zero(t, unacked)
}

func TestProcessBatchOptionsAndMisuse(t *testing.T) {
	noLeak(t)
	ok := Options{StreamName: "orders", AWSConfig: &aws.Config{Region: "us-east-1"}}
	c, err := New(ok)
	require.NoError(t, err)
	assert.Equal(t, 100, c.opts.BatchSize, "the default")
	nop := func(context.Context, []Record) error { return nil }
	for _, edit := range []func(*Options){
		func(o *Options) { o.BatchSize = -1 },
		func(o *Options) { o.BatchWindow = -time.Second },
	} {
		o := ok
		edit(&o)
		err := ProcessBatch(context.Background(), o, nop)
		require.ErrorIs(t, err, ErrInvalidOptions)
		assert.True(t, strings.Contains(err.Error(), "BatchSize") || strings.Contains(err.Error(), "BatchWindow"), err.Error())
	}
	require.Error(t, c.ProcessBatch(context.Background(), nil), "a nil handler")
	kin := fakeStream(t, 1, 1)
	c, err = New(fakeOptions(kin, "s"))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.NoError(t, c.ProcessBatch(ctx, nop))
	require.ErrorIs(t, c.ProcessBatch(context.Background(), nop), errConsumedTwice)
	require.ErrorIs(t, c.Process(context.Background(), func(context.Context, Record) error { return nil }), errConsumedTwice)
	assert.Zero(t, BatchAttempt(context.Background(), 0))
}

// runBatchDispatcher runs ProcessBatch's dispatcher alone over in, with
// opts (Concurrency, BatchSize, ...) on a Consumer that delivers no
// records itself: records without a lease, whose context is the run's.
// Shutdown has begun (no batch waits for BatchWindow) only if stopping
// ended. It returns the run's error once in is closed and drained.
func runBatchDispatcher(t *testing.T, opts Options, stopping context.Context, in <-chan Record, handle func(context.Context, []Record) error) <-chan error {
	t.Helper()
	return runBatchDispatcherOn(t, opts, make(chan *Consumer, 1), stopping, in, handle)
}

// runBatchDispatcherOn is runBatchDispatcher, sending the Consumer it
// makes on consumer (room for one).
func runBatchDispatcherOn(t *testing.T, opts Options, consumer chan<- *Consumer, stopping context.Context, in <-chan Record, handle func(context.Context, []Record) error) <-chan error {
	t.Helper()
	opts.StreamName, opts.AWSConfig = "s", &aws.Config{}
	if opts.Logger == nil {
		opts.Logger = discardLogger()
	}
	c, err := New(opts)
	require.NoError(t, err)
	keepDelivering(c)
	consumer <- c
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	p := newProcessor(ctx, c, nil, cancel)
	p.name = "ProcessBatch"
	p.handleBatch = handle
	p.batches = make(chan *batch, c.opts.Concurrency)
	p.stopping = stopping
	returned := make(chan error, 1)
	go func() {
		defer p.stopHandlers()
		returned <- p.run(in)
	}()
	return returned
}

// With BatchWindow 0 a batch starts at once, but with every record already
// delivered and waiting for the dispatcher, not with the first alone: 150
// records at hand and BatchSize 100 are batches of 100 and 50 (the first
// was of one record before).
func TestProcessBatchWithNoWindowTakesWhatIsAlreadyDelivered(t *testing.T) {
	noLeak(t)
	in := make(chan Record, 150)
	for i := range 150 {
		in <- Record{PartitionKey: fmt.Sprint("k", i), Data: fmt.Append(nil, i)}
	}
	var mu sync.Mutex
	var sizes []int
	returned := runBatchDispatcher(t, Options{BatchSize: 100}, context.Background(), in, func(ctx context.Context, recs []Record) error {
		mu.Lock()
		defer mu.Unlock()
		sizes = append(sizes, len(recs))
		return nil
	})
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, s := range sizes {
			n += s
		}
		return n == 150
	}, 10*time.Second, time.Millisecond)
	close(in)
	require.NoError(t, <-returned)
	assert.Equal(t, []int{100, 50}, sizes)
}

// A batch that fails as a whole is one Warn, counting its records, not one
// per record; a record that goes on failing is still logged about every
// LeaseDuration (its retries, jittered, run in batches of their own).
func TestProcessBatchLogsAFailedBatchOnce(t *testing.T) {
	noLeak(t)
	var logged lockedBuffer
	opts := Options{BatchSize: 5, LeaseDuration: time.Second, RetryDelay: 300 * time.Millisecond, MaxRetryDelay: 300 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logged, nil))}
	in := make(chan Record, 5)
	for i := range 5 {
		in <- Record{PartitionKey: fmt.Sprint("k", i), Data: fmt.Append(nil, i)}
	}
	returned := runBatchDispatcher(t, opts, context.Background(), in, func(ctx context.Context, recs []Record) error {
		return errors.New("sink down")
	})
	require.Eventually(t, func() bool { return strings.Contains(logged.String(), "attempts=") }, 20*time.Second, 10*time.Millisecond) // still failing
	close(in)
	require.NoError(t, <-returned)
	log := logged.String()
	assert.Equal(t, 1, strings.Count(log, "handler failed"), log)
	assert.Contains(t, log, `msg="kcl: ProcessBatch: handler failed; retrying the records with backoff"`)
	assert.Contains(t, log, "records=5 batch=5")
	assert.Contains(t, log, "attempts=")
}

// ProcessBatch's errors and logs name ProcessBatch, not Process.
func TestProcessBatchErrorsNameProcessBatch(t *testing.T) {
	noLeak(t)
	var logged lockedBuffer
	opts := Options{BatchSize: 5, MaxAttempts: 1, Logger: slog.New(slog.NewTextHandler(&logged, nil))}
	in := make(chan Record, 1)
	in <- Record{PartitionKey: "k", SequenceNumber: "7", Data: []byte("x")}
	returned := runBatchDispatcher(t, opts, context.Background(), in, func(ctx context.Context, recs []Record) error {
		panic("sink client is nil")
	})
	require.Eventually(t, func() bool { return strings.Contains(logged.String(), "panicked") }, 10*time.Second, time.Millisecond)
	close(in)
	err := <-returned
	require.Error(t, err)
	assert.True(t, strings.HasPrefix(err.Error(), "kcl: ProcessBatch: "), err.Error())
	assert.Contains(t, logged.String(), "kcl: ProcessBatch: handler panicked")
	assert.NotContains(t, logged.String(), "kcl: Process:")
	assert.NotContains(t, errConsumedTwice.Error(), "Process:", "the error of a second call, shared by Process and ProcessBatch")
}

// BatchSize is at most MaxUnackedPerShard: a shard never has more records
// delivered and not acked, so a batch of one shard could never fill. The
// default 100 is lowered to a smaller MaxUnackedPerShard, not refused.
func TestProcessBatchSizeIsAtMostMaxUnackedPerShard(t *testing.T) {
	ok := Options{StreamName: "orders", AWSConfig: &aws.Config{Region: "us-east-1"}}
	for _, tc := range []struct {
		batchSize, maxUnacked int
		want                  int // 0: refused
	}{
		{0, 0, 100},
		{10000, 0, 10000},
		{10001, 0, 0},
		{0, 50, 50},
		{50, 50, 50},
		{51, 50, 0},
	} {
		o := ok
		o.BatchSize, o.MaxUnackedPerShard = tc.batchSize, tc.maxUnacked
		c, err := New(o)
		if tc.want == 0 {
			require.ErrorIs(t, err, ErrInvalidOptions, "%+v", tc)
			assert.Contains(t, err.Error(), "BatchSize")
			continue
		}
		require.NoError(t, err, "%+v", tc)
		assert.Equal(t, tc.want, c.opts.BatchSize, "%+v", tc)
	}
}

// Stats' gauges come back to zero once a batch holding several records of
// one key is acked: each record left counts as done (Waiting stayed at 2
// here, the records acked before their key's last in the batch).
func TestProcessBatchStatsCountEveryRecordDone(t *testing.T) {
	noLeak(t)
	in := make(chan Record, 3)
	for i := range 3 {
		in <- Record{PartitionKey: "k", Data: fmt.Append(nil, i)}
	}
	var handled atomic.Int64
	c := make(chan *Consumer, 1)
	returned := runBatchDispatcherOn(t, Options{BatchSize: 10}, c, context.Background(), in, func(ctx context.Context, recs []Record) error {
		handled.Add(int64(len(recs)))
		return nil
	})
	consumer := <-c
	require.Eventually(t, func() bool {
		s := consumer.Stats().Process
		return handled.Load() == 3 && s.Running == 0 && s.Ready == 0
	}, 10*time.Second, time.Millisecond)
	close(in)
	require.NoError(t, <-returned)
	assert.Equal(t, ProcessStats{}, consumer.Stats().Process)
}
