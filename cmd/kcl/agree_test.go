package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kclgo/kcl"
	"github.com/kclgo/kcl/internal/leaseitem"
)

// The command and the workers agree on a table the workers wrote: the same
// owners and checkpoints as the workers last read them (Stats), and the
// same verdicts on who is alive as the workers publish in the group item
// (kclExpired: the heartbeats and leases they judged expired, at their
// counters). Each agreement is awaited (agree), since the workers read the
// table a little after the command does, or before.

// agreeLease is the workers' LeaseDuration and the command's -lease.
const agreeLease = time.Second

// startGroupWorker starts a kcl worker of the harness's table, holding at
// most maxLeases leases (0: no cap), reading streams (Options.Streams) or
// the harness's stream when none, and acks whatever it delivers until it
// stops.
func (h *harness) startGroupWorker(id string, maxLeases int, streams ...string) *worker {
	h.t.Helper()
	opts := kcl.Options{
		AppName: h.table, WorkerID: id, Kinesis: h.kin, DynamoDB: h.db, MaxLeasesPerWorker: maxLeases,
		InitialPosition: kcl.TrimHorizon, PollInterval: 50 * time.Millisecond, LeaseDuration: agreeLease,
		CheckpointInterval: 100 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
	}
	if len(streams) == 0 {
		opts.StreamName = h.stream
	} else {
		opts.Streams = streams
	}
	c, err := kcl.New(opts)
	require.NoError(h.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	records := c.Consume(ctx)
	acked := make(chan kcl.Record)
	go func() {
		defer close(acked)
		for r := range records {
			r.Ack()
		}
	}()
	w := &worker{t: h.t, id: id, records: acked, c: c, cancel: cancel}
	h.t.Cleanup(w.stop)
	return w
}

// keepWriting bumps the counter of lease key every 100 ms while cond
// holds on it, as a worker that renews or checkpoints the lease does, until
// the returned function is called. A write is never cut off midway: once
// stop returns, the counter stands still (a write cancelled in flight may
// still land after it).
func (h *harness) keepWriting(key, cond string, values map[string]types.AttributeValue) (stop func()) {
	values[":one"] = leaseitem.Number(1)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, _ = h.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
				TableName: &h.table, Key: leaseitem.ItemKey(key), ConditionExpression: &cond,
				UpdateExpression:          aws.String("ADD " + leaseitem.AttrCounter + " :one"),
				ExpressionAttributeValues: values,
			})
			cancel()
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { close(done); wg.Wait() }) }
	h.t.Cleanup(stop)
	return stop
}

// watchExpired reads the group item every 5 ms until the returned function
// is called, and reports whether the workers published key as expired at
// counter in any reading. The workers publish an expired lease only until
// one takes it, which can be over before a later look (the command's watch
// takes a LeaseDuration).
func (h *harness) watchExpired(key string, counter int64) (published func() bool) {
	var seen atomic.Bool
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			out, err := h.db.GetItem(context.Background(), &dynamodb.GetItemInput{TableName: &h.table, Key: leaseitem.ItemKey(leaseitem.GroupKey), ConsistentRead: aws.Bool(true)})
			if err == nil && out.Item != nil {
				if g, err := leaseitem.ParseGroup(out.Item); err == nil && g.Expired[key] == counter {
					seen.Store(true)
					return
				}
			}
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	var once sync.Once
	stop := func() { once.Do(func() { close(done); wg.Wait() }) }
	h.t.Cleanup(stop)
	return seen.Load
}

// putJavaHandoff writes the lease of key as the Java KCL 3.x writes it
// during a graceful hand-off from old to owner, and has old renew it until
// the returned function is called (or a take removes checkpointOwner).
func (h *harness) putJavaHandoff(key, owner, old string) (stop func()) {
	it := leaseItem(key, owner, 1, leaseitem.TrimHorizon)
	it[leaseitem.AttrCheckpointOwner] = s(old)
	h.put(it)
	return h.keepWriting(key, leaseitem.AttrCheckpointOwner+" = :old", map[string]types.AttributeValue{":old": s(old)})
}

// observed is what the command reports of one stream. Its watch lasts the
// workers' LeaseDuration, and until every worker of beating beat.
func (h *harness) observed(stream string, beating ...*worker) statusReport {
	h.t.Helper()
	counter := func(id string) (int64, bool) {
		it := leaseitem.Read(h.get(leaseitem.WorkerKey(id)))
		return it.Beat.Counter, it.Kind == leaseitem.KindBeat && it.Err == nil
	}
	h.during = func() {
		start := map[string]int64{}
		for _, w := range beating {
			start[w.id], _ = counter(w.id)
		}
		time.Sleep(agreeLease)
		for _, w := range beating {
			require.Eventually(h.t, func() bool {
				n, ok := counter(w.id)
				return ok && n != start[w.id]
			}, 30*time.Second, 20*time.Millisecond, w.id)
		}
	}
	defer func() { h.during = nil }()
	code, stdout, stderr := h.run("status", "-app", h.table, "-stream", stream, "-lease", agreeLease.String(), "-json")
	require.Equal(h.t, 0, code, stderr)
	var rep statusReport
	require.NoError(h.t, json.Unmarshal([]byte(stdout), &rep))
	return rep
}

// shardView is a lease as the workers last read it.
type shardView struct{ owner, checkpoint string }

// workersView returns every shard of stream (by ARN) as the workers last
// read it: a holder's own record of a shard it holds, otherwise the first
// worker's reading.
func workersView(streamARN string, workers ...*worker) map[string]shardView {
	view := map[string]shardView{}
	for _, sh := range workers[0].c.Stats().Shards {
		if sh.StreamARN == streamARN {
			view[sh.ShardID] = shardView{owner: sh.Owner, checkpoint: sh.Checkpoint}
		}
	}
	for _, w := range workers {
		for _, sh := range w.c.Stats().Shards {
			if sh.StreamARN == streamARN && sh.Held {
				view[sh.ShardID] = shardView{owner: w.id, checkpoint: sh.Checkpoint}
			}
		}
	}
	return view
}

// commandView is every leased shard as the command reports it.
func commandView(rep statusReport) map[string]shardView {
	view := map[string]shardView{}
	for _, sh := range rep.Shards {
		if sh.Checkpoint != "" {
			view[sh.Shard] = shardView{owner: sh.Owner, checkpoint: sh.Checkpoint}
		}
	}
	return view
}

// expired is what the workers last published as expired: heartbeat and
// lease keys, with the counters they were judged at.
func (h *harness) expired() map[string]int64 {
	h.t.Helper()
	it := h.get(leaseitem.GroupKey)
	if it == nil {
		return nil
	}
	g, err := leaseitem.ParseGroup(it)
	require.NoError(h.t, err)
	return g.Expired
}

// agree waits until check, which compares the command's report with the
// workers' reading, holds. check runs on the test's goroutine.
func (h *harness) agree(what string, check func() bool) {
	h.t.Helper()
	for deadline := time.Now().Add(60 * time.Second); !check(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			h.t.Fatalf("the command and the workers disagree: %s", what)
		}
	}
}

func streamARN(t *testing.T, kin *kinesis.Client, stream string) string {
	t.Helper()
	out, err := kin.DescribeStreamSummary(context.Background(), &kinesis.DescribeStreamSummaryInput{StreamName: &stream})
	require.NoError(t, err)
	return aws.ToString(out.StreamDescriptionSummary.StreamARN)
}

func alive(rep statusReport) map[string]bool {
	out := map[string]bool{}
	for _, w := range rep.Workers {
		out[w.ID] = w.Alive
	}
	return out
}

// held returns the shards the workers read, by stream ARN.
func held(streamARN string, workers ...*worker) []string {
	var out []string
	for _, w := range workers {
		for _, sh := range w.c.Stats().Shards {
			if sh.StreamARN == streamARN && sh.Held {
				out = append(out, sh.ShardID)
			}
		}
	}
	return out
}

// TestCommandAndWorkersAgree: two kcl workers, one lease each at most
// (MaxLeasesPerWorker), read a table that also holds a Java KCL 3.x
// hand-off (its old owner renewing the lease) and the lease of a kcl worker
// whose heartbeat stands still while the lease's counter moves (it
// checkpoints). While the Java worker renews, the command calls it alive
// and the kcl workers read nothing (kcl does not run beside live Java
// workers: docs/migration.md), and dead the worker whose heartbeat stands
// still, which the workers publish as expired at the counter the command
// saw. Once the old owner stops renewing, the command calls it dead, the
// workers publish the hand-off's lease as expired at the counter the
// command saw, and read as many shards as their cap allows, reported by
// the command as they read them.
func TestCommandAndWorkersAgree(t *testing.T) {
	h := newHarness(t, 4)
	ids := h.shardIDs()
	arn := streamARN(t, h.kin, h.stream)
	h.putData("agree-", 20)
	stopRenewing := h.putJavaHandoff(ids[0], "java-new", "java-old")
	h.put(beatItem("stuck", 5))
	h.put(leaseItem(ids[1], "stuck", 1, leaseitem.TrimHorizon))
	h.keepWriting(ids[1], leaseitem.AttrOwner+" = :stuck", map[string]types.AttributeValue{":stuck": s("stuck")})
	a, b := h.startGroupWorker("w-a", 1), h.startGroupWorker("w-b", 1)

	h.agree("the workers publish stuck as expired", func() bool { return h.expired()[leaseitem.WorkerKey("stuck")] == 5 })
	rep := h.observed(h.stream, a, b)
	assert.Equal(t, map[string]bool{"w-a": true, "w-b": true, "java-old": true, "java-new": false, "stuck": false}, alive(rep),
		"stuck is dead: a checkpoint of its lease is no sign of life to the workers")
	assert.True(t, rep.Shards[0].OwnerAlive, "the hand-off's old owner reads shard 0")
	assert.Equal(t, shardView{owner: "java-new", checkpoint: leaseitem.TrimHorizon}, commandView(rep)[ids[0]], "a Java hand-off is left alone")
	assert.Empty(t, held(arn, a, b), "no kcl worker reads beside a live Java worker")
	for _, key := range []string{ids[0], leaseitem.WorkerKey("w-a"), leaseitem.WorkerKey("w-b")} {
		assert.NotContains(t, h.expired(), key, "the workers judge it live")
	}

	stopRenewing()
	counter := h.lease(ids[0]).Counter
	published := h.watchExpired(ids[0], counter)
	rep = h.observed(h.stream, a, b)
	assert.False(t, alive(rep)["java-old"], "the old owner stopped renewing")
	assert.False(t, rep.Shards[0].OwnerAlive)
	h.agree("the workers publish the hand-off's lease as expired at the counter the command saw", published)
	h.agree("owners and checkpoints, the workers at their cap", func() bool {
		rep = h.observed(h.stream, a, b)
		return len(held(arn, a, b)) == 2 && assert.ObjectsAreEqual(workersView(arn, a, b), commandView(rep))
	})
	for _, id := range held(arn, a, b) {
		assert.Contains(t, []string{"w-a", "w-b"}, commandView(rep)[id].owner)
	}
}

// TestCommandAndWorkersAgreeOnAMultiStreamTable: two kcl workers read two
// streams as one group (Options.Streams), with a Java KCL 3.x hand-off
// frozen in one of them (the Java workers stopped for the migration). For
// each stream, the command reports the owners and checkpoints the workers
// read, by bare shard ID (the frozen hand-off's lease too, taken once
// expired), and the same live workers.
func TestCommandAndWorkersAgreeOnAMultiStreamTable(t *testing.T) {
	h := newHarness(t, 2)
	other := newHarness(t, 3)
	h.putData("one-", 40)
	other.putData("two-", 40)
	id, err := streamIdentifier(context.Background(), h.kin, h.stream)
	require.NoError(t, err)
	first := h.shardIDs()[0]
	h.putJavaHandoff(leaseitem.Key(id, first), "java-new", "java-old")() // frozen: the Java workers were stopped for the migration
	a, b := h.startGroupWorker("m-a", 0, h.stream, other.stream), h.startGroupWorker("m-b", 0, h.stream, other.stream)

	for _, stream := range []string{h.stream, other.stream} {
		arn := streamARN(t, h.kin, stream)
		var rep statusReport
		h.agree("owners and checkpoints of "+stream, func() bool {
			rep = h.observed(stream, a, b)
			return len(commandView(rep)) == len(rep.Shards) && len(held(arn, a, b)) == len(rep.Shards) && assert.ObjectsAreEqual(workersView(arn, a, b), commandView(rep))
		})
		assert.Empty(t, rep.Problems)
		for w, live := range alive(rep) {
			assert.Equal(t, w == "m-a" || w == "m-b", live, w)
		}
		for _, sh := range rep.Shards {
			assert.Contains(t, []string{"m-a", "m-b"}, sh.Owner, "%s: the frozen hand-off too, once expired", sh.Shard)
			assert.True(t, leaseitem.IsSequenceNumber(sh.Checkpoint), "%s: %s", sh.Shard, sh.Checkpoint)
		}
	}
}
