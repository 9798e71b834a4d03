package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kclgo/kcl"
	"github.com/kclgo/kcl/internal/leaseitem"
)

func TestMigrationFromVMwareResumesRightAfterEachCheckpoint(t *testing.T) {
	needEmulators(t)
	ctx := context.Background()
	ddb, kin := ddbClient(), kinClient()
	stream, from, to := uniqueName(t), "vmware-"+uniqueName(t), "kcl-"+uniqueName(t)
	var out, stderr bytes.Buffer
	// migrate runs the subcommand as of now and returns its exit status.
	migrate := func(now time.Time, args ...string) int {
		out.Reset()
		stderr.Reset()
		return run(ctx, append([]string{"migrate-vmware"}, args...), &env{
			stdout: &out, stderr: &stderr, progress: &stderr, now: func() time.Time { return now }, wait: noWait,
			clients: func(context.Context) (DynamoDB, Kinesis, error) { return ddb, kin, nil },
		})
	}

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
	createVMwareTable(t, ddb, from)
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

	require.Equal(t, 1, migrate(now, "-from", from, "-to", to), "refuses while a vmware lease is live")
	assert.Contains(t, stderr.String(), "kcl migrate-vmware: vmware-go-kcl leases are still live: shardId-000000000001 (owner vmware-worker-1 until")
	_, err = ddb.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: &to})
	require.Error(t, err, "nothing written")

	require.Equal(t, 0, migrate(now, "-from", from, "-to", to, "-dry-run", "-force"), "-force goes on")
	assert.Contains(t, out.String(), "would write shardId-000000000001")

	put("shardId-000000000001", now.Add(-time.Second)) // the vmware workers stopped
	require.Equal(t, 0, migrate(now, "-from", from, "-to", to, "-dry-run"))
	assert.Contains(t, out.String(), "would write shardId-000000000000 checkpoint="+seqs["shardId-000000000000"][4])
	_, err = ddb.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: &to})
	require.Error(t, err, "a dry run writes nothing")

	require.Equal(t, 0, migrate(now, "-from", from, "-to", to), stderr.String())
	assert.Contains(t, out.String(), "2 leases written")
	require.Equal(t, 0, migrate(now, "-from", from, "-to", to), stderr.String())
	assert.Contains(t, out.String(), "a kcl lease exists already", "a second run overwrites nothing")

	// kcl resumes right after each vmware checkpoint.
	var want []string
	for shard, data := range byShard {
		want = append(want, data[at[shard]+1:]...)
	}
	assert.ElementsMatch(t, want, consumeMigrated(t, kin, ddb, stream, to, kcl.TrimHorizon, len(want)))
}

// TestMigratedParentAtShardEndLeadsItsChildren: vmware-go-kcl read a parent
// to its end (SHARD_END) and never checkpointed its child, whose records
// then wait in the stream. migrate-vmware skips the child (no checkpoint);
// kcl, even at Latest, must read the child from TRIM_HORIZON, since its
// parent was read. (kcl takes a lease created at SHARD_END and never taken,
// counter 0, for one nothing was read of, whose children start at
// InitialPosition: a migrated lease must not look like one.)
func TestMigratedParentAtShardEndLeadsItsChildren(t *testing.T) {
	needEmulators(t)
	ctx := context.Background()
	ddb, kin := ddbClient(), kinClient()
	stream, from, to := uniqueName(t), "vmware-"+uniqueName(t), "kcl-"+uniqueName(t)
	var out, stderr bytes.Buffer

	_, err := kin.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: &stream, ShardCount: aws.Int32(1)})
	require.NoError(t, err)
	waitActive := func() {
		require.NoError(t, kinesis.NewStreamExistsWaiter(kin, func(o *kinesis.StreamExistsWaiterOptions) { o.MinDelay = 100 * time.Millisecond }).
			Wait(ctx, &kinesis.DescribeStreamInput{StreamName: &stream}, time.Minute))
		require.Eventually(t, func() bool {
			d, err := kin.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: &stream})
			return err == nil && d.StreamDescriptionSummary.StreamStatus == "ACTIVE"
		}, time.Minute, 100*time.Millisecond)
	}
	waitActive()
	const parent = "shardId-000000000000"
	_, err = kin.SplitShard(ctx, &kinesis.SplitShardInput{StreamName: &stream, ShardToSplit: aws.String(parent), NewStartingHashKey: aws.String("170141183460469231731687303715884105728")})
	require.NoError(t, err)
	waitActive()
	listed, err := kin.ListShards(ctx, &kinesis.ListShardsInput{StreamName: &stream})
	require.NoError(t, err)
	require.Len(t, listed.Shards, 3)
	var want []string // written to the children before the migration
	for i := range 20 {
		data := fmt.Sprintf("c%02d", i)
		_, err := kin.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: &stream, PartitionKey: aws.String(fmt.Sprint(i)), Data: []byte(data)})
		require.NoError(t, err)
		want = append(want, data)
	}

	// vmware-go-kcl's table: the parent read to its end, its children
	// without a checkpoint.
	createVMwareTable(t, ddb, from)
	for _, sh := range listed.Shards {
		item := map[string]types.AttributeValue{"ShardID": &types.AttributeValueMemberS{Value: *sh.ShardId}}
		if *sh.ShardId == parent {
			item["Checkpoint"] = &types.AttributeValueMemberS{Value: "SHARD_END"}
		} else {
			item["ParentShardId"] = &types.AttributeValueMemberS{Value: parent}
		}
		_, err := ddb.PutItem(ctx, &dynamodb.PutItemInput{TableName: &from, Item: item})
		require.NoError(t, err)
	}
	code := run(ctx, []string{"migrate-vmware", "-from", from, "-to", to}, &env{
		stdout: &out, stderr: &stderr, progress: &stderr, now: time.Now, wait: noWait,
		clients: func(context.Context) (DynamoDB, Kinesis, error) { return ddb, kin, nil },
	})
	require.Equal(t, 0, code, stderr.String())
	assert.Contains(t, out.String(), "1 leases written")

	assert.ElementsMatch(t, want, consumeMigrated(t, kin, ddb, stream, to, kcl.Latest, len(want)), "the records written to the children before the migration")
}

// createVMwareTable creates an empty table of vmware-go-kcl's schema.
func createVMwareTable(t *testing.T, ddb *dynamodb.Client, name string) {
	t.Helper()
	ctx := context.Background()
	_, err := ddb.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName: &name, BillingMode: types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("ShardID"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("ShardID"), KeyType: types.KeyTypeHash}},
	})
	require.NoError(t, err)
	require.NoError(t, dynamodb.NewTableExistsWaiter(ddb, func(o *dynamodb.TableExistsWaiterOptions) { o.MinDelay = 100 * time.Millisecond }).
		Wait(ctx, &dynamodb.DescribeTableInput{TableName: &name}, time.Minute))
}

// consumeMigrated runs kcl on stream with lease table app from pos until it
// has n records, acking each, checks that no more arrive, and returns their
// data.
func consumeMigrated(t *testing.T, kin *kinesis.Client, ddb *dynamodb.Client, stream, app string, pos kcl.Position, n int) []string {
	t.Helper()
	c, err := kcl.New(kcl.Options{StreamName: stream, AppName: app, Kinesis: kin, DynamoDB: ddb, InitialPosition: pos,
		PollInterval: 50 * time.Millisecond, LeaseDuration: time.Second, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var got []string
	timeout := time.After(30 * time.Second)
	records := c.Consume(ctx)
	for len(got) < n {
		select {
		case r := <-records:
			got = append(got, string(r.Data))
			r.Ack()
		case <-timeout:
			t.Fatalf("got %d of %d records: %v", len(got), n, got)
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
	return got
}

// A kcl worker started on the kcl table before the migration made a lease
// at LATEST: migrate-vmware used to skip that shard ("a kcl lease exists
// already") and exit 0, and kcl went on from LATEST, skipping what came after
// vmware's checkpoint (issue 27, item 12). It refuses, writing nothing.
func TestMigrationRefusesAKCLLeaseBehindVMwaresCheckpoint(t *testing.T) {
	needEmulators(t)
	ctx := context.Background()
	ddb := ddbClient()
	from, to := "vmware-"+uniqueName(t), "kcl-"+uniqueName(t)
	_, err := ddb.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            &from,
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("ShardID"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("ShardID"), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	})
	require.NoError(t, err)
	require.NoError(t, dynamodb.NewTableExistsWaiter(ddb, func(o *dynamodb.TableExistsWaiterOptions) { o.MinDelay = 100 * time.Millisecond }).
		Wait(ctx, &dynamodb.DescribeTableInput{TableName: &from}, time.Minute))
	seq := "49600000000000000000000000000000000000000000000000000042"
	for _, id := range []string{"shardId-000000000000", "shardId-000000000001"} {
		_, err = ddb.PutItem(ctx, &dynamodb.PutItemInput{TableName: &from, Item: map[string]types.AttributeValue{
			"ShardID": &types.AttributeValueMemberS{Value: id}, "Checkpoint": &types.AttributeValueMemberS{Value: seq},
		}})
		require.NoError(t, err)
	}
	require.NoError(t, ensureTable(ctx, ddb, to))
	put := func(l leaseitem.Lease) {
		_, err := ddb.PutItem(ctx, &dynamodb.PutItemInput{TableName: &to, Item: leaseitem.NewItem(l, false)})
		require.NoError(t, err)
	}
	put(leaseitem.Lease{Key: "shardId-000000000000", Counter: 3, Checkpoint: leaseitem.Latest})
	put(leaseitem.Lease{Key: "shardId-000000000001", Counter: 3, Checkpoint: "49600000000000000000000000000000000000000000000000000043"}) // past: fine
	var out, stderr bytes.Buffer
	e := &env{stdout: &out, stderr: &stderr, progress: &stderr, now: time.Now, wait: noWait, clients: func(context.Context) (DynamoDB, Kinesis, error) { return ddb, kinClient(), nil }}
	code := run(ctx, []string{"migrate-vmware", "-from", from, "-to", to}, e)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr.String(), "already has kcl leases behind vmware-go-kcl's checkpoints: shardId-000000000000 (kcl at LATEST, vmware-go-kcl at "+seq+")")
	assert.NotContains(t, stderr.String(), "shardId-000000000001 (", "a lease past vmware's checkpoint is fine")
	got, err := ddb.GetItem(ctx, &dynamodb.GetItemInput{TableName: &to, Key: leaseitem.ItemKey("shardId-000000000000")})
	require.NoError(t, err)
	l, err := leaseitem.ParseLease(got.Item)
	require.NoError(t, err)
	assert.Equal(t, leaseitem.Latest, l.Checkpoint, "nothing written")

	// A kcl worker makes its LATEST lease between the check and the write
	// (found by a review): refused too, not reported as at or past.
	for _, id := range []string{"shardId-000000000000", "shardId-000000000001"} {
		_, err := ddb.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: &to, Key: leaseitem.ItemKey(id)})
		require.NoError(t, err)
	}
	racing := &racingDB{DynamoDB: ddb, key: "shardId-000000000000", first: func() { put(leaseitem.Lease{Key: "shardId-000000000000", Counter: 1, Checkpoint: leaseitem.Latest}) }}
	out.Reset()
	stderr.Reset()
	e.clients = func(context.Context) (DynamoDB, Kinesis, error) { return racing, kinClient(), nil }
	assert.Equal(t, 1, run(ctx, []string{"migrate-vmware", "-from", from, "-to", to}, e))
	assert.Contains(t, stderr.String(), "shardId-000000000000 (kcl at LATEST, vmware-go-kcl at "+seq+")")
	assert.NotContains(t, out.String(), "at or past this checkpoint")
}

// noWait is a liveness watch that returns at once: nothing changes during it.
func noWait(context.Context, time.Duration) error { return nil }

// A vmware-go-kcl worker whose clock runs behind the command's writes
// LeaseTimeouts the command reads as past: the lease looks expired while its
// worker renews it. migrate-vmware watches the table and refuses a lease
// renewed during the watch, whatever its LeaseTimeout says (issue 27, item
// 12).
func TestMigrationRefusesALeaseRenewedDuringTheWatch(t *testing.T) {
	needEmulators(t)
	ctx := context.Background()
	ddb := ddbClient()
	from, to := "vmware-"+uniqueName(t), "kcl-"+uniqueName(t)
	createVMwareTable(t, ddb, from)
	now := time.Now()
	put := func(timeout time.Time) {
		_, err := ddb.PutItem(ctx, &dynamodb.PutItemInput{TableName: &from, Item: map[string]types.AttributeValue{
			"ShardID":      &types.AttributeValueMemberS{Value: "shardId-000000000000"},
			"Checkpoint":   &types.AttributeValueMemberS{Value: "49590338271490256608559692538361571095921575989136588802"},
			"AssignedTo":   &types.AttributeValueMemberS{Value: "vmware-worker-1"},
			"LeaseTimeout": &types.AttributeValueMemberS{Value: timeout.UTC().Format(time.RFC3339)},
		}})
		require.NoError(t, err)
	}
	put(now.Add(-5 * time.Minute)) // its clock is five minutes behind
	var out, stderr bytes.Buffer
	var watched time.Duration
	code := run(ctx, []string{"migrate-vmware", "-from", from, "-to", to}, &env{
		stdout: &out, stderr: &stderr, progress: &stderr, now: func() time.Time { return now },
		wait: func(_ context.Context, d time.Duration) error {
			watched = d
			put(now.Add(-5*time.Minute + 5*time.Second)) // a renewal, on its clock
			return nil
		},
		clients: func(context.Context) (DynamoDB, Kinesis, error) { return ddb, kinClient(), nil },
	})
	require.Equal(t, 1, code, "refused: %s", out.String())
	assert.Equal(t, 10*time.Second, watched, "the default watch")
	assert.Contains(t, stderr.String(), "shardId-000000000000 (owner vmware-worker-1 renewed it during the 10s watch)")
	_, err := ddb.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: &to})
	require.Error(t, err, "nothing written")
}
