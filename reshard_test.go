package kcl

import (
	"context"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kclgo/kcl/internal/emulator"
)

// split splits the first open shard at the middle of its hash key range.
func (f *fixture) split() {
	f.t.Helper()
	out, err := f.kin.ListShards(context.Background(), &kinesis.ListShardsInput{StreamName: &f.stream})
	require.NoError(f.t, err)
	for _, s := range out.Shards {
		if s.SequenceNumberRange.EndingSequenceNumber != nil {
			continue
		}
		lo, _ := new(big.Int).SetString(*s.HashKeyRange.StartingHashKey, 10)
		hi, _ := new(big.Int).SetString(*s.HashKeyRange.EndingHashKey, 10)
		mid := new(big.Int).Rsh(new(big.Int).Add(lo, hi), 1)
		_, err := f.kin.SplitShard(context.Background(), &kinesis.SplitShardInput{
			StreamName: &f.stream, ShardToSplit: s.ShardId, NewStartingHashKey: aws.String(mid.String()),
		})
		require.NoError(f.t, err)
		f.waitActive()
		return
	}
	f.t.Fatal("no open shard to split")
}

// mergeFirstAdjacent merges the two open shards with adjacent hash ranges
// that come first.
func (f *fixture) mergeFirstAdjacent() {
	f.t.Helper()
	out, err := f.kin.ListShards(context.Background(), &kinesis.ListShardsInput{StreamName: &f.stream})
	require.NoError(f.t, err)
	ends := map[string]string{} // ending hash key + 1 -> shard
	for _, s := range out.Shards {
		if s.SequenceNumberRange.EndingSequenceNumber == nil {
			hi, _ := new(big.Int).SetString(*s.HashKeyRange.EndingHashKey, 10)
			ends[new(big.Int).Add(hi, big.NewInt(1)).String()] = *s.ShardId
		}
	}
	for _, s := range out.Shards {
		if s.SequenceNumberRange.EndingSequenceNumber != nil {
			continue
		}
		if left, ok := ends[*s.HashKeyRange.StartingHashKey]; ok {
			_, err := f.kin.MergeShards(context.Background(), &kinesis.MergeShardsInput{
				StreamName: &f.stream, ShardToMerge: aws.String(left), AdjacentShardToMerge: s.ShardId,
			})
			require.NoError(f.t, err)
			f.waitActive()
			return
		}
	}
	f.t.Fatal("no adjacent open shards to merge")
}

// checkKeyOrder fails unless, for every key, the records arrive in the order
// they were written (data is "<prefix>k<key>:<index>").
func checkKeyOrder(t *testing.T, recs []Record) {
	t.Helper()
	last := map[string]int{}
	for _, r := range recs {
		d := string(r.Data)
		colon := strings.LastIndexByte(d, ':')
		i, err := strconv.Atoi(d[colon+1:])
		require.NoError(t, err)
		key := r.PartitionKey
		if prev, ok := last[key]; ok {
			require.Greater(t, i, prev, "key %s: record %d delivered after %d", key, i, prev)
		}
		last[key] = i
	}
}

// readThroughReshards writes keyed records while a consumer with opts reads
// them, held back so that parents still hold unread records while a split
// and then a merge (one child, two parents) fill their children. It returns
// what was written and what was received.
func readThroughReshards(t *testing.T, f *fixture, opts Options) (all []put, got []Record) {
	t.Helper()
	n := 0
	put := func(count int) []put {
		ps := f.put(count, func(i int) string { return fmt.Sprintf("k%d", (n+i)%10) }, func(i int) string { return fmt.Sprintf("k%d:%06d", (n+i)%10, n+i) })
		n += count
		return ps
	}
	all = put(100)
	s := startConsumer(t, opts)
	got = s.receive(10, 30*time.Second, ackAll)
	f.split()
	all = append(all, put(100)...)
	got = append(got, s.receive(40, 30*time.Second, ackAll)...)
	f.mergeFirstAdjacent()
	all = append(all, put(100)...)
	got = append(got, s.receive(len(all)-len(got), 30*time.Second, ackAll)...)
	s.quiet(300 * time.Millisecond)
	require.NoError(t, s.stop(nil))
	return all, got
}

func TestReshardingKeepsPerKeyOrder(t *testing.T) {
	for _, server := range []struct {
		name string
		s    **emulator.Server
	}{{"kinesis-local", &emu.kinesisLocal}, {"kinesalite", &emu.kinesalite}} {
		t.Run(server.name, func(t *testing.T) {
			noLeak(t)
			f := newFixture(t, *server.s, 2)
			opts := f.options()
			opts.ShardSyncInterval = time.Hour // shard ends alone must find the children
			opts.MaxRecords = 10
			all, got := readThroughReshards(t, f, opts)
			require.ElementsMatch(t, putData(all), dataOf(got))
			checkKeyOrder(t, got)
			checkShardOrder(t, got)
			ended := 0
			for shard, item := range f.leaseItems() {
				if str(item, attrCheckpoint) == checkpointShardEnd {
					ended++
					assert.Empty(t, str(item, attrOwner), "ended shard %s is not held", shard)
				}
			}
			assert.Equal(t, 3, ended, "the split parent and the two merged parents ended")

			// A consumer starting after the resharding reads the whole
			// lineage from the start, parents before children.
			opts.AppName = "fresh-" + f.app
			s := startConsumer(t, opts)
			again := s.receive(len(all), 30*time.Second, ackAll)
			s.quiet(300 * time.Millisecond)
			require.NoError(t, s.stop(nil))
			require.ElementsMatch(t, putData(all), dataOf(again))
			checkKeyOrder(t, again)
		})
	}
}

// A merged child's second parent can be a shard born after the worker last
// listed the stream (here the child of a split whose parent is still being
// read). The child is not read before that parent, nor before its parent.
func TestMergedChildWaitsForAParentNotYetListed(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 2)
	before := f.putN(20, 10, "a")
	opts := f.options()
	opts.ShardSyncInterval = time.Hour // only the shard ends tell of new shards
	s := startConsumer(t, opts)
	first, second := "shardId-000000000000", "shardId-000000000001"
	got := s.receive(len(before), 30*time.Second, func(r Record) bool { return r.ShardID == second })
	var held []Record // the first shard's records: unacked, it cannot end
	for _, r := range got {
		if r.ShardID == first {
			held = append(held, r)
		}
	}
	require.NotEmpty(t, held)

	f.split()              // first -> 2, 3
	f.mergeFirstAdjacent() // 3 + second -> 4, a child with a parent this worker never listed
	require.Eventually(t, func() bool {
		return str(f.leaseItems()[second], attrCheckpoint) == checkpointShardEnd
	}, 10*time.Second, 20*time.Millisecond, "the second shard ends")
	after := f.put(20, func(i int) string { return fmt.Sprintf("k%d", i%10) }, func(i int) string { return fmt.Sprintf("bk%d:%06d", i%10, 100+i) })
	s.quiet(2 * time.Second) // 2 and 4 wait for the first shard, 4 through 3

	for _, r := range held {
		r.Ack()
	}
	got = append(got, s.receive(len(after), 30*time.Second, ackAll)...)
	s.quiet(300 * time.Millisecond)
	require.NoError(t, s.stop(nil))
	require.ElementsMatch(t, putData(append(before, after...)), dataOf(got))
	checkKeyOrder(t, got)
}
