package kinesisfake

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFaults(t *testing.T) {
	s, clock := newServer(t, Options{})
	s.CreateStream("s", 1)
	putN(t, s, clock, 2)
	ctx := context.Background()
	it := iteratorAt(t, s, "s", "shardId-000000000000", types.ShardIteratorTypeTrimHorizon, "", time.Time{})
	get := func(ctx context.Context) (*kinesis.GetRecordsOutput, error) {
		return s.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: aws.String(it)})
	}
	type seen struct{ op, stream, shard string }
	var calls []seen
	inject := func(f Fault) {
		s.SetFault(func(op, stream, shardID string) Fault {
			calls = append(calls, seen{op, stream, shardID})
			return f
		})
	}

	inject(Fault{Err: Throttled(OpGetRecords)})
	_, err := get(ctx)
	var throttled *types.ProvisionedThroughputExceededException
	require.ErrorAs(t, err, &throttled)
	assert.Equal(t, []seen{{OpGetRecords, "s", "shardId-000000000000"}}, calls)
	assert.Zero(t, s.Records("s")[0].Reads+s.Records("s")[0].LostReads, "not applied")

	inject(Fault{Err: InternalFailure(), AfterApply: true})
	_, err = get(ctx)
	var apiErr smithy.APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, "InternalFailure", apiErr.ErrorCode())
	assert.Equal(t, smithy.FaultServer, apiErr.ErrorFault())
	r := s.Records("s")[0]
	assert.Equal(t, 0, r.Reads, "applied, but the reply was lost")
	assert.Equal(t, 1, r.LostReads)

	inject(Fault{Delay: time.Hour})
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = get(cancelled)
	assert.ErrorIs(t, err, context.Canceled, "a done ctx fails before the hook")
	short, cancel := context.WithTimeout(ctx, time.Millisecond)
	defer cancel()
	_, err = get(short)
	assert.ErrorIs(t, err, context.DeadlineExceeded, "the delay ends with ctx")
	assert.Zero(t, s.Records("s")[0].Reads)

	inject(Fault{Delay: time.Millisecond})
	out, err := get(ctx)
	require.NoError(t, err)
	assert.Len(t, out.Records, 2)
	assert.Equal(t, 1, s.Records("s")[0].Reads)

	calls = nil
	inject(Fault{Err: Throttled(OpListShards)})
	_, err = s.ListShards(ctx, &kinesis.ListShardsInput{StreamARN: aws.String(StreamARN("s"))})
	var limit *types.LimitExceededException
	require.ErrorAs(t, err, &limit)
	assert.Equal(t, []seen{{OpListShards, "s", ""}}, calls)

	s.SetFault(nil)
	_, err = get(ctx)
	require.NoError(t, err)
	assert.Equal(t, map[string]int64{OpGetShardIterator: 1, OpGetRecords: 6, OpListShards: 1}, s.CallCounts())
	assert.Equal(t, int64(6), s.Calls(OpGetRecords))
}

func TestRandomFaults(t *testing.T) {
	p := Probabilities{Throttle: 0.2, ServerError: 0.1, LostReply: 0.1, Delay: 0.5, MaxDelay: time.Second}
	draw := func(f FaultFunc, n int) []Fault {
		out := make([]Fault, n)
		for i := range out {
			out[i] = f(OpGetRecords, "s", "shardId-000000000000")
		}
		return out
	}
	a, b := draw(RandomFaults(7, p), 10000), draw(RandomFaults(7, p), 10000)
	assert.Equal(t, a, b, "the same seed draws the same faults")
	assert.NotEqual(t, a, draw(RandomFaults(8, p), 10000))

	var throttles, server, lost, delays int
	for _, f := range a {
		var throttled *types.ProvisionedThroughputExceededException
		switch {
		case errors.As(f.Err, &throttled):
			throttles++
			assert.False(t, f.AfterApply)
		case f.Err != nil && f.AfterApply:
			lost++
		case f.Err != nil:
			server++
		}
		if f.Delay > 0 {
			delays++
			assert.LessOrEqual(t, f.Delay, time.Second)
		}
	}
	assert.InDelta(t, 2000, throttles, 200)
	assert.InDelta(t, 1000, server, 150)
	assert.InDelta(t, 1000, lost, 150)
	assert.InDelta(t, 5000, delays, 250)

	only := RandomFaults(1, Probabilities{Throttle: 1, Ops: []string{OpListShards}})
	assert.Zero(t, only(OpGetRecords, "s", ""))
	var limit *types.LimitExceededException
	assert.ErrorAs(t, only(OpListShards, "s", "").Err, &limit)

	// Safe for concurrent use.
	f := RandomFaults(3, p)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			draw(f, 1000)
		}()
	}
	wg.Wait()
}
