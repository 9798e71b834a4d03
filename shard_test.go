package kcl

import (
	"context"
	"fmt"
	"log/slog"
	"math/big"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pausedConsumer returns a Consumer with no lease loop and its channel made,
// for driving deliver directly, and a page of n records of one shard.
func pausedConsumer(t *testing.T, buffer, n int) (*Consumer, *shardReader, *pageRecords) {
	t.Helper()
	c, err := New(Options{StreamName: "s", AWSConfig: &aws.Config{}, Logger: discardLogger(), LeaseDuration: time.Second})
	require.NoError(t, err)
	c.out = make(chan Record, buffer)
	now := time.Now()
	recs := make([]types.Record, n)
	for i := range recs {
		recs[i] = types.Record{Data: []byte(fmt.Sprint(i)), PartitionKey: aws.String("k"),
			SequenceNumber: aws.String(fmt.Sprintf("%056d", i+1)), ApproximateArrivalTimestamp: &now}
	}
	h := newHeldLease(lease{shardID: "shardId-000000000000", checkpoint: checkpoint{seq: checkpointTrimHorizon}}, c.streamList()[0], "shardId-000000000000")
	var skip checkpoint
	r := newShardReader(c.readerEnv(), h)
	return c, r, newPageRecords(r, recs, &skip)
}

// A process frozen past its delivery deadline wakes before the gate's timer
// fires: deliver's check before the chunk shuts the gate, and nothing of
// the chunk is sent.
func TestMutantDeliverChecksTheDeadlineBeforeEachChunk(t *testing.T) {
	noLeak(t)
	c, r, page := pausedConsumer(t, 100, 3)
	c.pause.stop() // frozen: no timer will fire
	sent := time.Now().Add(-time.Hour)
	c.pause.beat(sent, sent) // the first beat, trusted; its deadline long past
	require.False(t, c.pause.isShut(), "nothing has checked the deadline yet")

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	assert.False(t, r.deliver(ctx, page), "deliver waits on the shut gate until ctx ends")
	assert.Zero(t, len(c.out), "records sent past the deadline")
	assert.True(t, c.pause.isShut())
}

// A send blocked on a full channel when the delivery deadline passes gives
// up: the receiver, once it reads again, gets nothing more from this worker
// until the gate reopens.
func TestMutantBlockedSendGivesUpWhenTheGateShuts(t *testing.T) {
	noLeak(t)
	c, r, page := pausedConsumer(t, 0, 3) // unbuffered, and nobody receives yet
	now := time.Now()
	c.pause.beat(now, now) // deadline 0.9s on; its timer shuts the gate
	defer c.pause.stop()
	shutting := c.pause.closing()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	result := make(chan bool, 1)
	go func() { result <- r.deliver(ctx, page) }()
	select {
	case <-shutting:
	case <-time.After(30 * time.Second):
		t.Fatal("the gate did not shut by its timer")
	}
	select {
	case r := <-c.out:
		t.Errorf("record %s sent after the gate shut", r.SequenceNumber)
	case <-time.After(300 * time.Millisecond):
	}
	cancel()
	assert.False(t, <-result)
}

// BenchmarkDeliver is kcl's own cost per record, with no Kinesis call: 8
// shard readers deliver decoded pages of 10,000 records of 100 bytes
// through the channel to one consumer that acks each, as a user does. The
// throughput benchmark (bench/) sets it against the SDK's cost of reading
// the same records.
func BenchmarkDeliver(b *testing.B) {
	const shards, pageSize = 8, 10000
	c, err := New(Options{StreamName: "s", AWSConfig: &aws.Config{}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	c.out = make(chan Record, c.opts.BufferSize)
	keepDelivering(c)
	page := make([]types.Record, pageSize)
	now := time.Now()
	for i := range page {
		page[i] = types.Record{Data: make([]byte, 100), PartitionKey: aws.String(fmt.Sprint(i)),
			SequenceNumber: aws.String(fmt.Sprintf("%056d", i)), ApproximateArrivalTimestamp: &now}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	perShard := b.N/shards + 1
	cpu := cpuTime()
	b.ResetTimer()
	var wg sync.WaitGroup
	for sh := range shards {
		id := fmt.Sprintf("shardId-%012d", sh)
		h := newHeldLease(lease{shardID: id, checkpoint: checkpoint{seq: checkpointTrimHorizon}}, c.streamList()[0], id)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var skip checkpoint
			r := newShardReader(c.readerEnv(), h)
			for n := 0; n < perShard; n += pageSize {
				recs := page[:min(pageSize, perShard-n)]
				if !r.deliver(ctx, newPageRecords(r, recs, &skip)) {
					b.Error("deliver stopped")
					return
				}
			}
		}()
	}
	for range shards * perShard {
		r := <-c.out
		r.Ack()
	}
	wg.Wait()
	n := float64(shards * perShard)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/record")
	b.ReportMetric(float64((cpuTime()-cpu).Nanoseconds())/n, "cpu-ns/record")
}

// cpuTime is the CPU time (user and system) the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// A paused shard resumes once a quarter of MaxUnackedPerShard is acked (at
// least one), not at the first ack: a receiver kept at the limit lets
// records through in batches.
func TestAPausedShardResumesByAQuarterOfItsLimit(t *testing.T) {
	c, err := New(Options{StreamName: "s", AWSConfig: &aws.Config{}, Logger: discardLogger(), MaxUnackedPerShard: 8})
	require.NoError(t, err)
	h := newHeldLease(lease{shardID: "shardId-000000000000", checkpoint: checkpoint{seq: checkpointTrimHorizon}}, c.streamList()[0], "shardId-000000000000")
	r := newShardReader(c.readerEnv(), h)
	recs := make([]Record, 8)
	for i := range recs {
		recs[i].SequenceNumber = fmt.Sprint(100 + i)
	}
	require.True(t, h.window.push(recs))
	room := make(chan int, 1)
	go func() { room <- r.waitForRoom(context.Background()) }()
	// Ack only once the reader waits for room: an ack before it looks
	// would leave room for one, and no pause to resume from.
	require.Eventually(t, func() bool { return h.window.waitFor.Load() != 0 }, 10*time.Second, time.Millisecond)
	recs[0].Ack()
	select {
	case n := <-room:
		t.Fatalf("resumed after one ack of eight, with room for %d", n)
	case <-time.After(100 * time.Millisecond):
	}
	recs[1].Ack()
	select {
	case n := <-room:
		assert.Equal(t, 2, n, "a quarter of the limit")
	case <-time.After(10 * time.Second):
		t.Fatal("not resumed after a quarter of the limit was acked")
	}
}

// BenchmarkDeliverAggregated is BenchmarkDeliver with KPL aggregates of 10
// user records each, with the shard's hash-key range unknown (no look at
// the keys) and known (every user record's key checked against it,
// kplSplitter.strays; the range is all but the last key, so that the look
// is not skipped as for a whole range): the check's cost per user record
// is the difference of the two in one run.
func BenchmarkDeliverAggregated(b *testing.B) {
	for _, known := range []bool{false, true} {
		b.Run(fmt.Sprintf("range-known=%v", known), func(b *testing.B) { benchmarkDeliverAggregated(b, known) })
	}
}

func benchmarkDeliverAggregated(b *testing.B, known bool) {
	const pageSize, per = 1000, 10
	c, err := New(Options{StreamName: "s", AWSConfig: &aws.Config{}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	c.out = make(chan Record, c.opts.BufferSize)
	keepDelivering(c)
	page := make([]types.Record, pageSize)
	now := time.Now()
	for i := range page {
		users := make([]userRecord, per)
		for j := range users {
			users[j] = userRecord{partitionKey: fmt.Sprintf("user-%d-%d", i, j), data: make([]byte, 100)}
		}
		page[i] = types.Record{Data: aggregate(users), PartitionKey: aws.String(fmt.Sprint(i)),
			SequenceNumber: aws.String(fmt.Sprintf("%056d", i)), ApproximateArrivalTimestamp: &now}
	}
	const id = "shardId-000000000000"
	s := c.streamList()[0]
	if known {
		top := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 128), big.NewInt(2))
		s.setShards(map[string]shardInfo{id: {id: id, first: big.NewInt(0), last: top}})
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	aggs := b.N/per + 1
	cpu := cpuTime()
	b.ResetTimer()
	done := make(chan struct{})
	go func() {
		defer close(done)
		var skip checkpoint
		r := newShardReader(c.readerEnv(), newHeldLease(lease{shardID: id, checkpoint: checkpoint{seq: checkpointTrimHorizon}}, s, id))
		for n := 0; n < aggs; n += pageSize {
			if !r.deliver(ctx, newPageRecords(r, page[:min(pageSize, aggs-n)], &skip)) {
				b.Error("deliver stopped")
				return
			}
		}
	}()
	for range aggs * per {
		r := <-c.out
		r.Ack()
	}
	<-done
	n := float64(aggs * per)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/record")
	b.ReportMetric(float64((cpuTime()-cpu).Nanoseconds())/n, "cpu-ns/record")
}
