package kinesisfake

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRetentionTrimsRecordsThenRemovesClosedShards(t *testing.T) {
	s, clock := newServer(t, Options{Retention: time.Hour})
	s.CreateStream("s", 1)
	const parent = "shardId-000000000000"
	ctx := context.Background()
	seq := putN(t, s, clock, 3) // arrivals epoch+1s..3s
	early := iteratorAt(t, s, "s", parent, types.ShardIteratorTypeTrimHorizon, "", time.Time{})
	read, _ := readToEnd(t, s, early, 1)
	require.Len(t, read, 3)
	clock.Set(epoch.Add(10 * time.Minute))
	_, seq3, err := s.PutRecord("s", "late", nil) // arrival epoch+10m
	require.NoError(t, err)
	clock.Set(epoch.Add(30 * time.Minute))
	require.NoError(t, s.SplitShard("s", parent, "1000")) // closed at epoch+30m

	// Just past the first two records' retention.
	clock.Set(epoch.Add(time.Hour + 2500*time.Millisecond))
	s.Trim()
	recs := s.Records("s")
	require.Len(t, recs, 4)
	for i, r := range recs {
		assert.Equal(t, i < 2, r.Trimmed, "record %d", i)
		assert.Equal(t, i < 3, r.Reads == 1, "record %d", i)
	}
	assert.Equal(t, epoch.Add(time.Hour+2500*time.Millisecond), recs[0].TrimmedAt)

	// Refresh the iterator (the clock has gone past its TTL) and read from the
	// trim horizon: an AT_SEQUENCE_NUMBER already trimmed opens there too.
	for _, it := range []string{
		iteratorAt(t, s, "s", parent, types.ShardIteratorTypeTrimHorizon, "", time.Time{}),
		iteratorAt(t, s, "s", parent, types.ShardIteratorTypeAtSequenceNumber, seq[0], time.Time{}),
	} {
		got, last := readToEnd(t, s, it, 10)
		assert.Equal(t, []string{seq[2], seq3}, seqs(got))
		assert.Nil(t, last.NextShardIterator)
	}
	// All records gone, but the shard closed at 30m: still listed.
	clock.Set(epoch.Add(time.Hour + 10*time.Minute + time.Second))
	ids, _ := listAll(t, s, &kinesis.ListShardsInput{StreamName: aws.String("s")})
	assert.Equal(t, shardIDs(0, 1, 2), ids)
	got, last := readToEnd(t, s, iteratorAt(t, s, "s", parent, types.ShardIteratorTypeTrimHorizon, "", time.Time{}), 10)
	assert.Empty(t, got)
	assert.Nil(t, last.NextShardIterator)
	assert.Len(t, last.ChildShards, 2, "a trimmed closed shard still names its children")
	for i, r := range s.Records("s") {
		assert.True(t, r.Trimmed, "record %d", i)
	}

	// Past the closing's retention: removed, lazily, by the next call.
	clock.Set(epoch.Add(89 * time.Minute))
	stale := iteratorAt(t, s, "s", parent, types.ShardIteratorTypeTrimHorizon, "", time.Time{})
	clock.Set(epoch.Add(90*time.Minute + time.Second))
	ids, _ = listAll(t, s, &kinesis.ListShardsInput{StreamName: aws.String("s")})
	assert.Equal(t, shardIDs(1, 2), ids)
	var nf *types.ResourceNotFoundException
	_, err = s.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String("s"), ShardId: aws.String(parent), ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
	assert.ErrorAs(t, err, &nf)
	_, err = s.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: aws.String(stale)})
	assert.ErrorAs(t, err, &nf, "an iterator of a removed shard")
	requireCover(t, s, "s")
}

func TestOpenShardsAreNeverRemoved(t *testing.T) {
	s, clock := newServer(t, Options{Retention: time.Hour})
	s.CreateStream("s", 2)
	putN(t, s, clock, 10)
	clock.Advance(48 * time.Hour)
	s.Trim()
	ids, _ := listAll(t, s, &kinesis.ListShardsInput{StreamName: aws.String("s")})
	assert.Equal(t, shardIDs(0, 1), ids)
	for _, r := range s.Records("s") {
		assert.True(t, r.Trimmed)
		assert.Zero(t, r.Reads, "trimmed before being read")
	}
}

func TestSetRetention(t *testing.T) {
	s, clock := newServer(t, Options{})
	s.CreateStream("s", 1)
	putN(t, s, clock, 1)
	clock.Advance(2 * time.Hour)
	s.Trim()
	assert.False(t, s.Records("s")[0].Trimmed, "the default retention is 24h")
	s.SetRetention(time.Hour)
	s.Trim()
	assert.True(t, s.Records("s")[0].Trimmed)
}

func TestRemoveShard(t *testing.T) {
	s, clock := newServer(t, Options{})
	s.CreateStream("s", 1)
	putN(t, s, clock, 2)
	var ia *types.InvalidArgumentException
	require.ErrorAs(t, s.RemoveShard("s", "shardId-000000000000"), &ia, "an open shard")
	require.NoError(t, s.SplitShard("s", "shardId-000000000000", "1000"))
	require.NoError(t, s.RemoveShard("s", "shardId-000000000000"))
	ids, _ := listAll(t, s, &kinesis.ListShardsInput{StreamName: aws.String("s")})
	assert.Equal(t, shardIDs(1, 2), ids)
	for _, r := range s.Records("s") {
		assert.True(t, r.Trimmed)
		assert.Equal(t, clock.Now(), r.TrimmedAt)
	}
	var nf *types.ResourceNotFoundException
	assert.ErrorAs(t, s.RemoveShard("s", "shardId-000000000000"), &nf, "already gone")
}
