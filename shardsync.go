package kcl

import (
	"context"
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

// listShards returns every shard of the stream, parents before children.
func (c *Consumer) listShards(ctx context.Context) ([]shardInfo, error) {
	var shards []shardInfo
	in := &kinesis.ListShardsInput{}
	c.setStream(&in.StreamName, &in.StreamARN)
	for {
		out, err := retry(ctx, &c.counters.retryCounters, c.log, "ListShards", nil, func() (*kinesis.ListShardsOutput, error) {
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
// that has none. A shard descending from a shard already leased starts at
// TRIM_HORIZON, so nothing between parent and child is missed. Any other shard
// starts at the InitialPosition; with Latest, a closed one is marked
// SHARD_END, as nothing new will arrive in it.
func (c *Consumer) syncShards(ctx context.Context) error {
	shards, err := c.listShards(ctx)
	if err != nil {
		return fmt.Errorf("kcl: stream %q: %w", c.opts.streamLabel(), err)
	}
	c.mu.Lock()
	for _, s := range shards {
		c.shards[s.id] = s
	}
	c.mu.Unlock()

	snap, err := c.table.list(ctx)
	if err != nil {
		return fmt.Errorf("kcl: lease table %q: %w", c.table.name(), err)
	}
	c.reportBadLeases(snap.bad)
	leasedBefore := make(map[string]bool, len(snap.leases))
	for _, l := range snap.leases {
		leasedBefore[l.shardID] = true
	}
	for _, s := range shards {
		if leasedBefore[s.id] {
			continue
		}
		cp := checkpoint{seq: c.opts.InitialPosition.String()}
		for _, p := range s.parents {
			if leasedBefore[p] {
				cp.seq = checkpointTrimHorizon
			}
		}
		if cp.seq == checkpointLatest && s.closed {
			cp.seq = checkpointShardEnd
		}
		created, err := c.table.create(ctx, lease{shardID: s.id, checkpoint: cp, parents: s.parents})
		if err != nil {
			return fmt.Errorf("kcl: lease table %q: creating lease %q: %w", c.table.name(), s.id, err)
		}
		if created {
			c.log.Info("kcl: lease created", "shard", s.id, "checkpoint", cp.seq, "parents", s.parents)
		}
	}
	return nil
}

// createChildLeases creates the leases of the shards that a closed shard
// ended in, at TRIM_HORIZON, as GetRecords named them.
//
// A merged child has a second parent, which may be a shard this worker has
// not listed yet (a child of a split made since). Its lease must exist
// before the child's: a parent without a lease counts as trimmed, and the
// child would be read before it. Then the shards are listed again instead,
// which creates every missing lease, parents first.
func (c *Consumer) createChildLeases(ctx context.Context, children []types.ChildShard) error {
	c.mu.Lock()
	unknown := false
	for _, ch := range children {
		for _, p := range ch.ParentShards {
			_, known := c.shards[p]
			unknown = unknown || !known
		}
	}
	c.mu.Unlock()
	if unknown {
		_, err := retry(ctx, &c.counters.retryCounters, c.log, "shard sync", nil, func() (struct{}, error) {
			return struct{}{}, c.syncShards(ctx)
		})
		return err
	}
	for _, ch := range children {
		s := shardInfo{id: aws.ToString(ch.ShardId), parents: ch.ParentShards}
		c.mu.Lock()
		c.shards[s.id] = s
		c.mu.Unlock()
		_, err := retry(ctx, &c.counters.retryCounters, c.log, "creating child lease", nil, func() (bool, error) {
			return c.table.create(ctx, lease{shardID: s.id, checkpoint: checkpoint{seq: checkpointTrimHorizon}, parents: s.parents})
		})
		if err != nil {
			return fmt.Errorf("kcl: lease table %q: creating lease %q: %w", c.table.name(), s.id, err)
		}
	}
	return nil
}

// setStream fills the stream name or ARN of a request.
func (c *Consumer) setStream(name, arn **string) {
	if c.opts.StreamName != "" {
		*name = aws.String(c.opts.StreamName)
	} else {
		*arn = aws.String(c.opts.StreamARN)
	}
}
