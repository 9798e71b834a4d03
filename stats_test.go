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
	for i, r := range got {
		delivered[r.ShardID]++
		if i%2 == 0 {
			r.Ack()
			acked[r.ShardID]++
			ackedBytes[r.ShardID] += int64(len(r.Data))
			if !gap[r.ShardID] {
				prefix[r.ShardID]++
			}
		} else {
			gap[r.ShardID] = true
		}
	}
	require.Eventually(t, func() bool {
		for _, st := range s.c.Stats().Shards {
			if st.Held && st.CheckpointAge > 50*time.Millisecond {
				return true
			}
		}
		return false
	}, 5*time.Second, 20*time.Millisecond)

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
