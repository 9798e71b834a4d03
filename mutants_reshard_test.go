package kcl

// Tests written for scripts/mutants: where new shards start after
// resharding, decided without Kinesis.

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// Once the group has read the stream, a parent neither listed nor leased
// left the stream (retention) while the group should have been reading it:
// its children, and theirs, start at TRIM_HORIZON. A group that has not read
// yet starts everything at InitialPosition, even when another of its first
// workers created some leases already (found by review: with Latest, half
// the shards could otherwise replay the whole retention period).
func TestMutantChildrenOfAParentGoneFromTheStreamDescend(t *testing.T) {
	shards := []shardInfo{
		{id: "other"},
		{id: "child", parents: []string{"gone"}},
		{id: "grandchild", parents: []string{"child"}},
	}
	assert.Equal(t, map[string]bool{"child": true, "grandchild": true}, descendsFromLeased(shards, map[string]bool{"other": true}, nil, true))
	assert.Empty(t, descendsFromLeased(shards, map[string]bool{}, nil, false))
	assert.Empty(t, descendsFromLeased(shards, map[string]bool{"other": true}, nil, false), "leases created, none taken yet")
}

// A lease created at SHARD_END (a closed shard at Latest) and never taken
// was never read: its children start at InitialPosition. One created at
// Latest, or one read to its end, is followed: its children start at
// TRIM_HORIZON (TestLatestShardAfterEndedLeasesIsNotReplayed).
func TestMutantChildrenOfALeaseCreatedEndedDoNotDescend(t *testing.T) {
	shards := []shardInfo{
		{id: "ended"},
		{id: "child", parents: []string{"ended"}},
		{id: "grandchild", parents: []string{"child"}},
	}
	leased := map[string]bool{"ended": true}
	assert.Empty(t, descendsFromLeased(shards, leased, map[string]bool{"ended": true}, false))
	assert.Empty(t, descendsFromLeased(shards, leased, map[string]bool{"ended": true}, true))
	assert.Equal(t, map[string]bool{"child": true, "grandchild": true}, descendsFromLeased(shards, leased, map[string]bool{"ended": false}, false))
}

// Every descendant of a leased shard descends, however deep: a consumer down
// across two reshards reads its grandchildren from TRIM_HORIZON (with
// AT_TIMESTAMP nothing else would start them there:
// TestGrandchildrenStartAtTrimHorizonAfterTwoReshardsWhileDown runs at
// Latest, where a child made in the same sync leads its own children too).
func TestMutantGrandchildrenOfALeasedShardDescend(t *testing.T) {
	shards := []shardInfo{
		{id: "leased"},
		{id: "child", parents: []string{"leased"}},
		{id: "grandchild", parents: []string{"child"}},
		{id: "other"},
	}
	assert.Equal(t, map[string]bool{"child": true, "grandchild": true}, descendsFromLeased(shards, map[string]bool{"leased": true}, nil, true))
}
