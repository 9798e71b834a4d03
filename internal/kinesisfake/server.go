// Package kinesisfake is an in-process, deterministic Amazon Kinesis Data
// Streams for kcl's simulations and unit tests. Users of kcl never import it.
//
// A *Server has the methods of kcl's KinesisAPI with the aws-sdk-go-v2
// signatures, answering as Kinesis does and failing with the SDK's own
// exception types (types.ResourceNotFoundException,
// types.ExpiredIteratorException, ...), so that errors.As checks written
// for the real service work. Enhanced fan-out is modelled too (fanout.go):
// stream consumers, and subscriptions whose event streams a caller reads
// from SubscribeToShardOutput.GetStream as from the SDK's.
//
// Test code drives the stream through admin methods that no client calls:
// CreateStream, PutRecord, SplitShard, MergeShards, UpdateShardCount, Trim,
// RemoveShard. Time comes only from Options.Now (see Clock), so a test moves
// retention, iterator expiry and arrival times forward without sleeping.
// Faults are injected per call by a FaultFunc (see RandomFaults), calls are
// counted per operation (Calls), and Records is a ledger of every record ever
// put, with how often it was read and whether retention trimmed it.
//
// Everything is safe for concurrent use. The server starts no goroutine
// but one per live subscription, which ends with it: retention is applied
// lazily, at each call that touches a stream, or by Trim.
package kinesisfake

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// Region and Account are those of every stream's ARN.
const (
	Region  = "us-east-1"
	Account = "123456789012"
)

// Defaults of Options, as AWS has them.
const (
	DefaultRetention    = 24 * time.Hour
	DefaultIteratorTTL  = 5 * time.Minute
	DefaultNextTokenTTL = 5 * time.Minute
)

// Options configure a Server. The zero value of each field means its default.
type Options struct {
	// Now is the server's clock: arrival times, retention, iterator and
	// token expiry all use it. Default time.Now; see Clock for a test clock.
	Now func() time.Time
	// Retention is how long records are kept after they arrive (default
	// 24h). SetRetention changes it later.
	Retention time.Duration
	// IteratorTTL is how long a shard iterator stays valid (default 5m).
	IteratorTTL time.Duration
	// NextTokenTTL is how long a ListShards NextToken stays valid (default 5m).
	NextTokenTTL time.Duration
	// PageSize, when positive, caps the shards of one ListShards page below
	// MaxResults, so that a test can force several pages.
	PageSize int
	// Fault, when set, may fail or delay each KinesisAPI call. SetFault
	// changes it later.
	Fault FaultFunc
	// SubscriptionTTL is how long a subscription lasts before the server
	// ends it (default 5m, as AWS).
	SubscriptionTTL time.Duration
	// FanOutHeartbeat is how long a subscription may go without an event:
	// an empty one is sent then (default 5s, as AWS).
	FanOutHeartbeat time.Duration
	// FanOutEventRecords caps the records of one event (default 10000).
	FanOutEventRecords int
	// ConsumerCreating is how long a registered consumer stays CREATING
	// before it is ACTIVE (default 0: ACTIVE at once).
	ConsumerCreating time.Duration
}

// Server is a fake Kinesis holding any number of streams.
type Server struct {
	now          func() time.Time
	iteratorTTL  time.Duration
	nextTokenTTL time.Duration
	pageSize     int
	// Fan-out (fanout.go).
	subscriptionTTL    time.Duration
	fanOutHeartbeat    time.Duration
	fanOutEventRecords int
	consumerCreating   time.Duration

	mu        sync.Mutex
	retention time.Duration
	fault     FaultFunc
	streams   map[string]*stream
	calls     map[string]int64
	// deleted are the earlier incarnations of each stream name, oldest
	// first: their records stay in the ledger (Records).
	deleted map[string][]*stream
	// consumers are the registered stream consumers, by ARN.
	consumers map[string]*streamConsumer
	// changed is closed, and replaced, whenever a stream changes (a put, a
	// reshard, a removal): subscriptions wait on it.
	changed chan struct{}
}

// New returns a server with no stream.
func New(opts Options) *Server {
	s := &Server{
		now:          opts.Now,
		iteratorTTL:  opts.IteratorTTL,
		nextTokenTTL: opts.NextTokenTTL,
		pageSize:     opts.PageSize,
		retention:    opts.Retention,
		fault:        opts.Fault,
		streams:      make(map[string]*stream),
		calls:        make(map[string]int64),
		deleted:      make(map[string][]*stream),
		consumers:    make(map[string]*streamConsumer),
		changed:      make(chan struct{}),

		subscriptionTTL:    opts.SubscriptionTTL,
		fanOutHeartbeat:    opts.FanOutHeartbeat,
		fanOutEventRecords: opts.FanOutEventRecords,
		consumerCreating:   opts.ConsumerCreating,
	}
	if s.subscriptionTTL <= 0 {
		s.subscriptionTTL = DefaultSubscriptionTTL
	}
	if s.fanOutHeartbeat <= 0 {
		s.fanOutHeartbeat = DefaultFanOutHeartbeat
	}
	if s.fanOutEventRecords <= 0 {
		s.fanOutEventRecords = defaultLimit
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.iteratorTTL <= 0 {
		s.iteratorTTL = DefaultIteratorTTL
	}
	if s.nextTokenTTL <= 0 {
		s.nextTokenTTL = DefaultNextTokenTTL
	}
	if s.retention <= 0 {
		s.retention = DefaultRetention
	}
	return s
}

// SetFault replaces the fault hook; nil injects no fault. Calls already past
// the hook are not affected.
func (s *Server) SetFault(f FaultFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = f
}

// SetRetention sets the retention period of every stream; it takes effect at
// the next call that touches a stream.
func (s *Server) SetRetention(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.retention = d
}

// Calls returns how many times the KinesisAPI operation op (a method name
// such as "GetRecords") has been called, failed calls included.
func (s *Server) Calls(op string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op]
}

// CallCounts returns the number of calls of every operation called so far.
func (s *Server) CallCounts() map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int64, len(s.calls))
	for op, n := range s.calls {
		out[op] = n
	}
	return out
}

var streamNameRE = regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,128}$`)

// StreamARN returns the ARN a stream named name has (or would have).
func StreamARN(name string) string {
	return "arn:aws:kinesis:" + Region + ":" + Account + ":stream/" + name
}

// CreateStream creates an ACTIVE stream of shards shards splitting the hash
// key range evenly, and returns its ARN. It panics when the name is not a
// valid stream name or already taken, or shards < 1: test set-up mistakes.
func (s *Server) CreateStream(name string, shards int) (arn string) {
	if !streamNameRE.MatchString(name) {
		panic(fmt.Sprintf("kinesisfake: invalid stream name %q", name))
	}
	if shards < 1 {
		panic(fmt.Sprintf("kinesisfake: stream %q: %d shards", name, shards))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.streams[name] != nil {
		panic(fmt.Sprintf("kinesisfake: stream %q already exists", name))
	}
	now := s.now()
	st := &stream{name: name, arn: StreamARN(name), created: now, byID: make(map[string]*shard)}
	if old := s.deleted[name]; len(old) > 0 {
		// Sequence numbers grow with time on AWS: a new incarnation's are
		// above every one the name had.
		st.seq = old[len(old)-1].seq
	}
	starts := evenStarts(shards)
	for i := range starts {
		st.newShard(starts[i], rangeLast(starts, i), "", "", now)
	}
	s.streams[name] = st
	return st.arn
}

// DeleteStream deletes a stream at once (AWS keeps it DELETING for a
// while first). Its records stay in the ledger (Records), marked trimmed:
// nobody can read them any more. A stream created again under the name is
// a new incarnation: a new creation time, shard IDs from
// shardId-000000000000 again, sequence numbers above every one the name
// had, and an iterator of the old incarnation fails with
// ResourceNotFoundException (AWS's answer to it is not documented).
func (s *Server) DeleteStream(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	st, err := s.lookup(name, "", now)
	if err != nil {
		return err
	}
	for _, sh := range st.shards {
		for _, r := range sh.records {
			r.trimmedAt = now
		}
	}
	s.dropConsumers(st, nil)
	delete(s.streams, name)
	s.deleted[name] = append(s.deleted[name], st)
	return nil
}

// PutRecord adds a record to the open shard whose hash key range holds the
// MD5 of partitionKey, read as a 128-bit big-endian integer (as AWS routes),
// and returns the shard and sequence number it got. The arrival time is the
// server's clock.
func (s *Server) PutRecord(stream, partitionKey string, data []byte) (shardID, seq string, err error) {
	return s.put(stream, partitionKey, "", data)
}

// PutRecordHashKey is PutRecord routed by explicitHashKey (a decimal in
// 0..2^128-1) instead of the partition key's hash.
func (s *Server) PutRecordHashKey(stream, partitionKey, explicitHashKey string, data []byte) (shardID, seq string, err error) {
	if explicitHashKey == "" {
		return "", "", invalidArgument("ExplicitHashKey is empty")
	}
	return s.put(stream, partitionKey, explicitHashKey, data)
}

func (s *Server) put(name, partitionKey, explicitHashKey string, data []byte) (shardID, seq string, err error) {
	if n := len(partitionKey); n < 1 || n > 256 {
		return "", "", invalidArgument("partition key must be 1 to 256 characters, not %d", n)
	}
	key := hashOf(partitionKey)
	if explicitHashKey != "" {
		if key, err = parseHashKey(explicitHashKey); err != nil {
			return "", "", err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	st, err := s.lookup(name, "", now)
	if err != nil {
		return "", "", err
	}
	sh := st.route(key)
	r := &record{
		stream:  st.name,
		shardID: sh.id,
		seq:     st.nextSeq(),
		key:     partitionKey,
		data:    append([]byte(nil), data...),
		arrival: now,
	}
	sh.records = append(sh.records, r)
	st.ledger = append(st.ledger, r)
	s.notifyLocked()
	return sh.id, formatSeq(r.seq), nil
}

// SplitShard closes the open shard shardID and creates two children: one
// from its starting hash key to newStartingHashKey-1, one from
// newStartingHashKey to its ending hash key, each with shardID as parent.
func (s *Server) SplitShard(stream, shardID, newStartingHashKey string) error {
	at, err := parseHashKey(newStartingHashKey)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	st, err := s.lookup(stream, "", now)
	if err != nil {
		return err
	}
	sh, err := st.openShard(shardID)
	if err != nil {
		return err
	}
	if at.Cmp(sh.first) <= 0 || at.Cmp(sh.last) > 0 {
		return invalidArgument("NewStartingHashKey %s is not within (%s, %s] of shard %s", newStartingHashKey, sh.first, sh.last, shardID)
	}
	st.split(sh, at, now)
	s.notifyLocked()
	return nil
}

// MergeShards closes the open shards shardID and adjacentShardID, whose hash
// key ranges must be adjacent, and creates one child covering both, with
// shardID as parent and adjacentShardID as adjacent parent (as AWS sets them).
func (s *Server) MergeShards(stream, shardID, adjacentShardID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	st, err := s.lookup(stream, "", now)
	if err != nil {
		return err
	}
	a, err := st.openShard(shardID)
	if err != nil {
		return err
	}
	b, err := st.openShard(adjacentShardID)
	if err != nil {
		return err
	}
	if !adjacent(a, b) {
		return invalidArgument("shards %s and %s are not adjacent", shardID, adjacentShardID)
	}
	st.merge(a, b, now)
	s.notifyLocked()
	return nil
}

// UpdateShardCount reshapes the stream into target open shards splitting the
// hash key range evenly, as AWS's UNIFORM_SCALING does: it splits open
// shards at each new boundary, then merges the pieces inside each new range,
// pairwise, until one is left. The intermediate shards it makes are closed at
// once, empty; every shard keeps at most a parent and an adjacent parent.
// Open shards that already have a target range are kept. Unlike AWS, any
// target from 1 up is allowed in one call.
func (s *Server) UpdateShardCount(stream string, target int) error {
	if target < 1 {
		return invalidArgument("TargetShardCount %d is below 1", target)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	st, err := s.lookup(stream, "", now)
	if err != nil {
		return err
	}
	st.scale(target, now)
	s.notifyLocked()
	return nil
}

// RemoveShard removes the closed shard shardID from the stream at once, as
// retention eventually does: ListShards stops listing it, GetShardIterator
// and GetRecords answer ResourceNotFoundException for it, and the records it
// still held count as trimmed now.
func (s *Server) RemoveShard(stream, shardID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	st, err := s.lookup(stream, "", now)
	if err != nil {
		return err
	}
	sh := st.byID[shardID]
	if sh == nil {
		return shardNotFound(st, shardID)
	}
	if sh.open() {
		return invalidArgument("shard %s is open; only a closed shard can be removed", shardID)
	}
	st.remove(sh, now)
	s.notifyLocked()
	return nil
}

// Trim applies retention to every stream now: records that arrived more than
// the retention period ago are dropped, and closed shards left empty whose
// closing is older than the retention period are removed. Calls do the same
// lazily for the stream they touch; Trim is for tests that inspect Records.
func (s *Server) Trim() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for _, st := range s.streams {
		st.trim(now, s.retention)
	}
	s.notifyLocked()
}

// Shards returns the stream's shards, open and closed but not removed, in
// shard ID order, as ListShards gives them.
func (s *Server) Shards(stream string) ([]types.Shard, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.lookup(stream, "", s.now())
	if err != nil {
		return nil, err
	}
	out := make([]types.Shard, len(st.shards))
	for i, sh := range st.shards {
		out[i] = sh.describe()
	}
	return out, nil
}

// lookup finds a stream by name or ARN (one of them set; both must agree) and
// applies retention to it. s.mu is held.
func (s *Server) lookup(name, arn string, now time.Time) (*stream, error) {
	if name == "" && arn == "" {
		return nil, invalidArgument("either StreamName or StreamARN must be provided")
	}
	if name == "" {
		name = nameOfARN(arn)
	}
	st := s.streams[name]
	if st == nil || (arn != "" && arn != st.arn) {
		label := name
		if arn != "" {
			label = arn
		}
		return nil, &types.ResourceNotFoundException{Message: aws.String(fmt.Sprintf("Stream %s under account %s not found.", label, Account))}
	}
	st.trim(now, s.retention)
	return st, nil
}

// streamLabel names the stream of a request for the fault hook.
func streamLabel(name, arn *string) string {
	if n := aws.ToString(name); n != "" {
		return n
	}
	return nameOfARN(aws.ToString(arn))
}

func nameOfARN(arn string) string {
	if i := strings.LastIndex(arn, ":stream/"); i >= 0 {
		return arn[i+len(":stream/"):]
	}
	return arn
}

// call runs one KinesisAPI call: it counts it, fails fast on a done ctx,
// consults the fault hook, waits out a Delay (returning ctx's error if ctx
// ends first), returns a fault's Err without applying the call, or applies
// the call under s.mu and then returns an AfterApply fault's Err instead of
// its result. apply's lost says the reply will be lost that way.
func call[T any](ctx context.Context, s *Server, op, stream, shardID string, apply func(now time.Time, lost bool) (*T, error)) (*T, error) {
	s.mu.Lock()
	s.calls[op]++
	hook := s.fault
	s.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var f Fault
	if hook != nil {
		f = hook(op, stream, shardID)
	}
	if f.Delay > 0 {
		t := time.NewTimer(f.Delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	}
	if f.Err != nil && !f.AfterApply {
		return nil, f.Err
	}
	lost := f.Err != nil
	s.mu.Lock()
	out, err := apply(s.now(), lost)
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if lost {
		return nil, f.Err
	}
	return out, nil
}

func invalidArgument(format string, args ...any) error {
	return &types.InvalidArgumentException{Message: aws.String(fmt.Sprintf(format, args...))}
}

func shardNotFound(st *stream, shardID string) error {
	return &types.ResourceNotFoundException{Message: aws.String(fmt.Sprintf("Shard %s in stream %s under account %s does not exist", shardID, st.name, Account))}
}
