package main

import (
	"context"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/kclgo/kcl"
)

// The metric names, stable: dashboards and alerts use them. README.md has
// the table of each one's instrument, unit, attributes and source field.
const (
	// MetricConsumedMessages is the OpenTelemetry messaging convention's
	// count of messages delivered to the application.
	MetricConsumedMessages = "messaging.client.consumed.messages"
	MetricConsumedBytes    = "kcl.consumed.bytes"
	MetricAckedRecords     = "kcl.acked.records"
	MetricAckedBytes       = "kcl.acked.bytes"
	MetricUnackedRecords   = "kcl.unacked.records"
	MetricLag              = "kcl.lag"
	MetricLastRecordAge    = "kcl.last_record.age"
	MetricCheckpointAge    = "kcl.checkpoint.age"
	MetricOldestUnacked    = "kcl.oldest_unacked.age"
	MetricLeasesHeld       = "kcl.leases.held"
	MetricShards           = "kcl.shards"
	MetricRetries          = "kcl.retries"
	MetricThrottles        = "kcl.throttles"
	MetricIteratorRefresh  = "kcl.iterator.refreshes"
)

// Attribute keys. The messaging.* ones are those of the OpenTelemetry
// semantic conventions for messaging; kcl.shard.state is kcl's own.
const (
	AttrSystem        = attribute.Key("messaging.system")
	AttrDestination   = attribute.Key("messaging.destination.name")
	AttrPartition     = attribute.Key("messaging.destination.partition.id")
	AttrConsumerGroup = attribute.Key("messaging.consumer.group.name")
	AttrClientID      = attribute.Key("messaging.client.id")
	AttrOperationName = attribute.Key("messaging.operation.name")
	AttrShardState    = attribute.Key("kcl.shard.state")
)

// System is the value of messaging.system. The conventions list no value
// for Kinesis (they allow others); this one follows their aws_sqs.
const System = "aws_kinesis"

// OperationConsume is the messaging.operation.name of
// messaging.client.consumed.messages: records handed to the application by
// Consumer.Consume (which Process uses).
const OperationConsume = "consume"

// The values of kcl.shard.state, on kcl.shards.
const (
	ShardHeld    = "held"    // held by this worker
	ShardOwned   = "owned"   // held by another worker
	ShardUnowned = "unowned" // held by no worker: nobody reads it
	ShardEnded   = "ended"   // read to its end (checkpoint SHARD_END)
)

// shardEnd is the checkpoint of a shard read to its end, as the lease table
// stores it.
const shardEnd = "SHARD_END"

// StatsSource is what Register reads; *kcl.Consumer satisfies it.
type StatsSource interface{ Stats() kcl.Stats }

// Config names what kcl.Stats does not carry: the stream and the consumer
// group. Each becomes an attribute of every metric when it is set.
type Config struct {
	// Stream is messaging.destination.name: the stream's name
	// (Options.StreamName). Per-shard metrics carry their own shard's stream
	// name (from ShardStats.StreamARN) whatever it is, so that with
	// Options.Streams, where shard IDs repeat across streams, each shard is a
	// series of its own; leave it empty then.
	Stream string
	Group  string // messaging.consumer.group.name: the application (Options.AppName)
}

// instruments are the observable instruments Register creates.
type instruments struct {
	consumed, consumedBytes, acked, ackedBytes metric.Int64ObservableCounter
	retries, throttles, refreshes              metric.Int64ObservableCounter
	unacked, leases                            metric.Int64ObservableUpDownCounter
	shards                                     metric.Int64ObservableGauge
	lag, lastRecordAge, checkpointAge, oldest  metric.Float64ObservableGauge
}

// Register creates kcl's metrics on meter and one callback that reads
// src.Stats() once per collection and observes them all: nothing runs
// between collections and nothing is cached. Unregister the returned
// Registration to stop observing src.
func Register(meter metric.Meter, src StatsSource, cfg Config) (metric.Registration, error) {
	var in instruments
	var err error
	counter := func(dst *metric.Int64ObservableCounter, name, unit, desc string) {
		if err == nil {
			*dst, err = meter.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		}
	}
	upDown := func(dst *metric.Int64ObservableUpDownCounter, name, unit, desc string) {
		if err == nil {
			*dst, err = meter.Int64ObservableUpDownCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		}
	}
	gauge := func(dst *metric.Float64ObservableGauge, name, desc string) {
		if err == nil {
			*dst, err = meter.Float64ObservableGauge(name, metric.WithUnit("s"), metric.WithDescription(desc))
		}
	}
	counter(&in.consumed, MetricConsumedMessages, "{message}", "Records delivered to the application since this worker took the shard's lease.")
	counter(&in.consumedBytes, MetricConsumedBytes, "By", "Bytes of record data delivered since this worker took the shard's lease.")
	counter(&in.acked, MetricAckedRecords, "{record}", "Records acked since this worker took the shard's lease.")
	counter(&in.ackedBytes, MetricAckedBytes, "By", "Bytes of record data acked since this worker took the shard's lease.")
	upDown(&in.unacked, MetricUnackedRecords, "{record}", "Records delivered and not yet acked.")
	gauge(&in.lag, MetricLag, "How far the reader is from the tip of the shard, as Kinesis last said (MillisBehindLatest).")
	gauge(&in.lastRecordAge, MetricLastRecordAge, "Time since the last record received from the shard arrived in Kinesis; not reported before the first.")
	gauge(&in.checkpointAge, MetricCheckpointAge, "Time since this worker last wrote the shard's checkpoint (or took its lease).")
	gauge(&in.oldest, MetricOldestUnacked, "How long ago the oldest record delivered and not yet acked arrived in Kinesis; 0 when all are acked. It keeps growing while a shard is stalled.")
	upDown(&in.leases, MetricLeasesHeld, "{lease}", "Leases this worker holds.")
	if err == nil {
		in.shards, err = meter.Int64ObservableGauge(MetricShards, metric.WithUnit("{shard}"),
			metric.WithDescription("Shards of the lease table as this worker last read it, by state."))
	}
	counter(&in.retries, MetricRetries, "{call}", "Calls to Kinesis or DynamoDB that failed and were retried.")
	counter(&in.throttles, MetricThrottles, "{call}", "Calls refused for a limit (throttled) and retried; also counted in kcl.retries.")
	counter(&in.refreshes, MetricIteratorRefresh, "{iterator}", "Shard iterators reopened after expiring.")
	if err != nil {
		return nil, fmt.Errorf("kcl otel: creating instruments: %w", err)
	}
	base := []attribute.KeyValue{AttrSystem.String(System)}
	if cfg.Stream != "" {
		base = append(base, AttrDestination.String(cfg.Stream))
	}
	if cfg.Group != "" {
		base = append(base, AttrConsumerGroup.String(cfg.Group))
	}
	reg, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		in.observe(o, src.Stats(), base)
		return nil
	}, in.consumed, in.consumedBytes, in.acked, in.ackedBytes, in.unacked, in.lag, in.lastRecordAge, in.checkpointAge, in.oldest,
		in.leases, in.shards, in.retries, in.throttles, in.refreshes)
	if err != nil {
		return nil, fmt.Errorf("kcl otel: registering the callback: %w", err)
	}
	return reg, nil
}

// observe records one Stats snapshot.
func (in *instruments) observe(o metric.Observer, s kcl.Stats, base []attribute.KeyValue) {
	worker := with(base, AttrClientID.String(s.WorkerID))
	w := metric.WithAttributeSet(attribute.NewSet(worker...))
	o.ObserveInt64(in.leases, int64(s.LeasesHeld), w)
	o.ObserveInt64(in.retries, s.Retries, w)
	o.ObserveInt64(in.throttles, s.Throttles, w)
	o.ObserveInt64(in.refreshes, s.IteratorRefreshes, w)

	states := map[string]int64{ShardHeld: 0, ShardOwned: 0, ShardUnowned: 0, ShardEnded: 0}
	for _, sh := range s.Shards {
		switch {
		case sh.Checkpoint == shardEnd:
			states[ShardEnded]++
		case sh.Held:
			states[ShardHeld]++
		case sh.Owner != "":
			states[ShardOwned]++
		default:
			states[ShardUnowned]++
		}
	}
	for state, n := range states {
		o.ObserveInt64(in.shards, n, metric.WithAttributeSet(attribute.NewSet(with(worker, AttrShardState.String(state))...)))
	}

	for _, sh := range s.Shards {
		if !sh.Held { // only ShardID, Owner and Checkpoint are known
			continue
		}
		shard := with(worker, AttrPartition.String(sh.ShardID))
		if i := strings.LastIndex(sh.StreamARN, ":stream/"); i >= 0 {
			shard = with(shard, AttrDestination.String(sh.StreamARN[i+len(":stream/"):])) // the last of a key wins in a Set
		}
		a := metric.WithAttributeSet(attribute.NewSet(shard...))
		o.ObserveInt64(in.consumed, sh.RecordsDelivered, metric.WithAttributeSet(attribute.NewSet(with(shard, AttrOperationName.String(OperationConsume))...)))
		o.ObserveInt64(in.consumedBytes, sh.BytesDelivered, a)
		o.ObserveInt64(in.acked, sh.RecordsAcked, a)
		o.ObserveInt64(in.ackedBytes, sh.BytesAcked, a)
		o.ObserveInt64(in.unacked, int64(sh.Unacked), a)
		o.ObserveFloat64(in.lag, float64(sh.MillisBehindLatest)/1000, a)
		if sh.LastRecordAge > 0 {
			o.ObserveFloat64(in.lastRecordAge, sh.LastRecordAge.Seconds(), a)
		}
		o.ObserveFloat64(in.checkpointAge, sh.CheckpointAge.Seconds(), a)
		o.ObserveFloat64(in.oldest, sh.OldestUnackedAge.Seconds(), a)
	}
}

// with returns a new slice: kvs followed by more (attribute.NewSet may sort
// the slice it is given, so none is shared).
func with(kvs []attribute.KeyValue, more ...attribute.KeyValue) []attribute.KeyValue {
	return append(append(make([]attribute.KeyValue, 0, len(kvs)+len(more)), kvs...), more...)
}
