package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kclgo/kcl"
	"github.com/kclgo/kcl/internal/leaseitem"
)

// worker is one kcl consumer of the harness's stream and table.
type worker struct {
	t       *testing.T
	id      string
	records <-chan kcl.Record
	c       *kcl.Consumer
	cancel  context.CancelFunc
	stopped bool
}

func (h *harness) startWorker(id string) *worker {
	h.t.Helper()
	c, err := kcl.New(kcl.Options{
		StreamName: h.stream, AppName: h.table, WorkerID: id, Kinesis: h.kin, DynamoDB: h.db,
		InitialPosition: kcl.TrimHorizon, PollInterval: 50 * time.Millisecond, LeaseDuration: time.Second,
		CheckpointInterval: 100 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
	})
	require.NoError(h.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	w := &worker{t: h.t, id: id, records: c.Consume(ctx), c: c, cancel: cancel}
	h.t.Cleanup(w.stop)
	return w
}

// receive takes records, acking each, until it has seen every one of want
// (more may come first), and returns what it received. The 30 s bound only
// stops a hung run.
func (w *worker) receive(want ...string) []string {
	w.t.Helper()
	missing := map[string]bool{}
	for _, d := range want {
		missing[d] = true
	}
	var got []string
	timeout := time.After(30 * time.Second)
	for len(missing) > 0 {
		select {
		case r, ok := <-w.records:
			require.True(w.t, ok, "channel closed: %v", w.c.Err())
			got = append(got, string(r.Data))
			delete(missing, string(r.Data))
			r.Ack()
		case <-timeout:
			w.t.Fatalf("after %d records, still missing %v", len(got), missing)
		}
	}
	return got
}

// stop shuts the worker down gracefully: it checkpoints, releases its
// leases and deletes its heartbeat item.
func (w *worker) stop() {
	if w.stopped {
		return
	}
	w.stopped = true
	w.cancel()
	for range w.records {
	}
	assert.NoError(w.t, w.c.Err())
}

func (h *harness) putData(prefix string, n int) []string {
	h.t.Helper()
	var data []string
	for i := range n {
		d := fmt.Sprintf("%s%02d", prefix, i)
		_, err := h.kin.PutRecord(context.Background(), &kinesis.PutRecordInput{StreamName: &h.stream, PartitionKey: aws.String(d), Data: []byte(d)})
		require.NoError(h.t, err)
		data = append(data, d)
	}
	return data
}

// A group stopped after a bad deploy replays from a time: the next worker
// delivers exactly the records from then on, and status reads the table kcl
// wrote with nothing it does not understand.
func TestResetToATimeReplaysFromThere(t *testing.T) {
	h := newHarness(t, 2)
	before := h.putData("before-", 10)
	time.Sleep(1100 * time.Millisecond) // arrival timestamps may have second precision
	at := time.Now()
	time.Sleep(1100 * time.Millisecond)
	after := h.putData("after-", 10)

	w := h.startWorker("deploy-1")
	w.receive(append(before, after...)...)
	w.stop()

	code, stdout, stderr := h.run("status", "-app", h.table, "-stream", h.stream, "-json", "-lag")
	require.Equal(t, 0, code, stderr)
	var rep statusReport
	require.NoError(t, json.Unmarshal([]byte(stdout), &rep))
	assert.Empty(t, rep.Problems, "kcl's own table is understood")
	require.Len(t, rep.Shards, 2)
	for _, sh := range rep.Shards {
		assert.True(t, leaseitem.IsSequenceNumber(sh.Checkpoint), "checkpointed: %+v", sh)
		assert.Equal(t, "", sh.Owner, "released on a graceful stop")
		require.NotNil(t, sh.MillisBehind)
	}
	assert.Empty(t, rep.Workers, "the heartbeat item is deleted on a graceful stop")

	code, stdout, stderr = h.run("reset", "-app", h.table, "-stream", h.stream, "-to", at.UTC().Format(time.RFC3339Nano))
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "2 reset, 0 unchanged, 0 left alone")

	w = h.startWorker("deploy-2")
	got := w.receive(after...)
	assert.ElementsMatch(t, after, got, "exactly the records from the time on")
	select {
	case r := <-w.records:
		t.Fatalf("unexpected record %q", r.Data)
	case <-time.After(500 * time.Millisecond):
	}
	w.stop()
}

// reset refuses while a real worker beats, and with -force the worker does
// what the command says it will: its next checkpoint write fails, it drops
// the lease, takes it again and reads from the reset checkpoint.
func TestResetForceWithALiveWorker(t *testing.T) {
	h := newHarness(t, 1)
	shard := h.shardIDs()[0]
	first := h.putData("first-", 5)
	w := h.startWorker("live-1")
	w.receive(first...)
	require.Eventually(t, func() bool { return h.lease(shard).Checkpoint != leaseitem.TrimHorizon }, 30*time.Second, 20*time.Millisecond, "checkpoint written")

	// The watch ends once the worker has beaten: no timing assumed.
	h.during = func() {
		start := h.beat("live-1")
		require.Eventually(t, func() bool { return h.beat("live-1").Counter != start.Counter }, 30*time.Second, 20*time.Millisecond)
	}
	code, _, stderr := h.run("reset", "-app", h.table, "-stream", h.stream, "-to", "trim-horizon", "-lease", "1s")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "workers of the group are alive: live-1 (1 leases)")
	assert.NotEqual(t, leaseitem.TrimHorizon, h.lease(shard).Checkpoint)

	code, stdout, stderr := h.run("reset", "-app", h.table, "-stream", h.stream, "-to", "trim-horizon", "-lease", "1s", "-force")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "warning: reset with -force while workers were alive: live-1")

	// A new record: the worker delivers it from where it is in memory;
	// its ack's checkpoint write fails, and the shard is read again from
	// TRIM_HORIZON.
	next := h.putData("next-", 1)
	got := w.receive(append(first, next...)...)
	assert.Equal(t, next[0], got[0], "first the record after the in-memory position")
	assert.Subset(t, got[1:], first, "then the shard again from the reset checkpoint")
	w.stop()
}

// TestMultiStreamGroup: a group read with Options.Streams keys its leases
// account:stream:creationEpoch:shardId. status shows the stream's shards by
// bare shard ID with their leases, and no problem; reset writes the full
// keys; a lease of another stream of the group is left alone.
func TestMultiStreamGroup(t *testing.T) {
	h := newHarness(t, 2)
	data := h.putData("x-", 4)
	c, err := kcl.New(kcl.Options{
		Streams: []string{h.stream}, AppName: h.table, WorkerID: "multi-1", Kinesis: h.kin, DynamoDB: h.db,
		InitialPosition: kcl.TrimHorizon, PollInterval: 50 * time.Millisecond, LeaseDuration: time.Second,
		CheckpointInterval: 100 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	w := &worker{t: t, id: "multi-1", records: c.Consume(ctx), c: c, cancel: cancel}
	t.Cleanup(w.stop)
	w.receive(data...)
	w.stop()
	id, err := streamIdentifier(context.Background(), h.kin, h.stream)
	require.NoError(t, err)
	ids := h.shardIDs()
	require.NotNil(t, h.get(leaseitem.Key(id, ids[0])), "the workers' key is the command's: %s:%s", id, ids[0])
	other := "000000000000:another-stream:1700000000:" + ids[0] // same shard ID, another stream of the group
	h.put(leaseItem(other, "", 3, "49590338271490256608559692538361571095921575989136588898"))

	code, stdout, stderr := h.run("status", "-app", h.table, "-stream", h.stream, "-json")
	require.Equal(t, 0, code, stderr)
	var rep statusReport
	require.NoError(t, json.Unmarshal([]byte(stdout), &rep))
	require.Len(t, rep.Shards, 2)
	for i, sh := range rep.Shards {
		assert.Equal(t, ids[i], sh.Shard, "bare shard IDs")
		assert.True(t, leaseitem.IsSequenceNumber(sh.Checkpoint), "shard %s: its lease's checkpoint, got %q", sh.Shard, sh.Checkpoint)
	}
	assert.Empty(t, rep.Problems, "kcl's own multi-stream table is no problem")
	code, stdout, stderr = h.run("status", "-app", h.table, "-stream", h.stream)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "note: multi-stream table (Options.Streams): stream "+h.stream+" is "+id)
	assert.Contains(t, stdout, "note: leases of other streams of the group (or of an earlier stream of the same name), not shown: 000000000000:another-stream:1700000000 (1)")
	assert.NotContains(t, stdout, "leaves it alone")

	code, stdout, stderr = h.run("reset", "-app", h.table, "-stream", h.stream, "-to", "trim-horizon")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "2 reset, 0 unchanged, 0 left alone")
	assert.Contains(t, stdout, "note: left alone: 1 leases of other streams")
	for _, shard := range ids {
		assert.Equal(t, leaseitem.TrimHorizon, h.lease(leaseitem.Key(id, shard)).Checkpoint, shard)
		assert.Nil(t, h.get(shard), "no single-stream item written")
	}
	assert.NotEqual(t, leaseitem.TrimHorizon, h.lease(other).Checkpoint, "the other stream's lease is left alone")

	// The group reads the shards again from TRIM_HORIZON.
	c, err = kcl.New(kcl.Options{
		Streams: []string{h.stream}, AppName: h.table, WorkerID: "multi-2", Kinesis: h.kin, DynamoDB: h.db,
		InitialPosition: kcl.Latest, PollInterval: 50 * time.Millisecond, LeaseDuration: time.Second,
		CheckpointInterval: 100 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	ctx, cancel = context.WithCancel(context.Background())
	w2 := &worker{t: t, id: "multi-2", records: c.Consume(ctx), c: c, cancel: cancel}
	t.Cleanup(w2.stop)
	w2.receive(data...)
	w2.stop()
}

// TestResetForceRewritesAnOwnedLeaseAlreadyAtTheTarget: a live worker has
// delivered records of a shard whose checkpoint is still TRIM_HORIZON
// (nothing acked yet). reset -force -to trim-horizon must write the lease
// all the same (its counter moves), or the worker's next checkpoint would
// succeed and the shard would never be re-read, whatever the warning says.
func TestResetForceRewritesAnOwnedLeaseAlreadyAtTheTarget(t *testing.T) {
	h := newHarness(t, 1)
	shard := h.shardIDs()[0]
	data := h.putData("a-", 3)
	w := h.startWorker("live-1")
	var recs []kcl.Record
	for range data {
		select {
		case r := <-w.records:
			recs = append(recs, r)
		case <-time.After(30 * time.Second):
			t.Fatal("no record")
		}
	}
	before := h.lease(shard)
	require.Equal(t, leaseitem.TrimHorizon, before.Checkpoint, "nothing acked yet")
	h.during = func() {
		start := h.beat("live-1")
		require.Eventually(t, func() bool { return h.beat("live-1").Counter != start.Counter }, 30*time.Second, 20*time.Millisecond)
	}
	code, stdout, stderr := h.run("reset", "-app", h.table, "-stream", h.stream, "-to", "trim-horizon", "-lease", "1s", "-force")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "1 reset, 0 unchanged, 0 left alone")
	assert.GreaterOrEqual(t, h.lease(shard).Counter, before.Counter+resetCounterStep, "the lease was written")
	for _, r := range recs {
		r.Ack()
	}
	// The ack's checkpoint write fails; the shard is read again.
	w.receive(data...)
	w.stop()
}
