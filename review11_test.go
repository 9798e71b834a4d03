package kcl

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/assert"
)

// lostCreateResponse is a DynamoDB whose CreateTable makes the table but
// whose answer is lost: the SDK's retryer sends the call again, and that
// second attempt is what kcl sees, ResourceInUseException.
type lostCreateResponse struct {
	*tableCalls
}

func (l lostCreateResponse) CreateTable(ctx context.Context, in *dynamodb.CreateTableInput, o ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error) {
	if _, err := l.tableCalls.CreateTable(ctx, in, o...); err != nil {
		return nil, err
	}
	return nil, &types.ResourceInUseException{Message: aws.String("Table already exists (test: the SDK's retry of a call whose answer was lost)")}
}

// A worker alone, whose CreateTable made the table, is its creator even
// when the answer it got was ResourceInUseException (the SDK retried a
// call whose first answer was lost, a 500 or a reset connection): it turns
// point-in-time recovery on. No other worker will: the table exists for
// them.
func TestPointInTimeRecoveryWhenTheCreateAnswerWasLost(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 1)
	calls := lostCreateResponse{&tableCalls{DynamoDBAPI: f.ddb}}
	opts := f.options()
	opts.DynamoDB = calls
	opts.LeaseTableSettings = LeaseTableSettings{PointInTimeRecovery: true}
	ps := f.putN(2, 2, "")
	s := startConsumer(t, opts)
	assert.ElementsMatch(t, putData(ps), dataOf(s.receive(2, 30*time.Second, ackAll)))
	s.stop(nil)
	assert.Equal(t, 1, calls.count("CreateTable"), "this worker's call made the table")
	assert.Positive(t, calls.count("UpdateContinuousBackups"), "the table kcl made has no point-in-time recovery, and no worker will turn it on")
}
