package kcl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go/middleware"
)

// shardReader reads one shard for one held lease, and is the goroutine that
// does so.
//
//   - The lease loop starts it when it takes the lease (startReader). It
//     ends when the shard ends, the lease is lost or handed off, or shutdown
//     stops reading.
//   - It delivers the shard's records (deliver, the one place a record is
//     handed to the user), ends the shard, and writes the hand-off.
//   - Its own fields are only touched by its goroutine; h's are shared as
//     heldLease says; env is what it reaches of the rest of the consumer.
type shardReader struct {
	env *readerEnv   // immutable
	h   *heldLease   // immutable
	log *slog.Logger // immutable: the stream's log with the shard

	// Only touched by the reader.
	opened          bool      // an open of the shard succeeded once (noteOpen)
	latestAt        time.Time // Kinesis's clock, less a second, when this reader first opened the shard at LATEST (noteOpen); zero: not known
	warnedMalformed bool      // a malformed aggregate was logged at Warn once
	warnedMisplaced bool      // a user record on the wrong shard was logged at Warn once
	hashes          hashRange // the shard's hash-key range, once listed (shardRange)
	rangeListed     bool      // learnRange listed the stream once
}

// shardRange returns the hash-key range of the reader's shard as the
// stream's listing gave it, or an unknown range (holding every key) until
// a listing has the shard: a child learnt from its parent's end.
func (r *shardReader) shardRange() hashRange {
	if !r.hashes.known {
		if sh, found, _ := r.h.stream.listedShard(r.h.shard); found {
			r.hashes = newHashRange(sh.first, sh.last)
		}
	}
	return r.hashes
}

// learnRangeWait bounds learnRange's listing, retries included: the page
// waits for it.
const learnRangeWait = 10 * time.Second

// learnRange lists the stream, once, when recs hold a KPL aggregate and
// the reader's shard is missing from this worker's listing (a child made
// after its last sync), so that a misplaced aggregate can be told
// (pageRecords.misplaced). A listing that fails, or still fails after
// learnRangeWait of retries (ListShards throttled), or lacks the shard
// leaves the range unknown: aggregates are then delivered, never dropped.
func (r *shardReader) learnRange(ctx context.Context, recs []types.Record) {
	if r.rangeListed || r.shardRange().known || !slices.ContainsFunc(recs, func(x types.Record) bool { return isAggregated(x.Data) }) {
		return
	}
	r.rangeListed = true
	lctx, cancel := context.WithTimeout(ctx, learnRangeWait)
	defer cancel()
	shards, err := r.env.listShards(lctx, r.h.stream)
	if err != nil {
		r.log.Debug("kcl: shard listing for the shard's hash-key range failed; aggregates delivered unchecked", "error", err)
		return
	}
	for _, sh := range shards {
		if sh.id == r.h.shard {
			r.hashes = newHashRange(sh.first, sh.last)
		}
	}
}

// readerEnv is what a shardReader reaches besides its own lease: the
// consumer builds it (Consumer.readerEnv) when it starts a reader. It is
// immutable.
type readerEnv struct {
	out      chan<- Record       // Consume's, or nil
	chunks   chan<- *recordChunk // Process's, or nil
	gate     *pauseGate
	counters *consumerCounters
	log      *slog.Logger // the consumer's
	opts     readerOptions

	// Callbacks into the rest of the consumer. Each runs on the calling
	// reader's goroutine.
	//
	// listShards lists the shards of s (ListShards, retried).
	listShards func(ctx context.Context, s *kstream) ([]shardInfo, error)
	// syncChildren creates the leases of the children of h's shard, which
	// ended or left the stream (Consumer.syncChildren).
	syncChildren func(ctx context.Context, h *heldLease, children []shardInfo) error
	// endShard writes SHARD_END to h's lease, once every record delivered
	// from it is acked, and releases it (Consumer.endShard).
	endShard func(ctx context.Context, h *heldLease, children int) error
	// waitForStream waits while s is missing and reports whether it was
	// created again under its name (Consumer.waitForStream).
	waitForStream func(ctx context.Context, s *kstream) (bool, error)
	// renewRefused replaces h's lease when Kinesis refused its checkpoint
	// because it is an earlier stream's, dropping h, and reports whether it
	// did (Consumer.renewRefused).
	renewRefused func(ctx context.Context, h *heldLease) (bool, error)
	// renewConsumer registers s's fan-out consumer again when a
	// subscription under used was refused because it was deregistered,
	// and reports whether it did (Consumer.renewConsumer).
	renewConsumer func(ctx context.Context, s *kstream, used string) (bool, error)
	// handOff checkpoints the acked prefix of h and makes worker to the
	// owner, in one write (Consumer.writeCheckpoint).
	handOff func(ctx context.Context, h *heldLease, to string) (checkpoint, int, error)
}

// readerOptions are the Options a reader uses.
type readerOptions struct {
	maxRecords       int
	maxUnacked       int  // MaxUnackedPerShard
	keepMisplaced    bool // KeepMisplacedAggregates
	pollInterval     time.Duration
	shutdownTimeout  time.Duration
	initialPosition  Position
	stallAfter       time.Duration // a shard paused for room this long is logged as stalled (LeaseDuration)
	fanOutStall      time.Duration // a subscription with no event for this long is renewed
	resubscribeAfter time.Duration // a subscription is renewed after this long
}

func newShardReader(env *readerEnv, h *heldLease) *shardReader {
	return &shardReader{env: env, h: h, log: h.stream.log.With("shard", h.shardID)}
}

// read reads the shard from the lease's checkpoint and delivers its records
// in order until ctx ends (shutdown, hand-off or lease lost) or the shard
// ends: by polling GetRecords, or with enhanced fan-out (fanout.go). It
// returns only fatal errors; a lost lease or a cancelled ctx returns nil.
func (r *shardReader) read(ctx context.Context) error {
	env, h, log := r.env, r.h, r.log
	if h.stream.consumer() != "" {
		return r.subscribe(ctx)
	}
	start, _ := h.window.state() // the checkpoint at take: nothing is delivered yet
	iterator, err := r.shardIterator(ctx, start, "")
	if err != nil {
		return r.failed(ctx, err)
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
		room := r.waitForRoom(ctx)
		if room == 0 {
			return nil
		}
		limit := min(env.opts.maxRecords, room)
		out, err := retry(ctx, running, &env.counters.retryCounters, log, "GetRecords", isExpiredIterator, func() (*kinesis.GetRecordsOutput, error) {
			return h.stream.kinesis.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iterator, Limit: aws.Int32(int32(limit)), StreamARN: h.stream.arnIfGiven()}, leanGetRecords)
		})
		if isExpiredIterator(err) {
			env.counters.iteratorRefreshes.Add(1)
			log.Info("kcl: shard iterator expired; reopening after the last record delivered")
			if last == "" {
				iterator, err = r.shardIterator(ctx, start, "")
			} else {
				iterator, err = r.shardIterator(ctx, checkpoint{}, last)
			}
			if err != nil {
				return r.failed(ctx, err)
			}
			continue
		}
		if err != nil {
			return r.failed(ctx, err)
		}
		h.counters.millisBehind.Store(aws.ToInt64(out.MillisBehindLatest))
		r.learnRange(ctx, out.Records)
		if !r.deliver(ctx, newPageRecords(r, out.Records, &skip)) {
			return nil
		}
		if n := len(out.Records); n > 0 {
			last = aws.ToString(out.Records[n-1].SequenceNumber)
		}
		if out.NextShardIterator == nil {
			return r.endShard(ctx, out.ChildShards)
		}
		iterator = out.NextShardIterator
		if len(out.Records) == 0 || aws.ToInt64(out.MillisBehindLatest) == 0 {
			if !sleep(ctx, env.opts.pollInterval) {
				return nil
			}
		}
	}
}

// waitForRoom blocks while MaxUnackedPerShard delivered records of the shard
// are unacked. It returns how many more records may be delivered, 0 when
// ctx ended or the lease was lost.
//
//   - A paused shard resumes once a quarter of the limit (at least one) is
//     acked: a receiver kept at the limit lets records through in batches,
//     not one per ack.
//   - A pause is flow control, not logged: with a small limit it comes once
//     a record. One that lasts LeaseDuration is a stall: a Warn, once, and
//     an Info with its length when it ends.
func (r *shardReader) waitForRoom(ctx context.Context) int {
	h, log, opts := r.h, r.log, r.env.opts
	_, unacked := h.window.state()
	if unacked >= opts.maxUnacked {
		began := time.Now()
		resume := opts.maxUnacked - max(1, opts.maxUnacked/4) + 1 // waitBelow: fewer than this unacked
		wctx, cancel := context.WithTimeout(ctx, opts.stallAfter)
		ok := h.window.waitBelow(wctx, resume)
		cancel()
		stalled := !ok && ctx.Err() == nil && !windowClosed(h.window)
		if stalled {
			log.Warn("kcl: shard paused: too many delivered records are not acked", "max_unacked", opts.maxUnacked, "paused_for", time.Since(began))
			ok = h.window.waitBelow(ctx, resume)
		}
		if !ok {
			return 0
		}
		if stalled {
			log.Info("kcl: shard resumed", "paused_for", time.Since(began))
		}
		_, unacked = h.window.state()
	}
	return max(1, opts.maxUnacked-unacked)
}

// deliver hands the user records of a page to the user, in order: the one
// place records leave kcl (delivery.go). It registers them in the shard's
// ack window before handing them over, as many at a time as
// MaxUnackedPerShard allows, so that no ack can come first. It reports
// false when ctx ended or the lease was lost.
func (r *shardReader) deliver(ctx context.Context, page *pageRecords) bool {
	h := r.h
	var buf [deliverChunk]Record
	done, out, chunks, gate := ctx.Done(), r.env.out, r.env.chunks, r.env.gate // read once: the per-record path
	for !page.done() {
		room := r.waitForRoom(ctx)
		if room == 0 {
			return false
		}
		var ch *recordChunk // Process's: filled in place, sent whole
		into := buf[:]
		if chunks != nil {
			ch = getChunk()
			into = ch.buf[:]
		}
		chunk := into[:page.fill(into[:min(room, len(into))])]
		if ch != nil {
			ch.recs = chunk // what putChunk clears, should it come back
		}
		if len(chunk) == 0 { // every record left was skipped
			if ch != nil {
				putChunk(ch)
			}
			continue
		}
		if !h.window.push(chunk) {
			if ch != nil {
				putChunk(ch)
			}
			return false
		}
		gate.check() // shuts the gate if the delivery deadline passed (pause.go)
		var sent int
		var bytes int64
		if ch != nil {
			sent, bytes = sendChunk(ctx, done, chunks, gate, ch) // once sent, ch is the dispatcher's
		} else {
			sent, bytes = r.sendEach(ctx, done, out, gate, chunk)
		}
		h.counters.delivered.Add(int64(sent))
		h.counters.deliveredBytes.Add(bytes)
		if sent < len(chunk) {
			h.window.truncate(chunk[sent].index) // the rest never reached the user
			if ch != nil {
				putChunk(ch)
			}
			return false
		}
	}
	return true
}

// sendEach sends the records of chunk one at a time (send), and returns
// how many it sent and their bytes.
func (r *shardReader) sendEach(ctx context.Context, done <-chan struct{}, out chan<- Record, gate *pauseGate, chunk []Record) (sent int, bytes int64) {
	for i := range chunk {
		if !r.send(ctx, done, out, gate, &chunk[i]) {
			return i, bytes
		}
		bytes += int64(len(chunk[i].Data))
	}
	return len(chunk), bytes
}

// send puts rec on the channel unless ctx ends first (done is ctx.Done()),
// waiting while the worker is paused (pause.go). The common case costs an
// atomic load and two non-blocking channel operations; the blocking select
// runs only when the channel is full, and gives up the send if the pause
// gate shuts meanwhile.
func (r *shardReader) send(ctx context.Context, done <-chan struct{}, out chan<- Record, gate *pauseGate, rec *Record) bool {
	if !gate.wait(ctx) {
		return false
	}
	select {
	case <-done:
		return false
	default:
	}
	select {
	case out <- *rec:
		return true
	default:
	}
	for {
		select {
		case out <- *rec:
			return true
		case <-done:
			return false
		case <-gate.closing():
			if !gate.wait(ctx) {
				return false
			}
		}
	}
}

// startingPosition turns a checkpoint, or the sequence number after which to
// go on, into where the shard is opened.
//
// A lease still at LATEST or AT_TIMESTAMP has no record to resume after, so
// the first worker to take it stores a start time in it (lease.startAt): a
// later owner opens AT_TIMESTAMP of it and re-reads what an earlier owner
// may have delivered without acking, instead of skipping it. Only the very
// first open of a LATEST lease, by the worker that stored the time, opens at
// LATEST.
func (r *shardReader) startingPosition(from checkpoint, after string) types.StartingPosition {
	h := r.h
	first := !r.opened
	switch {
	case after != "":
		return types.StartingPosition{Type: types.ShardIteratorTypeAfterSequenceNumber, SequenceNumber: aws.String(after)}
	case from.seq == checkpointTrimHorizon:
		return types.StartingPosition{Type: types.ShardIteratorTypeTrimHorizon}
	case from.seq == checkpointLatest && (h.startAt.IsZero() || first && h.storedStart):
		return types.StartingPosition{Type: types.ShardIteratorTypeLatest}
	case from.seq == checkpointLatest && !r.latestAt.IsZero():
		// Opened again before its first record (an expired iterator, a
		// subscription that failed before its first event): where this
		// reader's first open stood, not the lease's start, a minute
		// before the take, which would deliver what came before it.
		return types.StartingPosition{Type: types.ShardIteratorTypeAtTimestamp, Timestamp: aws.Time(r.latestAt)}
	case from.seq == checkpointLatest || from.seq == checkpointAtTimestamp && !h.startAt.IsZero():
		return types.StartingPosition{Type: types.ShardIteratorTypeAtTimestamp, Timestamp: aws.Time(h.startAt)}
	case from.seq == checkpointAtTimestamp:
		initial := r.env.opts.initialPosition
		if initial.kind != positionAtTimestamp {
			// Neither the lease (a table the Java KCL wrote) nor the options
			// say when: reading from the oldest record loses nothing.
			r.log.Warn("kcl: lease checkpoint is AT_TIMESTAMP but neither the lease nor InitialPosition has a timestamp; reading from TRIM_HORIZON")
			return types.StartingPosition{Type: types.ShardIteratorTypeTrimHorizon}
		}
		return types.StartingPosition{Type: types.ShardIteratorTypeAtTimestamp, Timestamp: aws.Time(initial.timestamp)}
	default:
		return types.StartingPosition{Type: types.ShardIteratorTypeAtSequenceNumber, SequenceNumber: aws.String(from.seq)}
	}
}

// noteOpen notes that an open at pos succeeded: later opens are not the
// first (startingPosition), even where this one failed before its first
// record. When pos was LATEST it also notes where that stood on Kinesis's
// own clock: the response's Date, less a second (Date is in whole seconds,
// and the position was taken before the response), so that opening there
// again skips nothing written after it. A response without a Date (an
// in-process Kinesis) notes no time.
func (r *shardReader) noteOpen(pos types.StartingPosition, md middleware.Metadata) {
	r.opened = true
	if pos.Type != types.ShardIteratorTypeLatest {
		return
	}
	if t, ok := awsmiddleware.GetServerTime(md); ok {
		r.latestAt = t.Add(-time.Second)
	}
}

// shardIterator opens the shard at a checkpoint, or just after the
// sequence number after when it is set. A start time ahead of Kinesis's
// clock (AtTimestamp of a time to come, a start stored by a worker whose
// clock runs fast) is refused by Kinesis: it is retried with backoff until
// Kinesis's clock reaches it, so that nothing at or after it is missed.
func (r *shardReader) shardIterator(ctx context.Context, from checkpoint, after string) (*string, error) {
	env, h := r.env, r.h
	pos := r.startingPosition(from, after)
	in := &kinesis.GetShardIteratorInput{ShardId: aws.String(h.shard), ShardIteratorType: pos.Type, StartingSequenceNumber: pos.SequenceNumber, Timestamp: pos.Timestamp}
	h.stream.setStream(&in.StreamName, &in.StreamARN)
	out, err := retry(ctx, running, &env.counters.retryCounters, r.log, "GetShardIterator", nil, func() (*kinesis.GetShardIteratorOutput, error) {
		out, err := h.stream.kinesis.GetShardIterator(ctx, in)
		if pos.Type == types.ShardIteratorTypeAtTimestamp && startAhead(err) {
			return nil, errStartAhead{err}
		}
		return out, err
	})
	if err != nil {
		return nil, err
	}
	r.noteOpen(pos, out.ResultMetadata)
	return out.ShardIterator, nil
}

// endShard finishes a shard that GetRecords reported closed, or that left
// the stream: it has the consumer create the children's leases (those
// children names, and any the listing shows) at once, then, once every
// record delivered from the shard is acked, checkpoint SHARD_END and
// release the lease in one write, which lets the children be taken.
func (r *shardReader) endShard(ctx context.Context, children []types.ChildShard) error {
	extra := make([]shardInfo, 0, len(children))
	for _, ch := range children {
		extra = append(extra, shardInfo{id: aws.ToString(ch.ShardId), parents: ch.ParentShards})
	}
	if err := r.env.syncChildren(ctx, r.h, extra); err != nil { // on this goroutine
		return r.readError(ctx, err)
	}
	if !r.h.window.waitBelow(ctx, 1) {
		return nil // shutdown or lease lost: the final checkpoint is the acked prefix
	}
	if err := r.env.endShard(ctx, r.h, len(extra)); err != nil { // on this goroutine; it then signals the lease loop
		return r.readError(ctx, err)
	}
	return nil
}

// failed handles an error that a read of the shard (GetShardIterator,
// GetRecords, SubscribeToShard) gave up on: the reader's result.
//
//   - ResourceNotFound, or a sequence number refused (InvalidArgument): the
//     stream may have been deleted, and perhaps created again under its
//     name. The reader waits while it is missing (readerEnv.waitForStream);
//     if it was created again, the old stream's lease is dropped and the
//     reader ends.
//   - With the stream as it was, a lease of an earlier stream of this name
//     that kcl did not stamp is replaced (readerEnv.renewRefused).
//   - Then ResourceNotFound is the shard leaving the stream (shardGone).
//   - A listing these steps make that the stream's deletion refuses sends
//     the reader back to waiting for the stream.
//   - Anything else stops the consumer (readError).
func (r *shardReader) failed(ctx context.Context, err error) error {
	if !isResourceNotFound(err) && !isInvalidArgument(err) {
		return r.readError(ctx, err)
	}
	b := newBackOff()
	for {
		recreated, werr := r.env.waitForStream(ctx, r.h.stream) // on this goroutine; a switch drops this reader's lease
		switch {
		case recreated:
			return nil
		case werr != nil:
			return r.readError(ctx, werr)
		}
		// The stream is as this worker knows it: the lease may be an earlier
		// stream's, whose checkpoint Kinesis refuses (kinesalite with
		// InvalidArgument, kinesis-local with ResourceNotFound).
		renewed, rerr := r.env.renewRefused(ctx, r.h)
		missing := isResourceNotFound(rerr)
		switch {
		case renewed:
			return nil
		case rerr != nil && !missing:
			return r.readError(ctx, rerr)
		case !missing && !isResourceNotFound(err):
			return r.readError(ctx, err)
		case !missing:
			if gone, gerr := r.shardGone(ctx, err); !gone {
				return gerr
			}
		}
		// The stream's listing was refused: it was deleted meanwhile. Wait
		// for it, as for the read it refused.
		if !sleep(ctx, b.NextBackOff()) {
			return nil
		}
	}
}

// shardGone handles a ResourceNotFound answer for the shard, whose stream
// is there as it was. When the stream no longer lists the shard, the shard
// left it (retention): it is finished, and is ended like a closed shard so
// that its children go on. A listing that still shows the shard is asked
// again a few times (the shard may be leaving right now) before the error
// stands. missing says the listing itself was refused: the stream left.
func (r *shardReader) shardGone(ctx context.Context, cause error) (missing bool, err error) {
	h := r.h
	for attempt := 0; ; attempt++ {
		shards, err := r.env.listShards(ctx, h.stream)
		if isResourceNotFound(err) {
			return true, nil
		}
		if err != nil {
			return false, r.readError(ctx, err)
		}
		if !slices.ContainsFunc(shards, func(s shardInfo) bool { return s.id == h.shard }) {
			break
		}
		if attempt == 2 || !sleep(ctx, time.Second) {
			return false, r.readError(ctx, cause)
		}
	}
	r.log.Warn("kcl: shard no longer in the stream (past retention); treated as ended")
	return false, r.endShard(ctx, nil)
}

// readError turns an error that stopped a reader into its result: nil when
// the reader was stopped on purpose, otherwise the error naming stream and
// shard, which ends the whole consumer.
func (r *shardReader) readError(ctx context.Context, err error) error {
	h := r.h
	if ctx.Err() != nil || isLeaseLost(err) {
		return nil
	}
	return fmt.Errorf("stream %q: shard %q: %w", h.stream.label, h.shard, err)
}

// finishHandoff completes a hand-off after the reader stopped fetching
// (leaseKeeper.requestHandoff): it waits up to ShutdownTimeout for the
// delivered records to be acked, then checkpoints the acked prefix and
// makes the claimant the owner, in one write. The new owner reads on from
// exactly there.
func (r *shardReader) finishHandoff(ctx context.Context) {
	h := r.h
	h.mu.Lock()
	to := h.handoff
	h.mu.Unlock()
	if to == "" || ctx.Err() != nil {
		return
	}
	wait, cancel := context.WithTimeout(ctx, r.env.opts.shutdownTimeout)
	h.window.waitBelow(wait, 1)
	cancel()
	if ctx.Err() != nil {
		return // shutdown (its release writes the lease) or the lease lost
	}
	if acked, unacked, err := r.env.handOff(ctx, h, to); err == nil {
		r.env.log.Info("kcl: lease handed off", "shard", h.shardID, "to", to, "checkpoint", acked.seq, "unacked_dropped", unacked)
	}
}

func isExpiredIterator(err error) bool {
	var expired *types.ExpiredIteratorException
	return errors.As(err, &expired)
}

// startAhead reports whether err is Kinesis refusing an AT_TIMESTAMP
// start ahead of its clock.
func startAhead(err error) bool {
	return isInvalidArgument(err) && strings.Contains(strings.ToLower(err.Error()), "timestampinmillis")
}

// errStartAhead is an AT_TIMESTAMP start ahead of Kinesis's clock: a
// transient error (it hides the InvalidArgumentException, which is fatal
// otherwise), retried until Kinesis's clock reaches the start.
type errStartAhead struct{ cause error }

func (e errStartAhead) Error() string {
	return "the start time is ahead of Kinesis's clock (a clock running fast?); waiting: " + e.cause.Error()
}

func isInvalidArgument(err error) bool {
	var invalid *types.InvalidArgumentException
	return errors.As(err, &invalid)
}

func isResourceNotFound(err error) bool {
	var notFound *types.ResourceNotFoundException
	return errors.As(err, &notFound)
}
