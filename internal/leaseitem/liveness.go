package leaseitem

// The workers' liveness rule. Each worker writes a heartbeat item instead
// of renewing its leases; a Java KCL worker renews its leases instead. An
// observer judges each item by its sign (Sign): an item whose sign it saw
// unchanged for LeaseDuration, on its own clock, is expired. Any change
// restarts that clock. The kcl package's workers watch each item across
// their reads of the table and confirm an expiry by a consistent read; the
// kcl command reads the table twice, LeaseDuration apart. Both then apply
// Liveness to say whom a lease shows alive.

// Sign is what shows an item's writer at work: its counter, and for a
// lease its owner.
type Sign struct {
	Counter int64
	Owner   string // a lease's owner; "" for a heartbeat item
}

// Sign returns the lease's sign: a new owner (a take) also restarts the
// clock.
func (l Lease) Sign() Sign { return Sign{Counter: l.Counter, Owner: l.Owner} }

// Sign returns the heartbeat's sign.
func (b Beat) Sign() Sign { return Sign{Counter: b.Counter} }

// Liveness is what an observer judged of the items that tell whether the
// worker reading a lease lives. The zero value judges every item expired.
type Liveness struct {
	Owner           string // the lease's owner
	CheckpointOwner string // the lease's old owner in a Java KCL 3.x graceful hand-off
	OwnerBeats      bool   // the owner has a heartbeat item
	OwnerLive       bool   // that heartbeat item is not expired
	LeaseLive       bool   // the lease's own sign is not expired
	// OwnerBeat is the owner's heartbeat counter the lease says its last
	// writer had (Lease.OwnerBeat), and JudgedBeat the counter of the
	// heartbeat item the observer judged. A lease written after a later
	// beat than the one judged expired proves its owner outlived the
	// judgement, whatever older copy of the heartbeat the read returned.
	OwnerBeat, JudgedBeat int64
}

// Alive returns the worker the lease shows alive, or "" if it shows none:
//   - In a Java KCL 3.x graceful hand-off whose lease moves, the old owner
//     (CheckpointOwner): it reads the shard and renews the lease until it
//     passes it on. A heartbeat under its name says nothing.
//   - Otherwise the owner: by its heartbeat item if it has one (a kcl
//     worker: alive too if the lease was written after a later beat than
//     the one judged), else by the lease itself (a Java KCL worker renews
//     its leases). A hand-off whose lease stood still is judged so too.
func (v Liveness) Alive() string {
	switch {
	case v.CheckpointOwner != "" && v.LeaseLive:
		return v.CheckpointOwner
	case v.OwnerBeats && (v.OwnerLive || v.OwnerBeat > v.JudgedBeat), !v.OwnerBeats && v.LeaseLive:
		return v.Owner
	}
	return ""
}
