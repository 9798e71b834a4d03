package kcl

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kclgo/kcl/internal/kinesisfake"
)

// openWatch tells when a shard is first opened (GetShardIterator answered).
type openWatch struct {
	KinesisAPI
	shard  string
	opened chan struct{}
	once   sync.Once
}

func (w *openWatch) GetShardIterator(ctx context.Context, in *kinesis.GetShardIteratorInput, opts ...func(*kinesis.Options)) (*kinesis.GetShardIteratorOutput, error) {
	out, err := w.KinesisAPI.GetShardIterator(ctx, in, opts...)
	if err == nil && aws.ToString(in.ShardId) == w.shard {
		w.once.Do(func() { close(w.opened) })
	}
	return out, err
}

// racingTable is the lease table as another worker writes it meanwhile:
// right after this worker creates the lease of shard after, the other's
// create of l lands.
type racingTable struct {
	*memLeases
	after string
	l     lease
}

func (t *racingTable) create(ctx context.Context, l lease) (bool, error) {
	created, err := t.memLeases.create(ctx, l)
	if l.shardID == t.after {
		t.memLeases.create(ctx, t.l)
	}
	return created, err
}

// A group starting at Latest on a stream resharded before: shards 0, 1 and
// 2 closed, 0 and 1 merged into 3 (closed too), 3 and 2 into 4, the one
// open shard. The group's first workers sync together: the other, finding
// no lease, creates 0, 1 and 2 at SHARD_END (closed: nothing will come in)
// and, after this one created 3, 4 at LATEST; this one read the table when
// the other had created 0 only. That ended lease was never read, so 3 has
// nothing to go on from: it starts at SHARD_END too, and 4 is read at once.
// Taking 3 for the descendant of a leased shard started it at TRIM_HORIZON:
// it replayed what was written before the group started, and 4, held back
// until its parent ended, was opened at LATEST only then, skipping all
// written to it meanwhile (TestSimulation, seed 95250335, whose streams have
// a reshard history).
func TestLatestShardAfterEndedLeasesIsNotReplayed(t *testing.T) {
	noLeak(t)
	kin := kinesisfake.New(kinesisfake.Options{})
	kin.CreateStream("s", 3)
	put := func(what string, n int) {
		for i := range n {
			_, _, err := kin.PutRecord("s", fmt.Sprintf("k%d", i), fmt.Appendf(nil, "%s %d", what, i))
			require.NoError(t, err)
		}
	}
	put("old", 30)
	require.NoError(t, kin.MergeShards("s", "shardId-000000000000", "shardId-000000000001"))
	put("old", 30) // some in 3
	require.NoError(t, kin.MergeShards("s", "shardId-000000000003", "shardId-000000000002"))
	put("old", 10)

	four := "shardId-000000000004"
	table := &racingTable{memLeases: newMemLeases(), after: "shardId-000000000003",
		l: lease{shardID: four, checkpoint: checkpoint{seq: checkpointLatest}, parents: []string{"shardId-000000000003", "shardId-000000000002"}}}
	table.leases["shardId-000000000000"] = lease{shardID: "shardId-000000000000", checkpoint: checkpoint{seq: checkpointShardEnd}}

	watch := &openWatch{KinesisAPI: kin, shard: four, opened: make(chan struct{})}
	c, err := New(Options{StreamName: "s", Kinesis: watch, InitialPosition: Latest, PollInterval: 10 * time.Millisecond, Logger: testLogger(t)})
	require.NoError(t, err)
	c.table = table
	ctx, cancel := context.WithCancel(context.Background())
	s := &session{t: t, c: c, ch: c.Consume(ctx), cancel: cancel}
	defer s.stop(ackAll)

	var got []Record
	select {
	case <-watch.opened:
	case r := <-s.ch: // held unacked: a shard delivering it does not end
		got = append(got, r)
	case <-time.After(10 * time.Second):
		t.Fatal("shard 4 not opened, and nothing delivered, within 10s")
	}
	put("new", 20) // after the group started and read: owed
	for _, r := range got {
		r.Ack()
	}
	newCount := func() int {
		n := 0
		for _, r := range got {
			if strings.HasPrefix(string(r.Data), "new ") {
				n++
			}
		}
		return n
	}
	deadline := time.After(5 * time.Second)
	for newCount() < 20 {
		select {
		case r := <-s.ch:
			got = append(got, r)
			r.Ack()
		case <-deadline:
			t.Fatalf("%d of the 20 records written after shard 4 was opened delivered within 5s; delivered: %q", newCount(), dataOf(got))
		}
	}
	s.quiet(200 * time.Millisecond)
	for _, r := range got {
		assert.False(t, strings.HasPrefix(string(r.Data), "old "), "%q was written before the group started, at Latest", r.Data)
	}
	l, ok, err := table.read(context.Background(), "shardId-000000000003")
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, checkpointShardEnd, l.checkpoint.seq, "shard 3, closed, after ended leases only")
}
