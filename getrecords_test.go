package kcl

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/schemas"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/aws/smithy-go/transport/http/protocol/awsjson"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var getRecordsOp = smithy.NewOperationSchema(schemas.GetRecords, schemas.GetRecordsInput, schemas.GetRecordsOutput)

// deserialize decodes body as a 200 answer to GetRecords with p. A panic is
// returned as an error: the SDK's deserialiser panics on some inputs.
func deserialize(p smithyhttp.ClientProtocol, body []byte) (out *kinesis.GetRecordsOutput, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("panic: %v", r)
		}
	}()
	resp := &smithyhttp.Response{Response: &http.Response{StatusCode: 200, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body))}}
	out = &kinesis.GetRecordsOutput{}
	if err := p.DeserializeResponse(context.Background(), getRecordsOp, kinesis.TypeRegistry, resp, out); err != nil {
		return nil, err
	}
	return out, nil
}

func sdkGetRecords(body []byte) (*kinesis.GetRecordsOutput, error) {
	return deserialize(awsjson.New11(schemas.Kinesis_20131202), body)
}

func kclGetRecords(body []byte) (*kinesis.GetRecordsOutput, error) {
	o := kinesis.Options{Protocol: awsjson.New11(schemas.Kinesis_20131202)}
	leanGetRecords(&o)
	if _, ok := o.Protocol.(leanProtocol); !ok {
		panic("leanGetRecords left the SDK's protocol unwrapped")
	}
	return deserialize(o.Protocol, body)
}

// requireSameAsSDK checks that kcl decodes body as the SDK does: the same
// output, or an error from both. A panic in kcl's decoder fails the test;
// one in the SDK's counts as its error.
func requireSameAsSDK(t *testing.T, body []byte) {
	t.Helper()
	want, wantErr := sdkGetRecords(body)
	got, err := kclGetRecords(body)
	require.False(t, err != nil && strings.HasPrefix(err.Error(), "panic"), "kcl's decoder panicked: %v", err)
	if wantErr != nil || err != nil {
		require.Equal(t, wantErr != nil, err != nil, "errors differ: SDK %v, kcl %v; body %q", wantErr, err, body)
		var de *smithy.DeserializationError
		if !strings.HasPrefix(wantErr.Error(), "panic") {
			require.Equal(t, reflect.TypeOf(wantErr), reflect.TypeOf(err), "error types differ: SDK %v, kcl %v", wantErr, err)
		}
		require.ErrorAs(t, err, &de)
		return
	}
	if !reflect.DeepEqual(want, got) {
		require.Equal(t, want, got, "body %q", body) // shows the difference
		t.Fatalf("outputs differ (nil against empty?): SDK %#v, kcl %#v; body %q", want, got, body)
	}
	for i, r := range got.Records {
		require.Equal(t, len(r.Data), cap(r.Data), "record %d: no room past its data, so an append copies", i)
	}
}

// page is a realistic GetRecords answer: n records of size bytes, with the
// fields and number forms Kinesis sends.
func page(n, size int, last bool) []byte {
	var b strings.Builder
	b.WriteString(`{"Records":[`)
	data := make([]byte, size)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		for j := range data {
			data[j] = byte(i*31 + j)
		}
		enc := ""
		if i%3 == 0 {
			enc = `,"EncryptionType":"KMS"`
		}
		fmt.Fprintf(&b, `{"SequenceNumber":"4959033827149025660855969253836157109592157598913658%04d","ApproximateArrivalTimestamp":1.7%08dE9,"Data":%q,"PartitionKey":"partition-%d"%s}`,
			i, 12345678+i, base64.StdEncoding.EncodeToString(data), i%7, enc)
	}
	if last {
		b.WriteString(`],"MillisBehindLatest":0,"ChildShards":[{"ShardId":"shardId-000000000002","ParentShards":["shardId-000000000000"],"HashKeyRange":{"StartingHashKey":"0","EndingHashKey":"170141183460469231731687303715884105727"}},` +
			`{"ShardId":"shardId-000000000003","ParentShards":["shardId-000000000000"],"HashKeyRange":{"StartingHashKey":"170141183460469231731687303715884105728","EndingHashKey":"340282366920938463463374607431768211455"}}]}`)
	} else {
		b.WriteString(`],"NextShardIterator":"AAAAAAAAAAGK9EEG0sJqVeCUS/NbMpLdvi0Xv1vJwDQ9d6cWKdM4J4J8Kl3eXkCHGlADMKDtPqOtIPJKdk8Tc9f2Q9B7oFe/l2gVf7IoVUVM0S6hL8/eLvJzC1R3EqOmn4WOUGk=","MillisBehindLatest":1000}`)
	}
	return []byte(b.String())
}

// getRecordsSeeds are bodies of every kind the decoder must treat as the
// SDK does; the fuzz target starts from them.
var getRecordsSeeds = []string{
	// Well-formed.
	`{}`,
	`{"Records":[]}`,
	`{"Records":[],"NextShardIterator":"it","MillisBehindLatest":0}`,
	`{"Records":[{"Data":"aGVsbG8=","PartitionKey":"k","SequenceNumber":"1","ApproximateArrivalTimestamp":1700000000.123,"EncryptionType":"NONE"}],"NextShardIterator":"it","MillisBehindLatest":12}`,
	`{"Records":[{"Data":"","PartitionKey":"","SequenceNumber":""}]}`,
	`{"Records":[{}]}`,
	` { "Records" : [ { "Data" : "QQ==" , "PartitionKey" : "p" } ] , "MillisBehindLatest" : 5 } `,
	"{\r\n\t\"Records\":[\n{\"Data\":\"QUI=\"}]}",
	// Escaped strings.
	`{"Records":[{"Data":"aGVs\/bG8=","PartitionKey":"a\"b\\c\/d\b\f\n\r\t\u0041\u00e9\u20ac\ud83d\ude00","SequenceNumber":"\u0031"}]}`,
	`{"Records":[{"Data":"QU\nI=","PartitionKey":"\ud800","SequenceNumber":"\udc00x\ud800\u0041"}]}`,
	`{"Records":[{"Data":"Q\u0051==","PartitionKey":"\ud83d\ud83d\ude00"}]}`,
	"{\"Records\":[{\"PartitionKey\":\"raw \xff\xfe bytes\",\"SequenceNumber\":\"esc \\n and \xff\xc3\xa9\"}]}",
	`{"Rec\u006frds":[{"D\u0061ta":"QQ=="}],"\u004eextShardIterator":"x"}`,
	// Numbers.
	`{"MillisBehindLatest":-0}`,
	`{"MillisBehindLatest":1e3}`,
	`{"MillisBehindLatest":1.0}`,
	`{"MillisBehindLatest":9223372036854775807}`,
	`{"MillisBehindLatest":9223372036854775808}`,
	`{"MillisBehindLatest":-9223372036854775808}`,
	`{"MillisBehindLatest":"5"}`,
	`{"MillisBehindLatest":true}`,
	`{"MillisBehindLatest":01}`,
	`{"Records":[{"ApproximateArrivalTimestamp":1e3}]}`,
	`{"Records":[{"ApproximateArrivalTimestamp":-0}]}`,
	`{"Records":[{"ApproximateArrivalTimestamp":-0.0}]}`,
	`{"Records":[{"ApproximateArrivalTimestamp":1.0}]}`,
	`{"Records":[{"ApproximateArrivalTimestamp":1.441215410867E9}]}`,
	`{"Records":[{"ApproximateArrivalTimestamp":1.7e+9}]}`,
	`{"Records":[{"ApproximateArrivalTimestamp":-1.5}]}`,
	`{"Records":[{"ApproximateArrivalTimestamp":1e300}]}`,
	`{"Records":[{"ApproximateArrivalTimestamp":-1e300}]}`,
	`{"Records":[{"ApproximateArrivalTimestamp":1e400}]}`,
	`{"Records":[{"ApproximateArrivalTimestamp":1e-400}]}`,
	`{"Records":[{"ApproximateArrivalTimestamp":9223372036854775807}]}`,
	`{"Records":[{"ApproximateArrivalTimestamp":123456789012345678901234567890}]}`,
	`{"Records":[{"ApproximateArrivalTimestamp":9223372036854775.807}]}`,
	`{"Records":[{"ApproximateArrivalTimestamp":"Infinity"}]}`,
	`{"Records":[{"ApproximateArrivalTimestamp":"-iNfInItY"}]}`,
	`{"Records":[{"ApproximateArrivalTimestamp":"NaN"}]}`,
	`{"Records":[{"ApproximateArrivalTimestamp":"1700000000"}]}`,
	`{"Records":[{"ApproximateArrivalTimestamp":true}]}`,
	`{"Records":[{"ApproximateArrivalTimestamp":[]}]}`,
	// Nulls, unknown and repeated members.
	`{"Records":null,"NextShardIterator":null,"MillisBehindLatest":null,"ChildShards":null}`,
	`{"Records":[null,{"Data":null,"PartitionKey":null,"SequenceNumber":null,"ApproximateArrivalTimestamp":null,"EncryptionType":null}]}`,
	`{"Records":[{"Data":"QQ=="}],"Records":null}`,
	`{"Records":[{"Data":"QQ=="}],"Records":[{"Data":"Qg=="}]}`,
	`{"Records":[{"Data":"QQ==","Data":"Qg==","PartitionKey":"a","PartitionKey":"b"}]}`,
	`{"Unknown":{"a":[1,2,{"b":null}],"c":"\u0041"},"Records":[{"Extra":[[],{}],"Data":"QQ=="}],"More":-1.5e-3}`,
	`{"records":[{"Data":"QQ=="}],"RECORDS":1}`,
	`{"ChildShards":[null,{"ShardId":"s","ParentShards":["a",null,"b"],"HashKeyRange":{"StartingHashKey":"0","EndingHashKey":"9","X":1}}]}`,
	`{"ChildShards":[{"HashKeyRange":{"StartingHashKey":"0"},"HashKeyRange":{"EndingHashKey":"9"}}]}`,
	`{"ChildShards":[{"HashKeyRange":null,"ParentShards":[]}]}`,
	`{"ChildShards":[]}`,
	// Trailing bytes after the top-level object.
	`{"Records":[]} trailing`,
	`{"Records":[]}}`,
	`{}{`,
	// Malformed.
	``,
	` `,
	`null`,
	`[]`,
	`"x"`,
	`{`,
	`{"Records":[`,
	`{"Records":[{"Data":"QQ==`,
	`{"Records":[{"Data":"QQ=="`,
	`{"Records":[{"Data":"QQ=="},]}`,
	`{"Records":[,]}`,
	`{"Records":[{"Data":"QQ==",}]}`,
	`{"Records":{}}`,
	`{"Records":"x"}`,
	`{"Records":[1]}`,
	`{"Records":["x"]}`,
	`{"Records":[{"Data":1}]}`,
	`{"Records":[{"Data":"QQ"}]}`,
	`{"Records":[{"Data":"Q==="}]}`,
	`{"Records":[{"Data":"QR=="}]}`,
	`{"Records":[{"Data":"!!!!"}]}`,
	"{\"Records\":[{\"Data\":\"QQ\n==\"}]}",
	"{\"Records\":[{\"Data\":\"QUJD\r\n\"}]}",
	`{"Records":[{"Data":"QUJD\r\n"}]}`,
	`{"Records":[{"Data":"QUJD\n\n\n\n"}]}`,
	"{\"Records\":[{\"Data\":\"QUJD\xff\"}]}",
	`{"Records":[{"Data":"\""}]}`,
	`{"Records":[{"PartitionKey":1}]}`,
	`{"Records":[{"PartitionKey":"\x"}]}`,
	`{"Records":[{"PartitionKey":"\u12"}]}`,
	`{"Records":[{"PartitionKey":"\u12G4"}]}`,
	"{\"Records\":[{\"PartitionKey\":\"a\x01b\"}]}",
	`{"Records":[{"PartitionKey":"a"]}`,
	`{"Records":[{"PartitionKey" "a"}]}`,
	`{"Records":[{PartitionKey:"a"}]}`,
	`{"Unknown":[1 2]}`,
	`{"Unknown":{"a" 1}}`,
	`{"Unknown":{"a":1,}}`,
	`{"Unknown":[1,]}`,
	`{"Unknown":tru}`,
	`{"Unknown":nul}`,
	`{"Unknown":nullx}`,
	`{"Unknown":-}`,
	`{"Unknown":1.}`,
	`{"Unknown":1e}`,
	`{"Unknown":.5}`,
	`{"Unknown":+1}`,
	`{"Unknown":00}`,
	`{"MillisBehindLatest":1,,}`,
	`{"HashKeyRange":{}}`,
	`{"ChildShards":[{"HashKeyRange":[]}]}`,
	`{"ChildShards":[{"ParentShards":[1]}]}`,
	`{"ChildShards":[{"ParentShards":"a"}]}`,
	`{"ChildShards":{}}`,
	`{"Records":[:]}`,
	`{"Records":["\q"]}`,
	`{"Records":["\q", }`,
	`{"Records":[{"Data":"QQ=="}}`,
}

// deep is an unknown member nested n deep, the top-level object included.
func deep(n int) string {
	return `{"Unknown":` + strings.Repeat("[", n-1) + strings.Repeat("]", n-1) + `}`
}

// TestGetRecordsDecoderMatchesSDK: kcl decodes every seed body, a deep one,
// realistic pages and their truncations as the SDK does.
func TestGetRecordsDecoderMatchesSDK(t *testing.T) {
	bodies := getRecordsSeeds
	bodies = append(bodies, deep(10000), deep(10001), string(page(3, 100, false)), string(page(2, 10, true)), string(page(500, 1024, false)),
		`{"Records":[{}`+strings.Repeat(`,{"Data":"QUJDRA=="}`, 12000)+`]}`, // past the first record's estimate of the page
		`{"Records":[{"Data":"QQ=="}`+strings.Repeat(`,null`, 100)+`,{"Data":"`+strings.Repeat("QUJD", 50000)+`"}]}`)
	for _, body := range bodies {
		requireSameAsSDK(t, []byte(body))
	}
	p := page(3, 20, true)
	for n := range len(p) {
		requireSameAsSDK(t, p[:n])
	}
}

// FuzzGetRecordsDecoder: any body decodes as the SDK decodes it, or fails
// as it fails (a panic in the SDK counts as its failure, never one in kcl).
// Its corpus is testdata/fuzz/FuzzGetRecordsDecoder, plus the seeds above.
func FuzzGetRecordsDecoder(f *testing.F) {
	for _, body := range getRecordsSeeds {
		f.Add([]byte(body))
	}
	f.Add(page(3, 100, false))
	f.Add(page(2, 10, true))
	f.Fuzz(func(t *testing.T, body []byte) {
		// A hang would stall the fuzzer silently: crash, with the input.
		hung := time.AfterFunc(20*time.Second, func() { panic(fmt.Sprintf("decoding hung on %q", body)) })
		defer hung.Stop()
		requireSameAsSDK(t, body)
	})
}

// TestGetRecordsDecoderContract checks what the differential test takes on
// trust from the SDK, so that a change of the SDK's shows.
func TestGetRecordsDecoderContract(t *testing.T) {
	decode := func(body string) (*kinesis.GetRecordsOutput, error) {
		var out kinesis.GetRecordsOutput
		err := decodeGetRecords([]byte(body), &out)
		return &out, err
	}
	out, err := decode(`{"Records":[{"Data":"aGk=","PartitionKey":"p","SequenceNumber":"7","ApproximateArrivalTimestamp":1.441215410867E9,"EncryptionType":"KMS"},{"Data":""}],` +
		`"NextShardIterator":"n","MillisBehindLatest":3,"ChildShards":[{"ShardId":"c","ParentShards":["a"],"HashKeyRange":{"StartingHashKey":"0","EndingHashKey":"1"}}]} ignored`)
	require.NoError(t, err)
	require.Len(t, out.Records, 2)
	r := out.Records[0]
	assert.Equal(t, "hi", string(r.Data))
	assert.Equal(t, "p", *r.PartitionKey)
	assert.Equal(t, "7", *r.SequenceNumber)
	assert.Equal(t, time.UnixMilli(1441215410867).UTC(), *r.ApproximateArrivalTimestamp)
	assert.Equal(t, "KMS", string(r.EncryptionType))
	assert.Equal(t, []byte{}, out.Records[1].Data, "empty data is empty, not nil")
	assert.Nil(t, out.Records[1].PartitionKey)
	assert.Equal(t, "n", *out.NextShardIterator)
	assert.Equal(t, int64(3), *out.MillisBehindLatest)
	c := out.ChildShards[0]
	assert.Equal(t, "c", *c.ShardId)
	assert.Equal(t, []string{"a"}, c.ParentShards)
	assert.Equal(t, "1", *c.HashKeyRange.EndingHashKey)

	out, err = decode(`{"Records":null}`)
	require.NoError(t, err)
	assert.Nil(t, out.Records, "a null list is no list")
	out, err = decode(`{"Records":[]}`)
	require.NoError(t, err)
	assert.Equal(t, []types.Record{}, out.Records, "an empty list is empty, not nil")

	_, err = decode(`{"Records":[{"ApproximateArrivalTimestamp":"NaN"}]}`)
	require.Error(t, err, "NaN is an error")
	_, err = sdkGetRecords([]byte(`{"Records":[{"ApproximateArrivalTimestamp":"NaN"}]}`))
	require.ErrorContains(t, err, "panic", "the SDK panics on a NaN time (if it stops, the decoder may match it)")
	out, err = decode(`{"Records":[{"ApproximateArrivalTimestamp":"infinity"}]}`)
	require.NoError(t, err)
	ms := int64(math.MaxInt64)
	assert.Equal(t, time.Unix(0, ms*1e6).UTC(), *out.Records[0].ApproximateArrivalTimestamp, "the SDK's wrapped nanoseconds")

	for _, bad := range []string{`{"MillisBehindLatest":1.0}`, `{"Records":[{"Data":"QQ"}]}`, "{\"Records\":[{\"Data\":\"QUJD\n\"}]}", deep(10001), `null`} {
		_, err := decode(bad)
		assert.Error(t, err, bad)
	}
	_, err = decode(deep(10000))
	assert.NoError(t, err)
}

// BenchmarkGetRecordsDecode is the client's decoding cost alone: a canned
// page of realistic records decoded by the SDK's deserialiser and by kcl's,
// per record, at 100 B, 1 KB and 5 KB.
//
//	go test -run '^$' -bench GetRecordsDecode -benchmem .
func BenchmarkGetRecordsDecode(b *testing.B) {
	for _, size := range []int{100, 1024, 5120} {
		n := min(1000, 2<<20/size) // records per page: at most 2 MB of data, as a shard's second
		body := page(n, size, false)
		for _, c := range []struct {
			name   string
			decode func([]byte) (*kinesis.GetRecordsOutput, error)
		}{{"sdk", sdkGetRecords}, {"kcl", kclGetRecords}} {
			b.Run(fmt.Sprintf("%s/%dB", c.name, size), func(b *testing.B) {
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				for b.Loop() {
					if out, err := c.decode(body); err != nil || len(out.Records) != n {
						b.Fatal(err)
					}
				}
				runtime.ReadMemStats(&after)
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
				b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(b.N*n), "allocs/record")
			})
		}
	}
}

// TestGetRecordsThroughTheClient: through the SDK's client, with signing,
// retries and error handling, the option changes nothing a caller sees but
// the decoder: the same output and request ID, the same errors.
func TestGetRecordsThroughTheClient(t *testing.T) {
	answers := map[string]struct {
		status int
		body   string
	}{
		"page":     {200, string(page(20, 100, false))},
		"large":    {200, string(page(3000, 1024, false))}, // over maxPooledBody: read into a buffer of its own
		"last":     {200, string(page(2, 10, true))},
		"expired":  {400, `{"__type":"ExpiredIteratorException","message":"Iterator expired"}`},
		"denied":   {400, `{"__type":"com.amazonaws.kinesis#AccessDeniedException","message":"no"}`},
		"unknown":  {400, `{"__type":"SomethingNew","message":"new"}`},
		"empty":    {200, ``},
		"bad":      {200, `{"Records":[{"Data":"QQ"}]}`},
		"nan":      {200, `{"Records":[{"ApproximateArrivalTimestamp":"NaN"}]}`},
		"trailing": {200, `{"MillisBehindLatest":7} and then some`},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in struct{ ShardIterator string }
		body, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(body, &in)
		a := answers[in.ShardIterator]
		w.Header().Set("X-Amzn-RequestId", "req-"+in.ShardIterator)
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.Header().Set("Content-Length", strconv.Itoa(len(a.body)))
		w.WriteHeader(a.status)
		io.WriteString(w, a.body)
	}))
	defer srv.Close()
	require.Greater(t, len(answers["large"].body), maxPooledBody)
	kc := kinesis.NewFromConfig(testAWSConfig(), func(o *kinesis.Options) { o.BaseEndpoint = aws.String(srv.URL) })
	get := func(it string, opts ...func(*kinesis.Options)) (out *kinesis.GetRecordsOutput, err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("panic: %v", r)
			}
		}()
		return kc.GetRecords(context.Background(), &kinesis.GetRecordsInput{ShardIterator: aws.String(it)}, opts...)
	}
	for it := range answers {
		want, wantErr := get(it)
		got, err := get(it, leanGetRecords)
		if it == "nan" {
			require.ErrorContains(t, wantErr, "panic", "the SDK panics")
			var de *smithy.DeserializationError
			require.ErrorAs(t, err, &de, "kcl's decoder ran, and failed")
			continue
		}
		if wantErr != nil {
			require.Error(t, err, it)
			var wantDE, de *smithy.DeserializationError
			if errors.As(wantErr, &wantDE) {
				require.ErrorAs(t, err, &de, it)
				continue
			}
			require.Equal(t, wantErr.Error(), err.Error(), it) // the type, code, message and request ID
			continue
		}
		require.NoError(t, err, it)
		id, ok := awsmiddleware.GetRequestIDMetadata(got.ResultMetadata)
		require.True(t, ok, it)
		require.Equal(t, "req-"+it, id)
		wantID, _ := awsmiddleware.GetRequestIDMetadata(want.ResultMetadata)
		require.Equal(t, wantID, id)
		want.ResultMetadata, got.ResultMetadata = middleware.Metadata{}, middleware.Metadata{}
		require.True(t, reflect.DeepEqual(want, got), it)
	}
}

// TestLeanGetRecordsLeavesOtherProtocols: the option wraps the SDK's JSON
// 1.1 protocol only, and only once.
func TestLeanGetRecordsLeavesOtherProtocols(t *testing.T) {
	json10 := awsjson.New10(schemas.Kinesis_20131202)
	other := leanProtocol{json10} // any other implementation
	for _, p := range []smithyhttp.ClientProtocol{nil, json10, other} {
		o := kinesis.Options{Protocol: p}
		leanGetRecords(&o)
		require.Equal(t, p, o.Protocol)
	}
	o := kinesis.Options{Protocol: awsjson.New11(schemas.Kinesis_20131202)}
	leanGetRecords(&o)
	leanGetRecords(&o)
	require.IsType(t, leanProtocol{}, o.Protocol)
	require.IsType(t, &awsjson.Protocol{}, o.Protocol.(leanProtocol).ClientProtocol)
}

// TestChunkSize: a chunk holds about 8 records alike, between 512 bytes and
// its limit, never less than the record and never more than the body's rest.
func TestChunkSize(t *testing.T) {
	for _, c := range []struct{ n, limit, rest, want int }{
		{100, 64 << 10, 1 << 20, 800},
		{10, 64 << 10, 1 << 20, 512},
		{5120, 64 << 10, 1 << 20, 40960},
		{20000, 64 << 10, 1 << 20, 64 << 10},
		{100000, 64 << 10, 1 << 20, 100000},
		{100, 64 << 10, 300, 300},
		{100, 64 << 10, 50, 100},
		{0, 64 << 10, 0, 0},
		{56, 4 << 10, 1 << 20, 512},
	} {
		assert.Equal(t, c.want, chunkSize(c.n, c.limit, c.rest), "%+v", c)
	}
}
