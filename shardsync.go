package kcl

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// shardInfo is what ListShards says of a shard.
type shardInfo struct {
	id      string
	parents []string
	closed  bool // has an ending sequence number: no record will be added
}

// listShards returns every shard of the stream, parents before children. A
// page token that expired between two pages (ExpiredNextTokenException)
// starts the listing over: retrying it would fail for ever.
func (c *Consumer) listShards(ctx context.Context) ([]shardInfo, error) {
	return retry(ctx, &c.counters.retryCounters, c.log, "shard listing from the start (page token expired)", nil, func() ([]shardInfo, error) {
		return c.listShardsOnce(ctx)
	})
}

func (c *Consumer) listShardsOnce(ctx context.Context) ([]shardInfo, error) {
	var shards []shardInfo
	in := &kinesis.ListShardsInput{}
	c.setStream(&in.StreamName, &in.StreamARN)
	for {
		out, err := retry(ctx, &c.counters.retryCounters, c.log, "ListShards", isExpiredNextToken, func() (*kinesis.ListShardsOutput, error) {
			return c.kinesis.ListShards(ctx, in)
		})
		if err != nil {
			return nil, err
		}
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
	info.closed = s.SequenceNumberRange != nil && s.SequenceNumberRange.EndingSequenceNumber != nil
	return info
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

// syncShards lists the stream's shards and creates a lease for each shard
// that has none, parents before children; it stops at the first lease it
// cannot create, so no child ever has a lease while a listed parent lacks
// one. extra are shards a closed shard's GetRecords named as its children,
// which the listing may not show yet: each is added only when every parent
// is listed or leased, so that a parent never counts as trimmed by mistake.
//
// Where a shard starts: any descendant of a shard that had a lease before
// this sync, however deep (a consumer down across several reshards), starts
// at TRIM_HORIZON, so nothing between an ancestor's checkpoint and the
// shard is missed. Any other shard starts at the InitialPosition; with
// Latest, a closed one is marked SHARD_END, as nothing new will arrive in
// it.
func (c *Consumer) syncShards(ctx context.Context, extra ...shardInfo) error {
	shards, err := c.listShards(ctx)
	if err != nil {
		return fmt.Errorf("stream %q: %w", c.opts.streamLabel(), err)
	}
	snap, err := c.table.list(ctx, true) // consistent: where a shard starts rests on which leases exist
	if err != nil {
		return fmt.Errorf("lease table %q: %w", c.table.name(), err)
	}
	leased := make(map[string]bool, len(snap.leases))
	for _, l := range snap.leases {
		leased[l.shardID] = true
	}
	shards = withChildren(shards, extra, leased)
	c.mu.Lock()
	c.shards = make(map[string]shardInfo, len(shards))
	for _, s := range shards {
		c.shards[s.id] = s
	}
	c.mu.Unlock()

	// A group has read this stream once a lease of it was ever taken: only
	// then is a parent gone from the stream one it should have read. (Not
	// while the first workers of a group create its leases together.)
	read := false
	for _, l := range snap.leases {
		read = read || l.counter > 0 && !multiStreamKey(l.shardID)
	}
	descends := descendsFromLeased(shards, leased, read)
	anyCreated := false
	for _, s := range shards {
		if leased[s.id] {
			continue
		}
		cp := checkpoint{seq: c.opts.InitialPosition.String()}
		switch {
		case descends[s.id]:
			cp.seq = checkpointTrimHorizon
		case cp.seq == checkpointLatest && s.closed:
			cp.seq = checkpointShardEnd
		}
		created, err := c.table.create(ctx, lease{shardID: s.id, checkpoint: cp, parents: s.parents})
		if err != nil {
			return fmt.Errorf("lease table %q: creating lease %q: %w", c.table.name(), s.id, err)
		}
		if created {
			anyCreated = true
			c.log.Info("kcl: lease created", "shard", s.id, "checkpoint", cp.seq, "parents", s.parents)
		}
	}
	if anyCreated {
		c.bump(ctx) // the other workers take their share of the new leases
	}
	return nil
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

// descendsFromLeased reports, for each shard, whether one of its ancestors
// (parents, their parents, and so on) has a lease. shards are in
// parents-first order. A parent neither listed nor leased left the stream
// (retention); once the group has read the stream (groupRead), such a
// parent was one it should have read, so its children count as descendants
// too: nothing after it is skipped, however long the group was down.
func descendsFromLeased(shards []shardInfo, leased map[string]bool, groupRead bool) map[string]bool {
	listed := make(map[string]bool, len(shards))
	for _, s := range shards {
		listed[s.id] = true
	}
	descends := make(map[string]bool, len(shards))
	for _, s := range shards { // parents first: a parent's answer is known
		for _, p := range s.parents {
			gone := !listed[p] && !leased[p] && groupRead
			if leased[p] || descends[p] || gone {
				descends[s.id] = true
			}
		}
	}
	return descends
}

// setStream fills the stream name or ARN of a request.
func (c *Consumer) setStream(name, arn **string) {
	if c.opts.StreamName != "" {
		*name = aws.String(c.opts.StreamName)
	} else {
		*arn = aws.String(c.opts.StreamARN)
	}
}
