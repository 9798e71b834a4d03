package kinesisfake

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// putN puts n records in the one-shard stream s, a second apart, and returns
// their sequence numbers.
func putN(t *testing.T, s *Server, clock *Clock, n int) []string {
	t.Helper()
	var out []string
	for i := range n {
		clock.Advance(time.Second)
		_, seq, err := s.PutRecord("s", fmt.Sprint(i), []byte{byte(i)})
		require.NoError(t, err)
		out = append(out, seq)
	}
	return out
}

func TestShardIteratorTypes(t *testing.T) {
	s, clock := newServer(t, Options{})
	s.CreateStream("s", 1)
	seq := putN(t, s, clock, 5) // arrivals epoch+1s .. epoch+5s
	all, err := s.Shards("s")
	require.NoError(t, err)
	start := *all[0].SequenceNumberRange.StartingSequenceNumber
	const shard0 = "shardId-000000000000"

	for _, tc := range []struct {
		name string
		typ  types.ShardIteratorType
		seq  string
		ts   time.Time
		want []string
	}{
		{"trim horizon", types.ShardIteratorTypeTrimHorizon, "", time.Time{}, seq},
		{"latest", types.ShardIteratorTypeLatest, "", time.Time{}, nil},
		{"at sequence number", types.ShardIteratorTypeAtSequenceNumber, seq[2], time.Time{}, seq[2:]},
		{"after sequence number", types.ShardIteratorTypeAfterSequenceNumber, seq[2], time.Time{}, seq[3:]},
		{"after the last", types.ShardIteratorTypeAfterSequenceNumber, seq[4], time.Time{}, nil},
		{"at the shard's starting sequence number", types.ShardIteratorTypeAtSequenceNumber, start, time.Time{}, seq},
		{"at timestamp of a record", types.ShardIteratorTypeAtTimestamp, "", epoch.Add(3 * time.Second), seq[2:]},
		{"at timestamp between records", types.ShardIteratorTypeAtTimestamp, "", epoch.Add(2500 * time.Millisecond), seq[2:]},
		{"at timestamp before all", types.ShardIteratorTypeAtTimestamp, "", epoch, seq},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recs, last := readToEnd(t, s, iteratorAt(t, s, "s", shard0, tc.typ, tc.seq, tc.ts), 2)
			assert.Equal(t, len(tc.want), len(recs))
			if len(tc.want) > 0 {
				assert.Equal(t, tc.want, seqs(recs))
			}
			assert.NotNil(t, last.NextShardIterator, "the shard is open")
			assert.Equal(t, int64(0), *last.MillisBehindLatest)
		})
	}

	t.Run("a timestamp ahead of the server's clock is refused, as AWS refuses it", func(t *testing.T) {
		_, err := s.GetShardIterator(context.Background(), &kinesis.GetShardIteratorInput{StreamName: aws.String("s"), ShardId: aws.String(shard0),
			ShardIteratorType: types.ShardIteratorTypeAtTimestamp, Timestamp: aws.Time(clock.Now().Add(30 * time.Second))})
		var invalid *types.InvalidArgumentException
		require.ErrorAs(t, err, &invalid)
		assert.Contains(t, err.Error(), "cannot be greater than the currentTimestampInMillis")
	})

	t.Run("latest sees what comes after", func(t *testing.T) {
		it := iteratorAt(t, s, "s", shard0, types.ShardIteratorTypeLatest, "", time.Time{})
		_, seq, err := s.PutRecord("s", "new", nil)
		require.NoError(t, err)
		recs, _ := readToEnd(t, s, it, 10)
		assert.Equal(t, []string{seq}, seqs(recs))
	})

	ctx := context.Background()
	for name, in := range map[string]*kinesis.GetShardIteratorInput{
		"bad sequence number":     {ShardIteratorType: types.ShardIteratorTypeAtSequenceNumber, StartingSequenceNumber: aws.String("12")},
		"missing sequence number": {ShardIteratorType: types.ShardIteratorTypeAfterSequenceNumber},
		"sequence number before":  {ShardIteratorType: types.ShardIteratorTypeAtSequenceNumber, StartingSequenceNumber: aws.String(formatSeq(0))},
		"missing timestamp":       {ShardIteratorType: types.ShardIteratorTypeAtTimestamp},
		"unknown iterator type":   {ShardIteratorType: "SOMEWHERE"},
	} {
		in.StreamName, in.ShardId = aws.String("s"), aws.String(shard0)
		_, err := s.GetShardIterator(ctx, in)
		var ia *types.InvalidArgumentException
		assert.ErrorAs(t, err, &ia, name)
	}
	require.NoError(t, s.SplitShard("s", shard0, "1000"))
	child := openShards(t, s, "s")[0]
	_, err = s.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String("s"), ShardId: aws.String(shard0),
		ShardIteratorType: types.ShardIteratorTypeAtSequenceNumber, StartingSequenceNumber: child.SequenceNumberRange.StartingSequenceNumber})
	var ia *types.InvalidArgumentException
	assert.ErrorAs(t, err, &ia, "a sequence number after the shard's end")
}

func TestGetRecordsLimitAndMillisBehind(t *testing.T) {
	s, clock := newServer(t, Options{})
	s.CreateStream("s", 1)
	seq := putN(t, s, clock, 5)
	clock.Advance(10 * time.Second) // now: epoch+15s
	ctx := context.Background()
	it := iteratorAt(t, s, "s", "shardId-000000000000", types.ShardIteratorTypeTrimHorizon, "", time.Time{})

	out, err := s.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: aws.String(it), Limit: aws.Int32(2)})
	require.NoError(t, err)
	assert.Equal(t, seq[:2], seqs(out.Records))
	assert.Equal(t, int64(12000), *out.MillisBehindLatest, "the next record unread arrived at epoch+3s")
	r := out.Records[0]
	assert.Equal(t, "0", *r.PartitionKey)
	assert.Equal(t, []byte{0}, r.Data)
	assert.Equal(t, epoch.Add(time.Second), *r.ApproximateArrivalTimestamp)

	again, err := s.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: aws.String(it), Limit: aws.Int32(2)})
	require.NoError(t, err)
	assert.Equal(t, seq[:2], seqs(again.Records), "an iterator can be used again")

	out, err = s.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: out.NextShardIterator})
	require.NoError(t, err)
	assert.Equal(t, seq[2:], seqs(out.Records), "the default limit takes the rest")
	assert.Equal(t, int64(0), *out.MillisBehindLatest)

	for _, limit := range []int32{0, 10001} {
		_, err = s.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: aws.String(it), Limit: aws.Int32(limit)})
		var ia *types.InvalidArgumentException
		assert.ErrorAs(t, err, &ia, "limit %d", limit)
	}
	_, err = s.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: aws.String("garbage")})
	var ia *types.InvalidArgumentException
	assert.ErrorAs(t, err, &ia)

	recs := s.Records("s")
	assert.Equal(t, 2, recs[0].Reads)
	assert.Equal(t, 1, recs[4].Reads)
}

func TestIteratorsExpire(t *testing.T) {
	s, clock := newServer(t, Options{IteratorTTL: time.Minute})
	s.CreateStream("s", 1)
	ctx := context.Background()
	it := iteratorAt(t, s, "s", "shardId-000000000000", types.ShardIteratorTypeTrimHorizon, "", time.Time{})
	clock.Advance(time.Minute)
	out, err := s.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: aws.String(it)})
	require.NoError(t, err, "valid for exactly the TTL")
	clock.Advance(time.Second)
	_, err = s.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: out.NextShardIterator})
	require.NoError(t, err, "NextShardIterator is issued anew")
	_, err = s.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: aws.String(it)})
	var expired *types.ExpiredIteratorException
	require.ErrorAs(t, err, &expired)
}

func TestChildShardsAtTheEndOfAClosedShard(t *testing.T) {
	s, clock := newServer(t, Options{})
	s.CreateStream("s", 2)
	const (
		shard0 = "shardId-000000000000"
		shard1 = "shardId-000000000001"
	)
	for i := range 20 {
		_, _, err := s.PutRecord("s", fmt.Sprint(i), nil)
		require.NoError(t, err)
	}
	it0 := iteratorAt(t, s, "s", shard0, types.ShardIteratorTypeTrimHorizon, "", time.Time{})
	latest := iteratorAt(t, s, "s", shard0, types.ShardIteratorTypeLatest, "", time.Time{})
	clock.Advance(time.Second)
	require.NoError(t, s.SplitShard("s", shard0, "1000"))                  // children 2 and 3
	require.NoError(t, s.MergeShards("s", "shardId-000000000003", shard1)) // child 4

	recs, last := readToEnd(t, s, it0, 3)
	var want []string
	for _, r := range s.Records("s") {
		if r.ShardID == shard0 {
			want = append(want, r.SequenceNumber)
		}
	}
	assert.Equal(t, want, seqs(recs), "the closed shard's records stay readable")
	assert.Nil(t, last.NextShardIterator)
	assert.Equal(t, int64(0), *last.MillisBehindLatest)
	require.Len(t, last.ChildShards, 2)
	assert.Equal(t, "shardId-000000000002", *last.ChildShards[0].ShardId)
	assert.Equal(t, []string{shard0}, last.ChildShards[0].ParentShards)
	assert.Equal(t, "0", *last.ChildShards[0].HashKeyRange.StartingHashKey)
	assert.Equal(t, "999", *last.ChildShards[0].HashKeyRange.EndingHashKey)
	assert.Equal(t, "shardId-000000000003", *last.ChildShards[1].ShardId)

	// An iterator taken at LATEST before the split ends at once.
	_, last = readToEnd(t, s, latest, 10)
	assert.Nil(t, last.NextShardIterator)
	assert.Len(t, last.ChildShards, 2)

	// The merged child is named, with both parents, by each of them.
	for _, shard := range []string{"shardId-000000000003", shard1} {
		_, last = readToEnd(t, s, iteratorAt(t, s, "s", shard, types.ShardIteratorTypeTrimHorizon, "", time.Time{}), 100)
		require.Nil(t, last.NextShardIterator)
		require.Len(t, last.ChildShards, 1, shard)
		assert.Equal(t, "shardId-000000000004", *last.ChildShards[0].ShardId)
		assert.Equal(t, []string{"shardId-000000000003", shard1}, last.ChildShards[0].ParentShards)
	}

	// An open shard never ends.
	_, last = readToEnd(t, s, iteratorAt(t, s, "s", "shardId-000000000004", types.ShardIteratorTypeTrimHorizon, "", time.Time{}), 100)
	assert.NotNil(t, last.NextShardIterator)
	assert.Empty(t, last.ChildShards)
}
