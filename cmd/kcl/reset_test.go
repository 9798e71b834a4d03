package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kclgo/kcl/internal/leaseitem"
)

// racingDB makes a write of a worker's land just before the command's own
// first write of one key: the command's conditional write must then fail.
type racingDB struct {
	DynamoDB
	key   string
	first func()
	done  bool
}

func (r *racingDB) race(key map[string]types.AttributeValue) {
	if k, ok := key[leaseitem.AttrLeaseKey].(*types.AttributeValueMemberS); ok && k.Value == r.key && !r.done {
		r.done = true
		r.first()
	}
}

func (r *racingDB) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, o ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	r.race(in.Key)
	return r.DynamoDB.UpdateItem(ctx, in, o...)
}

func (r *racingDB) PutItem(ctx context.Context, in *dynamodb.PutItemInput, o ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	r.race(in.Item)
	return r.DynamoDB.PutItem(ctx, in, o...)
}

func (r *racingDB) DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, o ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error) {
	r.race(in.Key)
	return r.DynamoDB.DeleteItem(ctx, in, o...)
}

// failingDB fails every write of one key, as a denied or broken call does.
type failingDB struct {
	DynamoDB
	key string
}

func (f *failingDB) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, o ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	if k, ok := in.Key[leaseitem.AttrLeaseKey].(*types.AttributeValueMemberS); ok && k.Value == f.key {
		return nil, errors.New("AccessDeniedException: not allowed")
	}
	return f.DynamoDB.UpdateItem(ctx, in, o...)
}

func TestReset(t *testing.T) {
	h := newHarness(t, 2)
	ids := h.shardIDs()
	seqs := h.putRecords(10)
	first := leaseItem(ids[0], "w1", 5, seqs[ids[0]][0])
	first[leaseitem.AttrCheckpointSub] = n(3)
	first[leaseitem.AttrPending] = s(seqs[ids[0]][1]) // the Java KCL's two-phase checkpoint
	h.put(first)
	second := leaseItem(ids[1], "", 2, leaseitem.Latest)
	second[leaseitem.AttrStartAt] = n(1)
	h.put(second)
	h.put(beatItem("w1", 40))
	initial := []leaseitem.Lease{h.lease(ids[0]), h.lease(ids[1])}
	unchanged := func(why string) {
		t.Helper()
		assert.Equal(t, initial, []leaseitem.Lease{h.lease(ids[0]), h.lease(ids[1])}, why)
	}
	at := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)

	t.Run("refuses while a worker is alive", func(t *testing.T) {
		h.during = func() { h.bump("kcl-worker:w1") }
		defer func() { h.during = nil }()
		code, _, stderr := h.run("reset", "-app", h.table, "-stream", h.stream, "-to", "trim-horizon")
		assert.Equal(t, 1, code)
		assert.Contains(t, stderr, "kcl reset: lease table \""+h.table+"\": workers of the group are alive: w1 (1 leases); stop them")
		unchanged("nothing written")
	})
	t.Run("dry run", func(t *testing.T) {
		code, stdout, stderr := h.run("reset", "-app", h.table, "-stream", h.stream, "-to", at.Format(time.RFC3339Nano), "-dry-run")
		require.Equal(t, 0, code, stderr)
		assert.Contains(t, stdout, "dry run (nothing written)")
		assert.Contains(t, stdout, ids[0]+"  w1     "+seqs[ids[0]][0]+" sub 3")
		assert.Contains(t, stdout, "2 would be reset, 0 unchanged")
		unchanged("a dry run writes nothing")
	})
	t.Run("to a time", func(t *testing.T) {
		code, stdout, stderr := h.run("reset", "-app", h.table, "-stream", h.stream, "-to", at.Format(time.RFC3339Nano))
		require.Equal(t, 0, code, stderr)
		assert.Contains(t, stdout, "2 reset, 0 unchanged, 0 left alone")
		l := h.lease(ids[0])
		assert.Equal(t, leaseitem.Lease{Key: ids[0], Owner: "w1", Counter: 5 + resetCounterStep, Checkpoint: leaseitem.AtTimestamp, StartAt: at.UnixMilli()}, l, "the owner kept")
		assert.NotContains(t, h.get(ids[0]), leaseitem.AttrPending, "the Java KCL's pending checkpoint goes, as with any checkpoint")
		assert.Equal(t, "0", h.get(ids[0])[leaseitem.AttrOwnerSwitches].(*types.AttributeValueMemberN).Value)
		assert.Equal(t, leaseitem.Lease{Key: ids[1], Counter: 2 + resetCounterStep, Checkpoint: leaseitem.AtTimestamp, StartAt: at.UnixMilli()}, h.lease(ids[1]))

		code, stdout, _ = h.run("reset", "-app", h.table, "-stream", h.stream, "-to", at.Format(time.RFC3339Nano))
		require.Equal(t, 0, code)
		assert.Contains(t, stdout, "1 reset, 1 unchanged, 0 left alone", "the second time, only the owned lease is written (its owner may be alive after all)")
	})
	t.Run("to trim-horizon removes the start time", func(t *testing.T) {
		code, _, stderr := h.run("reset", "-app", h.table, "-stream", h.stream, "-to", "trim-horizon", "-shard", ids[1])
		require.Equal(t, 0, code, stderr)
		assert.Equal(t, leaseitem.Lease{Key: ids[1], Counter: 2 + 2*resetCounterStep, Checkpoint: leaseitem.TrimHorizon}, h.lease(ids[1]))
		assert.NotContains(t, h.get(ids[1]), leaseitem.AttrStartAt)
		assert.Equal(t, leaseitem.AtTimestamp, h.lease(ids[0]).Checkpoint, "-shard: only that shard")
	})
	t.Run("a worker that writes meanwhile wins", func(t *testing.T) {
		before := h.lease(ids[0])
		racing := &racingDB{DynamoDB: h.ddb, key: ids[0], first: func() { h.bump(ids[0]) }}
		h.ddb = racing
		defer func() { h.ddb = racing.DynamoDB }()
		code, stdout, stderr := h.run("reset", "-app", h.table, "-stream", h.stream, "-to", "latest")
		assert.Equal(t, 1, code)
		assert.Contains(t, stdout, ids[0]+"  w1     AT_TIMESTAMP")
		assert.Contains(t, stdout, "left alone: written since it was read")
		assert.Contains(t, stdout, "1 reset, 0 unchanged, 1 left alone")
		assert.Contains(t, stderr, "kcl reset: lease table \""+h.table+"\": 1 shards left alone, changed since they were read: "+ids[0]+"; run reset again\n")
		assert.Equal(t, before.Counter+1, h.lease(ids[0]).Counter, "only the worker's write")
		assert.Equal(t, leaseitem.AtTimestamp, h.lease(ids[0]).Checkpoint)
		assert.Equal(t, leaseitem.Latest, h.lease(ids[1]).Checkpoint, "the other shard was reset")
	})
	t.Run("a write that fails stops the reset", func(t *testing.T) {
		failing := &failingDB{DynamoDB: h.ddb, key: ids[0]}
		h.ddb = failing
		defer func() { h.ddb = failing.DynamoDB }()
		code, stdout, stderr := h.run("reset", "-app", h.table, "-stream", h.stream, "-to", "trim-horizon")
		assert.Equal(t, 1, code)
		assert.Equal(t, `kcl reset: lease table "`+h.table+`": resetting shard "`+ids[0]+`": AccessDeniedException: not allowed`+"\n", stderr)
		assert.Contains(t, stdout, "failed (below)")
		assert.Regexp(t, ids[1]+` +- +LATEST \(later owners open at [^)]+\) +TRIM_HORIZON +not written\n`, stdout)
		assert.Contains(t, stdout, "0 reset, 0 unchanged, 0 left alone")
		assert.Equal(t, leaseitem.Latest, h.lease(ids[1]).Checkpoint)
	})
	t.Run("-force while a worker is alive", func(t *testing.T) {
		h.during = func() { h.bump("kcl-worker:w1") }
		defer func() { h.during = nil }()
		code, stdout, stderr := h.run("reset", "-app", h.table, "-stream", h.stream, "-to", "trim-horizon", "-force")
		require.Equal(t, 0, code, stderr)
		assert.Contains(t, stdout, "warning: reset with -force while workers were alive: w1\n")
		assert.Contains(t, stdout, "fails its\n  counter condition, the worker drops the lease")
		assert.Equal(t, leaseitem.TrimHorizon, h.lease(ids[0]).Checkpoint)
	})
	t.Run("refuses to re-read a parent without its child", func(t *testing.T) {
		parent := leaseItem(ids[0], "", 30, leaseitem.ShardEnd)
		child := leaseItem(ids[1], "", 4, seqs[ids[1]][0])
		child[leaseitem.AttrParents] = &types.AttributeValueMemberSS{Value: []string{ids[0]}}
		h.put(parent)
		h.put(child)
		code, _, stderr := h.run("reset", "-app", h.table, "-stream", h.stream, "-to", "trim-horizon", "-shard", ids[0])
		assert.Equal(t, 1, code)
		assert.Contains(t, stderr, `kcl reset: shard "`+ids[0]+`" is ended and its child "`+ids[1]+`" would not be reset: re-reading a parent while its child goes on breaks per-key order`)
		assert.Equal(t, leaseitem.ShardEnd, h.lease(ids[0]).Checkpoint)
	})
	t.Run("refuses a shard the stream does not list", func(t *testing.T) {
		code, _, stderr := h.run("reset", "-app", h.table, "-stream", h.stream, "-to", "latest", "-shard", "shardId-000000000077")
		assert.Equal(t, 1, code)
		assert.Equal(t, `kcl reset: stream "`+h.stream+`" does not list shard "shardId-000000000077"`+"\n", stderr)
	})
}

func TestForgetWorker(t *testing.T) {
	h := newHarness(t, 0)
	dead := leaseItem("shardId-000000000000", "dead", 6, leaseitem.TrimHorizon)
	dead[leaseitem.AttrHandoff] = s("w9")
	dead[leaseitem.AttrCheckpointOwner] = s("dead-before") // as if in a Java KCL 3.x hand-off
	h.put(dead)
	h.put(leaseItem("shardId-000000000001", "other", 3, leaseitem.TrimHorizon))
	h.put(leaseItem("shardId-000000000002", "java-9", 12, leaseitem.Latest))
	h.put(beatItem("dead", 70))
	h.put(beatItem("other", 4))
	h.put(item{leaseitem.AttrLeaseKey: s("kcl-group"), leaseitem.AttrEntityType: s("KCL_GROUP"), "kclEpoch": &types.AttributeValueMemberN{Value: "5"}})
	items := len(h.items())

	t.Run("refuses while the worker is alive", func(t *testing.T) {
		h.during = func() { h.bump("kcl-worker:dead") }
		defer func() { h.during = nil }()
		code, _, stderr := h.run("forget-worker", "-app", h.table, "-worker", "dead")
		assert.Equal(t, 1, code)
		assert.Equal(t, `kcl forget-worker: lease table "`+h.table+`": worker "dead" is alive (its heartbeat or a lease of its changed within 10s); stop it first`+"\n", stderr)
		assert.Equal(t, "dead", h.lease("shardId-000000000000").Owner)
	})
	t.Run("refuses a Java worker that renews", func(t *testing.T) {
		h.during = func() { h.bump("shardId-000000000002") }
		defer func() { h.during = nil }()
		code, _, stderr := h.run("forget-worker", "-app", h.table, "-worker", "java-9")
		assert.Equal(t, 1, code)
		assert.Contains(t, stderr, `worker "java-9" is alive`)
	})
	t.Run("unknown worker", func(t *testing.T) {
		h.waited = -1
		code, _, stderr := h.run("forget-worker", "-app", h.table, "-worker", "nobody")
		assert.Equal(t, 1, code)
		assert.Contains(t, stderr, `has no heartbeat item and no lease of worker "nobody"`)
		assert.Equal(t, time.Duration(-1), h.waited, "said at once, without the watch (issue 24, item 6)")
	})
	t.Run("dry run", func(t *testing.T) {
		code, stdout, stderr := h.run("forget-worker", "-app", h.table, "-worker", "dead", "-dry-run")
		require.Equal(t, 0, code, stderr)
		assert.Regexp(t, `shardId-000000000000 +release lease \(remove its owner and hand-off claims\) +would release\n`, stdout)
		assert.Regexp(t, `kcl-worker:dead +delete heartbeat item +would delete\n`, stdout)
		assert.Equal(t, "dead", h.lease("shardId-000000000000").Owner)
		assert.Len(t, h.items(), items)
	})
	t.Run("forgets a dead worker", func(t *testing.T) {
		code, stdout, stderr := h.run("forget-worker", "-app", h.table, "-worker", "dead")
		require.Equal(t, 0, code, stderr)
		assert.Contains(t, stdout, "2 written, 0 left alone")
		assert.Equal(t, leaseitem.Lease{Key: "shardId-000000000000", Counter: 7, Checkpoint: leaseitem.TrimHorizon}, h.lease("shardId-000000000000"), "released: no owner, no hand-off claims, counter bumped")
		assert.Nil(t, h.get("kcl-worker:dead"))
		assert.Equal(t, "other", h.lease("shardId-000000000001").Owner, "other workers' leases untouched")
		assert.NotNil(t, h.get("kcl-worker:other"))
		assert.Equal(t, &types.AttributeValueMemberN{Value: "6"}, h.get("kcl-group")["kclEpoch"], "the group told to read the table")
	})
	t.Run("a write that fails stops it", func(t *testing.T) {
		h.put(leaseItem("shardId-000000000004", "crashed", 2, leaseitem.Latest))
		h.put(beatItem("crashed", 9))
		failing := &failingDB{DynamoDB: h.ddb, key: "shardId-000000000004"}
		h.ddb = failing
		defer func() { h.ddb = failing.DynamoDB }()
		code, stdout, stderr := h.run("forget-worker", "-app", h.table, "-worker", "crashed")
		assert.Equal(t, 1, code)
		assert.Equal(t, `kcl forget-worker: lease table "`+h.table+`": item "shardId-000000000004": AccessDeniedException: not allowed`+"\n", stderr)
		assert.Regexp(t, `kcl-worker:crashed +delete heartbeat item +not written\n`, stdout)
		assert.NotNil(t, h.get("kcl-worker:crashed"), "the heartbeat item stays while a lease could not be released")
	})
	t.Run("a dead Java worker, and a write meanwhile", func(t *testing.T) {
		h.put(leaseItem("shardId-000000000003", "java-9", 1, leaseitem.Latest))
		racing := &racingDB{DynamoDB: h.ddb, key: "shardId-000000000003", first: func() { h.bump("shardId-000000000003") }}
		h.ddb = racing
		defer func() { h.ddb = racing.DynamoDB }()
		code, stdout, stderr := h.run("forget-worker", "-app", h.table, "-worker", "java-9")
		assert.Equal(t, 1, code)
		assert.Contains(t, stdout, "1 written, 1 left alone")
		assert.Equal(t, `kcl forget-worker: lease table "`+h.table+`": 1 items left alone, changed since they were read (is java-9 back?): shardId-000000000003`+"\n", stderr)
		assert.Equal(t, "", h.lease("shardId-000000000002").Owner)
		assert.Equal(t, "java-9", h.lease("shardId-000000000003").Owner)
	})
}

// TestResetRefusesWhileAJavaWorkerTakes: a Java worker (no heartbeat item)
// takes the lease of a dead one during the watch. kcl's workers see a
// fresh lease (a new owner or counter restarts their clock), so the taker
// is alive and reset refuses.
func TestResetRefusesWhileAJavaWorkerTakes(t *testing.T) {
	h := newHarness(t, 1)
	shard := h.shardIDs()[0]
	seq := "49590338271490256608559692538361571095921575989136588898"
	h.put(leaseItem(shard, "java-old", 5, seq))
	h.during = func() { h.put(leaseItem(shard, "java-new", 6, seq)) } // the Java taker: new owner, counter + 1
	code, _, stderr := h.run("reset", "-app", h.table, "-stream", h.stream, "-to", "trim-horizon")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "workers of the group are alive: java-new (1 leases)")
	assert.Equal(t, seq, h.lease(shard).Checkpoint, "nothing written")
}

// TestResetOfAShardWhoseLeaseIsNotUnderstood: reset names the lease item it
// cannot read and refuses, instead of taking the shard for one without a
// lease (which it would leave where it is).
func TestResetOfAShardWhoseLeaseIsNotUnderstood(t *testing.T) {
	h := newHarness(t, 2)
	ids := h.shardIDs()
	h.put(leaseItem(ids[0], "", 1, leaseitem.TrimHorizon))
	h.put(leaseItem(ids[1], "", 1, "yesterday"))
	for _, args := range [][]string{{"-shard", ids[1]}, nil} {
		code, stdout, stderr := h.run(append([]string{"reset", "-app", h.table, "-stream", h.stream, "-to", "latest"}, args...)...)
		assert.Equal(t, 1, code, "%v", args)
		assert.Empty(t, stdout)
		assert.Contains(t, stderr, fmt.Sprintf(`the lease item %q of shard %q is not understood (checkpoint: "yesterday" is neither a sequence number nor a sentinel)`, ids[1], ids[1]), "%v", args)
		assert.Equal(t, 1, strings.Count(stderr, "\n"))
	}
	assert.Equal(t, leaseitem.TrimHorizon, h.lease(ids[0]).Checkpoint, "nothing written")
}

// A worker frozen past the watch holds a lease still at TRIM_HORIZON, with
// acks only in memory. reset without -force calls it dead, and must write
// the lease all the same (its counter moves): otherwise the worker, back,
// checkpoints past those records and the shard is never read again, though
// the command reported it at TRIM_HORIZON (issue 27, item 9).
func TestResetWritesAnOwnedLeaseAlreadyAtTheTarget(t *testing.T) {
	h := newHarness(t, 1)
	id := h.shardIDs()[0]
	h.put(leaseItem(id, "frozen", 7, leaseitem.TrimHorizon))
	h.put(beatItem("frozen", 3)) // it does not beat during the watch: dead
	code, stdout, stderr := h.run("reset", "-app", h.table, "-stream", h.stream, "-to", "trim-horizon", "-lease", "1s")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "1 reset, 0 unchanged, 0 left alone")
	assert.Equal(t, int64(7+resetCounterStep), h.lease(id).Counter, "written: the frozen worker's next write fails its counter condition")
}

// reset -to latest stores its own time as the lease's start, so that the
// next owner opens the shard AT_TIMESTAMP of the reset, not at the tip when
// it takes the lease, which would skip what came in between (issue 27, item
// 12).
func TestResetToLatestStoresTheResetsTime(t *testing.T) {
	h := newHarness(t, 1)
	id := h.shardIDs()[0]
	h.put(leaseItem(id, "", 7, leaseitem.TrimHorizon))
	before := time.Now().UnixMilli()
	code, _, stderr := h.run("reset", "-app", h.table, "-stream", h.stream, "-to", "latest", "-lease", "1s")
	require.Equal(t, 0, code, stderr)
	l := h.lease(id)
	assert.Equal(t, leaseitem.Latest, l.Checkpoint)
	// Kinesis's Date is in whole seconds: a second more.
	assert.GreaterOrEqual(t, l.StartAt, before-time.Minute.Milliseconds()-time.Second.Milliseconds(), "the reset's time, less a minute for clock skew")
	assert.LessOrEqual(t, l.StartAt, time.Now().Add(-time.Minute).UnixMilli())
}

// On a host whose clock runs ahead of Kinesis's, reset -to latest still
// stores a start no later than Kinesis's clock less a minute: a start ahead
// of it would make the next owner skip what a first owner delivered and
// never acked (issue 27, item 2, for the command).
func TestResetToLatestStoresAStartOnKinesissClock(t *testing.T) {
	h := newHarness(t, 1)
	id := h.shardIDs()[0]
	h.put(leaseItem(id, "", 7, leaseitem.TrimHorizon))
	h.clock = func() time.Time { return time.Now().Add(2 * time.Minute) }
	code, _, stderr := h.run("reset", "-app", h.table, "-stream", h.stream, "-to", "latest", "-lease", "1s")
	require.Equal(t, 0, code, stderr)
	l := h.lease(id)
	assert.Equal(t, leaseitem.Latest, l.Checkpoint)
	assert.LessOrEqual(t, l.StartAt, time.Now().Add(-time.Minute).UnixMilli(), "a start on Kinesis's clock, not the host's 2 minutes ahead")
}

func TestTargetOnKinesisClock(t *testing.T) {
	host := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	kin := host.Add(-2 * time.Minute)
	for _, c := range []struct {
		name string
		t    target
		kin  time.Time
		want time.Time
	}{
		{"latest, Kinesis behind the host", target{leaseitem.Latest, host.Add(-time.Minute)}, kin, kin.Add(-time.Minute)},
		{"latest, Kinesis ahead of the host", target{leaseitem.Latest, kin.Add(-time.Minute)}, host, kin.Add(-time.Minute)},
		{"latest, no Date", target{leaseitem.Latest, host.Add(-time.Minute)}, time.Time{}, host.Add(-time.Minute)},
		{"a time given is kept", target{leaseitem.AtTimestamp, host}, kin, host},
	} {
		t.Run(c.name, func(t *testing.T) {
			assert.Equal(t, c.want, c.t.onKinesisClock(c.kin).at)
		})
	}
}

// The Java KCL deletes a parent's lease once its children started. reset
// to a point in the past used to leave that parent alone ("no lease yet")
// and to say it would start at the group's InitialPosition; kcl never makes
// a lease for an ancestor of a leased shard, so its records were never read
// again. reset now makes its lease at the target, and the children wait for
// it (issue 27, item 10).
func TestResetReReadsAParentWhoseLeaseTheJavaKCLDeleted(t *testing.T) {
	h := newHarness(t, 1)
	ctx := context.Background()
	parentData := h.putData("parent-", 5)
	const parent = "shardId-000000000000"
	_, err := h.kin.SplitShard(ctx, &kinesis.SplitShardInput{StreamName: &h.stream, ShardToSplit: aws.String(parent), NewStartingHashKey: aws.String("170141183460469231731687303715884105728")})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(h.shardIDs()) == 3 }, time.Minute, 100*time.Millisecond)
	childData := h.putData("child-", 6)
	w := h.startWorker("java-like")
	w.receive(append(parentData, childData...)...)
	w.stop()
	_, err = h.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: &h.table, Key: leaseitem.ItemKey(parent)}) // the Java KCL's cleanup
	require.NoError(t, err)

	code, stdout, stderr := h.run("reset", "-app", h.table, "-stream", h.stream, "-to", "trim-horizon", "-lease", "1s")
	require.Equal(t, 0, code, stderr)
	assert.Regexp(t, parent+` +- +no lease \(read to its end; its lease deleted\) +TRIM_HORIZON +re-read\n`, stdout)
	assert.Contains(t, stdout, "3 reset, 0 unchanged, 0 left alone")
	assert.NotContains(t, stdout, "no lease yet", "the parent is not one without a lease yet")
	l := h.lease(parent)
	assert.Equal(t, leaseitem.TrimHorizon, l.Checkpoint)

	w = h.startWorker("after-reset")
	got := w.receive(append(parentData, childData...)...)
	w.stop()
	first := map[string]int{}
	for i, d := range got {
		if _, ok := first[d]; !ok {
			first[d] = i
		}
	}
	for _, p := range parentData {
		for _, c := range childData {
			assert.Less(t, first[p], first[c], "the parent's %s before the child's %s", p, c)
		}
	}
}

// reset -to latest moves the started children of a parent whose lease was
// deleted back to LATEST: the parent, still listed, is not read again (a
// worker's shard sync makes no lease for it), and the reset says so.
func TestResetToLatestDoesNotReReadAParentWhoseLeaseWasDeleted(t *testing.T) {
	h := newHarness(t, 1)
	ctx := context.Background()
	parentData := h.putData("parent-", 5)
	const parent = "shardId-000000000000"
	_, err := h.kin.SplitShard(ctx, &kinesis.SplitShardInput{StreamName: &h.stream, ShardToSplit: aws.String(parent), NewStartingHashKey: aws.String("170141183460469231731687303715884105728")})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(h.shardIDs()) == 3 }, time.Minute, 100*time.Millisecond)
	childData := h.putData("child-", 6)
	w := h.startWorker("before-reset")
	w.receive(append(parentData, childData...)...)
	w.stop()
	_, err = h.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: &h.table, Key: leaseitem.ItemKey(parent)}) // cleanup
	require.NoError(t, err)

	code, stdout, stderr := h.run("reset", "-app", h.table, "-stream", h.stream, "-to", "latest", "-lease", "1s")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "note: read to their end and their leases deleted, not read again: "+parent+"\n")
	assert.NotContains(t, stdout, "no lease yet")

	w = h.startWorker("after-reset")
	newData := h.putData("new-", 4)
	got := w.receive(newData...)
	w.stop()
	for _, p := range parentData {
		assert.NotContains(t, got, p, "the parent read again")
	}
	assert.Empty(t, h.get(parent), "a lease made again for the parent")
}
