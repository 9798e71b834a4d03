package kcl

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// faultyKinesis fails chosen calls with the errors AWS returns, around a real
// client.
type faultyKinesis struct {
	KinesisAPI
	getRecords   atomic.Int64
	expireAt     map[int64]bool // GetRecords call numbers that find the iterator expired
	throttleEach int64          // every nth call of each method is throttled
	listShards   atomic.Int64
	iterators    atomic.Int64
	injected     atomic.Int64
}

func (f *faultyKinesis) throttled(n int64) bool {
	if f.throttleEach > 0 && n%f.throttleEach == 0 {
		f.injected.Add(1)
		return true
	}
	return false
}

func (f *faultyKinesis) GetRecords(ctx context.Context, in *kinesis.GetRecordsInput, o ...func(*kinesis.Options)) (*kinesis.GetRecordsOutput, error) {
	n := f.getRecords.Add(1)
	if f.expireAt[n] {
		f.injected.Add(1)
		return nil, &types.ExpiredIteratorException{Message: aws.String("Iterator expired")}
	}
	if f.throttled(n) {
		return nil, &types.ProvisionedThroughputExceededException{Message: aws.String("Rate exceeded for shard")}
	}
	return f.KinesisAPI.GetRecords(ctx, in, o...)
}

func (f *faultyKinesis) ListShards(ctx context.Context, in *kinesis.ListShardsInput, o ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error) {
	if f.throttled(f.listShards.Add(1)) {
		return nil, &types.LimitExceededException{Message: aws.String("Rate exceeded")}
	}
	return f.KinesisAPI.ListShards(ctx, in, o...)
}

func (f *faultyKinesis) GetShardIterator(ctx context.Context, in *kinesis.GetShardIteratorInput, o ...func(*kinesis.Options)) (*kinesis.GetShardIteratorOutput, error) {
	if f.throttled(f.iterators.Add(1)) {
		return nil, &types.ProvisionedThroughputExceededException{Message: aws.String("Rate exceeded")}
	}
	return f.KinesisAPI.GetShardIterator(ctx, in, o...)
}

// throttlingDynamo throttles every nth call of the lease table.
type throttlingDynamo struct {
	DynamoDBAPI
	each     int64
	calls    atomic.Int64
	injected atomic.Int64
}

func (d *throttlingDynamo) fail() error {
	if d.calls.Add(1)%d.each == 0 {
		d.injected.Add(1)
		return &ddbtypes.ProvisionedThroughputExceededException{Message: aws.String("throttled")}
	}
	return nil
}

func (d *throttlingDynamo) Scan(ctx context.Context, in *dynamodb.ScanInput, o ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error) {
	if err := d.fail(); err != nil {
		return nil, err
	}
	return d.DynamoDBAPI.Scan(ctx, in, o...)
}

func (d *throttlingDynamo) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, o ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	if err := d.fail(); err != nil {
		return nil, err
	}
	return d.DynamoDBAPI.UpdateItem(ctx, in, o...)
}

func (d *throttlingDynamo) PutItem(ctx context.Context, in *dynamodb.PutItemInput, o ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	if err := d.fail(); err != nil {
		return nil, err
	}
	return d.DynamoDBAPI.PutItem(ctx, in, o...)
}

func TestExpiredIteratorLosesAndRepeatsNothing(t *testing.T) {
	noLeak(t)
	for _, server := range []string{"kinesis-local", "kinesalite"} {
		t.Run(server, func(t *testing.T) {
			f := newFixture(t, emu.kinesisLocal, 1)
			if server == "kinesalite" {
				f = newFixture(t, emu.kinesalite, 1)
			}
			puts := f.putN(60, 3, "")
			faulty := &faultyKinesis{KinesisAPI: f.kin, expireAt: map[int64]bool{2: true, 4: true, 5: true}}
			opts := f.options()
			opts.Kinesis = faulty
			opts.MaxRecords = 7
			s := startConsumer(t, opts)
			got := s.receive(len(puts), 30*time.Second, ackAll)
			s.quiet(300 * time.Millisecond)
			require.NoError(t, s.stop(nil))
			assert.Equal(t, putData(puts), dataOf(got), "every record once, in order")
			assert.EqualValues(t, 3, faulty.injected.Load())
		})
	}
}

func TestThrottlingIsRetriedAndLosesAndRepeatsNothing(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 3)
	puts := f.putN(150, 9, "")
	kin := &faultyKinesis{KinesisAPI: f.kin, throttleEach: 2}
	ddb := &throttlingDynamo{DynamoDBAPI: f.ddb, each: 3}
	opts := f.options()
	opts.Kinesis, opts.DynamoDB = kin, ddb
	opts.MaxRecords = 10
	s := startConsumer(t, opts)
	got := s.receive(len(puts), 60*time.Second, ackAll)
	s.quiet(300 * time.Millisecond)
	require.NoError(t, s.stop(nil))
	require.ElementsMatch(t, putData(puts), dataOf(got))
	checkShardOrder(t, got)
	assert.Positive(t, kin.injected.Load())
	assert.Positive(t, ddb.injected.Load())

	// What was acked was checkpointed despite the throttling.
	last := lastSeqPerShard(puts)
	for shard, item := range f.leaseItems() {
		assert.Equal(t, last[shard], str(item, attrCheckpoint), "shard %s", shard)
	}
}

func TestLostLeaseStopsDeliveryAndLateAcksNeverMoveTheNewOwnersCheckpoint(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 1)
	puts := f.putN(10, 2, "a")
	ddb := &staleScans{DynamoDBAPI: f.ddb}
	opts := f.options()
	opts.DynamoDB = ddb
	opts.LeaseDuration = 3 * time.Second
	s := startConsumer(t, opts)
	got := s.receive(len(puts), 30*time.Second, func(Record) bool { return false })
	shard := puts[0].shard

	// The worker's reads of the table go stale, so it cannot learn of the
	// steal but by a write; then another worker takes the lease and
	// checkpoints, as a steal would. The scan replayed is one that shows the
	// worker's own take (not one from before it).
	require.Eventually(t, func() bool { return ddb.lastOwner(shard) == s.c.opts.WorkerID }, 10*time.Second, 10*time.Millisecond, "a scan showing the take")
	ddb.stale.Store(true)
	f.steal(shard, "thief", puts[2].seq)
	require.Len(t, s.c.held.list(), 1, "the worker still believes it holds the lease")

	// Late acks of the old owner: its checkpoint write is attempted against
	// the lease the thief now holds, is refused, and the worker drops it.
	for _, r := range got {
		r.Ack()
	}
	require.Eventually(t, func() bool { return len(s.c.held.list()) == 0 }, 10*time.Second, 10*time.Millisecond, "the refused write tells the worker it lost the lease")
	assert.Positive(t, ddb.checkpointWrites.Load(), "the stale worker attempted a checkpoint write after the steal")
	item := f.leaseItems()[shard]
	assert.Equal(t, "thief", str(item, attrOwner))
	assert.Equal(t, puts[2].seq, str(item, attrCheckpoint), "the thief's checkpoint is kept")

	ddb.stale.Store(false)
	fresh := f.putN(5, 2, "b")
	s.quiet(500 * time.Millisecond) // nothing more from a shard it lost

	// The thief never renews: after LeaseDuration the worker takes the
	// lease back and resumes right after the thief's checkpoint.
	again := s.receive(len(puts)-3+len(fresh), 30*time.Second, ackAll)
	assert.Equal(t, append(putData(puts[3:]), putData(fresh)...), dataOf(again))
	require.NoError(t, s.stop(nil))
}

// staleScans answers the worker's table scans, while stale is set, with the
// last scan from before, so the worker cannot see a lease change hands; and
// counts the checkpoint writes made meanwhile.
type staleScans struct {
	DynamoDBAPI
	stale            atomic.Bool
	mu               sync.Mutex
	last             *dynamodb.ScanOutput
	checkpointWrites atomic.Int64
}

func (d *staleScans) Scan(ctx context.Context, in *dynamodb.ScanInput, o ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error) {
	d.mu.Lock()
	last := d.last
	d.mu.Unlock()
	if d.stale.Load() && last != nil && in.ExclusiveStartKey == nil {
		return last, nil
	}
	out, err := d.DynamoDBAPI.Scan(ctx, in, o...)
	if err == nil && in.ExclusiveStartKey == nil && len(out.LastEvaluatedKey) == 0 {
		d.mu.Lock()
		d.last = out
		d.mu.Unlock()
	}
	return out, err
}

// lastOwner is the owner of shard's lease in the scan stale answers replay.
func (d *staleScans) lastOwner(shard string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.last == nil {
		return ""
	}
	for _, item := range d.last.Items {
		if str(item, attrLeaseKey) == shard {
			return str(item, attrOwner)
		}
	}
	return ""
}

func (d *staleScans) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, o ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	if d.stale.Load() && isCheckpointWrite(in) {
		d.checkpointWrites.Add(1)
	}
	return d.DynamoDBAPI.UpdateItem(ctx, in, o...)
}

// steal makes owner the owner of shard's lease with checkpoint seq, as
// another worker taking it and checkpointing would: one write, conditional on
// the counter read just before (read again if the holder wrote meanwhile).
func (f *fixture) steal(shard, owner, seq string) {
	f.t.Helper()
	for range 20 {
		counter := str(f.leaseItems()[shard], attrCounter)
		_, err := f.ddb.UpdateItem(context.Background(), &dynamodb.UpdateItemInput{
			TableName:           &f.app,
			Key:                 map[string]ddbtypes.AttributeValue{attrLeaseKey: &ddbtypes.AttributeValueMemberS{Value: shard}},
			UpdateExpression:    aws.String("SET leaseOwner = :o, leaseCounter = leaseCounter + :one, checkpoint = :cp"),
			ConditionExpression: aws.String("leaseCounter = :c"),
			ExpressionAttributeValues: map[string]ddbtypes.AttributeValue{
				":o": &ddbtypes.AttributeValueMemberS{Value: owner}, ":one": &ddbtypes.AttributeValueMemberN{Value: "1"},
				":cp": &ddbtypes.AttributeValueMemberS{Value: seq}, ":c": &ddbtypes.AttributeValueMemberN{Value: counter},
			},
		})
		var changed *ddbtypes.ConditionalCheckFailedException
		if !errors.As(err, &changed) {
			require.NoError(f.t, err)
			return
		}
	}
	f.t.Fatalf("lease of %s kept changing", shard)
}

// A worker whose heartbeat cannot be written for LeaseDuration pauses: it
// delivers nothing more, but acks of what it delivered still count. When the
// heartbeat is written again, the shards it still owns go on from where they
// stopped, with nothing delivered twice; a shard taken meanwhile is dropped
// and read again from its new owner's checkpoint.
func TestStaleHeartbeatPausesAndResumesWithoutRedelivery(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 2)
	before := f.putN(20, 8, "a")
	shards := slices.Sorted(maps.Keys(lastSeqPerShard(before)))
	require.Len(t, shards, 2, "the keys reach both shards")
	kept, stolen := shards[0], shards[1]
	ddb := &refusingWrites{DynamoDBAPI: f.ddb, refuses: isHeartbeatWrite}
	opts := f.options()
	opts.DynamoDB = ddb
	s := startConsumer(t, opts)
	delivered := s.receive(len(before), 30*time.Second, func(Record) bool { return false })

	ddb.refuse.Store(true)
	require.Eventually(t, s.c.pause.isShut, 5*opts.LeaseDuration, 10*time.Millisecond, "a stale heartbeat pauses the worker")
	var stolenPuts []put
	for _, p := range before {
		if p.shard == stolen {
			stolenPuts = append(stolenPuts, p)
		}
	}
	f.steal(stolen, "thief", stolenPuts[1].seq)
	for _, r := range delivered {
		r.Ack()
	}
	after := f.putN(20, 8, "b")
	s.quiet(opts.LeaseDuration) // nothing delivered while paused
	require.Eventually(t, func() bool {
		return str(f.leaseItems()[kept], attrCheckpoint) == lastSeqPerShard(before)[kept]
	}, 5*time.Second, 20*time.Millisecond, "acks made while paused are checkpointed")

	ddb.refuse.Store(false)
	var want []string
	for _, p := range append(stolenPuts[2:], after...) {
		want = append(want, p.data)
	}
	got := s.receive(len(want), 30*time.Second, ackAll)
	s.quiet(300 * time.Millisecond)
	require.NoError(t, s.stop(nil))
	assert.ElementsMatch(t, want, dataOf(got), "the kept shard goes on where it stopped; the stolen one from the thief's checkpoint")
	checkShardOrder(t, got)
}

// refusingWrites throttles the lease-table updates that refuses picks
// while refuse is set.
type refusingWrites struct {
	DynamoDBAPI
	refuses func(*dynamodb.UpdateItemInput) bool
	refuse  atomic.Bool
}

func (d *refusingWrites) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, o ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	if d.refuse.Load() && d.refuses(in) {
		return nil, &ddbtypes.ProvisionedThroughputExceededException{Message: aws.String("throttled")}
	}
	return d.DynamoDBAPI.UpdateItem(ctx, in, o...)
}

func isCheckpointWrite(in *dynamodb.UpdateItemInput) bool {
	return strings.Contains(aws.ToString(in.UpdateExpression), "checkpoint = :cp")
}

func isHeartbeatWrite(in *dynamodb.UpdateItemInput) bool {
	key, _ := in.Key[attrLeaseKey].(*ddbtypes.AttributeValueMemberS)
	return key != nil && strings.HasPrefix(key.Value, workerKeyPrefix)
}

// A checkpoint write that keeps failing never holds up the heartbeats: the
// worker keeps its leases, and the checkpoint lands once writes succeed.
func TestFailingCheckpointWritesDoNotStopHeartbeats(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 1)
	puts := f.putN(10, 2, "")
	ddb := &refusingWrites{DynamoDBAPI: f.ddb, refuses: isCheckpointWrite}
	ddb.refuse.Store(true)
	opts := f.options()
	opts.DynamoDB = ddb
	opts.WorkerID = "steady"
	s := startConsumer(t, opts)
	s.receive(len(puts), 30*time.Second, ackAll)

	heartbeat := func() string {
		out, err := f.ddb.GetItem(context.Background(), &dynamodb.GetItemInput{TableName: &f.app,
			Key: map[string]ddbtypes.AttributeValue{attrLeaseKey: &ddbtypes.AttributeValueMemberS{Value: workerKeyPrefix + "steady"}}})
		require.NoError(t, err)
		return str(out.Item, attrCounter)
	}
	before := heartbeat()
	time.Sleep(3 * opts.LeaseDuration) // many refused flushes
	assert.NotEqual(t, before, heartbeat(), "heartbeats go on while checkpoint writes fail")
	assert.Len(t, s.c.held.list(), 1, "the lease is kept")

	ddb.refuse.Store(false)
	require.Eventually(t, func() bool {
		return str(f.leaseItems()[puts[0].shard], attrCheckpoint) == puts[len(puts)-1].seq
	}, 5*time.Second, 20*time.Millisecond, "the checkpoint lands once writes succeed")
	require.NoError(t, s.stop(nil))
}
