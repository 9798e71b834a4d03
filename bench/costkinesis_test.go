package bench

import (
	"context"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// stubKinesis is a kcl.KinesisAPI in memory holding shards open shards of
// one stream, for TestLeaseTableCost: reading it costs next to nothing, so
// that the lease table is all that is measured. Idle, every GetRecords
// returns no records; busy, each returns perCall small records, so that
// checkpoints move. A shard's records are made as they are read: record n
// of every shard exists as soon as someone asks for it, and the stream's
// tip (where LATEST starts) is the furthest any reader got. Iterators carry
// their position, so the stub keeps no state per reader.
type stubKinesis struct {
	stream  string
	shards  int
	perCall int // records per GetRecords call; 0: idle
	tip     []atomic.Int64
	payload []byte

	calls [4]atomic.Int64 // ListShards, GetShardIterator, GetRecords, records returned
}

// listPageMax is the most shards one ListShards page holds, as Kinesis.
const listPageMax = 1000

func newStubKinesis(stream string, shards, perCall int) *stubKinesis {
	return &stubKinesis{stream: stream, shards: shards, perCall: perCall, tip: make([]atomic.Int64, shards), payload: []byte("cost-bench-record")}
}

func shardID(i int) string { return fmt.Sprintf("shardId-%012d", i) }

// seqNumber is record n of shard i's sequence number: the same length for
// every record, increasing within a shard.
func seqNumber(i int, n int64) string { return fmt.Sprintf("49%08d%020d", i, n) }

func seqPosition(seq string) (int64, error) {
	if len(seq) != 30 || !strings.HasPrefix(seq, "49") {
		return 0, fmt.Errorf("not a sequence number of this stream: %q", seq)
	}
	return strconv.ParseInt(seq[10:], 10, 64)
}

func invalidArgument(format string, args ...any) error {
	return &types.InvalidArgumentException{Message: aws.String(fmt.Sprintf(format, args...))}
}

func (k *stubKinesis) checkStream(name, arn *string) error {
	if aws.ToString(name) != k.stream && !strings.HasSuffix(aws.ToString(arn), ":stream/"+k.stream) {
		return &types.ResourceNotFoundException{Message: aws.String(fmt.Sprintf("stream %s/%s not found", aws.ToString(name), aws.ToString(arn)))}
	}
	return nil
}

// shardIndex parses a shard ID of this stream.
func (k *stubKinesis) shardIndex(id string) (int, error) {
	n, err := strconv.Atoi(strings.TrimPrefix(id, "shardId-"))
	if err != nil || !strings.HasPrefix(id, "shardId-") || n < 0 || n >= k.shards || id != shardID(n) {
		return 0, &types.ResourceNotFoundException{Message: aws.String(fmt.Sprintf("shard %s not found in stream %s", id, k.stream))}
	}
	return n, nil
}

// ListShards pages as Kinesis does: at most MaxResults (default and most
// 1000 here) shards a page, a NextToken while more remain, and a request
// with a NextToken names no stream.
func (k *stubKinesis) ListShards(_ context.Context, in *kinesis.ListShardsInput, _ ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error) {
	k.calls[0].Add(1)
	from := 0
	switch {
	case in.NextToken != nil && (in.StreamName != nil || in.StreamARN != nil):
		return nil, invalidArgument("NextToken and StreamName/StreamARN cannot be given together")
	case in.NextToken != nil:
		rest, ok := strings.CutPrefix(*in.NextToken, "page:")
		n, err := strconv.Atoi(rest)
		if !ok || err != nil || n <= 0 || n >= k.shards {
			return nil, invalidArgument("bad NextToken %q", *in.NextToken)
		}
		from = n
	default:
		if err := k.checkStream(in.StreamName, in.StreamARN); err != nil {
			return nil, err
		}
	}
	page := listPageMax
	if in.MaxResults != nil {
		if *in.MaxResults < 1 {
			return nil, invalidArgument("MaxResults %d below 1", *in.MaxResults)
		}
		page = min(page, int(*in.MaxResults))
	}
	to := min(k.shards, from+page)
	out := &kinesis.ListShardsOutput{Shards: make([]types.Shard, 0, to-from)}
	span := new(big.Int).Lsh(big.NewInt(1), 128)
	span.Div(span, big.NewInt(int64(k.shards)))
	for i := from; i < to; i++ {
		lo := new(big.Int).Mul(span, big.NewInt(int64(i)))
		hi := new(big.Int).Add(lo, span)
		hi.Sub(hi, big.NewInt(1))
		out.Shards = append(out.Shards, types.Shard{
			ShardId:             aws.String(shardID(i)),
			HashKeyRange:        &types.HashKeyRange{StartingHashKey: aws.String(lo.String()), EndingHashKey: aws.String(hi.String())},
			SequenceNumberRange: &types.SequenceNumberRange{StartingSequenceNumber: aws.String(seqNumber(i, 0))},
		})
	}
	if to < k.shards {
		out.NextToken = aws.String("page:" + strconv.Itoa(to))
	}
	return out, nil
}

func (k *stubKinesis) GetShardIterator(_ context.Context, in *kinesis.GetShardIteratorInput, _ ...func(*kinesis.Options)) (*kinesis.GetShardIteratorOutput, error) {
	k.calls[1].Add(1)
	if err := k.checkStream(in.StreamName, in.StreamARN); err != nil {
		return nil, err
	}
	i, err := k.shardIndex(aws.ToString(in.ShardId))
	if err != nil {
		return nil, err
	}
	var pos int64
	switch in.ShardIteratorType {
	case types.ShardIteratorTypeTrimHorizon:
	case types.ShardIteratorTypeLatest, types.ShardIteratorTypeAtTimestamp:
		pos = k.tip[i].Load()
	case types.ShardIteratorTypeAtSequenceNumber, types.ShardIteratorTypeAfterSequenceNumber:
		n, err := seqPosition(aws.ToString(in.StartingSequenceNumber))
		if err != nil {
			return nil, invalidArgument("%v", err)
		}
		pos = n
		if in.ShardIteratorType == types.ShardIteratorTypeAfterSequenceNumber {
			pos++
		}
	default:
		return nil, invalidArgument("ShardIteratorType %q", in.ShardIteratorType)
	}
	return &kinesis.GetShardIteratorOutput{ShardIterator: aws.String(iterator(i, pos))}, nil
}

func iterator(shard int, pos int64) string {
	return strconv.Itoa(shard) + "/" + strconv.FormatInt(pos, 10)
}

func (k *stubKinesis) GetRecords(_ context.Context, in *kinesis.GetRecordsInput, _ ...func(*kinesis.Options)) (*kinesis.GetRecordsOutput, error) {
	k.calls[2].Add(1)
	a, b, ok := strings.Cut(aws.ToString(in.ShardIterator), "/")
	i, err1 := strconv.Atoi(a)
	pos, err2 := strconv.ParseInt(b, 10, 64)
	if !ok || err1 != nil || err2 != nil || i < 0 || i >= k.shards || pos < 0 {
		return nil, invalidArgument("bad shard iterator %q", aws.ToString(in.ShardIterator))
	}
	n := k.perCall
	if in.Limit != nil {
		n = min(n, int(*in.Limit))
	}
	out := &kinesis.GetRecordsOutput{MillisBehindLatest: aws.Int64(0)}
	if n > 0 {
		now := time.Now()
		out.Records = make([]types.Record, n)
		for j := range out.Records {
			out.Records[j] = types.Record{
				SequenceNumber:              aws.String(seqNumber(i, pos+int64(j))),
				PartitionKey:                aws.String("pk"),
				Data:                        k.payload,
				ApproximateArrivalTimestamp: &now,
			}
		}
		k.calls[3].Add(int64(n))
		pos += int64(n)
		for t := k.tip[i].Load(); t < pos && !k.tip[i].CompareAndSwap(t, pos); t = k.tip[i].Load() {
		}
	}
	out.NextShardIterator = aws.String(iterator(i, pos))
	return out, nil
}

// DescribeStreamSummary answers for the stream; the rest of kcl.KinesisAPI
// is enhanced fan-out, which the cost bench does not use.
func (k *stubKinesis) DescribeStreamSummary(_ context.Context, in *kinesis.DescribeStreamSummaryInput, _ ...func(*kinesis.Options)) (*kinesis.DescribeStreamSummaryOutput, error) {
	if err := k.checkStream(in.StreamName, in.StreamARN); err != nil {
		return nil, err
	}
	return &kinesis.DescribeStreamSummaryOutput{StreamDescriptionSummary: &types.StreamDescriptionSummary{
		StreamName:           aws.String(k.stream),
		StreamARN:            aws.String("arn:aws:kinesis:us-east-1:123456789012:stream/" + k.stream),
		StreamStatus:         types.StreamStatusActive,
		OpenShardCount:       aws.Int32(int32(k.shards)),
		RetentionPeriodHours: aws.Int32(24),
	}}, nil
}

var errNoFanOut = &types.InvalidArgumentException{Message: aws.String("the cost bench's stub Kinesis has no enhanced fan-out")}

func (k *stubKinesis) DescribeStreamConsumer(context.Context, *kinesis.DescribeStreamConsumerInput, ...func(*kinesis.Options)) (*kinesis.DescribeStreamConsumerOutput, error) {
	return nil, errNoFanOut
}

func (k *stubKinesis) RegisterStreamConsumer(context.Context, *kinesis.RegisterStreamConsumerInput, ...func(*kinesis.Options)) (*kinesis.RegisterStreamConsumerOutput, error) {
	return nil, errNoFanOut
}

func (k *stubKinesis) SubscribeToShard(context.Context, *kinesis.SubscribeToShardInput, ...func(*kinesis.Options)) (*kinesis.SubscribeToShardOutput, error) {
	return nil, errNoFanOut
}
