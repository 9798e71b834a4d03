package kcl

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// shardInfo is what ListShards says of a shard.
type shardInfo struct {
	id      string
	parents []string
	closed  bool // has an ending sequence number: no record will be added
	// first and last are its hash-key range; nil when not known (a child
	// learnt from a shard end).
	first, last *big.Int
	// startSeq and endSeq are its sequence number range ("" when not
	// known; endSeq while it is open).
	startSeq, endSeq string
}

// listShards returns every shard of stream s, parents before children. A
// page token that expired between two pages (ExpiredNextTokenException)
// starts the listing over: retrying it would fail for ever. It runs on the
// caller's goroutine.
func (c *Consumer) listShards(ctx context.Context, st stage, s *kstream) ([]shardInfo, error) {
	return retry(ctx, st, &c.counters.retryCounters, s.log, "shard listing from the start (page token expired)", nil, func() ([]shardInfo, error) {
		return c.listShardsOnce(ctx, st, s)
	})
}

func (c *Consumer) listShardsOnce(ctx context.Context, st stage, s *kstream) ([]shardInfo, error) {
	var shards []shardInfo
	in := &kinesis.ListShardsInput{}
	s.setStream(&in.StreamName, &in.StreamARN)
	for {
		out, err := retry(ctx, st, &c.counters.retryCounters, s.log, "ListShards", isExpiredNextToken, func() (*kinesis.ListShardsOutput, error) {
			return s.kinesis.ListShards(ctx, in)
		})
		if err != nil {
			return nil, err
		}
		s.kinesisTime.note(out.ResultMetadata)
		for _, s := range out.Shards {
			shards = append(shards, infoOf(s))
		}
		if out.NextToken == nil {
			return parentsFirst(shards), nil
		}
		in = &kinesis.ListShardsInput{NextToken: out.NextToken}
	}
}

func isExpiredNextToken(err error) bool {
	var expired *types.ExpiredNextTokenException
	return errors.As(err, &expired)
}

func infoOf(s types.Shard) shardInfo {
	info := shardInfo{id: aws.ToString(s.ShardId)}
	for _, p := range []*string{s.ParentShardId, s.AdjacentParentShardId} {
		if aws.ToString(p) != "" {
			info.parents = append(info.parents, *p)
		}
	}
	if r := s.SequenceNumberRange; r != nil {
		info.startSeq, info.endSeq = aws.ToString(r.StartingSequenceNumber), aws.ToString(r.EndingSequenceNumber)
		info.closed = r.EndingSequenceNumber != nil
	}
	if r := s.HashKeyRange; r != nil {
		first, ok1 := new(big.Int).SetString(aws.ToString(r.StartingHashKey), 10)
		last, ok2 := new(big.Int).SetString(aws.ToString(r.EndingHashKey), 10)
		if ok1 && ok2 {
			info.first, info.last = first, last
		}
	}
	return info
}

// coveredByChildren returns the shards whose whole hash-key range the
// listed children cover: the two halves of a split, or the child of a
// merge. A listing caught mid-reshard may show only some children, or none
// (the Java KCL checks the same, assertClosedShardsAreCoveredOrAbsent).
func coveredByChildren(shards []shardInfo) map[string]bool {
	children := map[string][]shardInfo{}
	for _, s := range shards {
		for _, p := range s.parents {
			if s.first != nil {
				children[p] = append(children[p], s)
			}
		}
	}
	covered := map[string]bool{}
	for _, s := range shards {
		kids := children[s.id]
		if s.first == nil || len(kids) == 0 {
			continue
		}
		slices.SortFunc(kids, func(a, b shardInfo) int { return a.first.Cmp(b.first) })
		next := new(big.Int).Set(s.first) // the first hash key not yet covered
		for _, k := range kids {
			if k.first.Cmp(next) > 0 {
				break // a gap
			}
			if k.last.Cmp(next) >= 0 {
				next.Add(k.last, big.NewInt(1))
			}
		}
		covered[s.id] = next.Cmp(s.last) > 0
	}
	return covered
}

// parentsFirst orders shards so that each comes after its parents.
func parentsFirst(shards []shardInfo) []shardInfo {
	byID := make(map[string]shardInfo, len(shards))
	for _, s := range shards {
		byID[s.id] = s
	}
	out := make([]shardInfo, 0, len(shards))
	placed := make(map[string]bool, len(shards))
	var place func(s shardInfo)
	place = func(s shardInfo) {
		if placed[s.id] {
			return
		}
		placed[s.id] = true
		for _, p := range s.parents {
			if ps, ok := byID[p]; ok {
				place(ps)
			}
		}
		out = append(out, s)
	}
	for _, s := range shards {
		place(s)
	}
	return out
}

// syncShards lists the shards of every stream (of only, when not nil) and
// creates a lease for each shard that has none, parents before children;
// for each stream it stops at the first lease it cannot create, so no child
// ever has a lease while a listed parent lacks one. extra are shards a
// closed shard of only named as its children, which the listing may not
// show yet: each is added only when every parent is listed or leased, so
// that a parent never counts as trimmed by mistake. The lease table is read
// once, after every listing, and refused if it holds leases of the other
// layout (checkLayout).
//
// Where a shard starts: any descendant of a shard that had a lease before
// this sync, however deep (a consumer down across several reshards), starts
// at TRIM_HORIZON, so nothing between an ancestor's checkpoint and the
// shard is missed. Any other shard starts at the InitialPosition; with
// Latest, a closed one whose listed children cover its hash-key range is
// marked SHARD_END, as nothing new will arrive in it. Such a lease, created ended and never
// taken, was never read: its descendants start at InitialPosition too, as
// they do for the worker that created it (the first workers of a group
// sync together, each from its own read of the table). A listing caught
// mid-reshard is met thus, with Latest: a closed shard listed without all
// its children starts at LATEST (it is read, ends at once, and its children go
// on from it), and a child listed beside a parent this sync made (or found
// made) at a position to be read starts at TRIM_HORIZON, not at a LATEST
// taken only once the parent ends. All of this is decided per stream: a
// parent is a shard of the same stream, and a stream without a lease yet
// (one just added to Streams) starts at InitialPosition.
//
// It runs on the caller's goroutine: run at start, the lease loop, or a
// reader whose shard ended (endShard).
func (c *Consumer) syncShards(ctx context.Context, st stage, only *kstream, extra ...shardInfo) error {
	streams := c.streamList()
	if only != nil {
		streams = []*kstream{only}
	}
	if st == running && only == nil {
		// A sync of all the streams (the scanners', every ShardSyncInterval)
		// describes them, to find one created again; not a shard end's (one
		// call each, against an account's 20 a second), nor start's, which
		// described them just now.
		var err error
		if streams, err = c.renewStreams(ctx); err != nil {
			return err
		}
	}
	anyCreated := false
sync:
	for {
		streams, listed, snap, began, err := c.listAndRead(ctx, st, streams)
		if err != nil {
			return err
		}
		if err := c.checkLayout(snap.leases); err != nil {
			return err
		}
		for i, s := range streams {
			var more []shardInfo
			if only != nil && s == only {
				more = extra
			}
			created, err := c.createLeases(ctx, s, listed[i], snap.leases, more, began)
			anyCreated = anyCreated || created
			if errors.Is(err, errListingTooOld) {
				c.log.Warn("kcl: shard listing too old to create leases on; listing again", "took", time.Since(began))
				continue sync
			}
			if err != nil {
				return err
			}
		}
		if anyCreated {
			c.bump(ctx) // the other workers take their share of the new leases
		}
		return nil
	}
}

// errListingTooOld is createLeases's answer when the listing it works from
// is older than listingMaxAge: the sync starts over (listAndRead).
var errListingTooOld = errors.New("shard listing too old")

// listingMaxAge is how old a shard listing may be, from when it began,
// when a sync reads the table on it or creates a lease on it: half of the
// shortest cleanupDelay, its own or another worker's (minCleanupDelay), as
// the worker that deletes may have a shorter LeaseDuration.
func (c *Consumer) listingMaxAge() time.Duration { return min(c.cleanupDelay, minCleanupDelay) / 2 }

// listAndRead lists the shards of streams, then reads the lease table,
// consistently: where a shard starts rests on which leases exist. It
// returns the streams listed (those found deleted are left out), their
// shards, the read, and when the listing began.
//
// A listing older than listingMaxAge when the read ends is made
// again (a process frozen, calls retried for long): a shard it shows open
// may have ended since, its children started and its lease been deleted
// (cleanup.go), and a lease made for it again would read it all over.
func (c *Consumer) listAndRead(ctx context.Context, st stage, streams []*kstream) ([]*kstream, [][]shardInfo, tableSnapshot, time.Time, error) {
	for {
		began := time.Now()
		streams, listed, snap, err := c.listAndReadOnce(ctx, st, streams)
		if err != nil || time.Since(began) <= c.listingMaxAge() {
			return streams, listed, snap, began, err
		}
		c.log.Warn("kcl: shard listing too old once the lease table was read; listing again", "took", time.Since(began))
	}
}

func (c *Consumer) listAndReadOnce(ctx context.Context, st stage, streams []*kstream) ([]*kstream, [][]shardInfo, tableSnapshot, error) {
	listed := make([][]shardInfo, 0, len(streams))
	for _, s := range slices.Clone(streams) {
		shards, err := c.listShards(ctx, st, s)
		if st == running && isResourceNotFound(err) {
			// Deleted: the lease loop looks for it every LeaseDuration
			// (missing), though this sync may be a shard end's, and no
			// reader of it may be left to wait for it.
			s.missing.Store(true)
			s.log.Warn("kcl: stream not found; waiting for it to be created again", "error", err)
			streams = slices.DeleteFunc(streams, func(x *kstream) bool { return x == s })
			continue
		}
		if err != nil {
			return nil, nil, tableSnapshot{}, fmt.Errorf("stream %q: %w", s.label, err)
		}
		listed = append(listed, shards)
	}
	snap, err := c.table.list(ctx, true) // consistent, and after the listings
	if err != nil {
		return nil, nil, tableSnapshot{}, fmt.Errorf("lease table %q: %w", c.table.name(), err)
	}
	return streams, listed, snap, nil
}

// syncChildren syncs the shard list of h's stream, which creates the
// leases of the children of h's shard: those its end named (children),
// which the listing may not show yet, and those listed. Its reader calls it
// as soon as it finds the shard closed or gone, before it waits for the
// acks: the children's leases name the shard as their parent, so they wait
// for its end, and so do theirs, even when a child leaves the stream
// (retention) before the acks come. It runs on that reader's goroutine.
func (c *Consumer) syncChildren(ctx context.Context, h *heldLease, children []shardInfo) error {
	log := h.stream.log.With("shard", h.shardID)
	return retryErr(ctx, running, &c.counters.retryCounters, log, "shard sync", nil, func() error {
		return c.syncShards(ctx, running, h.stream, children...)
	})
}

// endShard finishes the shard of h, whose children's leases syncChildren
// made, once every record delivered from it is acked: it checkpoints
// SHARD_END and releases the lease in one write, which lets the children be
// taken, then asks the lease loop for a pass, which takes them. It runs on
// the reader's goroutine.
func (c *Consumer) endShard(ctx context.Context, h *heldLease, children int) error {
	if _, _, err := c.writeCheckpoint(ctx, h, "", true); err != nil {
		return err
	}
	h.stream.log.Info("kcl: shard ended", "shard", h.shardID, "children", children)
	notify(c.keeper.takeNow) // to the lease loop
	return nil
}

// createLeases creates the leases stream s lacks (see syncShards), given its
// shards as just listed and the table's leases as read after, and reports
// whether it created any.
//
// Each create is made only while the listing, begun at listedAt, is at most
// listingMaxAge old (errListingTooOld otherwise): a process frozen after
// its read of the table would make on it the lease of a shard that ended,
// whose children started and whose lease was deleted meanwhile.
func (c *Consumer) createLeases(ctx context.Context, s *kstream, shards []shardInfo, leases []lease, extra []shardInfo, listedAt time.Time) (bool, error) {
	// A stream deleted and created again under its name: the old one's
	// leases are replaced (a single-stream table) or left alone (a
	// multi-stream one), and the new one is read from its first record
	// (incarnation.go).
	leases, recreated, err := c.renewLeases(ctx, s, shards, leases)
	if err != nil {
		return false, err
	}
	recreated = recreated || s.followsEarlier.Load()
	leased, unread, begun, read, marked := leaseState(s, leases)
	recreated = recreated || marked
	if other, own := otherIncarnation(s, leases); other != "" {
		recreated = true
		if !own {
			s.log.Warn("kcl: lease table holds leases of an earlier stream of this name; they are left alone and this one is read from its first record",
				"stream_arn", s.arn, "stream_id", s.id, "other_stream_id", other)
		}
	}
	shards = withChildren(shards, extra, leased)
	byID := make(map[string]shardInfo, len(shards))
	for _, sh := range shards {
		byID[sh.id] = sh
	}
	s.setShards(byID)

	descends := descendsFromLeased(shards, leased, unread, read)
	if err := c.confirmUnstarted(ctx, s, shards, leased, begun); err != nil {
		return false, err
	}
	done := ancestorsOfLeased(shards, leased, begun)
	hasChild := map[string]bool{} // listed shards with a listed child
	for _, sh := range shards {
		for _, p := range sh.parents {
			hasChild[p] = true
		}
	}
	covered := coveredByChildren(shards)
	// toRead: shards whose lease this pass made, or found made meanwhile by
	// another worker, at a position to be read (not created ended).
	toRead := map[string]bool{}
	anyCreated := false
	for _, sh := range shards {
		if leased[sh.id] || done[sh.id] {
			continue
		}
		latest := c.opts.InitialPosition == Latest
		cp := checkpoint{seq: startSeq(sh, c.opts.InitialPosition, descends[sh.id] || recreated, toRead, covered[sh.id])}
		key := leaseKey(s.id, sh.id)
		nl := s.newLease(sh, cp)
		nl.recreated = recreated // so that any worker making the rest knows (lease.recreated)
		if time.Since(listedAt) > c.listingMaxAge() {
			return anyCreated, errListingTooOld
		}
		created, err := c.table.create(ctx, nl)
		if err != nil {
			return anyCreated, fmt.Errorf("lease table %q: creating lease %q: %w", c.table.name(), key, err)
		}
		switch {
		case created:
			anyCreated = true
			toRead[sh.id] = cp.seq != checkpointShardEnd
			s.log.Info("kcl: lease created", "shard", key, "checkpoint", cp.seq, "parents", sh.parents)
		case latest && hasChild[sh.id]:
			// Another worker made it meanwhile: where it starts decides
			// where its children do.
			l, ok, err := c.table.read(ctx, key)
			if err != nil {
				return anyCreated, fmt.Errorf("lease table %q: reading lease %q: %w", c.table.name(), key, err)
			}
			toRead[sh.id] = ok && !l.createdEnded()
		}
	}
	return anyCreated, nil
}

// leaseState returns what the table's leases say of stream s's shards:
// which have a lease (by shard ID); which leases were created ended (a
// closed shard at Latest) and never taken: nothing was read of their
// shards, so their children have nothing to go on from and start at
// InitialPosition, as the worker that created them decided for the
// children it created; and whether a lease of s was ever taken: only then
// is a parent gone from the stream one the group should have read (not
// while the first workers of a group create its leases together); and
// which leases' shards were started, or skipped to LATEST by a reset
// (begun, skipsAncestors); and whether a lease says s
// was created again while the group read its name (lease.recreated).
func leaseState(s *kstream, leases []lease) (leased, unread, begun map[string]bool, read, recreated bool) {
	leased, unread, begun = make(map[string]bool, len(leases)), map[string]bool{}, map[string]bool{}
	for _, l := range leases {
		if id, shard := splitLeaseKey(l.shardID); id == s.id {
			recreated = recreated || l.recreated
			leased[shard] = true
			read = read || l.counter > 0
			unread[shard] = l.createdEnded()
			begun[shard] = started(l) || s.skipsAncestors(l)
		}
	}
	return leased, unread, begun, read, recreated
}

// started reports whether l's shard was started: its checkpoint moved past
// where it began (a sequence number, or SHARD_END written by a reader).
// The Java KCL deletes a parent's lease only once every child started.
func started(l lease) bool {
	return !l.checkpoint.isSentinel() || l.checkpoint.shardEnd() && !l.createdEnded()
}

// skipsAncestors reports whether l, a lease of s, was moved to LATEST after
// it was taken (kcl reset -to latest): its reader skips to the tip, so its
// listed ancestors without a lease are not to be read again. They were read
// to their end and their leases deleted once their children started
// (cleanup.go), and a lease made for one anew would read it all over,
// though the user asked to skip to the tip.
//   - A lease only created at LATEST has counter 0: its parents' leases
//     exist, or were deleted only after it started.
//   - A lease stamped with another creation time than s's is an earlier
//     stream's (incarnation.go): it proves nothing of s's shards.
func (s *kstream) skipsAncestors(l lease) bool {
	ours := l.streamCreated == 0 || s.created.IsZero() || l.streamCreated == s.created.UnixMilli()
	return resetToLatest(l) && ours
}

// resetToLatest reports whether l is at LATEST after it was taken: a reset
// moved it there (kcl reset -to latest).
func resetToLatest(l lease) bool { return l.checkpoint.seq == checkpointLatest && l.counter > 0 }

// newLease returns the new lease of shard sh of s at cp: its parents as
// lease keys and, in a single-stream table, whose keys outlive the stream,
// the stream's creation time (incarnation.go).
func (s *kstream) newLease(sh shardInfo, cp checkpoint) lease {
	l := lease{shardID: leaseKey(s.id, sh.id), checkpoint: cp, parents: make([]string, len(sh.parents))}
	for i, p := range sh.parents {
		l.parents[i] = leaseKey(s.id, p)
	}
	if s.id == "" && !s.created.IsZero() {
		l.streamCreated = s.created.UnixMilli()
	}
	return l
}

// startSeq returns where the new lease of sh starts (syncShards): the
// initial position, unless sh descends from a leased shard (descends), its
// parent is one this sync made to be read (toRead), or, with Latest, it is
// closed and its listed children cover it (covered).
func startSeq(sh shardInfo, initial Position, descends bool, toRead map[string]bool, covered bool) string {
	latest := initial == Latest
	switch {
	case descends:
		return checkpointTrimHorizon
	case latest && slices.ContainsFunc(sh.parents, func(p string) bool { return toRead[p] }):
		// A listing caught mid-reshard shows a parent still open beside its
		// children: the parent is read first, so a child at LATEST would be
		// opened only once the parent ends, skipping what came in
		// meanwhile. It goes on from its parent instead.
		return checkpointTrimHorizon
	case latest && sh.closed && covered:
		// Closed, and its listed children cover it: nothing new will come
		// in, and they start at LATEST. (One listed without all its
		// children, a listing caught mid-reshard as the Java KCL has met,
		// stays at LATEST: it is taken, ends at once, and its children,
		// learnt from the shard end, go on from it at TRIM_HORIZON. Ended
		// and never read, it would leave a child listed later to start at
		// LATEST then, skipping what came in until then.)
		return checkpointShardEnd
	}
	return initial.String()
}

// withChildren adds to shards (parents first) the children in extra that
// the listing lacks and whose parents are all listed or leased.
func withChildren(shards, extra []shardInfo, leased map[string]bool) []shardInfo {
	known := make(map[string]bool, len(shards))
	for _, s := range shards {
		known[s.id] = true
	}
	added := false
	for _, s := range extra {
		if known[s.id] {
			continue
		}
		ok := true
		for _, p := range s.parents {
			ok = ok && (known[p] || leased[p])
		}
		if ok {
			shards = append(shards, s)
			known[s.id] = true
			added = true
		}
	}
	if added {
		shards = parentsFirst(shards)
	}
	return shards
}

// confirmUnstarted reads again, consistently, each leased shard of s that
// the sync's read found not started (begun) and that has a listed ancestor
// without a lease, and marks it begun if it has started since. The Java
// KCL deletes a parent's lease once every child started, and a read may
// return a child's lease from before it started beside its parent's
// deleted (each item of a Scan is read at its own moment): the parent
// would get a lease again and be read all over (ancestorsOfLeased).
func (c *Consumer) confirmUnstarted(ctx context.Context, s *kstream, shards []shardInfo, leased, begun map[string]bool) error {
	// unleasedAncestor: a listed ancestor without a lease, worked out in one
	// parents-first pass (a walk of every path would grow exponentially
	// with splits and merges).
	listed := make(map[string]bool, len(shards))
	for _, sh := range shards {
		listed[sh.id] = true
	}
	unleasedAncestor := make(map[string]bool, len(shards))
	ordered := parentsFirst(shards)
	for _, sh := range ordered {
		for _, p := range sh.parents {
			if listed[p] && (!leased[p] || unleasedAncestor[p]) {
				unleasedAncestor[sh.id] = true
			}
		}
	}
	for _, sh := range ordered {
		if !leased[sh.id] || begun[sh.id] || !unleasedAncestor[sh.id] {
			continue
		}
		l, ok, err := c.table.read(ctx, leaseKey(s.id, sh.id))
		if err != nil {
			return fmt.Errorf("lease table %q: reading lease %q: %w", c.table.name(), leaseKey(s.id, sh.id), err)
		}
		ours := l.streamCreated == 0 || s.created.IsZero() || l.streamCreated == s.created.UnixMilli() // not an earlier stream's
		begun[sh.id] = ok && ours && (started(l) || s.skipsAncestors(l))
	}
	return nil
}

// ancestorsOfLeased returns the listed shards without a lease of which a
// descendant has a lease that was started, or reset to LATEST (begun). Such
// a shard was read to its end before its child was started, and its lease
// deleted since: kcl
// (cleanup.go) and the Java KCL (2.3 and later, and 3.x) delete a parent's
// once every child has started. A lease made for it anew would
// read it all again, and hold its children back meanwhile. A descendant
// whose lease was not started proves nothing: its lease may have replaced
// an earlier stream's of that shard ID (incarnation.go), whose parents'
// were never this stream's.
func ancestorsOfLeased(shards []shardInfo, leased, begun map[string]bool) map[string]bool {
	parents := make(map[string][]string, len(shards))
	for _, s := range shards {
		parents[s.id] = s.parents
	}
	done := map[string]bool{}
	var mark func(id string)
	mark = func(id string) {
		for _, p := range parents[id] {
			if !done[p] {
				done[p] = true
				mark(p)
			}
		}
	}
	for _, s := range shards {
		if begun[s.id] {
			mark(s.id)
		}
	}
	for id := range leased {
		delete(done, id)
	}
	return done
}

// descendsFromLeased reports, for each shard, whether one of its ancestors
// (parents, their parents, and so on) has a lease that is or was to be
// read: not one of unread, created at SHARD_END and never taken. shards are
// in parents-first order. A parent neither listed nor leased left the
// stream (retention); once the group has read the stream (groupRead), such
// a parent was one it should have read, so its children count as
// descendants too: nothing after it is skipped, however long the group was
// down.
func descendsFromLeased(shards []shardInfo, leased, unread map[string]bool, groupRead bool) map[string]bool {
	listed := make(map[string]bool, len(shards))
	for _, s := range shards {
		listed[s.id] = true
	}
	descends := make(map[string]bool, len(shards))
	for _, s := range shards { // parents first: a parent's answer is known
		for _, p := range s.parents {
			gone := !listed[p] && !leased[p] && groupRead
			if leased[p] && !unread[p] || descends[p] || gone {
				descends[s.id] = true
			}
		}
	}
	return descends
}

// createdEnded reports whether l was created at SHARD_END (a closed shard at
// Latest) and never taken: nothing of its shard was read, so its children
// do not go on from it. Every take and checkpoint bumps the counter.
func (l lease) createdEnded() bool { return l.checkpoint.shardEnd() && l.counter == 0 }
