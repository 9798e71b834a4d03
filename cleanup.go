package kcl

import (
	"context"
	"slices"
	"time"
)

// Cleanup deletes the leases of shards kcl read to their end once nothing
// needs them, so that the lease table grows with the streams' open shards,
// not with their history. The first scanner does it (the first of the live
// workers, group.go), at the end of each of its passes, from that pass's
// read of the whole table and the last shard listing: it reads nothing
// more.
//
// A lease is deleted when, in every pass of the first scanner for
// cleanupDelay, with its counter unchanged (endedLease):
//   - kcl read its shard to the end: checkpoint SHARD_END, no owner, and
//     the writer mark kcl's shard end leaves (the Java KCL's ended leases,
//     and leases created ended, are left alone);
//   - it is a lease of a stream this worker reads, and in a single-stream
//     table it carries the stream's creation time (never an earlier
//     stream's lease);
//   - every child started: each lease naming it as a parent, and each
//     shard the last listing names as its child, has a lease, of the same
//     stream, whose checkpoint moved past TRIM_HORIZON, LATEST and
//     AT_TIMESTAMP; and a listed shard's listed children cover its
//     hash-key range (a listing caught mid-reshard shows only some).
//
// The delete is conditional on the counter, the checkpoint and the stream
// stamp read (leaseTable.remove): a lease written since stays. Every guarantee
// holds with the lease gone, as with the Java KCL's deletions:
//   - A child takes a parent it finds no lease of as ended only when it, or
//     a sibling, started (parentsGone), and every child started before the
//     delete.
//   - A sync makes no lease for a listed shard with a started descendant,
//     or one kcl reset -to latest moved to LATEST (ancestorsOfLeased,
//     confirmUnstarted, skipsAncestors), nor for one no longer listed.
//     A sync whose listing is older than half of cleanupDelay when its
//     read of the table ends, or before any of its creates, lists again
//     (syncShards): a listing made before the shard closed cannot meet a
//     table read, or make a lease, after its lease was deleted.
//   - The delay lets a lagging worker's read, or a kcl status, from before
//     the children started run out.
//
// A child that never receives a record stays at TRIM_HORIZON until its own
// shard ends: its parent's lease stays until then, as with the Java KCL.
type cleanup struct {
	// ended are the leases found deletable, by key: the counter read and
	// when this worker first found them so. Only touched by the lease loop.
	ended map[string]endedSeen
}

type endedSeen struct {
	counter int64
	since   time.Time
}

// cleanupDelay is how long a lease stays deletable before it is deleted: 5
// minutes, as the Java KCL's completed-lease cleanup interval, or 10
// LeaseDurations if longer.
func (o *Options) cleanupDelay() time.Duration { return max(minCleanupDelay, 10*o.LeaseDuration) }

// minCleanupDelay is the shortest cleanupDelay of any worker, whatever its
// LeaseDuration: a shard sync trusts its listing for half of it
// (listingMaxAge), since the first scanner may have a shorter delay than
// its own.
const minCleanupDelay = 5 * time.Minute

// cleanupStream is what cleanup knows of one stream this worker reads.
type cleanupStream struct {
	// created is the stream's creation time (Unix ms) that its leases
	// carry in a single-stream table: 0 when unknown (then nothing is
	// deleted) or in a multi-stream table, whose keys name it already.
	created int64
	single  bool
	// shards is the last listing by shard ID (nil: not listed yet, then
	// nothing is deleted).
	shards map[string]shardInfo
}

// endedLeases returns the leases of leases that may be deleted now (see
// cleanup), given the streams this worker reads by identifier. It is pure.
func endedLeases(leases []lease, streams map[string]cleanupStream) []lease {
	children := map[string][]lease{} // by parent key
	for _, l := range leases {
		for _, p := range l.parents {
			children[p] = append(children[p], l)
		}
	}
	covered := map[string]map[string]bool{}
	listedKids := map[string]map[string][]string{} // stream -> shard -> listed children
	var out []lease
	for _, l := range leases {
		if !l.checkpoint.shardEnd() || l.owner != "" || l.writer.id == "" || l.checkpointOwner != "" || l.handoffTo != "" {
			continue
		}
		id, shard := splitLeaseKey(l.shardID)
		s, ok := streams[id]
		if !ok || s.shards == nil || s.single && (s.created == 0 || l.streamCreated != s.created) {
			continue
		}
		if _, done := covered[id]; !done {
			covered[id] = coveredByChildren(slices.Collect(mapValues(s.shards)))
			kids := map[string][]string{}
			for _, sh := range s.shards {
				for _, p := range sh.parents {
					kids[p] = append(kids[p], sh.id)
				}
			}
			listedKids[id] = kids
		}
		if _, listed := s.shards[shard]; listed && !covered[id][shard] {
			continue
		}
		leased := map[string]bool{}
		ok = true
		for _, k := range children[l.shardID] {
			_, kshard := splitLeaseKey(k.shardID)
			leased[kshard] = true
			ok = ok && started(k) && k.streamCreated == l.streamCreated
		}
		for _, k := range listedKids[id][shard] {
			ok = ok && leased[k]
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

// mapValues yields the values of m.
func mapValues[K comparable, V any](m map[K]V) func(func(V) bool) {
	return func(yield func(V) bool) {
		for _, v := range m {
			if !yield(v) {
				return
			}
		}
	}
}

// due notes the leases found deletable in a pass made at now, forgets
// those no longer found so (or found with another counter), and returns
// those found so, with one counter, for delay.
func (c *cleanup) due(ended []lease, now time.Time, delay time.Duration) []lease {
	next := make(map[string]endedSeen, len(ended))
	var out []lease
	for _, l := range ended {
		seen, ok := c.ended[l.shardID]
		if !ok || seen.counter != l.counter {
			seen = endedSeen{counter: l.counter, since: now}
		}
		next[l.shardID] = seen
		if now.Sub(seen.since) >= delay {
			out = append(out, l)
		}
	}
	c.ended = next
	return out
}

// waiting returns how many leases wait for their delay to pass. Only the
// lease loop calls it.
func (c *cleanup) waiting() int { return len(c.ended) }

// cleanupStreams returns what cleanup needs of the streams this worker
// reads. Any goroutine may call it.
func (c *Consumer) cleanupStreams() map[string]cleanupStream {
	out := map[string]cleanupStream{}
	for _, s := range c.streamList() {
		s.shardsMu.Lock()
		shards := s.shards // replaced whole by setShards, never changed in place
		s.shardsMu.Unlock()
		cs := cleanupStream{single: s.id == "", shards: shards}
		if cs.single && !s.created.IsZero() {
			cs.created = s.created.UnixMilli()
		}
		out[s.id] = cs
	}
	return out
}

// clean deletes, after a pass over snap made at now, the leases deletable
// for cleanupDelay (see cleanup). A delete that fails is tried again by a
// later pass; one whose lease changed is forgotten. It runs on the lease
// loop of the first scanner.
func (k *leaseKeeper) clean(ctx context.Context, snap tableSnapshot, now time.Time) {
	c := k.c
	for _, l := range k.cleanup.due(endedLeases(snap.leases, c.cleanupStreams()), now, c.cleanupDelay) {
		err := c.table.remove(ctx, l)
		if err != nil && !isLeaseLost(err) {
			c.log.Debug("kcl: ended lease not deleted; a later pass tries again", "lease", l.shardID, "error", err)
			continue
		}
		delete(k.cleanup.ended, l.shardID)
		if err == nil {
			c.log.Info("kcl: lease of an ended shard deleted; its children started", "lease", l.shardID)
		}
	}
}
