package kcl

import (
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// Stats is a snapshot of what a Consumer is doing, for logs, dashboards and
// metrics (examples/prometheus exports it). Counters of a shard count from
// when this worker took its lease.
type Stats struct {
	WorkerID   string
	LeasesHeld int
	// Shards lists every shard of the lease table as this worker last read
	// it, by stream ARN and shard ID, with full detail for the shards it
	// holds.
	Shards []ShardStats
	// IteratorRefreshes counts shard iterators reopened after expiring.
	IteratorRefreshes int64
	// Throttles counts calls refused for a limit (ProvisionedThroughputExceeded,
	// LimitExceeded, KMSThrottling, ...); Retries counts every call retried.
	Throttles, Retries int64
	// MisplacedDropped counts the user records of KPL aggregates dropped
	// because one of them has a key outside its shard's hash-key range
	// (Options.KeepMisplacedAggregates).
	MisplacedDropped int64
	// Process is what Process or ProcessBatch does with the records
	// delivered; zero with Consume.
	Process ProcessStats
}

// ProcessStats describes a run of Process or ProcessBatch, as of its
// dispatcher's last step (Running as of now): where the records delivered
// and not yet done are, and what their attempts came to.
type ProcessStats struct {
	// Running records are in a handler call (or a batch) that runs now.
	Running int
	// Ready records have their key free and wait for a free call.
	Ready int
	// Waiting records wait behind an earlier record of their key.
	Waiting int
	// BackingOff records failed and wait for their next attempt.
	BackingOff int
	// FailedAttempts counts failed handler calls, per record (a batch's
	// counts each record it failed); ToOnFailure counts the records given
	// to OnFailure. Both since the run started.
	FailedAttempts, ToOnFailure int64
}

// ShardStats describes one shard. Only ShardID, StreamARN, Owner and
// Checkpoint are set for a shard this worker does not hold.
type ShardStats struct {
	ShardID string
	// StreamARN is the shard's stream. For a stream of a multi-stream lease
	// table that this worker does not read, it is built from the lease key
	// (account and stream name) in this worker's partition and region.
	StreamARN string
	Owner     string // empty when no worker holds it
	Held      bool   // held by this worker
	// MillisBehindLatest is what Kinesis last said of how far the reader is
	// from the tip of the shard.
	MillisBehindLatest int64
	// LastRecordAge is the time since the last record of the last page
	// received from Kinesis arrived there (ApproximateArrivalTimestamp): it
	// is noted when the page is received, before its records are delivered;
	// 0 before any.
	LastRecordAge                    time.Duration
	RecordsDelivered, BytesDelivered int64
	RecordsAcked, BytesAcked         int64
	Unacked                          int
	Checkpoint                       string // as stored: a sequence number or a sentinel
	CheckpointSubSequenceNumber      int64
	// CheckpointAge is the time since this worker last wrote the checkpoint
	// (or took the lease).
	CheckpointAge time.Duration
	// OldestUnackedAge is how long ago the oldest record this worker
	// delivered from the shard and that is not yet acked arrived in Kinesis
	// (its ApproximateArrivalTimestamp); 0 when every record delivered is
	// acked. Unlike MillisBehindLatest, which Kinesis updates only as
	// records are fetched, it keeps growing while the shard is stalled
	// behind a record never acked (or, with Process, one that keeps
	// failing), so an alert on it fires.
	OldestUnackedAge time.Duration
}

// shardCounters are a held shard's counters, updated without locks.
type shardCounters struct {
	delivered, deliveredBytes atomic.Int64
	millisBehind              atomic.Int64
	lastArrival               atomic.Int64 // unix nanoseconds
}

// consumerCounters are the Consumer's own counters.
type consumerCounters struct {
	retryCounters
	iteratorRefreshes atomic.Int64
	misplacedDropped  atomic.Int64 // user records of KPL aggregates dropped (pageRecords.misplaced)
	process           processCounters
}

// processCounters are ProcessStats: the gauges written by the dispatcher
// after each step, running and the counters by the attempts; any goroutine
// reads them.
type processCounters struct {
	running                            atomic.Int64 // records in a handler call now
	handed, ready, waiting, backingOff atomic.Int64 // handed: to a call, begun or queued for a worker
	failed, toOnFailure                atomic.Int64
}

// clear zeroes the gauges once Process returned, whatever was left in its
// queues: the records not done are no longer in Process.
func (c *processCounters) clear() {
	c.running.Store(0)
	c.handed.Store(0)
	c.ready.Store(0)
	c.waiting.Store(0)
	c.backingOff.Store(0)
}

func (c *processCounters) snapshot() ProcessStats {
	running, handed := c.running.Load(), c.handed.Load()
	return ProcessStats{
		Running: int(running), Ready: int(c.ready.Load() + max(0, handed-running)), Waiting: int(c.waiting.Load()), BackingOff: int(c.backingOff.Load()),
		FailedAttempts: c.failed.Load(), ToOnFailure: c.toOnFailure.Load(),
	}
}

// Stats returns a snapshot. It is safe to call from any goroutine, at any
// time, and does no I/O.
func (c *Consumer) Stats() Stats {
	now := time.Now()
	s := Stats{
		WorkerID:          c.opts.WorkerID,
		IteratorRefreshes: c.counters.iteratorRefreshes.Load(),
		MisplacedDropped:  c.counters.misplacedDropped.Load(),
		Throttles:         c.counters.throttles.Load(),
		Retries:           c.counters.retries.Load(),
		Process:           c.counters.process.snapshot(),
	}
	leases := c.keeper.leasesRead()
	byShard := make(map[string]ShardStats, len(leases))
	for _, l := range leases { // by lease key
		_, shard := splitLeaseKey(l.shardID)
		byShard[l.shardID] = ShardStats{ShardID: shard, StreamARN: c.streamARNOf(l.shardID), Owner: l.owner, Checkpoint: l.checkpoint.seq, CheckpointSubSequenceNumber: l.checkpoint.sub}
	}
	for _, h := range c.held.list() {
		s.LeasesHeld++
		_, unacked, records, bytes, oldest := h.window.stats()
		stored := h.stored.Load()
		st := ShardStats{
			ShardID: h.shard, StreamARN: h.stream.arn, Owner: c.opts.WorkerID, Held: true,
			MillisBehindLatest: h.counters.millisBehind.Load(),
			RecordsDelivered:   h.counters.delivered.Load(), BytesDelivered: h.counters.deliveredBytes.Load(),
			RecordsAcked: records, BytesAcked: bytes, Unacked: unacked,
			Checkpoint: stored.cp.seq, CheckpointSubSequenceNumber: stored.cp.sub, CheckpointAge: now.Sub(stored.at),
		}
		if !oldest.IsZero() {
			st.OldestUnackedAge = max(0, now.Sub(oldest))
		}
		if at := h.counters.lastArrival.Load(); at != 0 {
			st.LastRecordAge = now.Sub(time.Unix(0, at))
		}
		byShard[h.shardID] = st
	}
	for _, st := range byShard {
		s.Shards = append(s.Shards, st)
	}
	slices.SortFunc(s.Shards, func(a, b ShardStats) int {
		if n := strings.Compare(a.StreamARN, b.StreamARN); n != 0 {
			return n
		}
		return strings.Compare(a.ShardID, b.ShardID)
	})
	return s
}
