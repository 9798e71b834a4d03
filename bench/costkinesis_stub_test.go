package bench

import (
	"context"
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// TestStubKinesisPages lists 2,500 shards as Kinesis pages them: 1,000 a
// page, a NextToken while more remain, a stream name refused beside it.
func TestStubKinesisPages(t *testing.T) {
	ctx := context.Background()
	k := newStubKinesis("s", 2500, 0)
	in := &kinesis.ListShardsInput{StreamName: aws.String("s")}
	var pages []int
	seen := map[string]bool{}
	for {
		out, err := k.ListShards(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		pages = append(pages, len(out.Shards))
		for _, s := range out.Shards {
			seen[aws.ToString(s.ShardId)] = true
		}
		if out.NextToken == nil {
			break
		}
		if _, err := k.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String("s"), NextToken: out.NextToken}); err == nil {
			t.Error("NextToken with StreamName: no error")
		}
		in = &kinesis.ListShardsInput{NextToken: out.NextToken}
	}
	if len(pages) != 3 || pages[0] != 1000 || pages[1] != 1000 || pages[2] != 500 || len(seen) != 2500 {
		t.Errorf("pages %v, %d distinct shards; want [1000 1000 500], 2500", pages, len(seen))
	}
	var notFound *types.ResourceNotFoundException
	if _, err := k.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String("other")}); !errors.As(err, &notFound) {
		t.Errorf("another stream: %v, want ResourceNotFoundException", err)
	}
}

// TestStubKinesisRecords reads a busy shard: records in increasing
// sequence order, resumed after a sequence number, an idle shard empty.
func TestStubKinesisRecords(t *testing.T) {
	ctx := context.Background()
	k := newStubKinesis("s", 3, 3)
	it, err := k.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String("s"), ShardId: aws.String(shardID(2)), ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
	if err != nil {
		t.Fatal(err)
	}
	iter, last := it.ShardIterator, ""
	for range 3 {
		out, err := k.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Records) != 3 || aws.ToInt64(out.MillisBehindLatest) != 0 || out.NextShardIterator == nil {
			t.Fatalf("%d records, MillisBehindLatest %d, next %v", len(out.Records), aws.ToInt64(out.MillisBehindLatest), out.NextShardIterator)
		}
		for _, r := range out.Records {
			if seq := aws.ToString(r.SequenceNumber); seq <= last {
				t.Errorf("sequence %s after %s", seq, last)
			} else {
				last = seq
			}
		}
		iter = out.NextShardIterator
	}
	it, err = k.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String("s"), ShardId: aws.String(shardID(2)),
		ShardIteratorType: types.ShardIteratorTypeAfterSequenceNumber, StartingSequenceNumber: aws.String(last)})
	if err != nil {
		t.Fatal(err)
	}
	out, err := k.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator, Limit: aws.Int32(1)})
	if err != nil || len(out.Records) != 1 || aws.ToString(out.Records[0].SequenceNumber) != seqNumber(2, 9) {
		t.Errorf("after %s: %v, %v; want one record %s", last, out, err, seqNumber(2, 9))
	}
	idle := newStubKinesis("s", 1, 0)
	it, err = idle.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String("s"), ShardId: aws.String(shardID(0)), ShardIteratorType: types.ShardIteratorTypeLatest})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := idle.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator}); err != nil || len(out.Records) != 0 || out.NextShardIterator == nil {
		t.Errorf("idle: %v, %v", out, err)
	}
	if _, err := idle.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String("s"), ShardId: aws.String(shardID(1)), ShardIteratorType: types.ShardIteratorTypeLatest}); err == nil {
		t.Error("a shard the stream does not have: no error")
	}
}
