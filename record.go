package kcl

import "time"

// Record is one user record read from a shard. Records of one shard arrive in
// sequence order; records of different shards interleave.
//
// A Record must be acked once the caller is done with it. The shard's
// checkpoint only moves past a record after it and every earlier record of
// the same shard were acked, so an unacked record is delivered again after a
// restart or a lease move (at-least-once).
//
// A record the producer aggregated (the KPL format) arrives as its user
// records, each with the Kinesis record's SequenceNumber and its own
// SubSequenceNumber (0, 1, ...), PartitionKey and ExplicitHashKey. A plain
// record has SubSequenceNumber 0 and no ExplicitHashKey.
type Record struct {
	Data                        []byte
	PartitionKey                string
	ExplicitHashKey             string
	SequenceNumber              string
	SubSequenceNumber           int64
	ShardID                     string
	ApproximateArrivalTimestamp time.Time

	window *ackWindow
	index  uint64
}

// Ack marks the record as handled. It is idempotent, safe to call from any
// goroutine, in any order relative to other records, and does no I/O: the
// checkpoint that covers it is written within Options.CheckpointInterval.
// Acking a record whose lease was lost meanwhile does nothing: the new owner
// delivers it again. Ack on the zero Record does nothing.
func (r Record) Ack() {
	if r.window != nil {
		r.window.ack(r.index)
	}
}
