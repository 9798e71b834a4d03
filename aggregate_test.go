package kcl

import (
	"bytes"
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"math/rand/v2"
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

// deaggregateWhole is how kcl split an aggregate before kplSplitter: all of
// it at once, holding 56 bytes per user record while they waited for room.
// It stays as the oracle kplSplitter is checked against.
// isAggregate is false when data does not start with the magic bytes: it is a
// plain record. err says why an aggregate is malformed (bad MD5, bad
// protobuf, an index out of its table); the caller then delivers it whole.
func deaggregateWhole(data []byte) (records []userRecord, isAggregate bool, err error) {
	if !isAggregated(data) {
		return nil, false, nil
	}
	if len(data) < len(kplMagic)+md5.Size {
		return nil, true, errors.New("aggregate shorter than its magic bytes and MD5")
	}
	body := data[len(kplMagic) : len(data)-md5.Size]
	if sum := md5.Sum(body); !bytes.Equal(sum[:], data[len(data)-md5.Size:]) {
		return nil, true, errors.New("aggregate MD5 does not match")
	}
	var pkTable, ehkTable []string
	var raws []kplRecord
	for len(body) > 0 {
		num, typ, n := protowire.ConsumeTag(body)
		if n < 0 {
			return nil, true, fmt.Errorf("aggregate: %w", protowire.ParseError(n))
		}
		body = body[n:]
		if typ != protowire.BytesType || num < 1 || num > 3 {
			n = protowire.ConsumeFieldValue(num, typ, body)
			if n < 0 {
				return nil, true, fmt.Errorf("aggregate field %d: %w", num, protowire.ParseError(n))
			}
			body = body[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(body)
		if n < 0 {
			return nil, true, fmt.Errorf("aggregate field %d: %w", num, protowire.ParseError(n))
		}
		body = body[n:]
		switch num {
		case 1:
			pkTable = append(pkTable, string(v))
		case 2:
			ehkTable = append(ehkTable, string(v))
		case 3:
			r, err := parseRawRecord(v, len(raws))
			if err != nil {
				return nil, true, err
			}
			raws = append(raws, r)
		}
	}
	records = make([]userRecord, len(raws))
	for i, r := range raws {
		if !r.hasPK || !r.hasData {
			return nil, true, fmt.Errorf("aggregate record %d lacks its partition key index or data", i)
		}
		if r.pk >= uint64(len(pkTable)) {
			return nil, true, fmt.Errorf("aggregate record %d: partition key index %d out of a table of %d", i, r.pk, len(pkTable))
		}
		records[i] = userRecord{partitionKey: pkTable[r.pk], data: r.data}
		if r.hasEHK {
			if r.ehk >= uint64(len(ehkTable)) {
				return nil, true, fmt.Errorf("aggregate record %d: explicit hash key index %d out of a table of %d", i, r.ehk, len(ehkTable))
			}
			records[i].explicitHashKey = ehkTable[r.ehk]
		}
	}
	if len(records) == 0 {
		return nil, true, errors.New("aggregate holds no record")
	}
	return records, true, nil
}

// deaggregate splits data with s, one user record at a time, as
// pageRecords does, and returns them all, in deaggregateWhole's terms.
func deaggregate(s *kplSplitter, data []byte) (records []userRecord, isAggregate bool, err error) {
	if !isAggregated(data) {
		return nil, false, nil
	}
	if err := s.open(data); err != nil {
		return nil, true, err
	}
	for {
		u, ok, err := s.next()
		if err != nil {
			return nil, true, err
		}
		if !ok {
			return records, true, nil
		}
		records = append(records, u)
	}
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
			got, isAggregate, err := deaggregate(new(kplSplitter), tt.in)
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

// The lazy splitter splits every aggregate as deaggregateWhole did: the
// same user records, or the same error, before any user record is handed
// out. One splitter serves them all in turn, as a page's does.
func TestKPLSplitterSplitsAsTheWholeSplit(t *testing.T) {
	rng := rand.New(rand.NewPCG(27, 4))
	type testCase struct {
		name string
		in   []byte
	}
	var tests []testCase
	for i := range 200 {
		recs := make([]userRecord, 1+rng.IntN(300))
		keys := 1 + rng.IntN(len(recs)) // shared keys, down to one for all
		for j := range recs {
			recs[j] = userRecord{partitionKey: fmt.Sprint("pk-", rng.IntN(keys)), data: bytes.Repeat([]byte{byte(j)}, rng.IntN(50))}
			if i%3 == 0 && rng.IntN(2) == 0 {
				recs[j].explicitHashKey = fmt.Sprint(rng.Uint64())
			}
			if i%7 == 0 {
				recs[j].partitionKey = "" // empty keys
			}
		}
		tests = append(tests, testCase{fmt.Sprintf("random %d: %d user records, %d keys", i, len(recs), keys), aggregate(recs)})
	}
	k, l := field(1, []byte("k")), field(1, []byte("l"))
	r0, r1 := field(3, rawRecord(0, []byte("zero"))), field(3, rawRecord(1, []byte("one")))
	withEHK := func(pk, ehk uint64, data string) []byte {
		b := protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), pk)
		b = protowire.AppendVarint(protowire.AppendTag(b, 2, protowire.VarintType), ehk)
		return field(3, append(b, field(3, []byte(data))...))
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	many := func(n int, bad []byte, at int) []byte { // n good records under k, bad in place of record at
		parts := [][]byte{k}
		for i := range n {
			if i == at {
				parts = append(parts, bad)
			} else {
				parts = append(parts, field(3, rawRecord(0, []byte{byte(i)})))
			}
		}
		return withMD5(cat(parts...))
	}
	unknownTop := cat(protowire.AppendVarint(protowire.AppendTag(nil, 5, protowire.VarintType), 9), field(7, []byte("x")))
	unknownInner := field(3, cat(rawRecord(0, []byte("d")), protowire.AppendVarint(protowire.AppendTag(nil, 9, protowire.VarintType), 1)))
	nonMinimalLength := cat([]byte{0x0a, 0x81, 0x00}, []byte("k")) // the key's length 1 in two bytes
	twoKeyIndexes := field(3, cat(protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 5), rawRecord(1, []byte("d"))))
	good := aggregate([]userRecord{{partitionKey: "a", data: []byte("x")}})
	badMD5 := bytes.Clone(good)
	badMD5[len(badMD5)-1] ^= 0xff
	tests = append(tests, []testCase{
		{"plain record", []byte("plain")},
		{"only the magic", kplMagic},
		{"bad MD5", badMD5},
		{"tables after the records", withMD5(cat(r0, r1, k, l))},
		{"tables and records interleaved", withMD5(cat(k, r0, l, r1))},
		{"explicit hash keys", withMD5(cat(k, l, field(2, []byte("7")), withEHK(1, 0, "d"), r0))},
		{"unknown fields at the top, skipped", withMD5(cat(unknownTop, k, unknownTop, r0, unknownTop))},
		{"unknown fields in a record, skipped", withMD5(cat(k, unknownInner))},
		{"a key length in more bytes than needed", withMD5(cat(nonMinimalLength, r0))},
		{"a record with two key indexes: the last one", withMD5(cat(k, l, twoKeyIndexes))},
		{"only key tables", withMD5(cat(k, l))},
		{"no records", withMD5(nil)},
		{"partition key index out of the table, mid-aggregate", many(10, r1, 5)},
		{"record without data, mid-aggregate", many(10, field(3, rawRecord(0, nil)), 3)},
		{"explicit hash key index out of the table, mid-aggregate", many(10, withEHK(0, 0, "d"), 7)},
		{"an index out, then a record without data: the first one named", withMD5(cat(k, r0, r1, r0, field(3, rawRecord(0, nil))))},
		{"a record without data, then an index out: the first one named", withMD5(cat(k, field(3, rawRecord(0, nil)), r1))},
		{"truncated record, mid-aggregate", many(10, []byte{0x1a, 0x05, 0x08}, 6)},
		{"truncated key table entry", withMD5(cat(r0, []byte{0x0a, 0x05, 'k'}))},
		{"a record's data truncated", withMD5(cat(k, field(3, []byte{0x08, 0x00, 0x1a, 0x09, 'd'})))},
		{"an index past 32 bits", withMD5(cat(k, field(3, rawRecord(1<<40, []byte("d")))))},
	}...)
	var s kplSplitter
	for _, tt := range tests {
		want, wantAggregate, wantErr := deaggregateWhole(tt.in)
		got, isAggregate, err := deaggregate(&s, tt.in)
		assert.Equal(t, wantAggregate, isAggregate, tt.name)
		assert.Equal(t, fmt.Sprint(wantErr), fmt.Sprint(err), tt.name)
		t.Run(tt.name, func(t *testing.T) { requireSameUserRecords(t, want, got) })
	}
}

// FuzzDeaggregate: any input splits without panicking, one user record at
// a time, exactly as deaggregateWhole splits it (records, or the error); what
// splits re-encodes to records that split the same.
func FuzzDeaggregate(f *testing.F) {
	f.Add([]byte("plain"))
	f.Add(kplMagic)
	f.Add(aggregate([]userRecord{{partitionKey: "p", data: []byte("d")}}))
	f.Add(aggregate([]userRecord{{partitionKey: "p", explicitHashKey: "42", data: []byte("d")}, {partitionKey: "q", data: nil}}))
	f.Add(withMD5([]byte{0x0a, 0x01, 'k', 0x1a, 0x04, 0x08, 0x00, 0x1a, 0x00}))
	f.Add(withMD5(append(field(3, rawRecord(1, []byte("d"))), append(field(1, []byte("k")), field(1, []byte("l"))...)...)))
	warm := aggregate([]userRecord{{partitionKey: "a", explicitHashKey: "1", data: []byte("x")}, {partitionKey: "b", data: []byte("y")}})
	f.Fuzz(func(t *testing.T, data []byte) {
		var s kplSplitter
		_, _, err := deaggregate(&s, warm) // a splitter used before, as a page's is
		require.NoError(t, err)
		recs, isAggregate, err := deaggregate(&s, data)
		want, wantAggregate, wantErr := deaggregateWhole(data)
		require.Equal(t, wantAggregate, isAggregate)
		require.Equal(t, fmt.Sprint(wantErr), fmt.Sprint(err))
		requireSameUserRecords(t, want, recs)
		if !isAggregate || err != nil {
			return
		}
		again, isAggregate, err := deaggregate(&s, aggregate(recs))
		require.NoError(t, err)
		require.True(t, isAggregate)
		requireSameUserRecords(t, recs, again)
	})
}

func requireSameUserRecords(t *testing.T, want, got []userRecord) {
	t.Helper()
	require.Len(t, got, len(want))
	for i := range want {
		require.Equal(t, want[i].partitionKey, got[i].partitionKey, "user record %d", i)
		require.Equal(t, want[i].explicitHashKey, got[i].explicitHashKey, "user record %d", i)
		require.True(t, bytes.Equal(want[i].data, got[i].data), "user record %d", i)
		require.Equal(t, len(got[i].data), cap(got[i].data), "user record %d: no room past its data, so an append copies", i)
	}
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

// An aggregate is judged whole (kplSplitter.strays): one user record with
// a key outside the shard's range makes it misplaced, as the Java KCL
// judges it, whichever record it is and however the key is given.
func TestStrays(t *testing.T) {
	half := new(big.Int).Lsh(big.NewInt(1), 127)
	top := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 128), big.NewInt(1))
	low := newHashRange(big.NewInt(0), new(big.Int).Sub(half, big.NewInt(1)))
	whole := newHashRange(big.NewInt(0), top)
	in, out := aggHashKey(0, 0), aggHashKey(2, 0) // the first and third quarters
	var inPK, outPK string                        // partition keys whose MD5 falls in and out of low
	for i := 0; inPK == "" || outPK == ""; i++ {
		pk := fmt.Sprint("k", i)
		if low.holds(userRecord{partitionKey: pk}) {
			inPK = pk
		} else {
			outPK = pk
		}
	}
	for _, tt := range []struct {
		name  string
		r     hashRange
		users []userRecord
		stray bool
	}{
		{"every key in range", low, []userRecord{{partitionKey: inPK}, {partitionKey: "x", explicitHashKey: in}}, false},
		{"the last user record out", low, []userRecord{{partitionKey: inPK}, {partitionKey: inPK}, {partitionKey: outPK}}, true},
		{"the first user record out", low, []userRecord{{partitionKey: outPK}, {partitionKey: inPK}}, true},
		{"an explicit hash key out, its partition key in", low, []userRecord{{partitionKey: inPK}, {partitionKey: inPK, explicitHashKey: out}}, true},
		{"an explicit hash key in, its partition key out", low, []userRecord{{partitionKey: outPK, explicitHashKey: in}}, false},
		{"one key shared by records, out", low, []userRecord{{partitionKey: outPK}, {partitionKey: outPK}}, true},
		{"a range not known", hashRange{}, []userRecord{{partitionKey: outPK}}, false},
		{"the whole range: no look", whole, []userRecord{{partitionKey: outPK, explicitHashKey: out}}, false},
	} {
		var sp kplSplitter
		require.NoError(t, sp.open(aggregate(tt.users)), tt.name)
		stray, n := sp.strays(tt.r)
		assert.Equal(t, tt.stray, stray, tt.name)
		if tt.r.known && !tt.r.whole() {
			assert.Equal(t, len(tt.users), n, tt.name+": user records counted")
		}
		for range tt.users { // strays leaves the split where it was
			_, ok, err := sp.next()
			require.NoError(t, err)
			assert.True(t, ok, tt.name)
		}
	}
}

// The KPL aggregates user records by its shard map; after a split an
// aggregate may land on a shard that does not own all of its keys, and the
// KPL then puts every user record of it again, each on its own shard. kcl
// drops such an aggregate whole, as the Java KCL does: delivering it would
// deliver its user records twice (a review found them delivered). Other
// producers of the format, which aggregate any keys and never put them
// again, set KeepMisplacedAggregates and get every user record.
func TestAMisplacedAggregateIsDroppedUnlessKept(t *testing.T) {
	for _, keep := range []bool{false, true} {
		t.Run(fmt.Sprintf("keep=%v", keep), func(t *testing.T) {
			noLeak(t)
			f := newFixture(t, emu.kinesisLocal, 2)            // shard 0 owns the lower half of the keys, shard 1 the upper
			lower, upper := aggHashKey(0, 0), aggHashKey(2, 0) // the first and third quarters
			put := func(routeBy string, recs ...userRecord) {
				_, err := f.kin.PutRecord(context.Background(), &kinesis.PutRecordInput{StreamName: &f.stream, PartitionKey: aws.String("agg"), ExplicitHashKey: aws.String(routeBy), Data: aggregate(recs)})
				require.NoError(t, err)
			}
			put(lower, userRecord{partitionKey: "a", explicitHashKey: lower, data: []byte("placed")})
			// Keys of both shards in one aggregate, routed by the first one's.
			put(lower, userRecord{partitionKey: "b", explicitHashKey: lower, data: []byte("lower")}, userRecord{partitionKey: "secret-key", explicitHashKey: upper, data: []byte("upper")})
			// A whole aggregate on the wrong shard.
			put(lower, userRecord{partitionKey: "c", explicitHashKey: upper, data: []byte("stale")})
			put(upper, userRecord{partitionKey: "d", explicitHashKey: upper, data: []byte("after")})
			var logs bytes.Buffer
			opts := f.options()
			opts.KeepMisplacedAggregates = keep
			opts.Logger = slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, &slog.HandlerOptions{Level: slog.LevelInfo}))
			s := startConsumer(t, opts)
			want := []string{"placed", "after"}
			if keep {
				want = append(want, "lower", "upper", "stale")
			}
			got := s.receive(len(want), 30*time.Second, ackAll)
			s.quiet(time.Second)
			dropped := s.c.Stats().MisplacedDropped
			require.NoError(t, s.stop(nil))
			require.ElementsMatch(t, want, dataOf(got))
			if keep {
				assert.Zero(t, dropped)
			} else {
				assert.EqualValues(t, 3, dropped, "the user records of both misplaced aggregates")
			}
			assert.Equal(t, 1, strings.Count(logs.String(), "outside the shard's hash-key range"), "one warning per lease")
			assert.NotContains(t, logs.String(), "secret-key", "no partition key above Debug")
		})
	}
}

// A reader whose shard this worker has not listed (a child made after its
// last sync) lists the stream once, at its first aggregate, to learn the
// shard's range; a page of plain records asks for nothing.
func TestAReaderLearnsItsRangeAtItsFirstAggregate(t *testing.T) {
	c, err := New(Options{StreamName: "s", AWSConfig: &aws.Config{}, Logger: discardLogger()})
	require.NoError(t, err)
	const id = "shardId-000000000002"
	half := new(big.Int).Lsh(big.NewInt(1), 127)
	env := c.readerEnv()
	lists := 0
	env.listShards = func(context.Context, *kstream) ([]shardInfo, error) {
		lists++
		return []shardInfo{{id: "shardId-000000000001", first: big.NewInt(0), last: half}, {id: id, first: big.NewInt(0), last: new(big.Int).Sub(half, big.NewInt(1))}}, nil
	}
	r := newShardReader(env, newHeldLease(lease{shardID: id, checkpoint: checkpoint{seq: checkpointTrimHorizon}}, c.streamList()[0], id))
	plain := []types.Record{{Data: []byte("plain"), PartitionKey: aws.String("p"), SequenceNumber: aws.String("1")}}
	r.learnRange(context.Background(), plain)
	assert.Zero(t, lists, "no aggregate, no listing")
	assert.False(t, r.shardRange().known)
	agg := []types.Record{{Data: aggregate([]userRecord{{partitionKey: "a", data: []byte("x")}}), PartitionKey: aws.String("p"), SequenceNumber: aws.String("2")}}
	r.learnRange(context.Background(), agg)
	r.learnRange(context.Background(), agg)
	assert.Equal(t, 1, lists, "listed once")
	assert.Equal(t, newHashRange(big.NewInt(0), new(big.Int).Sub(half, big.NewInt(1))), r.shardRange(), "its own shard's range")
}

// A user record's Data is its own: appending to it leaves the next user
// record of the aggregate as it was (Record.Data's contract).
func TestAppendingToAUserRecordLeavesTheNextAlone(t *testing.T) {
	c, err := New(Options{StreamName: "s", AWSConfig: &aws.Config{}, Logger: discardLogger()})
	require.NoError(t, err)
	const id = "shardId-000000000000"
	r := newShardReader(c.readerEnv(), newHeldLease(lease{shardID: id, checkpoint: checkpoint{seq: checkpointTrimHorizon}}, c.streamList()[0], id))
	agg := aggregate([]userRecord{{partitionKey: "a", data: []byte("first")}, {partitionKey: "b", data: []byte("second")}})
	var skip checkpoint
	p := newPageRecords(r, []types.Record{{Data: agg, PartitionKey: aws.String("p"), SequenceNumber: aws.String("100")}}, &skip)
	buf := make([]Record, 2)
	require.Equal(t, 2, p.fill(buf))
	_ = append(buf[0].Data, "XXXXXXXXXXXXXXXX"...)
	assert.Equal(t, "second", string(buf[1].Data))
}

// An aggregate whose bytes change after the splitter checked them (nothing
// in kcl does so; the test does) cannot be split further: the user records
// delivered stand, and the record is delivered whole from the next
// sub-sequence number, logged at Warn, never dropped, with no panic.
func TestAnAggregateMalformedMidSplitIsDeliveredWholeFromThere(t *testing.T) {
	var logs bytes.Buffer
	c, err := New(Options{StreamName: "s", AWSConfig: &aws.Config{}, Logger: slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, nil))})
	require.NoError(t, err)
	const id = "shardId-000000000000"
	r := newShardReader(c.readerEnv(), newHeldLease(lease{shardID: id, checkpoint: checkpoint{seq: checkpointTrimHorizon}}, c.streamList()[0], id))
	agg := aggregate([]userRecord{{partitionKey: "a", data: []byte("one")}, {partitionKey: "b", data: []byte("two")}, {partitionKey: "c", data: []byte("three")}})
	page := []types.Record{
		{Data: agg, PartitionKey: aws.String("p"), SequenceNumber: aws.String("100")},
		{Data: []byte("after"), PartitionKey: aws.String("p"), SequenceNumber: aws.String("101")},
	}
	var skip checkpoint
	p := newPageRecords(r, page, &skip)
	buf := make([]Record, 8)
	require.Equal(t, 1, p.fill(buf[:1]))
	assert.Equal(t, "one", string(buf[0].Data))
	agg[bytes.Index(agg, []byte("two"))-1] = 0x7f // the second user record's data now runs past its record

	n := p.fill(buf)
	require.Equal(t, 2, n)
	assert.True(t, p.done())
	assert.Equal(t, agg, buf[0].Data, "the aggregate, whole")
	assert.Equal(t, "100", buf[0].SequenceNumber)
	assert.EqualValues(t, 1, buf[0].SubSequenceNumber, "from the first user record not delivered")
	assert.Equal(t, "after", string(buf[1].Data), "the page goes on")
	assert.Contains(t, logs.String(), "level=WARN msg=\"kcl: aggregated record malformed past its first user records")
}
