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
// may come in any order and from any goroutine. A record that was delivered
// but not acked when a worker crashed, lost its lease or timed out on
// shutdown is delivered again, to this or another worker. Nothing else is.
//
// Hazards:
//   - A record never acked holds its shard's checkpoint back for good, and
//     once Options.MaxUnackedPerShard records of a shard are unacked the shard
//     stops fetching. kcl logs when that happens.
//   - Acking a record after its lease moved to another worker does nothing;
//     the new owner delivers it again. Handlers must be idempotent.
//   - The channel is unbuffered and must be drained until it closes: shutdown
//     completes, and leases are released, only then.
//
// # Leases and workers
//
// Each shard has a lease item in the lease table (Options.AppName, created
// on demand), in the Java KCL 2.x schema, so an application moving from the
// Java KCL resumes after its checkpoints. Workers share the shards fairly:
// each holds the floor or the ceiling of shards/workers, taken in one pass;
// a worker that joins asks the most loaded workers to hand leases over, and
// the owner checkpoints what was acked before the new owner reads on. Each
// worker writes a heartbeat item every LeaseDuration/3; a worker whose
// heartbeat has not changed for LeaseDuration, as seen on the observer's own
// clock, is dead and its leases are taken. A worker that cannot write its
// own heartbeat for LeaseDuration (DynamoDB unreachable or throttled) pauses:
// it delivers nothing more, though acks still count, until the heartbeat is
// written again; then the shards still its own go on where they stopped.
// Every lease write is conditional on the owner and counter read before it,
// so a worker that lost a lease can never move the new owner's checkpoint.
//
// After a split or merge, a child shard is read only once every parent was
// read to its end and checkpointed SHARD_END, so the order of each partition
// key holds across resharding.
//
// # Errors
//
// Transient errors (throttling, limits, 5xx, network) are retried with
// exponential backoff and jitter and logged. Errors no retry can fix (a
// missing stream, access denied, an unusable lease table) close the channel;
// Consumer.Err then names the stream, shard or table. kcl never panics and
// never exits the program.
package kcl
