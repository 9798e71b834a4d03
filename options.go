package kcl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"math/rand/v2"
)

// ErrInvalidOptions is wrapped by every error New returns for a bad Options
// value. The message names the offending field.
var ErrInvalidOptions = errors.New("kcl: invalid options")

// Options configures a Consumer. The zero value of every field but
// StreamName (or StreamARN, or Streams) is valid and means the documented
// default.
type Options struct {
	// StreamName is the Kinesis stream to read. Required unless StreamARN or
	// Streams is set.
	StreamName string
	// StreamARN identifies the stream by ARN; used when StreamName is empty.
	StreamARN string
	// Streams names several streams, by name or ARN, consumed as one group
	// with one lease table (the Java KCL's multi-stream layout: lease keys
	// account:stream:creationEpoch:shardId). Exclusive with StreamName and
	// StreamARN. A table holds either layout, never both: Streams on a
	// single-stream table, or StreamName/StreamARN on a multi-stream one, is
	// an error. Leases of a stream in the table but not in Streams are left
	// alone; a stream added to Streams starts at InitialPosition.
	Streams []string

	// AppName is the consumer group: every worker with the same AppName shares
	// the stream's shards through one lease table. Empty means leases and
	// checkpoints live in memory, for a single process, and are lost on exit.
	AppName string
	// LeaseTable is the DynamoDB table holding leases and checkpoints.
	// Default: AppName. Setting it without AppName is an error.
	LeaseTable string
	// LeaseTableSettings says whether kcl may create a missing lease table,
	// and with which tags, protection, backups, encryption and billing. The
	// zero value creates it on demand, as before. Setting it without AppName
	// is an error.
	LeaseTableSettings LeaseTableSettings
	// WorkerID names this worker in the lease table (leaseOwner).
	// Default: the hostname plus a random suffix.
	WorkerID string

	// InitialPosition is where a shard with no checkpoint and no parent starts.
	// Default: Latest.
	InitialPosition Position

	// AWSConfig is used to build the Kinesis and DynamoDB clients when they are
	// not given. Default: config.LoadDefaultConfig, so the standard
	// AWS_ENDPOINT_URL_KINESIS and AWS_ENDPOINT_URL_DYNAMODB variables apply.
	AWSConfig *aws.Config
	// Kinesis overrides the Kinesis client. *kinesis.Client satisfies it. A
	// wrapper must pass the optFns of each call on to the client it wraps,
	// to keep kcl's GetRecords decoder (KinesisAPI): one that drops them is
	// safe but slower.
	Kinesis KinesisAPI
	// KinesisFor gives a stream a Kinesis client of its own: for a stream
	// of another account that admits no role of this application, read
	// with a role assumed there (docs/security.md). New calls it once for
	// each stream, with the stream as given in StreamName, StreamARN or
	// Streams (a name or an ARN), on its own goroutine, before it returns.
	// A nil client (a nil *kinesis.Client too) means Kinesis, or the client
	// built from AWSConfig.
	// Every call on a stream, its fan-out consumer's included, goes to its
	// client, from many goroutines at once (as *kinesis.Client allows);
	// a stream created again under its name keeps it.
	KinesisFor func(stream string) KinesisAPI
	// DynamoDB overrides the DynamoDB client. *dynamodb.Client satisfies it.
	DynamoDB DynamoDBAPI

	// EnhancedFanOut reads shards with SubscribeToShard (records pushed over
	// HTTP/2, 2 MB/s per shard for this consumer alone) instead of polling
	// GetRecords. The stream consumer ConsumerName is registered if missing,
	// unless ConsumerARN or ConsumerARNs gives one.
	EnhancedFanOut bool
	// ConsumerName names the stream consumer for EnhancedFanOut. Default
	// AppName; required for fan-out when AppName is empty.
	ConsumerName string
	// ConsumerARN is a stream consumer registered beforehand (by Terraform,
	// CloudFormation), for EnhancedFanOut on StreamName or StreamARN; with
	// Streams, ConsumerARNs gives one for each stream (each ARN names its
	// stream). Exclusive with ConsumerName. kcl then never calls
	// RegisterStreamConsumer (docs/iam-fanout-preregistered.json). At start
	// it waits while the consumer is CREATING; a consumer missing, DELETING
	// or of another stream ends the consumer with an error naming its ARN.
	// One deregistered while kcl runs ends it too, as soon as a subscription
	// is refused: an ARN never comes back, and its replacement's is not
	// kcl's to guess. A stream deleted and created again under its name has
	// lost its consumers: it is polled, with a Warn.
	ConsumerARN  string
	ConsumerARNs []string

	// KeepMisplacedAggregates delivers a KPL aggregate in which a user
	// record has a key outside the hash-key range of the shard it was read
	// from. By default such an aggregate is dropped whole, as the Java KCL
	// drops it: the KPL aggregates by a shard map, and when an aggregate
	// lands on another shard than the map predicted (the map was older
	// than a split) it puts every user record of it again, each on its own
	// shard. Delivering the first copy as well would deliver them twice,
	// and read their keys from two shards at once. Set it for producers of
	// the aggregated format that put user records of any keys into one
	// Kinesis record and never put them again (the kinesis-aggregation
	// libraries, a8m/kinesis-producer without its shard map): dropping
	// would lose their records. Either way the first such aggregate of a
	// lease is logged at Warn, and Stats.MisplacedDropped counts the drops.
	KeepMisplacedAggregates bool

	// MaxRecords is the Limit of each GetRecords call, 1..10000. Default 10000.
	MaxRecords int
	// PollInterval is the pause between reads of a shard that is caught up.
	// Minimum 200ms, the pace of the 5 GetRecords calls a second Kinesis
	// allows per shard (shared by every application reading the stream):
	// a smaller value is raised to it, with a Warn. Default 1s.
	PollInterval time.Duration
	// BufferSize is how many records may wait in the channel for the
	// receiver; they count as delivered (and unacked). Default 128; -1 makes
	// the channel unbuffered, so a record leaves kcl only when received.
	// Process and ProcessBatch take records 64 at a time: as many whole
	// chunks of 64 as BufferSize holds wait for them (none below 64).
	// Hazard: when a lease is lost, records of its shard already waiting in
	// the buffer are still received; their acks are ignored and the new owner
	// delivers them again.
	BufferSize int
	// MaxUnackedPerShard bounds memory: a shard stops fetching while this many
	// of its delivered records are not yet acked, and resumes as acks arrive.
	// Polling, a consumer holds at most about shards x ((2 x MaxRecords +
	// MaxUnackedPerShard) x (record size + 512 bytes) + 3 x answer + 3 x
	// record size) + 2 x GOMAXPROCS x min(2 x answer, 4 MiB), where answer
	// is a GetRecords answer's size, MaxRecords x (1.4 x record size + 200
	// bytes): base64 data, and about 160 bytes of sequence number,
	// timestamp and field names, plus the partition key (add what a key has
	// over 40 bytes). Record size is the Kinesis record's: a KPL user record
	// keeps its whole aggregate. A polled record's data shares an array of
	// at most 64 KiB (or its own, when larger) with records fetched beside
	// it: one held while its neighbours are acked keeps that array, so with
	// acks out of order count an unacked record's size as 64 KiB, or its
	// own when larger. The answer terms are:
	//   - 3 x answer, the answer being read: whole, as the SDK reads it, and
	//     up to 3 answers while its buffer grows by doubling when the server
	//     sends no length;
	//   - the buffers kept for reuse: up to about two per GOMAXPROCS across
	//     a garbage collection (sync.Pool keeps them per P, not per shard),
	//     each of at most 4 MiB and at most 2 answers.
	// The term 3 x record size is the key tables of the aggregate being
	// split, 5 bytes an entry; user records are split one at a time.
	// With EnhancedFanOut, MaxRecords limits nothing: each shard also holds
	// up to 4 MiB that Go's HTTP/2 client buffers per stream, plus about 4
	// events, whose size Kinesis chooses (docs/tuning.md). Default 10000.
	MaxUnackedPerShard int

	// LeaseDuration is how long a worker whose heartbeat does not change, as
	// seen on the observer's own clock, keeps its leases. Heartbeats are
	// written every half of it; the lease table is read every tenth of it,
	// and at least every second. A crashed worker's shards are read again
	// within about 1.2 LeaseDuration. Minimum 300ms; default 10s.
	LeaseDuration time.Duration
	// MaxLeasesPerWorker caps the leases this worker holds; 0 means no cap.
	// Shards beyond what all workers may hold are not read.
	MaxLeasesPerWorker int
	// CheckpointInterval bounds the time between an ack and the checkpoint
	// write that covers it. Minimum 100ms: each flush is a conditional
	// DynamoDB write per shard with new acks, so more often only adds cost
	// and contention on the lease items; a smaller value is raised to it,
	// with a Warn. Default 5s.
	CheckpointInterval time.Duration
	// ShardSyncInterval is how often the stream's shard list is compared with
	// the lease table to find new shards. Shard ends also trigger a sync.
	// Default 30s.
	ShardSyncInterval time.Duration
	// ShutdownTimeout bounds how long shutdown waits for delivered records to
	// be acked before the final checkpoints are written. Default 10s.
	ShutdownTimeout time.Duration

	// Concurrency, MaxAttempts, MaxRecordAge, OnFailure, RetryDelay and
	// MaxRetryDelay are used by Process and ProcessBatch only, BatchSize and
	// BatchWindow by ProcessBatch only; Consume ignores them.

	// Concurrency is how many handler calls Process runs at once, over all
	// shards. Records with the same PartitionKey never run at once and run
	// in their shard's order. At most MaxUnackedPerShard. Default 1: one
	// record at a time, in order.
	Concurrency int
	// MaxAttempts is how many times Process calls its handler for one record
	// before it gives the record to OnFailure. 0 retries until the handler's
	// context ends.
	MaxAttempts int
	// MaxRecordAge bounds how long a failing record is retried: once its
	// handler fails for a record older than this (by its
	// ApproximateArrivalTimestamp), it gets no more attempts and goes to
	// OnFailure (or stops Process), as after MaxAttempts. 0: no limit. Like
	// AWS Lambda's MaximumRecordAgeInSeconds, it keeps one bad record from
	// holding its shard back until the stream's retention drops it.
	MaxRecordAge time.Duration
	// OnFailure is called by Process, in the failed record's turn, once its
	// handler failed MaxAttempts times, with the last error. Returning nil
	// acks the record and goes on (after writing it to a dead-letter queue,
	// say); returning an error stops Process with that error, the record
	// unacked. Nil: Process stops with the last error.
	OnFailure func(ctx context.Context, rec Record, err error) error
	// RetryDelay is how long Process waits before it calls the handler again
	// for a record that failed, the first time; each later wait doubles,
	// with jitter (±50%), up to MaxRetryDelay. Defaults 100ms and 10s (the
	// backoff kcl uses for AWS errors). The handler learns which attempt
	// it runs from its context (Attempt).
	RetryDelay    time.Duration
	MaxRetryDelay time.Duration
	// BatchSize is the most records ProcessBatch gives its handler at once.
	// A batch holds records of many keys, several of one key too. At most
	// MaxUnackedPerShard: a shard has no more records delivered and not
	// acked, so a batch of one shard could never fill, and with a
	// BatchWindow every batch would wait it out. Default 100, or
	// MaxUnackedPerShard if that is less.
	BatchSize int
	// BatchWindow is how long ProcessBatch may wait for a batch to fill to
	// BatchSize before it calls the handler with the records ready then. 0
	// (the default): no wait.
	BatchWindow time.Duration

	// Logger receives kcl's logs. Nothing per record is logged above Debug.
	// No payload is ever logged, and a partition key only at Debug (keys
	// are often user IDs or emails). The errors of a Process handler or
	// OnFailure, and panic values, are logged as they are: keep keys and
	// payloads out of them (docs/security.md). Default slog.Default().
	Logger *slog.Logger
}

// Position is where a shard without a checkpoint starts reading. The zero
// value is Latest.
type Position struct {
	kind      positionKind
	timestamp time.Time
}

type positionKind int

const (
	positionLatest positionKind = iota
	positionTrimHorizon
	positionAtTimestamp
)

var (
	// Latest starts after the newest record at the time the shard is opened.
	Latest = Position{kind: positionLatest}
	// TrimHorizon starts at the oldest record the stream retains.
	TrimHorizon = Position{kind: positionTrimHorizon}
)

// AtTimestamp starts at the first record that arrived at or after t.
func AtTimestamp(t time.Time) Position {
	return Position{kind: positionAtTimestamp, timestamp: t}
}

// String returns the lease-table sentinel of the position.
func (p Position) String() string {
	switch p.kind {
	case positionTrimHorizon:
		return checkpointTrimHorizon
	case positionAtTimestamp:
		return checkpointAtTimestamp
	default:
		return checkpointLatest
	}
}

// Defaults, documented on the fields of Options.
const (
	defaultMaxRecords         = 10000
	defaultPollInterval       = time.Second
	defaultMaxUnacked         = 10000
	defaultBufferSize         = 128
	defaultLeaseDuration      = 10 * time.Second
	defaultCheckpointInterval = 5 * time.Second
	defaultShardSyncInterval  = 30 * time.Second
	defaultShutdownTimeout    = 10 * time.Second
	defaultBatchSize          = 100
)

// Floors of the intervals whose only harm, when too short, is cost: New
// raises a smaller value to its floor and logs a Warn (raisedToFloor),
// where a value that would break a guarantee (LeaseDuration) is an error.
const (
	minPollInterval       = 200 * time.Millisecond // 5 GetRecords a second per shard
	minCheckpointInterval = 100 * time.Millisecond
)

var (
	// https://docs.aws.amazon.com/kinesis/latest/APIReference/API_CreateStream.html
	streamNamePattern   = regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,128}$`)
	streamARNPattern    = regexp.MustCompile(`^arn:aws[a-z-]*:kinesis:[a-z0-9-]+:[0-9]{12}:stream/[a-zA-Z0-9_.-]{1,128}$`)
	consumerNamePattern = streamNamePattern
	// https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/HowItWorks.NamingRulesDataTypes.html
	tableNamePattern = regexp.MustCompile(`^[a-zA-Z0-9_.-]{3,255}$`)
)

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalidOptions, field, fmt.Sprintf(format, args...))
}

// withDefaults validates o and returns a copy with every default filled in.
// It makes no network call.
func (o Options) withDefaults() (Options, error) {
	if err := o.validate(); err != nil {
		return o, err
	}
	o.Streams = slices.Clone(o.Streams) // the caller's slices and maps may change later
	o.ConsumerARNs = slices.Clone(o.ConsumerARNs)
	o.LeaseTableSettings.Tags = maps.Clone(o.LeaseTableSettings.Tags)
	if o.LeaseTable == "" {
		o.LeaseTable = o.AppName
	}
	if o.ConsumerName == "" && !o.consumerGiven() {
		o.ConsumerName = o.AppName
	}
	if o.WorkerID == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "worker"
		}
		o.WorkerID = host + "-" + strconv.FormatUint(rand.Uint64()&0xffffffff, 36)
	}
	o.MaxRecords = orDefault(o.MaxRecords, defaultMaxRecords)
	o.MaxUnackedPerShard = orDefault(o.MaxUnackedPerShard, defaultMaxUnacked)
	o.BufferSize = max(0, orDefault(o.BufferSize, defaultBufferSize))
	o.PollInterval = max(minPollInterval, orDefault(o.PollInterval, defaultPollInterval))
	o.LeaseDuration = orDefault(o.LeaseDuration, defaultLeaseDuration)
	o.CheckpointInterval = max(minCheckpointInterval, orDefault(o.CheckpointInterval, defaultCheckpointInterval))
	o.ShardSyncInterval = orDefault(o.ShardSyncInterval, defaultShardSyncInterval)
	o.ShutdownTimeout = orDefault(o.ShutdownTimeout, defaultShutdownTimeout)
	o.Concurrency = orDefault(o.Concurrency, 1)
	o.RetryDelay = orDefault(o.RetryDelay, retryInitialInterval)
	o.MaxRetryDelay = orDefault(o.MaxRetryDelay, retryMaxInterval)
	o.BatchSize = orDefault(o.BatchSize, min(defaultBatchSize, o.MaxUnackedPerShard))
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}

// validate checks o as given, before defaults: an error wraps
// ErrInvalidOptions and names the field.
func (o Options) validate() error {
	if err := o.checkStreams(); err != nil {
		return err
	}
	if err := o.LeaseTableSettings.validate(o.AppName); err != nil {
		return err
	}
	if err := o.checkConsumerARNs(); err != nil {
		return err
	}
	switch {
	case o.StreamName == "" && o.StreamARN == "" && len(o.Streams) == 0:
		return invalid("StreamName", "required (or set StreamARN, or Streams)")
	case o.StreamName != "" && !streamNamePattern.MatchString(o.StreamName):
		return invalid("StreamName", "%q is not a valid stream name (1-128 of a-z A-Z 0-9 _ . -)", o.StreamName)
	case o.StreamARN != "" && !streamARNPattern.MatchString(o.StreamARN):
		return invalid("StreamARN", "%q is not a Kinesis stream ARN", o.StreamARN)
	case o.AppName != "" && !tableNamePattern.MatchString(o.AppName) && o.LeaseTable == "":
		return invalid("AppName", "%q cannot name a DynamoDB table (3-255 of a-z A-Z 0-9 _ . -); set LeaseTable", o.AppName)
	case o.LeaseTable != "" && o.AppName == "":
		return invalid("LeaseTable", "needs AppName (an empty AppName keeps leases in memory)")
	case o.LeaseTable != "" && !tableNamePattern.MatchString(o.LeaseTable):
		return invalid("LeaseTable", "%q is not a valid DynamoDB table name (3-255 of a-z A-Z 0-9 _ . -)", o.LeaseTable)
	case o.InitialPosition.kind == positionAtTimestamp && o.InitialPosition.timestamp.IsZero():
		return invalid("InitialPosition", "AtTimestamp needs a non-zero time")
	case o.EnhancedFanOut && o.ConsumerName == "" && o.AppName == "" && !o.consumerGiven():
		return invalid("ConsumerName", "required for EnhancedFanOut without AppName")
	case o.EnhancedFanOut && o.ConsumerName == "" && !consumerNamePattern.MatchString(o.AppName) && !o.consumerGiven():
		return invalid("ConsumerName", "defaults to AppName %q, which is not a valid consumer name (1-128 of a-z A-Z 0-9 _ . -); set ConsumerName", o.AppName)
	case o.ConsumerName != "" && !consumerNamePattern.MatchString(o.ConsumerName):
		return invalid("ConsumerName", "%q is not a valid consumer name (1-128 of a-z A-Z 0-9 _ . -)", o.ConsumerName)
	case o.MaxRecords < 0 || o.MaxRecords > 10000:
		return invalid("MaxRecords", "%d is out of range 1..10000", o.MaxRecords)
	case o.MaxLeasesPerWorker < 0:
		return invalid("MaxLeasesPerWorker", "%d is negative", o.MaxLeasesPerWorker)
	case o.BufferSize < -1:
		return invalid("BufferSize", "%d is below -1", o.BufferSize)
	case o.MaxUnackedPerShard < 0:
		return invalid("MaxUnackedPerShard", "%d is negative", o.MaxUnackedPerShard)
	case o.Concurrency < 0:
		return invalid("Concurrency", "%d is negative", o.Concurrency)
	case o.MaxAttempts < 0:
		return invalid("MaxAttempts", "%d is negative", o.MaxAttempts)
	case o.BatchSize < 0:
		return invalid("BatchSize", "%d is negative", o.BatchSize)
	}
	// A shard never has more than MaxUnackedPerShard records delivered and
	// unacked, so more handlers than that could never all run for one shard.
	if maxUnacked := orDefault(o.MaxUnackedPerShard, defaultMaxUnacked); o.Concurrency > maxUnacked {
		return invalid("Concurrency", "%d is above MaxUnackedPerShard (%d): more handlers than records a shard may have in flight makes no sense; raise MaxUnackedPerShard too", o.Concurrency, maxUnacked)
	}
	// Nor more records than that in a batch: one of a shard could never fill.
	if maxUnacked := orDefault(o.MaxUnackedPerShard, defaultMaxUnacked); o.BatchSize > maxUnacked {
		return invalid("BatchSize", "%d is above MaxUnackedPerShard (%d): a shard never has more records delivered and not acked, so a batch of one shard could never fill; raise MaxUnackedPerShard too", o.BatchSize, maxUnacked)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"PollInterval", o.PollInterval},
		{"LeaseDuration", o.LeaseDuration},
		{"CheckpointInterval", o.CheckpointInterval},
		{"ShardSyncInterval", o.ShardSyncInterval},
		{"ShutdownTimeout", o.ShutdownTimeout},
		{"RetryDelay", o.RetryDelay},
		{"MaxRecordAge", o.MaxRecordAge},
		{"MaxRetryDelay", o.MaxRetryDelay},
		{"BatchWindow", o.BatchWindow},
	} {
		if d.v < 0 {
			return invalid(d.name, "%v is negative", d.v)
		}
	}
	if o.RetryDelay > 0 && o.MaxRetryDelay > 0 && o.MaxRetryDelay < o.RetryDelay {
		return invalid("MaxRetryDelay", "%v is shorter than RetryDelay (%v)", o.MaxRetryDelay, o.RetryDelay)
	}
	if o.LeaseDuration != 0 && o.LeaseDuration < 300*time.Millisecond {
		return invalid("LeaseDuration", "%v is shorter than the minimum 300ms", o.LeaseDuration)
	}
	return nil
}

// raisedOption is an interval New raised to its floor.
type raisedOption struct {
	name        string
	given, used time.Duration
}

// raisedToFloor lists the intervals of given (as passed to New) that
// withDefaults raised to their floor in used, for New's Warn.
func raisedToFloor(given, used Options) []raisedOption {
	var raised []raisedOption
	for _, f := range []raisedOption{
		{"PollInterval", given.PollInterval, used.PollInterval},
		{"CheckpointInterval", given.CheckpointInterval, used.CheckpointInterval},
	} {
		if f.given != 0 && f.given < f.used {
			raised = append(raised, f)
		}
	}
	return raised
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// checkStreams validates Streams: each entry a stream name or ARN, none
// twice, and not together with StreamName or StreamARN.
func (o *Options) checkStreams() error {
	if len(o.Streams) == 0 {
		if o.Streams != nil {
			return invalid("Streams", "empty: name at least one stream, or leave it nil and set StreamName or StreamARN")
		}
		return nil
	}
	if o.StreamName != "" || o.StreamARN != "" {
		return invalid("Streams", "exclusive with StreamName and StreamARN: set Streams alone, or one stream by StreamName or StreamARN")
	}
	seen := make(map[string]bool, len(o.Streams))
	for i, s := range o.Streams {
		if !streamNamePattern.MatchString(s) && !streamARNPattern.MatchString(s) {
			return invalid("Streams", "entry %d, %q, is neither a valid stream name (1-128 of a-z A-Z 0-9 _ . -) nor a Kinesis stream ARN", i, s)
		}
		if seen[s] {
			return invalid("Streams", "%q is listed twice", s)
		}
		seen[s] = true
	}
	return nil
}

// multiStream reports whether the consumer reads several streams (Streams),
// with the Java KCL's multi-stream lease table layout.
func (o *Options) multiStream() bool { return len(o.Streams) > 0 }

// streamLabel is how logs and errors name the stream (in single-stream
// mode), or the streams.
func (o *Options) streamLabel() string {
	switch {
	case o.multiStream():
		return strings.Join(o.Streams, ",")
	case o.StreamName != "":
		return o.StreamName
	}
	return o.StreamARN
}
