package main

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/kclgo/kcl"
)

type fixedStats kcl.Stats

func (f fixedStats) Stats() kcl.Stats { return kcl.Stats(f) }

func TestCollectorExportsStats(t *testing.T) {
	const orders, payments = "arn:aws:kinesis:us-east-1:123456789012:stream/orders", "arn:aws:kinesis:us-east-1:123456789012:stream/payments"
	src := fixedStats{WorkerID: "w1", LeasesHeld: 1, Retries: 3, Throttles: 2, Shards: []kcl.ShardStats{
		{ShardID: "shardId-000000000000", StreamARN: orders, Owner: "w1", Held: true, MillisBehindLatest: 1500, RecordsDelivered: 10, RecordsAcked: 8, Unacked: 2, CheckpointAge: 2 * time.Second},
		{ShardID: "shardId-000000000001", StreamARN: orders, Owner: "w2"}, // another worker's: not exported here
		// Options.Streams: the same shard ID in another stream is a series of its own.
		{ShardID: "shardId-000000000000", StreamARN: payments, Owner: "w1", Held: true, MillisBehindLatest: 20, Unacked: 1},
	}}
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(src))
	want := `
# HELP kcl_millis_behind_latest How far the reader is from the tip of the shard, as Kinesis says.
# TYPE kcl_millis_behind_latest gauge
kcl_millis_behind_latest{shard="shardId-000000000000",stream="arn:aws:kinesis:us-east-1:123456789012:stream/orders",worker="w1"} 1500
kcl_millis_behind_latest{shard="shardId-000000000000",stream="arn:aws:kinesis:us-east-1:123456789012:stream/payments",worker="w1"} 20
# HELP kcl_records_unacked Delivered records not yet acked.
# TYPE kcl_records_unacked gauge
kcl_records_unacked{shard="shardId-000000000000",stream="arn:aws:kinesis:us-east-1:123456789012:stream/orders",worker="w1"} 2
kcl_records_unacked{shard="shardId-000000000000",stream="arn:aws:kinesis:us-east-1:123456789012:stream/payments",worker="w1"} 1
# HELP kcl_throttles_total Calls refused for a limit.
# TYPE kcl_throttles_total counter
kcl_throttles_total{worker="w1"} 2
`
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(want), "kcl_millis_behind_latest", "kcl_records_unacked", "kcl_throttles_total"))
}
