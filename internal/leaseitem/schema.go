// Package leaseitem is the lease table's item format, in one place for the
// kcl package and the kcl command: attribute names, kinds of items, lease
// keys, the reading and writing of leases, heartbeats and the group item,
// and the rule that tells from them who is alive (Liveness). Its functions
// are pure and safe for concurrent use.
//
// The layout is the Java KCL 2.x's, so a table the Java KCL wrote is resumed
// in place, and the other way round. kcl adds attributes and items of its
// own, which the Java KCL ignores or skips.
package leaseitem

// Attribute names. This file is the only one that spells them.
const (
	// The Java KCL 2.x lease.
	AttrLeaseKey      = "leaseKey" // the hash key: the shard ID, or account:stream:creationEpoch:shardId
	AttrOwner         = "leaseOwner"
	AttrCounter       = "leaseCounter"
	AttrCheckpoint    = "checkpoint"
	AttrCheckpointSub = "checkpointSubSequenceNumber"
	AttrOwnerSwitches = "ownerSwitchesSinceCheckpoint"
	AttrParents       = "parentShardId"

	// The Java KCL's multi-stream layout (DynamoDBMultiStreamLeaseSerializer):
	// the stream's identifier and the bare shard ID of a lease keyed
	// identifier:shardId.
	AttrStreamName = "streamName"
	AttrShardID    = "shardId"

	// The Java KCL 3.x. checkpointOwner is the old owner during a graceful
	// hand-off (leaseOwner is then the new one). entityType is the kind of
	// an item (3.5 and later).
	AttrCheckpointOwner = "checkpointOwner"
	AttrEntityType      = "entityType"

	// The Java KCL's two-phase checkpoint. Every checkpoint the Java KCL
	// writes removes it.
	AttrPending      = "pendingCheckpoint"
	AttrPendingSub   = "pendingCheckpointSubSequenceNumber"
	AttrPendingState = "pendingCheckpointState"

	// kcl's own, on a lease.
	AttrHandoff = "handoffTo"         // a worker asked the owner to hand the lease over
	AttrStartAt = "kclStartTimestamp" // where a lease at LATEST or AT_TIMESTAMP opens for later owners, Unix ms
	AttrWriter  = "kclWriter"         // who wrote the lease last, a map: the worker, its process's token, its last heartbeat (Writer)
	AttrCreated = "kclStreamCreated"  // when the lease's stream was created, Unix ms (a single-stream table)
	// AttrRecreated marks a lease made for a stream deleted and created
	// again under its name while the group read it: its shards without a
	// lease start at TRIM_HORIZON.
	AttrRecreated = "kclRecreated"

	// kcl's own, on a heartbeat item.
	AttrStopping = "workerStopping" // the worker is shutting down
	AttrToken    = "workerToken"    // the process that writes the item
	AttrStreams  = "kclStreams"     // the streams the worker reads (their identifiers), in a multi-stream table
	// AttrLeaseDuration is the worker's LeaseDuration in milliseconds, so
	// that a command watching the table knows how long a live worker may
	// stay silent.
	AttrLeaseDuration = "kclLeaseDurationMillis"

	// kcl's own, on the group item: what tells the workers when to read
	// the whole table.
	AttrEpoch   = "kclEpoch"
	AttrScans   = "kclScans"
	AttrExpired = "kclExpired"
	AttrDigest  = "kclDigest"
)

// Keys of kcl's own items.
const (
	WorkerKeyPrefix = "kcl-worker:" // then the WorkerID: a worker's heartbeat item
	GroupKey        = "kcl-group"   // the group item
)

// entityType values. The Java KCL 3.5 marks every item of its lease table
// with an entityType: LEASE for leases (absent also means a lease), others
// for its own records (Leader, Migration3.0, TableMigration3.5, worker
// metrics). kcl marks its own items with values of its own, so the Java
// KCL's lease listing skips them.
const (
	EntityLease     = "LEASE"
	EntityKCLWorker = "KCL_WORKER" // heartbeat items
	EntityKCLGroup  = "KCL_GROUP"  // the group item
)

// Sentinel checkpoints, as the Java KCL and kcl write them.
const (
	TrimHorizon = "TRIM_HORIZON"
	Latest      = "LATEST"
	AtTimestamp = "AT_TIMESTAMP"
	ShardEnd    = "SHARD_END"
)
