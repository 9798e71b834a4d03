package kcl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"golang.org/x/sync/errgroup"
)

// A Consumer reads one Kinesis stream, or several (Options.Streams), as one
// worker of a consumer group. Create it with New and run it once with
// Consume.
type Consumer struct {
	opts  Options
	log   *slog.Logger
	table leaseTable
	used  atomic.Bool

	errMu sync.Mutex
	err   error

	counters consumerCounters

	// The streams read (streams.go): as Options give them until start
	// describes them, before any lease is taken; a stream created again
	// under its name replaces the old one (incarnation.go). Any goroutine
	// may read it.
	streams atomic.Pointer[streamSet]

	// Enhanced fan-out: timings tests shorten.
	fanOutStall      time.Duration
	resubscribeAfter time.Duration
	// cleanupDelay is how long an ended lease stays deletable before it
	// is deleted (cleanup.go): Options.cleanupDelay, which tests shorten.
	cleanupDelay time.Duration

	// Set up by Consume (out) or by Process and ProcessBatch (chunks):
	// the way records leave (delivery.go).
	out      chan Record
	chunks   chan *recordChunk
	finished chan struct{} // with chunks: closed just before it
	readCtx  context.Context
	readers  *errgroup.Group

	// Set by New.
	pause  *pauseGate   // shut while this worker may be taken for dead
	held   *heldSet     // the leases held: the lease loop adds, readers, the lease loop and run remove
	beat   *heartbeat   // the heartbeat item
	keeper *leaseKeeper // the lease loop
}

// New validates opts and builds a Consumer. It makes no network call: a
// missing stream or lease table is reported by Consume, through Err.
// Errors for bad options wrap ErrInvalidOptions and name the field. A
// PollInterval or CheckpointInterval under its minimum is raised to it, with
// a Warn naming the option.
func New(opts Options) (*Consumer, error) {
	given := opts
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	// With several streams, what is about one stream is logged with it
	// (kstream.log), not every line with all of them.
	log := opts.Logger.With("worker", opts.WorkerID)
	if !opts.multiStream() {
		log = opts.Logger.With("stream", opts.streamLabel(), "worker", opts.WorkerID)
	}
	for _, r := range raisedToFloor(given, opts) {
		log.Warn("kcl: option below its minimum, raised to it", "option", r.name, "given", r.given, "used", r.used)
	}
	streams := newStreams(opts, log)
	needKinesis := opts.Kinesis == nil && slices.ContainsFunc(streams, func(s *kstream) bool { return s.kinesis == nil })
	if (needKinesis || opts.AppName != "" && opts.DynamoDB == nil) && opts.AWSConfig == nil {
		cfg, err := config.LoadDefaultConfig(context.Background())
		if err != nil {
			return nil, fmt.Errorf("kcl: loading AWS config: %w", err)
		}
		opts.AWSConfig = &cfg
	}
	kin := opts.Kinesis
	if needKinesis {
		kin = kinesis.NewFromConfig(*opts.AWSConfig)
	}
	for _, s := range streams {
		if s.kinesis == nil {
			s.kinesis = kin
		}
	}
	c := &Consumer{
		opts: opts,
		log:  log,
		held: newHeldSet(log),

		pause: newPauseGate(opts.LeaseDuration, log),

		fanOutStall:      defaultFanOutStall,
		resubscribeAfter: defaultResubscribe,
		cleanupDelay:     opts.cleanupDelay(),
	}
	c.streams.Store(&streamSet{list: streams})
	c.beat = newHeartbeat(c, strconv.FormatUint(rand.Uint64(), 36))
	c.keeper = newLeaseKeeper(c)
	switch {
	case opts.AppName == "":
		c.table = newMemLeases()
	default:
		db := opts.DynamoDB
		if db == nil {
			db = dynamodb.NewFromConfig(*opts.AWSConfig)
		}
		c.table = &dynamoLeases{db: db, table: opts.LeaseTable, leaseDuration: opts.LeaseDuration, settings: opts.LeaseTableSettings}
	}
	return c, nil
}

// Consume starts reading and returns the channel of records. Records of one
// shard arrive in sequence order. Up to Options.BufferSize records wait in
// the channel for the receiver.
//
// Cancelling ctx shuts the consumer down. No record is sent any more, and
// kcl takes back the records still waiting in the channel: they were never
// received, so they are not the receiver's to ack, and the next owner of
// their shard delivers them. A receiver that cancels gets, after the
// record in hand, only records it races the take-back for (at most
// BufferSize); acked or not, each may be delivered again. Records received
// get up to ShutdownTimeout to be acked, the acked prefix of every shard is
// checkpointed, the leases are released so that another worker can take
// them at once, and only then is the channel closed.
// A fatal error (missing stream, access denied, unusable lease table) shuts
// down the same way; Err then says why.
//
// Consume may be called once per Consumer; a later call returns a closed
// channel and logs an error, leaving the first run untouched.
func (c *Consumer) Consume(ctx context.Context) <-chan Record {
	if c.used.Swap(true) {
		c.log.Error("kcl: Consume called twice on one Consumer; the second channel is closed at once")
		closed := make(chan Record)
		close(closed)
		return closed
	}
	return c.consume(ctx)
}

// consume starts the consumer; c.used was set by the caller.
func (c *Consumer) consume(ctx context.Context) <-chan Record {
	c.out = make(chan Record, c.opts.BufferSize)
	go c.run(ctx)
	return c.out
}

// consumeChunks starts the consumer for Process or ProcessBatch, whose
// records come a chunk at a time (delivery.go). finished is closed once
// the shutdown is over, just before the channel closes. c.used was set by
// the caller.
func (c *Consumer) consumeChunks(ctx context.Context) (chunks <-chan *recordChunk, finished <-chan struct{}) {
	c.chunks = make(chan *recordChunk, chunkBuffer(c.opts.BufferSize))
	c.finished = make(chan struct{})
	go c.run(ctx)
	return c.chunks, c.finished
}

// Consume builds a Consumer from opts and consumes it with ctx. Errors, from
// New or those Err would return, are logged to opts.Logger (or
// slog.Default()) and close the channel; use New and Consumer.Err to act on
// them.
func Consume(ctx context.Context, opts Options) <-chan Record {
	c, err := New(opts)
	if err != nil {
		log := opts.Logger
		if log == nil {
			log = slog.Default()
		}
		log.Error("kcl: not consuming", "error", err)
		ch := make(chan Record)
		close(ch)
		return ch
	}
	return c.Consume(ctx)
}

// Err returns why the channel from Consume closed: nil when ctx ended it,
// otherwise an error naming the stream, shard or lease table at fault. It is
// meaningful once the channel is closed.
func (c *Consumer) Err() error {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	return c.err
}

// setErr records why the consumer stops, the first time. Errors inside kcl
// name what failed (stream, shard, lease table) without a prefix; this is
// where they leave the package, so "kcl: " is added here, once.
func (c *Consumer) setErr(err error) {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	if c.err == nil {
		c.err = fmt.Errorf("kcl: %w", err)
	}
}

// run is the consumer's life: start, read until ctx ends or a fatal error,
// then shut down in order. The channel closes when all of it is done.
//
// Contexts, and what ends each:
//   - ctx, the caller's: its end starts the shutdown.
//   - readCtx (c.readCtx once the readers' errgroup wraps it): every reader
//     and everything start does; ends with ctx, or when a reader fails.
//     Shutdown stops reading first.
//   - each reader's own, under readCtx: cancelled when its lease is lost,
//     released or handed off (heldLease.cancel); the reader's fetching has
//     one more under it (heldLease.stopFetch), cancelled first on a hand-off
//     so that the reader can still wait for acks and write the hand-off.
//   - leaseCtx: the lease loop (heartbeats, balancing, flushes). It outlives
//     ctx, so that leases are kept while delivered records are acked, and is
//     cancelled just before the final release.
//   - final: the last checkpoints and releases, bounded by LeaseDuration.
func (c *Consumer) run(ctx context.Context) {
	defer c.closeOut()
	leaseCtx, stopLeases := context.WithCancel(context.WithoutCancel(ctx))
	defer stopLeases()
	readCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	c.readers, c.readCtx = errgroup.WithContext(readCtx)

	if err := c.start(readCtx); err != nil {
		// The first heartbeat may have been written, and the group item by
		// creating leases: take them back.
		final, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opts.LeaseDuration)
		c.beat.remove(final)
		c.leaveGroup(final)
		cancel()
		c.pause.stop()
		if ctx.Err() == nil {
			c.setErr(err)
			c.log.Error("kcl: consumer stopped", "error", c.Err())
		}
		return
	}
	leaseErr := make(chan error, 1)
	go func() { leaseErr <- c.keeper.run(leaseCtx) }()
	notify(c.keeper.takeNow)

	leaseLoopDone := false
	select {
	case <-ctx.Done():
	case <-c.readCtx.Done(): // a reader failed
	case err := <-leaseErr:
		leaseLoopDone = true
		c.setErr(err)
	}

	// 1. Stop fetching and delivering, and tell the other workers, so that
	// they neither count on nor claim from this one.
	c.held.close()
	stopReading()
	if err := c.readers.Wait(); err != nil {
		c.setErr(err)
	}
	c.takeBack()
	_ = c.beat.beat(leaseCtx, running)
	// 2. Give what was delivered time to be acked.
	c.waitAcked(c.opts.ShutdownTimeout)
	// 3. Stop the lease loop, then checkpoint the acked prefix and release.
	stopLeases()
	if !leaseLoopDone {
		if err := <-leaseErr; err != nil {
			c.setErr(err)
		}
	}
	c.pause.stop() // no heartbeat any more: the deadline means nothing now
	final, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opts.LeaseDuration)
	defer cancel()
	c.releaseAll(final)
	c.beat.remove(final)
	c.leaveGroup(final)
	if err := c.Err(); err != nil {
		c.log.Error("kcl: consumer stopped", "error", err)
	} else {
		c.log.Info("kcl: consumer stopped")
	}
}

// releaseAll is the shutdown's last lease work: it releases the leases
// held (their acked prefix checkpointed), those the table names this worker
// the owner of without this process reading them (ownedNotHeld,
// unsureTakes), and tells the group. It runs on run's goroutine, once the
// lease loop returned.
func (c *Consumer) releaseAll(ctx context.Context) {
	var notHeld []lease
	if c.beat.settled() && !errors.Is(c.Err(), errDuplicateWorker) {
		notHeld = c.ownedNotHeld() // not a live twin's (heartbeat.settled)
	}
	if !errors.Is(c.Err(), errDuplicateWorker) {
		notHeld = append(notHeld, c.unsureTakes(ctx, notHeld)...) // this process's own, by its token
	}
	var g errgroup.Group
	g.SetLimit(8)
	for _, h := range c.held.list() {
		g.Go(func() error { c.releaseLease(ctx, h); return nil })
	}
	_ = g.Wait()
	for _, l := range notHeld {
		if _, err := c.table.checkpoint(ctx, l, l.checkpoint, "", c.beat.writer()); err == nil {
			c.log.Info("kcl: lease released", "shard", l.shardID, "checkpoint", l.checkpoint.seq, "unacked_dropped", 0)
		}
	}
	c.bump(ctx) // the other workers take what was released at once
}

// unsureTakes reads back the leases whose take shutdown cut short (the
// lease loop's cutTakes; it has returned) and returns those this process's
// take did land on, unless already in known: shutdown releases them, so
// that another worker takes them at once instead of after LeaseDuration
// (issue 27, item 8). It runs on run's goroutine.
func (c *Consumer) unsureTakes(ctx context.Context, known []lease) []lease {
	var out []lease
	for _, key := range c.keeper.cutTakes {
		if c.held.has(key) || slices.ContainsFunc(known, func(l lease) bool { return l.shardID == key }) {
			continue
		}
		l, ok, err := c.table.read(ctx, key)
		if err == nil && ok && l.owner == c.opts.WorkerID && l.writer.token == c.beat.token && !l.checkpoint.shardEnd() {
			out = append(out, l)
		}
	}
	return out
}

// ownedNotHeld returns the leases the table last named this worker the
// owner of without this process reading them (left by an earlier run with
// the same WorkerID). Shutdown releases them, fenced as always, so that
// another worker takes them at once instead of after LeaseDuration. A
// lease in a Java KCL hand-off to this worker (checkpointOwner) is not one:
// its old owner passes it on, or whoever takes it once that one is dead.
// Nor is a lease of a stream this consumer does not read: left alone. Nor
// one a live twin wrote (twinWrote), which it reads (found by the
// simulation, seed 1293: a release under a twin's running handler).
func (c *Consumer) ownedNotHeld() []lease {
	held, _ := c.held.snapshot()
	me, token, first := c.opts.WorkerID, c.beat.token, c.beat.firstCounter.Load()
	var mine []lease
	for _, l := range c.keeper.leasesRead() {
		if held := held[l.shardID]; l.owner == me && !held && !l.checkpoint.shardEnd() && l.checkpointOwner == "" && c.ours(l.shardID) && !twinWrote(l, me, token, first) {
			mine = append(mine, l)
		}
	}
	return mine
}

// start checks the lease table, writes the first heartbeat, describes the
// streams (a missing one is an error naming it), and creates leases for
// shards that have none. Transient errors are retried until ctx ends;
// configuration errors are not (starting).
func (c *Consumer) start(ctx context.Context) error {
	// The streams first: a missing stream (a typo) leaves no table behind,
	// and the first heartbeat says which streams this worker reads.
	if err := c.describeStreams(ctx); err != nil {
		return err
	}
	unusable := func(err error) bool { return errors.Is(err, errNotLeaseTable) || errors.Is(err, ErrNoLeaseTable) }
	if err := retryErr(ctx, starting, &c.counters.retryCounters, c.log, "lease table setup", unusable, func() error {
		if err := c.table.ensure(ctx); err != nil {
			return err
		}
		return c.beat.beat(ctx, starting)
	}); err != nil {
		return fmt.Errorf("lease table %q: %w", c.table.name(), err)
	}
	err := retryErr(ctx, starting, &c.counters.retryCounters, c.log, "shard sync", nil, func() error {
		return c.syncShards(ctx, starting, nil)
	})
	for _, s := range c.streamList() {
		if err == nil && c.opts.EnhancedFanOut {
			err = c.registerConsumer(ctx, starting, s)
		}
	}
	return err
}

// readerEnv returns what a shard reader reaches of c: the lease loop
// builds one for each reader it starts.
func (c *Consumer) readerEnv() *readerEnv {
	return &readerEnv{
		out: c.out, chunks: c.chunks, gate: c.pause, counters: &c.counters, log: c.log,
		opts: readerOptions{
			maxRecords: c.opts.MaxRecords, maxUnacked: c.opts.MaxUnackedPerShard,
			pollInterval: c.opts.PollInterval, shutdownTimeout: c.opts.ShutdownTimeout, stallAfter: c.opts.LeaseDuration,
			initialPosition: c.opts.InitialPosition, keepMisplaced: c.opts.KeepMisplacedAggregates,
			fanOutStall: c.fanOutStall, resubscribeAfter: c.resubscribeAfter,
		},
		listShards:    func(ctx context.Context, s *kstream) ([]shardInfo, error) { return c.listShards(ctx, running, s) },
		syncChildren:  c.syncChildren,
		endShard:      c.endShard,
		waitForStream: c.waitForStream,
		renewRefused:  c.renewRefused,
		renewConsumer: c.renewConsumer,
		handOff: func(ctx context.Context, h *heldLease, to string) (checkpoint, int, error) {
			return c.writeCheckpoint(ctx, h, to, false)
		},
	}
}

// waitAcked waits until every record delivered is acked, or for timeout.
func (c *Consumer) waitAcked(timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		pending := 0
		for _, h := range c.held.list() {
			if windowClosed(h.window) {
				continue // passed on, or being passed on: its acks no longer count
			}
			_, n := h.window.state()
			pending += n
		}
		if pending == 0 {
			return
		}
		if time.Now().After(deadline) {
			c.log.Warn("kcl: shutdown timeout: records delivered but not acked will be delivered again", "unacked", pending)
			return
		}
		<-tick.C
	}
}
