package kcl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// readShard reads the shard of h from its checkpoint and delivers its records
// in order until ctx ends (shutdown, hand-off or lease lost) or the shard
// ends: by polling GetRecords, or with enhanced fan-out (fanout.go). It
// returns only fatal errors; a lost lease or a cancelled ctx returns nil.
func (c *Consumer) readShard(ctx context.Context, h *heldLease) error {
	if c.consumerARN != "" {
		return c.subscribeShard(ctx, h)
	}
	log := c.log.With("shard", h.shardID)
	start, _ := h.window.state() // the checkpoint at take: nothing is delivered yet
	iterator, err := c.shardIterator(ctx, h.shardID, start, "")
	if err != nil {
		return c.readError(ctx, h, err)
	}
	// Resuming from a sequence number opens AT it, so that records of an
	// aggregate after the checkpoint's sub-sequence number are not skipped;
	// the sub-records at or before the checkpoint are dropped here.
	var skip checkpoint
	if !start.isSentinel() {
		skip = start
	}
	last := "" // sequence number of the last Kinesis record delivered
	for {
		if !c.waitForRoom(ctx, h, log) {
			return nil
		}
		_, unacked := h.window.state()
		limit := max(1, min(c.opts.MaxRecords, c.opts.MaxUnackedPerShard-unacked))
		out, err := retry(ctx, &c.counters.retryCounters, log, "GetRecords", isExpiredIterator, func() (*kinesis.GetRecordsOutput, error) {
			return c.kinesis.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iterator, Limit: aws.Int32(int32(limit))})
		})
		if isExpiredIterator(err) {
			c.counters.iteratorRefreshes.Add(1)
			log.Info("kcl: shard iterator expired; reopening after the last record delivered")
			if last == "" {
				iterator, err = c.shardIterator(ctx, h.shardID, start, "")
			} else {
				iterator, err = c.shardIterator(ctx, h.shardID, checkpoint{}, last)
			}
			if err != nil {
				return c.readError(ctx, h, err)
			}
			continue
		}
		if err != nil {
			return c.readError(ctx, h, err)
		}
		h.counters.millisBehind.Store(aws.ToInt64(out.MillisBehindLatest))
		for i := range out.Records {
			if !c.deliverRecord(ctx, h, &out.Records[i], &skip, log) {
				return nil
			}
			last = aws.ToString(out.Records[i].SequenceNumber)
		}
		if out.NextShardIterator == nil {
			return c.endShard(ctx, h, out.ChildShards)
		}
		iterator = out.NextShardIterator
		if len(out.Records) == 0 || aws.ToInt64(out.MillisBehindLatest) == 0 {
			if !sleep(ctx, c.opts.PollInterval) {
				return nil
			}
		}
	}
}

// deliverRecord delivers one Kinesis record: its user records when it is a
// KPL aggregate, else itself. Records at or before skip (the checkpoint
// resumed from) are passed over. It reports false when ctx ended or the
// lease was lost.
func (c *Consumer) deliverRecord(ctx context.Context, h *heldLease, r *types.Record, skip *checkpoint, log *slog.Logger) bool {
	rec := Record{
		Data:                        r.Data,
		PartitionKey:                aws.ToString(r.PartitionKey),
		SequenceNumber:              aws.ToString(r.SequenceNumber),
		ShardID:                     h.shardID,
		ApproximateArrivalTimestamp: aws.ToTime(r.ApproximateArrivalTimestamp),
	}
	users, isAggregate, err := deaggregate(r.Data)
	if err != nil {
		// Never dropped, never blocking the shard: delivered as it is.
		log.Warn("kcl: malformed aggregated record delivered whole", "sequence_number", rec.SequenceNumber, "error", err)
	}
	if !isAggregate || err != nil {
		return c.deliver(ctx, h, rec, skip, log)
	}
	for i, u := range users {
		rec.Data, rec.PartitionKey, rec.ExplicitHashKey, rec.SubSequenceNumber = u.data, u.partitionKey, u.explicitHashKey, int64(i)
		if !c.deliver(ctx, h, rec, skip, log) {
			return false
		}
	}
	return true
}

// waitForRoom blocks while MaxUnackedPerShard delivered records of the shard
// are unacked, logging when the shard pauses and resumes.
func (c *Consumer) waitForRoom(ctx context.Context, h *heldLease, log *slog.Logger) bool {
	if _, unacked := h.window.state(); unacked < c.opts.MaxUnackedPerShard {
		return true
	}
	log.Warn("kcl: shard paused: too many delivered records are not acked", "max_unacked", c.opts.MaxUnackedPerShard)
	if !h.window.waitBelow(ctx, c.opts.MaxUnackedPerShard) {
		return false
	}
	log.Info("kcl: shard resumed")
	return true
}

// deliver hands rec to the user: the one place a record leaves kcl. It
// passes over records at or before skip, waits while the shard has too many
// unacked records, and registers rec in the shard's ack window before handing
// it over, so its ack cannot come first. It reports false when ctx ended or
// the lease was lost first.
func (c *Consumer) deliver(ctx context.Context, h *heldLease, rec Record, skip *checkpoint, log *slog.Logger) bool {
	if skip.seq != "" {
		if rec.SequenceNumber == skip.seq && rec.SubSequenceNumber <= skip.sub {
			return true
		}
		*skip = checkpoint{}
	}
	if !c.waitForRoom(ctx, h, log) {
		return false
	}
	index, ok := h.window.push(checkpoint{seq: rec.SequenceNumber, sub: rec.SubSequenceNumber}, len(rec.Data))
	if !ok {
		return false
	}
	rec.window, rec.index = h.window, index
	select {
	case c.out <- rec:
		h.counters.delivered.Add(1)
		h.counters.deliveredBytes.Add(int64(len(rec.Data)))
		h.counters.lastArrival.Store(rec.ApproximateArrivalTimestamp.UnixNano())
		return true
	case <-ctx.Done():
		h.window.unpush(index)
		return false
	}
}

// startingPosition turns a checkpoint, or the sequence number after which to
// go on, into where a shard is opened.
func (c *Consumer) startingPosition(shardID string, from checkpoint, after string) types.StartingPosition {
	switch {
	case after != "":
		return types.StartingPosition{Type: types.ShardIteratorTypeAfterSequenceNumber, SequenceNumber: aws.String(after)}
	case from.seq == checkpointTrimHorizon:
		return types.StartingPosition{Type: types.ShardIteratorTypeTrimHorizon}
	case from.seq == checkpointLatest:
		return types.StartingPosition{Type: types.ShardIteratorTypeLatest}
	case from.seq == checkpointAtTimestamp:
		if c.opts.InitialPosition.kind != positionAtTimestamp {
			// The table does not store the timestamp (neither does the Java
			// KCL's): without one, reading from the oldest record loses nothing.
			c.log.Warn("kcl: lease checkpoint is AT_TIMESTAMP but InitialPosition has no timestamp; reading from TRIM_HORIZON", "shard", shardID)
			return types.StartingPosition{Type: types.ShardIteratorTypeTrimHorizon}
		}
		return types.StartingPosition{Type: types.ShardIteratorTypeAtTimestamp, Timestamp: aws.Time(c.opts.InitialPosition.timestamp)}
	default:
		return types.StartingPosition{Type: types.ShardIteratorTypeAtSequenceNumber, SequenceNumber: aws.String(from.seq)}
	}
}

// shardIterator opens the shard at a checkpoint, or just after the sequence
// number after when it is set.
func (c *Consumer) shardIterator(ctx context.Context, shardID string, from checkpoint, after string) (*string, error) {
	pos := c.startingPosition(shardID, from, after)
	in := &kinesis.GetShardIteratorInput{ShardId: aws.String(shardID), ShardIteratorType: pos.Type, StartingSequenceNumber: pos.SequenceNumber, Timestamp: pos.Timestamp}
	c.setStream(&in.StreamName, &in.StreamARN)
	out, err := retry(ctx, &c.counters.retryCounters, c.log.With("shard", shardID), "GetShardIterator", nil, func() (*kinesis.GetShardIteratorOutput, error) {
		return c.kinesis.GetShardIterator(ctx, in)
	})
	if err != nil {
		return nil, err
	}
	return out.ShardIterator, nil
}

// endShard finishes a shard that GetRecords reported closed: once every
// record delivered from it is acked, it creates the children's leases (or,
// when the server named none, has the shard list synced), then checkpoints
// SHARD_END and releases the lease in one write, which lets the children be
// taken.
func (c *Consumer) endShard(ctx context.Context, h *heldLease, children []types.ChildShard) error {
	if !h.window.waitBelow(ctx, 1) {
		return nil // shutdown or lease lost: the final checkpoint is the acked prefix
	}
	if err := c.createChildLeases(ctx, children); err != nil {
		return c.readError(ctx, h, err)
	}
	if err := c.writeCheckpoint(ctx, h, checkpoint{seq: checkpointShardEnd}, ""); err != nil {
		return c.readError(ctx, h, err)
	}
	c.log.Info("kcl: shard ended", "shard", h.shardID, "children", len(children))
	if len(children) == 0 {
		notify(c.syncNow)
	} else {
		notify(c.takeNow)
	}
	return nil
}

// readError turns an error that stopped a reader into its result: nil when
// the reader was stopped on purpose, otherwise the error naming stream and
// shard, which ends the whole consumer.
func (c *Consumer) readError(ctx context.Context, h *heldLease, err error) error {
	if ctx.Err() != nil || isLeaseLost(err) {
		return nil
	}
	return fmt.Errorf("kcl: stream %q: shard %q: %w", c.opts.streamLabel(), h.shardID, err)
}

func isExpiredIterator(err error) bool {
	var expired *types.ExpiredIteratorException
	return errors.As(err, &expired)
}
