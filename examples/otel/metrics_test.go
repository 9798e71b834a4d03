package main

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/kclgo/kcl"
)

type fixedStats kcl.Stats

func (f *fixedStats) Stats() kcl.Stats { return kcl.Stats(*f) }

// collect registers src on a fresh MeterProvider and reads its metrics once
// through a ManualReader, by name.
func collect(t *testing.T, src StatsSource, cfg Config) (func() map[string]metricdata.Metrics, *sdkmetric.MeterProvider) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = provider.Shutdown(context.Background()) })
	_, err := Register(provider.Meter("test"), src, cfg)
	require.NoError(t, err)
	return func() map[string]metricdata.Metrics {
		t.Helper()
		var rm metricdata.ResourceMetrics
		require.NoError(t, reader.Collect(context.Background(), &rm))
		byName := map[string]metricdata.Metrics{}
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				byName[m.Name] = m
			}
		}
		return byName
	}, provider
}

// point is one data point, whatever its instrument.
type point struct {
	attrs attribute.Set
	value float64
}

// points returns m's data points, and its instrument as README.md names it.
func points(t *testing.T, m metricdata.Metrics) ([]point, string) {
	t.Helper()
	var ps []point
	switch d := m.Data.(type) {
	case metricdata.Sum[int64]:
		require.Equal(t, metricdata.CumulativeTemporality, d.Temporality, m.Name)
		for _, p := range d.DataPoints {
			ps = append(ps, point{p.Attributes, float64(p.Value)})
		}
		if d.IsMonotonic {
			return ps, "counter"
		}
		return ps, "updowncounter"
	case metricdata.Gauge[int64]:
		for _, p := range d.DataPoints {
			ps = append(ps, point{p.Attributes, float64(p.Value)})
		}
		return ps, "gauge"
	case metricdata.Gauge[float64]:
		for _, p := range d.DataPoints {
			ps = append(ps, point{p.Attributes, p.Value})
		}
		return ps, "gauge"
	}
	t.Fatalf("%s: unexpected data %T", m.Name, m.Data)
	return nil, ""
}

// attrMap flattens a set for comparison.
func attrMap(s attribute.Set) map[string]string {
	m := map[string]string{}
	for _, kv := range s.ToSlice() {
		m[string(kv.Key)] = kv.Value.String()
	}
	return m
}

// find returns the value of the one point of m whose attributes include
// want, failing unless there is exactly one.
func find(t *testing.T, metrics map[string]metricdata.Metrics, name string, want map[string]string) float64 {
	t.Helper()
	m, ok := metrics[name]
	require.True(t, ok, "metric %s not collected", name)
	ps, _ := points(t, m)
	var found []float64
	for _, p := range ps {
		got := attrMap(p.attrs)
		match := true
		for k, v := range want {
			if got[k] != v {
				match = false
			}
		}
		if match {
			found = append(found, p.value)
		}
	}
	require.Len(t, found, 1, "%s%v among %v", name, want, ps)
	return found[0]
}

func TestRegisterMapsStats(t *testing.T) {
	const held, other, free, ended = "shardId-000000000000", "shardId-000000000001", "shardId-000000000002", "shardId-000000000003"
	src := &fixedStats{WorkerID: "w1", LeasesHeld: 1, Retries: 5, Throttles: 2, IteratorRefreshes: 1, Shards: []kcl.ShardStats{
		{ShardID: held, Owner: "w1", Held: true, MillisBehindLatest: 1500, LastRecordAge: 2500 * time.Millisecond,
			RecordsDelivered: 10, BytesDelivered: 1000, RecordsAcked: 8, BytesAcked: 800, Unacked: 2,
			Checkpoint: "49590338271490256608559692538361571095921575989136588898", CheckpointAge: 3 * time.Second},
		{ShardID: other, Owner: "w2", Checkpoint: "TRIM_HORIZON"},
		{ShardID: free, Checkpoint: "LATEST"},
		{ShardID: ended, Owner: "w2", Checkpoint: "SHARD_END"},
	}}
	read, _ := collect(t, src, Config{Stream: "orders", Group: "billing"})
	got := read()

	worker := map[string]string{"messaging.system": "aws_kinesis", "messaging.destination.name": "orders",
		"messaging.consumer.group.name": "billing", "messaging.client.id": "w1"}
	shard := map[string]string{"messaging.destination.partition.id": held}
	for k, v := range worker {
		shard[k] = v
	}

	// Every per-shard metric carries exactly the shard's attributes (plus the
	// operation on the convention's metric), and only the held shard appears.
	for _, name := range []string{MetricConsumedMessages, MetricConsumedBytes, MetricAckedRecords, MetricAckedBytes,
		MetricUnackedRecords, MetricLag, MetricLastRecordAge, MetricCheckpointAge} {
		ps, _ := points(t, got[name])
		require.Len(t, ps, 1, name)
		want := shard
		if name == MetricConsumedMessages {
			want = map[string]string{"messaging.operation.name": "consume"}
			for k, v := range shard {
				want[k] = v
			}
		}
		assert.Equal(t, want, attrMap(ps[0].attrs), name)
	}
	for _, name := range []string{MetricLeasesHeld, MetricRetries, MetricThrottles, MetricIteratorRefresh} {
		ps, _ := points(t, got[name])
		require.Len(t, ps, 1, name)
		assert.Equal(t, worker, attrMap(ps[0].attrs), name)
	}

	for name, want := range map[string]float64{
		MetricConsumedMessages: 10, MetricConsumedBytes: 1000, MetricAckedRecords: 8, MetricAckedBytes: 800,
		MetricUnackedRecords: 2, MetricLag: 1.5, MetricLastRecordAge: 2.5, MetricCheckpointAge: 3,
		MetricLeasesHeld: 1, MetricRetries: 5, MetricThrottles: 2, MetricIteratorRefresh: 1,
	} {
		assert.Equal(t, want, find(t, got, name, nil), name)
	}
	for state, want := range map[string]float64{ShardHeld: 1, ShardOwned: 1, ShardUnowned: 1, ShardEnded: 1} {
		assert.Equal(t, want, find(t, got, MetricShards, map[string]string{"kcl.shard.state": state}), state)
	}

	// Values follow Stats at each collection; a shard no longer held, and an
	// age not yet known, are not reported.
	src.Shards[0].RecordsDelivered, src.Shards[0].LastRecordAge = 25, 0
	src.Shards = append(src.Shards, kcl.ShardStats{ShardID: "shardId-000000000004", Owner: "w1", Held: true, RecordsDelivered: 3})
	got = read()
	assert.Equal(t, 25.0, find(t, got, MetricConsumedMessages, map[string]string{"messaging.destination.partition.id": held}))
	assert.Equal(t, 3.0, find(t, got, MetricConsumedMessages, map[string]string{"messaging.destination.partition.id": "shardId-000000000004"}))
	_, ok := got[MetricLastRecordAge]
	assert.False(t, ok, "last record age reported while unknown")
	src.Shards[0].Held = false
	got = read()
	ps, _ := points(t, got[MetricConsumedMessages])
	assert.Len(t, ps, 1, "only the shard still held is reported: a shard no longer held must not be")
}

func TestRegisterWithoutStreamOrGroup(t *testing.T) {
	read, _ := collect(t, &fixedStats{WorkerID: "w1"}, Config{})
	ps, _ := points(t, read()[MetricLeasesHeld])
	require.Len(t, ps, 1)
	assert.Equal(t, map[string]string{"messaging.system": "aws_kinesis", "messaging.client.id": "w1"}, attrMap(ps[0].attrs))
}

// TestReadmeTable keeps README.md's table true: every metric collected is
// listed there with its instrument and unit, and nothing else is.
func TestReadmeTable(t *testing.T) {
	src := &fixedStats{WorkerID: "w1", LeasesHeld: 1, Shards: []kcl.ShardStats{{ShardID: "s", Owner: "w1", Held: true, LastRecordAge: time.Second}}}
	read, _ := collect(t, src, Config{Stream: "orders", Group: "billing"})
	collected := map[string]string{}
	for name, m := range read() {
		_, instrument := points(t, m)
		collected[name] = instrument + " " + m.Unit
	}
	raw, err := os.ReadFile("README.md")
	require.NoError(t, err)
	row := regexp.MustCompile("(?m)^\\| `([a-z_.]+)` \\| (\\w+) \\| `([^`]+)` \\|")
	documented := map[string]string{}
	for _, m := range row.FindAllStringSubmatch(string(raw), -1) {
		documented[m[1]] = strings.ToLower(m[2]) + " " + m[3]
	}
	assert.Equal(t, collected, documented)
}

// With Options.Streams shard IDs repeat across streams: each shard's
// metrics carry its own stream's name, so each is a series of its own.
func TestRegisterKeepsShardsOfSeveralStreamsApart(t *testing.T) {
	const shard = "shardId-000000000000"
	src := &fixedStats{WorkerID: "w1", LeasesHeld: 2, Shards: []kcl.ShardStats{
		{ShardID: shard, StreamARN: "arn:aws:kinesis:us-east-1:123456789012:stream/orders", Owner: "w1", Held: true, Unacked: 2},
		{ShardID: shard, StreamARN: "arn:aws:kinesis:us-east-1:123456789012:stream/payments", Owner: "w1", Held: true, Unacked: 5},
	}}
	read, _ := collect(t, src, Config{Group: "billing"})
	got := read()
	for stream, want := range map[string]float64{"orders": 2, "payments": 5} {
		assert.Equal(t, want, find(t, got, MetricUnackedRecords, map[string]string{"messaging.destination.name": stream, "messaging.destination.partition.id": shard}))
	}
}
