package kcl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kclgo/kcl/internal/kinesisfake"
	"github.com/kclgo/kcl/internal/leaseitem"
)

// Options.Streams: several streams read as one group through one lease
// table of the Java KCL's multi-stream layout (streams.go).

// streamFixtures creates one stream per entry of shards, all of one
// application (one lease table: the first fixture's).
func streamFixtures(t *testing.T, shards ...int) []*fixture {
	t.Helper()
	var fs []*fixture
	for _, n := range shards {
		f := newFixture(t, emu.kinesisLocal, n)
		if len(fs) > 0 {
			f.app = fs[0].app
		}
		fs = append(fs, f)
	}
	return fs
}

// streamsOptions returns the first fixture's options reading the streams of
// fs by Streams.
func streamsOptions(fs ...*fixture) Options {
	opts := fs[0].options()
	opts.StreamName = ""
	for _, f := range fs {
		opts.Streams = append(opts.Streams, f.stream)
	}
	return opts
}

// javaStreamID returns the stream's ARN and the identifier the Java KCL's
// multi-stream mode gives it: account:stream:creationEpoch, the epoch in
// seconds (the Java KCL's StreamIdentifier.serialize).
func (f *fixture) javaStreamID() (arn, id string) {
	f.t.Helper()
	out, err := f.kin.DescribeStreamSummary(context.Background(), &kinesis.DescribeStreamSummaryInput{StreamName: &f.stream})
	require.NoError(f.t, err)
	sum := out.StreamDescriptionSummary
	arn = aws.ToString(sum.StreamARN)
	account := strings.Split(arn, ":")[4]
	return arn, fmt.Sprintf("%s:%s:%d", account, f.stream, sum.StreamCreationTimestamp.Unix())
}

// javaMultiStreamItem is a lease item as the Java KCL's multi-stream mode
// writes it: the 2.x lease (javaLease.item, DLS:68-131) keyed
// streamIdentifier:shardId (leases/MultiStreamLease.java:55-59;
// leases/HierarchicalShardSyncer.java:771-787), plus streamName (the
// identifier) and shardId (the bare shard ID)
// (the Java KCL's DynamoDBMultiStreamLeaseSerializer); the parents stay
// bare shard IDs (its DynamoDBLeaseSerializer).
func javaMultiStreamItem(streamID string, l javaLease) map[string]ddbtypes.AttributeValue {
	shard := l.key
	it := l.item()
	it["leaseKey"] = s(streamID + ":" + shard)
	it["streamName"] = s(streamID)
	it["shardId"] = s(shard)
	return it
}

// checkMultiStreamItems fails unless every lease item has the multi-stream
// layout the Java KCL reads (MultiStreamLease's @NonNull streamName and
// shardId, MultiStreamLease.java:35-39): the key is streamName:shardId, and
// parents are bare shard IDs.
func checkMultiStreamItems(t *testing.T, items map[string]map[string]ddbtypes.AttributeValue) {
	t.Helper()
	checkJavaReadable(t, items, nil)
	for key, it := range items {
		assert.Equal(t, key, str(it, "streamName")+":"+str(it, "shardId"), "lease %q: streamName and shardId", key)
		assert.NotContains(t, str(it, "shardId"), ":", "lease %q: shardId is bare", key)
		if p, ok := it["parentShardId"].(*ddbtypes.AttributeValueMemberSS); ok {
			for _, id := range p.Value {
				assert.NotContains(t, id, ":", "lease %q: parents are stored bare", key)
			}
		}
	}
}

// received is one record as a worker received it, and when.
type received struct {
	rec    Record
	worker string
	at     time.Time
}

// collector runs in-process workers and records every delivery, with its
// time of receipt. Each worker acks every record as it receives it.
type collector struct {
	t         *testing.T
	mu        sync.Mutex
	got       []received
	consumers map[string]*Consumer
	stops     map[string]func()
}

func newCollector(t *testing.T) *collector {
	col := &collector{t: t, consumers: map[string]*Consumer{}, stops: map[string]func(){}}
	t.Cleanup(func() {
		col.mu.Lock()
		ids := slices.Collect(maps.Keys(col.stops))
		col.mu.Unlock()
		for _, id := range ids {
			col.stop(id)
		}
	})
	return col
}

func (col *collector) start(id string, opts Options) *Consumer {
	opts.WorkerID = id
	c, err := New(opts)
	require.NoError(col.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	ch := c.Consume(ctx)
	go func() {
		defer close(done)
		for r := range ch {
			col.mu.Lock()
			col.got = append(col.got, received{rec: r, worker: id, at: time.Now()})
			col.mu.Unlock()
			r.Ack()
		}
	}()
	col.mu.Lock()
	col.consumers[id] = c
	col.stops[id] = func() { cancel(); <-done }
	col.mu.Unlock()
	return c
}

// stop shuts a worker down gracefully and returns its Err.
func (col *collector) stop(id string) error {
	col.mu.Lock()
	stop, c := col.stops[id], col.consumers[id]
	delete(col.stops, id)
	col.mu.Unlock()
	if stop == nil {
		return nil
	}
	stop()
	return c.Err()
}

func (col *collector) all() []received {
	col.mu.Lock()
	defer col.mu.Unlock()
	return slices.Clone(col.got)
}

func (col *collector) held() map[string]int {
	col.mu.Lock()
	defer col.mu.Unlock()
	out := map[string]int{}
	for id := range col.stops {
		out[id] = len(col.consumers[id].held.list())
	}
	return out
}

// waitFor waits until every record of want (data -> stream ARN) was
// delivered at least once.
func (col *collector) waitFor(want map[string]string, timeout time.Duration) {
	col.t.Helper()
	missing := len(want)
	require.Eventually(col.t, func() bool {
		seen := map[string]bool{}
		for _, d := range col.all() {
			if _, ok := want[string(d.rec.Data)]; ok {
				seen[string(d.rec.Data)] = true
			}
		}
		missing = len(want) - len(seen)
		return missing == 0
	}, timeout, 20*time.Millisecond, "records not delivered")
}

// checkStreamDeliveries fails unless every record of want (data -> stream
// ARN) was delivered, each with its stream's ARN, nothing else was
// delivered, and each worker delivered each shard of each stream in order.
func checkStreamDeliveries(t *testing.T, got []received, want map[string]string) {
	t.Helper()
	seen := map[string]bool{}
	last := map[string]Record{} // by worker, stream and shard
	for _, d := range got {
		r := d.rec
		arn, ok := want[string(r.Data)]
		if !assert.True(t, ok, "record %q was never written", r.Data) {
			continue
		}
		seen[string(r.Data)] = true
		assert.Equal(t, arn, r.StreamARN, "record %q: StreamARN", r.Data)
		assert.NotContains(t, r.ShardID, ":", "record %q: ShardID is the bare shard ID", r.Data)
		key := d.worker + " " + r.StreamARN + " " + r.ShardID
		if prev, ok := last[key]; ok {
			inOrder := seqLess(prev.SequenceNumber, r.SequenceNumber) ||
				prev.SequenceNumber == r.SequenceNumber && prev.SubSequenceNumber < r.SubSequenceNumber
			assert.True(t, inOrder, "%s: %s/%d delivered after %s/%d", key, r.SequenceNumber, r.SubSequenceNumber, prev.SequenceNumber, prev.SubSequenceNumber)
		}
		last[key] = r
	}
	assert.Len(t, seen, len(want), "every record written is delivered at least once")
}

// Three streams, two workers: the workers share the shards of all three by
// fair share, the second joining by hand-offs; every record of every stream is delivered, with its stream's
// ARN, in order per shard; a shard split in one stream has its children
// read after it; the lease table has the Java KCL's multi-stream layout; and
// Stats name each shard's stream.
func TestStreamsThreeStreamsTwoWorkersWithResharding(t *testing.T) {
	noLeak(t)
	fs := streamFixtures(t, 2, 2, 1)
	arns, ids := make([]string, len(fs)), make([]string, len(fs))
	for i, f := range fs {
		arns[i], ids[i] = f.javaStreamID()
	}
	want := map[string]string{} // data -> stream ARN
	putAll := func(prefix string) {
		for i, f := range fs {
			for _, p := range f.putN(60, 12, fmt.Sprintf("%s%d-", prefix, i)) {
				want[p.data] = arns[i]
			}
		}
	}
	putAll("a")
	col := newCollector(t)
	opts := streamsOptions(fs...)
	col.start("w1", opts)
	require.Eventually(t, func() bool { return col.held()["w1"] == 5 }, 30*time.Second, 20*time.Millisecond, "one worker takes the 5 shards of the 3 streams")
	col.start("w2", opts) // a joiner: shards of any stream are handed over to it
	require.Eventually(t, func() bool {
		held := col.held()
		return held["w1"]+held["w2"] == 5 && held["w1"] >= 2 && held["w2"] >= 2
	}, 30*time.Second, 20*time.Millisecond, "the two workers share the 5 shards of the 3 streams: %v", col.held())
	col.waitFor(want, 60*time.Second)

	for _, id := range []string{"w1", "w2"} {
		st := col.consumers[id].Stats()
		require.Len(t, st.Shards, 5, "%s: Stats lists every shard of every stream", id)
		held := 0
		for _, sh := range st.Shards {
			assert.Contains(t, arns, sh.StreamARN, "%s: shard %s names its stream", id, sh.ShardID)
			assert.NotContains(t, sh.ShardID, ":", "%s: ShardID is the bare shard ID", id)
			if sh.Held {
				held++
			}
		}
		assert.Equal(t, st.LeasesHeld, held)
	}

	// Split a shard of the first stream: what is written after it goes to
	// the children, which are read only once the parent is read to its end.
	fs[0].split()
	putAll("b")
	col.waitFor(want, 60*time.Second)
	require.Eventually(t, func() bool {
		held := col.held()
		return held["w1"] == 3 && held["w2"] == 3
	}, 30*time.Second, 20*time.Millisecond, "the children's leases are shared too: %v", col.held())
	require.NoError(t, col.stop("w1"))
	require.NoError(t, col.stop("w2"))

	got := col.all()
	checkStreamDeliveries(t, got, want)
	out, err := fs[0].kin.ListShards(context.Background(), &kinesis.ListShardsInput{StreamName: &fs[0].stream})
	require.NoError(t, err)
	children := map[string]string{} // child -> parent
	for _, sh := range out.Shards {
		if p := aws.ToString(sh.ParentShardId); p != "" {
			children[*sh.ShardId] = p
		}
	}
	require.Len(t, children, 2)
	var parent string
	for _, p := range children {
		parent = p
	}
	var parentLast, childFirst time.Time
	for _, d := range got {
		if d.rec.StreamARN != arns[0] {
			continue
		}
		switch _, child := children[d.rec.ShardID]; {
		case d.rec.ShardID == parent && d.at.After(parentLast):
			parentLast = d.at
		case child && (childFirst.IsZero() || d.at.Before(childFirst)):
			childFirst = d.at
		}
	}
	require.False(t, childFirst.IsZero(), "the children were read")
	assert.True(t, parentLast.Before(childFirst), "the parent is read to its end before its children")

	// The table, as the Java KCL's multi-stream mode writes it.
	items := fs[0].leaseItems()
	checkMultiStreamItems(t, items)
	assert.Len(t, items, 7, "a lease per shard: 5, and the two children")
	for child, p := range children {
		it := items[ids[0]+":"+child]
		require.NotNil(t, it, "the child %s has its lease", child)
		assert.Equal(t, &ddbtypes.AttributeValueMemberSS{Value: []string{p}}, it["parentShardId"], "the parent is stored bare")
		assert.Equal(t, checkpointShardEnd, str(items[ids[0]+":"+p], "checkpoint"))
	}
	for i, f := range fs {
		for shard := range f.shardStarts() {
			assert.Contains(t, items, ids[i]+":"+shard)
		}
	}
}

// A worker of a multi-stream group killed with SIGKILL: the other worker
// reads all of its shards again, in every stream, and no record written,
// before or after the kill, is lost.
func TestStreamsKilledWorkersShardsAreReadAgain(t *testing.T) {
	noLeak(t)
	const leaseDuration = 2 * time.Second
	fs := streamFixtures(t, 2, 1, 1)
	arns := make([]string, len(fs))
	var names []string
	for i, f := range fs {
		arns[i], _ = f.javaStreamID()
		names = append(names, f.stream)
	}
	want := map[string]string{}
	shardsWritten := map[string]map[string]bool{} // prefix -> stream/shard written to
	putAll := func(prefix string) {
		shardsWritten[prefix] = map[string]bool{}
		for i, f := range fs {
			for _, p := range f.putN(40, 40, fmt.Sprintf("%s%d-", prefix, i)) {
				want[p.data] = arns[i]
				shardsWritten[prefix][arns[i]+"/"+p.shard] = true
			}
		}
	}
	putAll("a")
	w := startWorkerProcess(t, fs[0], "doomed", 0, io.Discard, "KCL_TEST_STREAMS="+strings.Join(names, ","), "KCL_TEST_LEASE="+leaseDuration.String())
	printed := map[string]string{} // data -> the doomed worker's streamARN/shardID
	linesDone := make(chan struct{})
	go func() {
		defer close(linesDone)
		log := newWorkerLog()
		for line := range w.lines {
			if d, ok := log.add(line); ok {
				printed[d.data] = d.shard
			}
		}
	}()
	col := newCollector(t)
	opts := streamsOptions(fs...)
	opts.LeaseDuration = leaseDuration
	survivor := col.start("survivor", opts)
	require.Eventually(t, func() bool {
		owners := map[string]int{}
		for _, sh := range survivor.Stats().Shards {
			owners[sh.Owner]++
		}
		return owners["survivor"] == 2 && owners["doomed"] == 2
	}, 30*time.Second, 20*time.Millisecond, "the two workers share the 4 shards of the 3 streams")

	require.NoError(t, w.cmd.Process.Signal(syscall.SIGKILL))
	killed := time.Now()
	<-linesDone
	putAll("b")
	require.Len(t, shardsWritten["b"], 4, "records written after the kill reach every shard of every stream")
	afterKill := map[string]string{}
	for data, arn := range want {
		if strings.HasPrefix(data, "b") {
			afterKill[data] = arn
		}
	}
	col.waitFor(afterKill, 10*leaseDuration)
	t.Logf("a SIGKILLed worker's shards of 3 streams were read again %v after the kill (LeaseDuration %v)", time.Since(killed).Round(10*time.Millisecond), leaseDuration)
	require.Equal(t, 4, col.held()["survivor"], "the survivor holds every shard")
	require.NoError(t, col.stop("survivor"))

	got := col.all()
	var byWorker []received
	for data, shard := range printed { // streamARN/shardID
		arn := shard[:strings.LastIndexByte(shard, '/')]
		assert.Equal(t, want[data], arn, "the killed worker delivered %q with its stream's ARN", data)
	}
	for _, d := range got {
		if _, ok := printed[string(d.rec.Data)]; !ok {
			byWorker = append(byWorker, d)
		}
	}
	// Every record was delivered by one worker or the other; the survivor's
	// deliveries are checked for ARN and order.
	missing := 0
	delivered := map[string]bool{}
	for data := range printed {
		delivered[data] = true
	}
	for _, d := range got {
		delivered[string(d.rec.Data)] = true
	}
	for data := range want {
		if !delivered[data] {
			missing++
		}
	}
	assert.Zero(t, missing, "records delivered by neither worker")
	survivorWant := map[string]string{}
	for _, d := range got {
		survivorWant[string(d.rec.Data)] = want[string(d.rec.Data)]
	}
	checkStreamDeliveries(t, got, survivorWant)
	t.Logf("the killed worker printed %d records; the survivor delivered %d, %d of them not printed by the killed worker", len(printed), len(got), len(byWorker))
}

// A Java KCL application in multi-stream mode left its lease table: stream
// A split after its parent was checkpointed mid-shard (children leases at
// TRIM_HORIZON with bare parents), stream B checkpointed mid-shard by a
// worker that died, and stream C, which kcl is not told to read. kcl, with
// Streams A, B and D (new), resumes every shard of A and B right after its
// checkpoint and sub-sequence number, A's children after their parent,
// starts D at InitialPosition, leaves C's lease alone, and leaves a table a
// Java multi-stream worker reads.
func TestStreamsResumeFromJavaMultiStreamTable(t *testing.T) {
	noLeak(t)
	fs := streamFixtures(t, 2, 1, 1, 1)
	a, b, c, d := fs[0], fs[1], fs[2], fs[3]
	js := newJavaStream(a)
	arnA, idA := a.javaStreamID()
	_, idB := b.javaStreamID()
	_, idC := c.javaStreamID()
	_, idD := d.javaStreamID()
	bPuts, cPuts, dPuts := b.putTo("0", 10, "bee"), c.putTo("0", 10, "cee"), d.putTo("0", 10, "dee")
	a.createJavaLeaseTable()
	for _, l := range js.javaLeases(false, true) {
		a.putItem(javaMultiStreamItem(idA, l))
	}
	a.putItem(javaMultiStreamItem(idB, javaLease{key: bPuts[0].shard, owner: "java-worker-2", counter: 7, switches: 1, checkpoint: bPuts[2].seq}))
	// C's lease names kcl's worker as its owner (an earlier run that read C):
	// even so, neither taken nor released.
	cItem := javaMultiStreamItem(idC, javaLease{key: cPuts[0].shard, owner: "kcl-1", counter: 9, checkpoint: cPuts[3].seq})
	a.putItem(cItem)

	opts := streamsOptions(a, b, d) // not c; d is new
	opts.WorkerID = "kcl-1"
	sess := startConsumer(t, opts)
	want := append(append(js.want(), putData(bPuts[3:])...), putData(dPuts)...)
	got := sess.receive(len(want), 30*time.Second, ackAll)
	sess.quiet(300 * time.Millisecond)
	require.NoError(t, sess.stop(nil))
	require.ElementsMatch(t, want, dataOf(got), "right after each Java checkpoint; the new stream from InitialPosition")
	var fromA []Record
	for _, r := range got {
		if r.StreamARN == arnA {
			fromA = append(fromA, r)
		}
	}
	checkResumed(t, fromA, js.want(), js.parent, js.child1, js.child2)

	items := a.leaseItems()
	checkMultiStreamItems(t, items)
	assert.Equal(t, cItem, items[idC+":"+cPuts[0].shard], "the lease of a stream not in Streams is left alone")
	assert.Equal(t, checkpointShardEnd, str(items[idA+":"+js.parent], "checkpoint"))
	assert.Equal(t, bPuts[9].seq, str(items[idB+":"+bPuts[0].shard], "checkpoint"))
	assert.Equal(t, dPuts[9].seq, str(items[idD+":"+dPuts[0].shard], "checkpoint"), "the new stream's lease, created and checkpointed")
	assert.Len(t, items, 7, "A's four leases, B's, C's and D's: %v", slices.Sorted(maps.Keys(items)))
}

// Streams on a table of single-stream leases, or a single stream on a table
// of multi-stream leases, ends the consumer at start with an error naming
// the table, writing no lease.
func TestStreamsAndSingleStreamTablesNeverMix(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 1)
	_, id := f.javaStreamID()
	for _, tc := range []struct {
		name string
		item javaLease
		key  func(javaLease) map[string]ddbtypes.AttributeValue
		opts func() Options
		says string
	}{
		{"Streams on a single-stream table", javaLease{key: "shardId-000000000000", counter: 3, checkpoint: checkpointTrimHorizon},
			javaLease.item, func() Options { return streamsOptions(f) }, "holds single-stream leases"},
		{"StreamName on a multi-stream table", javaLease{key: "shardId-000000000000", counter: 3, checkpoint: checkpointTrimHorizon},
			func(l javaLease) map[string]ddbtypes.AttributeValue { return javaMultiStreamItem(id, l) }, f.options, "holds multi-stream leases"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.app = "app-" + uniqueName(t)
			f.createJavaLeaseTable()
			item := tc.key(tc.item)
			f.putItem(item)
			opts := tc.opts()
			opts.AppName = f.app
			c, err := New(opts)
			require.NoError(t, err)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			for range c.Consume(ctx) {
				t.Fatal("a record delivered")
			}
			require.NoError(t, ctx.Err(), "the consumer ended by itself, at start")
			err = c.Err()
			require.Error(t, err)
			assert.True(t, errors.Is(err, errTableLayout), "%v", err)
			assert.Contains(t, err.Error(), f.app, "names the table")
			assert.Contains(t, err.Error(), tc.says)
			items := f.leaseItems()
			assert.Len(t, items, 1, "no lease written")
			assert.Equal(t, item, items[str(item, "leaseKey")])
		})
	}
}

// A stream of Streams that does not exist ends the consumer; Err names it.
func TestStreamsMissingStreamClosesWithErrNamingIt(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 1)
	opts := streamsOptions(f)
	opts.Streams = append(opts.Streams, "no-such-stream-"+uniqueName(t)[:8])
	c, err := New(opts)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for range c.Consume(ctx) {
	}
	require.NoError(t, ctx.Err())
	require.Error(t, c.Err())
	assert.Contains(t, c.Err().Error(), opts.Streams[1])
	assert.True(t, isNotFound(c.Err()), "%v", c.Err())
}

// Enhanced fan-out over several streams: one stream consumer per stream,
// each named ConsumerName, and each shard read from its own stream's.
func TestStreamsFanOut(t *testing.T) {
	noLeak(t)
	fs := streamFixtures(t, 2, 1)
	want := map[string]string{}
	for i, f := range fs {
		arn, _ := f.javaStreamID()
		for _, p := range f.putN(40, 8, fmt.Sprintf("f%d-", i)) {
			want[p.data] = arn
		}
	}
	opts := streamsOptions(fs...)
	opts.Kinesis = fanOutClient()
	opts.EnhancedFanOut = true
	col := newCollector(t)
	col.start("w1", opts)
	col.waitFor(want, 60*time.Second)
	require.NoError(t, col.stop("w1"))
	checkStreamDeliveries(t, col.all(), want)
	for _, f := range fs {
		out, err := f.kin.DescribeStreamConsumer(context.Background(), &kinesis.DescribeStreamConsumerInput{StreamARN: describeARN(t, f), ConsumerName: aws.String(fs[0].app)})
		require.NoError(t, err, "a consumer registered on %s", f.stream)
		assert.Equal(t, fs[0].app, aws.ToString(out.ConsumerDescription.ConsumerName))
	}
}

// Record.StreamARN is set with a single stream too, from
// DescribeStreamSummary at start; and several streams in one in-memory
// table (no AppName) each keep their own shards apart, though shard IDs
// repeat across streams.
func TestStreamARNIsSetInEveryMode(t *testing.T) {
	kin := kinesisfake.New(kinesisfake.Options{})
	arns := map[string]string{}
	for _, name := range []string{"orders", "payments"} {
		arns[name] = kin.CreateStream(name, 2)
		for i := range 20 {
			_, _, err := kin.PutRecord(name, fmt.Sprintf("k%d", i), fmt.Appendf(nil, "%s %d", name, i))
			require.NoError(t, err)
		}
	}
	for _, tc := range []struct {
		name    string
		opts    Options
		streams []string
	}{
		{"StreamName", Options{StreamName: "orders"}, []string{"orders"}},
		{"StreamARN", Options{StreamARN: arns["payments"]}, []string{"payments"}},
		{"Streams", Options{Streams: []string{"orders", arns["payments"]}}, []string{"orders", "payments"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.opts
			opts.Kinesis, opts.InitialPosition, opts.PollInterval, opts.Logger = kin, TrimHorizon, 10*time.Millisecond, testLogger(t)
			s := startConsumer(t, opts)
			got := s.receive(20*len(tc.streams), 10*time.Second, ackAll)
			s.quiet(200 * time.Millisecond)
			require.NoError(t, s.stop(nil))
			want := map[string]string{}
			for _, name := range tc.streams {
				for i := range 20 {
					want[fmt.Sprintf("%s %d", name, i)] = arns[name]
				}
			}
			ds := make([]received, len(got))
			for i, r := range got {
				ds[i] = received{rec: r, worker: "w"}
			}
			checkStreamDeliveries(t, ds, want)
		})
	}
}

// A stream of Streams with no lease yet, in a table holding the leases of a
// stream of the same account and name but another creation time (deleted
// and created again, or given another epoch by a Java application): those
// leases are another stream's, left alone, and kcl says so; the stream is
// read from its first record whatever InitialPosition says (the group was
// reading that name).
func TestStreamsWarnOfAnotherIncarnationOfAStream(t *testing.T) {
	kin := kinesisfake.New(kinesisfake.Options{})
	arn := kin.CreateStream("orders", 1)
	for i := range 5 {
		_, _, err := kin.PutRecord("orders", "k", fmt.Appendf(nil, "order %d", i))
		require.NoError(t, err)
	}
	id, ok := leaseitem.StreamID(arn, time.Unix(1, 0))
	require.True(t, ok)
	old := lease{shardID: id + ":shardId-000000000000", owner: "java-worker-1", counter: 4, checkpoint: checkpoint{seq: "49590338271490256608559692538361571095921575989136588898"}}
	var logs bytes.Buffer
	c, err := New(Options{Streams: []string{"orders"}, Kinesis: kin, InitialPosition: Latest, PollInterval: 10 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, nil))})
	require.NoError(t, err)
	table := newMemLeases()
	table.leases[old.shardID] = old
	c.table = table
	ctx, cancel := context.WithCancel(context.Background())
	ch := c.Consume(ctx)
	s := &session{t: t, c: c, ch: ch, cancel: cancel}
	got := s.receive(5, 10*time.Second, ackAll)
	require.NoError(t, s.stop(nil))
	assert.Equal(t, []string{"order 0", "order 1", "order 2", "order 3", "order 4"}, dataOf(got))
	assert.Contains(t, logs.String(), "lease table holds leases of an earlier stream of this name; they are left alone and this one is read from its first record")
	assert.Equal(t, old, table.leases[old.shardID], "the other stream's lease is left alone")
}

// Expired iterators over several streams: each is reopened in its own
// stream after the last record delivered (shard IDs are the same in both
// streams), losing and repeating nothing.
func TestStreamsExpiredIteratorsLoseAndRepeatNothing(t *testing.T) {
	noLeak(t)
	fs := streamFixtures(t, 1, 1)
	var want []string
	byStream := map[string][]string{}
	for i, f := range fs {
		arn, _ := f.javaStreamID()
		for _, p := range f.putN(40, 3, fmt.Sprintf("x%d-", i)) {
			want = append(want, p.data)
			byStream[arn] = append(byStream[arn], p.data)
		}
	}
	faulty := &faultyKinesis{KinesisAPI: fs[0].kin, expireAt: map[int64]bool{2: true, 4: true, 5: true, 7: true, 9: true}}
	opts := streamsOptions(fs...)
	opts.Kinesis = faulty
	opts.MaxRecords = 7
	s := startConsumer(t, opts)
	got := s.receive(len(want), 30*time.Second, ackAll)
	s.quiet(300 * time.Millisecond)
	require.NoError(t, s.stop(nil))
	gotByStream := map[string][]string{}
	for _, r := range got {
		gotByStream[r.StreamARN] = append(gotByStream[r.StreamARN], string(r.Data))
	}
	assert.Equal(t, byStream, gotByStream, "every record once, in order, in its stream")
	assert.EqualValues(t, 5, faulty.injected.Load())
}

// A stream listed twice in Streams, by name and by ARN, is found at start
// (New cannot tell without asking Kinesis): Err says so.
func TestStreamsListingAStreamTwiceIsAnError(t *testing.T) {
	kin := kinesisfake.New(kinesisfake.Options{})
	arn := kin.CreateStream("orders", 1)
	c, err := New(Options{Streams: []string{"orders", arn}, Kinesis: kin, Logger: testLogger(t)})
	require.NoError(t, err)
	for range c.Consume(context.Background()) {
	}
	require.Error(t, c.Err())
	assert.Contains(t, c.Err().Error(), "are the same stream")
	assert.Equal(t, 1, strings.Count(c.Err().Error(), "kcl:"), "%v", c.Err())
}
