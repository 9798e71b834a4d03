package kcl

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/smithy-go/middleware"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// mixedPage is a GetRecords body whose records have the given data sizes.
func mixedPage(sizes ...int) []byte {
	var b strings.Builder
	b.WriteString(`{"Records":[`)
	for i, n := range sizes {
		if i > 0 {
			b.WriteByte(',')
		}
		data := bytes.Repeat([]byte{byte(i)}, n)
		fmt.Fprintf(&b, `{"SequenceNumber":"%056d","ApproximateArrivalTimestamp":1.7E9,"Data":%q,"PartitionKey":"k%d"}`, i, base64.StdEncoding.EncodeToString(data), i)
	}
	b.WriteString(`],"NextShardIterator":"n","MillisBehindLatest":0}`)
	return []byte(b.String())
}

// TestReview12HugePages: a full page (10,000 records, 10 MB) and records far
// larger than a chunk decode as the SDK's do, each Data apart.
func TestReview12HugePages(t *testing.T) {
	requireSameAsSDK(t, page(10000, 1000, false))
	sizes := []int{1, 3 << 20, 5, 70 << 10, 64 << 10, 64<<10 - 1, 100, 1 << 20, 0, 2}
	body := mixedPage(sizes...)
	requireSameAsSDK(t, body)
	out, err := kclGetRecords(body)
	require.NoError(t, err)
	for i, r := range out.Records {
		require.Len(t, r.Data, sizes[i])
		for _, c := range r.Data {
			require.Equal(t, byte(i), c)
		}
	}
}

// sharedRuns returns the lengths of the runs of records whose Data are
// adjacent in memory: records that share one backing array.
func sharedRuns(recs []Record) []int {
	var runs []int
	run := 1
	for i := 1; i < len(recs); i++ {
		prev, cur := recs[i-1].Data, recs[i].Data
		if len(prev) > 0 && len(cur) > 0 && uintptr(unsafe.Pointer(&prev[0]))+uintptr(len(prev)) == uintptr(unsafe.Pointer(&cur[0])) {
			run++
			continue
		}
		runs = append(runs, run)
		run = 1
	}
	return append(runs, run)
}

// TestReview12ChunkSharingAsDocumented holds Record.Data's doc ("about 8
// records' data") and options.go's ("shares an array with up to 7 records
// fetched beside it ... min(8 x record size, 64 KiB)") to a page of mixed
// sizes: one 8 KiB record opens a 64 KiB chunk, then small records fill it.
func TestReview12ChunkSharingAsDocumented(t *testing.T) {
	sizes := []int{8 << 10}
	for range 500 {
		sizes = append(sizes, 100)
	}
	out, err := kclGetRecords(mixedPage(sizes...))
	require.NoError(t, err)
	recs := make([]Record, len(out.Records))
	for i, r := range out.Records {
		recs[i].Data = r.Data
	}
	runs := sharedRuns(recs)
	t.Logf("records sharing an array, in order: %v", runs)
	// A 100-byte record after an 8 KiB one shares the 8 KiB record's 64
	// KiB array (Record.Data's doc: at most 64 KiB, or a larger record's
	// own): the records sharing an array hold at most 64 KiB together.
	total := 0
	for _, r := range recs[:runs[0]] {
		total += len(r.Data)
	}
	require.LessOrEqual(t, total, 64<<10, "Record.Data's doc: an array holds at most 64 KiB")
}

// TestReview12BodyInPieces: a body the SDK's reader gets in small pieces,
// gzip-encoded, or cut off mid-read, gives through the client what the SDK
// gives, with as many attempts.
func TestReview12BodyInPieces(t *testing.T) {
	full := page(300, 700, false)
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		var in struct{ ShardIterator string }
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &in)
		w.Header().Set("X-Amzn-RequestId", "req")
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		switch in.ShardIterator {
		case "pieces":
			w.Header().Set("Content-Length", fmt.Sprint(len(full)))
			for i := 0; i < len(full); i += 7 {
				_, _ = w.Write(full[i:min(i+7, len(full))])
				w.(http.Flusher).Flush()
			}
		case "chunked":
			for i := 0; i < len(full); i += 4093 {
				_, _ = w.Write(full[i:min(i+4093, len(full))])
				w.(http.Flusher).Flush()
			}
		case "gzip":
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			_, _ = zw.Write(full)
			_ = zw.Close()
		case "cut":
			w.Header().Set("Content-Length", fmt.Sprint(len(full)))
			w.WriteHeader(200)
			_, _ = w.Write(full[:len(full)/2])
			w.(http.Flusher).Flush()
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				_ = conn.(*net.TCPConn).SetLinger(0)
				_ = conn.Close()
			}
		}
	}))
	defer srv.Close()
	kc := kinesis.NewFromConfig(testAWSConfig(), func(o *kinesis.Options) { o.BaseEndpoint = aws.String(srv.URL) })
	get := func(it string, opts ...func(*kinesis.Options)) (*kinesis.GetRecordsOutput, int32, error) {
		hits.Store(0)
		out, err := kc.GetRecords(context.Background(), &kinesis.GetRecordsInput{ShardIterator: aws.String(it)}, opts...)
		return out, hits.Load(), err
	}
	for _, it := range []string{"pieces", "chunked", "gzip", "cut"} {
		want, wantHits, wantErr := get(it)
		got, gotHits, err := get(it, leanGetRecords)
		if wantErr != nil {
			require.Equal(t, wantHits, gotHits, "%s: attempts", it)
			require.Error(t, err, it)
			require.Equal(t, reflect.TypeOf(wantErr), reflect.TypeOf(err), it)
			t.Logf("%s: SDK %v / kcl %v (%d attempts)", it, wantErr, err, gotHits)
			continue
		}
		require.NoError(t, err, it)
		want.ResultMetadata, got.ResultMetadata = middleware.Metadata{}, middleware.Metadata{}
		require.True(t, reflect.DeepEqual(want, got), it)
	}
}

// TestReview12DataNeverChanges: Data handed out from one call is not written
// by later calls (pooled bodies, new chunks), nor by an append to a
// neighbour.
func TestReview12DataNeverChanges(t *testing.T) {
	first, err := kclGetRecords(page(50, 300, false))
	require.NoError(t, err)
	snap := make([][]byte, len(first.Records))
	for i, r := range first.Records {
		snap[i] = bytes.Clone(r.Data)
	}
	for i := range first.Records {
		_ = append(first.Records[i].Data, 0xAA, 0xBB, 0xCC) // must copy
	}
	for range 20 {
		_, _ = kclGetRecords(page(50, 299, false))
		_, _ = kclGetRecords([]byte(`{"Records":[{"Data":"QUJD"},{"Data":"QUJ\n"}]}`))
	}
	for i, r := range first.Records {
		require.Equal(t, snap[i], r.Data, "record %d", i)
	}
}

// TestReview12HeldOutOfOrder measures the heap one held record keeps when
// its neighbours are dropped (acked), as kcl's fill converts it: its Data,
// PartitionKey and SequenceNumber.
func TestReview12HeldOutOfOrder(t *testing.T) {
	for _, c := range []struct{ pages, size, pk, every int }{
		{40, 100, 10, 8}, {40, 100, 256, 8}, {40, 100, 256, 64}, {40, 1000, 10, 8},
	} {
		var held []Record
		for p := range c.pages {
			var b strings.Builder
			b.WriteString(`{"Records":[`)
			for i := range 1000 {
				if i > 0 {
					b.WriteByte(',')
				}
				fmt.Fprintf(&b, `{"SequenceNumber":"%056d","ApproximateArrivalTimestamp":1.7E9,"Data":%q,"PartitionKey":"%s%06d"}`,
					p*1000+i, base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, c.size)), strings.Repeat("k", c.pk-6), i)
			}
			b.WriteString(`]}`)
			out, err := kclGetRecords([]byte(b.String()))
			require.NoError(t, err)
			for i, r := range out.Records {
				if i%c.every == c.every-1 {
					held = append(held, Record{Data: r.Data, PartitionKey: aws.ToString(r.PartitionKey), SequenceNumber: aws.ToString(r.SequenceNumber)})
				}
			}
		}
		held = slices.Clip(held)
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		base := ms.HeapAlloc
		n := len(held)
		runtime.KeepAlive(held)
		held = nil
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		kept := (int(base) - int(ms.HeapAlloc)) / n
		t.Logf("size %d B, key %d B, one held in %d: %d B kept per held record (doc: at most 64 KiB + 512 = %d)",
			c.size, c.pk, c.every, kept, 64<<10+512)
		// The documented bound for a record held out of order is its
		// array, at most 64 KiB, plus 512 bytes; measured nearer 8 record
		// sizes plus about 15% here, well inside it.
		assert.LessOrEqual(t, kept, 64<<10+512, "size %d, key %d, one held in %d", c.size, c.pk, c.every)
	}
}

// TestReview12Timestamps: arrival times of every magnitude and form decode
// as the SDK's.
func TestReview12Timestamps(t *testing.T) {
	rng := rand.New(rand.NewPCG(12, 12))
	var b strings.Builder
	for i := range 20000 {
		var f float64
		switch i % 4 {
		case 0:
			f = math.Float64frombits(rng.Uint64())
		case 1:
			f = rng.Float64() * 2e9
		case 2:
			f = float64(rng.Int64()) / 1000
		default:
			f = (rng.Float64() - 0.5) * math.Pow(10, float64(rng.IntN(40)))
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			continue
		}
		b.Reset()
		fmt.Fprintf(&b, `{"Records":[{"ApproximateArrivalTimestamp":%s},{"ApproximateArrivalTimestamp":%s},{"ApproximateArrivalTimestamp":%s}]}`,
			strconv.FormatFloat(f, 'g', -1, 64), strconv.FormatFloat(f, 'e', 20, 64), strconv.FormatFloat(math.Trunc(f), 'f', -1, 64))
		requireSameAsSDK(t, []byte(b.String()))
	}
}
