package kcl

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// createJavaLeaseTable creates a lease table as the Java KCL 2.x does
// (provisioned, hash key leaseKey), empty.
func (f *fixture) createJavaLeaseTable() {
	f.t.Helper()
	_, err := f.ddb.CreateTable(context.Background(), &dynamodb.CreateTableInput{
		TableName:             &f.app,
		AttributeDefinitions:  []ddbtypes.AttributeDefinition{{AttributeName: aws.String("leaseKey"), AttributeType: ddbtypes.ScalarAttributeTypeS}},
		KeySchema:             []ddbtypes.KeySchemaElement{{AttributeName: aws.String("leaseKey"), KeyType: ddbtypes.KeyTypeHash}},
		ProvisionedThroughput: &ddbtypes.ProvisionedThroughput{ReadCapacityUnits: aws.Int64(10), WriteCapacityUnits: aws.Int64(10)},
	})
	require.NoError(f.t, err)
	require.NoError(f.t, dynamodb.NewTableExistsWaiter(f.ddb, func(o *dynamodb.TableExistsWaiterOptions) { o.MinDelay = 50 * time.Millisecond }).Wait(context.Background(), dynamoDescribe(f.app), time.Minute))
}

func (f *fixture) putItem(item map[string]ddbtypes.AttributeValue) {
	f.t.Helper()
	_, err := f.ddb.PutItem(context.Background(), &dynamodb.PutItemInput{TableName: &f.app, Item: item})
	require.NoError(f.t, err)
}

func s(v string) *ddbtypes.AttributeValueMemberS { return &ddbtypes.AttributeValueMemberS{Value: v} }
func n(v string) *ddbtypes.AttributeValueMemberN { return &ddbtypes.AttributeValueMemberN{Value: v} }

func TestJavaKCLLeaseTableIsResumedInPlace(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 2)
	puts := f.putN(40, 4, "")
	f.createJavaLeaseTable()

	// A Java KCL application checkpointed the 5th record of each shard and
	// its workers died holding the leases, in the middle of a 3.x graceful
	// hand-off from java-worker-0 to java-worker-1 (checkpointOwner: kcl's
	// take removes it, as the Java KCL's does). Its items carry attributes
	// kcl does not use, which must survive.
	byShard := map[string][]put{}
	for _, p := range puts {
		byShard[p.shard] = append(byShard[p.shard], p)
	}
	var want []string
	for shard, ps := range byShard {
		require.Greater(t, len(ps), 5)
		f.putItem(map[string]ddbtypes.AttributeValue{
			"leaseKey": s(shard), "leaseOwner": s("java-worker-1"), "leaseCounter": n("42"),
			"checkpoint": s(ps[4].seq), "checkpointSubSequenceNumber": n("0"),
			"ownerSwitchesSinceCheckpoint": n("3"),
			"startingHashKey":              s("0"), "endingHashKey": s("1"), "throughputKBps": n("1.5"),
			"checkpointOwner": s("java-worker-0"),
		})
		want = append(want, putData(ps[5:])...)
	}
	// Someone edited an item by hand: kcl reports it and leaves it alone.
	edited := map[string]ddbtypes.AttributeValue{"leaseKey": s("shardId-000000000777"), "leaseCounter": s("many"), "checkpoint": s("TRIM_HORIZON")}
	f.putItem(edited)

	var logs bytes.Buffer
	opts := f.options()
	opts.Logger = slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, nil))
	s := startConsumer(t, opts)
	got := s.receive(len(want), 30*time.Second, ackAll)
	s.quiet(300 * time.Millisecond)
	require.NoError(t, s.stop(nil))
	require.ElementsMatch(t, want, dataOf(got), "resumes right after each Java checkpoint")
	checkShardOrder(t, got)

	items := f.leaseItems()
	for shard, ps := range byShard {
		item := items[shard]
		assert.Equal(t, ps[len(ps)-1].seq, str(item, "checkpoint"))
		assert.Equal(t, "1.5", str(item, "throughputKBps"), "attributes kcl does not use are kept")
		assert.Equal(t, "0", str(item, "startingHashKey"))
		assert.NotContains(t, item, "checkpointOwner", "removed by kcl's take")
		assert.Empty(t, str(item, "leaseOwner"))
	}
	assert.Equal(t, edited, items["shardId-000000000777"], "an item kcl does not understand is not rewritten")
	assert.Contains(t, logs.String(), "lease table item not understood")
	assert.Contains(t, logs.String(), "shardId-000000000777")
	assert.Contains(t, logs.String(), "leaseCounter")
}
