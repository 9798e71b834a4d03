package kcl

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// A stream deleted and created again under its name is another stream: a
// new creation time, shard IDs from shardId-000000000000 again, sequence
// numbers of its own. The group was reading that name, so nothing written
// to the new one may be skipped: it is read from TRIM_HORIZON, whatever
// InitialPosition says, and the old one's leases never block or mislead it.
//
//   - It is found by the stream's creation time (DescribeStreamSummary): at
//     start (describeStreams), before each periodic shard sync of all the
//     streams (renewStreams; not a shard end's), when a reader finds its shard or stream gone or its
//     checkpoint refused (waitForStream), and when the lease table shows a
//     newer incarnation than this worker knows (newerIncarnation).
//   - The stream's kstream is replaced by a new one (switchIncarnation);
//     the leases held of the old one are dropped, unwritten.
//   - In a multi-stream table the new incarnation's lease keys are its own
//     (the creation epoch is part of them): the old one's leases are left
//     alone, as another stream's, and the new one's are created at
//     TRIM_HORIZON while the table holds the old one's (createLeases).
//   - In a single-stream table leases are keyed by shard ID alone, so kcl
//     stamps each lease it creates with the stream's creation time
//     (lease.streamCreated). A lease stamped earlier, or unstamped but at
//     odds with the listing (oldIncarnation), is the old stream's: it is
//     replaced, fenced on its counter, by the new stream's lease at
//     TRIM_HORIZON, or deleted if the new stream has no such shard
//     (renewLeases).
//   - While a stream is missing (deleted, not yet created again), kcl
//     waits for it, logging, instead of ending: a group of several streams
//     goes on with the others.

// renewStreams describes the streams read and returns those to list now. A
// stream created again under its name is switched to its new incarnation;
// a missing one is left out, with a warning, until it exists again. It runs
// on the lease loop.
func (c *Consumer) renewStreams(ctx context.Context) ([]*kstream, error) {
	streams := c.streamList()
	out := make([]*kstream, 0, len(streams))
	for _, s := range streams {
		if s.retired.Load() {
			continue // switched meanwhile, by a reader: the list has the new one
		}
		sum, err := c.describe(ctx, running, s)
		switch {
		case isResourceNotFound(err):
			s.missing.Store(true)
			s.log.Warn("kcl: stream not found; waiting for it to be created again", "error", err)
			continue
		case err != nil:
			return nil, err
		}
		s.missing.Store(false)
		if !createdAt(sum).Equal(s.created) {
			if s = c.switchIncarnation(ctx, s, sum); s == nil {
				continue
			}
		}
		out = append(out, s)
	}
	return out, nil
}

// waitForStream is what a reader of s does when its shard or stream is not
// found, or its checkpoint is refused: it waits while the stream is
// missing, and reports whether the stream was created again under its name
// (s is then retired and the reader's lease dropped). It runs on the
// reader's goroutine.
func (c *Consumer) waitForStream(ctx context.Context, s *kstream) (recreated bool, err error) {
	b := newBackOff()
	for {
		if s.retired.Load() {
			return true, nil
		}
		sum, err := c.describe(ctx, running, s)
		s.missing.Store(isResourceNotFound(err))
		switch {
		case err == nil && createdAt(sum).Equal(s.created):
			return false, nil
		case err == nil:
			c.switchIncarnation(ctx, s, sum)
			return true, nil
		case !isResourceNotFound(err):
			return false, err
		}
		wait := b.NextBackOff()
		s.log.Warn("kcl: stream not found; waiting for it to be created again", "wait", wait)
		if !sleep(ctx, wait) {
			return false, ctx.Err()
		}
	}
}

// switchIncarnation replaces old, a stream DescribeStreamSummary says was
// created again (sum), by a kstream of the new one, drops the leases held of
// the old one (their readers stop; nothing is written to them), and returns
// the new kstream; nil if another goroutine switched it first, or it no
// longer is read. With enhanced fan-out it registers the consumer on the
// new stream first (without one, the stream is polled). Any goroutine may
// call it.
func (c *Consumer) switchIncarnation(ctx context.Context, old *kstream, sum *types.StreamDescriptionSummary) *kstream {
	fresh := &kstream{label: old.label, name: old.name, log: old.log, kinesis: old.kinesis, renewing: newChanLock()}
	fresh.followsEarlier.Store(true)
	if err := c.described(fresh, sum); err != nil {
		old.log.Error("kcl: stream created again, but its new description is unusable; it is not read", "error", err)
		return nil
	}
	if c.opts.EnhancedFanOut {
		if err := c.registerConsumer(ctx, running, fresh); err != nil {
			old.log.Warn("kcl: stream created again; registering the fan-out consumer on it failed, so it is polled", "error", err)
		}
	}
	for {
		cur := c.streams.Load()
		i := slices.Index(cur.list, old)
		if i < 0 {
			return nil
		}
		next := &streamSet{list: slices.Clone(cur.list), byID: make(map[string]*kstream, len(cur.byID))}
		next.list[i] = fresh
		for id, s := range cur.byID {
			if s != old {
				next.byID[id] = s
			}
		}
		next.byID[fresh.id] = fresh
		if c.streams.CompareAndSwap(cur, next) {
			break
		}
	}
	old.retired.Store(true)
	old.log.Warn("kcl: stream deleted and created again under its name; the new one is read from its first record",
		"stream_arn", fresh.arn, "created", fresh.created, "old_created", old.created, "stream_id", fresh.id, "old_stream_id", old.id)
	for _, h := range c.held.list() {
		if h.stream == old {
			h.markGone() // the old stream's: no write of this worker touches it again
			c.held.forget(h)
		}
	}
	notify(c.keeper.syncNow) // the lease loop creates the new one's leases, and takes them
	return fresh
}

// renewLeases replaces, in a single-stream table, the leases of an earlier
// incarnation of s (oldIncarnation) that nobody may be reading (free, or
// this worker's and not held) by leases of s at TRIM_HORIZON, or deletes
// them when s has no such shard (renewLease). It returns the stream's leases as they
// now stand (without the earlier stream's it left), and whether it found
// any of an earlier incarnation. Another
// worker's lease is left to that worker, which replaces it itself, or to
// whoever finds it dead (assessment.replaceStale): a reader of the old
// stream may still be delivering (kinesalite reads the new stream from an
// old iterator), and a take must not overlap it.
func (c *Consumer) renewLeases(ctx context.Context, s *kstream, shards []shardInfo, leases []lease) ([]lease, bool, error) {
	if s.id != "" {
		return leases, false, nil // multi-stream: the new incarnation's keys are its own
	}
	byID := make(map[string]shardInfo, len(shards))
	for _, sh := range shards {
		byID[sh.id] = sh
	}
	out := make([]lease, 0, len(leases))
	found := false
	for _, l := range leases {
		sh, listed := byID[l.shardID]
		if !oldIncarnation(l, s.created, sh, listed) {
			out = append(out, l)
			continue
		}
		found = true
		if !c.mayRenew(l) {
			// Left to its owner, and not among the leases returned: it is
			// not this stream's, and must not make the shard, or its
			// parents in this stream, count as leased.
			continue
		}
		fresh, ok, err := c.renewLease(ctx, s, l, sh, listed)
		if err != nil {
			return nil, true, err
		}
		if ok {
			out = append(out, fresh)
		}
	}
	return out, found, nil
}

// mayRenew reports whether a shard sync may replace l, a lease of an
// earlier incarnation that nobody may be reading: free, ended (nobody reads
// a SHARD_END lease; the Java KCL keeps the owner on it), or this worker's,
// not held, with a heartbeat that proves this worker owns its leases.
func (c *Consumer) mayRenew(l lease) bool {
	return l.owner == "" || l.checkpoint.shardEnd() || l.owner == c.opts.WorkerID && !c.held.has(l.shardID) && c.beat.settled()
}

// renewLease replaces l, a lease of an earlier incarnation of s (a
// single-stream table), fenced on its counter: by the lease of s's shard sh
// at TRIM_HORIZON when listed, else it deletes it. It returns the new lease
// and whether there is one. A write that lost its condition is no error:
// someone else changed the lease first.
func (c *Consumer) renewLease(ctx context.Context, s *kstream, l lease, sh shardInfo, listed bool) (lease, bool, error) {
	s.followsEarlier.Store(true)
	if !listed {
		err := c.table.remove(ctx, l)
		if ignoreLost(err) != nil {
			return l, false, fmt.Errorf("lease table %q: deleting lease %q of an earlier stream: %w", c.table.name(), l.shardID, err)
		}
		if err == nil {
			s.log.Info("kcl: lease of the earlier stream deleted", "shard", l.shardID)
		}
		return l, false, nil
	}
	fresh := s.newLease(sh, checkpoint{seq: checkpointTrimHorizon})
	fresh.counter, fresh.recreated = l.counter+1, true
	err := c.table.replace(ctx, l, fresh)
	if ignoreLost(err) != nil {
		return l, false, fmt.Errorf("lease table %q: replacing lease %q of an earlier stream: %w", c.table.name(), l.shardID, err)
	}
	if err == nil {
		s.log.Info("kcl: lease of the earlier stream replaced", "shard", l.shardID, "checkpoint", checkpointTrimHorizon, "old_checkpoint", l.checkpoint.seq)
	}
	return fresh, true, nil
}

// renewRefused answers Kinesis refusing h's checkpoint (InvalidArgument,
// or ResourceNotFound from kinesis-local) on a stream that is as this worker knows it. When h's lease is of an
// earlier stream of this name (oldIncarnation: a lease kcl did not stamp,
// whose checkpoint is below the shard's first sequence number) it is
// replaced by the stream's own at TRIM_HORIZON, fenced on its counter, and
// h is dropped; it reports whether it was. It runs on h's reader.
func (c *Consumer) renewRefused(ctx context.Context, h *heldLease) (bool, error) {
	s := h.stream
	if s.id != "" {
		return false, nil // multi-stream: a new stream's keys are its own
	}
	shards, err := c.listShards(ctx, running, s)
	if err != nil {
		return false, err
	}
	i := slices.IndexFunc(shards, func(sh shardInfo) bool { return sh.id == h.shard })
	if i < 0 {
		return false, nil
	}
	h.mu.Lock()
	l, gone := h.lease, h.gone
	renew := !gone && oldIncarnation(l, s.created, shards[i], true)
	if renew {
		_, _, err = c.renewLease(ctx, s, l, shards[i], true)
		h.gone = err == nil
	}
	h.mu.Unlock()
	if !renew || err != nil {
		return false, err
	}
	c.held.forget(h)
	s.log.Warn("kcl: Kinesis refused a checkpoint of an earlier stream of this name; the shard is read from its first record",
		"shard", h.shard, "old_checkpoint", l.checkpoint.seq)
	return true, nil
}

// oldIncarnation reports whether lease l of a single-stream table is of an
// earlier incarnation of the stream created at created: stamped earlier, or
// unstamped (a table the Java KCL, or kcl before it stamped leases, wrote)
// but at odds with its shard as now listed (sh; listed false if not):
// SHARD_END on a shard still open, or a checkpoint below the shard's first
// sequence number (Kinesis numbers a new stream above the old one). A
// closed shard's ending sequence number is not compared: kinesis-local
// reports it as 2^63-1.
func oldIncarnation(l lease, created time.Time, sh shardInfo, listed bool) bool {
	if l.streamCreated != 0 {
		return !created.IsZero() && l.streamCreated < created.UnixMilli()
	}
	if !listed {
		return false
	}
	cp := l.checkpoint
	switch {
	case cp.shardEnd():
		return !sh.closed
	case cp.isSentinel():
		return false
	}
	return sh.startSeq != "" && seqBefore(cp.seq, sh.startSeq)
}

// otherIncarnation returns the identifier of an earlier incarnation of
// multi-stream s (a stream of its account and name created before it)
// whose leases the table holds, "" if none, and whether it holds leases of
// s too. A later one's leases say this worker's knowledge of s is stale
// (newerIncarnation): they make nothing here start from TRIM_HORIZON. Whether s has leases of its own does not change what the
// other's say: a sync after another worker's first one of s, which created
// some of its leases and failed, creates the rest as that one would have.
func otherIncarnation(s *kstream, leases []lease) (other string, own bool) {
	if s.id == "" {
		return "", false
	}
	prefix := s.id[:strings.LastIndexByte(s.id, ':')+1] // account:stream:
	for _, l := range leases {
		id, _ := splitLeaseKey(l.shardID)
		switch {
		case id == s.id:
			own = true
		case strings.HasPrefix(id, prefix) && !strings.Contains(id[len(prefix):], ":") && epochBefore(id[len(prefix):], s.id[len(prefix):]):
			other = id
		}
	}
	return other, own
}

// newerIncarnation reports whether the table holds a lease of a later
// incarnation of a stream this worker reads than the one it knows: another
// worker saw the stream created again first.
func newerIncarnation(streams []*kstream, leases []lease) bool {
	for _, s := range streams {
		if s.id == "" {
			if s.created.IsZero() {
				continue
			}
			created := s.created.UnixMilli()
			if slices.ContainsFunc(leases, func(l lease) bool { return l.streamCreated > created }) {
				return true
			}
			continue
		}
		i := strings.LastIndexByte(s.id, ':')
		prefix, epoch := s.id[:i+1], s.id[i+1:]
		mine, _ := strconv.ParseInt(epoch, 10, 64)
		for _, l := range leases {
			id, _ := splitLeaseKey(l.shardID)
			if rest, ok := strings.CutPrefix(id, prefix); ok {
				if e, err := strconv.ParseInt(rest, 10, 64); err == nil && e > mine {
					return true
				}
			}
		}
	}
	return false
}

// createdAt returns when a stream was created, zero if its description does
// not say (an emulator).
func createdAt(sum *types.StreamDescriptionSummary) time.Time {
	if sum.StreamCreationTimestamp == nil {
		return time.Time{}
	}
	return *sum.StreamCreationTimestamp
}

// seqBefore reports whether sequence number a comes before b: decimal
// numbers of up to 128 digits.
func seqBefore(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

// epochBefore reports whether creation epoch a (seconds, as a stream
// identifier holds it) is before b; false if either is not a number.
func epochBefore(a, b string) bool {
	x, errA := strconv.ParseInt(a, 10, 64)
	y, errB := strconv.ParseInt(b, 10, 64)
	return errA == nil && errB == nil && x < y
}

// earlierThan reports whether l is a lease of an earlier stream of s's
// name, in a single-stream table: stamped with an earlier creation time.
func (s *kstream) earlierThan(l lease) bool {
	return s.id == "" && l.streamCreated != 0 && !s.created.IsZero() && l.streamCreated < s.created.UnixMilli()
}
