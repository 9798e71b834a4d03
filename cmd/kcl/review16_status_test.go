package main

import (
	"math/big"
	"testing"
	"time"

	"github.com/kclgo/kcl/internal/leaseitem"
	"github.com/stretchr/testify/assert"
)

// TestReview16AwaitingDeletionReadsParentsAsTheWorkersDo: status must say
// "awaiting deletion" of exactly the leases the workers' cleanup deletes
// (cleanup.go endedLeases). The workers match a child's parentShardId
// against the parent's lease key as it is: endedLeases keys children by
// the parent string, which leaseitem.ParseLease leaves whole in a
// single-stream table. awaitingDeletion strips everything up to the last
// ':' (leaseitem.SplitKey), so a child naming "other:p" counts as p's child
// for status and not for the workers: p's listed child c1 then has no
// lease naming p for the workers, who never delete p, while status says
// it waits for deletion.
func TestReview16AwaitingDeletionReadsParentsAsTheWorkersDo(t *testing.T) {
	seq := "49590338271490256608559692538361571095921575989136588898"
	mark := leaseitem.Writer{Worker: "w1", Token: "t", Beat: 2}
	created := time.UnixMilli(1700000000000)
	stamp := created.UnixMilli()
	shards := []shardInfo{
		{id: "p", first: big.NewInt(0), last: big.NewInt(99)},
		{id: "c1", parents: []string{"p"}, first: big.NewInt(0), last: big.NewInt(49)},
		{id: "c2", parents: []string{"p"}, first: big.NewInt(50), last: big.NewInt(99)},
	}
	sl := streamLeases{created: created, byShard: map[string]leaseitem.Lease{
		"p":  {Key: "p", Counter: 5, Checkpoint: leaseitem.ShardEnd, Writer: mark, StreamCreated: stamp},
		"c1": {Key: "c1", Counter: 3, Checkpoint: seq, Parents: []string{"other:p"}, StreamCreated: stamp},
		"c2": {Key: "c2", Counter: 3, Checkpoint: seq, Parents: []string{"p"}, StreamCreated: stamp},
	}}
	assert.Empty(t, awaitingDeletion(shards, sl), "the workers never delete p: no lease names it as c1's parent")
}
