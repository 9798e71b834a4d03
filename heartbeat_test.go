package kcl

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/stretchr/testify/require"
)

// stuckBeats is an in-memory lease table whose heartbeat writes hang until
// their context ends, as when DynamoDB throttles them and each is retried.
type stuckBeats struct {
	*memLeases
	started chan struct{}
}

func (t *stuckBeats) heartbeat(ctx context.Context, worker, token string, stopping bool, last int64, streams []string) (int64, error) {
	if last >= 0 {
		close(t.started)
		<-ctx.Done()
		return 0, ctx.Err()
	}
	return t.memLeases.heartbeat(ctx, worker, token, stopping, last, streams)
}

// The lease loop asks the heartbeat whether this process has settled on
// every pass: a beat retrying against a throttled table must not make it
// wait (it once held the lease loop, and so every checkpoint flush, for a
// heartbeat interval per call).
func TestSettledDoesNotWaitForABeatRetrying(t *testing.T) {
	noLeak(t)
	c, err := New(Options{StreamName: "s", AWSConfig: &aws.Config{}, Logger: discardLogger(), LeaseDuration: time.Hour})
	require.NoError(t, err)
	tbl := &stuckBeats{memLeases: newMemLeases(), started: make(chan struct{})}
	c.table = tbl
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	require.NoError(t, c.beat.beat(ctx, running)) // the first beat
	beating := make(chan error, 1)
	go func() { beating <- c.beat.beat(ctx, running) }() // hangs, holding the heartbeat's lock
	<-tbl.started

	answered := make(chan bool, 1)
	go func() { answered <- c.beat.settled() }()
	select {
	case settled := <-answered:
		require.False(t, settled, "an hour-long LeaseDuration has not passed")
	case <-time.After(10 * time.Second): // only stops a hung run; the answer takes microseconds
		t.Fatal("settled waited for the beat retrying")
	}
	cancel()
	<-beating
}

// signalledBeats is an in-memory lease table that signals each heartbeat.
type signalledBeats struct {
	*memLeases
	beats chan struct{}
}

func (t *signalledBeats) heartbeat(ctx context.Context, worker, token string, stopping bool, last int64, streams []string) (int64, error) {
	n, err := t.memLeases.heartbeat(ctx, worker, token, stopping, last, streams)
	select {
	case t.beats <- struct{}{}:
	default:
	}
	return n, err
}

// The next beat is due a heartbeat interval after the last one was sent, not
// after the heartbeat goroutine started: a start that took long after its
// first beat (listing shards, creating leases) must not push the second past
// the delivery deadline, which pauses every shard.
func TestTheNextBeatIsDueAnIntervalAfterTheLastWasSent(t *testing.T) {
	noLeak(t)
	c, err := New(Options{StreamName: "s", AWSConfig: &aws.Config{}, Logger: discardLogger(), LeaseDuration: time.Hour})
	require.NoError(t, err)
	tbl := &signalledBeats{memLeases: newMemLeases(), beats: make(chan struct{}, 1)}
	c.table = tbl
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	require.NoError(t, c.beat.beat(ctx, running)) // start's beat...
	<-tbl.beats
	c.beat.last.Store(time.Now().Add(-c.opts.heartbeatInterval()).UnixNano()) // ...an interval ago
	done := make(chan error, 1)
	go func() { done <- c.beat.run(ctx) }()
	select {
	case <-tbl.beats:
	case <-time.After(10 * time.Second): // only stops a hung run; the interval is half an hour
		t.Fatal("no beat though the last was sent an interval ago")
	}
	cancel()
	require.NoError(t, <-done)
}
