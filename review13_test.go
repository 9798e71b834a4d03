package kcl

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// chunkReader returns a Consumer set up for Process's way of delivery (a
// chunk at a time) with no lease loop, and a reader of one shard.
func chunkReader(t *testing.T) (*Consumer, *shardReader) {
	t.Helper()
	c, err := New(Options{StreamName: "s", AWSConfig: &aws.Config{}, Logger: discardLogger()})
	require.NoError(t, err)
	c.chunks = make(chan *recordChunk, 4)
	keepDelivering(c)
	const id = "shardId-000000000000"
	h := newHeldLease(lease{shardID: id, checkpoint: checkpoint{seq: checkpointTrimHorizon}}, c.streamList()[0], id)
	return c, newShardReader(c.readerEnv(), h)
}

// A chunk given back to the pool keeps no record's data (putChunk's
// contract, docs/tuning.md): pageRecords.fill writes each Kinesis record
// into the slot after the last record kept before it knows whether that
// record is kept, so a skipped one (an aggregate's end, a record at or
// before the resume checkpoint, a misplaced aggregate) is left in ch.buf
// past ch.recs, which putChunk does not clear. The pool then keeps the
// whole aggregate (up to 1 MiB) alive for as long as the chunk sits there.
func TestReview13PooledChunkKeepsNoDataOfASkippedRecord(t *testing.T) {
	agg := aggregate([]userRecord{{partitionKey: "a", data: []byte("one")}, {partitionKey: "b", data: []byte("two")}})
	pageOf := func(r *shardReader, skip *checkpoint) *pageRecords {
		return newPageRecords(r, []types.Record{{Data: agg, PartitionKey: aws.String("p"), SequenceNumber: aws.String("100"),
			ApproximateArrivalTimestamp: aws.Time(time.Now())}}, skip)
	}
	kept := func(ch *recordChunk) int {
		n := 0
		for i := range ch.buf {
			n += len(ch.buf[i].Data)
		}
		return n
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	t.Run("an aggregate ends the page", func(t *testing.T) {
		c, r := chunkReader(t)
		var skip checkpoint
		require.True(t, r.deliver(ctx, pageOf(r, &skip)))
		ch := <-c.chunks
		require.Len(t, ch.recs, 2)
		putChunk(ch) // as the dispatcher does once it copied the records out
		assert.Zero(t, kept(ch), "bytes of record data the pooled chunk keeps")
	})
	t.Run("every user record at or before the resume checkpoint", func(t *testing.T) {
		// deliver gives the chunk it filled, empty, back to the pool; the
		// pool's next Get on this goroutine returns it (unless the race
		// detector's random drops intervene: tried a few times).
		_, r := chunkReader(t)
		most := 0
		for range 10 {
			skip := checkpoint{seq: "100", sub: 1}
			require.True(t, r.deliver(ctx, pageOf(r, &skip)))
			ch := getChunk()
			most = max(most, kept(ch))
			putChunk(ch)
		}
		assert.Zero(t, most, "bytes of record data a pooled chunk keeps")
	})
}

// At Concurrency 1 the dispatcher makes the calls itself: an OnFailure
// that ends its goroutine (runtime.Goexit) must not take the dispatcher
// with it. Process goes on with the other keys, stops with an error naming
// the record, acks nothing of it, and leaves no goroutine and no figure
// in Stats behind.
func TestReview13InlineOnFailureThatCallsGoexit(t *testing.T) {
	noLeak(t)
	for _, panics := range []bool{false, true} {
		c, err := New(Options{StreamName: "s", AWSConfig: &aws.Config{}, Concurrency: 1, MaxAttempts: 1, Logger: discardLogger(),
			OnFailure: func(_ context.Context, r Record, _ error) error {
				if panics {
					panic("boom")
				}
				runtime.Goexit()
				return nil
			}})
		require.NoError(t, err)
		w := newAckWindow(checkpoint{seq: checkpointTrimHorizon})
		recs := []Record{{PartitionKey: "a", SequenceNumber: "1"}, {PartitionKey: "b", SequenceNumber: "2"}, {PartitionKey: "a", SequenceNumber: "3"}, {PartitionKey: "c", SequenceNumber: "4"}}
		require.True(t, w.push(recs))
		in := make(chan Record, len(recs))
		for _, r := range recs {
			in <- r
		}
		var calls []string
		var mu sync.Mutex
		returned := runProcessor(t, c, in, func(ctx context.Context, r Record) error {
			mu.Lock()
			calls = append(calls, r.SequenceNumber)
			mu.Unlock()
			if r.SequenceNumber == "1" {
				return errors.New("fails")
			}
			return nil
		})
		require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(calls) == 3 }, 5*time.Second, time.Millisecond)
		time.Sleep(20 * time.Millisecond)
		close(in)
		select {
		case err := <-returned:
			require.Error(t, err)
			if panics {
				var pe *PanicError
				assert.ErrorAs(t, err, &pe)
			} else {
				assert.Contains(t, err.Error(), "record 1/0")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Process did not return")
		}
		mu.Lock()
		assert.Equal(t, []string{"1", "2", "4"}, calls, "a's second record never runs before its first")
		mu.Unlock()
		var acked []string
		for _, r := range recs {
			if r.chunk.marks.Load()&(1<<(r.index-r.chunk.first)) != 0 {
				acked = append(acked, r.SequenceNumber)
			}
		}
		assert.Equal(t, []string{"2", "4"}, acked)
		assert.Equal(t, ProcessStats{FailedAttempts: 1, ToOnFailure: 1}, c.Stats().Process)
	}
}

// The handlers' contexts end "at the latest when Process returns": once
// the records stop coming, finish ends them (stopHandlers), and Process
// returns when the calls return. At Concurrency 1 the dispatcher is the
// goroutine in the call, so it never sees the channel close, never ends
// the contexts, and a handler that waits for its context (a well-behaved
// one) waits for ever. In production a record's context ends earlier only
// when its window closes; releaseLease closes it only while the final
// context lasts (writeCheckpoint: "unless ctx is over"), so with the lease
// table unreachable at shutdown (more than 8 leases, or a cut take read
// first) windows stay open and Process never returns. Concurrency 2 returns.
func TestReview13ProcessReturnsWhenTheHandlerWaitsForItsContext(t *testing.T) {
	for _, concurrency := range []int{2, 1} {
		t.Run(fmt.Sprint("Concurrency ", concurrency), func(t *testing.T) {
			c, err := New(Options{StreamName: "s", AWSConfig: &aws.Config{}, Concurrency: concurrency, Logger: discardLogger()})
			require.NoError(t, err)
			w := newAckWindow(checkpoint{seq: checkpointTrimHorizon}) // a lease whose release was never sent
			recs := []Record{{PartitionKey: "a", SequenceNumber: "1"}}
			require.True(t, w.push(recs))
			in := make(chan Record, 1)
			in <- recs[0]
			started := make(chan struct{})
			stop := make(chan struct{}) // ends the handler, so that the test leaves nothing behind
			defer close(stop)
			returned := runProcessor(t, c, in, func(ctx context.Context, r Record) error {
				close(started)
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-stop:
					return errors.New("stopped by the test")
				}
			})
			<-started
			close(in) // the consumer's shutdown is over: its channel closed
			select {
			case <-returned:
			case <-time.After(2 * time.Second):
				t.Fatal("Process did not return: the handler waits for a context only Process's return ends")
			}
		})
	}
}
