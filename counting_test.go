package kcl

import (
	"context"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
)

// countingDynamo counts the lease-table calls a worker makes: reads (Scan,
// DescribeTable) and writes (PutItem, UpdateItem, DeleteItem, CreateTable).
type countingDynamo struct {
	DynamoDBAPI
	reads, writes atomic.Int64
}

func (d *countingDynamo) Scan(ctx context.Context, in *dynamodb.ScanInput, o ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error) {
	d.reads.Add(1)
	return d.DynamoDBAPI.Scan(ctx, in, o...)
}

func (d *countingDynamo) DescribeTable(ctx context.Context, in *dynamodb.DescribeTableInput, o ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error) {
	d.reads.Add(1)
	return d.DynamoDBAPI.DescribeTable(ctx, in, o...)
}

func (d *countingDynamo) PutItem(ctx context.Context, in *dynamodb.PutItemInput, o ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	d.writes.Add(1)
	return d.DynamoDBAPI.PutItem(ctx, in, o...)
}

func (d *countingDynamo) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, o ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	d.writes.Add(1)
	return d.DynamoDBAPI.UpdateItem(ctx, in, o...)
}

func (d *countingDynamo) DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, o ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error) {
	d.writes.Add(1)
	return d.DynamoDBAPI.DeleteItem(ctx, in, o...)
}

func (d *countingDynamo) CreateTable(ctx context.Context, in *dynamodb.CreateTableInput, o ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error) {
	d.writes.Add(1)
	return d.DynamoDBAPI.CreateTable(ctx, in, o...)
}
