package kcl

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kclgo/kcl/internal/kinesisfake"
)

// A backlog on one shard does not starve another: ready records are taken
// in turn across shards, so each shard's first call comes among the first
// few (issue 23, item 5: with two backlogged shards, Concurrency 2 and
// MaxRecords 10, the second shard's first call was call 111 of 200).
func TestProcessTakesShardsInTurn(t *testing.T) {
	noLeak(t)
	kin := kinesisfake.New(kinesisfake.Options{})
	kin.CreateStream("s", 2)
	perShard := map[string]int{}
	for i := 0; len(perShard) < 2 || perShard["shardId-000000000000"] < 100 || perShard["shardId-000000000001"] < 100; i++ {
		shard, _, err := kin.PutRecord("s", fmt.Sprintf("k%d", i), []byte(fmt.Sprint(i)))
		require.NoError(t, err)
		perShard[shard]++
	}
	total := perShard["shardId-000000000000"] + perShard["shardId-000000000001"]
	opts := fakeOptions(kin, "s")
	opts.Concurrency, opts.MaxRecords = 2, 10
	var mu sync.Mutex
	var order []string
	r := startProcess(t, opts, func(ctx context.Context, rec Record) error {
		time.Sleep(time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		order = append(order, rec.ShardID)
		return nil
	})
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(order) == total }, 60*time.Second, 10*time.Millisecond)
	require.NoError(t, r.stop())
	for _, sh := range []string{"shardId-000000000000", "shardId-000000000001"} {
		first := slices.Index(order, sh)
		require.GreaterOrEqual(t, first, 0)
		require.Less(t, first, 12, "%s's first call is call %d of %d", sh, first+1, total)
	}
}

// Stats says where Process's records are: running, ready, waiting behind
// their key, backing off; and counts failed attempts and records given to
// OnFailure (issue 23, item 2).
func TestProcessStats(t *testing.T) {
	noLeak(t)
	kin := kinesisfake.New(kinesisfake.Options{})
	kin.CreateStream("s", 1)
	for i, key := range []string{"a", "a", "a", "b", "b", "c"} {
		_, _, err := kin.PutRecord("s", key, []byte(fmt.Sprint(i)))
		require.NoError(t, err)
	}
	opts := fakeOptions(kin, "s")
	opts.MaxAttempts, opts.Concurrency = 2, 3
	opts.RetryDelay, opts.MaxRetryDelay = time.Hour, time.Hour // "c" backs off for good after its first failure
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	r := startProcess(t, opts, func(ctx context.Context, rec Record) error {
		switch rec.PartitionKey {
		case "a":
			<-release
		case "c":
			return fmt.Errorf("fails")
		}
		return nil
	})
	t.Cleanup(unblock) // before r.stop, which waits for the handlers
	c := r.c
	require.Eventually(t, func() bool {
		p := c.Stats().Process
		return p.Running == 1 && p.BackingOff == 1 && p.Ready == 0 && p.Waiting == 2
	}, 30*time.Second, 10*time.Millisecond, "a's first runs, its two others wait, b is done, c backs off: %+v", c.Stats().Process)
	p := c.Stats().Process
	require.EqualValues(t, 1, p.FailedAttempts)
	require.Zero(t, p.ToOnFailure)
	unblock()
	require.NoError(t, r.stop())
}
