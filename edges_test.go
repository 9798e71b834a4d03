//go:build go1.25

package kcl

// Regression tests for the edges of issue 27, in virtual time.

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kclgo/kcl/internal/kinesisfake"
)

// A start time ahead of Kinesis's clock (AtTimestamp of a time to come, or
// of time.Now on a host whose clock runs fast) is refused by
// GetShardIterator ("timestampInMillis cannot be greater than
// currentTimestampInMillis"). It is waited out, never fatal: the shard opens
// once Kinesis's clock reaches the start, and nothing at or after it is
// missed.
func TestAStartTimeAheadOfKinesisIsWaitedFor(t *testing.T) {
	noLeak(t)
	synctest.Test(t, func(t *testing.T) {
		kin := kinesisfake.New(kinesisfake.Options{})
		kin.CreateStream("s", 2)
		g := newSchedGroup(t, kin)
		start := time.Now().Add(30 * time.Second)
		w := g.consume(g.newWorker("w", func(o *Options) { o.InitialPosition = AtTimestamp(start) }))
		ctx, stopProducing := context.WithCancel(context.Background())
		g.produce(ctx, "s", 8, 100*time.Millisecond)
		time.Sleep(40 * time.Second)
		stopProducing()
		time.Sleep(5 * time.Second)
		select {
		case <-w.done:
			t.Fatalf("the consumer stopped: %v", w.c.Err())
		default:
		}
		got := map[string]bool{}
		for _, d := range g.deliveries() {
			got[d.data] = true
		}
		var missed, early []string
		for _, r := range kin.Records("s") {
			switch {
			case !r.Arrival.Before(start) && !got[string(r.Data)]:
				missed = append(missed, string(r.Data))
			case r.Arrival.Before(start) && got[string(r.Data)]:
				early = append(early, string(r.Data))
			}
		}
		require.Empty(t, missed, "records at or after the start never delivered")
		require.Empty(t, early, "records before the start delivered")
		require.NotEmpty(t, got)
	})
}
