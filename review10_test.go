package kcl

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// runProcessor runs a Process dispatcher for c on in, in-process, and
// returns what run returns.
func runProcessor(t *testing.T, c *Consumer, in <-chan Record, handle func(context.Context, Record) error) <-chan error {
	t.Helper()
	keepDelivering(c)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	p := newProcessor(ctx, c, handle, cancel)
	returned := make(chan error, 1)
	go func() {
		defer p.stopHandlers()
		returned <- p.run(in)
	}()
	return returned
}

// A handler that leaves its goroutine with runtime.Goexit (t.FailNow, or
// require.NoError, in a handler under test) neither shrinks the pool nor
// hangs Process: the other records go on, and Process returns an error
// naming the record. With a goroutine per call, the attempt's deferred
// send still handed the record back; a pool worker that exited took it
// along, and Process waited for it for ever.
func TestProcessStopsOnAHandlerThatCallsGoexit(t *testing.T) {
	noLeak(t)
	c, err := New(Options{StreamName: "s", AWSConfig: &aws.Config{}, Concurrency: 1, MaxAttempts: 1,
		OnFailure: func(context.Context, Record, error) error { return nil }, Logger: discardLogger()})
	require.NoError(t, err)
	in := make(chan Record, 3)
	for i := range 3 {
		in <- Record{PartitionKey: fmt.Sprint("k", i), SequenceNumber: fmt.Sprint(i + 1), Data: fmt.Append(nil, i)}
	}
	var handled atomic.Int32
	returned := runProcessor(t, c, in, func(ctx context.Context, r Record) error {
		if string(r.Data) == "0" {
			runtime.Goexit()
		}
		handled.Add(1)
		return nil
	})
	assert.Eventually(t, func() bool { return handled.Load() == 2 }, 5*time.Second, time.Millisecond, "the records after the Goexit are handled")
	close(in)
	select {
	case err := <-returned:
		require.Error(t, err)
		assert.Contains(t, err.Error(), `record 1/0: the handler or OnFailure called runtime.Goexit`)
	case <-time.After(5 * time.Second):
		t.Fatal("Process did not return: it waits for the call whose worker exited")
	}
	assert.Equal(t, ProcessStats{}, c.Stats().Process)
}

// Stats().Process comes back to zero once Process returned, whatever was
// left in its queues: nothing is in Process any more.
func TestProcessStatsAreZeroOnceProcessReturned(t *testing.T) {
	noLeak(t)
	c, err := New(Options{StreamName: "s", AWSConfig: &aws.Config{}, Concurrency: 1, Logger: discardLogger()})
	require.NoError(t, err)
	in := make(chan Record, 4)
	for i := range 4 {
		in <- Record{PartitionKey: "k", Data: fmt.Append(nil, i)}
	}
	release := make(chan struct{})
	returned := runProcessor(t, c, in, func(ctx context.Context, r Record) error {
		<-release
		return nil
	})
	require.Eventually(t, func() bool {
		s := c.Stats().Process
		return s.Running == 1 && s.Waiting == 3
	}, 5*time.Second, time.Millisecond, "%+v", c.Stats().Process)
	close(in) // the shutdown is over; three records of k were never started
	close(release)
	require.NoError(t, <-returned)
	assert.Equal(t, ProcessStats{}, c.Stats().Process)
}

// A ProcessBatch handler that calls runtime.Goexit acks none of its
// records: they were counted done (a fresh task's outcome is "acked"),
// though never acked, so the shard's checkpoint stalled before them while
// ProcessBatch went on. It stops ProcessBatch with an error instead.
func TestProcessBatchHandlerThatCallsGoexitStopsIt(t *testing.T) {
	noLeak(t)
	in := make(chan Record, 3)
	w := newAckWindow(checkpoint{seq: checkpointTrimHorizon})
	recs := []Record{{PartitionKey: "a", SequenceNumber: "1"}, {PartitionKey: "b", SequenceNumber: "2"}, {PartitionKey: "c", SequenceNumber: "3"}}
	require.True(t, w.push(recs))
	for _, r := range recs {
		in <- r
	}
	c := make(chan *Consumer, 1)
	var calls atomic.Int32
	returned := runBatchDispatcherOn(t, Options{BatchSize: 10}, c, context.Background(), in, func(ctx context.Context, recs []Record) error {
		if calls.Add(1) == 1 {
			runtime.Goexit()
		}
		return nil
	})
	consumer := <-c
	require.Eventually(t, func() bool { return calls.Load() >= 1 }, 5*time.Second, time.Millisecond)
	time.Sleep(50 * time.Millisecond)
	close(in)
	err := <-returned
	require.Error(t, err, "the records were counted done, never acked")
	assert.Contains(t, err.Error(), "Goexit")
	_, unacked := w.state()
	assert.Equal(t, 3, unacked, "no record acked")
	assert.Equal(t, ProcessStats{}, consumer.Stats().Process)
}

// Stats().Process never shows a negative figure while records fail, back
// off, wait for their key and run on a few workers, for Process and
// ProcessBatch, and comes back to zero at the end.
func TestProcessStatsNeverNegativeUnderChurn(t *testing.T) {
	noLeak(t)
	for _, batched := range []bool{false, true} {
		t.Run(fmt.Sprint("batch=", batched), func(t *testing.T) {
			opts := Options{StreamName: "s", AWSConfig: &aws.Config{}, Concurrency: 3, MaxAttempts: 3, RetryDelay: time.Millisecond, MaxRetryDelay: 2 * time.Millisecond,
				BatchSize: 7, OnFailure: func(context.Context, Record, error) error { return nil }, Logger: discardLogger()}
			c, err := New(opts)
			require.NoError(t, err)
			keepDelivering(c)
			const n = 2000
			in := make(chan Record, 16)
			var done atomic.Int32
			fail := func(r Record) bool { return r.Data[0]%3 == 0 && Attempt(context.Background()) == 0 }
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			p := newProcessor(ctx, c, func(ctx context.Context, r Record) error {
				if fail(r) && Attempt(ctx) < 2 {
					return fmt.Errorf("fails")
				}
				done.Add(1)
				return nil
			}, cancel)
			if batched {
				p.handle = nil
				p.name = "ProcessBatch"
				p.batches = make(chan *batch, opts.Concurrency)
				p.handleBatch = func(ctx context.Context, recs []Record) error {
					errs := make([]error, len(recs))
					for i, r := range recs {
						if fail(r) && BatchAttempt(ctx, i) < 2 {
							errs[i] = fmt.Errorf("fails")
						} else {
							done.Add(1)
						}
					}
					return &BatchError{Errs: errs}
				}
			}
			returned := make(chan error, 1)
			go func() { defer p.stopHandlers(); returned <- p.run(in) }()
			stop := make(chan struct{})
			sampled := make(chan ProcessStats, 1)
			go func() {
				var bad ProcessStats
				for {
					select {
					case <-stop:
						sampled <- bad
						return
					default:
					}
					s := c.Stats().Process
					if s.Running < 0 || s.Ready < 0 || s.Waiting < 0 || s.BackingOff < 0 {
						bad = s
					}
				}
			}()
			for i := range n {
				in <- Record{PartitionKey: fmt.Sprint(i % 13), Data: []byte{byte(i)}}
			}
			require.Eventually(t, func() bool { return done.Load() >= n }, 20*time.Second, time.Millisecond)
			require.Eventually(t, func() bool { s := c.Stats().Process; return s.Running+s.Ready+s.Waiting+s.BackingOff == 0 },
				5*time.Second, time.Millisecond, "%+v", c.Stats().Process)
			close(in)
			require.NoError(t, <-returned)
			close(stop)
			assert.Equal(t, ProcessStats{}, <-sampled, "a negative figure seen")
		})
	}
}
