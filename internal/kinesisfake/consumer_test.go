package kinesisfake

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// consumer reads a stream through the KinesisAPI calls as kcl does: it lists
// the shards, reads each from TRIM_HORIZON, follows GetRecords ChildShards,
// and starts a child only once every parent it names was read to its end.
// It retries throttles and 5xx, and reopens an expired iterator after the
// last record it read.
type consumer struct {
	api        kinesisAPI
	stream     string
	writerDone *atomic.Bool // once set, no record or reshard comes

	wg      sync.WaitGroup
	mu      sync.Mutex
	started map[string]bool
	ended   map[string]bool
	perKey  map[string][]string // partition key -> sequence numbers, in the order read
	byShard map[string][]string // shard -> sequence numbers, in the order read
	total   int
	reopens int // iterators reopened after expiring
	errs    []error
}

func newConsumer(api kinesisAPI, stream string, writerDone *atomic.Bool) *consumer {
	return &consumer{api: api, stream: stream, writerDone: writerDone,
		started: map[string]bool{}, ended: map[string]bool{}, perKey: map[string][]string{}, byShard: map[string][]string{}}
}

func transient(err error) bool {
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	switch apiErr.(type) {
	case *types.ProvisionedThroughputExceededException, *types.LimitExceededException:
		return true
	}
	return apiErr.ErrorCode() == "InternalFailure"
}

// retry calls op until it returns something other than a transient error.
func retry[T any](op func() (T, error)) (T, error) {
	for {
		v, err := op()
		if !transient(err) {
			return v, err
		}
		runtime.Gosched()
	}
}

func (c *consumer) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.errs = append(c.errs, err)
}

// run lists the shards (parents named but not listed count as ended) and
// reads them all; it returns when every shard was read to its end, or to
// its tip once the writer is done.
func (c *consumer) run(ctx context.Context) {
	var shards []types.Shard
	in := &kinesis.ListShardsInput{StreamName: aws.String(c.stream)}
	for {
		out, err := retry(func() (*kinesis.ListShardsOutput, error) { return c.api.ListShards(ctx, in) })
		if err != nil {
			c.fail(err)
			return
		}
		shards = append(shards, out.Shards...)
		if out.NextToken == nil {
			break
		}
		in = &kinesis.ListShardsInput{NextToken: out.NextToken}
	}
	listed := map[string]bool{}
	for _, sh := range shards {
		listed[*sh.ShardId] = true
	}
	c.mu.Lock()
	for _, sh := range shards {
		if !listed[aws.ToString(sh.ParentShardId)] && !listed[aws.ToString(sh.AdjacentParentShardId)] {
			c.start(ctx, *sh.ShardId)
		}
	}
	c.mu.Unlock()
	c.wg.Wait()
}

// start reads shard id in a goroutine; c.mu is held.
func (c *consumer) start(ctx context.Context, id string) {
	if c.started[id] {
		return
	}
	c.started[id] = true
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.read(ctx, id)
	}()
}

func (c *consumer) iterator(ctx context.Context, id, after string) (*string, error) {
	in := &kinesis.GetShardIteratorInput{StreamName: aws.String(c.stream), ShardId: aws.String(id), ShardIteratorType: types.ShardIteratorTypeTrimHorizon}
	if after != "" {
		in.ShardIteratorType, in.StartingSequenceNumber = types.ShardIteratorTypeAfterSequenceNumber, aws.String(after)
	}
	out, err := retry(func() (*kinesis.GetShardIteratorOutput, error) { return c.api.GetShardIterator(ctx, in) })
	if err != nil {
		return nil, err
	}
	return out.ShardIterator, nil
}

func (c *consumer) read(ctx context.Context, id string) {
	it, err := c.iterator(ctx, id, "")
	last := ""
	for err == nil {
		done := c.writerDone.Load()
		out, getErr := retry(func() (*kinesis.GetRecordsOutput, error) {
			return c.api.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it, Limit: aws.Int32(7)})
		})
		var expired *types.ExpiredIteratorException
		if errors.As(getErr, &expired) {
			c.mu.Lock()
			c.reopens++
			c.mu.Unlock()
			it, err = c.iterator(ctx, id, last)
			continue
		}
		if getErr != nil {
			err = getErr
			break
		}
		c.mu.Lock()
		for _, r := range out.Records {
			c.perKey[*r.PartitionKey] = append(c.perKey[*r.PartitionKey], *r.SequenceNumber)
			c.byShard[id] = append(c.byShard[id], *r.SequenceNumber)
			c.total++
			last = *r.SequenceNumber
		}
		if out.NextShardIterator == nil {
			c.ended[id] = true
			for _, child := range out.ChildShards {
				ready := true
				for _, p := range child.ParentShards {
					ready = ready && c.ended[p]
				}
				if ready {
					c.start(ctx, *child.ShardId)
				}
			}
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		if len(out.Records) == 0 && done {
			return // an open shard, caught up, and nothing more will come
		}
		it = out.NextShardIterator
		if len(out.Records) == 0 {
			runtime.Gosched()
		}
	}
	c.fail(fmt.Errorf("shard %s: %w", id, err))
}

// write puts n records under 13 partition keys, a millisecond apart,
// resharding along the way: a split, a merge, and two uniform rescalings.
func write(t *testing.T, s *Server, clock *Clock, n int) error {
	for i := range n {
		clock.Advance(time.Millisecond)
		if _, _, err := s.PutRecord("s", fmt.Sprintf("key-%d", i%13), []byte(fmt.Sprint(i))); err != nil {
			return err
		}
		var err error
		switch i {
		case n / 5:
			sh := openShards(t, s, "s")[0]
			mid := new(big.Int).Add(bigOf(t, *sh.HashKeyRange.StartingHashKey), bigOf(t, *sh.HashKeyRange.EndingHashKey))
			err = s.SplitShard("s", *sh.ShardId, mid.Rsh(mid, 1).String())
		case 2 * n / 5:
			open := openShards(t, s, "s")
			err = s.MergeShards("s", *open[2].ShardId, *open[1].ShardId)
		case 3 * n / 5:
			err = s.UpdateShardCount("s", 5)
		case 4 * n / 5:
			err = s.UpdateShardCount("s", 2)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func TestAConsumerReadsEveryRecordOnceInOrder(t *testing.T) {
	for _, tc := range []struct {
		name       string
		concurrent bool // the consumer reads while records are put and shards reshaped
		faults     FaultFunc
	}{
		{name: "after resharding"},
		{name: "while resharding", concurrent: true},
		{name: "while resharding, with faults", concurrent: true, faults: RandomFaults(42, Probabilities{Throttle: 0.1, ServerError: 0.05, LostReply: 0.05})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Iterators expire after 20 records, so that readers reopen them.
			s, clock := newServer(t, Options{PageSize: 2, IteratorTTL: 20 * time.Millisecond})
			s.CreateStream("s", 3)
			s.SetFault(tc.faults)
			const n = 2000
			var writerDone atomic.Bool
			c := newConsumer(s, "s", &writerDone)
			if tc.concurrent {
				var wg sync.WaitGroup
				wg.Add(1)
				go func() {
					defer wg.Done()
					c.run(context.Background())
				}()
				require.NoError(t, write(t, s, clock, n))
				writerDone.Store(true)
				wg.Wait()
			} else {
				require.NoError(t, write(t, s, clock, n))
				writerDone.Store(true)
				c.run(context.Background())
			}
			require.Empty(t, c.errs)
			t.Logf("%d iterators reopened, calls: %v", c.reopens, s.CallCounts())

			all, err := s.Shards("s")
			require.NoError(t, err)
			assert.Len(t, c.started, len(all), "every shard was read")
			assert.Equal(t, n, c.total)
			wantByShard := map[string][]string{}
			wantPerKey := map[string][]string{}
			for _, r := range s.Records("s") {
				assert.Equal(t, 1, r.Reads, "record %s read once", r.SequenceNumber)
				wantByShard[r.ShardID] = append(wantByShard[r.ShardID], r.SequenceNumber)
				wantPerKey[r.PartitionKey] = append(wantPerKey[r.PartitionKey], r.SequenceNumber)
			}
			assert.Equal(t, wantByShard, c.byShard, "each shard in sequence order")
			assert.Equal(t, wantPerKey, c.perKey, "each key in the order put, across reshards")
			if tc.faults != nil {
				var lost int
				for _, r := range s.Records("s") {
					lost += r.LostReads
				}
				assert.Positive(t, lost, "some replies were lost and read again")
			}
		})
	}
}
