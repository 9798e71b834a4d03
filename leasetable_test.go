package kcl

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/assert"
)

// recordingDynamo records the expressions of the writes it is sent and
// answers each with success.
type recordingDynamo struct {
	DynamoDBAPI
	writes []string // "condition | update" of each write
}

func (d *recordingDynamo) UpdateItem(_ context.Context, in *dynamodb.UpdateItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	d.writes = append(d.writes, aws.ToString(in.ConditionExpression)+" | "+aws.ToString(in.UpdateExpression))
	return &dynamodb.UpdateItemOutput{Attributes: map[string]ddbtypes.AttributeValue{attrCounter: &ddbtypes.AttributeValueMemberN{Value: "1"}}}, nil
}

func (d *recordingDynamo) PutItem(_ context.Context, in *dynamodb.PutItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	d.writes = append(d.writes, aws.ToString(in.ConditionExpression)+" | put")
	return &dynamodb.PutItemOutput{}, nil
}

func (d *recordingDynamo) DeleteItem(_ context.Context, in *dynamodb.DeleteItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error) {
	d.writes = append(d.writes, aws.ToString(in.ConditionExpression)+" | delete")
	return &dynamodb.DeleteItemOutput{}, nil
}

// TestDynamoWrites: what each write of the lease table sets, and on what
// condition, spelled out. Every write of a lease but create is fenced on
// its counter, or (a hand-off claim) on its owner.
func TestDynamoWrites(t *testing.T) {
	ctx := context.Background()
	owned := lease{shardID: "shardId-1", owner: "old", counter: 3, handoffTo: "taker"}
	for _, tc := range []struct {
		name  string
		write func(*dynamoLeases) error
		want  string
	}{
		{"create", func(t *dynamoLeases) error { _, err := t.create(ctx, lease{shardID: "shardId-1"}); return err },
			"attribute_not_exists(leaseKey) | put"},
		{"take a free lease", func(t *dynamoLeases) error {
			_, err := t.take(ctx, lease{shardID: "shardId-1", counter: 3}, writer{id: "me"})
			return err
		},
			"leaseCounter = :c AND (attribute_not_exists(kclStreamCreated) OR kclStreamCreated = :sc) AND attribute_not_exists(leaseOwner) | SET leaseOwner = :me, leaseCounter = :n, ownerSwitchesSinceCheckpoint = :sw, kclWriter = :writer REMOVE handoffTo, checkpointOwner"},
		{"take an owned lease, storing where it starts", func(t *dynamoLeases) error {
			l := owned
			l.startAt = time.UnixMilli(1700000000123)
			_, err := t.take(ctx, l, writer{id: "me"})
			return err
		}, "leaseCounter = :c AND (attribute_not_exists(kclStreamCreated) OR kclStreamCreated = :sc) AND leaseOwner = :old | SET leaseOwner = :me, leaseCounter = :n, ownerSwitchesSinceCheckpoint = :sw, kclWriter = :writer, kclStartTimestamp = :start REMOVE handoffTo, checkpointOwner"},
		{"claim", func(t *dynamoLeases) error { return t.claim(ctx, owned, "taker") },
			"leaseOwner = :owner AND attribute_not_exists(handoffTo) | SET handoffTo = :taker"},
		{"unclaim", func(t *dynamoLeases) error { return t.unclaim(ctx, owned) },
			"leaseOwner = :owner AND handoffTo = :taker | REMOVE handoffTo"},
		{"checkpoint", func(t *dynamoLeases) error {
			_, err := t.checkpoint(ctx, owned, checkpoint{seq: "5"}, "old", writer{})
			return err
		},
			"leaseOwner = :me AND leaseCounter = :c AND attribute_not_exists(checkpointOwner) | SET checkpoint = :cp, checkpointSubSequenceNumber = :sub, ownerSwitchesSinceCheckpoint = :zero, leaseCounter = :n, kclWriter = :writer"},
		{"release", func(t *dynamoLeases) error {
			_, err := t.checkpoint(ctx, owned, checkpoint{seq: "5"}, "", writer{})
			return err
		},
			"leaseOwner = :me AND leaseCounter = :c AND attribute_not_exists(checkpointOwner) | SET checkpoint = :cp, checkpointSubSequenceNumber = :sub, ownerSwitchesSinceCheckpoint = :zero, leaseCounter = :n REMOVE leaseOwner, handoffTo, kclWriter"},
		{"shard end (kcl's mark stays: cleanup.go)", func(t *dynamoLeases) error {
			_, err := t.checkpoint(ctx, owned, checkpoint{seq: checkpointShardEnd}, "", writer{})
			return err
		},
			"leaseOwner = :me AND leaseCounter = :c AND attribute_not_exists(checkpointOwner) | SET checkpoint = :cp, checkpointSubSequenceNumber = :sub, ownerSwitchesSinceCheckpoint = :zero, leaseCounter = :n, kclWriter = :writer REMOVE leaseOwner, handoffTo"},
		{"hand off", func(t *dynamoLeases) error {
			_, err := t.checkpoint(ctx, owned, checkpoint{seq: "5"}, "taker", writer{})
			return err
		},
			"leaseOwner = :me AND leaseCounter = :c AND attribute_not_exists(checkpointOwner) | SET checkpoint = :cp, checkpointSubSequenceNumber = :sub, ownerSwitchesSinceCheckpoint = :zero, leaseCounter = :n, leaseOwner = :next REMOVE handoffTo, kclWriter"},
		{"first heartbeat", func(t *dynamoLeases) error { _, err := t.heartbeat(ctx, "w1", "tok", false, -1, nil); return err },
			" | SET leaseCounter = if_not_exists(leaseCounter, :base) + :one, workerToken = :tok, workerStopping = :stopping, entityType = :entityType"},
		{"heartbeat", func(t *dynamoLeases) error { _, err := t.heartbeat(ctx, "w1", "tok", true, 5, nil); return err },
			"leaseCounter = :c AND workerToken = :tok | SET leaseCounter = :n, workerStopping = :stopping, entityType = :entityType"},
		{"heartbeat of a worker of several streams", func(t *dynamoLeases) error {
			_, err := t.heartbeat(ctx, "w1", "tok", false, 5, []string{"1:a:2", "1:b:3"})
			return err
		},
			"leaseCounter = :c AND workerToken = :tok | SET leaseCounter = :n, workerStopping = :stopping, entityType = :entityType, kclStreams = :streams"},
		{"replace a stamped lease", func(t *dynamoLeases) error {
			return t.replace(ctx, lease{shardID: "shardId-1", counter: 3, streamCreated: 1000}, lease{shardID: "shardId-1", counter: 4, streamCreated: 2000})
		}, "leaseCounter = :c AND kclStreamCreated = :sc | put"},
		{"remove an unstamped lease", func(t *dynamoLeases) error { return t.remove(ctx, lease{shardID: "shardId-1", counter: 3}) },
			"leaseCounter = :c AND (attribute_not_exists(kclStreamCreated) OR kclStreamCreated = :sc) AND checkpoint = :cp | delete"},
		{"remove a heartbeat", func(t *dynamoLeases) error { return t.removeWorker(ctx, "w1", 5) }, "leaseCounter = :c | delete"},
		{"bump the group's epoch", func(t *dynamoLeases) error { return t.bump(ctx) }, " | SET entityType = :entityType ADD kclEpoch :one"},
		{"tick the group's scans", func(t *dynamoLeases) error { return t.tick(ctx) }, " | SET entityType = :entityType ADD kclScans :one"},
		{"publish", func(t *dynamoLeases) error { return t.publish(ctx, map[string]int64{"shardId-1": 3}, "d") },
			"attribute_not_exists(kclDigest) OR kclDigest <> :d | SET kclExpired = :m, kclDigest = :d, entityType = :entityType ADD kclEpoch :one"},
		{"remove the group item", func(t *dynamoLeases) error { return t.removeGroup(ctx, 7) }, "kclEpoch = :e | delete"},
	} {
		db := &recordingDynamo{}
		assert.NoError(t, tc.write(&dynamoLeases{db: db, table: "t"}), tc.name)
		assert.Equal(t, []string{tc.want}, db.writes, tc.name)
	}
}
