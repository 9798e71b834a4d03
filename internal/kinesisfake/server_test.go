package kinesisfake

import (
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"math/big"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCreateStreamSplitsTheHashKeySpaceEvenly(t *testing.T) {
	for _, n := range []int{1, 2, 3, 4, 7, 16} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			s, _ := newServer(t, Options{})
			s.CreateStream("s", n)
			open := requireCover(t, s, "s")
			require.Len(t, open, n)
			want := new(big.Int).Div(hashSpace, big.NewInt(int64(n)))
			for i, sh := range open {
				assert.Equal(t, fmt.Sprintf("shardId-%012d", i), *sh.ShardId)
				assert.Nil(t, sh.ParentShardId)
				assert.Nil(t, sh.AdjacentParentShardId)
				size := new(big.Int).Sub(bigOf(t, *sh.HashKeyRange.EndingHashKey), bigOf(t, *sh.HashKeyRange.StartingHashKey))
				size.Add(size, big.NewInt(1))
				diff := new(big.Int).Sub(size, want)
				assert.True(t, diff.CmpAbs(big.NewInt(1)) <= 0, "shard %d has %s keys, want about %s", i, size, want)
			}
		})
	}
	t.Run("two shards", func(t *testing.T) {
		s, _ := newServer(t, Options{})
		s.CreateStream("s", 2)
		open := openShards(t, s, "s")
		assert.Equal(t, "170141183460469231731687303715884105727", *open[0].HashKeyRange.EndingHashKey)
		assert.Equal(t, "170141183460469231731687303715884105728", *open[1].HashKeyRange.StartingHashKey)
		assert.Equal(t, "340282366920938463463374607431768211455", *open[1].HashKeyRange.EndingHashKey)
	})
}

func TestCreateStreamPanicsOnMistakes(t *testing.T) {
	s, _ := newServer(t, Options{})
	s.CreateStream("s", 1)
	assert.Panics(t, func() { s.CreateStream("s", 1) }, "taken")
	assert.Panics(t, func() { s.CreateStream("a|b", 1) }, "bad name")
	assert.Panics(t, func() { s.CreateStream("t", 0) }, "no shard")
}

func TestDescribeStreamSummary(t *testing.T) {
	s, clock := newServer(t, Options{})
	arn := s.CreateStream("orders", 3)
	assert.Equal(t, "arn:aws:kinesis:us-east-1:123456789012:stream/orders", arn)
	clock.Advance(time.Minute)
	for _, in := range []*kinesis.DescribeStreamSummaryInput{{StreamName: aws.String("orders")}, {StreamARN: aws.String(arn)}} {
		out, err := s.DescribeStreamSummary(context.Background(), in)
		require.NoError(t, err)
		d := out.StreamDescriptionSummary
		assert.Equal(t, "orders", *d.StreamName)
		assert.Equal(t, arn, *d.StreamARN)
		assert.Equal(t, types.StreamStatusActive, d.StreamStatus)
		assert.Equal(t, epoch, *d.StreamCreationTimestamp)
		assert.Equal(t, int32(3), *d.OpenShardCount)
		assert.Equal(t, int32(24), *d.RetentionPeriodHours)
	}
	require.NoError(t, s.SplitShard("orders", "shardId-000000000000", "1000"))
	out, err := s.DescribeStreamSummary(context.Background(), &kinesis.DescribeStreamSummaryInput{StreamName: aws.String("orders")})
	require.NoError(t, err)
	assert.Equal(t, int32(4), *out.StreamDescriptionSummary.OpenShardCount)
}

func TestUnknownStreamIsResourceNotFound(t *testing.T) {
	s, _ := newServer(t, Options{})
	s.CreateStream("s", 1)
	ctx := context.Background()
	errs := map[string]error{}
	_, errs["ListShards"] = s.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String("nope")})
	_, errs["ListShards by ARN"] = s.ListShards(ctx, &kinesis.ListShardsInput{StreamARN: aws.String(StreamARN("nope"))})
	_, errs["ARN of another account"] = s.ListShards(ctx, &kinesis.ListShardsInput{StreamARN: aws.String("arn:aws:kinesis:us-east-1:999999999999:stream/s")})
	_, errs["GetShardIterator"] = s.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String("nope"), ShardId: aws.String("shardId-000000000000"), ShardIteratorType: types.ShardIteratorTypeLatest})
	_, errs["unknown shard"] = s.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String("s"), ShardId: aws.String("shardId-000000000009"), ShardIteratorType: types.ShardIteratorTypeLatest})
	_, errs["DescribeStreamSummary"] = s.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String("nope")})
	_, _, errs["PutRecord"] = s.PutRecord("nope", "k", nil)
	errs["SplitShard"] = s.SplitShard("nope", "shardId-000000000000", "1")
	errs["UpdateShardCount"] = s.UpdateShardCount("nope", 2)
	for name, err := range errs {
		var nf *types.ResourceNotFoundException
		assert.True(t, errors.As(err, &nf), "%s: %v", name, err)
	}
}

func TestPutRoutesByMD5OfThePartitionKey(t *testing.T) {
	s, clock := newServer(t, Options{})
	s.CreateStream("s", 4)
	open := openShards(t, s, "s")
	owner := func(key *big.Int) string {
		for _, sh := range open {
			if bigOf(t, *sh.HashKeyRange.StartingHashKey).Cmp(key) <= 0 && key.Cmp(bigOf(t, *sh.HashKeyRange.EndingHashKey)) <= 0 {
				return *sh.ShardId
			}
		}
		t.Fatalf("no shard holds %s", key)
		return ""
	}
	var last string
	for i := range 200 {
		key := fmt.Sprintf("key-%d", i)
		sum := md5.Sum([]byte(key))
		clock.Advance(time.Millisecond)
		shardID, seq, err := s.PutRecord("s", key, []byte(key))
		require.NoError(t, err)
		assert.Equal(t, owner(new(big.Int).SetBytes(sum[:])), shardID, key)
		assert.Len(t, seq, 56)
		assert.Greater(t, seq, last, "sequence numbers increase across shards")
		last = seq
	}
	recs := s.Records("s")
	require.Len(t, recs, 200)
	assert.Equal(t, "key-7", recs[7].PartitionKey)
	assert.Equal(t, []byte("key-7"), recs[7].Data)
	assert.Equal(t, epoch.Add(8*time.Millisecond), recs[7].Arrival)
}

func TestPutRecordHashKey(t *testing.T) {
	s, _ := newServer(t, Options{})
	s.CreateStream("s", 4)
	quarter := new(big.Int).Rsh(hashSpace, 2)
	for _, tc := range []struct {
		hashKey string
		shard   string
		invalid bool
	}{
		{hashKey: "0", shard: "shardId-000000000000"},
		{hashKey: new(big.Int).Sub(quarter, big.NewInt(1)).String(), shard: "shardId-000000000000"},
		{hashKey: quarter.String(), shard: "shardId-000000000001"},
		{hashKey: new(big.Int).Mul(quarter, big.NewInt(3)).String(), shard: "shardId-000000000003"},
		{hashKey: maxHashKey.String(), shard: "shardId-000000000003"},
		{hashKey: hashSpace.String(), invalid: true},
		{hashKey: "-1", invalid: true},
		{hashKey: "+1", invalid: true},
		{hashKey: "12a", invalid: true},
		{hashKey: "", invalid: true},
	} {
		t.Run(tc.hashKey, func(t *testing.T) {
			shardID, _, err := s.PutRecordHashKey("s", "pk", tc.hashKey, nil)
			if tc.invalid {
				var ia *types.InvalidArgumentException
				require.ErrorAs(t, err, &ia)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.shard, shardID)
		})
	}
	_, _, err := s.PutRecord("s", "", nil)
	var ia *types.InvalidArgumentException
	assert.ErrorAs(t, err, &ia, "empty partition key")
}
