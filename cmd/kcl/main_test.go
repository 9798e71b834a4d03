package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/kclgo/kcl/internal/emulator"
	"github.com/kclgo/kcl/internal/leaseitem"
)

var update = flag.Bool("update", false, "rewrite the testdata/*.golden files from the output")

var kinesisLocal, dynalite *emulator.Server

// emuMissing is why the emulators are not installed: the tests that need
// them skip.
var emuMissing error

func TestMain(m *testing.M) {
	flag.Parse()
	if emuMissing = emulator.Missing(emulator.KinesisLocal, emulator.Dynalite); emuMissing != nil {
		os.Exit(m.Run())
	}
	ctx := context.Background()
	var err error
	if kinesisLocal, err = emulator.Start(ctx, emulator.KinesisLocal); err == nil {
		dynalite, err = emulator.Start(ctx, emulator.Dynalite)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		if kinesisLocal != nil {
			kinesisLocal.Stop()
		}
		os.Exit(1)
	}
	code := m.Run()
	kinesisLocal.Stop()
	dynalite.Stop()
	os.Exit(code)
}

func needEmulators(t *testing.T) {
	t.Helper()
	if emuMissing != nil {
		t.Skipf("needs the emulators (./scripts/test): %v", emuMissing)
	}
	// No goroutine of the test's outlives it but the SDK clients' idle
	// HTTP connections.
	opts := []goleak.Option{
		goleak.IgnoreCurrent(),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreAnyFunction("net/http.(*http2ClientConn).readLoop"),
	}
	t.Cleanup(func() { goleak.VerifyNone(t, opts...) })
}

func awsConfig() aws.Config {
	return aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("000000000000", "x", "")}
}

func ddbClient() *dynamodb.Client {
	return dynamodb.NewFromConfig(awsConfig(), func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(dynalite.Endpoint) })
}

func kinClient() *kinesis.Client {
	return kinesis.NewFromConfig(awsConfig(), func(o *kinesis.Options) { o.BaseEndpoint = aws.String(kinesisLocal.Endpoint) })
}

var names atomic.Int64

// uniqueName names a stream or table for one test.
func uniqueName(t *testing.T) string {
	return fmt.Sprintf("%s-%d-%d", strings.ReplaceAll(strings.ToLower(t.Name()), "/", "-"), time.Now().UnixNano()%1e6, names.Add(1))
}

// harness runs the command against the emulators.
type harness struct {
	t        *testing.T
	db       *dynamodb.Client // the tests' own
	ddb      DynamoDB         // the command's
	kin      *kinesis.Client
	kinAPI   Kinesis // the command's; kin when nil
	stream   string
	table    string
	progress bytes.Buffer
	// during is what happens while the command watches the table (the
	// liveness watch): nothing by default, so every worker looks dead.
	during func()
	// clock is the command's clock; time.Now when nil.
	clock  func() time.Time
	waited time.Duration // how long the last run's watch was to last
}

func newHarness(t *testing.T, shards int) *harness {
	t.Helper()
	needEmulators(t)
	db := ddbClient()
	h := &harness{t: t, db: db, ddb: db, kin: kinClient(), stream: uniqueName(t), table: "app-" + uniqueName(t)}
	ctx := context.Background()
	if shards > 0 {
		_, err := h.kin.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: &h.stream, ShardCount: aws.Int32(int32(shards))})
		require.NoError(t, err)
		require.NoError(t, kinesis.NewStreamExistsWaiter(h.kin, func(o *kinesis.StreamExistsWaiterOptions) { o.MinDelay = 100 * time.Millisecond }).
			Wait(ctx, &kinesis.DescribeStreamInput{StreamName: &h.stream}, time.Minute))
	}
	_, err := h.kin.ListShards(ctx, &kinesis.ListShardsInput{StreamName: &h.stream})
	if shards > 0 {
		require.NoError(t, err)
	}
	_, err = h.db.CreateTable(ctx, leaseitem.CreateTable(h.table))
	require.NoError(t, err)
	require.NoError(t, dynamodb.NewTableExistsWaiter(h.db, func(o *dynamodb.TableExistsWaiterOptions) { o.MinDelay = 100 * time.Millisecond }).
		Wait(ctx, &dynamodb.DescribeTableInput{TableName: &h.table}, time.Minute))
	return h
}

// run runs the command and returns its exit status, stdout and stderr.
func (h *harness) run(args ...string) (int, string, string) {
	h.t.Helper()
	var stdout, stderr bytes.Buffer
	e := &env{
		stdout: &stdout, stderr: &stderr, progress: &h.progress,
		clients: func(context.Context) (DynamoDB, Kinesis, error) {
			if h.kinAPI != nil {
				return h.ddb, h.kinAPI, nil
			}
			return h.ddb, h.kin, nil
		},
		now: time.Now,
		wait: func(ctx context.Context, d time.Duration) error {
			h.waited = d
			if h.during != nil {
				h.during()
			}
			return nil
		},
	}
	if h.clock != nil {
		e.now = h.clock
	}
	code := run(context.Background(), args, e)
	return code, stdout.String(), stderr.String()
}

// item is a lease-table item under construction.
type item map[string]types.AttributeValue

func (h *harness) put(it item) {
	h.t.Helper()
	_, err := h.db.PutItem(context.Background(), &dynamodb.PutItemInput{TableName: &h.table, Item: it})
	require.NoError(h.t, err)
}

func leaseItem(shard, owner string, counter int64, checkpoint string) item {
	it := item{
		leaseitem.AttrLeaseKey: s(shard), leaseitem.AttrCounter: n(counter), leaseitem.AttrCheckpoint: s(checkpoint),
		leaseitem.AttrCheckpointSub: n(0), leaseitem.AttrOwnerSwitches: n(0),
	}
	if owner != "" {
		it[leaseitem.AttrOwner] = s(owner)
	}
	return it
}

func beatItem(worker string, counter int64) item {
	return item{leaseitem.AttrLeaseKey: s(leaseitem.WorkerKey(worker)), leaseitem.AttrCounter: n(counter), leaseitem.AttrStopping: &types.AttributeValueMemberBOOL{Value: false}}
}

func s(v string) *types.AttributeValueMemberS { return &types.AttributeValueMemberS{Value: v} }
func n(v int64) *types.AttributeValueMemberN {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(v, 10)}
}

// bump raises an item's leaseCounter by one, as a live worker's write does.
func (h *harness) bump(key string) {
	h.t.Helper()
	_, err := h.db.UpdateItem(context.Background(), &dynamodb.UpdateItemInput{
		TableName: &h.table, Key: leaseitem.ItemKey(key),
		UpdateExpression:          aws.String("ADD " + leaseitem.AttrCounter + " :one"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":one": n(1)},
	})
	require.NoError(h.t, err)
}

// get reads one item; nil when there is none.
func (h *harness) get(key string) map[string]types.AttributeValue {
	h.t.Helper()
	out, err := h.db.GetItem(context.Background(), &dynamodb.GetItemInput{
		TableName: &h.table, Key: leaseitem.ItemKey(key), ConsistentRead: aws.Bool(true),
	})
	require.NoError(h.t, err)
	return out.Item
}

// lease reads one lease item as the command does.
func (h *harness) lease(key string) leaseitem.Lease {
	h.t.Helper()
	it := leaseitem.Read(h.get(key))
	require.NoError(h.t, it.Err)
	require.Equal(h.t, leaseitem.KindLease, it.Kind, "item %q", key)
	return it.Lease
}

// beat reads one heartbeat item as the command does.
func (h *harness) beat(worker string) leaseitem.Beat {
	h.t.Helper()
	it := leaseitem.Read(h.get(leaseitem.WorkerKey(worker)))
	require.NoError(h.t, it.Err)
	require.Equal(h.t, leaseitem.KindBeat, it.Kind, "heartbeat of %q", worker)
	return it.Beat
}

// items returns every item, to check that nothing was written.
func (h *harness) items() []map[string]types.AttributeValue {
	h.t.Helper()
	out, err := h.db.Scan(context.Background(), &dynamodb.ScanInput{TableName: &h.table, ConsistentRead: aws.Bool(true)})
	require.NoError(h.t, err)
	return out.Items
}

// shardIDs are the stream's shard IDs, in listing order.
func (h *harness) shardIDs() []string {
	h.t.Helper()
	shards, _, err := listShards(context.Background(), h.kin, h.stream)
	require.NoError(h.t, err)
	ids := make([]string, len(shards))
	for i, sh := range shards {
		ids[i] = sh.id
	}
	return ids
}

// golden compares got with testdata/name.golden, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test ./cmd/kcl -update to create it")
	assert.Equal(t, string(want), got, "output differs from %s (go test ./cmd/kcl -run %s -update rewrites it)", path, t.Name())
}

func TestUsage(t *testing.T) {
	e := func() (*env, *bytes.Buffer, *bytes.Buffer) {
		var o, x bytes.Buffer
		return &env{stdout: &o, stderr: &x, progress: &x, now: time.Now, wait: sleep,
			clients: func(context.Context) (DynamoDB, Kinesis, error) {
				t.Fatal("no AWS client is made for bad usage")
				return nil, nil, nil
			}}, &o, &x
	}
	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{nil, 2, "usage: kcl <command>"},
		{[]string{"nope"}, 2, `kcl: unknown command "nope"`},
		{[]string{"status", "-stream", "s"}, 2, "kcl status: -app is required (or -table) (kcl status -h for help)\n"},
		{[]string{"status", "-app", "a"}, 2, "kcl status: -stream is required"},
		{[]string{"status", "-app", "a", "-stream", "s", "-lease", "0s"}, 2, `invalid value "0s" for flag -lease: must be positive`},
		{[]string{"status", "-app", "a", "-stream", "s", "-bogus"}, 2, "kcl status: flag provided but not defined: -bogus"},
		{[]string{"status", "-app", "a", "-stream", "s", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"reset", "-app", "a", "-stream", "s"}, 2, "-to is required"},
		{[]string{"reset", "-app", "a", "-stream", "s", "-to", "yesterday"}, 2, `-to "yesterday": want trim-horizon, latest or an RFC 3339 time`},
		{[]string{"reset", "-app", "a", "-stream", "s", "-to", "2999-01-01T00:00:00Z"}, 2, "-to 2999-01-01T00:00:00Z is in the future"},
		{[]string{"forget-worker", "-app", "a"}, 2, "-worker is required"},
		{[]string{"migrate-vmware", "-from", "x"}, 2, "-from and -to are required"},
	} {
		env, stdout, stderr := e()
		code := run(context.Background(), tc.args, env)
		assert.Equal(t, tc.code, code, "%v", tc.args)
		assert.Contains(t, stderr.String(), tc.stderr, "%v", tc.args)
		if tc.args != nil {
			assert.Equal(t, 1, strings.Count(stderr.String(), "\n"), "one line on stderr: %v", tc.args)
			assert.Empty(t, stdout.String(), "bad usage prints no usage: %v", tc.args)
		}
	}
	for _, args := range [][]string{{"-h"}, {"help"}, {"status", "-h"}, {"reset", "-h"}, {"forget-worker", "-h"}, {"migrate-vmware", "-h"}} {
		env, stdout, stderr := e()
		assert.Equal(t, 0, run(context.Background(), args, env), "%v", args)
		assert.Equal(t, 1, strings.Count(stdout.String(), "usage: kcl"), "%v: %s", args, stdout)
		assert.True(t, strings.HasPrefix(stdout.String(), "usage: kcl "), "%v: the command is named kcl: %s", args, stdout)
		assert.Empty(t, stderr.String(), "%v", args)
	}
}

// Each flag's -h line names the kind of value it takes, and its default
// once.
func TestUsageNamesEachFlagsValue(t *testing.T) {
	want := map[string][]string{
		"status":         {"-app name", "-table table", "-stream stream", "-lease duration"},
		"reset":          {"-app name", "-stream stream", "-to time", "-shard ID", "-lease duration"},
		"forget-worker":  {"-app name", "-worker ID", "-lease duration"},
		"migrate-vmware": {"-from table", "-to table"},
	}
	for cmd, flags := range want {
		var out bytes.Buffer
		env := &env{stdout: &out, stderr: io.Discard, progress: io.Discard, now: time.Now, wait: sleep}
		require.Equal(t, 0, run(context.Background(), []string{cmd, "-h"}, env))
		for _, f := range flags {
			assert.Contains(t, out.String(), "  "+f+"\n", "%s -h", cmd)
		}
		for _, line := range strings.Split(out.String(), "\n") {
			assert.NotRegexp(t, `^  -\S+ (value|string|int)$`, line, "%s -h: a flag without the kind of its value", cmd)
			assert.LessOrEqual(t, strings.Count(line, "default"), 1, "%s -h: %q", cmd, line)
		}
	}
}
