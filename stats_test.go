package kcl

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStatsReportsDeliveriesAcksCheckpointsAndFaults(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 2)
	puts := f.putN(40, 8, "")
	faulty := &faultyKinesis{KinesisAPI: f.kin, expireAt: map[int64]bool{3: true}, throttleEach: 4}
	opts := f.options()
	opts.Kinesis = faulty
	opts.MaxRecords = 5
	s := startConsumer(t, opts)
	got := s.receive(len(puts), 30*time.Second, func(Record) bool { return false })
	acked := map[string]int{}
	ackedBytes := map[string]int64{}
	delivered := map[string]int{}
	prefix := map[string]int{} // acked records before the first unacked one, per shard
	gap := map[string]bool{}
	checkpoints := map[string]string{} // the last record of that prefix
	for i, r := range got {
		delivered[r.ShardID]++
		if i%2 == 0 {
			r.Ack()
			acked[r.ShardID]++
			ackedBytes[r.ShardID] += int64(len(r.Data))
			if !gap[r.ShardID] {
				prefix[r.ShardID]++
				checkpoints[r.ShardID] = r.SequenceNumber
			}
		} else {
			gap[r.ShardID] = true
		}
	}
	for shard := range lastSeqPerShard(puts) {
		if checkpoints[shard] == "" {
			checkpoints[shard] = checkpointTrimHorizon
		}
	}
	require.Len(t, checkpoints, 2)
	// The acked prefix is checkpointed, and Stats says so.
	require.Eventually(t, func() bool {
		for _, sh := range s.c.Stats().Shards {
			if sh.Checkpoint != checkpoints[sh.ShardID] {
				return false
			}
		}
		return true
	}, 5*time.Second, 20*time.Millisecond, "Stats reports the acked prefix as the checkpoint: want %v, got %+v", checkpoints, s.c.Stats().Shards)
	time.Sleep(60 * time.Millisecond) // the checkpoint ages

	st := s.c.Stats()
	assert.Equal(t, 2, st.LeasesHeld)
	require.Len(t, st.Shards, 2)
	for _, sh := range st.Shards {
		assert.True(t, sh.Held)
		assert.Equal(t, s.c.opts.WorkerID, sh.Owner)
		assert.EqualValues(t, delivered[sh.ShardID], sh.RecordsDelivered, sh.ShardID)
		assert.EqualValues(t, acked[sh.ShardID], sh.RecordsAcked, sh.ShardID)
		assert.Equal(t, ackedBytes[sh.ShardID], sh.BytesAcked, sh.ShardID)
		assert.Equal(t, delivered[sh.ShardID]-prefix[sh.ShardID], sh.Unacked, "%s: all after the first gap count as unacked", sh.ShardID)
		assert.Positive(t, sh.BytesDelivered)
		assert.Positive(t, sh.LastRecordAge)
		assert.Zero(t, sh.MillisBehindLatest, "caught up")
		assert.Equal(t, checkpoints[sh.ShardID], sh.Checkpoint, sh.ShardID)
		assert.Equal(t, checkpoints[sh.ShardID], str(f.leaseItems()[sh.ShardID], attrCheckpoint), "%s: Stats reports the checkpoint the table holds", sh.ShardID)
		assert.Zero(t, sh.CheckpointSubSequenceNumber)
		assert.Greater(t, sh.CheckpointAge, 50*time.Millisecond, sh.ShardID)
		assert.Less(t, sh.CheckpointAge, time.Minute, sh.ShardID)
	}
	assert.EqualValues(t, 1, st.IteratorRefreshes)
	assert.Positive(t, st.Throttles)
	assert.GreaterOrEqual(t, st.Retries, st.Throttles)
	require.NoError(t, s.stop(nil))
}

func TestStatsNamesTheOwnersOfOtherWorkersShards(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 4)
	g := newGroup(t, f)
	a := g.start("a", nil)
	g.start("b", nil)
	g.waitFair(4, 20*time.Second)
	require.Eventually(t, func() bool {
		owners := map[string]int{}
		for _, sh := range a.Stats().Shards {
			owners[sh.Owner]++
		}
		return owners["a"] == 2 && owners["b"] == 2
	}, 5*time.Second, 20*time.Millisecond, "%+v", a.Stats())
}

// A shard stalled behind a record never acked shows it: OldestUnackedAge
// keeps growing while nothing is fetched (MillisBehindLatest, which Kinesis
// gives with each page, stays where it was), and is 0 once every record
// delivered is acked (issue 23, item 2: a lag that cannot freeze).
func TestStatsOldestUnackedAgeGrowsWhileAShardIsStalled(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 1)
	f.putN(3, 1, "")
	s := startConsumer(t, f.options())
	got := s.receive(3, 30*time.Second, func(Record) bool { return false })
	first := s.c.Stats().Shards[0].OldestUnackedAge
	time.Sleep(300 * time.Millisecond)
	later := s.c.Stats().Shards[0].OldestUnackedAge
	assert.Positive(t, first)
	assert.GreaterOrEqual(t, later-first, 300*time.Millisecond, "it grows with the wall clock while the shard is stalled")
	for _, r := range got {
		r.Ack()
	}
	assert.Zero(t, s.c.Stats().Shards[0].OldestUnackedAge, "every record acked")
	require.NoError(t, s.stop(nil))
}
