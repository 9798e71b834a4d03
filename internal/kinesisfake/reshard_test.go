package kinesisfake

import (
	"fmt"
	"math/big"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSplitShard(t *testing.T) {
	s, _ := newServer(t, Options{})
	s.CreateStream("s", 1)
	_, seq, err := s.PutRecord("s", "before", nil)
	require.NoError(t, err)
	require.NoError(t, s.SplitShard("s", "shardId-000000000000", "1000"))
	all, err := s.Shards("s")
	require.NoError(t, err)
	require.Len(t, all, 3)

	parent := all[0]
	require.NotNil(t, parent.SequenceNumberRange.EndingSequenceNumber, "the parent is closed")
	assert.Greater(t, *parent.SequenceNumberRange.EndingSequenceNumber, seq)
	low, high := all[1], all[2]
	assert.Equal(t, "shardId-000000000001", *low.ShardId)
	assert.Equal(t, "0", *low.HashKeyRange.StartingHashKey)
	assert.Equal(t, "999", *low.HashKeyRange.EndingHashKey)
	assert.Equal(t, "1000", *high.HashKeyRange.StartingHashKey)
	assert.Equal(t, maxHashKey.String(), *high.HashKeyRange.EndingHashKey)
	for _, c := range []types.Shard{low, high} {
		assert.Equal(t, "shardId-000000000000", aws.ToString(c.ParentShardId))
		assert.Nil(t, c.AdjacentParentShardId)
		assert.Nil(t, c.SequenceNumberRange.EndingSequenceNumber)
		assert.Greater(t, *c.SequenceNumberRange.StartingSequenceNumber, *parent.SequenceNumberRange.EndingSequenceNumber)
	}
	requireCover(t, s, "s")

	shardID, _, err := s.PutRecordHashKey("s", "k", "999", nil)
	require.NoError(t, err)
	assert.Equal(t, "shardId-000000000001", shardID, "no record goes to the closed parent")

	for name, tc := range map[string]struct{ shard, at string }{
		"closed shard":     {"shardId-000000000000", "10"},
		"at the start":     {"shardId-000000000001", "0"},
		"beyond the end":   {"shardId-000000000001", "1000"},
		"not a hash key":   {"shardId-000000000001", "x"},
		"unknown shard id": {"shardId-000000000042", "10"},
	} {
		assert.Error(t, s.SplitShard("s", tc.shard, tc.at), name)
	}
	require.NoError(t, s.SplitShard("s", "shardId-000000000001", "999"), "the last key of the range is a valid start")
	requireCover(t, s, "s")
}

func TestMergeShards(t *testing.T) {
	s, _ := newServer(t, Options{})
	s.CreateStream("s", 3)
	var ia *types.InvalidArgumentException
	require.ErrorAs(t, s.MergeShards("s", "shardId-000000000000", "shardId-000000000002"), &ia, "not adjacent")

	require.NoError(t, s.MergeShards("s", "shardId-000000000002", "shardId-000000000001"))
	all, err := s.Shards("s")
	require.NoError(t, err)
	require.Len(t, all, 4)
	child := all[3]
	assert.Equal(t, "shardId-000000000003", *child.ShardId)
	assert.Equal(t, "shardId-000000000002", aws.ToString(child.ParentShardId))
	assert.Equal(t, "shardId-000000000001", aws.ToString(child.AdjacentParentShardId))
	assert.Equal(t, *all[1].HashKeyRange.StartingHashKey, *child.HashKeyRange.StartingHashKey)
	assert.Equal(t, *all[2].HashKeyRange.EndingHashKey, *child.HashKeyRange.EndingHashKey)
	assert.NotNil(t, all[1].SequenceNumberRange.EndingSequenceNumber)
	assert.NotNil(t, all[2].SequenceNumberRange.EndingSequenceNumber)
	requireCover(t, s, "s")

	require.ErrorAs(t, s.MergeShards("s", "shardId-000000000003", "shardId-000000000001"), &ia, "closed")
	require.NoError(t, s.MergeShards("s", "shardId-000000000000", "shardId-000000000003"))
	open := requireCover(t, s, "s")
	require.Len(t, open, 1)
}

// requireLineage checks every shard's parents: at most two, a split child's
// range inside its parent's, a merge child's range the union of two adjacent
// parents'.
func requireLineage(t *testing.T, all []types.Shard) {
	t.Helper()
	byID := map[string]types.Shard{}
	for _, sh := range all {
		byID[*sh.ShardId] = sh
	}
	rng := func(sh types.Shard) (*big.Int, *big.Int) {
		return bigOf(t, *sh.HashKeyRange.StartingHashKey), bigOf(t, *sh.HashKeyRange.EndingHashKey)
	}
	for _, sh := range all {
		if sh.ParentShardId == nil {
			require.Nil(t, sh.AdjacentParentShardId)
			continue
		}
		first, last := rng(sh)
		p, ok := byID[*sh.ParentShardId]
		require.True(t, ok, "parent of %s", *sh.ShardId)
		require.NotNil(t, p.SequenceNumberRange.EndingSequenceNumber, "parent %s is closed", *p.ShardId)
		pFirst, pLast := rng(p)
		if sh.AdjacentParentShardId == nil {
			assert.True(t, pFirst.Cmp(first) <= 0 && last.Cmp(pLast) <= 0, "split child %s inside its parent", *sh.ShardId)
			continue
		}
		a, ok := byID[*sh.AdjacentParentShardId]
		require.True(t, ok)
		aFirst, aLast := rng(a)
		lo, hi := pFirst, aLast
		if aFirst.Cmp(pFirst) < 0 {
			lo, hi = aFirst, pLast
		}
		assert.Zero(t, lo.Cmp(first), "merge child %s starts where its parents do", *sh.ShardId)
		assert.Zero(t, hi.Cmp(last), "merge child %s ends where its parents do", *sh.ShardId)
	}
}

func TestUpdateShardCount(t *testing.T) {
	for _, tc := range []struct{ from, to int }{
		{1, 1}, {1, 2}, {2, 1}, {1, 8}, {8, 1}, {3, 5}, {5, 3}, {4, 3}, {3, 2}, {4, 8}, {7, 16}, {16, 7}, {5, 5},
	} {
		t.Run(fmt.Sprintf("%d to %d", tc.from, tc.to), func(t *testing.T) {
			s, _ := newServer(t, Options{})
			s.CreateStream("s", tc.from)
			require.NoError(t, s.UpdateShardCount("s", tc.to))
			open := requireCover(t, s, "s")
			require.Len(t, open, tc.to)
			starts := evenStarts(tc.to)
			for i, sh := range open {
				assert.Equal(t, starts[i].String(), *sh.HashKeyRange.StartingHashKey, "even ranges")
			}
			all, err := s.Shards("s")
			require.NoError(t, err)
			requireLineage(t, all)
			if tc.from == tc.to {
				assert.Len(t, all, tc.from, "nothing to do")
			}
		})
	}
	t.Run("twice, then back", func(t *testing.T) {
		s, _ := newServer(t, Options{})
		s.CreateStream("s", 3)
		for _, n := range []int{7, 2, 3} {
			require.NoError(t, s.UpdateShardCount("s", n))
			require.Len(t, requireCover(t, s, "s"), n)
		}
		all, err := s.Shards("s")
		require.NoError(t, err)
		requireLineage(t, all)
	})
	s, _ := newServer(t, Options{})
	s.CreateStream("s", 1)
	assert.Error(t, s.UpdateShardCount("s", 0))
}
