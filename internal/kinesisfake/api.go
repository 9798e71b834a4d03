package kinesisfake

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// Operation names, as Calls and FaultFunc name them.
const (
	OpListShards             = "ListShards"
	OpGetShardIterator       = "GetShardIterator"
	OpGetRecords             = "GetRecords"
	OpDescribeStreamSummary  = "DescribeStreamSummary"
	OpDescribeStreamConsumer = "DescribeStreamConsumer"
	OpRegisterStreamConsumer = "RegisterStreamConsumer"
	OpSubscribeToShard       = "SubscribeToShard"
)

// Limits of ListShards MaxResults and GetRecords Limit, as AWS has them.
const (
	defaultMaxResults = 1000
	maxMaxResults     = 10000
	defaultLimit      = 10000
	maxLimit          = 10000
)

// ListShards lists the stream's shards that are not removed, open and
// closed, in shard ID order, MaxResults (default 1000, and at most
// Options.PageSize) a page. A request with NextToken must name no stream, no
// ExclusiveStartShardId and no ShardFilter; a token older than
// Options.NextTokenTTL fails with *types.ExpiredNextTokenException. Every
// ShardFilter type is honoured; AT_TRIM_HORIZON and FROM_TRIM_HORIZON list
// every shard. The result's metadata holds the response's Date, as
// GetShardIterator's does.
func (s *Server) ListShards(ctx context.Context, in *kinesis.ListShardsInput, _ ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error) {
	label := streamLabel(in.StreamName, in.StreamARN)
	var tok listToken
	var tokErr error
	if in.NextToken != nil {
		tok, tokErr = decodeListToken(*in.NextToken)
		label = tok.stream
	}
	return call(ctx, s, OpListShards, label, "", func(now time.Time, _ bool) (*kinesis.ListShardsOutput, error) {
		if in.NextToken != nil {
			if tokErr != nil {
				return nil, tokErr
			}
			if in.StreamName != nil || in.StreamARN != nil || in.ExclusiveStartShardId != nil || in.ShardFilter != nil {
				return nil, invalidArgument("NextToken cannot be given with StreamName, StreamARN, ExclusiveStartShardId or ShardFilter")
			}
			if now.Sub(tok.issued) > s.nextTokenTTL {
				return nil, &types.ExpiredNextTokenException{Message: aws.String(fmt.Sprintf("The timestamp for the next token has expired: issued %s, now %s", tok.issued, now))}
			}
		} else {
			tok = listToken{after: aws.ToString(in.ExclusiveStartShardId)}
			if f := in.ShardFilter; f != nil {
				tok.filter, tok.filterID = f.Type, aws.ToString(f.ShardId)
				switch f.Type {
				case types.ShardFilterTypeAfterShardId:
					if tok.filterID == "" {
						return nil, invalidArgument("ShardFilter AFTER_SHARD_ID needs a ShardId")
					}
				case types.ShardFilterTypeAtTimestamp, types.ShardFilterTypeFromTimestamp:
					if f.Timestamp == nil {
						return nil, invalidArgument("ShardFilter %s needs a Timestamp", f.Type)
					}
					tok.filterTime = *f.Timestamp
				case types.ShardFilterTypeAtTrimHorizon, types.ShardFilterTypeFromTrimHorizon, types.ShardFilterTypeAtLatest:
				default:
					return nil, invalidArgument("invalid ShardFilter type %q", f.Type)
				}
			}
		}
		name, arn := tok.stream, ""
		if in.NextToken == nil {
			name, arn = aws.ToString(in.StreamName), aws.ToString(in.StreamARN)
		}
		st, err := s.lookup(name, arn, now)
		if err != nil {
			return nil, err
		}
		tok.stream = st.name
		size := int(aws.ToInt32(in.MaxResults))
		if in.MaxResults == nil {
			size = defaultMaxResults
		}
		if size < 1 || size > maxMaxResults {
			return nil, invalidArgument("MaxResults %d is not within 1..%d", size, maxMaxResults)
		}
		if s.pageSize > 0 {
			size = min(size, s.pageSize)
		}
		out := &kinesis.ListShardsOutput{Shards: []types.Shard{}, ResultMetadata: responseMetadata(now)}
		for _, sh := range st.shards {
			if !tok.match(sh) {
				continue
			}
			if len(out.Shards) == size {
				tok.after, tok.issued = aws.ToString(out.Shards[size-1].ShardId), now
				out.NextToken = aws.String(tok.encode())
				break
			}
			out.Shards = append(out.Shards, sh.describe())
		}
		return out, nil
	})
}

// GetShardIterator returns an iterator at TRIM_HORIZON, LATEST,
// AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER or AT_TIMESTAMP (the first
// record that arrived at or after Timestamp) of a shard. A sequence number
// already trimmed opens at the trim horizon; one not of the shard fails with
// *types.InvalidArgumentException. A shard that does not exist, or was
// removed, fails with *types.ResourceNotFoundException. The result's
// metadata holds the response's Date, in whole seconds, as the SDK records
// it (awsmiddleware.GetServerTime).
func (s *Server) GetShardIterator(ctx context.Context, in *kinesis.GetShardIteratorInput, _ ...func(*kinesis.Options)) (*kinesis.GetShardIteratorOutput, error) {
	shardID := aws.ToString(in.ShardId)
	return call(ctx, s, OpGetShardIterator, streamLabel(in.StreamName, in.StreamARN), shardID, func(now time.Time, _ bool) (*kinesis.GetShardIteratorOutput, error) {
		st, err := s.lookup(aws.ToString(in.StreamName), aws.ToString(in.StreamARN), now)
		if err != nil {
			return nil, err
		}
		sh := st.byID[shardID]
		if sh == nil {
			return nil, shardNotFound(st, shardID)
		}
		pos, err := sh.position(in, now)
		if err != nil {
			return nil, err
		}
		it := iterator{stream: st.name, shardID: sh.id, created: st.created, pos: pos, issued: now}
		return &kinesis.GetShardIteratorOutput{ShardIterator: aws.String(it.encode()), ResultMetadata: responseMetadata(now)}, nil
	})
}

// GetRecords returns up to Limit (default 10000) records from the iterator's
// position (or from the trim horizon, if retention trimmed past it) and the
// iterator after them. Once a closed shard is read to its end,
// NextShardIterator is nil and ChildShards lists the shard's children.
// MillisBehindLatest is 0 when the reply reaches the shard's last record,
// else the age of the next record unread (at least 1). An iterator older
// than Options.IteratorTTL fails with *types.ExpiredIteratorException; one
// of a removed shard with *types.ResourceNotFoundException.
func (s *Server) GetRecords(ctx context.Context, in *kinesis.GetRecordsInput, _ ...func(*kinesis.Options)) (*kinesis.GetRecordsOutput, error) {
	it, itErr := decodeIterator(aws.ToString(in.ShardIterator))
	return call(ctx, s, OpGetRecords, it.stream, it.shardID, func(now time.Time, lost bool) (*kinesis.GetRecordsOutput, error) {
		if itErr != nil {
			return nil, itErr
		}
		limit := int(aws.ToInt32(in.Limit))
		if in.Limit == nil {
			limit = defaultLimit
		}
		if limit < 1 || limit > maxLimit {
			return nil, invalidArgument("Limit %d is not within 1..%d", limit, maxLimit)
		}
		if age := now.Sub(it.issued); age > s.iteratorTTL {
			return nil, &types.ExpiredIteratorException{Message: aws.String(fmt.Sprintf(
				"Iterator expired. The iterator was created at time %s while right now it is %s which is further in the future than the tolerated delay of %d milliseconds.",
				it.issued.UTC().Format(time.RFC3339Nano), now.UTC().Format(time.RFC3339Nano), s.iteratorTTL.Milliseconds()))}
		}
		st, err := s.lookup(it.stream, "", now)
		if err != nil {
			return nil, err
		}
		if !st.created.Equal(it.created) { // an iterator of a deleted incarnation
			return nil, &types.ResourceNotFoundException{Message: aws.String(fmt.Sprintf("Stream %s under account %s not found.", it.stream, Account))}
		}
		sh := st.byID[it.shardID]
		if sh == nil {
			return nil, shardNotFound(st, it.shardID)
		}
		i := max(it.pos, sh.trimmed) - sh.trimmed
		j := min(len(sh.records), i+limit)
		out := &kinesis.GetRecordsOutput{Records: make([]types.Record, 0, j-i), MillisBehindLatest: aws.Int64(0)}
		for _, r := range sh.records[i:j] {
			if lost {
				r.lostReads++
			} else {
				r.reads++
			}
			out.Records = append(out.Records, r.toSDK())
		}
		if j < len(sh.records) {
			out.MillisBehindLatest = aws.Int64(max(1, now.Sub(sh.records[j].arrival).Milliseconds()))
		} else if !sh.open() {
			out.ChildShards = cloneChildren(sh.children)
			return out, nil
		}
		next := iterator{stream: st.name, shardID: sh.id, created: st.created, pos: sh.trimmed + j, issued: now}
		out.NextShardIterator = aws.String(next.encode())
		return out, nil
	})
}

func cloneChildren(cs []types.ChildShard) []types.ChildShard {
	out := make([]types.ChildShard, len(cs))
	for i, c := range cs {
		r := *c.HashKeyRange
		out[i] = types.ChildShard{ShardId: aws.String(*c.ShardId), ParentShards: append([]string(nil), c.ParentShards...), HashKeyRange: &r}
	}
	return out
}

// DescribeStreamSummary describes an ACTIVE, provisioned, unencrypted stream.
// The result's metadata holds the response's Date, as GetShardIterator's
// does.
func (s *Server) DescribeStreamSummary(ctx context.Context, in *kinesis.DescribeStreamSummaryInput, _ ...func(*kinesis.Options)) (*kinesis.DescribeStreamSummaryOutput, error) {
	return call(ctx, s, OpDescribeStreamSummary, streamLabel(in.StreamName, in.StreamARN), "", func(now time.Time, _ bool) (*kinesis.DescribeStreamSummaryOutput, error) {
		st, err := s.lookup(aws.ToString(in.StreamName), aws.ToString(in.StreamARN), now)
		if err != nil {
			return nil, err
		}
		open, consumers := 0, 0
		for _, c := range s.consumers {
			if c.stream == st.name && c.streamCreated.Equal(st.created) {
				consumers++
			}
		}
		for _, sh := range st.shards {
			if sh.open() {
				open++
			}
		}
		return &kinesis.DescribeStreamSummaryOutput{StreamDescriptionSummary: &types.StreamDescriptionSummary{
			StreamName:              aws.String(st.name),
			StreamARN:               aws.String(st.arn),
			StreamStatus:            types.StreamStatusActive,
			StreamModeDetails:       &types.StreamModeDetails{StreamMode: types.StreamModeProvisioned},
			StreamCreationTimestamp: aws.Time(st.created),
			RetentionPeriodHours:    aws.Int32(int32((s.retention + time.Hour - 1) / time.Hour)), // rounded up
			OpenShardCount:          aws.Int32(int32(open)),
			ConsumerCount:           aws.Int32(int32(consumers)),
			EncryptionType:          types.EncryptionTypeNone,
			EnhancedMonitoring:      []types.EnhancedMetrics{},
		}, ResultMetadata: responseMetadata(now)}, nil
	})
}
