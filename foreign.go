package kcl

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// kcl does not share a lease table with live workers of another library:
// the Java KCL's (2.x or 3.x) renew each lease they hold by bumping its
// leaseCounter, and write no heartbeat item. kcl does not renew an idle
// held lease, so a Java taker would take it while kcl reads on, and the two
// would deliver one shard at once (issue 27, item 11). So:
//
//   - An owner without a heartbeat item seen to renew one lease twice, the
//     last time within LeaseDuration, is a live foreign worker, once a
//     consistent read finds no heartbeat item of it either (checkForeign).
//   - While one is live, and in this worker's first LeaseDuration if the
//     table holds leases of such owners (live or dead cannot be told yet),
//     this worker takes and claims nothing: a rolling migration's kcl
//     workers wait, with a warning naming the live ones, until the Java
//     workers stopped. Their leases are then taken once expired, as those
//     of any dead owner.
//   - A worker that holds a lease when it finds a live foreign worker ends
//     with errForeignWorkers, naming it: a Java worker started beside kcl.
//
// The migration path is to stop the Java workers first (docs/migration.md).

// errForeignWorkers says live workers that are not kcl's hold leases of the
// table while this worker holds some too. No retry fixes it.
var errForeignWorkers = errors.New("workers that are not kcl's (the Java KCL's) renew leases of this table while kcl reads it; kcl does not run beside them: stop them, then start kcl (docs/migration.md)")

// foreignWatch follows the leases whose owner has no heartbeat item, to tell
// a live Java worker (it renews them) from a dead one. Only touched by the
// lease loop.
type foreignWatch struct {
	seen   map[string]foreignSeen // by lease key, as of the last read of the whole table
	began  time.Time              // the first read observed
	warned bool                   // the wait for live foreign workers was logged
}

type foreignSeen struct {
	owner    string
	counter  int64
	renewals int       // counter rises seen under this owner
	renewed  time.Time // when the last one was seen
}

// foreignRenewals is how many renewals of one lease, under one owner
// without a heartbeat item, make that owner live: two, so that one write
// by an operator's command (kcl reset bumps the counter once) does not.
const foreignRenewals = 2

// observe notes what snap, a read of the whole table made at now, shows of
// the leases of the streams this worker reads (ours) owned by workers
// without a heartbeat item in it (me aside): a Java worker that reads
// other streams of a multi-stream table, or a lease of an earlier stream
// of a name, takes nothing of this worker's.
// It returns the owners live as of now (sorted), and whether the table
// holds leases of such owners while this watch is younger than
// leaseDuration: whether they renew cannot be told yet.
func (w *foreignWatch) observe(snap tableSnapshot, me string, ours func(string) bool, now time.Time, leaseDuration time.Duration) (live []string, unsure bool) {
	if w.began.IsZero() {
		w.began = now
	}
	next := make(map[string]foreignSeen, len(w.seen))
	for _, l := range snap.leases {
		if l.owner == "" || l.owner == me || !ours(l.shardID) || l.checkpoint.shardEnd() {
			continue // a SHARD_END lease is read by nobody: the Java KCL keeps its owner
		}
		if _, kcl := snap.workers[l.owner]; kcl {
			continue
		}
		unsure = unsure || now.Sub(w.began) < leaseDuration
		if l.writer.id == l.owner {
			// Last written by a kcl worker of that ID (its kclWriter mark;
			// the Java KCL never writes it), whatever its heartbeat item
			// says: a twin's stop may have removed it for a while.
			continue
		}
		s := foreignSeen{owner: l.owner, counter: l.counter}
		if prev, ok := w.seen[l.shardID]; ok && prev.owner == l.owner {
			s.renewals, s.renewed = prev.renewals, prev.renewed
			switch {
			case l.counter > prev.counter:
				s.renewals++
				s.renewed = now
			case l.counter < prev.counter:
				s.counter = prev.counter // an older copy (an eventually consistent read)
			}
		}
		next[l.shardID] = s
		if s.renewals >= foreignRenewals && now.Sub(s.renewed) < leaseDuration && !slices.Contains(live, l.owner) {
			live = append(live, l.owner)
		}
	}
	w.seen = next
	slices.Sort(live)
	return live, unsure
}

// forgive forgets the renewals seen of owner's leases: it has a heartbeat
// item after all (a read that missed it).
func (w *foreignWatch) forgive(owner string) {
	for key, s := range w.seen {
		if s.owner == owner {
			s.renewals = 0
			w.seen[key] = s
		}
	}
}

// checkForeign follows, on a read of the whole table, the owners without a
// heartbeat item (foreignWatch), and reports whether this pass must take
// and claim nothing. It returns errForeignWorkers, naming them, if live
// ones (with no heartbeat item by a consistent read either) are found while
// this worker holds a lease. It runs on the lease loop.
func (k *leaseKeeper) checkForeign(ctx context.Context, in assessInput) (wait bool, err error) {
	c := k.c
	live, unsure := k.foreign.observe(in.snap, c.opts.WorkerID, c.ours, in.now, c.opts.LeaseDuration)
	var foreign []string
	for _, owner := range live {
		_, ok, err := c.table.readBeat(ctx, owner)
		if err != nil {
			return true, err
		}
		if ok {
			k.foreign.forgive(owner)
			continue
		}
		foreign = append(foreign, owner)
	}
	switch {
	case len(foreign) > 0 && len(in.held) > 0:
		return true, fmt.Errorf("lease table %q: %w: %s", c.table.name(), errForeignWorkers, strings.Join(foreign, ", "))
	case len(foreign) > 0:
		if !k.foreign.warned {
			k.foreign.warned = true
			c.log.Warn("kcl: workers that are not kcl's (the Java KCL's) renew leases of this table; taking no lease until they stop (docs/migration.md)", "workers", foreign)
		}
		return true, nil
	case k.foreign.warned:
		k.foreign.warned = false
		c.log.Info("kcl: the workers that are not kcl's stopped renewing their leases; taking leases")
	}
	return unsure, nil
}
