package kcl

import (
	"context"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// Record is one user record read from a shard. Records of one shard arrive in
// sequence order; records of different shards interleave.
//
// A Record must be acked once the caller is done with it. The shard's
// checkpoint only moves past a record after it and every earlier record of
// the same shard were acked, so an unacked record is delivered again after a
// restart or a lease move (at-least-once).
//
// A record the producer aggregated (the KPL format) arrives as its user
// records, each with the Kinesis record's SequenceNumber and its own
// SubSequenceNumber (0, 1, ...), PartitionKey and ExplicitHashKey. A plain
// record has SubSequenceNumber 0 and no ExplicitHashKey.
//
// The fields are set by kcl and describe the record; changing them changes
// nothing in kcl (Ack does not read them).
type Record struct {
	// Data is the payload, as the producer put it (for a KPL aggregate,
	// this user record's). It stays valid for as long as it is held, also
	// after Ack, and never changes under its holder: kcl neither reuses
	// nor writes it once delivered. Each Data has no room past its end (an
	// append copies), but may share its backing array, which holding it
	// keeps in memory:
	//   - polled records of one GetRecords page share arrays of at most 64
	//     KiB (a record larger than that has its own);
	//   - the user records of a KPL aggregate share the aggregate's bytes.
	Data []byte
	// PartitionKey is the key the producer gave. Kinesis puts a key's
	// records on one shard, so they arrive in order (Process runs them one
	// at a time).
	PartitionKey string
	// ExplicitHashKey is the hash key the KPL gave a user record of an
	// aggregate to place it instead of PartitionKey's hash, as a decimal
	// number; empty when none was given and for a plain record (Kinesis's
	// GetRecords does not return the one a plain put gave).
	ExplicitHashKey string
	// SequenceNumber is the Kinesis record's sequence number, unique in its
	// shard and growing with each record: user records of one aggregate
	// share it. With SubSequenceNumber it is what a checkpoint stores.
	SequenceNumber string
	// SubSequenceNumber is the position of a user record in its aggregate,
	// from 0; 0 for a plain record.
	SubSequenceNumber int64
	// ShardID is the shard the record was read from, such as
	// "shardId-000000000000" (the shard's ID, not its lease key, also with
	// Options.Streams).
	ShardID string
	// StreamARN is the ARN of the record's stream, set with one stream as
	// with several (Options.Streams).
	StreamARN string
	// ApproximateArrivalTimestamp is when Kinesis accepted the record (for a
	// KPL aggregate, the aggregate), on Kinesis's clock, to the millisecond.
	ApproximateArrivalTimestamp time.Time

	chunk *ackChunk // where its ack is marked
	index uint64
}

// Ack marks the record as handled. It is idempotent, safe to call from any
// goroutine, in any order relative to other records, and takes no lock and
// does no I/O: the checkpoint that covers it is written within
// Options.CheckpointInterval.
// Acking a record whose lease was lost meanwhile does nothing: the new owner
// delivers it again. Ack on the zero Record does nothing.
func (r Record) Ack() {
	if r.chunk != nil {
		r.chunk.ack(r.index)
	}
}

// pageRecords turns a page of Kinesis records (a GetRecords response or a
// fan-out event) into user records, in order, a few at a time: the user
// records of a KPL aggregate, else the record itself. Records at or before
// skip (the checkpoint a shard resumed from) are left out. It is used by one
// reader goroutine.
type pageRecords struct {
	r      *shardReader
	shard  string         // r.h.shard, at hand for every record
	stream string         // r.h.stream.arn, likewise
	recs   []types.Record // recs[0] is the record being converted
	split  kplSplitter    // recs[0]'s user records, split as they are asked for
	next   int            // the sub-sequence number of recs[0]'s next user record; -1 until its split is opened
	hashes hashRange      // the shard's hash-key range, to tell an aggregate put on the wrong shard (misplaced)
	skip   *checkpoint
}

// newPageRecords starts converting recs. The page's last arrival time is
// noted for Stats now, as the page is received.
func newPageRecords(r *shardReader, recs []types.Record, skip *checkpoint) *pageRecords {
	if n := len(recs); n > 0 {
		r.h.counters.lastArrival.Store(aws.ToTime(recs[n-1].ApproximateArrivalTimestamp).UnixNano())
	}
	return &pageRecords{r: r, shard: r.h.shard, stream: r.h.stream.arn, recs: recs, next: -1, skip: skip, hashes: r.shardRange()}
}

func (p *pageRecords) done() bool { return len(p.recs) == 0 }

// fill converts the next user records into buf and returns how many.
func (p *pageRecords) fill(buf []Record) int {
	n := 0
	for n < len(buf) && len(p.recs) > 0 {
		r := &p.recs[0]
		rec := &buf[n] // written in place: a Record is large
		*rec = Record{
			Data:                        r.Data,
			PartitionKey:                aws.ToString(r.PartitionKey),
			SequenceNumber:              aws.ToString(r.SequenceNumber),
			ShardID:                     p.shard,
			StreamARN:                   p.stream,
			ApproximateArrivalTimestamp: aws.ToTime(r.ApproximateArrivalTimestamp),
		}
		if p.next < 0 {
			if !isAggregated(r.Data) {
				p.recs = p.recs[1:]
				n += p.keep(rec)
				continue
			}
			if err := p.split.open(r.Data); err != nil {
				p.malformed(rec, "kcl: malformed aggregated record delivered whole", err)
				p.recs = p.recs[1:]
				n += p.keep(rec)
				continue
			}
			p.next = 0
			if stray, users := p.split.strays(p.hashes); stray {
				if !p.r.env.opts.keepMisplaced {
					p.misplaced(rec, users, true)
					p.recs, p.next = p.recs[1:], -1
					continue
				}
				p.misplaced(rec, users, false)
			}
		}
		u, ok, err := p.split.next()
		if err != nil {
			// Not reached unless the aggregate's bytes changed after open
			// checked them all. The user records already delivered stand;
			// the record is delivered whole again, from this sub-sequence
			// number, for the receiver to see what is left.
			rec.SubSequenceNumber = int64(p.next)
			p.malformed(rec, "kcl: aggregated record malformed past its first user records; delivered whole after them", err)
			p.recs, p.next = p.recs[1:], -1
			n += p.keep(rec)
			continue
		}
		if !ok {
			p.recs, p.next = p.recs[1:], -1
			continue
		}
		rec.Data, rec.PartitionKey, rec.ExplicitHashKey, rec.SubSequenceNumber = u.data, u.partitionKey, u.explicitHashKey, int64(p.next)
		p.next++
		n += p.keep(rec)
	}
	return n
}

// malformed logs rec, an aggregated record delivered whole because of err:
// Warn once per lease, then Debug (nothing per record above Debug). It is
// never dropped and never blocks the shard.
func (p *pageRecords) malformed(rec *Record, msg string, err error) {
	level := slog.LevelDebug
	if !p.r.warnedMalformed {
		p.r.warnedMalformed, level = true, slog.LevelWarn
	}
	p.r.log.Log(context.Background(), level, msg, "sequence_number", rec.SequenceNumber, "sub_sequence_number", rec.SubSequenceNumber, "error", err)
}

// misplaced logs rec, an aggregate of users user records of which at
// least one has a key outside the shard's range (kplSplitter.strays):
// Warn once per lease, then Debug; the partition key only at Debug.
//
// By default (dropped) the aggregate is dropped whole, as the Java KCL
// drops it: the KPL, which put it by a shard map older than a split, puts
// every user record of it again on their own shards, so delivering it
// would deliver them twice, and read one key from two shards at once.
// Options.KeepMisplacedAggregates delivers it instead, for producers of
// the format that aggregate any keys and never put them again.
func (p *pageRecords) misplaced(rec *Record, users int, dropped bool) {
	level := slog.LevelDebug
	if !p.r.warnedMisplaced {
		p.r.warnedMisplaced, level = true, slog.LevelWarn
	}
	msg := "kcl: KPL aggregate with user records outside the shard's hash-key range; delivered (Options.KeepMisplacedAggregates)"
	if dropped {
		p.r.env.counters.misplacedDropped.Add(int64(users))
		msg = "kcl: KPL aggregate with user records outside the shard's hash-key range; dropped, as the Java KCL does (the KPL puts them again on their own shards; set Options.KeepMisplacedAggregates if the producer does not)"
	}
	args := []any{"sequence_number", rec.SequenceNumber, "user_records", users}
	if level == slog.LevelDebug { // keys are often user IDs or emails: never above Debug
		args = append(args, "aggregate_partition_key", rec.PartitionKey)
	}
	p.r.log.Log(context.Background(), level, msg, args...)
}

// keep reports 1 to keep rec, 0 to leave it out: it is at or before skip.
// The first record past skip clears it.
func (p *pageRecords) keep(rec *Record) int {
	if p.skip.seq != "" {
		if rec.SequenceNumber == p.skip.seq && rec.SubSequenceNumber <= p.skip.sub {
			return 0
		}
		*p.skip = checkpoint{}
	}
	return 1
}
