//go:build go1.25

package kinesisfake

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go/middleware"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The fan-out tests run in virtual time (testing/synctest): a subscription's
// heartbeat and expiry are timers, and the server's clock is time.Now.

// fanOut is a server with a stream "s" of one shard and a registered
// consumer "app".
func fanOut(t *testing.T, opts Options) (*Server, string) {
	t.Helper()
	s := New(opts)
	arn := s.CreateStream("s", 1)
	out, err := s.RegisterStreamConsumer(context.Background(), &kinesis.RegisterStreamConsumerInput{StreamARN: aws.String(arn), ConsumerName: aws.String("app")})
	require.NoError(t, err)
	return s, aws.ToString(out.Consumer.ConsumerARN)
}

const shard0 = "shardId-000000000000"

func subscribe(s *Server, consumerARN string, pos types.StartingPosition) (*kinesis.SubscribeToShardEventStream, *kinesis.SubscribeToShardOutput, error) {
	return subscribeCtx(context.Background(), s, consumerARN, pos)
}

func subscribeCtx(ctx context.Context, s *Server, consumerARN string, pos types.StartingPosition) (*kinesis.SubscribeToShardEventStream, *kinesis.SubscribeToShardOutput, error) {
	out, err := s.SubscribeToShard(ctx, &kinesis.SubscribeToShardInput{ConsumerARN: aws.String(consumerARN), ShardId: aws.String(shard0), StartingPosition: &pos})
	if err != nil {
		return nil, nil, err
	}
	return out.GetStream(), out, nil
}

var trimHorizon = types.StartingPosition{Type: types.ShardIteratorTypeTrimHorizon}

// nextEvent waits for the stream's next event; nil when it ended.
func nextEvent(t *testing.T, es *kinesis.SubscribeToShardEventStream) *types.SubscribeToShardEvent {
	t.Helper()
	ev, ok := <-es.Events()
	if !ok {
		return nil
	}
	e, isEvent := ev.(*types.SubscribeToShardEventStreamMemberSubscribeToShardEvent)
	require.True(t, isEvent, "%T", ev)
	return &e.Value
}

func dataOf(recs []types.Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, string(r.Data))
	}
	return out
}

func TestStreamConsumers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, arn := fanOut(t, Options{ConsumerCreating: time.Second})
		ctx := context.Background()
		streamARN := aws.String(StreamARN("s"))
		d, err := s.DescribeStreamConsumer(ctx, &kinesis.DescribeStreamConsumerInput{StreamARN: streamARN, ConsumerName: aws.String("app")})
		require.NoError(t, err)
		assert.Equal(t, arn, aws.ToString(d.ConsumerDescription.ConsumerARN))
		assert.Equal(t, types.ConsumerStatusCreating, d.ConsumerDescription.ConsumerStatus)
		_, _, err = subscribe(s, arn, trimHorizon)
		var inUse *types.ResourceInUseException
		assert.ErrorAs(t, err, &inUse, "CREATING")
		time.Sleep(time.Second)
		d, err = s.DescribeStreamConsumer(ctx, &kinesis.DescribeStreamConsumerInput{ConsumerARN: aws.String(arn)})
		require.NoError(t, err)
		assert.Equal(t, types.ConsumerStatusActive, d.ConsumerDescription.ConsumerStatus)

		_, err = s.RegisterStreamConsumer(ctx, &kinesis.RegisterStreamConsumerInput{StreamARN: streamARN, ConsumerName: aws.String("app")})
		assert.ErrorAs(t, err, &inUse, "registered twice")
		for i := range 19 {
			_, err = s.RegisterStreamConsumer(ctx, &kinesis.RegisterStreamConsumerInput{StreamARN: streamARN, ConsumerName: aws.String(fmt.Sprint("c", i))})
			require.NoError(t, err)
		}
		_, err = s.RegisterStreamConsumer(ctx, &kinesis.RegisterStreamConsumerInput{StreamARN: streamARN, ConsumerName: aws.String("c21")})
		var limit *types.LimitExceededException
		require.ErrorAs(t, err, &limit)
		assert.Contains(t, limit.ErrorMessage(), "registered")
		sum, err := s.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String("s")})
		require.NoError(t, err)
		assert.Equal(t, int32(20), aws.ToInt32(sum.StreamDescriptionSummary.ConsumerCount))

		es, _, err := subscribe(s, arn, trimHorizon)
		require.NoError(t, err)
		require.NotNil(t, nextEvent(t, es))
		_, err = s.DeregisterStreamConsumer(ctx, &kinesis.DeregisterStreamConsumerInput{ConsumerARN: aws.String(arn)})
		require.NoError(t, err)
		var notFound *types.ResourceNotFoundException
		assert.Nil(t, nextEvent(t, es), "a deregistered consumer's subscription ends")
		assert.ErrorAs(t, es.Err(), &notFound)
		_, err = s.DescribeStreamConsumer(ctx, &kinesis.DescribeStreamConsumerInput{StreamARN: streamARN, ConsumerName: aws.String("app")})
		assert.ErrorAs(t, err, &notFound)
		_, _, err = subscribe(s, arn, trimHorizon)
		assert.ErrorAs(t, err, &notFound, "a consumer not registered")
	})
}

func TestSubscribeToShard(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, arn := fanOut(t, Options{FanOutHeartbeat: time.Second, SubscriptionTTL: 10 * time.Second})
		var seqs []string
		for i := range 3 {
			_, seq, err := s.PutRecord("s", "k", fmt.Appendf(nil, "r%d", i))
			require.NoError(t, err)
			seqs = append(seqs, seq)
			time.Sleep(100 * time.Millisecond)
		}
		began := time.Now()
		es, out, err := subscribe(s, arn, trimHorizon)
		require.NoError(t, err)
		date, ok := awsmiddleware.GetServerTime(out.ResultMetadata)
		require.True(t, ok, "the response's Date is in the metadata")
		assert.Equal(t, began.Truncate(time.Second).UTC(), date.UTC())

		e := nextEvent(t, es)
		require.NotNil(t, e)
		assert.Equal(t, []string{"r0", "r1", "r2"}, dataOf(e.Records))
		assert.Equal(t, seqs[2], aws.ToString(e.ContinuationSequenceNumber))
		assert.Equal(t, int64(0), aws.ToInt64(e.MillisBehindLatest))

		_, _, err = subscribe(s, arn, trimHorizon)
		var inUse *types.ResourceInUseException
		assert.ErrorAs(t, err, &inUse, "a second subscription of one consumer and shard")

		time.Sleep(300 * time.Millisecond)
		_, seq, err := s.PutRecord("s", "k", []byte("r3"))
		require.NoError(t, err)
		e = nextEvent(t, es)
		assert.Equal(t, []string{"r3"}, dataOf(e.Records), "pushed as it arrives")
		assert.Equal(t, time.Duration(0), time.Since(began)-300*time.Millisecond)
		e = nextEvent(t, es)
		assert.Empty(t, e.Records, "a heartbeat")
		assert.Equal(t, seq, aws.ToString(e.ContinuationSequenceNumber))
		assert.Equal(t, 1300*time.Millisecond, time.Since(began))

		for nextEvent(t, es) != nil { // heartbeats until it expires
		}
		assert.Equal(t, 10*time.Second, time.Since(began), "the subscription ends after SubscriptionTTL")
		assert.NoError(t, es.Err())
		require.NoError(t, es.Close())

		// Again, after the continuation: nothing is repeated.
		es, _, err = subscribe(s, arn, types.StartingPosition{Type: types.ShardIteratorTypeAfterSequenceNumber, SequenceNumber: aws.String(seqs[1])})
		require.NoError(t, err)
		assert.Equal(t, []string{"r2", "r3"}, dataOf(nextEvent(t, es).Records))
		require.NoError(t, es.Close())
		synctest.Wait()

		es, _, err = subscribe(s, arn, types.StartingPosition{Type: types.ShardIteratorTypeLatest})
		require.NoError(t, err, "a closed subscription frees the shard")
		e = nextEvent(t, es)
		assert.Empty(t, e.Records)
		assert.Equal(t, seq, aws.ToString(e.ContinuationSequenceNumber), "LATEST stands after the last record")
		require.NoError(t, es.Close())

		_, _, err = subscribe(s, arn, types.StartingPosition{Type: types.ShardIteratorTypeAtTimestamp, Timestamp: aws.Time(time.Now().Add(time.Second))})
		var invalid *types.InvalidArgumentException
		assert.ErrorAs(t, err, &invalid, "a start ahead of Kinesis's clock")
		synctest.Wait()
	})
}

func TestSubscriptionEnds(t *testing.T) {
	t.Run("a closed shard's last event names its children", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s, arn := fanOut(t, Options{FanOutEventRecords: 2})
			for i := range 3 {
				_, _, err := s.PutRecord("s", "k", fmt.Appendf(nil, "r%d", i))
				require.NoError(t, err)
			}
			require.NoError(t, s.SplitShard("s", shard0, "170141183460469231731687303715884105728"))
			es, _, err := subscribe(s, arn, trimHorizon)
			require.NoError(t, err)
			e := nextEvent(t, es)
			assert.Equal(t, []string{"r0", "r1"}, dataOf(e.Records))
			assert.NotNil(t, e.ContinuationSequenceNumber)
			assert.Positive(t, aws.ToInt64(e.MillisBehindLatest)+1)
			e = nextEvent(t, es)
			assert.Equal(t, []string{"r2"}, dataOf(e.Records))
			assert.Nil(t, e.ContinuationSequenceNumber, "the last event")
			assert.Len(t, e.ChildShards, 2)
			assert.Nil(t, nextEvent(t, es))
			assert.NoError(t, es.Err())
		})
	})
	t.Run("a shard removed under a subscription, and after", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s, arn := fanOut(t, Options{})
			es, _, err := subscribe(s, arn, trimHorizon)
			require.NoError(t, err)
			require.NotNil(t, nextEvent(t, es))
			require.NoError(t, s.SplitShard("s", shard0, "170141183460469231731687303715884105728"))
			require.NoError(t, s.RemoveShard("s", shard0))
			var notFound *types.ResourceNotFoundException
			for e := nextEvent(t, es); e != nil; e = nextEvent(t, es) {
			}
			if es.Err() != nil { // or it ended the shard first
				assert.ErrorAs(t, es.Err(), &notFound)
			}
			_, _, err = subscribe(s, arn, trimHorizon)
			assert.ErrorAs(t, err, &notFound, "a shard that left the stream")
		})
	})
	t.Run("the caller's ctx ends it", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s, arn := fanOut(t, Options{})
			ctx, cancel := context.WithCancel(context.Background())
			es, _, err := subscribeCtx(ctx, s, arn, trimHorizon)
			require.NoError(t, err)
			require.NotNil(t, nextEvent(t, es))
			cancel()
			assert.Nil(t, nextEvent(t, es))
			assert.True(t, errors.Is(es.Err(), context.Canceled))
		})
	})
	t.Run("a stream deleted", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s, arn := fanOut(t, Options{})
			es, _, err := subscribe(s, arn, trimHorizon)
			require.NoError(t, err)
			require.NotNil(t, nextEvent(t, es))
			require.NoError(t, s.DeleteStream("s"))
			assert.Nil(t, nextEvent(t, es))
			var notFound *types.ResourceNotFoundException
			assert.ErrorAs(t, es.Err(), &notFound)
		})
	})
}

// The responses kcl reads Kinesis's clock from hold their Date, in whole
// seconds, as the SDK records it.
func TestResponsesHoldTheirDate(t *testing.T) {
	s, clock := newServer(t, Options{})
	s.CreateStream("s", 1)
	clock.Advance(1500 * time.Millisecond)
	ctx := context.Background()
	calls := map[string]func() (middleware.Metadata, error){
		OpGetShardIterator: func() (middleware.Metadata, error) {
			out, err := s.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String("s"), ShardId: aws.String(shard0), ShardIteratorType: types.ShardIteratorTypeLatest})
			if err != nil {
				return middleware.Metadata{}, err
			}
			return out.ResultMetadata, nil
		},
		OpListShards: func() (middleware.Metadata, error) {
			out, err := s.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String("s")})
			if err != nil {
				return middleware.Metadata{}, err
			}
			return out.ResultMetadata, nil
		},
		OpDescribeStreamSummary: func() (middleware.Metadata, error) {
			out, err := s.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String("s")})
			if err != nil {
				return middleware.Metadata{}, err
			}
			return out.ResultMetadata, nil
		},
	}
	for op, call := range calls {
		t.Run(op, func(t *testing.T) {
			md, err := call()
			require.NoError(t, err)
			date, ok := awsmiddleware.GetServerTime(md)
			require.True(t, ok)
			assert.Equal(t, epoch.Add(time.Second), date.UTC(), "whole seconds, as HTTP's Date")
		})
	}
}
