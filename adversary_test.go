package kcl

// Regression tests for the paths where records could be lost or acked
// records delivered again under an adversarial schedule: resharding while
// down, shards gone from the stream, leases at LATEST that move, a worker cut
// off from DynamoDB, one WorkerID in two processes, lost replies, a throttled
// write holding a lock, and errors no retry fixes. Each runs on the
// emulators.

import (
	"context"
	"errors"
	"fmt"
	"math/big"
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
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// openAtLatest puts records until one arrives: with InitialPosition Latest,
// the shards are open from then on. It acks what arrives if ack is set.
func (s *session) openAtLatest(f *fixture, ack bool) []Record {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		f.putN(1, 1, fmt.Sprintf("warm%d-", i))
		select {
		case r := <-s.ch:
			if ack {
				r.Ack()
			}
			return []Record{r}
		case <-time.After(200 * time.Millisecond):
		}
	}
	s.t.Fatal("no record arrived at LATEST within 30s")
	return nil
}

// receiveAll receives, acking, until every record of want has arrived, and
// returns all that arrived; it fails after timeout.
func (s *session) receiveAll(want []string, timeout time.Duration) []Record {
	s.t.Helper()
	missing := map[string]bool{}
	for _, w := range want {
		missing[w] = true
	}
	var got []Record
	deadline := time.After(timeout)
	for len(missing) > 0 {
		select {
		case r, ok := <-s.ch:
			if !ok {
				s.t.Fatalf("channel closed with %d records missing: %v", len(missing), s.c.Err())
			}
			got = append(got, r)
			delete(missing, string(r.Data))
			r.Ack()
		case <-deadline:
			s.t.Fatalf("%d of %d records missing after %v", len(missing), len(want), timeout)
		}
	}
	return got
}

// A consumer down across two reshards (a split, then a split of a child)
// comes back with the default position, Latest: the grandchildren must start
// at TRIM_HORIZON like the children, or what was written to them is skipped.
func TestGrandchildrenStartAtTrimHorizonAfterTwoReshardsWhileDown(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 1)
	opts := f.options()
	opts.InitialPosition = Latest
	s := startConsumer(t, opts)
	s.openAtLatest(f, true)
	require.NoError(t, s.stop(ackAll))

	n := 0 // records numbered across the batches, for checkKeyOrder
	batch := func(count int, prefix string) []put {
		base := n
		n += count
		return f.put(count, func(i int) string { return fmt.Sprintf("k%d", (base+i)%8) },
			func(i int) string { return fmt.Sprintf("%sk%d:%06d", prefix, (base+i)%8, base+i) })
	}
	before := batch(10, "parent-") // into shard 0, after the last checkpoint
	f.split()                      // shard 0 -> 1, 2
	middle := batch(20, "child-")
	f.split() // shard 1 -> 3, 4
	after := batch(30, "grandchild-")
	var grandchildren int
	for _, p := range after {
		if p.shard != "shardId-000000000002" {
			grandchildren++
		}
	}
	require.Positive(t, grandchildren, "some records went to the grandchildren")

	s = startConsumer(t, opts)
	want := putData(append(append(before, middle...), after...))
	got := s.receive(len(want), 30*time.Second, ackAll)
	assert.ElementsMatch(t, want, dataOf(got))
	checkKeyOrder(t, got)
	require.NoError(t, s.stop(ackAll))
}

// A lease whose shard the stream no longer lists (past retention, or named
// by hand) is finished: it is ended, and its children are read.
func TestParentGoneFromTheStreamDoesNotBlockItsChild(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 1)
	puts := f.putN(10, 3, "")
	gone := "shardId-000000000999"
	child := puts[0].shard
	opts := f.options()
	c, err := New(opts)
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, c.table.ensure(ctx))
	_, err = c.table.create(ctx, lease{shardID: gone, checkpoint: checkpoint{seq: checkpointTrimHorizon}})
	require.NoError(t, err)
	_, err = c.table.create(ctx, lease{shardID: child, checkpoint: checkpoint{seq: checkpointTrimHorizon}, parents: []string{gone}})
	require.NoError(t, err)

	s := startConsumer(t, opts)
	got := s.receive(len(puts), 30*time.Second, ackAll)
	assert.ElementsMatch(t, putData(puts), dataOf(got))
	require.NoError(t, s.stop(ackAll))
	assert.Equal(t, checkpointShardEnd, str(f.leaseItems()[gone], attrCheckpoint))
}

// A lease still at LATEST that moves before its first checkpoint (its
// worker delivered records and stopped without acking them) is opened by the
// next owner where the first one opened it, not at LATEST again.
func TestLatestLeaseThatMovesBeforeItsFirstCheckpointLosesNothing(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 1)
	opts := f.options()
	opts.InitialPosition = Latest
	opts.ShutdownTimeout = 200 * time.Millisecond
	a := startConsumer(t, opts)
	warm := a.openAtLatest(f, false)
	puts := f.putN(10, 2, "")
	a.receive(len(puts), 30*time.Second, func(Record) bool { return false })
	require.NoError(t, a.stop(nil)) // nothing acked: the lease is released at LATEST
	assert.Equal(t, checkpointLatest, str(f.leaseItems()[puts[0].shard], attrCheckpoint))

	b := startConsumer(t, opts)
	want := append(dataOf(warm), putData(puts)...)
	got := b.receiveAll(want, 30*time.Second)
	require.NoError(t, b.stop(ackAll))
	for _, d := range dataOf(got) {
		if !strings.HasPrefix(d, "warm") {
			assert.Contains(t, want, d)
		}
	}
}

// partitionable cuts a worker off from DynamoDB while cut is set: every call
// fails as a request that could not be sent.
type partitionable struct {
	DynamoDBAPI
	cut atomic.Bool
}

var errPartitioned = &smithyhttp.RequestSendError{Err: errors.New("partitioned (test)")}

func (d *partitionable) Scan(ctx context.Context, in *dynamodb.ScanInput, o ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error) {
	if d.cut.Load() {
		return nil, errPartitioned
	}
	return d.DynamoDBAPI.Scan(ctx, in, o...)
}

func (d *partitionable) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, o ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	if d.cut.Load() {
		return nil, errPartitioned
	}
	return d.DynamoDBAPI.UpdateItem(ctx, in, o...)
}

func (d *partitionable) GetItem(ctx context.Context, in *dynamodb.GetItemInput, o ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	if d.cut.Load() {
		return nil, errPartitioned
	}
	return d.DynamoDBAPI.GetItem(ctx, in, o...)
}

func (d *partitionable) PutItem(ctx context.Context, in *dynamodb.PutItemInput, o ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	if d.cut.Load() {
		return nil, errPartitioned
	}
	return d.DynamoDBAPI.PutItem(ctx, in, o...)
}

func (d *partitionable) DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, o ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error) {
	if d.cut.Load() {
		return nil, errPartitioned
	}
	return d.DynamoDBAPI.DeleteItem(ctx, in, o...)
}

// delivery is one record received by a test's user loop, and when.
type delivery struct {
	worker string
	rec    Record
	at     time.Time
}

// collect receives everything s delivers, acking it, into log until the
// channel closes.
func (s *session) collect(worker string, mu *sync.Mutex, log *[]delivery, wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		for r := range s.ch {
			mu.Lock()
			*log = append(*log, delivery{worker: worker, rec: r, at: time.Now()})
			mu.Unlock()
			r.Ack()
		}
	}()
}

// A worker cut off from DynamoDB while Kinesis stays reachable stops
// delivering before another worker delivers from its shard: at most the
// chunk it was sending when its deadline passed (the channel is unbuffered
// here) comes after the new owner's first record.
func TestWorkerCutOffFromDynamoDBStopsBeforeAnotherDelivers(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 1)
	opts := f.options()
	opts.LeaseDuration = 2 * time.Second
	opts.BufferSize = -1
	opts.MaxRecords = 2 // the bound below: one chunk of at most MaxRecords
	opts.PollInterval = 20 * time.Millisecond
	cutOff := &partitionable{DynamoDBAPI: f.ddb}
	optsA := opts
	optsA.WorkerID, optsA.DynamoDB = "cut-off", cutOff
	optsB := opts
	optsB.WorkerID = "other"

	var mu sync.Mutex
	var log []delivery
	var wg sync.WaitGroup
	a := startConsumer(t, optsA)
	a.collect("cut-off", &mu, &log, &wg)
	ctx, stopProducing := context.WithCancel(context.Background())
	produced := make(chan struct{})
	go func() { // about 200 records a second, until stopped
		defer close(produced)
		for i := 0; ctx.Err() == nil; i++ {
			f.putN(10, 4, fmt.Sprintf("p%d-", i))
			time.Sleep(50 * time.Millisecond)
		}
	}()
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(log) > 20 }, 30*time.Second, 10*time.Millisecond)
	b := startConsumer(t, optsB)
	b.collect("other", &mu, &log, &wg)
	time.Sleep(opts.LeaseDuration) // b sees a alive and takes nothing

	cutOff.cut.Store(true)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(log) > 0 && log[len(log)-1].worker == "other"
	}, 30*time.Second, 10*time.Millisecond, "the other worker takes the shard")
	time.Sleep(opts.LeaseDuration)
	stopProducing()
	<-produced
	b.cancel()
	a.cancel()
	wg.Wait()

	var firstOther time.Time
	for _, d := range log {
		if d.worker == "other" {
			firstOther = d.at
			break
		}
	}
	late := 0
	for _, d := range log {
		if d.worker == "cut-off" && d.at.After(firstOther) {
			late++
		}
	}
	assert.LessOrEqual(t, late, opts.MaxRecords, "records the cut-off worker delivered after the other worker's first")
}

// Two processes run with one WorkerID: the older one stops with an error
// that names the WorkerID, and the two never read one shard at the same
// time: the newer leaves the leases of its WorkerID alone for its first
// LeaseDuration, by when the older has stopped and released them (found by
// review: they took each other's leases back and forth for a second, and
// acked records were delivered again).
func TestTwoProcessesWithOneWorkerIDStopOneWithAClearError(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 2)
	f.putN(20, 4, "a")
	opts := f.options()
	opts.WorkerID = "twin"
	opts.BufferSize = -1
	opts.LeaseDuration = 3 * time.Second // heartbeats a second apart: time for the two to fight, were they to
	var mu sync.Mutex
	var log []delivery
	var wg sync.WaitGroup
	a := startConsumer(t, opts)
	a.collect("older", &mu, &log, &wg)
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(log) >= 20 }, 30*time.Second, 10*time.Millisecond)

	ctx, stopProducing := context.WithCancel(context.Background())
	produced := make(chan struct{})
	go func() { // records keep coming to both shards, as fast as the emulator takes them
		defer close(produced)
		for i := 0; ctx.Err() == nil; i++ {
			f.putN(4, 4, fmt.Sprintf("p%d-", i))
		}
	}()
	b := startConsumer(t, opts)
	b.collect("newer", &mu, &log, &wg)
	require.Eventually(t, func() bool { return a.c.Err() != nil }, 30*time.Second, 10*time.Millisecond, "the older process stops")
	err := a.c.Err()
	require.ErrorIs(t, err, errDuplicateWorker)
	assert.Contains(t, err.Error(), `"twin"`)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		shards := map[string]bool{}
		for _, d := range log {
			if d.worker == "newer" {
				shards[d.rec.ShardID] = true
			}
		}
		return len(shards) == 2
	}, 30*time.Second, 10*time.Millisecond, "the newer process reads both shards")
	time.Sleep(opts.LeaseDuration) // more records, read by the newer alone
	stopProducing()
	<-produced
	a.cancel()
	b.cancel()
	wg.Wait()
	require.NoError(t, b.c.Err())

	// The older stopped and released what it had acked; the newer took
	// the leases only then: nothing is delivered twice.
	times := map[string]int{}
	for _, d := range log {
		times[string(d.rec.Data)]++
	}
	for data, n := range times {
		assert.Equal(t, 1, n, "%s delivered %d times", data, n)
	}
}

// losingReplies applies the first checkpoint write that keeps the lease,
// then answers it with a transient error after a pause, as a reply lost on
// the network would: kcl sends it again, and the condition fails.
type losingReplies struct {
	DynamoDBAPI
	armed atomic.Bool
	lost  atomic.Int32
}

func (d *losingReplies) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, o ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	out, err := d.DynamoDBAPI.UpdateItem(ctx, in, o...)
	expr := aws.ToString(in.UpdateExpression)
	if err == nil && isCheckpointWrite(in) && !strings.Contains(expr, "REMOVE leaseOwner") && d.armed.CompareAndSwap(true, false) {
		d.lost.Add(1)
		time.Sleep(300 * time.Millisecond) // acks go on meanwhile
		return nil, &ddbtypes.InternalServerError{Message: aws.String("reply lost (test)")}
	}
	return out, err
}

// A checkpoint write whose reply was lost is sent again; its condition then
// fails, but the item holds exactly what this worker wrote: the lease is
// kept, and no acked record is delivered again.
func TestLostReplyToACheckpointWriteKeepsTheLease(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 1)
	puts := f.putN(300, 4, "")
	ddb := &losingReplies{DynamoDBAPI: f.ddb}
	ddb.armed.Store(true)
	opts := f.options()
	opts.DynamoDB = ddb
	opts.MaxRecords = 5
	opts.PollInterval = 20 * time.Millisecond
	s := startConsumer(t, opts)
	got := s.receive(len(puts), 30*time.Second, ackAll)
	s.quiet(500 * time.Millisecond)
	require.NoError(t, s.stop(ackAll))
	assert.Equal(t, int32(1), ddb.lost.Load(), "a reply was lost")
	assert.Equal(t, putData(puts), dataOf(got), "every record once, in order")
}

// throttledShard throttles every checkpoint write of one shard while set,
// or, with hang, leaves it unanswered until the caller gives up.
type throttledShard struct {
	DynamoDBAPI
	shard string
	hang  bool
	on    atomic.Bool
}

func (d *throttledShard) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, o ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	key, _ := in.Key[attrLeaseKey].(*ddbtypes.AttributeValueMemberS)
	if d.on.Load() && key != nil && key.Value == d.shard && isCheckpointWrite(in) {
		if d.hang {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return nil, &ddbtypes.ProvisionedThroughputExceededException{Message: aws.String("throttled (test)")}
	}
	return d.DynamoDBAPI.UpdateItem(ctx, in, o...)
}

// A shard whose checkpoint writes are throttled for good, or never answered
// (here: the one that ended, whose SHARD_END write retries), holds up no
// other shard: the other shard's acks are still checkpointed. Each attempt
// holds the lease's lock once, for a bounded time.
func TestThrottledWritesOfOneShardHoldUpNoOther(t *testing.T) {
	for _, hang := range []bool{false, true} {
		t.Run(map[bool]string{false: "throttled", true: "unanswered"}[hang], func(t *testing.T) { writesOfOneShardHoldUpNoOther(t, hang) })
	}
}

func writesOfOneShardHoldUpNoOther(t *testing.T, hang bool) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 2)
	first := f.putN(20, 8, "a")
	ended := first[0].shard
	ddb := &throttledShard{DynamoDBAPI: f.ddb, shard: ended, hang: hang}
	ddb.on.Store(true)
	f.splitShard(ended)
	opts := f.options()
	opts.DynamoDB = ddb
	s := startConsumer(t, opts)
	s.receive(len(first), 30*time.Second, ackAll)
	time.Sleep(opts.LeaseDuration) // the ended shard's SHARD_END write is retrying

	otherShard := "shardId-000000000000"
	if ended == otherShard {
		otherShard = "shardId-000000000001"
	}
	var other []put
	for len(other) == 0 {
		for _, p := range f.putN(10, 8, "b") {
			if p.shard == otherShard {
				other = append(other, p)
			}
		}
	}
	s.receive(len(other), 30*time.Second, ackAll)
	last := lastSeqPerShard(other)[otherShard]
	assert.Eventually(t, func() bool {
		return str(f.leaseItems()[otherShard], attrCheckpoint) == last
	}, 10*time.Second, 20*time.Millisecond, "the other shard's acks are checkpointed")
	ddb.on.Store(false)
	require.NoError(t, s.stop(ackAll))
}

// splitShard splits the named shard at the middle of its hash key range.
func (f *fixture) splitShard(id string) {
	f.t.Helper()
	out, err := f.kin.ListShards(context.Background(), &kinesis.ListShardsInput{StreamName: &f.stream})
	require.NoError(f.t, err)
	for _, s := range out.Shards {
		if aws.ToString(s.ShardId) == id {
			lo, hi := s.HashKeyRange.StartingHashKey, s.HashKeyRange.EndingHashKey
			_, err := f.kin.SplitShard(context.Background(), &kinesis.SplitShardInput{
				StreamName: &f.stream, ShardToSplit: s.ShardId, NewStartingHashKey: aws.String(midpoint(*lo, *hi)),
			})
			require.NoError(f.t, err)
			f.waitActive()
			return
		}
	}
	f.t.Fatalf("no shard %s", id)
}

func midpoint(lo, hi string) string {
	l, _ := new(big.Int).SetString(lo, 10)
	h, _ := new(big.Int).SetString(hi, 10)
	return new(big.Int).Rsh(new(big.Int).Add(l, h), 1).String()
}

// A configuration no retry can fix (here: no region) closes the channel at
// once, and Err says why, instead of retrying for ever.
func TestConfigErrorsEndTheConsumerAtOnce(t *testing.T) {
	noLeak(t)
	opts := Options{StreamName: "s", AppName: "app-config-error", AWSConfig: &aws.Config{}, Logger: discardLogger()}
	c, err := New(opts)
	require.NoError(t, err)
	ch := c.Consume(context.Background())
	select {
	case _, ok := <-ch:
		require.False(t, ok)
	case <-time.After(30 * time.Second):
		t.Fatal("the channel is still open after 30s")
	}
	require.Error(t, c.Err())
	assert.Contains(t, c.Err().Error(), "Region")
	assert.Contains(t, c.Err().Error(), `stream "s"`, "the first call, DescribeStreamSummary, names the stream")
}

// deniedCheckpoints answers checkpoint writes with AccessDenied.
type deniedCheckpoints struct{ DynamoDBAPI }

func (d deniedCheckpoints) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, o ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	if isCheckpointWrite(in) {
		return nil, &smithy.GenericAPIError{Code: "AccessDeniedException", Message: "denied (test)"}
	}
	return d.DynamoDBAPI.UpdateItem(ctx, in, o...)
}

// A fatal error on a periodic checkpoint write (access denied) ends the
// consumer with it, instead of a warning on every flush.
func TestFatalCheckpointWriteErrorEndsTheConsumer(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 1)
	f.putN(5, 1, "")
	opts := f.options()
	opts.DynamoDB = deniedCheckpoints{f.ddb}
	s := startConsumer(t, opts)
	s.receive(1, 30*time.Second, ackAll)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for r := range s.ch {
			r.Ack()
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("still consuming 30s after checkpoint writes were denied")
	}
	require.Error(t, s.c.Err())
	assert.Contains(t, s.c.Err().Error(), "AccessDeniedException")
}

// pagedShards answers ListShards one shard a page, and makes the first
// page token it hands out expire: that token is refused for good, as an
// expired token is, while tokens of later listings work. (Each token gets a
// suffix of its own, so a new listing's token never equals the expired one.)
type pagedShards struct {
	KinesisAPI
	mu      sync.Mutex
	issued  int
	expired string
	refused atomic.Int32
}

func (k *pagedShards) ListShards(ctx context.Context, in *kinesis.ListShardsInput, o ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if in.NextToken != nil {
		if *in.NextToken == k.expired {
			k.refused.Add(1)
			return nil, &types.ExpiredNextTokenException{Message: aws.String("expired (test)")}
		}
		token, _, _ := strings.Cut(*in.NextToken, "#")
		in.NextToken = &token
	}
	in.MaxResults = aws.Int32(1)
	out, err := k.KinesisAPI.ListShards(ctx, in, o...)
	if err == nil && out.NextToken != nil {
		k.issued++
		out.NextToken = aws.String(fmt.Sprintf("%s#%d", *out.NextToken, k.issued))
		if k.expired == "" {
			k.expired = *out.NextToken
		}
	}
	return out, err
}

// An expired ListShards page token starts the listing over instead of
// being retried for ever.
func TestExpiredShardListingTokenStartsOver(t *testing.T) {
	f := newFixture(t, emu.kinesisLocal, 3)
	k := &pagedShards{KinesisAPI: f.kin}
	opts := f.options()
	opts.Kinesis = k
	c, err := New(opts)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	shards, err := c.listShards(ctx, running, c.streamList()[0])
	require.NoError(t, err, "a retry of the expired token never succeeds")
	assert.Len(t, shards, 3)
	assert.Positive(t, k.refused.Load())
}
