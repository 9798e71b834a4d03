package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/kclgo/kcl"
	"github.com/kclgo/kcl/internal/emulator"
)

// The emulators, as kcl's own tests run them: started once per test binary
// when installed (./scripts/setup), else the test that needs them skips,
// unless KCL_REQUIRE_EMULATORS is set (scripts/test sets it).
var emu struct{ kinesis, dynamo *emulator.Server }

var emuMissing error

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	if os.Getenv("KCL_EMULATORS_DIR") == "" {
		// emulator.Dir looks beside the nearest go.mod: this module's.
		dir, err := filepath.Abs(filepath.Join("..", "..", "emulators"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		os.Setenv("KCL_EMULATORS_DIR", dir)
	}
	if emuMissing = emulator.Missing(emulator.Kinesalite, emulator.Dynalite); emuMissing != nil {
		return m.Run()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var err error
	if emu.kinesis, err = emulator.Start(ctx, emulator.Kinesalite); err != nil {
		fmt.Fprintln(os.Stderr, "the tests need the emulators:", err)
		return 1
	}
	defer emu.kinesis.Stop()
	if emu.dynamo, err = emulator.Start(ctx, emulator.Dynalite); err != nil {
		fmt.Fprintln(os.Stderr, "the tests need the emulators:", err)
		return 1
	}
	defer emu.dynamo.Stop()
	return m.Run()
}

// TestRegisterOnConsumer registers a real Consumer, reading a stream on the
// emulators with its leases in DynamoDB, and reads its metrics back: they
// start at zero and follow the records produced, delivered and acked.
func TestRegisterOnConsumer(t *testing.T) {
	if emuMissing != nil {
		t.Skipf("needs the emulators (./scripts/setup): %v", emuMissing)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("000000000000", "secret", "")}
	kc := kinesis.NewFromConfig(cfg, func(o *kinesis.Options) { o.BaseEndpoint = aws.String(emu.kinesis.Endpoint) })
	ddb := dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(emu.dynamo.Endpoint) })
	stream, app := fmt.Sprintf("otel-%d", time.Now().UnixNano()), fmt.Sprintf("otel-app-%d", time.Now().UnixNano())
	_, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: &stream, ShardCount: aws.Int32(2)})
	require.NoError(t, err)
	require.NoError(t, kinesis.NewStreamExistsWaiter(kc, func(o *kinesis.StreamExistsWaiterOptions) {
		o.MinDelay, o.MaxDelay = 50*time.Millisecond, 200*time.Millisecond
	}).Wait(ctx, &kinesis.DescribeStreamInput{StreamName: &stream}, time.Minute))

	c, err := kcl.New(kcl.Options{StreamName: stream, AppName: app, WorkerID: "worker-1", Kinesis: kc, DynamoDB: ddb,
		InitialPosition: kcl.TrimHorizon, PollInterval: 50 * time.Millisecond, LeaseDuration: time.Second,
		CheckpointInterval: 100 * time.Millisecond, ShutdownTimeout: 2 * time.Second,
		Logger: slog.New(slog.NewTextHandler(testLog{t}, nil))})
	require.NoError(t, err)
	read, _ := collect(t, c, Config{Stream: stream, Group: app})
	worker := map[string]string{"messaging.system": "aws_kinesis", "messaging.destination.name": stream,
		"messaging.consumer.group.name": app, "messaging.client.id": "worker-1"}

	// Before Consume: the worker holds nothing, and no shard is reported.
	before := read()
	assert.Equal(t, 0.0, find(t, before, MetricLeasesHeld, worker))
	_, ok := before[MetricConsumedMessages]
	assert.False(t, ok, "records consumed reported before any shard is held")

	cctx, stop := context.WithCancel(ctx)
	recs := c.Consume(cctx)
	t.Cleanup(func() { // even after a failure: the consumer ends before the test, and its logs
		stop()
		for range recs {
		}
	})
	const n = 40
	var bytes float64
	for i := range n {
		data := []byte(fmt.Sprintf("record-%02d", i))
		bytes += float64(len(data))
		_, err := kc.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: &stream, PartitionKey: aws.String(fmt.Sprint(i)), Data: data})
		require.NoError(t, err)
	}
	// Receive all but the last record's ack: then acked and unacked differ.
	var last kcl.Record
	for i := range n {
		select {
		case rec := <-recs:
			if i < n-1 {
				rec.Ack()
			} else {
				last = rec
			}
		case <-ctx.Done():
			t.Fatalf("received %d of %d records", i, n)
		}
	}

	sum := func(got map[string]metricdata.Metrics, name string) (total float64, shards map[string]bool) {
		shards = map[string]bool{}
		ps, _ := points(t, got[name])
		for _, p := range ps {
			attrs := attrMap(p.attrs)
			for k, v := range worker {
				assert.Equal(t, v, attrs[k], "%s: %s", name, k)
			}
			shards[attrs["messaging.destination.partition.id"]] = true
			total += p.value
		}
		return total, shards
	}
	// A chunk of records is counted once all of it was sent: the receiver
	// may see the last record just before.
	var got map[string]metricdata.Metrics
	require.Eventually(t, func() bool {
		got = read()
		delivered, _ := sum(got, MetricConsumedMessages)
		return delivered == n
	}, 10*time.Second, 20*time.Millisecond, "records consumed never reached %d", n)
	_, shards := sum(got, MetricConsumedMessages)
	assert.Len(t, shards, 2, "shards with records consumed")
	consumedBytes, _ := sum(got, MetricConsumedBytes)
	assert.Equal(t, bytes, consumedBytes, "bytes consumed")
	assert.Equal(t, 2.0, find(t, got, MetricLeasesHeld, worker))
	assert.Equal(t, 2.0, find(t, got, MetricShards, map[string]string{"kcl.shard.state": ShardHeld}))
	acked, _ := sum(got, MetricAckedRecords)
	unacked, _ := sum(got, MetricUnackedRecords)
	assert.Equal(t, float64(n-1), acked, "records acked")
	assert.Equal(t, 1.0, unacked, "records unacked")
	ages, _ := sum(got, MetricLastRecordAge)
	assert.Greater(t, ages, 0.0, "age of the last records")

	last.Ack()
	require.Eventually(t, func() bool {
		got := read()
		acked, _ := sum(got, MetricAckedRecords)
		unacked, _ := sum(got, MetricUnackedRecords)
		return acked == n && unacked == 0
	}, 10*time.Second, 50*time.Millisecond, "the last ack is not reported")

	stop()
	for range recs {
	}
	require.NoError(t, c.Err())
	after := read()
	assert.Equal(t, 0.0, find(t, after, MetricLeasesHeld, worker), "leases held after shutdown")
}

// testLog sends kcl's logs to the test's, shown when it fails or with -v.
type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}
