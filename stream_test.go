package kcl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
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

func TestDrainInShardOrder(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 4)
	puts := f.putN(400, 16, "")
	s := startConsumer(t, f.options())
	got := s.receive(len(puts), 30*time.Second, ackAll)
	checkShardOrder(t, got)
	require.ElementsMatch(t, putData(puts), dataOf(got))
	s.quiet(300 * time.Millisecond)
	require.NoError(t, s.stop(nil))
}

func TestInMemoryLeasesWithoutAppName(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 2)
	puts := f.putN(100, 8, "")
	opts := f.options()
	opts.AppName, opts.DynamoDB = "", nil
	s := startConsumer(t, opts)
	got := s.receive(len(puts), 30*time.Second, ackAll)
	checkShardOrder(t, got)
	require.ElementsMatch(t, putData(puts), dataOf(got))
	require.NoError(t, s.stop(nil))
	_, err := f.ddb.DescribeTable(context.Background(), dynamoDescribe(f.app))
	require.Error(t, err, "no lease table is created without AppName")
}

func TestRestartResumesRightAfterTheCheckpoint(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 3)
	first := f.putN(150, 12, "a")
	s := startConsumer(t, f.options())
	got := s.receive(len(first), 30*time.Second, ackAll)
	require.ElementsMatch(t, putData(first), dataOf(got))
	require.NoError(t, s.stop(nil))

	second := f.putN(90, 12, "b")
	s = startConsumer(t, f.options())
	got = s.receive(len(second), 30*time.Second, ackAll)
	require.ElementsMatch(t, putData(second), dataOf(got), "exactly the records after the checkpoint, none again")
	s.quiet(500 * time.Millisecond)
	require.NoError(t, s.stop(nil))
}

func TestOutOfOrderAcksCheckpointOnlyTheContiguousPrefix(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 1)
	puts := f.putN(20, 4, "")
	opts := f.options()
	opts.ShutdownTimeout = 300 * time.Millisecond
	s := startConsumer(t, opts)
	got := s.receive(len(puts), 30*time.Second, func(Record) bool { return false })
	// Ack from many goroutines, in reverse, all but record 7.
	var wg sync.WaitGroup
	for i := len(got) - 1; i >= 0; i-- {
		if i != 7 {
			wg.Add(1)
			go func() { defer wg.Done(); got[i].Ack() }()
		}
	}
	wg.Wait()
	require.NoError(t, s.stop(nil))

	item := f.leaseItems()[puts[0].shard]
	assert.Equal(t, puts[6].seq, str(item, attrCheckpoint), "the checkpoint stops before the unacked record")
	assert.Empty(t, str(item, attrOwner), "the lease is released on shutdown")

	s = startConsumer(t, opts)
	again := s.receive(13, 30*time.Second, ackAll)
	assert.Equal(t, putData(puts[7:]), dataOf(again), "redelivery starts at the unacked record")
	require.NoError(t, s.stop(nil))
}

func TestUnackedRecordsComeBackAfterRestart(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 2)
	puts := f.putN(40, 8, "")
	opts := f.options()
	opts.ShutdownTimeout = 200 * time.Millisecond
	s := startConsumer(t, opts)
	got := s.receive(len(puts), 30*time.Second, func(Record) bool { return false })
	require.NoError(t, s.stop(nil))

	s = startConsumer(t, opts)
	again := s.receive(len(puts), 30*time.Second, ackAll)
	require.ElementsMatch(t, dataOf(got), dataOf(again))
	require.NoError(t, s.stop(nil))
}

func TestShutdownWaitsForAcksThenCheckpointsAndReleases(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 2)
	puts := f.putN(60, 6, "")
	opts := f.options()
	opts.CheckpointInterval = time.Hour // only the shutdown writes checkpoints
	opts.ShutdownTimeout = 10 * time.Second
	opts.BufferSize = -1 // unbuffered: a record leaves kcl only when received
	opts.WorkerID = "stopping"
	s := startConsumer(t, opts)
	got := s.receive(20, 30*time.Second, func(Record) bool { return false })
	s.cancel()
	// Shutdown has begun once the worker tells the others it is stopping,
	// which it does after its readers stopped; records were still waiting
	// to be sent then.
	require.Eventually(t, func() bool {
		out, err := f.ddb.GetItem(context.Background(), &dynamodb.GetItemInput{TableName: &f.app,
			Key: map[string]ddbtypes.AttributeValue{attrLeaseKey: &ddbtypes.AttributeValueMemberS{Value: workerKeyPrefix + "stopping"}}})
		require.NoError(t, err)
		stopping, _ := out.Item[attrStopping].(*ddbtypes.AttributeValueMemberBOOL)
		return stopping != nil && stopping.Value
	}, 10*time.Second, 10*time.Millisecond, "the heartbeat says the worker is stopping")
	for _, r := range got { // still processing after cancel
		r.Ack()
	}
	for r := range s.ch {
		t.Fatalf("record %s delivered after cancel", r.Data)
	}
	require.NoError(t, s.c.Err())

	items := f.leaseItems()
	last := map[string]string{}
	for _, r := range got {
		last[r.ShardID] = r.SequenceNumber
	}
	for shard := range lastSeqPerShard(puts) {
		want := last[shard]
		if want == "" {
			want = checkpointTrimHorizon
		}
		assert.Equal(t, want, str(items[shard], attrCheckpoint), "shard %s: acks made during shutdown are checkpointed", shard)
		assert.Empty(t, str(items[shard], attrOwner), "shard %s: lease released when the channel closes", shard)
	}
}

func TestMemoryIsBoundedWhenNothingIsAcked(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 2)
	puts := f.putN(200, 8, "")
	var logs bytes.Buffer
	opts := f.options()
	opts.MaxUnackedPerShard = 15
	opts.ShutdownTimeout = 100 * time.Millisecond
	opts.LeaseDuration = time.Second // a pause this long is logged
	opts.Logger = slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, nil))
	s := startConsumer(t, opts)
	got := s.receive(30, 30*time.Second, func(Record) bool { return false })
	s.quiet(1500 * time.Millisecond) // two shards, 15 unacked each: nothing more comes
	perShard := map[string]int{}
	for _, r := range got {
		perShard[r.ShardID]++
	}
	for shard, n := range perShard {
		assert.Equal(t, 15, n, "shard %s", shard)
	}
	// Acking frees room: the rest arrives.
	for _, r := range got {
		r.Ack()
	}
	rest := s.receive(len(puts)-30, 30*time.Second, ackAll)
	require.ElementsMatch(t, putData(puts), append(dataOf(got), dataOf(rest)...))
	require.NoError(t, s.stop(nil))
	assert.Contains(t, logs.String(), "too many delivered records are not acked")
}

func TestMissingStreamClosesWithErrNamingIt(t *testing.T) {
	noLeak(t)
	for _, server := range []string{"kinesis-local", "kinesalite"} {
		t.Run(server, func(t *testing.T) {
			kin := kinesisClient(t, emu.kinesisLocal)
			if server == "kinesalite" {
				kin = kinesisClient(t, emu.kinesalite)
			}
			app := "app-" + uniqueName(t)
			ddb := dynamoClient(t)
			s := startConsumer(t, Options{StreamName: "no-such-stream", AppName: app, Kinesis: kin, DynamoDB: ddb, Logger: testLogger(t)})
			for range s.ch {
				t.Fatal("no record from a missing stream")
			}
			err := s.c.Err()
			require.Error(t, err)
			assert.Contains(t, err.Error(), `"no-such-stream"`)
			var notFound *types.ResourceNotFoundException
			assert.True(t, errors.As(err, &notFound), "Err wraps the AWS error: %v", err)
			// A typo in the stream name leaves no lease table behind (issue 24, item 3).
			_, err = ddb.DescribeTable(context.Background(), &dynamodb.DescribeTableInput{TableName: &app})
			var noTable *ddbtypes.ResourceNotFoundException
			assert.ErrorAs(t, err, &noTable, "no lease table %q", app)
		})
	}
}

func TestConsumeFunctionLogsErrorsAndClosesChannel(t *testing.T) {
	var logs bytes.Buffer
	ch := Consume(context.Background(), Options{Logger: slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, nil))})
	_, open := <-ch
	assert.False(t, open)
	assert.Contains(t, logs.String(), "StreamName")
}

func TestConsumeTwiceIsAnError(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 1)
	s := startConsumer(t, f.options())
	ch := s.c.Consume(context.Background())
	_, open := <-ch
	assert.False(t, open)
	require.NoError(t, s.stop(nil), "the first run is not affected")
}

// gate counts GetShardIterator calls so a test knows when shards are open.
type gate struct {
	KinesisAPI
	mu     sync.Mutex
	opened int
}

func (g *gate) GetShardIterator(ctx context.Context, in *kinesis.GetShardIteratorInput, o ...func(*kinesis.Options)) (*kinesis.GetShardIteratorOutput, error) {
	out, err := g.KinesisAPI.GetShardIterator(ctx, in, o...)
	if err == nil {
		g.mu.Lock()
		g.opened++
		g.mu.Unlock()
	}
	return out, err
}

func (g *gate) waitOpened(t *testing.T, n int) {
	require.Eventually(t, func() bool { g.mu.Lock(); defer g.mu.Unlock(); return g.opened >= n }, 30*time.Second, 10*time.Millisecond)
}

func TestInitialPositionStartsWhereItSays(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 1)
	old := f.putN(10, 2, "old")
	time.Sleep(1100 * time.Millisecond) // arrival timestamps may have second precision
	between := time.Now()
	time.Sleep(1100 * time.Millisecond)
	mid := f.putN(10, 2, "mid")

	t.Run("TrimHorizon", func(t *testing.T) {
		opts := f.options()
		opts.AppName, opts.DynamoDB = "", nil
		s := startConsumer(t, opts)
		got := s.receive(20, 30*time.Second, ackAll)
		assert.Equal(t, append(putData(old), putData(mid)...), dataOf(got))
		require.NoError(t, s.stop(nil))
	})
	t.Run("AtTimestamp", func(t *testing.T) {
		opts := f.options()
		opts.AppName, opts.DynamoDB = "", nil
		opts.InitialPosition = AtTimestamp(between)
		s := startConsumer(t, opts)
		got := s.receive(10, 30*time.Second, ackAll)
		assert.Equal(t, putData(mid), dataOf(got))
		s.quiet(300 * time.Millisecond)
		require.NoError(t, s.stop(nil))
	})
	t.Run("Latest", func(t *testing.T) {
		opts := f.options()
		opts.AppName, opts.DynamoDB = "", nil
		opts.InitialPosition = Latest
		g := &gate{KinesisAPI: f.kin}
		opts.Kinesis = g
		s := startConsumer(t, opts)
		g.waitOpened(t, 1)
		fresh := f.putN(5, 2, "new")
		got := s.receive(5, 30*time.Second, ackAll)
		assert.Equal(t, putData(fresh), dataOf(got))
		require.NoError(t, s.stop(nil))
	})
}

func TestEnvironmentEndpointsAreUsed(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 1)
	puts := f.putN(5, 1, "")
	t.Setenv("AWS_ENDPOINT_URL_KINESIS", emu.kinesisLocal.Endpoint)
	t.Setenv("AWS_ENDPOINT_URL_DYNAMODB", emu.dynalite.Endpoint)
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_ACCESS_KEY_ID", "000000000000")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	opts := f.options()
	opts.Kinesis, opts.DynamoDB = nil, nil
	s := startConsumer(t, opts)
	got := s.receive(len(puts), 30*time.Second, ackAll)
	assert.Equal(t, putData(puts), dataOf(got))
	require.NoError(t, s.stop(nil))
	assert.Contains(t, f.leaseItems(), puts[0].shard, "the lease table was written through AWS_ENDPOINT_URL_DYNAMODB")
}

// syncWriter makes a buffer safe for a logger used from many goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.String()
}

func TestUnusableLeaseTableClosesWithErrNamingIt(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 1)
	// A table of that name exists but is not a lease table.
	_, err := f.ddb.CreateTable(context.Background(), &dynamodb.CreateTableInput{
		TableName:            &f.app,
		BillingMode:          ddbtypes.BillingModePayPerRequest,
		AttributeDefinitions: []ddbtypes.AttributeDefinition{{AttributeName: aws.String("id"), AttributeType: ddbtypes.ScalarAttributeTypeS}},
		KeySchema:            []ddbtypes.KeySchemaElement{{AttributeName: aws.String("id"), KeyType: ddbtypes.KeyTypeHash}},
	})
	require.NoError(t, err)
	s := startConsumer(t, f.options())
	for range s.ch {
		t.Fatal("no record without a usable lease table")
	}
	require.Error(t, s.c.Err())
	assert.Contains(t, s.c.Err().Error(), fmt.Sprintf("lease table %q", f.app))
	assert.Contains(t, s.c.Err().Error(), "leaseKey")
}

// With only the endpoint variables set, on a host whose instance-metadata
// endpoint answers 403, 404 or 500 (an EC2 instance or a pod without a
// role), no credentials can be had: the consumer ends within seconds with
// that error. It used to retry for ever, because the metadata endpoint's
// HTTP error, or its own timeout, looked like the called service's answer
// (issue 24, item 1).
func TestNoCredentialsBehindInstanceMetadataEndsAtOnce(t *testing.T) {
	noLeak(t)
	for _, status := range []int{http.StatusForbidden, http.StatusNotFound, http.StatusInternalServerError} {
		t.Run(fmt.Sprint(status), func(t *testing.T) { noCredentialsBehindInstanceMetadata(t, status) })
	}
}

func noCredentialsBehindInstanceMetadata(t *testing.T, status int) {
	imds := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(status) }))
	defer imds.Close()
	t.Setenv("AWS_ENDPOINT_URL_KINESIS", emu.kinesisLocal.Endpoint)
	t.Setenv("AWS_ENDPOINT_URL_DYNAMODB", emu.dynalite.Endpoint)
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	t.Setenv("AWS_WEB_IDENTITY_TOKEN_FILE", "")
	t.Setenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "")
	t.Setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "")
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.URL)
	s := startConsumer(t, Options{StreamName: "any", AppName: "app-" + uniqueName(t), Logger: testLogger(t)})
	err := s.ends(20 * time.Second)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "credentials")
}
