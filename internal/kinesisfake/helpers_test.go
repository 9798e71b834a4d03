package kinesisfake

import (
	"context"
	"math/big"
	"sort"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// kinesisAPI is kcl's KinesisAPI (api.go of package kcl), copied: importing
// kcl would be a cycle.
type kinesisAPI interface {
	ListShards(ctx context.Context, in *kinesis.ListShardsInput, optFns ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error)
	GetShardIterator(ctx context.Context, in *kinesis.GetShardIteratorInput, optFns ...func(*kinesis.Options)) (*kinesis.GetShardIteratorOutput, error)
	GetRecords(ctx context.Context, in *kinesis.GetRecordsInput, optFns ...func(*kinesis.Options)) (*kinesis.GetRecordsOutput, error)
	DescribeStreamSummary(ctx context.Context, in *kinesis.DescribeStreamSummaryInput, optFns ...func(*kinesis.Options)) (*kinesis.DescribeStreamSummaryOutput, error)
	DescribeStreamConsumer(ctx context.Context, in *kinesis.DescribeStreamConsumerInput, optFns ...func(*kinesis.Options)) (*kinesis.DescribeStreamConsumerOutput, error)
	RegisterStreamConsumer(ctx context.Context, in *kinesis.RegisterStreamConsumerInput, optFns ...func(*kinesis.Options)) (*kinesis.RegisterStreamConsumerOutput, error)
	SubscribeToShard(ctx context.Context, in *kinesis.SubscribeToShardInput, optFns ...func(*kinesis.Options)) (*kinesis.SubscribeToShardOutput, error)
}

var (
	_ kinesisAPI = (*Server)(nil)
	_ kinesisAPI = (*kinesis.Client)(nil) // the copy is still the SDK's shape
)

var epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// newServer returns a server on a test clock reading epoch.
func newServer(t *testing.T, opts Options) (*Server, *Clock) {
	t.Helper()
	clock := NewClock(epoch)
	opts.Now = clock.Now
	return New(opts), clock
}

func bigOf(t *testing.T, s string) *big.Int {
	t.Helper()
	k, ok := new(big.Int).SetString(s, 10)
	require.True(t, ok, s)
	return k
}

// openShards returns the stream's open shards in hash key order.
func openShards(t *testing.T, s *Server, stream string) []types.Shard {
	t.Helper()
	all, err := s.Shards(stream)
	require.NoError(t, err)
	var open []types.Shard
	for _, sh := range all {
		if sh.SequenceNumberRange.EndingSequenceNumber == nil {
			open = append(open, sh)
		}
	}
	sort.Slice(open, func(i, j int) bool {
		return bigOf(t, *open[i].HashKeyRange.StartingHashKey).Cmp(bigOf(t, *open[j].HashKeyRange.StartingHashKey)) < 0
	})
	return open
}

// requireCover checks that the open shards of the stream cover 0..2^128-1
// with no gap and no overlap.
func requireCover(t *testing.T, s *Server, stream string) []types.Shard {
	t.Helper()
	open := openShards(t, s, stream)
	next := big.NewInt(0)
	for _, sh := range open {
		first, last := bigOf(t, *sh.HashKeyRange.StartingHashKey), bigOf(t, *sh.HashKeyRange.EndingHashKey)
		require.Zero(t, first.Cmp(next), "shard %s starts at %s, want %s", *sh.ShardId, first, next)
		require.True(t, first.Cmp(last) <= 0, "shard %s: empty range", *sh.ShardId)
		next = new(big.Int).Add(last, big.NewInt(1))
	}
	require.Zero(t, next.Cmp(hashSpace), "open shards end at %s", next)
	return open
}

func iteratorAt(t *testing.T, s *Server, stream, shardID string, typ types.ShardIteratorType, seq string, ts time.Time) string {
	t.Helper()
	in := &kinesis.GetShardIteratorInput{StreamName: aws.String(stream), ShardId: aws.String(shardID), ShardIteratorType: typ}
	if seq != "" {
		in.StartingSequenceNumber = aws.String(seq)
	}
	if !ts.IsZero() {
		in.Timestamp = aws.Time(ts)
	}
	out, err := s.GetShardIterator(context.Background(), in)
	require.NoError(t, err)
	return *out.ShardIterator
}

// readToEnd reads from iterator until the shard is caught up (open) or ended
// (closed), limit records a call, and returns the records and the last reply.
func readToEnd(t *testing.T, s *Server, iterator string, limit int32) ([]types.Record, *kinesis.GetRecordsOutput) {
	t.Helper()
	var recs []types.Record
	for {
		out, err := s.GetRecords(context.Background(), &kinesis.GetRecordsInput{ShardIterator: aws.String(iterator), Limit: aws.Int32(limit)})
		require.NoError(t, err)
		recs = append(recs, out.Records...)
		if out.NextShardIterator == nil || len(out.Records) == 0 {
			return recs, out
		}
		iterator = *out.NextShardIterator
	}
}

func seqs(recs []types.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = *r.SequenceNumber
	}
	return out
}
