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

// listAll lists every page of a ListShards request and returns the shard IDs
// and the number of pages.
func listAll(t *testing.T, s *Server, in *kinesis.ListShardsInput) ([]string, int) {
	t.Helper()
	var ids []string
	for pages := 1; ; pages++ {
		out, err := s.ListShards(context.Background(), in)
		require.NoError(t, err)
		for _, sh := range out.Shards {
			ids = append(ids, *sh.ShardId)
		}
		if out.NextToken == nil {
			return ids, pages
		}
		in = &kinesis.ListShardsInput{NextToken: out.NextToken, MaxResults: in.MaxResults}
	}
}

func shardIDs(ns ...int) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = shardIDOf(n)
	}
	return out
}

func shardIDOf(n int) string { return fmt.Sprintf("shardId-%012d", n) }

func TestListShardsPages(t *testing.T) {
	s, clock := newServer(t, Options{PageSize: 3})
	arn := s.CreateStream("s", 4)
	clock.Advance(time.Minute)
	require.NoError(t, s.SplitShard("s", shardIDOf(0), "1000")) // 4, 5
	clock.Advance(time.Minute)
	require.NoError(t, s.MergeShards("s", shardIDOf(2), shardIDOf(3))) // 6
	all := shardIDs(0, 1, 2, 3, 4, 5, 6)

	for _, tc := range []struct {
		name  string
		in    *kinesis.ListShardsInput
		want  []string
		pages int
	}{
		{"by name, page size 3", &kinesis.ListShardsInput{StreamName: aws.String("s")}, all, 3},
		{"by ARN", &kinesis.ListShardsInput{StreamARN: aws.String(arn)}, all, 3},
		{"MaxResults below the page size", &kinesis.ListShardsInput{StreamName: aws.String("s"), MaxResults: aws.Int32(2)}, all, 4},
		{"exclusive start", &kinesis.ListShardsInput{StreamName: aws.String("s"), ExclusiveStartShardId: aws.String(shardIDOf(3))}, shardIDs(4, 5, 6), 1},
		{"AT_TRIM_HORIZON", &kinesis.ListShardsInput{StreamName: aws.String("s"), ShardFilter: &types.ShardFilter{Type: types.ShardFilterTypeAtTrimHorizon}}, all, 3},
		{"FROM_TRIM_HORIZON", &kinesis.ListShardsInput{StreamName: aws.String("s"), ShardFilter: &types.ShardFilter{Type: types.ShardFilterTypeFromTrimHorizon}}, all, 3},
		{"AT_LATEST", &kinesis.ListShardsInput{StreamName: aws.String("s"), ShardFilter: &types.ShardFilter{Type: types.ShardFilterTypeAtLatest}}, shardIDs(1, 4, 5, 6), 2},
		{"AFTER_SHARD_ID", &kinesis.ListShardsInput{StreamName: aws.String("s"), ShardFilter: &types.ShardFilter{Type: types.ShardFilterTypeAfterShardId, ShardId: aws.String(shardIDOf(4))}}, shardIDs(5, 6), 1},
		{"AT_TIMESTAMP before the split", &kinesis.ListShardsInput{StreamName: aws.String("s"), ShardFilter: &types.ShardFilter{Type: types.ShardFilterTypeAtTimestamp, Timestamp: aws.Time(epoch.Add(30 * time.Second))}}, shardIDs(0, 1, 2, 3), 2},
		{"FROM_TIMESTAMP between split and merge", &kinesis.ListShardsInput{StreamName: aws.String("s"), ShardFilter: &types.ShardFilter{Type: types.ShardFilterTypeFromTimestamp, Timestamp: aws.Time(epoch.Add(90 * time.Second))}}, shardIDs(1, 2, 3, 4, 5, 6), 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ids, pages := listAll(t, s, tc.in)
			assert.Equal(t, tc.want, ids)
			assert.Equal(t, tc.pages, pages)
		})
	}
}

func TestListShardsNextToken(t *testing.T) {
	s, clock := newServer(t, Options{PageSize: 1, NextTokenTTL: time.Minute})
	s.CreateStream("s", 3)
	ctx := context.Background()
	out, err := s.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String("s")})
	require.NoError(t, err)
	require.NotNil(t, out.NextToken)
	token := out.NextToken

	var ia *types.InvalidArgumentException
	_, err = s.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String("s"), NextToken: token})
	require.ErrorAs(t, err, &ia, "NextToken comes without StreamName")
	_, err = s.ListShards(ctx, &kinesis.ListShardsInput{NextToken: aws.String("garbage")})
	require.ErrorAs(t, err, &ia)
	_, err = s.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String("s"), MaxResults: aws.Int32(0)})
	require.ErrorAs(t, err, &ia)
	_, err = s.ListShards(ctx, &kinesis.ListShardsInput{})
	require.ErrorAs(t, err, &ia, "no stream")

	clock.Advance(time.Minute)
	out, err = s.ListShards(ctx, &kinesis.ListShardsInput{NextToken: token})
	require.NoError(t, err, "valid for exactly the TTL")
	assert.Equal(t, shardIDOf(1), *out.Shards[0].ShardId)
	clock.Advance(time.Second)
	_, err = s.ListShards(ctx, &kinesis.ListShardsInput{NextToken: out.NextToken})
	require.NoError(t, err, "each page's token is issued anew")
	_, err = s.ListShards(ctx, &kinesis.ListShardsInput{NextToken: token})
	var expired *types.ExpiredNextTokenException
	require.ErrorAs(t, err, &expired)
}
