package kcl

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/stretchr/testify/require"
)

// With fan-out, a stream deleted while running is waited for, not fatal
// (doc.go): a subscription's ResourceNotFound makes the reader look for its
// stream consumer (renewConsumer), which cannot be registered again on a
// deleted stream; that is no error, and the reader waits for the stream
// (found by a review: the consumer ended). deletedStream answers as AWS
// does for a deleted stream; on kinesis-local.
func TestFanOutStreamDeletedWhileRunningIsWaitedFor(t *testing.T) {
	noLeak(t)
	ctx := context.Background()
	f := newFixture(t, emu.kinesisLocal, 1)
	first := f.putN(10, 2, "old-")
	opts := fanOutOptions(f)
	gone := &deletedStream{KinesisAPI: opts.Kinesis}
	opts.Kinesis = gone
	c, err := New(opts)
	require.NoError(t, err)
	c.resubscribeAfter = 2500 * time.Millisecond // AWS ends a deleted stream's subscriptions; kinesis-local keeps them
	cctx, cancel := context.WithCancel(ctx)
	s := &session{t: t, c: c, ch: c.Consume(cctx), cancel: cancel}
	t.Cleanup(func() { s.stop(nil) })
	s.receiveAll(putData(first), 30*time.Second)

	gone.deleted.Store(true) // the stream is deleted, for a while
	select {
	case r, ok := <-s.ch:
		if !ok {
			t.Fatalf("the consumer ended while its stream was deleted: Err = %v", s.c.Err())
		}
		t.Fatalf("unexpected record %q", r.Data)
	case <-time.After(8 * time.Second):
	}
	require.NoError(t, s.stop(ackAll), "Err after a stop while the stream was deleted")
}

// deletedStream answers every call on the stream with ResourceNotFound while
// deleted is set, as AWS answers for a deleted stream.
type deletedStream struct {
	KinesisAPI
	deleted atomic.Bool
}

func (k *deletedStream) notFound() error {
	return &types.ResourceNotFoundException{Message: aws.String("Stream orders under account 000000000000 not found. (test: deleted)")}
}

func (k *deletedStream) ListShards(ctx context.Context, in *kinesis.ListShardsInput, o ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error) {
	if k.deleted.Load() {
		return nil, k.notFound()
	}
	return k.KinesisAPI.ListShards(ctx, in, o...)
}

func (k *deletedStream) DescribeStreamSummary(ctx context.Context, in *kinesis.DescribeStreamSummaryInput, o ...func(*kinesis.Options)) (*kinesis.DescribeStreamSummaryOutput, error) {
	if k.deleted.Load() {
		return nil, k.notFound()
	}
	return k.KinesisAPI.DescribeStreamSummary(ctx, in, o...)
}

func (k *deletedStream) GetShardIterator(ctx context.Context, in *kinesis.GetShardIteratorInput, o ...func(*kinesis.Options)) (*kinesis.GetShardIteratorOutput, error) {
	if k.deleted.Load() {
		return nil, k.notFound()
	}
	return k.KinesisAPI.GetShardIterator(ctx, in, o...)
}

func (k *deletedStream) DescribeStreamConsumer(ctx context.Context, in *kinesis.DescribeStreamConsumerInput, o ...func(*kinesis.Options)) (*kinesis.DescribeStreamConsumerOutput, error) {
	if k.deleted.Load() {
		return nil, k.notFound()
	}
	return k.KinesisAPI.DescribeStreamConsumer(ctx, in, o...)
}

func (k *deletedStream) RegisterStreamConsumer(ctx context.Context, in *kinesis.RegisterStreamConsumerInput, o ...func(*kinesis.Options)) (*kinesis.RegisterStreamConsumerOutput, error) {
	if k.deleted.Load() {
		return nil, k.notFound()
	}
	return k.KinesisAPI.RegisterStreamConsumer(ctx, in, o...)
}

func (k *deletedStream) SubscribeToShard(ctx context.Context, in *kinesis.SubscribeToShardInput, o ...func(*kinesis.Options)) (*kinesis.SubscribeToShardOutput, error) {
	if k.deleted.Load() {
		return nil, k.notFound()
	}
	return k.KinesisAPI.SubscribeToShard(ctx, in, o...)
}
