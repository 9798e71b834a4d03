package kinesisfake

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/stretchr/testify/require"
)

// A stream deleted and created again under its name is a new incarnation:
// the old one's iterators fail, sequence numbers go on above the old ones,
// and the ledger keeps the old records, trimmed.
func TestAStreamCreatedAgainIsANewIncarnation(t *testing.T) {
	ctx := context.Background()
	s, clock := newServer(t, Options{})
	s.CreateStream("s", 1)
	_, oldSeq, err := s.PutRecord("s", "k", []byte("old"))
	require.NoError(t, err)
	it, err := s.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String("s"), ShardId: aws.String("shardId-000000000000"), ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
	require.NoError(t, err)

	require.NoError(t, s.DeleteStream("s"))
	_, err = s.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String("s")})
	var notFound *types.ResourceNotFoundException
	require.ErrorAs(t, err, &notFound, "a deleted stream is gone")

	clock.Advance(time.Minute)
	s.CreateStream("s", 1)
	_, newSeq, err := s.PutRecord("s", "k", []byte("new"))
	require.NoError(t, err)
	require.True(t, len(newSeq) == len(oldSeq) && newSeq > oldSeq, "sequence numbers go on: %s after %s", newSeq, oldSeq)

	_, err = s.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator})
	require.ErrorAs(t, err, &notFound, "an iterator of the deleted incarnation")
	_, err = s.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String("s"), ShardId: aws.String("shardId-000000000000"),
		ShardIteratorType: types.ShardIteratorTypeAfterSequenceNumber, StartingSequenceNumber: aws.String(oldSeq)})
	var invalid *types.InvalidArgumentException
	require.ErrorAs(t, err, &invalid, "a sequence number of the deleted incarnation")

	recs := s.Records("s")
	require.Len(t, recs, 2)
	require.Equal(t, "old", string(recs[0].Data))
	require.True(t, recs[0].Trimmed)
	require.False(t, recs[1].Trimmed)
	sum, err := s.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String("s")})
	require.NoError(t, err)
	require.Equal(t, epoch.Add(time.Minute), sum.StreamDescriptionSummary.StreamCreationTimestamp.UTC())
}
