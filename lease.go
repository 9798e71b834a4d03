package kcl

import (
	"context"
	"errors"
	"slices"
	"time"
)

// A lease gives one worker the right to read one shard and to write its
// checkpoint. Leases live in the lease table (leasetable.go has the
// DynamoDB layout, that of the Java KCL 2.x).
//
//   - Every lease write is conditional on the owner and counter read before
//     it, so a worker that lost a lease can never move its new owner's
//     checkpoint.
//   - Liveness needs no lease renewal: every worker writes a heartbeat item
//     of its own every LeaseDuration/2 (heartbeat.go), so the writes grow
//     with the number of workers, not of shards.
//   - A lease is expired when neither its owner's heartbeat nor its own
//     counter has changed for LeaseDuration, as seen on the observer's clock
//     (assess, balance.go). No clock synchronisation is needed, and owners
//     that renew the lease itself (the Java KCL) keep it. Who reads the
//     table when is in group.go.
type lease struct {
	shardID       string
	owner         string // empty: unassigned
	counter       int64  // bumped by every write of kcl's but a hand-off claim
	checkpoint    checkpoint
	ownerSwitches int64
	parents       []string
	handoffTo     string // a worker asked the owner to hand the lease over
	// checkpointOwner is set while the Java KCL 3.x hands the lease over
	// gracefully (LeaseAssignmentManager, then
	// LeaseGracefulShutdownHandler): the old owner, which reads the shard
	// until it checkpoints and makes owner (the new one) the owner. kcl never
	// sets it, never reads a shard while it is set, and removes it when it
	// takes the lease (assess).
	checkpointOwner string
	// startAt is where a lease still at LATEST or AT_TIMESTAMP is opened by
	// its later owners: set by the first take of such a lease (kcl's own
	// attribute; the Java KCL ignores it). Zero: not set.
	startAt time.Time
	// writer is who wrote the lease last (kcl's own attribute kclWriter):
	// the worker, its process's token, and the counter of its last
	// heartbeat confirmed then. Every take and checkpoint that keeps the
	// lease sets it, and so does its shard end (cleanup.go deletes only
	// leases kcl ended); a release or hand-off removes it. Zero: unknown.
	//   - A take's read-back tells its own write from a twin's (another
	//     process with the same WorkerID) by the token.
	//   - A judgement that the owner died at heartbeat counter n holds for
	//     the lease only while the owner's mark says a beat <= n (ownerBeat):
	//     a write after a later beat (the fence after a late heartbeat)
	//     proves the owner outlived it, whatever older copy of its heartbeat
	//     a read returned (assess). A mark of another worker than the owner
	//     (a take by the Java KCL, or by a kcl that does not mark leases)
	//     says nothing.
	writer writer
	// streamCreated is when the lease's stream was created (Unix ms), in a
	// single-stream table, where the leases of a stream deleted and
	// created again under its name share their keys with the new one's
	// (incarnation.go). Set when kcl creates the lease; 0: not known.
	streamCreated int64
	// recreated says the lease was made for a stream deleted and created
	// again under its name while the group read that name: every shard of
	// it without a lease starts at TRIM_HORIZON, whichever worker makes
	// the lease, also one that never saw the earlier stream (createLeases).
	recreated bool
}

// writer is who writes a lease: this worker's ID, its process's token, and
// the counter of its last heartbeat confirmed (0 before the first).
type writer struct {
	id    string
	token string
	beat  int64
}

// ownerBeat is the heartbeat counter l's mark says its owner had when it
// last wrote l: 0 when the mark is not the owner's.
func (l lease) ownerBeat() int64 {
	if l.writer.id == "" || l.writer.id != l.owner {
		return 0
	}
	return l.writer.beat
}

// workerBeat is a worker's heartbeat item.
type workerBeat struct {
	counter  int64
	stopping bool   // shutting down: it releases its leases and takes none
	token    string // the process writing it (memLeases only)
	// streams are the identifiers of the streams the worker reads, in a
	// multi-stream table; nil: every stream (a single-stream table, or a
	// kcl worker from before heartbeats said).
	streams []string
}

// reads reports whether the worker reads the stream with identifier id.
func (w workerBeat) reads(id string) bool { return w.streams == nil || slices.Contains(w.streams, id) }

// tableSnapshot is one read of the whole lease table.
type tableSnapshot struct {
	leases  []lease
	workers map[string]workerBeat
	group   groupItem
	bad     []error // items kcl does not understand; reported, never rewritten
}

// errLeaseLost says a conditional write found the lease changed: another
// worker owns it now, or it was edited.
var errLeaseLost = errors.New("lease lost")

// errDuplicateWorker says another process writes this worker's heartbeat:
// two processes run with one WorkerID. No retry can fix it.
var errDuplicateWorker = errors.New("another process is running with this WorkerID; each process needs its own")

func isLeaseLost(err error) bool { return errors.Is(err, errLeaseLost) }

// ignoreLost returns err, or nil if it says the lease was lost: for a write
// whose loss leaves nothing to do.
func ignoreLost(err error) error {
	if isLeaseLost(err) {
		return nil
	}
	return err
}

// leaseTable stores leases and heartbeats. Lease writes succeed only while
// the stored lease still has the owner and counter of the lease passed in,
// and return errLeaseLost otherwise. Implementations are safe for concurrent
// use.
type leaseTable interface {
	name() string
	ensure(ctx context.Context) error
	// list reads every item, with a strongly consistent read if consistent.
	list(ctx context.Context, consistent bool) (tableSnapshot, error)
	// read reads one lease (ok false: no such lease), with a consistent read.
	read(ctx context.Context, shardID string) (l lease, ok bool, err error)
	create(ctx context.Context, l lease) (created bool, err error)
	// take makes w.id the owner, clearing any hand-off claim, and marks the
	// lease written by w (lease.writer).
	take(ctx context.Context, l lease, w writer) (lease, error)
	// replace writes fresh in place of l, if l's counter is still the one
	// read (errLeaseLost if not): a lease of a stream created again under
	// its name replaces the old one's (incarnation.go).
	replace(ctx context.Context, l, fresh lease) error
	// remove deletes l if its counter, stream stamp and checkpoint are
	// still the ones read (errLeaseLost if not).
	remove(ctx context.Context, l lease) error
	// claim asks l's owner to hand l over to taker (no counter change).
	claim(ctx context.Context, l lease, taker string) error
	// unclaim clears a claim whose claimant is gone.
	unclaim(ctx context.Context, l lease) error
	// checkpoint writes cp and passes the lease to next: l.owner keeps it
	// (marked written by w), "" releases it, another worker receives it (a
	// hand-off); a lease passed on loses its writer mark.
	checkpoint(ctx context.Context, l lease, cp checkpoint, next string, w writer) (lease, error)
	// heartbeat bumps the worker's heartbeat counter from last, the counter
	// this process wrote before (< 0: none yet, create or take the item over),
	// and returns the new counter. It fails with errDuplicateWorker when the
	// item was last written by another process (token) of the same worker.
	// It writes streams, the identifiers of the streams the worker reads,
	// when not nil (a multi-stream table).
	heartbeat(ctx context.Context, worker, token string, stopping bool, last int64, streams []string) (int64, error)
	// removeWorker deletes a worker's heartbeat item, if its counter is still
	// counter (any counter when counter < 0).
	removeWorker(ctx context.Context, worker string, counter int64) error
	// readBeat reads a worker's heartbeat item with a consistent read (ok
	// false: there is none).
	readBeat(ctx context.Context, worker string) (w workerBeat, ok bool, err error)

	// The group item (group.go).
	//
	// group reads it, perhaps stale (present false: there is none).
	group(ctx context.Context) (groupItem, error)
	// bump adds one to its epoch, making it if there is none.
	bump(ctx context.Context) error
	// tick bumps its scans counter, making it if there is none.
	tick(ctx context.Context) error
	// publish stores a scanner's judgement and bumps the epoch, unless the
	// item holds digest already (errLeaseLost).
	publish(ctx context.Context, expired map[string]int64, digest string) error
	// removeGroup deletes it if its epoch is still epoch (errLeaseLost if not).
	removeGroup(ctx context.Context, epoch int64) error
}
