//go:build go1.25

package kcl

// A harness for scripted schedules in virtual time (testing/synctest): a
// group of workers on the in-process Kinesis (internal/kinesisfake) and
// one in-memory lease table, each worker seeing the table through a
// hookTable that a test scripts (fail, block or delay a call, change what a
// read returns). The regression tests of guarantees_test.go build the
// schedules that broke kcl's guarantees with it.

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/stretchr/testify/require"

	"github.com/kclgo/kcl/internal/kinesisfake"
)

// hookTable is one worker's view of a shared lease table. Each call first
// runs before (which may block, sleep, or fail the call without applying
// it by returning an error) and, once applied, after; onList may change a
// read of the whole table and onBeat sees what a consistent read of a
// heartbeat returned. Hooks are read under mu and run without it.
type hookTable struct {
	inner leaseTable

	mu     sync.Mutex
	before func(op, key string) error
	after  func(op, key string, err error)
	onList func(snap *tableSnapshot)
	onBeat func(worker string, w workerBeat, ok bool)
}

func (t *hookTable) hooks() (func(op, key string) error, func(op, key string, err error)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.before, t.after
}

// set replaces the hooks with f's changes, under mu.
func (t *hookTable) set(f func(t *hookTable)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f(t)
}

// do runs one call: before, then apply unless before failed it, then after.
func (t *hookTable) do(op, key string, apply func() error) error {
	before, after := t.hooks()
	if before != nil {
		if err := before(op, key); err != nil {
			return err
		}
	}
	err := apply()
	if after != nil {
		after(op, key, err)
	}
	return err
}

func throttled() error {
	return &ddbtypes.ProvisionedThroughputExceededException{Message: aws.String("test: throughput exceeded")}
}

var _ leaseTable = (*hookTable)(nil)

func (t *hookTable) name() string { return "hooked" }

func (t *hookTable) ensure(ctx context.Context) error {
	return t.do("ensure", "", func() error { return t.inner.ensure(ctx) })
}

func (t *hookTable) list(ctx context.Context, consistent bool) (snap tableSnapshot, err error) {
	err = t.do("list", "", func() error {
		snap, err = t.inner.list(ctx, consistent)
		return err
	})
	t.mu.Lock()
	onList := t.onList
	t.mu.Unlock()
	if err == nil && onList != nil {
		onList(&snap)
	}
	return snap, err
}

func (t *hookTable) read(ctx context.Context, key string) (l lease, ok bool, err error) {
	err = t.do("read", key, func() error {
		l, ok, err = t.inner.read(ctx, key)
		return err
	})
	return l, ok, err
}

func (t *hookTable) create(ctx context.Context, l lease) (created bool, err error) {
	err = t.do("create", l.shardID, func() error {
		created, err = t.inner.create(ctx, l)
		return err
	})
	return created, err
}

func (t *hookTable) take(ctx context.Context, l lease, w writer) (out lease, err error) {
	err = t.do("take", l.shardID, func() error {
		out, err = t.inner.take(ctx, l, w)
		return err
	})
	return out, err
}

func (t *hookTable) replace(ctx context.Context, l, fresh lease) error {
	return t.do("replace", l.shardID, func() error { return t.inner.replace(ctx, l, fresh) })
}

func (t *hookTable) remove(ctx context.Context, l lease) error {
	return t.do("remove", l.shardID, func() error { return t.inner.remove(ctx, l) })
}

func (t *hookTable) claim(ctx context.Context, l lease, taker string) error {
	return t.do("claim", l.shardID, func() error { return t.inner.claim(ctx, l, taker) })
}

func (t *hookTable) unclaim(ctx context.Context, l lease) error {
	return t.do("unclaim", l.shardID, func() error { return t.inner.unclaim(ctx, l) })
}

// checkpoint's op names what the write does: "checkpoint", "shard-end",
// "release" or "hand-off".
func (t *hookTable) checkpoint(ctx context.Context, l lease, cp checkpoint, next string, w writer) (out lease, err error) {
	op := "checkpoint"
	switch {
	case cp.shardEnd():
		op = "shard-end"
	case next == "":
		op = "release"
	case next != l.owner:
		op = "hand-off"
	}
	err = t.do(op, l.shardID, func() error {
		out, err = t.inner.checkpoint(ctx, l, cp, next, w)
		return err
	})
	return out, err
}

func (t *hookTable) heartbeat(ctx context.Context, worker, token string, stopping bool, last int64, streams []string) (n int64, err error) {
	err = t.do("heartbeat", worker, func() error {
		n, err = t.inner.heartbeat(ctx, worker, token, stopping, last, streams)
		return err
	})
	return n, err
}

func (t *hookTable) removeWorker(ctx context.Context, worker string, counter int64) error {
	return t.do("removeWorker", worker, func() error { return t.inner.removeWorker(ctx, worker, counter) })
}

func (t *hookTable) readBeat(ctx context.Context, worker string) (w workerBeat, ok bool, err error) {
	err = t.do("readBeat", worker, func() error {
		w, ok, err = t.inner.readBeat(ctx, worker)
		return err
	})
	t.mu.Lock()
	onBeat := t.onBeat
	t.mu.Unlock()
	if err == nil && onBeat != nil {
		onBeat(worker, w, ok)
	}
	return w, ok, err
}

func (t *hookTable) group(ctx context.Context) (g groupItem, err error) {
	err = t.do("group", groupKey, func() error {
		g, err = t.inner.group(ctx)
		return err
	})
	return g, err
}

func (t *hookTable) bump(ctx context.Context) error {
	return t.do("bump", groupKey, func() error { return t.inner.bump(ctx) })
}

func (t *hookTable) tick(ctx context.Context) error {
	return t.do("tick", groupKey, func() error { return t.inner.tick(ctx) })
}

func (t *hookTable) publish(ctx context.Context, expired map[string]int64, digest string) error {
	return t.do("publish", groupKey, func() error { return t.inner.publish(ctx, expired, digest) })
}

func (t *hookTable) removeGroup(ctx context.Context, epoch int64) error {
	return t.do("removeGroup", groupKey, func() error { return t.inner.removeGroup(ctx, epoch) })
}

// cutOff makes every call of t fail, as a table unreachable or throttled
// for good does, until heal.
func (t *hookTable) cutOff() {
	t.set(func(t *hookTable) { t.before = func(string, string) error { return throttled() } })
}

func (t *hookTable) heal() { t.set(func(t *hookTable) { t.before = nil }) }

// schedGroup is a group of workers in one synctest bubble, with a shared
// log of what each delivered.
type schedGroup struct {
	t     *testing.T
	kin   *kinesisfake.Server
	table *memLeases

	mu      sync.Mutex
	log     []schedDelivery
	workers []*schedWorker
	seq     atomic.Int64
	puts    atomic.Int64 // records produced, for unique data
}

// schedDelivery is one record a worker's loop (or handler) received.
type schedDelivery struct {
	worker string
	shard  string
	data   string
	at     time.Time
	n      int64 // the group's event order: virtual time stands still while goroutines run
}

// schedWorker is one worker of a schedGroup.
type schedWorker struct {
	name   string // in the log; also its WorkerID unless the options set another
	c      *Consumer
	table  *hookTable
	cancel context.CancelFunc
	done   chan struct{}
	err    error // Process's result, once done is closed
}

// newSchedGroup returns a group on kin. Its workers are stopped when the
// test ends, failed or not (t is the bubble's).
func newSchedGroup(t *testing.T, kin *kinesisfake.Server) *schedGroup {
	g := &schedGroup{t: t, kin: kin, table: newMemLeases()}
	t.Cleanup(g.stop)
	return g
}

// options are the group's defaults: LeaseDuration 1s, a fast loop.
func (g *schedGroup) options(id string) Options {
	return Options{
		WorkerID:           id,
		Kinesis:            g.kin,
		StreamName:         "s",
		InitialPosition:    TrimHorizon,
		PollInterval:       20 * time.Millisecond,
		LeaseDuration:      time.Second,
		CheckpointInterval: 100 * time.Millisecond,
		ShardSyncInterval:  time.Hour,
		ShutdownTimeout:    300 * time.Millisecond,
		Logger:             slog.New(slog.NewTextHandler(testOutput{g.t}, &slog.HandlerOptions{Level: slog.LevelInfo})).With("test_worker", id),
	}
}

// newWorker builds a worker on the group's table, its options from
// options(name) changed by edit (nil: none).
func (g *schedGroup) newWorker(name string, edit func(*Options)) *schedWorker {
	g.t.Helper()
	opts := g.options(name)
	if edit != nil {
		edit(&opts)
	}
	c, err := New(opts)
	if err != nil {
		g.t.Fatalf("New: %v", err)
	}
	w := &schedWorker{name: name, c: c, table: &hookTable{inner: g.table}, done: make(chan struct{})}
	c.table = w.table
	g.mu.Lock()
	g.workers = append(g.workers, w)
	g.mu.Unlock()
	return w
}

// consume starts w as a Consume loop that logs and acks every record.
func (g *schedGroup) consume(w *schedWorker) *schedWorker {
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	ch := w.c.Consume(ctx)
	go func() {
		defer close(w.done)
		for r := range ch {
			g.note(w.name, r)
			r.Ack()
		}
	}()
	return w
}

// consumeAckingAfter starts w as a Consume loop that logs every record and
// acks it delay after it arrived.
func (g *schedGroup) consumeAckingAfter(w *schedWorker, delay time.Duration) *schedWorker {
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	ch := w.c.Consume(ctx)
	go func() {
		defer close(w.done)
		for r := range ch {
			g.note(w.name, r)
			time.AfterFunc(delay, r.Ack)
		}
	}()
	return w
}

// process starts w as Process with handle, logging each call's record
// before handle runs.
func (g *schedGroup) process(w *schedWorker, handle func(ctx context.Context, r Record) error) *schedWorker {
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	go func() {
		defer close(w.done)
		w.err = w.c.Process(ctx, func(ctx context.Context, r Record) error {
			g.note(w.name, r)
			return handle(ctx, r)
		})
	}()
	return w
}

func (g *schedGroup) note(worker string, r Record) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.log = append(g.log, schedDelivery{worker: worker, shard: r.ShardID, data: string(r.Data), at: time.Now(), n: g.seq.Add(1)})
}

// deliveries returns the log so far.
func (g *schedGroup) deliveries() []schedDelivery {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.log)
}

// stop cancels every worker and waits for all of them.
func (g *schedGroup) stop() {
	g.mu.Lock()
	ws := slices.Clone(g.workers)
	g.mu.Unlock()
	for _, w := range ws {
		if w.cancel != nil {
			w.cancel()
		}
	}
	for _, w := range ws {
		if w.cancel != nil {
			<-w.done
		}
	}
}

// produce puts a record to stream every interval until ctx ends, each with
// data "stream/key:i" and a key of keys ("k0".."k<keys-1>", in turn); i
// counts the group's records.
func (g *schedGroup) produce(ctx context.Context, stream string, keys int, interval time.Duration) {
	go func() {
		for {
			i := int(g.puts.Add(1))
			key := fmt.Sprintf("k%d", i%keys)
			if _, _, err := g.kin.PutRecord(stream, key, fmt.Appendf(nil, "%s/%s:%d", stream, key, i)); err != nil {
				g.t.Errorf("PutRecord: %v", err)
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(interval):
			}
		}
	}()
}

// produceAndRequireRead has producers write to stream for d, waits two
// seconds more, and fails t unless w still runs and every record of
// stream (not trimmed) was delivered; what says more of the state, in the
// failure message.
func (g *schedGroup) produceAndRequireRead(t *testing.T, w *schedWorker, stream string, d time.Duration, what func() string) {
	t.Helper()
	ctx, stopProducing := context.WithCancel(context.Background())
	g.produce(ctx, stream, 4, 10*time.Millisecond)
	time.Sleep(d)
	stopProducing()
	time.Sleep(2 * time.Second)
	if w.stopped() {
		t.Fatalf("the consumer stopped: %v", w.c.Err())
	}
	lost := g.undelivered(stream)
	require.Empty(t, lost[:min(len(lost), 5)], "%d records of %s never delivered; %s", len(lost), stream, what())
}

// stopped reports whether w's loop (or its Process) has ended.
func (w *schedWorker) stopped() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

// undelivered returns the records of stream, not trimmed, that no worker
// delivered.
func (g *schedGroup) undelivered(stream string) []string {
	got := map[string]bool{}
	for _, d := range g.deliveries() {
		got[d.data] = true
	}
	var out []string
	for _, r := range g.kin.Records(stream) {
		if !got[string(r.Data)] && !r.Trimmed {
			out = append(out, string(r.Data))
		}
	}
	return out
}

// owners returns, for each lease whose key holds part, its owner.
func (g *schedGroup) owners(part string) map[string]string {
	g.table.mu.Lock()
	defer g.table.mu.Unlock()
	out := map[string]string{}
	for key, l := range g.table.leases {
		if strings.Contains(key, part) {
			out[key] = l.owner
		}
	}
	return out
}

// owner returns the owner of the lease with key as the table holds it.
func (g *schedGroup) owner(key string) string {
	l, _, _ := g.table.read(context.Background(), key)
	return l.owner
}

// both returns the records that two workers each delivered, with the
// deliveries' order, as "data: worker@n, worker@n".
func both(log []schedDelivery, a, b string) []string {
	by := map[string][]schedDelivery{}
	for _, d := range log {
		if d.worker == a || d.worker == b {
			by[d.data] = append(by[d.data], d)
		}
	}
	var out []string
	for data, ds := range by {
		seen := map[string]bool{}
		var parts []string
		for _, d := range ds {
			seen[d.worker] = true
			parts = append(parts, fmt.Sprintf("%s@%d", d.worker, d.n))
		}
		if seen[a] && seen[b] {
			out = append(out, data+": "+strings.Join(parts, ", "))
		}
	}
	slices.Sort(out)
	return out
}
