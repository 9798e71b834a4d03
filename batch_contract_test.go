package kcl

// ProcessBatch held to Process's contract on the emulators: per-key order
// and exclusion across batches, retry in place of only the failed records,
// OnFailure both ways, a hand-off ending the handler's context, shutdown.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestProcessBatchKeepsKeyOrderAndExclusion(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 2)
	const n, keys = 300, 12
	puts := f.putN(n, keys, "")
	opts := f.options()
	opts.Concurrency, opts.BatchSize, opts.BatchWindow = 4, 10, 20*time.Millisecond
	var rec batchCalls
	var handled atomic.Int64
	var perKey sync.Map // key -> *atomic.Int64: batches holding the key running now
	var overlap, severalOfAKey, moreThanKeys atomic.Bool
	var running, maxRunning atomic.Int64
	r := startBatches(t, opts, func(ctx context.Context, recs []Record) error {
		start := time.Now()
		now := running.Add(1)
		for m := maxRunning.Load(); now > m && !maxRunning.CompareAndSwap(m, now); m = maxRunning.Load() {
		}
		mine := map[string]bool{}
		for _, r := range recs {
			mine[r.PartitionKey] = true
		}
		if len(mine) < len(recs) {
			severalOfAKey.Store(true)
		}
		if len(recs) > len(mine) && len(mine) > 1 {
			moreThanKeys.Store(true)
		}
		for k := range mine {
			c, _ := perKey.LoadOrStore(k, new(atomic.Int64))
			if c.(*atomic.Int64).Add(1) > 1 {
				overlap.Store(true)
			}
		}
		time.Sleep(3 * time.Millisecond)
		for k := range mine {
			c, _ := perKey.Load(k)
			c.(*atomic.Int64).Add(-1)
		}
		running.Add(-1)
		rec.add(ctx, recs, start)
		handled.Add(int64(len(recs)))
		return nil
	})
	require.Eventually(t, func() bool { return handled.Load() == n }, 60*time.Second, 10*time.Millisecond)
	require.NoError(t, r.stop())

	assert.False(t, overlap.Load(), "two batches holding one key ran at once")
	assert.Greater(t, maxRunning.Load(), int64(1), "batches run at once")
	assert.LessOrEqual(t, maxRunning.Load(), int64(4), "at most Concurrency batches at once")
	assert.True(t, severalOfAKey.Load(), "a batch holds several records of one key")
	assert.True(t, moreThanKeys.Load(), "batches are not capped by their number of keys")
	got := rec.snapshot()
	slices.SortFunc(got, func(a, b batchCall) int { return a.start.Compare(b.start) })
	seen := map[string]int{}
	for _, x := range got {
		for _, d := range x.data {
			seen[d]++
		}
	}
	assert.Len(t, seen, n)
	for d, c := range seen {
		assert.Equal(t, 1, c, "%s handled once", d)
	}
	for k := range keys {
		var order []string // the key's records, in the order handled
		for _, x := range got {
			for _, d := range x.data {
				if strings.HasPrefix(d, fmt.Sprintf("k%d:", k)) {
					order = append(order, d)
				}
			}
		}
		assert.IsIncreasing(t, order, "key k%d: in its shard's order, within and across batches", k) // "kK:index", same width
	}
	items := f.leaseItems()
	for shard, seq := range lastSeqPerShard(puts) {
		assert.Equal(t, seq, str(items[shard], attrCheckpoint), "shard %s checkpointed to its last record", shard)
	}
}

// The handler reports one record failed: it alone, and the later records
// of its key in the batch, are given to the handler again, after a
// backoff; the other records are acked at once.
func TestProcessBatchRetriesOnlyTheFailedRecords(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 1)
	const n = 40
	puts := f.putN(n, 4, "")
	opts := f.options()
	opts.BatchSize, opts.BatchWindow = n, 300*time.Millisecond // the 40 in one batch
	const target = "k1:000005"
	errFlaky := errors.New("flaky")
	var rec batchCalls
	var targetCalls atomic.Int64
	r := startBatches(t, opts, func(ctx context.Context, recs []Record) error {
		start := time.Now()
		defer rec.add(ctx, recs, start)
		errs := make([]error, len(recs))
		failed := false
		for i, r := range recs {
			switch {
			case string(r.Data) == target && targetCalls.Add(1) <= 2:
				errs[i], failed = errFlaky, true
			case string(r.Data) == "k1:000009" && len(recs) == n:
				errs[i] = errFlaky // behind the target: not counted as its attempt
			}
		}
		if failed {
			return &BatchError{Errs: errs}
		}
		return nil
	})
	require.Eventually(t, func() bool { return len(rec.snapshot()) > 0 }, 60*time.Second, 10*time.Millisecond) // the lease table exists
	require.Eventually(t, func() bool {
		return str(f.leaseItems()[puts[0].shard], attrCheckpoint) == puts[n-1].seq
	}, 60*time.Second, 20*time.Millisecond)
	require.NoError(t, r.stop())

	got := rec.snapshot()
	require.Len(t, got, 3, "the batch, then two retries")
	assert.Len(t, got[0].data, n)
	var later []string // the records of k1 after the target
	for i := 9; i < n; i += 4 {
		later = append(later, fmt.Sprintf("k1:%06d", i))
	}
	want := append([]string{target}, later...)
	assert.Equal(t, want, got[1].data, "the failed record and the later ones of its key")
	assert.Equal(t, want, got[2].data)
	assert.Equal(t, 1, batchAttemptOf(got[1], "k1:000009"), "a later record of the key: no attempt counted")
	assert.Equal(t, 2, batchAttemptOf(got[1], target))
	assert.Equal(t, 3, batchAttemptOf(got[2], target))
	assert.GreaterOrEqual(t, got[1].start.Sub(got[0].end), 40*time.Millisecond, "a backoff (100ms ± 50%)")
	for d, c := range rec.handled() {
		if !slices.Contains(want, d) {
			assert.Equal(t, 1, c, "%s: acked in the first batch", d)
		}
	}
}

// batchAttemptOf returns the attempt the call gave the record whose data
// is d; 0 if it did not hold it.
func batchAttemptOf(x batchCall, d string) int {
	if i := slices.Index(x.data, d); i >= 0 {
		return x.attempts[i]
	}
	return 0
}

func TestProcessBatchOnFailureAcksAndGoesOn(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 1)
	const n = 20
	puts := f.putN(n, 4, "")
	opts := f.options()
	opts.BatchSize, opts.Concurrency, opts.MaxAttempts = 4, 2, 2
	const bad = "k1:000001"
	errBad := errors.New("poison")
	var badCalls, done atomic.Int64
	var mu sync.Mutex
	var dead []string
	opts.OnFailure = func(ctx context.Context, r Record, err error) error {
		assert.ErrorIs(t, err, errBad)
		assert.Equal(t, 2, Attempt(ctx))
		mu.Lock()
		dead = append(dead, string(r.Data))
		mu.Unlock()
		done.Add(1)
		return nil
	}
	r := startBatches(t, opts, func(ctx context.Context, recs []Record) error {
		errs := make([]error, len(recs))
		for i, r := range recs {
			if string(r.Data) == bad {
				badCalls.Add(1)
				errs[i] = errBad
				continue
			}
			done.Add(1)
		}
		return &BatchError{Errs: errs}
	})
	require.Eventually(t, func() bool { return badCalls.Load() > 0 }, 60*time.Second, 10*time.Millisecond) // the lease table exists
	require.Eventually(t, func() bool {
		return str(f.leaseItems()[puts[0].shard], attrCheckpoint) == puts[n-1].seq
	}, 60*time.Second, 20*time.Millisecond, "the record OnFailure accepted is acked: the checkpoint passes it")
	require.NoError(t, r.stop())
	assert.Equal(t, int64(2), badCalls.Load(), "MaxAttempts calls, then OnFailure")
	assert.Equal(t, []string{bad}, dead)
}

func TestProcessBatchStopsOnAFailureAndTheRecordComesBack(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 1)
	const n = 20
	puts := f.putN(n, 4, "")
	const bad = "k1:000001"
	errBad := errors.New("poison")
	errDLQDown := errors.New("dead-letter queue unreachable")
	var badCalls atomic.Int64
	handle := func(ctx context.Context, recs []Record) error {
		errs := make([]error, len(recs))
		for i, r := range recs {
			if string(r.Data) == bad {
				badCalls.Add(1)
				errs[i] = errBad
			}
		}
		return &BatchError{Errs: errs}
	}

	// OnFailure refuses the record: ProcessBatch stops with its error.
	opts := f.options()
	opts.BatchSize = 5
	opts.ShutdownTimeout = 500 * time.Millisecond
	opts.MaxAttempts = 1
	opts.OnFailure = func(ctx context.Context, r Record, err error) error { return errDLQDown }
	r := startBatches(t, opts, handle)
	require.ErrorIs(t, r.returned(t, 30*time.Second), errDLQDown)
	assert.Equal(t, puts[0].seq, str(f.leaseItems()[puts[0].shard], attrCheckpoint), "the checkpoint stops before the refused record")

	// No OnFailure: it stops with the handler's last error for the record.
	opts.OnFailure = nil
	opts.MaxAttempts = 3
	badCalls.Store(0)
	r = startBatches(t, opts, handle)
	err := r.returned(t, 30*time.Second)
	require.ErrorIs(t, err, errBad)
	assert.Contains(t, err.Error(), puts[1].seq)
	assert.Equal(t, int64(3), badCalls.Load())

	s := startConsumer(t, f.options())
	again := s.receive(n-1, 30*time.Second, ackAll)
	assert.Equal(t, putData(puts[1:]), dataOf(again), "a restart delivers it again, first")
	require.NoError(t, s.stop(nil))
}

// A second worker takes one of two shards: the batches holding its records
// see their context end; batches of the other shard alone do not; the new
// owner resumes at the first record not acked.
func TestProcessBatchHandlerContextEndsWhenTheShardIsHandedOff(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 2)
	puts := f.putN(40, 8, "")
	require.Len(t, lastSeqPerShard(puts), 2, "records on both shards")
	opts := f.options()
	opts.WorkerID = "a"
	opts.Concurrency, opts.BatchSize = 8, 5 // more than one shard's keys: the other's find a slot
	opts.ShutdownTimeout = time.Second
	type blocked struct {
		shards map[string]bool
		first  map[string]string // by shard: its first record in the batch
		ended  time.Time
	}
	var mu sync.Mutex
	var all []*blocked
	var seen sync.Map // data -> true: a record seen once is handled at once
	stopping := make(chan struct{})
	r := startBatches(t, opts, func(ctx context.Context, recs []Record) error {
		b := &blocked{shards: map[string]bool{}, first: map[string]string{}}
		fresh := false
		for _, r := range recs {
			if _, old := seen.LoadOrStore(string(r.Data), true); !old {
				fresh = true
			}
			if !b.shards[r.ShardID] {
				b.first[r.ShardID] = string(r.Data)
			}
			b.shards[r.ShardID] = true
		}
		if !fresh {
			return nil
		}
		mu.Lock()
		all = append(all, b)
		mu.Unlock()
		<-ctx.Done()
		mu.Lock()
		select {
		case <-stopping:
		default:
			b.ended = time.Now()
		}
		mu.Unlock()
		return ctx.Err()
	})
	bothShards := func() bool {
		mu.Lock()
		defer mu.Unlock()
		in := map[string]bool{}
		for _, b := range all {
			for s := range b.shards {
				in[s] = true
			}
		}
		return len(in) == 2
	}
	require.Eventually(t, bothShards, 30*time.Second, 10*time.Millisecond)

	bOpts := f.options()
	bOpts.WorkerID = "b"
	s := startConsumer(t, bOpts)
	var moved string
	require.Eventually(t, func() bool {
		held := s.c.held.list()
		if len(held) == 1 {
			moved = held[0].shardID
		}
		return moved != ""
	}, 30*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, b := range all {
			if b.shards[moved] && b.ended.IsZero() {
				return false
			}
		}
		return true
	}, 10*time.Second, 10*time.Millisecond, "every batch holding a record of the shard handed off saw its context end")
	mu.Lock()
	var firstOfMoved string
	for _, b := range all {
		if !b.shards[moved] {
			assert.True(t, b.ended.IsZero(), "a batch of the shard kept alone saw its context end")
		}
		if d, ok := b.first[moved]; ok && (firstOfMoved == "" || dataIndex(d) < dataIndex(firstOfMoved)) {
			firstOfMoved = d
		}
	}
	close(stopping)
	mu.Unlock()
	got := s.receiveAll([]string{firstOfMoved}, 30*time.Second)
	assert.Equal(t, firstOfMoved, string(got[0].Data), "the new owner resumes at the record not acked")
	require.NoError(t, r.stop())
	require.NoError(t, s.stop(ackAll))
}

func TestProcessBatchShutdownWaitsForHandlersUpToShutdownTimeout(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 1)
	puts := f.putN(4, 4, "a")

	opts := f.options()
	opts.BatchSize, opts.BatchWindow = 4, 5*time.Second
	opts.ShutdownTimeout = 5 * time.Second
	started := make(chan struct{})
	var ctxEndedEarly atomic.Bool
	r := startBatches(t, opts, func(ctx context.Context, recs []Record) error {
		close(started)
		time.Sleep(500 * time.Millisecond)
		if ctx.Err() != nil {
			ctxEndedEarly.Store(true)
		}
		return nil
	})
	<-started
	stopAt := time.Now()
	require.NoError(t, r.stop())
	took := time.Since(stopAt)
	assert.False(t, ctxEndedEarly.Load(), "the handler's ctx does not end when ProcessBatch's ctx does")
	assert.Less(t, took, opts.ShutdownTimeout, "returns once the handlers are done")
	assert.Equal(t, puts[3].seq, str(f.leaseItems()[puts[0].shard], attrCheckpoint), "what finished during shutdown is checkpointed")

	more := f.putN(1, 1, "b")
	opts.ShutdownTimeout, opts.BatchWindow = 500*time.Millisecond, 0
	inFlight := make(chan struct{})
	var once sync.Once
	var ended time.Time
	r = startBatches(t, opts, func(ctx context.Context, recs []Record) error {
		once.Do(func() { close(inFlight) })
		<-ctx.Done()
		ended = time.Now()
		return ctx.Err()
	})
	<-inFlight
	stopAt = time.Now()
	require.NoError(t, r.stop())
	assert.GreaterOrEqual(t, ended.Sub(stopAt), opts.ShutdownTimeout, "the handler's ctx ends only after ShutdownTimeout")
	assert.Equal(t, puts[3].seq, str(f.leaseItems()[puts[0].shard], attrCheckpoint), "the batch still in flight is not checkpointed")
	s := startConsumer(t, f.options())
	again := s.receive(1, 30*time.Second, ackAll)
	assert.Equal(t, putData(more), dataOf(again))
	require.NoError(t, s.stop(nil))
}

// dataIndex returns the index of a record written by putN ("kK:index").
func dataIndex(d string) string { return d[strings.Index(d, ":")+1:] }
