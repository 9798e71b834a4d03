package kcl

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go/eventstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// withInitialResponse adds to each SubscribeToShard response the
// initial-response event that AWS sends first and kinesis-local never does,
// at the HTTP level: the client, and kcl's own event-stream codec for each
// subscription (ownEventStreamCodec), then read the stream exactly as they
// read AWS's, initial-response included.
type withInitialResponse struct{ http.RoundTripper }

func (t withInitialResponse) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.RoundTripper.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusOK || req.Header.Get("X-Amz-Target") != "Kinesis_20131202.SubscribeToShard" {
		return resp, err
	}
	var msg eventstream.Message
	msg.Headers.Set(eventstream.MessageTypeHeader, eventstream.StringValue(eventstream.EventMessageType))
	msg.Headers.Set(eventstream.EventTypeHeader, eventstream.StringValue("initial-response"))
	msg.Headers.Set(eventstream.ContentTypeHeader, eventstream.StringValue("application/json"))
	msg.Payload = []byte("{}")
	var first bytes.Buffer
	if err := eventstream.NewEncoder().Encode(&first, msg); err != nil {
		resp.Body.Close()
		return nil, err
	}
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(&first, resp.Body), resp.Body}
	return resp, nil
}

func emulatorHTTPClient() *http.Client {
	return &http.Client{Transport: withInitialResponse{&http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}}}
}

// fanOutClient talks HTTP/2 to kinesis-local's TLS port.
func fanOutClient() KinesisAPI {
	return &emulatorSubscriptions{KinesisAPI: kinesis.NewFromConfig(testAWSConfig(), func(o *kinesis.Options) {
		o.BaseEndpoint = aws.String(emu.kinesisLocal.TLS)
		o.HTTPClient = emulatorHTTPClient()
	}), conns: map[string]*http.Client{}}
}

// emulatorSubscriptions gives each subscription a connection of its own,
// closed before the shard is subscribed again, because kinesis-local frees
// a subscription only when its connection closes (AWS lets a new
// subscription take over after 5s). It leaves the protocol alone: kcl's
// codec for each subscription is the one that reads the events.
type emulatorSubscriptions struct {
	KinesisAPI
	mu    sync.Mutex
	conns map[string]*http.Client // by consumer and shard
}

func (e *emulatorSubscriptions) SubscribeToShard(ctx context.Context, in *kinesis.SubscribeToShardInput, o ...func(*kinesis.Options)) (*kinesis.SubscribeToShardOutput, error) {
	conn := emulatorHTTPClient()
	key := aws.ToString(in.ConsumerARN) + " " + aws.ToString(in.ShardId) // shard IDs repeat across streams
	e.mu.Lock()
	if prev := e.conns[key]; prev != nil {
		prev.CloseIdleConnections()
	}
	e.conns[key] = conn
	e.mu.Unlock()
	return e.KinesisAPI.SubscribeToShard(ctx, in, append(o, func(o *kinesis.Options) {
		o.HTTPClient = conn
	})...)
}

func fanOutOptions(f *fixture) Options {
	opts := f.options()
	opts.Kinesis = fanOutClient()
	opts.EnhancedFanOut = true
	return opts
}

func TestFanOutDrainsInOrderAndResumesAfterTheCheckpoint(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 3)
	first := f.putN(120, 12, "a")
	s := startConsumer(t, fanOutOptions(f))
	got := s.receive(len(first), 30*time.Second, ackAll)
	checkShardOrder(t, got)
	require.ElementsMatch(t, putData(first), dataOf(got))
	require.NoError(t, s.stop(nil))

	out, err := f.kin.DescribeStreamConsumer(context.Background(), &kinesis.DescribeStreamConsumerInput{
		StreamARN: describeARN(t, f), ConsumerName: aws.String(f.app)})
	require.NoError(t, err)
	assert.Equal(t, types.ConsumerStatusActive, out.ConsumerDescription.ConsumerStatus, "the consumer is registered under AppName")

	second := f.putN(60, 12, "b")
	s = startConsumer(t, fanOutOptions(f))
	got = s.receive(len(second), 30*time.Second, ackAll)
	s.quiet(500 * time.Millisecond)
	require.NoError(t, s.stop(nil))
	require.ElementsMatch(t, putData(second), dataOf(got), "exactly the records after the checkpoint")
}

func describeARN(t *testing.T, f *fixture) *string {
	out, err := f.kin.DescribeStreamSummary(context.Background(), &kinesis.DescribeStreamSummaryInput{StreamName: &f.stream})
	require.NoError(t, err)
	return out.StreamDescriptionSummary.StreamARN
}

// subscribeFaults fails the first SubscribeToShard calls as AWS does while a
// previous subscription is still open, and when subscribing too often.
type subscribeFaults struct {
	KinesisAPI
	calls atomic.Int64
}

func (s *subscribeFaults) SubscribeToShard(ctx context.Context, in *kinesis.SubscribeToShardInput, o ...func(*kinesis.Options)) (*kinesis.SubscribeToShardOutput, error) {
	switch s.calls.Add(1) {
	case 1:
		return nil, &types.ResourceInUseException{Message: aws.String("another subscription is active")}
	case 2:
		return nil, &types.LimitExceededException{Message: aws.String("rate exceeded for consumer")}
	}
	return s.KinesisAPI.SubscribeToShard(ctx, in, o...)
}

func TestFanOutResubscribesOftenAndRetriesErrorsLosingAndRepeatingNothing(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 2)
	opts := fanOutOptions(f)
	faults := &subscribeFaults{KinesisAPI: opts.Kinesis}
	opts.Kinesis = faults
	c, err := New(opts)
	require.NoError(t, err)
	// AWS's 5-minute limit, compressed; kinesis-local's first event comes
	// about 2s after subscribing.
	c.resubscribeAfter = 2500 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	s := &session{t: t, c: c, ch: c.Consume(ctx), cancel: cancel}
	t.Cleanup(func() { s.stop(nil) })

	var puts []put
	for i := range 16 { // records keep coming across several subscriptions
		puts = append(puts, f.putN(10, 8, fmt.Sprintf("r%d-", i))...)
		time.Sleep(500 * time.Millisecond)
	}
	got := s.receive(len(puts), 30*time.Second, ackAll)
	s.quiet(500 * time.Millisecond)
	require.NoError(t, s.stop(nil))
	require.ElementsMatch(t, putData(puts), dataOf(got))
	checkShardOrder(t, got)
	assert.GreaterOrEqual(t, faults.calls.Load(), int64(2+2*3), "two injected failures, then every shard subscribed at least 3 times")
}

func TestFanOutFollowsReshardingInKeyOrder(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 2)
	// kinesis-local 0.6.2 never sends a closed shard's last event (with
	// ChildShards), so this proves the fallback: a caught-up subscription of
	// a shard the shard list calls closed ends, children from ListShards.
	// The ChildShards event path: TestSubscriptionEventsEndTheShardOrStall.
	opts := fanOutOptions(f)
	opts.ShardSyncInterval = time.Second
	all, got := readThroughReshards(t, f, opts)
	require.ElementsMatch(t, putData(all), dataOf(got))
	checkKeyOrder(t, got)
}

// eventReader feeds a subscription scripted events, then blocks.
type eventReader struct {
	events chan types.SubscribeToShardEventStream
}

func (r eventReader) Events() <-chan types.SubscribeToShardEventStream { return r.events }
func (r eventReader) Close() error                                     { return nil }
func (r eventReader) Err() error                                       { return nil }

func TestSubscriptionEventsEndTheShardOrStall(t *testing.T) {
	noLeak(t)
	c, err := New(Options{StreamName: "s", AWSConfig: &aws.Config{}, Logger: testLogger(t)})
	require.NoError(t, err)
	c.out = make(chan Record, 10)
	keepDelivering(c)
	c.fanOutStall = 200 * time.Millisecond
	h := newHeldLease(lease{shardID: "shardId-000000000000", checkpoint: checkpoint{seq: checkpointTrimHorizon}}, c.streamList()[0], "shardId-000000000000")
	reader := newShardReader(c.readerEnv(), h)
	event := func(cont *string, children []types.ChildShard, data ...string) types.SubscribeToShardEventStream {
		var recs []types.Record
		for i, d := range data {
			recs = append(recs, types.Record{Data: []byte(d), PartitionKey: aws.String("k"), SequenceNumber: aws.String(fmt.Sprint(100 + i))})
		}
		return &types.SubscribeToShardEventStreamMemberSubscribeToShardEvent{Value: types.SubscribeToShardEvent{
			Records: recs, ContinuationSequenceNumber: cont, ChildShards: children, MillisBehindLatest: aws.Int64(0)}}
	}
	children := []types.ChildShard{{ShardId: aws.String("shardId-000000000002"), ParentShards: []string{"shardId-000000000000"}}}

	t.Run("the last event names the children", func(t *testing.T) {
		r := eventReader{events: make(chan types.SubscribeToShardEventStream, 3)}
		r.events <- event(aws.String("101"), nil, "a", "b")
		r.events <- event(nil, children)
		stream := kinesis.NewSubscribeToShardEventStream(func(es *kinesis.SubscribeToShardEventStream) { es.Reader = r })
		var skip checkpoint
		cont := ""
		ended, got, err := reader.readSubscription(context.Background(), stream, &skip, &cont)
		require.NoError(t, err)
		assert.True(t, ended)
		assert.Equal(t, children, got)
		assert.Equal(t, "101", cont)
		assert.Len(t, c.out, 2)
	})
	t.Run("no event for a while drops the subscription", func(t *testing.T) {
		r := eventReader{events: make(chan types.SubscribeToShardEventStream)}
		stream := kinesis.NewSubscribeToShardEventStream(func(es *kinesis.SubscribeToShardEventStream) { es.Reader = r })
		var skip checkpoint
		cont := ""
		ended, _, err := reader.readSubscription(context.Background(), stream, &skip, &cont)
		assert.False(t, ended)
		assert.ErrorContains(t, err, "no event for 200ms")
	})
}

// gonePast pretends that a shard left the stream (retention): ListShards no
// longer lists it, and SubscribeToShard, GetShardIterator and GetRecords of
// it answer ResourceNotFound, as AWS answers them.
type gonePast struct {
	KinesisAPI
	shard string
}

func (k gonePast) notFound() error {
	return &types.ResourceNotFoundException{Message: aws.String("Shard " + k.shard + " does not exist (test: past retention)")}
}

func (k gonePast) ListShards(ctx context.Context, in *kinesis.ListShardsInput, o ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error) {
	out, err := k.KinesisAPI.ListShards(ctx, in, o...)
	if err == nil {
		out.Shards = slices.DeleteFunc(slices.Clone(out.Shards), func(s types.Shard) bool { return aws.ToString(s.ShardId) == k.shard })
	}
	return out, err
}

func (k gonePast) SubscribeToShard(ctx context.Context, in *kinesis.SubscribeToShardInput, o ...func(*kinesis.Options)) (*kinesis.SubscribeToShardOutput, error) {
	if aws.ToString(in.ShardId) == k.shard {
		return nil, k.notFound()
	}
	return k.KinesisAPI.SubscribeToShard(ctx, in, o...)
}

func (k gonePast) GetShardIterator(ctx context.Context, in *kinesis.GetShardIteratorInput, o ...func(*kinesis.Options)) (*kinesis.GetShardIteratorOutput, error) {
	if aws.ToString(in.ShardId) == k.shard {
		return nil, k.notFound()
	}
	return k.KinesisAPI.GetShardIterator(ctx, in, o...)
}

// Fan-out: a lease of a shard that left the stream (retention, after an
// outage longer than it, or a Java table's stale parent lease) is ended like
// a closed shard, so that its children are read. SubscribeToShard's
// ResourceNotFound stopped the consumer, and every worker that took the
// lease after it: the whole group (issue 27, item 1; the Java KCL fixed the
// same in its PR 359).
func TestFanOutEndsAShardThatLeftTheStream(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 1)
	first := f.putN(20, 4, "a")
	s := startConsumer(t, fanOutOptions(f))
	s.receiveAll(putData(first), 30*time.Second)
	require.NoError(t, s.stop(ackAll))

	f.splitShard("shardId-000000000000")
	second := f.putN(20, 4, "b")
	opts := fanOutOptions(f)
	opts.Kinesis = gonePast{KinesisAPI: opts.Kinesis, shard: "shardId-000000000000"}
	s = startConsumer(t, opts)
	s.receiveAll(putData(second), 30*time.Second)
	require.NoError(t, s.stop(ackAll))
}

// Kinesis registers at most 20 consumers on a stream, and says so with
// LimitExceededException, the code it also gives to calls made too fast. No
// retry makes room: the consumer ends, naming the limit (issue 27, item 5).
func TestFanOutEndsTheConsumerAtTheStreamsConsumerLimit(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 1)
	ctx := context.Background()
	desc, err := f.kin.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(f.stream)})
	require.NoError(t, err)
	arn := desc.StreamDescriptionSummary.StreamARN
	for i := range 20 {
		_, err := f.kin.RegisterStreamConsumer(ctx, &kinesis.RegisterStreamConsumerInput{StreamARN: arn, ConsumerName: aws.String(fmt.Sprintf("other-%d", i))})
		require.NoError(t, err)
	}
	s := startConsumer(t, fanOutOptions(f))
	err = s.ends(20 * time.Second)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "as many registered consumers as Kinesis allows")
	assert.Contains(t, err.Error(), f.stream)
	var limit *types.LimitExceededException
	assert.ErrorAs(t, err, &limit, "Err wraps the AWS error")
}

// expiredOnce answers the first GetRecords with ExpiredIteratorException,
// as Kinesis does when an iterator waited five minutes unused.
type expiredOnce struct {
	KinesisAPI
	done atomic.Bool
}

func (k *expiredOnce) GetRecords(ctx context.Context, in *kinesis.GetRecordsInput, o ...func(*kinesis.Options)) (*kinesis.GetRecordsOutput, error) {
	if k.done.CompareAndSwap(false, true) {
		return nil, &types.ExpiredIteratorException{Message: aws.String("Iterator expired (test)")}
	}
	return k.KinesisAPI.GetRecords(ctx, in, o...)
}

// A shard opened at LATEST whose iterator expired before its first record
// is opened again where this worker's first open stood (Kinesis's clock,
// from the response's Date, less a second), not at the lease's start, a
// minute before the take, which delivered records written before the
// worker started (issue 27, item 7).
func TestAReopenBeforeTheFirstRecordAtLatestDeliversNothingOlder(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 1)
	old := f.putN(5, 1, "old")
	time.Sleep(2500 * time.Millisecond) // more than the second's margin before the start
	opts := f.options()
	opts.InitialPosition = Latest
	opts.Kinesis = &expiredOnce{KinesisAPI: opts.Kinesis}
	s := startConsumer(t, opts)
	time.Sleep(2 * time.Second) // open, expire, open again
	fresh := f.putN(5, 1, "new")
	got := s.receive(len(fresh), 30*time.Second, ackAll)
	s.quiet(time.Second)
	require.NoError(t, s.stop(ackAll))
	assert.ElementsMatch(t, putData(fresh), dataOf(got), "none of %v", putData(old))
}

// Only the limit of registered consumers ends the consumer; the other
// LimitExceededException answers of RegisterStreamConsumer pass and are
// retried (found by a review: six applications deploying at once).
func TestIsConsumerLimit(t *testing.T) {
	limit := func(msg string) error { return &types.LimitExceededException{Message: aws.String(msg)} }
	assert.True(t, isConsumerLimit(limit("Only 20 consumers can be registered to a stream at once")))
	assert.False(t, isConsumerLimit(limit("Only 5 consumers can be created at the same time")))
	assert.False(t, isConsumerLimit(limit("Rate exceeded for stream orders under account 123456789012.")))
	assert.False(t, isConsumerLimit(&types.ResourceInUseException{Message: aws.String("registered")}))
}

// A fan-out consumer deregistered while kcl runs (by hand, or by
// infrastructure code that replaces it) is registered again, and the
// shards are subscribed again under its new ARN from where they stood:
// the consumer goes on, losing nothing (issue 27, item 8; it ended with
// ResourceNotFound). On kinesis-local.
func TestFanOutRegistersAConsumerDeregisteredWhileRunning(t *testing.T) {
	noLeak(t)
	ctx := context.Background()
	f := newFixture(t, emu.kinesisLocal, 2)
	first := f.putN(40, 8, "a")
	c, err := New(fanOutOptions(f))
	require.NoError(t, err)
	c.resubscribeAfter = 2500 * time.Millisecond // AWS ends subscriptions of a consumer deregistered; kinesis-local keeps them
	cctx, cancel := context.WithCancel(ctx)
	s := &session{t: t, c: c, ch: c.Consume(cctx), cancel: cancel}
	t.Cleanup(func() { s.stop(nil) })
	got := s.receive(len(first), 30*time.Second, ackAll)
	require.ElementsMatch(t, putData(first), dataOf(got))

	out, err := f.kin.DescribeStreamConsumer(ctx, &kinesis.DescribeStreamConsumerInput{StreamARN: describeARN(t, f), ConsumerName: aws.String(f.app)})
	require.NoError(t, err)
	old := aws.ToString(out.ConsumerDescription.ConsumerARN)
	_, err = f.kin.DeregisterStreamConsumer(ctx, &kinesis.DeregisterStreamConsumerInput{ConsumerARN: &old})
	require.NoError(t, err)
	time.Sleep(3 * time.Second) // every subscription renewed since, or refused
	second := f.putN(40, 8, "b")
	got = s.receive(len(second), 60*time.Second, ackAll)
	require.ElementsMatch(t, putData(second), dataOf(got))
	require.NoError(t, s.stop(nil))

	out, err = f.kin.DescribeStreamConsumer(ctx, &kinesis.DescribeStreamConsumerInput{StreamARN: describeARN(t, f), ConsumerName: aws.String(f.app)})
	require.NoError(t, err)
	assert.Equal(t, types.ConsumerStatusActive, out.ConsumerDescription.ConsumerStatus)
	assert.NotEqual(t, old, aws.ToString(out.ConsumerDescription.ConsumerARN), "registered again")
}
