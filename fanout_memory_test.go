//go:build !race

package kcl

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMemoryOfAFanOutSubscription measures what one subscription holds
// while its receiver keeps MaxUnackedPerShard records unacked and the
// shard has far more than the HTTP/2 receive window to send: the window
// Go's HTTP/2 client grants a stream (4 MiB), the events the SDK decoded and
// holds, and the event kcl delivers. It stays under the bound tuning.md
// states for fan-out. Not built with -race: the race detector multiplies
// memory use.
func TestMemoryOfAFanOutSubscription(t *testing.T) {
	noLeak(t)
	const (
		records, size = 320, 64 << 10 // 20 MiB in the shard
		window        = 4 << 20       // Go's HTTP/2 client, per stream
		maxUnacked    = 1
	)
	f := newFixture(t, emu.kinesisLocal, 1)
	data := bytes.Repeat([]byte("x"), size)
	for start := 0; start < records; start += 40 {
		var entries []types.PutRecordsRequestEntry
		for i := start; i < min(records, start+40); i++ {
			entries = append(entries, types.PutRecordsRequestEntry{PartitionKey: aws.String(fmt.Sprint(i)), Data: data})
		}
		_, err := f.kin.PutRecords(context.Background(), &kinesis.PutRecordsInput{StreamName: &f.stream, Records: entries})
		require.NoError(t, err)
	}
	maxEvent := largestEvent(t, f, 8)
	heap := func() uint64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	base := heap()
	opts := fanOutOptions(f)
	opts.MaxUnackedPerShard, opts.BufferSize = maxUnacked, 1
	opts.ShutdownTimeout = 100 * time.Millisecond
	s := startConsumer(t, opts)
	var held Record
	select {
	case held = <-s.ch: // and not acked: the subscription stops being read
	case <-time.After(30 * time.Second):
		t.Fatal("no record")
	}
	var peak uint64
	for range 20 {
		time.Sleep(100 * time.Millisecond)
		h := heap()
		peak = max(peak, h-min(base, h))
	}
	t.Logf("one subscription, receiver holding %d record of %d KiB, events of up to %d KiB: heap above the test's peaked at %d KiB", maxUnacked, size>>10, maxEvent>>10, peak>>10)
	bound := uint64(window + 4*maxEvent + maxUnacked*(size+512))
	assert.LessOrEqual(t, peak, bound, "within tuning.md's bound for fan-out: %d KiB", bound>>10)
	held.Ack()
	require.NoError(t, s.stop(nil))
}

// largestEvent subscribes to f's shard from its start and returns the most
// record bytes one of its first n events carried.
func largestEvent(t *testing.T, f *fixture, n int) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	k := fanOutClient()
	stream, err := k.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: &f.stream})
	require.NoError(t, err)
	name := "largest-event"
	reg, err := k.RegisterStreamConsumer(ctx, &kinesis.RegisterStreamConsumerInput{StreamARN: stream.StreamDescriptionSummary.StreamARN, ConsumerName: &name})
	require.NoError(t, err)
	var out *kinesis.SubscribeToShardOutput
	require.Eventually(t, func() bool {
		out, err = k.SubscribeToShard(ctx, &kinesis.SubscribeToShardInput{ConsumerARN: reg.Consumer.ConsumerARN, ShardId: aws.String("shardId-000000000000"),
			StartingPosition: &types.StartingPosition{Type: types.ShardIteratorTypeTrimHorizon}})
		return err == nil
	}, 10*time.Second, 100*time.Millisecond)
	events := out.GetStream()
	defer events.Close()
	largest := 0
	for range n {
		ev, ok := <-events.Events()
		if !ok {
			break
		}
		if e, ok := ev.(*types.SubscribeToShardEventStreamMemberSubscribeToShardEvent); ok {
			size := 0
			for _, r := range e.Value.Records {
				size += len(r.Data)
			}
			largest = max(largest, size)
		}
	}
	return largest
}
