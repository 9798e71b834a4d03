package kinesisfake

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// Enhanced fan-out: stream consumers and their subscriptions.
//
// A subscription pushes events as AWS does: one at once, then one as soon
// as records arrive, and an empty one after FanOutHeartbeat of silence.
// Each event carries MillisBehindLatest and the ContinuationSequenceNumber
// to subscribe again after. A closed shard's last event carries its
// ChildShards and no continuation, and ends the subscription. A
// subscription also ends after SubscriptionTTL (AWS: 5 minutes), when its
// caller's ctx ends or it is closed, and with ResourceNotFoundException when
// its shard, stream or consumer goes.
//
// A subscription is the one goroutine the server runs: it ends with the
// subscription.

// Defaults of the fan-out Options, as AWS has them.
const (
	DefaultSubscriptionTTL = 5 * time.Minute
	DefaultFanOutHeartbeat = 5 * time.Second
	maxConsumers           = 20
)

// OpDeregisterStreamConsumer names DeregisterStreamConsumer for Calls and
// FaultFunc.
const OpDeregisterStreamConsumer = "DeregisterStreamConsumer"

// streamConsumer is a registered stream consumer; guarded by Server.mu.
type streamConsumer struct {
	name, arn     string
	stream        string    // its stream's name
	streamCreated time.Time // its stream's incarnation
	created       time.Time
	subs          map[string]*subscription // the live subscriptions, by shard ID
}

func (c *streamConsumer) describe(creating time.Duration, now time.Time) *types.ConsumerDescription {
	status := types.ConsumerStatusActive
	if now.Before(c.created.Add(creating)) {
		status = types.ConsumerStatusCreating
	}
	return &types.ConsumerDescription{
		ConsumerName: aws.String(c.name), ConsumerARN: aws.String(c.arn), ConsumerStatus: status,
		ConsumerCreationTimestamp: aws.Time(c.created), StreamARN: aws.String(StreamARN(c.stream)),
	}
}

func (c *streamConsumer) active(creating time.Duration, now time.Time) bool {
	return !now.Before(c.created.Add(creating))
}

// consumerByName finds a consumer of stream st. s.mu is held.
func (s *Server) consumerByName(st *stream, name string) *streamConsumer {
	for _, c := range s.consumers {
		if c.stream == st.name && c.streamCreated.Equal(st.created) && c.name == name {
			return c
		}
	}
	return nil
}

// dropConsumers ends the consumers of st (its deletion), or the one c when
// set, with their subscriptions. s.mu is held.
func (s *Server) dropConsumers(st *stream, c *streamConsumer) {
	for arn, x := range s.consumers {
		if c == x || c == nil && x.stream == st.name && x.streamCreated.Equal(st.created) {
			delete(s.consumers, arn)
		}
	}
	s.notifyLocked()
}

func consumerNotFound(what string) error {
	return &types.ResourceNotFoundException{Message: aws.String(fmt.Sprintf("Consumer %s under account %s not found.", what, Account))}
}

// RegisterStreamConsumer registers a consumer on the stream named by
// StreamARN. It is CREATING for Options.ConsumerCreating, then ACTIVE. A
// name already registered fails with *types.ResourceInUseException, a 21st
// consumer with *types.LimitExceededException, as AWS words it.
func (s *Server) RegisterStreamConsumer(ctx context.Context, in *kinesis.RegisterStreamConsumerInput, _ ...func(*kinesis.Options)) (*kinesis.RegisterStreamConsumerOutput, error) {
	arn := aws.ToString(in.StreamARN)
	return call(ctx, s, OpRegisterStreamConsumer, nameOfARN(arn), "", func(now time.Time, _ bool) (*kinesis.RegisterStreamConsumerOutput, error) {
		if arn == "" {
			return nil, invalidArgument("StreamARN is required")
		}
		st, err := s.lookup("", arn, now)
		if err != nil {
			return nil, err
		}
		name := aws.ToString(in.ConsumerName)
		if !streamNameRE.MatchString(name) {
			return nil, invalidArgument("invalid ConsumerName %q", name)
		}
		if s.consumerByName(st, name) != nil {
			return nil, &types.ResourceInUseException{Message: aws.String(fmt.Sprintf("Consumer %s under stream %s already exists for account %s.", name, st.name, Account))}
		}
		n := 0
		for _, c := range s.consumers {
			if c.stream == st.name && c.streamCreated.Equal(st.created) {
				n++
			}
		}
		if n >= maxConsumers {
			return nil, &types.LimitExceededException{Message: aws.String(fmt.Sprintf("Only %d consumers can be registered to a stream at once.", maxConsumers))}
		}
		c := &streamConsumer{name: name, arn: fmt.Sprintf("%s/consumer/%s:%d", st.arn, name, now.Unix()), stream: st.name, streamCreated: st.created, created: now, subs: map[string]*subscription{}}
		s.consumers[c.arn] = c
		return &kinesis.RegisterStreamConsumerOutput{Consumer: &types.Consumer{
			ConsumerName: aws.String(name), ConsumerARN: aws.String(c.arn), ConsumerCreationTimestamp: aws.Time(now),
			ConsumerStatus: c.describe(s.consumerCreating, now).ConsumerStatus,
		}}, nil
	})
}

// DescribeStreamConsumer describes a consumer named by ConsumerARN, or by
// StreamARN and ConsumerName; *types.ResourceNotFoundException if none.
func (s *Server) DescribeStreamConsumer(ctx context.Context, in *kinesis.DescribeStreamConsumerInput, _ ...func(*kinesis.Options)) (*kinesis.DescribeStreamConsumerOutput, error) {
	return call(ctx, s, OpDescribeStreamConsumer, nameOfARN(aws.ToString(in.StreamARN)), "", func(now time.Time, _ bool) (*kinesis.DescribeStreamConsumerOutput, error) {
		c, err := s.findConsumer(aws.ToString(in.ConsumerARN), aws.ToString(in.StreamARN), aws.ToString(in.ConsumerName), now)
		if err != nil {
			return nil, err
		}
		return &kinesis.DescribeStreamConsumerOutput{ConsumerDescription: c.describe(s.consumerCreating, now)}, nil
	})
}

// DeregisterStreamConsumer deregisters a consumer at once (AWS keeps it
// DELETING for a while first); its subscriptions end with
// *types.ResourceNotFoundException.
func (s *Server) DeregisterStreamConsumer(ctx context.Context, in *kinesis.DeregisterStreamConsumerInput, _ ...func(*kinesis.Options)) (*kinesis.DeregisterStreamConsumerOutput, error) {
	return call(ctx, s, OpDeregisterStreamConsumer, nameOfARN(aws.ToString(in.StreamARN)), "", func(now time.Time, _ bool) (*kinesis.DeregisterStreamConsumerOutput, error) {
		c, err := s.findConsumer(aws.ToString(in.ConsumerARN), aws.ToString(in.StreamARN), aws.ToString(in.ConsumerName), now)
		if err != nil {
			return nil, err
		}
		s.dropConsumers(nil, c)
		return &kinesis.DeregisterStreamConsumerOutput{}, nil
	})
}

// findConsumer finds a consumer by ARN, or by stream ARN and name. s.mu is
// held.
func (s *Server) findConsumer(arn, streamARN, name string, now time.Time) (*streamConsumer, error) {
	if arn != "" {
		if c := s.consumers[arn]; c != nil {
			return c, nil
		}
		return nil, consumerNotFound(arn)
	}
	if streamARN == "" || name == "" {
		return nil, invalidArgument("either ConsumerARN, or StreamARN and ConsumerName, must be provided")
	}
	st, err := s.lookup("", streamARN, now)
	if err != nil {
		return nil, err
	}
	if c := s.consumerByName(st, name); c != nil {
		return c, nil
	}
	return nil, consumerNotFound(name)
}

// SubscribeToShard opens a subscription of the consumer ConsumerARN to a
// shard at StartingPosition (as GetShardIterator opens it, with the same
// errors); its events come from the output's GetStream. It fails with
// *types.ResourceNotFoundException when the consumer, the stream or the
// shard is not there, and with *types.ResourceInUseException while the
// consumer is CREATING or already has a live subscription to the shard.
// The result's metadata holds the response's Date, in whole seconds, as the
// SDK records it.
func (s *Server) SubscribeToShard(ctx context.Context, in *kinesis.SubscribeToShardInput, _ ...func(*kinesis.Options)) (*kinesis.SubscribeToShardOutput, error) {
	shardID, consumerARN := aws.ToString(in.ShardId), aws.ToString(in.ConsumerARN)
	label, _, _ := strings.Cut(nameOfARN(consumerARN), "/consumer/")
	return call(ctx, s, OpSubscribeToShard, label, shardID, func(now time.Time, _ bool) (*kinesis.SubscribeToShardOutput, error) {
		c := s.consumers[consumerARN]
		if c == nil {
			return nil, consumerNotFound(consumerARN)
		}
		st, err := s.lookup(c.stream, "", now)
		if err != nil {
			return nil, err
		}
		if !st.created.Equal(c.streamCreated) {
			return nil, consumerNotFound(consumerARN)
		}
		if !c.active(s.consumerCreating, now) {
			return nil, &types.ResourceInUseException{Message: aws.String(fmt.Sprintf("Consumer %s is not ACTIVE.", consumerARN))}
		}
		sh := st.byID[shardID]
		if sh == nil {
			return nil, shardNotFound(st, shardID)
		}
		if in.StartingPosition == nil {
			return nil, invalidArgument("StartingPosition is required")
		}
		p := in.StartingPosition
		pos, err := sh.position(&kinesis.GetShardIteratorInput{ShardIteratorType: p.Type, StartingSequenceNumber: p.SequenceNumber, Timestamp: p.Timestamp}, now)
		if err != nil {
			return nil, err
		}
		if c.subs[shardID] != nil {
			return nil, &types.ResourceInUseException{Message: aws.String(fmt.Sprintf("Another active subscription exists for this consumer: %s", consumerARN))}
		}
		sub := &subscription{
			srv: s, c: c, stream: st.name, created: st.created, shardID: shardID, pos: pos,
			events: make(chan types.SubscribeToShardEventStream), closed: make(chan struct{}),
		}
		if i := pos - sh.trimmed - 1; i >= 0 && i < len(sh.records) {
			sub.cont = sh.records[i].seq
		} else {
			sub.cont = sh.startSeq // nothing kept before pos: after the start is the trim horizon
		}
		c.subs[shardID] = sub
		go sub.run(ctx, s.subscriptionTTL)
		es := kinesis.NewSubscribeToShardEventStream(func(es *kinesis.SubscribeToShardEventStream) { es.Reader = sub })
		return subscribeOutput(es, responseMetadata(now))
	})
}

// subscribeOutput returns an output whose GetStream is es. The SDK sets
// the stream only when it reads an HTTP response, in a field it does not
// export: it is set here by reflection (TestSubscribeToShard fails if an
// SDK version renames it).
func subscribeOutput(es *kinesis.SubscribeToShardEventStream, md middleware.Metadata) (*kinesis.SubscribeToShardOutput, error) {
	out := &kinesis.SubscribeToShardOutput{ResultMetadata: md}
	f := reflect.ValueOf(out).Elem().FieldByName("eventStream")
	if !f.IsValid() || f.Type() != reflect.TypeOf(es) {
		_ = es.Close()
		return nil, errors.New("kinesisfake: this SDK version's SubscribeToShardOutput has no eventStream field to set")
	}
	reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem().Set(reflect.ValueOf(es))
	return out, nil
}

// responseMetadata is the metadata the SDK records for a response sent at
// now: the Date header, in whole seconds (awsmiddleware.GetServerTime
// reads it), through the SDK's own middleware.
func responseMetadata(now time.Time) middleware.Metadata {
	resp := &smithyhttp.Response{Response: &http.Response{Header: http.Header{"Date": []string{now.UTC().Format(http.TimeFormat)}}}}
	_, md, _ := awsmiddleware.RecordResponseTiming{DisableClockSkewCorrection: true}.HandleDeserialize(context.Background(), middleware.DeserializeInput{},
		middleware.DeserializeHandlerFunc(func(context.Context, middleware.DeserializeInput) (middleware.DeserializeOutput, middleware.Metadata, error) {
			return middleware.DeserializeOutput{RawResponse: resp}, middleware.Metadata{}, nil
		}))
	return md
}

// subscription is one SubscribeToShard event stream: the
// kinesis.SubscribeToShardEventStreamReader its caller reads, and the
// goroutine (run) that pushes its events.
type subscription struct {
	srv             *Server         // immutable
	c               *streamConsumer // immutable
	stream, shardID string          // immutable
	created         time.Time       // the stream's incarnation; immutable
	events          chan types.SubscribeToShardEventStream
	closed          chan struct{} // closed by Close
	closeOnce       sync.Once

	pos  int    // the next record to send; only touched by run (under Server.mu)
	cont uint64 // the continuation: the last record before pos; likewise

	mu  sync.Mutex
	err error // why the stream ended; set before events is closed
}

// Events returns the channel of events; it is closed when the subscription
// ends (Err then says why, nil for an expiry or a shard's end).
func (sub *subscription) Events() <-chan types.SubscribeToShardEventStream { return sub.events }

// Close ends the subscription, as the SDK's stream Close does.
func (sub *subscription) Close() error {
	sub.closeOnce.Do(func() { close(sub.closed) })
	return nil
}

// Err returns why the subscription ended, once Events is closed.
func (sub *subscription) Err() error {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	return sub.err
}

// run pushes events until the subscription ends.
func (sub *subscription) run(ctx context.Context, ttl time.Duration) {
	s := sub.srv
	expire := time.NewTimer(ttl)
	defer expire.Stop()
	var err error
	defer func() {
		s.mu.Lock()
		if sub.c.subs[sub.shardID] == sub {
			delete(sub.c.subs, sub.shardID)
		}
		s.mu.Unlock()
		sub.mu.Lock()
		sub.err = err
		sub.mu.Unlock()
		close(sub.events)
	}()
	heartbeat := time.NewTimer(0) // the first event at once
	defer heartbeat.Stop()
	beat := false
	for {
		ev, last, changed, evErr := sub.next(beat)
		if evErr != nil {
			err = evErr
			return
		}
		if ev != nil {
			select {
			case sub.events <- ev:
			case <-sub.closed:
				return
			case <-ctx.Done():
				err = ctx.Err()
				return
			case <-expire.C:
				return
			}
			if last {
				return
			}
			heartbeat.Reset(s.fanOutHeartbeat)
			beat = false
			continue
		}
		select {
		case <-changed:
		case <-heartbeat.C:
			beat = true
		case <-sub.closed:
			return
		case <-ctx.Done():
			err = ctx.Err()
			return
		case <-expire.C:
			return
		}
	}
}

// next returns the subscription's next event: the records after pos, or
// an empty event when beat says one is due; nil when nothing is to be sent
// (changed is closed when the server next changes). last reports a closed
// shard's last event.
func (sub *subscription) next(beat bool) (ev types.SubscribeToShardEventStream, last bool, changed <-chan struct{}, err error) {
	s := sub.srv
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	changed = s.changed
	if s.consumers[sub.c.arn] != sub.c {
		return nil, false, nil, consumerNotFound(sub.c.arn)
	}
	st, err := s.lookup(sub.stream, "", now)
	if err != nil {
		return nil, false, nil, err
	}
	if !st.created.Equal(sub.created) {
		return nil, false, nil, consumerNotFound(sub.c.arn)
	}
	sh := st.byID[sub.shardID]
	if sh == nil {
		return nil, false, nil, shardNotFound(st, sub.shardID)
	}
	i := max(sub.pos, sh.trimmed) - sh.trimmed
	j := min(len(sh.records), i+s.fanOutEventRecords)
	atEnd := j == len(sh.records)
	if i == j && !beat && !(atEnd && !sh.open()) {
		return nil, false, changed, nil
	}
	e := types.SubscribeToShardEvent{Records: make([]types.Record, 0, j-i), MillisBehindLatest: aws.Int64(0)}
	for _, r := range sh.records[i:j] {
		r.reads++
		e.Records = append(e.Records, r.toSDK())
		sub.cont = r.seq
	}
	sub.pos = sh.trimmed + j
	if !atEnd {
		e.MillisBehindLatest = aws.Int64(max(1, now.Sub(sh.records[j].arrival).Milliseconds()))
	}
	if atEnd && !sh.open() {
		e.ChildShards = cloneChildren(sh.children)
		last = true
	} else {
		e.ContinuationSequenceNumber = aws.String(formatSeq(sub.cont))
	}
	return &types.SubscribeToShardEventStreamMemberSubscribeToShardEvent{Value: e}, last, changed, nil
}

// notifyLocked wakes the subscriptions waiting for a change. s.mu is held.
func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}
