package kcl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/kclgo/kcl/internal/leaseitem"
)

// A consumer reads one stream (Options.StreamName or StreamARN) or several
// (Options.Streams) as one group with one lease table. With several, the
// table has the Java KCL's multi-stream layout
// (DynamoDBMultiStreamLeaseSerializer): each lease key is the stream's
// identifier, account:stream:creationEpoch, then ":" and the shard ID.
// Parents are read as the keys of their leases (leaseitem.ParseLease), so
// everything that works on leases (assess, parentsDone, the group item)
// works on lease keys alone, whatever the layout. With one stream, the
// lease key is the shard ID and the stream's identifier is "".

// kstream is one stream the consumer reads. New fills in what Options say;
// start fills in the rest (describeStreams) before any lease is taken, and
// nothing changes it afterwards but shards, retired and kinesisTime: a
// stream created again under its name is another kstream (incarnation.go).
type kstream struct {
	// kinesisTime is the clock of this stream's Kinesis, read from the
	// Date of each of its DescribeStreamSummary and ListShards answers:
	// start has it before any lease is taken. A take stores a lease's
	// start on it. Per stream, since Options.KinesisFor may send each
	// stream's calls to another endpoint. Synchronized on its own mutex.
	kinesisTime kinesisClock
	label       string // as Options name it: a name or an ARN; for logs and errors
	name        string // the name given, if given by name: requests then name it so
	arn         string // given, or from DescribeStreamSummary at start
	// id is the Java KCL's identifier of the stream in a multi-stream
	// table, account:stream:creationEpoch (StreamIdentifier.serialize), from
	// DescribeStreamSummary; "" for the stream of a single-stream consumer.
	id string
	// created is when the stream was created (DescribeStreamSummary).
	created time.Time
	// retired says the stream was deleted, and perhaps created again under
	// its name as another kstream: its readers stop.
	retired atomic.Bool
	// followsEarlier says this worker replaced or deleted a lease of an
	// earlier stream of this name (renewLease), or switched to this stream
	// from it: the group was reading that name, so a shard of this stream
	// without a lease starts at TRIM_HORIZON (createLeases), also after a
	// failed sync whose replacements left no earlier lease to see.
	followsEarlier atomic.Bool
	// missing says the stream was last found deleted: the lease loop
	// describes it again every LeaseDuration until it is back, though no
	// reader of it is left to wait for it.
	missing atomic.Bool
	// consumerARN is the stream consumer registered for enhanced fan-out:
	// set before the stream's readers start, and again by a reader that
	// finds it deregistered (renewConsumer, holding renewing); read by any
	// goroutine (consumer).
	consumerARN atomic.Pointer[string]
	// givenConsumer is the consumer Options give by ARN for this stream
	// (ConsumerARN, ConsumerARNs): kcl describes it, and never registers
	// one. "" when kcl registers ConsumerName. Set by described, before
	// the stream is read.
	givenConsumer string
	// renewing is held by the reader that registers the consumer again,
	// across its calls to Kinesis (a chanLock: the others wait on a
	// channel, with their context).
	renewing chanLock
	// log is the consumer's logger, naming this stream (the consumer's own
	// already does with a single stream).
	log *slog.Logger
	// kinesis is the stream's client (Options.KinesisFor, else the
	// consumer's): every call on the stream and its consumer goes to it.
	kinesis KinesisAPI

	shardsMu sync.Mutex
	shards   map[string]shardInfo // synchronized on shardsMu: by shard ID, as last listed (setShards); nil until listed
}

// streamSet is the streams a consumer reads, in Options order, and by
// identifier ("" for the stream of a single-stream consumer; nil until
// start described them). It is immutable: a change makes a new set.
type streamSet struct {
	list []*kstream
	byID map[string]*kstream
}

// streamList returns the streams read. Any goroutine may call it.
func (c *Consumer) streamList() []*kstream { return c.streams.Load().list }

// newStreams returns the streams of opts, as given, logging with log, each
// with the client KinesisFor gives it (nil: the consumer's, New's to set).
func newStreams(opts Options, log *slog.Logger) []*kstream {
	given := opts.Streams
	if !opts.multiStream() {
		given = []string{opts.streamLabel()}
	}
	streams := make([]*kstream, 0, len(given))
	for _, g := range given {
		s := &kstream{label: g, log: log, renewing: newChanLock()}
		if opts.multiStream() {
			s.log = log.With("stream", g)
		}
		if streamARNPattern.MatchString(g) {
			s.arn = g
		} else {
			s.name = g
		}
		if opts.KinesisFor != nil {
			s.kinesis = noNilClient(opts.KinesisFor(g))
		}
		streams = append(streams, s)
	}
	return streams
}

// noNilClient returns k, or nil for a nil pointer in the interface (a
// missing entry of a map of *kinesis.Client): KinesisFor's nil either way.
func noNilClient(k KinesisAPI) KinesisAPI {
	if v := reflect.ValueOf(k); k == nil || v.Kind() == reflect.Pointer && v.IsNil() {
		return nil
	}
	return k
}

// consumer returns the ARN of the stream consumer for enhanced fan-out, ""
// when the stream is polled. Any goroutine may call it.
func (s *kstream) consumer() string {
	if p := s.consumerARN.Load(); p != nil {
		return *p
	}
	return ""
}

// setStream fills the stream name or ARN of a request: the name when the
// stream was given by name, else its ARN. A stream of another account is
// given by ARN, and Kinesis consults its resource policy only for a request
// that names it by ARN.
func (s *kstream) setStream(name, arn **string) {
	if s.name != "" {
		*name = aws.String(s.name)
	} else {
		*arn = aws.String(s.arn)
	}
}

// arnIfGiven returns the stream's ARN when it was given by ARN, for a
// request that names its stream otherwise (GetRecords, by its iterator):
// nil when it was given by name. As setStream, for a stream of another
// account, as the Java KCL does.
func (s *kstream) arnIfGiven() *string {
	if s.name != "" {
		return nil
	}
	return aws.String(s.arn)
}

// setShards notes the shards of the stream as just listed, by shard ID.
// Any goroutine may call it.
func (s *kstream) setShards(byID map[string]shardInfo) {
	s.shardsMu.Lock()
	s.shards = byID
	s.shardsMu.Unlock()
}

// listedShard returns shard id as last listed, whether the listing had it,
// and whether the stream was listed at all yet. Any goroutine may call it.
func (s *kstream) listedShard(id string) (sh shardInfo, found, listed bool) {
	s.shardsMu.Lock()
	defer s.shardsMu.Unlock()
	sh, found = s.shards[id]
	return sh, found, s.shards != nil
}

// closed reports whether the last listing said the shard is closed. Any
// goroutine may call it.
func (s *kstream) closed(shard string) bool {
	s.shardsMu.Lock()
	defer s.shardsMu.Unlock()
	return s.shards[shard].closed
}

// leaseKey, splitLeaseKey and multiStreamKey build, split and tell lease
// keys, as leaseitem does: the shard ID in a single-stream table,
// account:stream:creationEpoch:shardId in a multi-stream one.
func leaseKey(streamID, shardID string) string { return leaseitem.Key(streamID, shardID) }

func splitLeaseKey(key string) (streamID, shardID string) { return leaseitem.SplitKey(key) }

func multiStreamKey(key string) bool { return leaseitem.MultiStream(key) }

// describeStreams asks DescribeStreamSummary for each stream's ARN and, in
// multi-stream mode, its identifier (the account from the ARN, the creation
// time in seconds), and indexes the streams by identifier. A stream that
// does not exist is an error naming it; so is a stream listed twice (by name
// and by ARN). It runs at start (run's goroutine).
func (c *Consumer) describeStreams(ctx context.Context) error {
	list := c.streamList()
	byID := make(map[string]*kstream, len(list))
	byARN := make(map[string]*kstream, len(list))
	for _, s := range list {
		sum, err := c.describe(ctx, starting, s)
		if err != nil {
			return err
		}
		if err := c.described(s, sum); err != nil {
			return err
		}
		if other, ok := byARN[s.arn]; ok {
			return fmt.Errorf("Options.Streams: %q and %q are the same stream, %s: list each stream once", other.label, s.label, s.arn)
		}
		byARN[s.arn] = s
		byID[s.id] = s
	}
	if err := c.checkGivenConsumersUsed(list); err != nil {
		return err
	}
	c.streams.Store(&streamSet{list: list, byID: byID})
	return nil
}

// describe asks DescribeStreamSummary about s, retrying transient errors.
// An error names the stream.
func (c *Consumer) describe(ctx context.Context, st stage, s *kstream) (*types.StreamDescriptionSummary, error) {
	in := &kinesis.DescribeStreamSummaryInput{}
	s.setStream(&in.StreamName, &in.StreamARN)
	out, err := retry(ctx, st, &c.counters.retryCounters, s.log, "DescribeStreamSummary", nil, func() (*kinesis.DescribeStreamSummaryOutput, error) {
		return s.kinesis.DescribeStreamSummary(ctx, in)
	})
	if err != nil {
		return nil, fmt.Errorf("stream %q: %w", s.label, err)
	}
	s.kinesisTime.note(out.ResultMetadata)
	if out.StreamDescriptionSummary == nil || aws.ToString(out.StreamDescriptionSummary.StreamARN) == "" {
		return nil, fmt.Errorf("stream %q: DescribeStreamSummary gave no stream ARN", s.label)
	}
	return out.StreamDescriptionSummary, nil
}

// described fills in what DescribeStreamSummary said of s: its ARN,
// creation time, the consumer Options give for it by ARN, and, in a
// multi-stream table, its identifier (the account from the ARN, the
// creation time in seconds).
func (c *Consumer) described(s *kstream, sum *types.StreamDescriptionSummary) error {
	s.arn, s.created = aws.ToString(sum.StreamARN), createdAt(sum)
	if c.opts.consumerGiven() {
		var err error
		if s.givenConsumer, err = c.opts.givenConsumerOf(s); err != nil {
			return err
		}
	}
	if c.opts.multiStream() {
		var ok bool
		if s.id, ok = leaseitem.StreamID(s.arn, s.created); !ok || s.created.IsZero() {
			return fmt.Errorf("stream %q: DescribeStreamSummary gave no account (ARN %q) or no creation time, which the multi-stream lease keys need", s.label, s.arn)
		}
	}
	return nil
}

// streamIDs returns the identifiers of the streams read, sorted, in a
// multi-stream table; nil with one stream (every worker reads it).
func (c *Consumer) streamIDs() []string {
	if !c.opts.multiStream() {
		return nil
	}
	list := c.streamList()
	ids := make([]string, 0, len(list))
	for _, s := range list {
		ids = append(ids, s.id)
	}
	slices.Sort(ids)
	return ids
}

// streamOf returns the stream a lease key belongs to, if this consumer reads
// it, and the shard ID.
func (c *Consumer) streamOf(key string) (*kstream, string, bool) {
	id, shard := splitLeaseKey(key)
	s, ok := c.streams.Load().byID[id]
	return s, shard, ok
}

// ours reports whether a lease is of a stream this consumer reads. Leases
// of other streams (in a multi-stream table, streams no longer in Streams)
// are never taken, ended or deleted; this worker releases those a kcl run
// of its WorkerID owns (assessment.shareOthers).
func (c *Consumer) ours(key string) bool {
	_, _, ok := c.streamOf(key)
	return ok
}

// streamARNOf returns the ARN of the stream a lease key belongs to: that of
// a stream this consumer reads, or, for another stream of a multi-stream
// table, one built from its identifier in this consumer's partition and
// region. "" if neither is known.
func (c *Consumer) streamARNOf(key string) string {
	if s, _, ok := c.streamOf(key); ok {
		return s.arn
	}
	id, _ := splitLeaseKey(key)
	parts := strings.Split(id, ":")
	list := c.streamList()
	if len(parts) != 3 || len(list) == 0 {
		return ""
	}
	own := strings.SplitN(list[0].arn, ":", 6)
	if len(own) != 6 {
		return ""
	}
	return strings.Join([]string{"arn", own[1], "kinesis", own[3], parts[0], "stream/" + parts[1]}, ":")
}

// errTableLayout says the lease table holds leases of the other layout
// (single-stream keys for a multi-stream consumer, or the reverse). No retry
// can fix it.
var errTableLayout = errors.New("lease table layout does not match the options")

// checkLayout refuses a lease table that holds leases of the other layout:
// a single-stream and a multi-stream application never share a table, so
// that neither takes the other's table for empty and starts over from
// InitialPosition.
func (c *Consumer) checkLayout(leases []lease) error {
	multi := c.opts.multiStream()
	for _, l := range leases {
		if multiStreamKey(l.shardID) == multi {
			continue
		}
		if multi {
			return fmt.Errorf("lease table %q holds single-stream leases (keyed by shard ID, such as %q), and Options.Streams needs the multi-stream layout (account:stream:creationEpoch:shardId): read that table with StreamName or StreamARN, or give Streams another AppName or LeaseTable: %w",
				c.table.name(), l.shardID, errTableLayout)
		}
		return fmt.Errorf("lease table %q holds multi-stream leases (keyed account:stream:creationEpoch:shardId, such as %q), and StreamName/StreamARN need the single-stream layout: read that table with Options.Streams, or give this application another AppName or LeaseTable: %w",
			c.table.name(), l.shardID, errTableLayout)
	}
	return nil
}
