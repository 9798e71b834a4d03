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
