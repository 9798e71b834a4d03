package kcl

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/kclgo/kcl/internal/emulator"
)

func testAWSConfig() aws.Config {
	return aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("000000000000", "secret", ""),
	}
}

// needEmulators skips the test when the emulators are not installed (and
// KCL_REQUIRE_EMULATORS is not set). Every helper that reaches an emulator
// calls it.
func needEmulators(t testing.TB) {
	t.Helper()
	if emuMissing != nil {
		t.Skipf("needs the emulators (./scripts/test): %v", emuMissing)
	}
}

func kinesisClient(t testing.TB, s *emulator.Server) *kinesis.Client {
	needEmulators(t)
	return kinesis.NewFromConfig(testAWSConfig(), func(o *kinesis.Options) { o.BaseEndpoint = aws.String(s.Endpoint) })
}

func dynamoClient(t testing.TB) *dynamodb.Client {
	needEmulators(t)
	return dynamodb.NewFromConfig(testAWSConfig(), func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(emu.dynalite.Endpoint) })
}

// fixture is one test's stream and lease table, with unique names.
type fixture struct {
	t      testing.TB
	kin    *kinesis.Client
	ddb    *dynamodb.Client
	stream string
	app    string
}

var unsafeName = regexp.MustCompile(`[^a-zA-Z0-9_.-]+`)

func uniqueName(t testing.TB) string {
	name := unsafeName.ReplaceAllString(t.Name(), "-")
	if len(name) > 80 {
		name = name[:80]
	}
	return fmt.Sprintf("%s-%06d", name, rand.IntN(1000000))
}

// newFixture creates a stream of the given shard count on server.
func newFixture(t testing.TB, server *emulator.Server, shards int) *fixture {
	t.Helper()
	f := &fixture{t: t, kin: kinesisClient(t, server), ddb: dynamoClient(t), stream: uniqueName(t), app: "app-" + uniqueName(t)}
	ctx := context.Background()
	_, err := f.kin.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: &f.stream, ShardCount: aws.Int32(int32(shards))})
	require.NoError(t, err)
	f.waitActive()
	return f
}

func (f *fixture) waitActive() {
	f.t.Helper()
	w := kinesis.NewStreamExistsWaiter(f.kin, func(o *kinesis.StreamExistsWaiterOptions) {
		o.MinDelay, o.MaxDelay = 50*time.Millisecond, 200*time.Millisecond
	})
	require.NoError(f.t, w.Wait(context.Background(), &kinesis.DescribeStreamInput{StreamName: &f.stream}, time.Minute))
	for {
		out, err := f.kin.DescribeStreamSummary(context.Background(), &kinesis.DescribeStreamSummaryInput{StreamName: &f.stream})
		require.NoError(f.t, err)
		if out.StreamDescriptionSummary.StreamStatus == types.StreamStatusActive {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// options returns Options for this fixture with short timings for tests.
func (f *fixture) options() Options {
	return Options{
		StreamName:         f.stream,
		AppName:            f.app,
		Kinesis:            f.kin,
		DynamoDB:           f.ddb,
		InitialPosition:    TrimHorizon,
		PollInterval:       50 * time.Millisecond,
		LeaseDuration:      time.Second,
		CheckpointInterval: 100 * time.Millisecond,
		ShardSyncInterval:  time.Second,
		ShutdownTimeout:    2 * time.Second,
		Logger:             testLogger(f.t),
	}
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testOutput{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// testOutput writes to the test's log (t.Output, without needing Go 1.25).
type testOutput struct{ t testing.TB }

func (w testOutput) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// put is a record written by a test.
type put struct {
	key, data, shard, seq string
}

// put writes n records; key(i) and data(i) name them.
func (f *fixture) put(n int, key func(i int) string, data func(i int) string) []put {
	f.t.Helper()
	var out []put
	for start := 0; start < n; start += 500 {
		var entries []types.PutRecordsRequestEntry
		for i := start; i < min(n, start+500); i++ {
			entries = append(entries, types.PutRecordsRequestEntry{PartitionKey: aws.String(key(i)), Data: []byte(data(i))})
		}
		for len(entries) > 0 {
			res, err := f.kin.PutRecords(context.Background(), &kinesis.PutRecordsInput{StreamName: &f.stream, Records: entries})
			require.NoError(f.t, err)
			var retry []types.PutRecordsRequestEntry
			for j, r := range res.Records {
				if r.ErrorCode != nil {
					retry = append(retry, entries[j])
					continue
				}
				out = append(out, put{key: *entries[j].PartitionKey, data: string(entries[j].Data), shard: *r.ShardId, seq: *r.SequenceNumber})
			}
			entries = retry
		}
	}
	return out
}

// putN writes n records with keys k0..k(keys-1) and data "key:i".
func (f *fixture) putN(n, keys int, prefix string) []put {
	return f.put(n, func(i int) string { return fmt.Sprintf("k%d", i%keys) }, func(i int) string { return fmt.Sprintf("%sk%d:%06d", prefix, i%keys, i) })
}

// session is one running Consumer in a test.
type session struct {
	t      testing.TB
	c      *Consumer
	ch     <-chan Record
	cancel context.CancelFunc
}

func startConsumer(t testing.TB, opts Options) *session {
	t.Helper()
	c, err := New(opts)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	s := &session{t: t, c: c, ch: c.Consume(ctx), cancel: cancel}
	t.Cleanup(func() { s.stop(nil) })
	return s
}

// receive takes n records, acking each that ack says to, or fails after timeout.
func (s *session) receive(n int, timeout time.Duration, ack func(Record) bool) []Record {
	s.t.Helper()
	var got []Record
	deadline := time.After(timeout)
	for len(got) < n {
		select {
		case r, ok := <-s.ch:
			if !ok {
				s.t.Fatalf("channel closed after %d of %d records: %v", len(got), n, s.c.Err())
			}
			got = append(got, r)
			if ack == nil || ack(r) {
				r.Ack()
			}
		case <-deadline:
			s.t.Fatalf("received %d of %d records within %v", len(got), n, timeout)
		}
	}
	return got
}

// quiet fails if a record arrives within d.
// ends waits up to d for a consumer that must end on its own, with no
// record delivered, and returns its Err; it fails the test (after cancelling
// the consumer) if the channel is still open then.
func (s *session) ends(d time.Duration) error {
	s.t.Helper()
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		for r := range s.ch {
			s.t.Errorf("unexpected record %s/%s %q", r.ShardID, r.SequenceNumber, r.Data)
		}
	}()
	select {
	case <-closed:
	case <-time.After(d):
		s.cancel()
		<-closed
		s.t.Fatalf("still running after %v", d)
	}
	return s.c.Err()
}

func (s *session) quiet(d time.Duration) {
	s.t.Helper()
	select {
	case r, ok := <-s.ch:
		if ok {
			s.t.Fatalf("unexpected record %s/%s %q", r.ShardID, r.SequenceNumber, r.Data)
		}
	case <-time.After(d):
	}
}

// stop cancels the consumer and waits for the channel to close, acking what
// arrives meanwhile if ack says so. It returns Err.
func (s *session) stop(ack func(Record) bool) error {
	s.cancel()
	for r := range s.ch {
		if ack != nil && ack(r) {
			r.Ack()
		}
	}
	return s.c.Err()
}

func ackAll(Record) bool { return true }

// checkShardOrder fails unless each shard's records arrive in increasing
// (sequence number, sub-sequence number) order.
func checkShardOrder(t testing.TB, recs []Record) {
	t.Helper()
	last := map[string]Record{}
	for _, r := range recs {
		if prev, ok := last[r.ShardID]; ok {
			inOrder := seqLess(prev.SequenceNumber, r.SequenceNumber) ||
				prev.SequenceNumber == r.SequenceNumber && prev.SubSequenceNumber < r.SubSequenceNumber
			require.True(t, inOrder, "shard %s: %s/%d delivered after %s/%d", r.ShardID, r.SequenceNumber, r.SubSequenceNumber, prev.SequenceNumber, prev.SubSequenceNumber)
		}
		last[r.ShardID] = r
	}
}

// seqLess compares two sequence numbers (decimal strings).
func seqLess(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

func dataOf(recs []Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = string(r.Data)
	}
	return out
}

func putData(ps []put) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.data
	}
	return out
}

// leaseItems reads the fixture's lease table.
func (f *fixture) leaseItems() map[string]map[string]ddbtypes.AttributeValue {
	f.t.Helper()
	out, err := f.ddb.Scan(context.Background(), &dynamodb.ScanInput{TableName: &f.app, ConsistentRead: aws.Bool(true)})
	require.NoError(f.t, err)
	items := map[string]map[string]ddbtypes.AttributeValue{}
	for _, it := range out.Items {
		if key := it[attrLeaseKey].(*ddbtypes.AttributeValueMemberS).Value; !strings.HasPrefix(key, workerKeyPrefix) {
			items[key] = it
		}
	}
	return items
}

func str(item map[string]ddbtypes.AttributeValue, attr string) string {
	switch v := item[attr].(type) {
	case *ddbtypes.AttributeValueMemberS:
		return v.Value
	case *ddbtypes.AttributeValueMemberN:
		return v.Value
	}
	return ""
}

// noLeak checks, at the end of the test, that no goroutine started by it
// outlives it. Only the SDK clients' idle HTTP connections are let be: the
// read and write loops of a kept-alive connection (HTTP/1.1 or HTTP/2),
// which a client keeps for its next call. A goroutine of kcl blocked on a
// socket read anywhere else is a leak.
func noLeak(t *testing.T) {
	opts := []goleak.Option{
		goleak.IgnoreCurrent(),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreAnyFunction("net/http.(*http2ClientConn).readLoop"),
	}
	t.Cleanup(func() { goleak.VerifyNone(t, opts...) })
}

var _ sync.Mutex

func dynamoDescribe(table string) *dynamodb.DescribeTableInput {
	return &dynamodb.DescribeTableInput{TableName: &table}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// lastSeqPerShard returns the sequence number of the last record written to
// each shard.
func lastSeqPerShard(puts []put) map[string]string {
	last := map[string]string{}
	for _, p := range puts {
		last[p.shard] = p.seq
	}
	return last
}

// run runs p on records sent one at a time, as tests send them. The
// records already waiting in in are handed over at once, the later ones
// as they come, in chunks of those waiting together; closing in ends the
// run as the consumer's shutdown does: the chunks the dispatcher has not
// taken are taken back (takeBack), then finished and the channel close
// (runChunks).
func (p *processor) run(in <-chan Record) error {
	chunks, finished := make(chan *recordChunk, 1024), make(chan struct{})
	end := func() {
		for taken := false; !taken; {
			select {
			case ch := <-chunks:
				putChunk(ch)
			default:
				taken = true
			}
		}
		close(finished)
		close(chunks)
	}
	open := true
	for open && len(in) > 0 { // what is already there: as delivered before the run
		r, ok := <-in
		if !ok {
			open = false
			break
		}
		var ch *recordChunk
		ch, open = chunkOf(in, r)
		chunks <- ch
	}
	go func() {
		for open {
			r, ok := <-in
			if !ok {
				break
			}
			var ch *recordChunk
			ch, open = chunkOf(in, r)
			chunks <- ch
		}
		end()
	}()
	return p.runChunks(chunks, finished)
}

// chunkOf returns a chunk of first and the records waiting after it in
// in, and whether in is still open.
func chunkOf(in <-chan Record, first Record) (ch *recordChunk, open bool) {
	ch = getChunk()
	ch.buf[0] = first
	n := 1
	defer func() { ch.recs = ch.buf[:n] }()
	for n < deliverChunk {
		select {
		case r, ok := <-in:
			if !ok {
				return ch, false
			}
			ch.buf[n] = r
			n++
			continue
		default:
		}
		break
	}
	return ch, true
}
