package kcl

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/schemas"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go/transport/http/protocol/awsjson"
)

// Enhanced fan-out: each leased shard is read with SubscribeToShard, an
// HTTP/2 event stream that pushes records as they arrive, with 2 MB/s per
// shard for this consumer alone. A subscription lasts at most 5 minutes;
// kcl resubscribes from the last continuation sequence number before then.
// Ack, checkpoint, lease and shutdown semantics are those of polling.
const (
	// fanOutStall: a subscription with no event for this long is dropped and
	// renewed. AWS sends an event at least every 5 seconds.
	defaultFanOutStall = 30 * time.Second
	// defaultResubscribe: subscriptions are renewed before AWS ends them at 5
	// minutes.
	defaultResubscribe = 4*time.Minute + 30*time.Second
)

// registerConsumer registers the stream consumer for fan-out on stream s if
// it is missing (ConsumerName, the same on every stream), waits until it is
// ACTIVE, and records its ARN. A consumer Options give by ARN is only
// described (describeGivenConsumer). It runs at start (run's goroutine),
// before a stream created again is read (switchIncarnation), and on a
// reader that found the consumer deregistered (renewConsumer, holding
// s.renewing).
func (c *Consumer) registerConsumer(ctx context.Context, st stage, s *kstream) error {
	if s.givenConsumer != "" {
		return c.describeGivenConsumer(ctx, st, s)
	}
	streamARN := s.arn // from describeStreams
	name := c.opts.ConsumerName
	for {
		out, err := retry(ctx, st, &c.counters.retryCounters, s.log, "DescribeStreamConsumer", isNotFound, func() (*kinesis.DescribeStreamConsumerOutput, error) {
			return s.kinesis.DescribeStreamConsumer(ctx, &kinesis.DescribeStreamConsumerInput{StreamARN: &streamARN, ConsumerName: &name})
		})
		switch {
		case isNotFound(err):
			_, err = retry(ctx, st, &c.counters.retryCounters, s.log, "RegisterStreamConsumer", func(err error) bool { return isInUse(err) || isConsumerLimit(err) }, func() (*kinesis.RegisterStreamConsumerOutput, error) {
				return s.kinesis.RegisterStreamConsumer(ctx, &kinesis.RegisterStreamConsumerInput{StreamARN: &streamARN, ConsumerName: &name})
			})
			if isConsumerLimit(err) {
				return fmt.Errorf("stream %q: registering consumer %q: the stream has as many registered consumers as Kinesis allows (20, or 50 on an On-demand Advantage stream); deregister one, or read by polling (EnhancedFanOut false): %w", s.label, name, err)
			}
			if err != nil && !isInUse(err) { // in use: another worker registered it first
				return fmt.Errorf("stream %q: registering consumer %q: %w", s.label, name, err)
			}
			s.log.Info("kcl: stream consumer registered", "consumer", name, "stream_arn", streamARN)
			continue
		case err != nil:
			return fmt.Errorf("stream %q: consumer %q: %w", s.label, name, err)
		}
		d := out.ConsumerDescription
		switch d.ConsumerStatus {
		case types.ConsumerStatusActive:
			arn := aws.ToString(d.ConsumerARN)
			s.consumerARN.Store(&arn)
			return nil
		case types.ConsumerStatusDeleting:
			s.log.Warn("kcl: stream consumer is being deleted; waiting to register it again", "consumer", name, "stream_arn", streamARN)
		}
		if !sleep(ctx, 200*time.Millisecond) {
			return ctx.Err()
		}
	}
}

// renewConsumer answers a subscription refused with ResourceNotFound under
// consumer ARN used. When that is no longer the stream consumer registered
// under ConsumerName (deregistered by hand, or replaced by infrastructure
// code), it registers the consumer again if it is missing, waits until it
// is ACTIVE, and reports true: the shard is subscribed again under the new
// ARN, from where it stood. One reader does it for every shard of s (it
// holds s.renewing, waiting for it with ctx); the others then find the new
// ARN. It reports false
// when the consumer is as used: what was not found is the shard or the
// stream. A consumer Options give by ARN is never registered again: its
// loss is an error naming it (errGivenConsumer), which ends the consumer.
// It runs on a reader's goroutine.
func (c *Consumer) renewConsumer(ctx context.Context, s *kstream, used string) (bool, error) {
	select {
	case s.renewing <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	defer s.renewing.Unlock()
	if s.consumer() != used {
		return true, nil // another reader registered it again
	}
	in := &kinesis.DescribeStreamConsumerInput{StreamARN: &s.arn, ConsumerName: &c.opts.ConsumerName}
	if s.givenConsumer != "" {
		in = &kinesis.DescribeStreamConsumerInput{ConsumerARN: &used}
	}
	out, err := retry(ctx, running, &c.counters.retryCounters, s.log, "DescribeStreamConsumer", isNotFound, func() (*kinesis.DescribeStreamConsumerOutput, error) {
		return s.kinesis.DescribeStreamConsumer(ctx, in)
	})
	switch {
	case err == nil && out.ConsumerDescription.ConsumerStatus == types.ConsumerStatusActive && aws.ToString(out.ConsumerDescription.ConsumerARN) == used:
		return false, nil
	case err != nil && !isNotFound(err):
		return false, err
	}
	// The consumer went with its stream if the stream was deleted, or
	// created again: the reader waits for it, or switches to the new one
	// (shardReader.failed), which gets a consumer of its own.
	sum, err := c.describe(ctx, running, s)
	switch {
	case isNotFound(err):
		return false, nil
	case err != nil:
		return false, err
	case !createdAt(sum).Equal(s.created):
		return false, nil
	case s.givenConsumer != "":
		return false, fmt.Errorf("stream %q: consumer %s (Options.%s) was deregistered while running; register one and restart with its ARN: %w",
			s.label, used, c.opts.consumerField(), errGivenConsumer)
	}
	s.log.Warn("kcl: stream consumer deregistered while running; registering it again", "consumer", c.opts.ConsumerName, "old_consumer_arn", used)
	if err := c.registerConsumer(ctx, running, s); err != nil {
		if isNotFound(err) {
			return false, nil // the stream itself is gone: the reader waits for it (shardReader.failed)
		}
		return false, err
	}
	s.log.Info("kcl: stream consumer registered again; shards subscribed again", "consumer_arn", s.consumer())
	return true, nil
}

// ownEventStreamCodec gives a subscription a protocol instance of its own.
// The SDK's awsjson protocol keeps one event-stream codec per client whose
// scratch fields every open stream writes without synchronisation
// (smithy-go issue 714): harmless today, but a data race between
// subscriptions. A protocol the caller customised is left as it is.
func ownEventStreamCodec(o *kinesis.Options) {
	if _, isDefault := o.Protocol.(*awsjson.Protocol); isDefault {
		o.Protocol = awsjson.New11(schemas.Kinesis_20131202)
	}
}

// isConsumerLimit reports whether err is Kinesis refusing to register one
// more consumer on a stream that has as many as it allows (20, or 50 on an
// On-demand Advantage stream). The code, LimitExceededException, is also
// the one for calls made too fast and for more than 5 consumers being
// created at once, both of which pass and are retried: only the message
// tells them apart ("registered", as kinesis-local says it; one that does
// not say so is retried, as before).
func isConsumerLimit(err error) bool {
	var limit *types.LimitExceededException
	return errors.As(err, &limit) && strings.Contains(strings.ToLower(limit.ErrorMessage()), "registered")
}

func isNotFound(err error) bool {
	var nf *types.ResourceNotFoundException
	return errors.As(err, &nf)
}

func isInUse(err error) bool {
	var inUse *types.ResourceInUseException
	return errors.As(err, &inUse)
}

// subscribe reads the shard with enhanced fan-out until ctx ends
// or the shard ends. Dropped, stalled and expiring subscriptions are renewed
// from the last continuation sequence number; errors are retried with backoff
// (ResourceInUse while a previous subscription closes, LimitExceeded), and only
// those no retry can fix end the consumer.
func (r *shardReader) subscribe(ctx context.Context) error {
	env, h, log := r.env, r.h, r.log
	start, _ := h.window.state()
	var skip checkpoint
	if !start.isSentinel() {
		skip = start
	}
	continuation := "" // where the next subscription starts, after this
	b := newBackOff()
	for {
		pos := r.startingPosition(start, continuation)
		// Each subscription has its own context, cancelled when it ends, so
		// the HTTP/2 stream is torn down and the server frees it.
		subCtx, cancel := context.WithCancel(ctx)
		consumer := h.stream.consumer()
		out, err := retry(subCtx, running, &env.counters.retryCounters, log, "SubscribeToShard", nil, func() (*kinesis.SubscribeToShardOutput, error) {
			out, err := h.stream.kinesis.SubscribeToShard(subCtx, &kinesis.SubscribeToShardInput{ConsumerARN: &consumer, ShardId: &h.shard, StartingPosition: &pos}, ownEventStreamCodec)
			if pos.Type == types.ShardIteratorTypeAtTimestamp && startAhead(err) {
				return nil, errStartAhead{err} // waited out, as polling does (shardIterator)
			}
			return out, err
		})
		if err != nil {
			cancel()
			if renewed, rerr := r.consumerRenewed(ctx, consumer, err); renewed || rerr != nil {
				if rerr != nil {
					return r.readError(ctx, rerr)
				}
				continue
			}
			return r.failed(ctx, err)
		}
		r.noteOpen(pos, out.ResultMetadata)
		ended, children, err := r.readSubscription(ctx, out.GetStream(), &skip, &continuation)
		cancel()
		if ended {
			return r.endShard(ctx, children)
		}
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			if renewed, rerr := r.consumerRenewed(ctx, consumer, err); renewed || rerr != nil {
				if rerr != nil {
					return r.readError(ctx, rerr)
				}
				continue
			}
			if startAhead(err) {
				err = errStartAhead{err}
			}
			if isNotFound(err) {
				// The shard left the stream while subscribed (retention), or
				// the stream went: as when the subscription itself is
				// refused.
				return r.failed(ctx, err)
			}
			if isFatal(err) {
				return r.readError(ctx, err)
			}
			wait := b.NextBackOff()
			log.Warn("kcl: subscription ended; resubscribing", "error", err, "code", errorCode(err), "wait", wait)
			if !sleep(ctx, wait) {
				return nil
			}
			continue
		}
		b.Reset()
	}
}

// consumerRenewed reports whether err, ResourceNotFound from a
// subscription under consumer, was the consumer deregistered, now
// registered again (renewConsumer): the shard is to be subscribed again.
func (r *shardReader) consumerRenewed(ctx context.Context, consumer string, err error) (bool, error) {
	if !isNotFound(err) {
		return false, nil
	}
	return r.env.renewConsumer(ctx, r.h.stream, consumer)
}

// readSubscription delivers the records of one subscription until it ends,
// stalls, is due for renewal, or ctx ends. ended reports the shard's end.
func (r *shardReader) readSubscription(ctx context.Context, stream *kinesis.SubscribeToShardEventStream, skip *checkpoint, continuation *string) (ended bool, children []types.ChildShard, err error) {
	defer stream.Close()
	log, opts := r.log, r.env.opts
	renew := time.NewTimer(opts.resubscribeAfter)
	defer renew.Stop()
	stall := time.NewTimer(opts.fanOutStall)
	defer stall.Stop()
	for {
		select {
		case <-ctx.Done():
			return false, nil, nil
		case <-renew.C:
			log.Debug("kcl: renewing subscription")
			return false, nil, nil
		case <-stall.C:
			return false, nil, fmt.Errorf("no event for %v", opts.fanOutStall)
		case ev, ok := <-stream.Events():
			if !ok {
				return false, nil, stream.Err()
			}
			// Handing the records over (to a slow receiver, or waiting for
			// room under MaxUnackedPerShard) is no silence of the server's.
			stall.Stop()
			if done, ended, children := r.handleEvent(ctx, ev, skip, continuation); done {
				return ended, children, nil
			}
			stall.Reset(opts.fanOutStall)
		}
	}
}

// handleEvent delivers the records of one subscription event and notes its
// continuation. done reports that the subscription is over: ctx ended, the
// lease is gone, or the shard ended (ended, with its children).
func (r *shardReader) handleEvent(ctx context.Context, ev types.SubscribeToShardEventStream, skip *checkpoint, continuation *string) (done, ended bool, children []types.ChildShard) {
	h := r.h
	e, ok := ev.(*types.SubscribeToShardEventStreamMemberSubscribeToShardEvent)
	if !ok {
		return false, false, nil
	}
	h.counters.millisBehind.Store(aws.ToInt64(e.Value.MillisBehindLatest))
	r.learnRange(ctx, e.Value.Records)
	if !r.deliver(ctx, newPageRecords(r, e.Value.Records, skip)) {
		return true, false, nil
	}
	if len(e.Value.ChildShards) > 0 || e.Value.ContinuationSequenceNumber == nil {
		return true, true, e.Value.ChildShards // the shard's last event
	}
	*continuation = *e.Value.ContinuationSequenceNumber
	// A server that never sends the last event (kinesis-local) still ends
	// the shard: caught up on a shard the shard list says is closed,
	// GetRecords confirms nothing follows.
	if len(e.Value.Records) == 0 && aws.ToInt64(e.Value.MillisBehindLatest) == 0 && h.stream.closed(h.shard) {
		if ended, children := r.confirmShardEnd(ctx, *continuation); ended {
			return true, true, children
		}
	}
	return false, false, nil
}

// confirmShardEnd reads the shard by GetRecords after the continuation
// sequence number: it has ended when nothing follows and no next iterator is
// given. The children come with that answer.
func (r *shardReader) confirmShardEnd(ctx context.Context, after string) (bool, []types.ChildShard) {
	start, _ := r.h.window.state()
	iterator, err := r.shardIterator(ctx, start, after)
	for i := 0; err == nil && i < 3; i++ {
		var out *kinesis.GetRecordsOutput
		out, err = r.h.stream.kinesis.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iterator, Limit: aws.Int32(1), StreamARN: r.h.stream.arnIfGiven()}, leanGetRecords)
		switch {
		case err != nil:
		case len(out.Records) > 0:
			return false, nil // more to come by the subscription
		case out.NextShardIterator == nil:
			return true, out.ChildShards
		default:
			iterator = out.NextShardIterator
		}
	}
	if err != nil && ctx.Err() == nil {
		r.log.Warn("kcl: could not confirm the end of a closed shard; still subscribed", "error", err)
	}
	return false, nil
}
