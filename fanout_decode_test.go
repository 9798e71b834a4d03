package kcl

import (
	"bytes"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/schemas"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go/eventstream"
	"github.com/aws/smithy-go/transport/http/protocol/awsjson"
	"github.com/stretchr/testify/require"
)

// subscribeEvent is one SubscribeToShardEvent message as Kinesis frames it
// on a subscription: the records of page(n, size, false), with a
// continuation sequence number instead of a shard iterator.
func subscribeEvent(t testing.TB, n, size int) []byte {
	body := string(page(n, size, false))
	body = body[:strings.LastIndex(body, `],"NextShardIterator"`)] +
		`],"ContinuationSequenceNumber":"49590338271490256608559692538361571095921575989136588898","MillisBehindLatest":1000}`
	var msg eventstream.Message
	msg.Headers.Set(eventstream.MessageTypeHeader, eventstream.StringValue(eventstream.EventMessageType))
	msg.Headers.Set(eventstream.EventTypeHeader, eventstream.StringValue("SubscribeToShardEvent"))
	msg.Headers.Set(eventstream.ContentTypeHeader, eventstream.StringValue("application/json"))
	msg.Payload = []byte(body)
	var frame bytes.Buffer
	require.NoError(t, eventstream.NewEncoder().Encode(&frame, msg))
	return frame.Bytes()
}

// BenchmarkSubscribeToShardEventDecode is what fan-out pays the SDK to
// decode its events: one SubscribeToShardEvent message of realistic records
// read by the protocol's DeserializeEventMessage, as the SDK's event-stream
// reader calls it, per record. The same records as a GetRecords page:
// BenchmarkGetRecordsDecode.
//
//	go test -run '^$' -bench 'GetRecordsDecode|SubscribeToShardEventDecode' -benchmem .
func BenchmarkSubscribeToShardEventDecode(b *testing.B) {
	for _, size := range []int{100, 1024, 5120} {
		n := min(1000, 2<<20/size) // as BenchmarkGetRecordsDecode
		frame := subscribeEvent(b, n, size)
		p := awsjson.New11(schemas.Kinesis_20131202)
		b.Run(fmt.Sprintf("sdk/%dB", size), func(b *testing.B) {
			b.SetBytes(int64(len(frame)))
			b.ReportAllocs()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			for b.Loop() {
				ev, err := p.DeserializeEventMessage(schemas.SubscribeToShardEventStream, kinesis.TypeRegistry, bytes.NewReader(frame))
				if e, ok := ev.(*types.SubscribeToShardEvent); err != nil || !ok || len(e.Records) != n {
					b.Fatal(err)
				}
			}
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
			b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(b.N*n), "allocs/record")
		})
	}
}
