package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
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

	"github.com/kclgo/kcl"
	"github.com/kclgo/kcl/internal/emulator"
)

var kinesisLocal, dynalite *emulator.Server

// emuMissing is why the emulators are not installed: the tests skip.
var emuMissing error

func TestMain(m *testing.M) {
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
		os.Exit(1)
	}
	code := m.Run()
	kinesisLocal.Stop()
	dynalite.Stop()
	os.Exit(code)
}

func awsConfig() aws.Config {
	return aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("000000000000", "x", "")}
}

func TestMigrationFromVMwareResumesRightAfterEachCheckpoint(t *testing.T) {
	if emuMissing != nil {
		t.Skipf("needs the emulators (./scripts/test): %v", emuMissing)
	}
	// No goroutine of the test's outlives it but the SDK clients' idle
	// HTTP connections.
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreAnyFunction("net/http.(*http2ClientConn).readLoop"))
	ctx := context.Background()
	ddb := dynamodb.NewFromConfig(awsConfig(), func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(dynalite.Endpoint) })
	kin := kinesis.NewFromConfig(awsConfig(), func(o *kinesis.Options) { o.BaseEndpoint = aws.String(kinesisLocal.Endpoint) })
	stream, from, to := "orders", "vmware-app", "kcl-app"

	// A stream with two shards and records in both.
	_, err := kin.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: &stream, ShardCount: aws.Int32(2)})
	require.NoError(t, err)
	require.NoError(t, kinesis.NewStreamExistsWaiter(kin, func(o *kinesis.StreamExistsWaiterOptions) { o.MinDelay = 100 * time.Millisecond }).
		Wait(ctx, &kinesis.DescribeStreamInput{StreamName: &stream}, time.Minute))
	time.Sleep(300 * time.Millisecond)
	byShard := map[string][]string{} // shard -> data in order
	seqs := map[string][]string{}
	for i := range 40 {
		data := fmt.Sprintf("r%02d", i)
		out, err := kin.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: &stream, PartitionKey: aws.String(fmt.Sprint(i)), Data: []byte(data)})
		require.NoError(t, err)
		byShard[*out.ShardId] = append(byShard[*out.ShardId], data)
		seqs[*out.ShardId] = append(seqs[*out.ShardId], *out.SequenceNumber)
	}
	require.Len(t, byShard, 2)

	// vmware-go-kcl's table: checkpoints at the 5th and 3rd records.
	_, err = ddb.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName: &from, BillingMode: types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("ShardID"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("ShardID"), KeyType: types.KeyTypeHash}},
	})
	require.NoError(t, err)
	require.NoError(t, dynamodb.NewTableExistsWaiter(ddb, func(o *dynamodb.TableExistsWaiterOptions) { o.MinDelay = 100 * time.Millisecond }).
		Wait(ctx, &dynamodb.DescribeTableInput{TableName: &from}, time.Minute))
	at := map[string]int{"shardId-000000000000": 4, "shardId-000000000001": 2}
	put := func(shard string, timeout time.Time) {
		_, err := ddb.PutItem(ctx, &dynamodb.PutItemInput{TableName: &from, Item: map[string]types.AttributeValue{
			"ShardID":      &types.AttributeValueMemberS{Value: shard},
			"Checkpoint":   &types.AttributeValueMemberS{Value: seqs[shard][at[shard]]},
			"AssignedTo":   &types.AttributeValueMemberS{Value: "vmware-worker-1"},
			"LeaseTimeout": &types.AttributeValueMemberS{Value: timeout.UTC().Format(time.RFC3339)},
		}})
		require.NoError(t, err)
	}
	now := time.Now()
	put("shardId-000000000000", now.Add(-time.Hour))
	put("shardId-000000000001", now.Add(time.Minute)) // still live

	var out bytes.Buffer
	err = run(ctx, []string{"-from", from, "-to", to}, &out, ddb, now)
	require.Error(t, err, "refuses while a vmware lease is live")
	assert.Contains(t, err.Error(), "shardId-000000000001")
	_, err = ddb.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: &to})
	require.Error(t, err, "nothing written")

	out.Reset()
	require.NoError(t, run(ctx, []string{"-from", from, "-to", to, "-dry-run", "-force"}, &out, ddb, now), "-force goes on")
	assert.Contains(t, out.String(), "would write shardId-000000000001")

	put("shardId-000000000001", now.Add(-time.Second)) // the vmware workers stopped
	out.Reset()
	require.NoError(t, run(ctx, []string{"-from", from, "-to", to, "-dry-run"}, &out, ddb, now))
	assert.Contains(t, out.String(), "would write shardId-000000000000 checkpoint="+seqs["shardId-000000000000"][4])
	_, err = ddb.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: &to})
	require.Error(t, err, "a dry run writes nothing")

	out.Reset()
	require.NoError(t, run(ctx, []string{"-from", from, "-to", to}, &out, ddb, now))
	assert.Contains(t, out.String(), "2 leases written")
	out.Reset()
	require.NoError(t, run(ctx, []string{"-from", from, "-to", to}, &out, ddb, now))
	assert.Contains(t, out.String(), "a kcl lease exists already", "a second run overwrites nothing")

	// kcl resumes right after each vmware checkpoint.
	var want []string
	for shard, data := range byShard {
		want = append(want, data[at[shard]+1:]...)
	}
	c, err := kcl.New(kcl.Options{StreamName: stream, AppName: to, Kinesis: kin, DynamoDB: ddb, InitialPosition: kcl.TrimHorizon,
		PollInterval: 50 * time.Millisecond, LeaseDuration: time.Second, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var got []string
	timeout := time.After(30 * time.Second)
	records := c.Consume(cctx)
	for len(got) < len(want) {
		select {
		case r := <-records:
			got = append(got, string(r.Data))
			r.Ack()
		case <-timeout:
			t.Fatalf("got %d of %d records", len(got), len(want))
		}
	}
	select {
	case r := <-records:
		t.Fatalf("unexpected record %q", r.Data)
	case <-time.After(500 * time.Millisecond):
	}
	cancel()
	for range records {
	}
	require.NoError(t, c.Err())
	assert.ElementsMatch(t, want, got)
}
