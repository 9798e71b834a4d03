package kcl

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/schemas"
	"github.com/aws/smithy-go/transport/http/protocol/awsjson"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// leanCheck is a KinesisAPI that counts the GetRecords calls it passes on,
// and those whose options would have kcl's decoder read the answer: applied
// to the options of an SDK client (JSON 1.1 protocol), they make its
// protocol a leanProtocol. Safe for concurrent use.
type leanCheck struct {
	KinesisAPI
	calls, lean atomic.Int64
}

func (l *leanCheck) GetRecords(ctx context.Context, in *kinesis.GetRecordsInput, optFns ...func(*kinesis.Options)) (*kinesis.GetRecordsOutput, error) {
	o := kinesis.Options{Protocol: awsjson.New11(schemas.Kinesis_20131202)}
	for _, fn := range optFns {
		fn(&o)
	}
	l.calls.Add(1)
	if _, ok := o.Protocol.(leanProtocol); ok {
		l.lean.Add(1)
	}
	return l.KinesisAPI.GetRecords(ctx, in, optFns...)
}

// TestConsumeDecodesGetRecordsWithTheLeanDecoder: every GetRecords call of
// a consumer, polling or confirming a shard's end under enhanced fan-out,
// asks for kcl's decoder. The other tests compare the decoder with the
// SDK's; this one proves the consumer uses it.
func TestConsumeDecodesGetRecordsWithTheLeanDecoder(t *testing.T) {
	for _, fanOut := range []bool{false, true} {
		name := map[bool]string{false: "polling", true: "fan-out"}[fanOut]
		t.Run(name, func(t *testing.T) {
			noLeak(t)
			f := newFixture(t, emu.kinesisLocal, 1)
			opts := f.options()
			if fanOut {
				opts = fanOutOptions(f)
			}
			check := &leanCheck{KinesisAPI: opts.Kinesis}
			opts.Kinesis = check
			first := f.putN(20, 5, "a")
			s := startConsumer(t, opts)
			got := s.receive(len(first), 30*time.Second, ackAll)
			// The shard ends. Under fan-out, kinesis-local never sends the
			// last event: the reader confirms the end by GetRecords
			// (confirmShardEnd) before it reads the children.
			f.split()
			more := f.putN(20, 5, "b")
			got = append(got, s.receive(len(more), 30*time.Second, ackAll)...)
			require.NoError(t, s.stop(nil))
			require.ElementsMatch(t, append(putData(first), putData(more)...), dataOf(got))
			t.Logf("%d GetRecords calls, %d lean", check.calls.Load(), check.lean.Load())
			require.Positive(t, check.calls.Load(), "GetRecords was called")
			assert.Equal(t, check.calls.Load(), check.lean.Load(), "GetRecords calls that asked for the lean decoder, of all")
		})
	}
}
