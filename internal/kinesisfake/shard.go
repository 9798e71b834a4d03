package kinesisfake

import (
	"crypto/md5"
	"fmt"
	"math/big"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// stream is one stream's state; every field is guarded by Server.mu.
type stream struct {
	name, arn string
	created   time.Time
	shards    []*shard // not removed, in creation (= shard ID) order
	byID      map[string]*shard
	shardNum  int       // number of the next shard ID
	seq       uint64    // last sequence number given out
	ledger    []*record // every record ever put, in sequence order
}

// shard is one shard of a stream.
type shard struct {
	id                     string
	parent, adjacentParent string
	first, last            *big.Int // hash key range, both ends included
	startSeq, endSeq       uint64   // endSeq is 0 while the shard is open
	created, closed        time.Time
	records                []*record // not trimmed, in sequence order
	trimmed                int       // records dropped from the front
	children               []types.ChildShard
}

func (sh *shard) open() bool { return sh.endSeq == 0 }

// end is the position after the shard's last record. A position counts every
// record the shard ever held, trimmed ones included.
func (sh *shard) end() int { return sh.trimmed + len(sh.records) }

// describe returns the shard as ListShards lists it.
func (sh *shard) describe() types.Shard {
	out := types.Shard{
		ShardId:             aws.String(sh.id),
		HashKeyRange:        hashKeyRange(sh),
		SequenceNumberRange: &types.SequenceNumberRange{StartingSequenceNumber: aws.String(formatSeq(sh.startSeq))},
	}
	if !sh.open() {
		out.SequenceNumberRange.EndingSequenceNumber = aws.String(formatSeq(sh.endSeq))
	}
	if sh.parent != "" {
		out.ParentShardId = aws.String(sh.parent)
	}
	if sh.adjacentParent != "" {
		out.AdjacentParentShardId = aws.String(sh.adjacentParent)
	}
	return out
}

func hashKeyRange(sh *shard) *types.HashKeyRange {
	return &types.HashKeyRange{StartingHashKey: aws.String(sh.first.String()), EndingHashKey: aws.String(sh.last.String())}
}

// Hash keys are 128-bit unsigned integers, written in decimal.
var (
	hashSpace  = new(big.Int).Lsh(big.NewInt(1), 128) // 2^128
	maxHashKey = new(big.Int).Sub(hashSpace, big.NewInt(1))
)

// hashOf is the hash key of a partition key: its MD5 as a big-endian integer.
func hashOf(partitionKey string) *big.Int {
	sum := md5.Sum([]byte(partitionKey))
	return new(big.Int).SetBytes(sum[:])
}

func parseHashKey(s string) (*big.Int, error) {
	k, ok := new(big.Int).SetString(s, 10)
	if !ok || k.Sign() < 0 || k.Cmp(maxHashKey) > 0 || strings.HasPrefix(s, "+") {
		return nil, invalidArgument("hash key %q is not a decimal integer in 0..2^128-1", s)
	}
	return k, nil
}

// evenStarts returns the starting hash keys of n ranges splitting the hash
// key space evenly: floor(i * 2^128 / n).
func evenStarts(n int) []*big.Int {
	starts := make([]*big.Int, n)
	for i := range starts {
		k := new(big.Int).Mul(hashSpace, big.NewInt(int64(i)))
		starts[i] = k.Div(k, big.NewInt(int64(n)))
	}
	return starts
}

// rangeLast is the ending hash key of range i of starts.
func rangeLast(starts []*big.Int, i int) *big.Int {
	if i == len(starts)-1 {
		return new(big.Int).Set(maxHashKey)
	}
	return new(big.Int).Sub(starts[i+1], big.NewInt(1))
}

// Sequence numbers are "49" and 54 zero-padded digits of a counter per
// stream, so that their lexical and numeric orders agree.
const seqDigits = 56

func formatSeq(n uint64) string { return fmt.Sprintf("49%054d", n) }

func parseSeq(s string) (uint64, bool) {
	if len(s) != seqDigits || !strings.HasPrefix(s, "49") {
		return 0, false
	}
	n, err := strconv.ParseUint(s[2:], 10, 64)
	return n, err == nil
}

func (st *stream) nextSeq() uint64 {
	st.seq++
	return st.seq
}

// newShard opens a shard over first..last; its starting sequence number is
// below that of every record it will hold.
func (st *stream) newShard(first, last *big.Int, parent, adjacentParent string, now time.Time) *shard {
	sh := &shard{
		id:             fmt.Sprintf("shardId-%012d", st.shardNum),
		parent:         parent,
		adjacentParent: adjacentParent,
		first:          first,
		last:           last,
		startSeq:       st.nextSeq(),
		created:        now,
	}
	st.shardNum++
	st.shards = append(st.shards, sh)
	st.byID[sh.id] = sh
	return sh
}

// close closes sh: its ending sequence number is above that of every record
// it holds and below that of every shard opened after.
func (st *stream) close(sh *shard, now time.Time) {
	sh.endSeq = st.nextSeq()
	sh.closed = now
}

// openShard returns the open shard id, or the error AWS gives when it is
// missing or closed.
func (st *stream) openShard(id string) (*shard, error) {
	sh := st.byID[id]
	if sh == nil {
		return nil, shardNotFound(st, id)
	}
	if !sh.open() {
		return nil, invalidArgument("shard %s in stream %s is closed", id, st.name)
	}
	return sh, nil
}

// route returns the open shard whose range holds key.
func (st *stream) route(key *big.Int) *shard {
	for _, sh := range st.shards {
		if sh.open() && sh.first.Cmp(key) <= 0 && key.Cmp(sh.last) <= 0 {
			return sh
		}
	}
	panic("kinesisfake: open shards do not cover hash key " + key.String())
}

// openInRange returns the open shards within first..last, in hash key order.
func (st *stream) openInRange(first, last *big.Int) []*shard {
	var in []*shard
	for _, sh := range st.shards {
		if sh.open() && sh.first.Cmp(first) >= 0 && sh.last.Cmp(last) <= 0 {
			in = append(in, sh)
		}
	}
	sort.Slice(in, func(i, j int) bool { return in[i].first.Cmp(in[j].first) < 0 })
	return in
}

func adjacent(a, b *shard) bool {
	one := big.NewInt(1)
	return new(big.Int).Add(a.last, one).Cmp(b.first) == 0 || new(big.Int).Add(b.last, one).Cmp(a.first) == 0
}

// split closes sh and opens its two children, below and from at.
func (st *stream) split(sh *shard, at *big.Int, now time.Time) {
	st.close(sh, now)
	low := st.newShard(sh.first, new(big.Int).Sub(at, big.NewInt(1)), sh.id, "", now)
	high := st.newShard(new(big.Int).Set(at), sh.last, sh.id, "", now)
	for _, c := range []*shard{low, high} {
		sh.children = append(sh.children, types.ChildShard{ShardId: aws.String(c.id), ParentShards: []string{sh.id}, HashKeyRange: hashKeyRange(c)})
	}
}

// merge closes the adjacent shards a and b and opens their child, with a as
// parent and b as adjacent parent.
func (st *stream) merge(a, b *shard, now time.Time) *shard {
	st.close(a, now)
	st.close(b, now)
	first, last := a.first, b.last
	if b.first.Cmp(a.first) < 0 {
		first, last = b.first, a.last
	}
	c := st.newShard(first, last, a.id, b.id, now)
	child := types.ChildShard{ShardId: aws.String(c.id), ParentShards: []string{a.id, b.id}, HashKeyRange: hashKeyRange(c)}
	a.children = append(a.children, child)
	b.children = append(b.children, child)
	return c
}

// scale reshapes the open shards into target even ranges by splits, then
// pairwise merges (see Server.UpdateShardCount).
func (st *stream) scale(target int, now time.Time) {
	starts := evenStarts(target)
	for _, at := range starts[1:] {
		if sh := st.route(at); sh.first.Cmp(at) != 0 {
			st.split(sh, at, now)
		}
	}
	for i := range starts {
		first, last := starts[i], rangeLast(starts, i)
		for {
			in := st.openInRange(first, last)
			if len(in) == 1 {
				break
			}
			for j := 0; j+1 < len(in); j += 2 {
				st.merge(in[j], in[j+1], now)
			}
		}
	}
}

// trim drops the records that arrived before now-retention and removes the
// closed shards left empty that closed before then.
func (st *stream) trim(now time.Time, retention time.Duration) {
	cutoff := now.Add(-retention)
	var gone []*shard
	for _, sh := range st.shards {
		n := 0
		for n < len(sh.records) && sh.records[n].arrival.Before(cutoff) {
			sh.records[n].trimmedAt = now
			n++
		}
		sh.records = sh.records[n:] // the next append that grows it drops the prefix
		sh.trimmed += n
		if !sh.open() && len(sh.records) == 0 && sh.closed.Before(cutoff) {
			gone = append(gone, sh)
		}
	}
	for _, sh := range gone {
		st.remove(sh, now)
	}
}

// remove deletes sh from the stream, marking its records trimmed.
func (st *stream) remove(sh *shard, now time.Time) {
	for _, r := range sh.records {
		r.trimmedAt = now
	}
	sh.trimmed += len(sh.records)
	sh.records = nil
	delete(st.byID, sh.id)
	for i, x := range st.shards {
		if x == sh {
			st.shards = append(st.shards[:i:i], st.shards[i+1:]...)
			break
		}
	}
}
