package kcl

import (
	"bytes"
	"context"
	"crypto/md5"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
)

// aggregate writes records in the KPL format, as the KPL does: shared
// partition and explicit hash key tables, one tag on every record.
func aggregate(records []userRecord) []byte {
	var pkTable, ehkTable []string
	index := func(table *[]string, v string) uint64 {
		for i, s := range *table {
			if s == v {
				return uint64(i)
			}
		}
		*table = append(*table, v)
		return uint64(len(*table) - 1)
	}
	var recs [][]byte
	for _, r := range records {
		var b []byte
		b = protowire.AppendTag(b, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, index(&pkTable, r.partitionKey))
		if r.explicitHashKey != "" {
			b = protowire.AppendTag(b, 2, protowire.VarintType)
			b = protowire.AppendVarint(b, index(&ehkTable, r.explicitHashKey))
		}
		b = protowire.AppendTag(b, 3, protowire.BytesType)
		b = protowire.AppendBytes(b, r.data)
		var tag []byte // a Tag{key: "k", value: "v"}, which kcl ignores
		tag = protowire.AppendTag(tag, 1, protowire.BytesType)
		tag = protowire.AppendString(tag, "k")
		tag = protowire.AppendTag(tag, 2, protowire.BytesType)
		tag = protowire.AppendString(tag, "v")
		b = protowire.AppendTag(b, 4, protowire.BytesType)
		b = protowire.AppendBytes(b, tag)
		recs = append(recs, b)
	}
	var body []byte
	for _, pk := range pkTable {
		body = protowire.AppendTag(body, 1, protowire.BytesType)
		body = protowire.AppendString(body, pk)
	}
	for _, ehk := range ehkTable {
		body = protowire.AppendTag(body, 2, protowire.BytesType)
		body = protowire.AppendString(body, ehk)
	}
	for _, r := range recs {
		body = protowire.AppendTag(body, 3, protowire.BytesType)
		body = protowire.AppendBytes(body, r)
	}
	sum := md5.Sum(body)
	return append(append(append([]byte{}, kplMagic...), body...), sum[:]...)
}

// field encodes a length-delimited protobuf field.
func field(num protowire.Number, v []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), v)
}

// rawRecord encodes a Record with a partition key index and, unless data is
// nil, data.
func rawRecord(pk uint64, data []byte) []byte {
	b := protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), pk)
	if data != nil {
		b = append(b, field(3, data)...)
	}
	return b
}

// withMD5 frames body as an aggregate with a correct MD5.
func withMD5(body []byte) []byte {
	sum := md5.Sum(body)
	return append(append(append([]byte{}, kplMagic...), body...), sum[:]...)
}

func TestDeaggregate(t *testing.T) {
	three := []userRecord{
		{partitionKey: "a", data: []byte("one")},
		{partitionKey: "b", explicitHashKey: "123", data: []byte("two")},
		{partitionKey: "a", data: []byte{}},
	}
	good := aggregate(three)
	badMD5 := bytes.Clone(good)
	badMD5[len(badMD5)-1] ^= 0xff
	tests := []struct {
		name      string
		in        []byte
		aggregate bool
		want      []userRecord
		err       string
	}{
		{"plain record", []byte("hello"), false, nil, ""},
		{"empty record", nil, false, nil, ""},
		{"three user records, shared tables, tags ignored", good, true, three, ""},
		{"bad MD5", badMD5, true, nil, "MD5"},
		{"only the magic", kplMagic, true, nil, "shorter"},
		{"truncated protobuf", withMD5([]byte{0x1a, 0x05, 0x08}), true, nil, "aggregate"},
		{"partition key index out of the table", withMD5(append(field(1, []byte("k")), field(3, rawRecord(4, []byte("d")))...)), true, nil, "out of a table"},
		{"record without data", withMD5(append(field(1, []byte("k")), field(3, rawRecord(0, nil))...)), true, nil, "lacks"},
		{"no records", withMD5(nil), true, nil, "no record"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, isAggregate, err := deaggregate(tt.in)
			assert.Equal(t, tt.aggregate, isAggregate)
			if tt.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.err)
				return
			}
			require.NoError(t, err)
			require.Len(t, got, len(tt.want))
			for i := range tt.want {
				assert.Equal(t, tt.want[i].partitionKey, got[i].partitionKey)
				assert.Equal(t, tt.want[i].explicitHashKey, got[i].explicitHashKey)
				assert.Equal(t, string(tt.want[i].data), string(got[i].data))
			}
		})
	}
}

// FuzzDeaggregate: any input decodes without panicking; what decodes
// re-encodes to records that decode the same.
func FuzzDeaggregate(f *testing.F) {
	f.Add([]byte("plain"))
	f.Add(kplMagic)
	f.Add(aggregate([]userRecord{{partitionKey: "p", data: []byte("d")}}))
	f.Add(aggregate([]userRecord{{partitionKey: "p", explicitHashKey: "42", data: []byte("d")}, {partitionKey: "q", data: nil}}))
	f.Add(withMD5([]byte{0x0a, 0x01, 'k', 0x1a, 0x04, 0x08, 0x00, 0x1a, 0x00}))
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, isAggregate, err := deaggregate(data)
		if !isAggregate || err != nil {
			assert.Empty(t, recs)
			return
		}
		again, isAggregate, err := deaggregate(aggregate(recs))
		require.NoError(t, err)
		require.True(t, isAggregate)
		require.Len(t, again, len(recs))
		for i := range recs {
			require.Equal(t, recs[i].partitionKey, again[i].partitionKey)
			require.Equal(t, recs[i].explicitHashKey, again[i].explicitHashKey)
			require.True(t, bytes.Equal(recs[i].data, again[i].data))
		}
	})
}

// putAggregates writes n aggregated records of per user records each to the
// stream. Aggregate i is routed by the explicit hash key aggHashKey(i, 0),
// and its user records carry aggHashKey(i, j): each aggregate lands whole
// in the shard that owns its user records' keys, whatever the shards.
func (f *fixture) putAggregates(n, per int, prefix string) (users []string) {
	f.t.Helper()
	for i := range n {
		var recs []userRecord
		for j := range per {
			d := fmt.Sprintf("%s%03d.%03d", prefix, i, j)
			recs = append(recs, userRecord{partitionKey: fmt.Sprintf("user-%d-%d", i, j), explicitHashKey: aggHashKey(i, j), data: []byte(d)})
			users = append(users, d)
		}
		_, err := f.kin.PutRecord(context.Background(), &kinesis.PutRecordInput{StreamName: &f.stream, PartitionKey: aws.String(fmt.Sprintf("agg-%d", i)),
			ExplicitHashKey: aws.String(aggHashKey(i, 0)), Data: aggregate(recs)})
		require.NoError(f.t, err)
	}
	return users
}

// aggHashKey is the explicit hash key of user record j of aggregate i
// (putAggregates): in the i%4-th quarter of the key space, near its start.
func aggHashKey(i, j int) string {
	k := new(big.Int).Lsh(big.NewInt(int64(i%4)), 126)
	return k.Add(k, big.NewInt(int64(1000+j))).String()
}

func TestAggregatedRecordsAreSplitInOrder(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 2)
	users := f.putAggregates(6, 5, "a")
	plain := f.putN(4, 2, "plain")
	s := startConsumer(t, f.options())
	got := s.receive(len(users)+len(plain), 30*time.Second, ackAll)
	s.quiet(300 * time.Millisecond)
	require.NoError(t, s.stop(nil))
	require.ElementsMatch(t, append(users, putData(plain)...), dataOf(got))
	checkShardOrder(t, got)
	for _, r := range got {
		if bytes.HasPrefix(r.Data, []byte("a")) {
			var i, j int
			_, err := fmt.Sscanf(string(r.Data), "a%03d.%03d", &i, &j)
			require.NoError(t, err)
			assert.EqualValues(t, j, r.SubSequenceNumber)
			assert.Equal(t, fmt.Sprintf("user-%d-%d", i, j), r.PartitionKey)
			assert.Equal(t, aggHashKey(i, j), r.ExplicitHashKey)
		} else {
			assert.Zero(t, r.SubSequenceNumber)
			assert.Empty(t, r.ExplicitHashKey)
		}
	}
}

func TestRestartInsideAnAggregateSkipsExactlyTheCheckpointedSubRecords(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 1)
	users := f.putAggregates(3, 4, "a") // 12 user records in 3 Kinesis records
	opts := f.options()
	opts.ShutdownTimeout = 200 * time.Millisecond
	s := startConsumer(t, opts)
	got := s.receive(len(users), 30*time.Second, func(Record) bool { return false })
	for _, r := range got[:6] { // the first aggregate and half of the second
		r.Ack()
	}
	require.NoError(t, s.stop(nil))
	item := f.leaseItems()[got[0].ShardID]
	assert.Equal(t, got[5].SequenceNumber, str(item, attrCheckpoint))
	assert.Equal(t, "1", str(item, attrCheckpointSub))

	s = startConsumer(t, opts)
	again := s.receive(6, 30*time.Second, ackAll)
	s.quiet(300 * time.Millisecond)
	require.NoError(t, s.stop(nil))
	assert.Equal(t, users[6:], dataOf(again), "resumes at sub-record 2 of the second aggregate")
	assert.EqualValues(t, 2, again[0].SubSequenceNumber)
}

func TestMalformedAggregateIsDeliveredWholeAndLogged(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 1)
	good := aggregate([]userRecord{{partitionKey: "p", data: []byte("inside")}})
	badMD5 := bytes.Clone(good)
	badMD5[len(badMD5)-1] ^= 0xff
	garbage := withMD5([]byte{0xff, 0xff, 0xff})
	var want []string
	for _, data := range [][]byte{badMD5, garbage, []byte("after")} {
		_, err := f.kin.PutRecords(context.Background(), &kinesis.PutRecordsInput{StreamName: &f.stream,
			Records: []types.PutRecordsRequestEntry{{PartitionKey: aws.String("k"), Data: data}}})
		require.NoError(t, err)
		want = append(want, string(data))
	}
	var logs bytes.Buffer
	opts := f.options()
	opts.Logger = slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, nil))
	s := startConsumer(t, opts)
	got := s.receive(3, 30*time.Second, ackAll)
	require.NoError(t, s.stop(nil))
	assert.Equal(t, want, dataOf(got), "malformed aggregates arrive as they are, and the shard goes on")
	assert.Contains(t, logs.String(), "malformed aggregated record delivered whole")
	assert.NotContains(t, logs.String(), "inside", "no payload is logged")
}

func TestHashRangeHolds(t *testing.T) {
	half := new(big.Int).Lsh(big.NewInt(1), 127)
	top := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 128), big.NewInt(1))
	low := newHashRange(big.NewInt(0), new(big.Int).Sub(half, big.NewInt(1)))
	high := newHashRange(half, top)
	md5Of := func(pk string) *big.Int { sum := md5.Sum([]byte(pk)); return new(big.Int).SetBytes(sum[:]) }
	var lowPK, highPK string // partition keys whose MD5 falls in each half
	for i := 0; lowPK == "" || highPK == ""; i++ {
		pk := fmt.Sprint("k", i)
		if md5Of(pk).Cmp(half) < 0 {
			lowPK = pk
		} else {
			highPK = pk
		}
	}
	for _, tt := range []struct {
		name string
		r    hashRange
		u    userRecord
		want bool
	}{
		{"a range not known holds every key", hashRange{}, userRecord{partitionKey: highPK}, true},
		{"the partition key's MD5 in range", low, userRecord{partitionKey: lowPK}, true},
		{"the partition key's MD5 out of range", low, userRecord{partitionKey: highPK}, false},
		{"... in the other shard's", high, userRecord{partitionKey: highPK}, true},
		{"the explicit hash key decides, not the partition key", low, userRecord{partitionKey: lowPK, explicitHashKey: half.String()}, false},
		{"the first key of the range", high, userRecord{explicitHashKey: half.String()}, true},
		{"the last key of the range", high, userRecord{explicitHashKey: top.String()}, true},
		{"the last key of the lower range", low, userRecord{explicitHashKey: new(big.Int).Sub(half, big.NewInt(1)).String()}, true},
		{"an explicit hash key that is no number is held", low, userRecord{partitionKey: highPK, explicitHashKey: "x"}, true},
		{"an explicit hash key over 128 bits is held", low, userRecord{explicitHashKey: new(big.Int).Lsh(big.NewInt(1), 128).String()}, true},
		{"a negative explicit hash key is held", high, userRecord{explicitHashKey: "-1"}, true},
	} {
		assert.Equal(t, tt.want, tt.r.holds(tt.u), tt.name)
	}
	assert.False(t, newHashRange(nil, top).known, "a range without its start is not known")
	assert.False(t, newHashRange(big.NewInt(0), new(big.Int).Lsh(big.NewInt(1), 128)).known, "out of 128 bits")
}

// Producers of the KPL format other than the KPL (a8m/kinesis-producer,
// kinesis-aggregation) aggregate user records of any keys into one Kinesis
// record, routed by the first one's key, and never put them again: every
// user record is delivered, from the shard the aggregate landed on, never
// dropped. Dropping those outside the shard's range, as the Java KCL does
// for the KPL (which puts them again after a split), lost all but one
// shard's worth of them (found by a review). A warning says so once.
func TestAUserRecordOnTheWrongShardIsDeliveredAllTheSame(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 2)            // shard 0 owns the lower half of the keys, shard 1 the upper
	lower, upper := aggHashKey(0, 0), aggHashKey(2, 0) // the first and third quarters
	put := func(routeBy string, recs ...userRecord) {
		_, err := f.kin.PutRecord(context.Background(), &kinesis.PutRecordInput{StreamName: &f.stream, PartitionKey: aws.String("agg"), ExplicitHashKey: aws.String(routeBy), Data: aggregate(recs)})
		require.NoError(t, err)
	}
	// Any keys in one aggregate, routed by the first one's.
	put(lower, userRecord{partitionKey: "a", explicitHashKey: lower, data: []byte("lower")}, userRecord{partitionKey: "b", explicitHashKey: upper, data: []byte("upper")})
	// A whole aggregate on the wrong shard (the KPL's shard map older than
	// a split): warned of, and delivered.
	put(lower, userRecord{partitionKey: "c", explicitHashKey: upper, data: []byte("stale")})
	var logs bytes.Buffer
	opts := f.options()
	opts.Logger = slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, nil))
	s := startConsumer(t, opts)
	got := s.receive(3, 30*time.Second, ackAll)
	s.quiet(time.Second)
	require.NoError(t, s.stop(nil))
	require.ElementsMatch(t, []string{"lower", "upper", "stale"}, dataOf(got), "every user record, never dropped")
	for _, r := range got {
		assert.Equal(t, "shardId-000000000000", r.ShardID, "from the shard the aggregate landed on")
	}
	assert.Equal(t, 1, strings.Count(logs.String(), "outside the shard's hash-key range"), "one warning, for the aggregate whose first user record is misplaced")
}

// A user record's Data is its own: appending to it leaves the next user
// record of the aggregate as it was (Record.Data's contract).
func TestAppendingToAUserRecordLeavesTheNextAlone(t *testing.T) {
	users, _, err := deaggregate(aggregate([]userRecord{{partitionKey: "a", data: []byte("first")}, {partitionKey: "b", data: []byte("second")}}))
	require.NoError(t, err)
	require.Len(t, users, 2)
	_ = append(users[0].data, "XXXXXXXXXXXXXXXX"...)
	assert.Equal(t, "second", string(users[1].data))
}
