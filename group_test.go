package kcl

import (
	"context"
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The group item and heartbeats behave alike in DynamoDB and in memory: the
// simulation runs on memLeases, the workers on dynamoLeases.
func TestGroupItem(t *testing.T) {
	t.Run("memory", func(t *testing.T) { checkGroupItem(t, newMemLeases()) })
	t.Run("dynalite", func(t *testing.T) {
		tbl := &dynamoLeases{db: dynamoClient(t), table: "app-" + uniqueName(t)}
		require.NoError(t, tbl.ensure(context.Background()))
		checkGroupItem(t, tbl)

		// kcl's own entityType, so that the Java KCL 3.5 skips it; and
		// never the attribute that would make it pass for a lease there.
		out, err := tbl.db.GetItem(context.Background(), &dynamodb.GetItemInput{TableName: &tbl.table, Key: groupItemKey})
		require.NoError(t, err)
		if out.Item != nil {
			assert.Equal(t, &ddbtypes.AttributeValueMemberS{Value: entityKCLGroup}, out.Item[attrEntityType])
			assert.NotContains(t, out.Item, attrOwnerSwitches)
		}
	})
}

func checkGroupItem(t *testing.T, tbl leaseTable) {
	ctx := context.Background()
	g, err := tbl.group(ctx)
	require.NoError(t, err)
	assert.False(t, g.present, "no group item before the first bump")

	require.NoError(t, tbl.bump(ctx))
	require.NoError(t, tbl.bump(ctx))
	g, err = tbl.group(ctx)
	require.NoError(t, err)
	assert.Equal(t, groupItem{present: true, epoch: 2}, g)

	expired := map[string]int64{workerKeyPrefix + "w1": 7, "shardId-000000000001": 3}
	require.NoError(t, tbl.publish(ctx, expired, "d1"))
	assert.ErrorIs(t, tbl.publish(ctx, map[string]int64{}, "d1"), errLeaseLost, "the same digest again: nothing written")
	snap, err := tbl.list(ctx, true)
	require.NoError(t, err)
	assert.Equal(t, groupItem{present: true, epoch: 3, expired: expired, digest: "d1"}, snap.group, "a list reads the group item, not as a lease")
	assert.Empty(t, snap.leases)
	assert.Empty(t, snap.bad)

	assert.ErrorIs(t, tbl.removeGroup(ctx, 2), errLeaseLost, "an epoch that moved on keeps the item")
	require.NoError(t, tbl.removeGroup(ctx, 3))
	g, err = tbl.group(ctx)
	require.NoError(t, err)
	assert.False(t, g.present)

	// A heartbeat item made anew never repeats a counter an earlier item of
	// the worker had, which the group item may name as expired.
	first, err := tbl.heartbeat(ctx, "w1", "tok-1", false, -1, nil)
	require.NoError(t, err)
	w, ok, err := tbl.readBeat(ctx, "w1")
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, first, w.counter)
	require.NoError(t, tbl.removeWorker(ctx, "w1", first))
	_, ok, err = tbl.readBeat(ctx, "w1")
	require.NoError(t, err)
	assert.False(t, ok)
	again, err := tbl.heartbeat(ctx, "w1", "tok-2", false, -1, nil)
	require.NoError(t, err)
	assert.Greater(t, again, first, "the new item's counter starts above every counter of the old one")
}

// A table of 10,000 leases is more than one Scan page (DynamoDB answers at
// most 1 MB a page): every page is read, eventually consistent or not.
func TestListReadsEveryPageOfATenThousandLeaseTable(t *testing.T) {
	db := dynamoClient(t)
	tbl := &dynamoLeases{db: db, table: "app-" + uniqueName(t)}
	ctx := context.Background()
	require.NoError(t, tbl.ensure(ctx))
	const n = 10000
	for start := 0; start < n; start += 25 {
		var puts []ddbtypes.WriteRequest
		for i := start; i < start+25; i++ {
			puts = append(puts, ddbtypes.WriteRequest{PutRequest: &ddbtypes.PutRequest{Item: map[string]ddbtypes.AttributeValue{
				attrLeaseKey:      &ddbtypes.AttributeValueMemberS{Value: fmt.Sprintf("shardId-%012d", i)},
				attrCounter:       &ddbtypes.AttributeValueMemberN{Value: "3"},
				attrOwner:         &ddbtypes.AttributeValueMemberS{Value: fmt.Sprintf("worker-with-a-long-name-%03d", i%40)},
				attrCheckpoint:    &ddbtypes.AttributeValueMemberS{Value: "49590338271490256608559692538361571095921575989136588898"},
				attrCheckpointSub: &ddbtypes.AttributeValueMemberN{Value: "0"},
				attrOwnerSwitches: &ddbtypes.AttributeValueMemberN{Value: "1"},
			}}})
		}
		req := map[string][]ddbtypes.WriteRequest{tbl.table: puts}
		for len(req) > 0 {
			out, err := db.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: req})
			require.NoError(t, err)
			req = out.UnprocessedItems
		}
	}
	pages := 0
	counted := &countingScans{DynamoDBAPI: db, pages: &pages}
	for _, consistent := range []bool{false, true} {
		pages = 0
		snap, err := (&dynamoLeases{db: counted, table: tbl.table}).list(ctx, consistent)
		require.NoError(t, err)
		assert.Len(t, snap.leases, n, "consistent %v", consistent)
		assert.Empty(t, snap.bad)
		assert.Greater(t, pages, 1, "more than one page")
	}
}

type countingScans struct {
	DynamoDBAPI
	pages *int
}

func (c *countingScans) Scan(ctx context.Context, in *dynamodb.ScanInput, o ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error) {
	*c.pages++
	return c.DynamoDBAPI.Scan(ctx, in, o...)
}
