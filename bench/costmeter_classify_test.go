package bench

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

func s(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
func n(v string) types.AttributeValue { return &types.AttributeValueMemberN{Value: v} }

func key(k string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{attrLeaseKey: s(k)}
}

// TestClassify covers the calls kcl makes on its lease table today, the
// group item the core engineer is adding, and the edges of the checkpoint
// rule: a write of the checkpoint last seen is not a checkpoint.
func TestClassify(t *testing.T) {
	seen := map[string]seenLease{
		"shardId-000000000001": {checkpoint: "4900000001", sub: "0"},
		"shardId-000000000002": {checkpoint: "LATEST", sub: "0"},
	}
	last := func(k string) (seenLease, bool) { l, ok := seen[k]; return l, ok }
	checkpoint := func(shard, cp, sub, extra string) *dynamodb.UpdateItemInput {
		return &dynamodb.UpdateItemInput{
			TableName: aws.String("t"), Key: key(shard),
			UpdateExpression:    aws.String("SET checkpoint = :cp, checkpointSubSequenceNumber = :sub, ownerSwitchesSinceCheckpoint = :zero, leaseCounter = :n" + extra),
			ConditionExpression: aws.String("leaseOwner = :me AND leaseCounter = :c"),
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":cp": s(cp), ":sub": n(sub), ":zero": n("0"), ":n": n("8"), ":me": s("w1"), ":c": n("7"), ":next": s("w2"),
			},
		}
	}
	for _, tc := range []struct {
		name string
		in   any
		want category
	}{
		{"heartbeat: first beat", &dynamodb.UpdateItemInput{Key: key("kcl-worker:w1"),
			UpdateExpression: aws.String("ADD leaseCounter :one SET workerToken = :tok, workerStopping = :stopping")}, heartbeatWrites},
		{"heartbeat: fenced beat", &dynamodb.UpdateItemInput{Key: key("kcl-worker:w1"),
			UpdateExpression:    aws.String("SET leaseCounter = :n, workerStopping = :stopping"),
			ConditionExpression: aws.String("leaseCounter = :c AND workerToken = :tok")}, heartbeatWrites},
		{"heartbeat: read back", &dynamodb.GetItemInput{Key: key("kcl-worker:w1"), ConsistentRead: aws.Bool(true)}, livenessReads},
		{"heartbeat: dead worker removed", &dynamodb.DeleteItemInput{Key: key("kcl-worker:w2"),
			ConditionExpression: aws.String("leaseCounter = :c")}, heartbeatWrites},
		{"group item read", &dynamodb.GetItemInput{Key: key("kcl-group")}, livenessReads},
		{"group item updated", &dynamodb.UpdateItemInput{Key: key("kcl-group"),
			UpdateExpression: aws.String("SET members = :m, version = :v")}, heartbeatWrites},
		{"group item put", &dynamodb.PutItemInput{Item: map[string]types.AttributeValue{attrLeaseKey: s("kcl-group")}}, heartbeatWrites},
		{"consistent scan", &dynamodb.ScanInput{ConsistentRead: aws.Bool(true)}, scans},
		{"next scan page", &dynamodb.ScanInput{ExclusiveStartKey: key("shardId-000000000001")}, scans},
		{"query on an index", &dynamodb.QueryInput{IndexName: aws.String("LeaseOwnerToLeaseKeyIndex")}, scans},
		{"create", &dynamodb.PutItemInput{Item: map[string]types.AttributeValue{
			attrLeaseKey: s("shardId-000000000003"), "leaseCounter": n("0"), attrCheckpoint: s("LATEST")},
			ConditionExpression: aws.String("attribute_not_exists(leaseKey)")}, takes},
		{"take", &dynamodb.UpdateItemInput{Key: key("shardId-000000000001"),
			UpdateExpression:    aws.String("SET leaseOwner = :me, leaseCounter = :n, ownerSwitchesSinceCheckpoint = :sw REMOVE handoffTo"),
			ConditionExpression: aws.String("leaseCounter = :c AND attribute_not_exists(leaseOwner)")}, takes},
		{"claim", &dynamodb.UpdateItemInput{Key: key("shardId-000000000001"),
			UpdateExpression:    aws.String("SET handoffTo = :taker"),
			ConditionExpression: aws.String("leaseOwner = :owner AND attribute_not_exists(handoffTo)")}, takes},
		{"unclaim", &dynamodb.UpdateItemInput{Key: key("shardId-000000000001"), UpdateExpression: aws.String("REMOVE handoffTo")}, takes},
		{"lease read back", &dynamodb.GetItemInput{Key: key("shardId-000000000001"), ConsistentRead: aws.Bool(true)}, takes},
		{"lease deleted", &dynamodb.DeleteItemInput{Key: key("shardId-000000000001")}, takes},
		{"checkpoint moves", checkpoint("shardId-000000000001", "4900000009", "0", ""), checkpoints},
		{"checkpoint moves from a sentinel", checkpoint("shardId-000000000002", "4900000009", "0", ""), checkpoints},
		{"checkpoint of a lease never seen", checkpoint("shardId-000000000007", "4900000009", "0", ""), checkpoints},
		{"sub-sequence number moves", checkpoint("shardId-000000000001", "4900000001", "3", ""), checkpoints},
		{"hand-off, checkpoint unchanged", checkpoint("shardId-000000000001", "4900000001", "0", ", leaseOwner = :next REMOVE handoffTo"), takes},
		{"release, checkpoint unchanged", checkpoint("shardId-000000000002", "LATEST", "0", " REMOVE leaseOwner, handoffTo"), takes},
		{"hand-off that moves the checkpoint", checkpoint("shardId-000000000001", "4900000005", "0", ", leaseOwner = :next REMOVE handoffTo"), checkpoints},
		{"fence after a late heartbeat, unchanged", checkpoint("shardId-000000000001", "4900000001", "0", ""), takes},
		{"checkpoint through a name placeholder", &dynamodb.UpdateItemInput{Key: key("shardId-000000000001"),
			UpdateExpression:          aws.String("set #cp = :cp, leaseCounter = leaseCounter + :one"),
			ExpressionAttributeNames:  map[string]string{"#cp": "checkpoint"},
			ExpressionAttributeValues: map[string]types.AttributeValue{":cp": s("4900000002"), ":one": n("1")}}, checkpoints},
		{"checkpoint set from a function", &dynamodb.UpdateItemInput{Key: key("shardId-000000000001"),
			UpdateExpression:          aws.String("SET checkpoint = if_not_exists(checkpoint, :cp)"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":cp": s("4900000002")}}, takes},
		{"checkpoint only in the condition", &dynamodb.UpdateItemInput{Key: key("shardId-000000000001"),
			UpdateExpression:    aws.String("SET leaseOwner = :me"),
			ConditionExpression: aws.String("checkpoint = :cp")}, takes},
	} {
		if got := classify(tc.in, last); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestUpdateClauses(t *testing.T) {
	got := updateClauses("SET a = :a, b = if_not_exists(b, :b) REMOVE c, d ADD e :e DELETE f :f")
	want := []clause{{"SET", " a = :a, b = if_not_exists(b, :b) "}, {"REMOVE", " c, d "}, {"ADD", " e :e "}, {"DELETE", " f :f"}}
	if len(got) != len(want) {
		t.Fatalf("%q, want %q", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("clause %d: %q, want %q", i, got[i], want[i])
		}
	}
}

func TestItemSizeAndUnits(t *testing.T) {
	item := map[string]types.AttributeValue{
		"leaseKey":      s("shardId-000000000001"),                                 // 8 + 20
		"leaseCounter":  n("12345"),                                                // 12 + 4
		"stopping":      &types.AttributeValueMemberBOOL{Value: true},              // 8 + 1
		"parentShardId": &types.AttributeValueMemberSS{Value: []string{"a", "bc"}}, // 13 + 3
	}
	if got, want := itemSize(item), 28+16+9+16; got != want {
		t.Errorf("itemSize %d, want %d", got, want)
	}
	for _, tc := range []struct {
		size       int
		consistent bool
		want       float64
	}{{0, true, 1}, {0, false, 0.5}, {4096, true, 1}, {4097, true, 2}, {9000, false, 1.5}} {
		if got := readUnits(tc.size, tc.consistent); got != tc.want {
			t.Errorf("readUnits(%d, %v) = %v, want %v", tc.size, tc.consistent, got, tc.want)
		}
	}
	for _, tc := range []struct {
		size int
		want float64
	}{{0, 1}, {1024, 1}, {1025, 2}} {
		if got := writeUnits(tc.size); got != tc.want {
			t.Errorf("writeUnits(%d) = %v, want %v", tc.size, got, tc.want)
		}
	}
}

func TestJavaModel(t *testing.T) {
	// 200 leases, 40 workers, 4 units a scan: 40 x 60/20.05 scans a minute.
	r, w := javaModel(200, 40, 4)
	if want := 40 * 60 / 20.05 * 4 / 200; !near(r, want) || w != 18 {
		t.Errorf("javaModel = %v, %v; want %v, 18", r, w, want)
	}
	if got := price(1e6, 1e6); !near(got, 0.75) {
		t.Errorf("price of a million of each: %v, want 0.75", got)
	}
}
