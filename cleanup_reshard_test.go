package kcl

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A stream scaled 2 → 4 → 8 → 4 → 2 while two workers read it ends with a
// lease table that holds the open shards' leases only: every ended lease
// is deleted once its children started, and every record put is
// delivered.
func TestCleanupKeepsTheTableToTheOpenShards(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 2)
	const delay = 1500 * time.Millisecond
	got := &collected{seen: map[string]bool{}}
	var wg sync.WaitGroup
	var cancels []context.CancelFunc
	var consumers []*Consumer
	for _, id := range []string{"w1", "w2"} {
		opts := f.options()
		opts.WorkerID = id
		c, err := New(opts)
		require.NoError(t, err)
		c.cleanupDelay = delay
		ctx, cancel := context.WithCancel(context.Background())
		ch := c.Consume(ctx)
		cancels, consumers = append(cancels, cancel), append(consumers, c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range ch {
				got.add(string(r.Data))
				r.Ack()
			}
		}()
	}
	stop := func() {
		for _, cancel := range cancels {
			cancel()
		}
		wg.Wait()
		for _, c := range consumers {
			require.NoError(t, c.Err())
		}
	}
	defer stop()

	var all []string
	phase := func(name string) {
		ps := f.put(200, func(i int) string { return fmt.Sprintf("%s-k%d", name, i) }, func(i int) string { return fmt.Sprintf("%s-%d", name, i) })
		all = append(all, putData(ps)...)
		require.Eventually(t, func() bool { return got.has(all) }, 60*time.Second, 50*time.Millisecond, "every record up to %s delivered", name)
	}
	phase("2")
	for _, n := range []int32{4, 8, 4, 2} {
		_, err := f.kin.UpdateShardCount(context.Background(), &kinesis.UpdateShardCountInput{
			StreamName: &f.stream, TargetShardCount: aws.Int32(n), ScalingType: types.ScalingTypeUniformScaling,
		})
		require.NoError(t, err)
		f.waitActive()
		phase(fmt.Sprint(n))
	}

	open := map[string]bool{}
	out, err := f.kin.ListShards(context.Background(), &kinesis.ListShardsInput{StreamName: &f.stream})
	require.NoError(t, err)
	for _, s := range out.Shards {
		if s.SequenceNumberRange.EndingSequenceNumber == nil {
			open[*s.ShardId] = true
		}
	}
	require.Len(t, open, 2)
	assert.Greater(t, len(out.Shards), 10, "the stream's history: 2 + 4 + 8 + 4 + 2 shards")
	var keys []string
	assert.Eventually(t, func() bool {
		items := f.leaseItems()
		delete(items, groupKey)
		keys = slices.Sorted(maps.Keys(items))
		return slices.Equal(keys, slices.Sorted(maps.Keys(open)))
	}, 30*time.Second, 100*time.Millisecond, "the table holds the open shards' leases only")
	t.Logf("leases left: %v", keys)
	stop()
	assert.True(t, got.has(all), "nothing lost")
}

// collected is the data of the records delivered, from any goroutine.
type collected struct {
	mu   sync.Mutex
	seen map[string]bool
}

func (c *collected) add(d string) {
	c.mu.Lock()
	c.seen[d] = true
	c.mu.Unlock()
}

func (c *collected) has(all []string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, d := range all {
		if !c.seen[d] {
			return false
		}
	}
	return true
}
