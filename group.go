package kcl

import (
	"context"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strings"
	"time"
)

// How the workers of a group share the watching of the lease table, so that
// its cost grows with shards plus workers, not shards times workers.
//
//   - Scanners: the two live workers with the smallest IDs (each worker
//     decides from its own last read of the table) read the whole table
//     every takeInterval, eventually consistent, and judge expiry by the
//     rule of assess (balance.go): what they see unchanged for
//     LeaseDuration they confirm with a consistent read of that one item.
//     They publish the heartbeats found expired (and the leases of workers
//     without one) in the group item (groupKey), with the counter judged,
//     whenever what they see of membership and assignment changes (a digest
//     of it), which bumps the group's epoch. Every heartbeatInterval the first of them
//     also bumps the item's scans counter, which tells the others that a
//     scanner is at work.
//   - Every other worker reads only the group item every takeInterval (a
//     small item, eventually consistent). It reads the whole table, judging
//     as a scanner does, when the epoch moved (with a consistent read, so
//     that what moved it is in it), while it has business of its own (its
//     first LeaseDuration, a claim it waits on, a pass that decided
//     anything), every judgeInterval, and every pass while the scans
//     counter has not moved for LeaseDuration: then the first scanner is
//     gone (the second soon takes its place) or both are (or none was ever
//     found), and the workers judge them dead themselves and the next in
//     line take over.
//   - A worker that changes what others must act on bumps the epoch itself,
//     so that they need not wait for a scanner: a claim (the owner hands
//     off), a release (others take), new leases (others take).
//
// Safety rests on none of this: every lease write is conditional on the
// counter read before it, so a stale read only makes a write fail, and a
// worker's own delivery deadline (pause.go) comes before any judgement of it.
// A published expiry is as sound as the scanner's own judgement: it holds
// only while the item still has the counter judged.

// maxPublished caps the entries a scanner publishes, to keep the group item
// far below DynamoDB's 400 KB: entries left out are judged by each worker
// itself, or published once earlier ones are taken.
const maxPublished = 2000

// scanners is how many workers read the whole table every takeInterval.
// With two, a scanner that dies is judged by the other as fast as any
// worker; only both dying together leaves it to the others, once the scans
// counter stops (about twice LeaseDuration).
const scanners = 2

// groupItem is the group item.
type groupItem struct {
	present bool
	epoch   int64            // bumped whenever a worker must read the whole table
	scans   int64            // bumped by the scanners every heartbeatInterval
	expired map[string]int64 // heartbeat (workerKeyPrefix+ID) or lease key -> counter judged expired at
	digest  string           // of what the scanner that last published saw
}

func (g groupItem) clone() groupItem {
	g.expired = maps.Clone(g.expired)
	return g
}

// judgeInterval is how often a worker that is no scanner reads the whole
// table when nothing told it to: a safety net for an epoch bump that
// failed.
func (o *Options) judgeInterval() time.Duration { return 10 * o.LeaseDuration }

// pass is one tick of the lease loop: a read of the whole table when this
// worker is a scanner, has business of its own, has not read it for
// judgeInterval, sees the group's epoch moved or the scanners silent; else
// just the group item.
func (k *leaseKeeper) pass(ctx context.Context) error {
	c := k.c
	if k.scanner || k.busy || time.Since(k.scanned) >= c.opts.judgeInterval() {
		return k.balance(ctx, false)
	}
	g, err := c.table.group(ctx)
	if err != nil {
		return err
	}
	now := time.Now()
	if !g.present { // none yet, or removed by a worker that took itself for the last
		if err := c.table.bump(ctx); err != nil {
			return err
		}
		return k.balance(ctx, true)
	}
	if g.scans != k.scans || k.scansSince.IsZero() {
		k.scans, k.scansSince = g.scans, now
	}
	switch {
	case g.epoch != k.epoch:
		return k.balance(ctx, true)
	case now.Sub(k.scansSince) > c.opts.LeaseDuration: // no scanner at work
		return k.balance(ctx, false)
	}
	return nil
}

// afterPass notes what a read of the whole table tells about the passes to
// come; a scanner publishes its judgement when it differs from the group's,
// and bumps the scans counter when due. Only the lease loop calls it.
func (k *leaseKeeper) afterPass(ctx context.Context, snap tableSnapshot, d decisions, listed time.Time) {
	c := k.c
	k.epoch, k.scanned = snap.group.epoch, listed
	i := slices.Index(d.live, c.opts.WorkerID)
	k.scanner = i >= 0 && i < scanners
	fence, _ := c.pause.fencePending()
	k.busy = d.acted() || d.waiting || fence || !c.beat.settled()
	if i == 0 {
		k.clean(ctx, snap, time.Now()) // the first scanner only (cleanup.go)
	} else {
		k.cleanup.ended = nil
	}
	if !k.scanner {
		return
	}
	if i == 0 && time.Since(k.ticked) >= c.opts.heartbeatInterval() { // the first scanner only: one is enough to be heard
		if err := c.table.tick(ctx); err == nil {
			k.ticked = time.Now()
		}
	}
	if d.digest == snap.group.digest {
		return
	}
	expired := d.expired
	if len(expired) > maxPublished {
		keys := slices.Sorted(maps.Keys(expired))
		expired = make(map[string]int64, maxPublished)
		for _, key := range keys[:maxPublished] {
			expired[key] = d.expired[key]
		}
	}
	if err := c.table.publish(ctx, expired, d.digest); err != nil && !isLeaseLost(err) {
		c.log.Debug("kcl: group item not written; the next pass tries again", "error", err)
	}
}

// bump tells the other workers to read the whole table: this worker changed
// what they must act on. A failed bump only delays them until a scanner
// notices the change.
func (c *Consumer) bump(ctx context.Context) {
	if err := c.table.bump(ctx); err != nil {
		c.log.Debug("kcl: group epoch not bumped; a scanner does it", "error", err)
	}
}

// leaveGroup removes the group item when this worker, stopping, is the last
// of its group: then a graceful stop of every worker leaves only leases in
// the table. Heartbeats that the group item names as expired are removed
// with it; any other heartbeat is a live worker's, which keeps the item.
func (c *Consumer) leaveGroup(ctx context.Context) {
	snap, err := c.table.list(ctx, true)
	if err != nil {
		return
	}
	for id, w := range snap.workers {
		if id == c.opts.WorkerID {
			continue
		}
		if n, ok := snap.group.expired[workerKeyPrefix+id]; !ok || n != w.counter {
			return
		}
		if err := c.table.removeWorker(ctx, id, w.counter); err != nil {
			return
		}
	}
	if snap.group.present {
		_ = c.table.removeGroup(ctx, snap.group.epoch)
	}
}

// digest sums up what a scanner saw that other workers act on: the live
// workers, what is expired, and who owns and claims each lease that may be
// read now.
func digest(live, stopping []string, expired map[string]int64, shares []shareLease) string {
	h := fnv.New64a()
	for _, w := range live {
		fmt.Fprintf(h, "w%s\x00", w)
	}
	for _, w := range stopping {
		fmt.Fprintf(h, "s%s\x00", w)
	}
	for _, key := range slices.Sorted(maps.Keys(expired)) {
		fmt.Fprintf(h, "x%s\x00%d\x00", key, expired[key])
	}
	sorted := slices.SortedFunc(slices.Values(shares), func(a, b shareLease) int { return strings.Compare(a.shardID, b.shardID) })
	for _, l := range sorted {
		fmt.Fprintf(h, "l%s\x00%s\x00%s\x00", l.shardID, l.owner, l.claimant)
	}
	return fmt.Sprintf("%016x", h.Sum64())
}
