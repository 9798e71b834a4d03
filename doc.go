// Package kcl consumes Amazon Kinesis Data Streams: a Go program ranges over
// a stream's records, acks what it has handled, and its place in every shard
// is kept in a DynamoDB lease table shared by every worker of one
// application, so that a restart, a crash or a deploy loses nothing.
//
//	for rec := range kcl.Consume(ctx, kcl.Options{StreamName: "orders", AppName: "billing"}) {
//		handle(rec.Data)
//		rec.Ack() // done with it: the checkpoint may now move past it
//	}
//	// cancel ctx to shut down; the loop ends only when shutdown is complete
//
// # Delivery
//
// Records of one shard arrive in sequence order; shards interleave. Delivery
// is at-least-once: a shard's checkpoint is the last record that was acked
// together with every record delivered before it from that shard, so acks
// may come in any order and from any goroutine. Checkpoints are written every
// Options.CheckpointInterval, and when a lease is released, handed off or
// ended. A record is delivered again, to this or another worker, only if:
//   - it was delivered but not acked when its worker crashed, lost its lease
//     or timed out on shutdown; or
//   - it was acked, but its checkpoint not yet written (at most
//     CheckpointInterval of acks), when its worker crashed or lost its lease;
//     or
//   - its worker lost its lease while the record was on its way to the
//     receiver: in the channel's buffer (at most Options.BufferSize records)
//     or in the chunk being sent when the worker's delivery deadline passed
//     (at most 64 records, user records of a KPL aggregate each counted, with
//     polling or fan-out alike). These are the
//     only records a worker can deliver from a shard after another worker
//     took it over.
//
// A lease still at LATEST (nothing acked yet) that moves to another worker
// is opened by the new owner at the time of its first take less a minute
// (for clock skew), so records written between the two owners are not
// skipped; a few written before the group first read the shard may then be
// delivered too.
//
// Hazards:
//   - A record never acked holds its shard's checkpoint back for good, and
//     once Options.MaxUnackedPerShard records of a shard are unacked the shard
//     stops fetching. kcl logs when that happens.
//   - Acking a record after its lease moved to another worker does nothing;
//     the new owner delivers it again. Handlers must be idempotent.
//   - The channel holds up to Options.BufferSize records (default 128) and
//     must be drained until it closes: shutdown completes, and leases are
//     released, only then.
//   - On cancel, kcl takes back the records still waiting in the channel
//     (never received, the next owner delivers them): a loop that cancels
//     receives, after the record in hand, only those it races the take-back
//     for, at most BufferSize. Ack them or not; either way each may be
//     delivered again.
//
// # Leases and workers
//
// Each shard has a lease item in the lease table (Options.AppName, created
// on demand), in the Java KCL 2.x schema, so an application moving from the
// Java KCL resumes after its checkpoints. Workers share the shards fairly:
// each holds the floor or the ceiling of shards/workers, taken in one pass;
// a worker that joins asks the most loaded workers to hand leases over, and
// the owner checkpoints what was acked before the new owner reads on.
//
// Each worker writes a heartbeat item every LeaseDuration/2; a worker whose
// heartbeat has not changed for LeaseDuration, as seen on the observer's own
// clock and confirmed by a consistent read, is dead and its leases are
// taken. Two workers of the group (the live ones with the smallest IDs)
// read the whole table every second and publish what they judge dead in a
// small group item; the others read that item every second and the whole
// table only when it says something changed, so the table's cost grows with
// shards plus workers, not their product.
//
// A worker stops delivering before anyone can judge it dead. Its deadline
// is LeaseDuration less a tenth after it sent the last heartbeat that was
// confirmed in time, on the monotonic and on the wall clock (so a host that
// wakes from a suspend is past it). Past the deadline (DynamoDB unreachable
// or throttled, the process frozen) it pauses: it delivers nothing more, and
// Process starts no handler call and ends the context of those running,
// though acks still count. When a heartbeat is written again, it first
// writes every lease it still holds once more, fenced, recording that late
// heartbeat in each, so that a take decided meanwhile fails, and so does one
// decided later on an older copy of the heartbeat; then the shards still its
// own go on where they stopped. A second process with the same WorkerID is
// found by its heartbeat writes: the older one stops with an error naming
// the ID, and lease writes carry each process's token, so neither takes the
// other's take for its own.
//
// Every write that moves a checkpoint or an owner (take, checkpoint,
// release, hand-off, shard end) is conditional on the owner and counter read
// before it, so a worker that lost a lease can never move the new owner's
// checkpoint. A hand-off request only sets the lease's handoffTo attribute,
// conditional on the owner; it moves nothing, and the owner passes the lease
// on by a fenced write. A conditional write whose reply was lost is read
// back, so a retry of it is not mistaken for a lost lease.
//
// After a split or merge, a child shard is read only once every parent was
// read to its end and checkpointed SHARD_END, so the order of each partition
// key holds across resharding. Descendants of a shard the group read, at any
// depth, start at TRIM_HORIZON however many reshards happened while it was
// down; a shard that left the stream (retention) is ended, so that its
// children go on. The lease of a shard kcl read to its end is deleted once
// every child started, after a delay (README, Lease table), so the table
// grows with the open shards, not with the streams' history.
//
// # Many streams
//
// Options.Streams reads several streams as one group with one lease table,
// in the Java KCL's multi-stream layout (lease keys
// account:stream:creationEpoch:shardId, with streamName and shardId), so a
// Java multi-stream application moves to kcl in place and back. Every
// record carries its Record.StreamARN (with one stream too). Workers share
// the shards of all the streams; everything above holds per stream. Workers
// may list different streams (a rolling deploy): each worker's share counts,
// per stream, only the workers that read it. Leases of a stream in the table
// but not in Streams are left alone (this worker only gives back those an
// earlier kcl run of its WorkerID owned); a stream added to Streams starts at
// InitialPosition. A table holds one layout: Streams on a single-stream
// table, or StreamName/StreamARN on a multi-stream one, ends the consumer at
// start with an error naming the table.
//
// A stream deleted and created again under its name, while running or while
// the group is down, is read from its first record, whatever
// InitialPosition says: the group was reading that name. The old stream's
// leases are left alone (multi-stream: their keys name its creation time) or
// replaced by the new stream's (single-stream: kcl stamps the leases it
// creates with the stream's creation time). A stream deleted while running
// is waited for, with a warning, not fatal.
//
// # Errors
//
// Transient errors (throttling, limits, 5xx, network) are retried with
// exponential backoff and jitter and logged. Errors no retry can fix (a
// missing stream, access denied, an unusable lease table) close the channel;
// Consumer.Err then names the stream, shard or table. kcl never panics and
// never exits the program.
package kcl
