package kcl

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The Java KCL (2.3+, 3.x) deletes a parent's SHARD_END lease once every
// child's checkpoint is past TRIM_HORIZON (LeaseCleanupManager
// cleanupLeaseForCompletedShard, cleanupLeasesUponShardCompletion default
// true). Its shard sync never recreates it (NonEmptyLeaseTableSynchronizer
// walks up from open shards and stops at leased ones). kcl must resume such
// a table without reading the parent again.
func TestAParentWhoseLeaseJavaDeletedIsNotReadAgain(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 2)
	js := newJavaStream(f)
	f.createJava3xLeaseTable()
	c1 := js.childPuts[:10]
	c2 := js.childPuts[10:]
	ls := []javaLease{
		{key: js.other, counter: 17, checkpoint: js.otherPuts[1].seq, sub: 1},
		{key: js.child1, counter: 9, checkpoint: c1[4].seq, parents: []string{js.parent}},
		{key: js.child2, counter: 9, checkpoint: c2[4].seq, parents: []string{js.parent}},
	}
	for _, l := range ls {
		f.putItem(l.item())
	}
	want := append(append(putData(js.otherPuts[2:]), putData(c1[5:])...), putData(c2[5:])...)
	opts := f.options() // InitialPosition TrimHorizon
	opts.WorkerID = "kcl-1"
	sess := startConsumer(t, opts)
	got := sess.receive(len(want), 30*time.Second, ackAll)
	sess.quiet(time.Second) // nothing of the parent follows
	require.NoError(t, sess.stop(nil))
	all := dataOf(got)
	assert.ElementsMatch(t, want, all, "nothing of the parent (processed and cleaned up by Java) is read again")
	items := f.allItems(f.app, "leaseKey")
	_, recreated := items[js.parent]
	assert.False(t, recreated, "no lease is created for the parent of leased children")
}

type denyFanOut struct{ KinesisAPI }

func (d denyFanOut) DescribeStreamConsumer(ctx context.Context, in *kinesis.DescribeStreamConsumerInput, optFns ...func(*kinesis.Options)) (*kinesis.DescribeStreamConsumerOutput, error) {
	return nil, &smithy.GenericAPIError{Code: "AccessDeniedException", Message: "not allowed"}
}

// A consumer whose start fails after its shard sync created leases (here a
// fan-out consumer without kinesis:DescribeStreamConsumer) stops with Err,
// and must leave nothing a Java KCL 2.x worker cannot read.
func TestAFailedStartLeavesNothingJavaCannotRead(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 2)
	opts := f.options()
	opts.Kinesis = denyFanOut{f.kin}
	opts.EnhancedFanOut = true
	c, err := New(opts)
	require.NoError(t, err)
	for range c.Consume(context.Background()) {
	}
	require.Error(t, c.Err())
	t.Log(c.Err())
	items := f.allItems(f.app, "leaseKey")
	for k, it := range items {
		t.Logf("%s: %v", k, it["entityType"])
	}
	checkJavaReadable(t, items, nil)
}

// A Java 3.x hand-off frozen from h1 to h2 (Java worker IDs = host names),
// and kcl now runs on h1 and h2 with the same WorkerIDs: both are live kcl
// workers. Someone must read the shard once the lease has not changed for
// LeaseDuration (the old owner, a kcl worker, never passes it on).
func TestAFrozenJavaHandoffBetweenTwoLiveKclWorkersIsTaken(t *testing.T) {
	const ld = 10 * time.Second
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := lease{shardID: "s1", owner: "h2", checkpointOwner: "h1", counter: 3, checkpoint: checkpoint{seq: checkpointTrimHorizon}}
	var takes []string
	for _, me := range []string{"h1", "h2"} {
		seen := map[string]observation{}
		var d decisions
		for i, listed := range []time.Duration{0, ld + time.Millisecond, 3 * ld} {
			workers := map[string]workerBeat{"h1": {counter: int64(1 + i)}, "h2": {counter: int64(1 + i)}}
			at := t0.Add(listed)
			in := assessInput{me: me, snap: tableSnapshot{leases: []lease{l}, workers: workers}, held: map[string]bool{},
				listed: at, now: at, leaseDuration: ld, settled: true, confirmed: map[string]int64{}}
			d = assessConfirming(in, seen)
		}
		t.Logf("%s: take %v claim %v", me, d.take, d.claim)
		takes = append(takes, d.take...)
	}
	assert.NotEmpty(t, takes, "one of the two live workers takes the frozen lease")
}
