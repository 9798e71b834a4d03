package kcl

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/stretchr/testify/require"
)

// recreate deletes the fixture's stream and creates it again with shards
// shards, waiting for each step.
func (f *fixture) recreate(shards int) {
	f.t.Helper()
	ctx := context.Background()
	_, err := f.kin.DeleteStream(ctx, &kinesis.DeleteStreamInput{StreamName: &f.stream})
	require.NoError(f.t, err)
	for {
		if _, err := f.kin.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: &f.stream}); isResourceNotFound(err) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(1100 * time.Millisecond) // a new creation time, to the second
	_, err = f.kin.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: &f.stream, ShardCount: aws.Int32(int32(shards))})
	require.NoError(f.t, err)
	f.waitActive()
}

// A stream deleted and created again under its name, on the emulators: the
// new incarnation is read from its first record, while the consumer runs
// (kinesis-local answers the old incarnation's iterators and sequence
// numbers with ResourceNotFound) and after a restart at Latest, in both
// table layouts.
func TestAStreamCreatedAgainIsReadOnTheEmulators(t *testing.T) {
	needEmulators(t)
	for _, tc := range []struct {
		name    string
		multi   bool
		restart bool
	}{
		{"single stream, while running", false, false},
		{"single stream, while down", false, true},
		{"multi-stream, while running", true, false},
		{"multi-stream, while down", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			noLeak(t)
			f := newFixture(t, emu.kinesisLocal, 2)
			opts := f.options()
			opts.InitialPosition = Latest
			if tc.multi {
				opts.StreamName, opts.Streams = "", []string{f.stream}
			}
			s := startConsumer(t, opts)
			s.openAtLatest(f, true)
			first := f.putN(20, 4, "old-")
			s.receiveAll(putData(first), 20*time.Second)
			if tc.restart {
				require.NoError(t, s.stop(ackAll))
			}
			f.recreate(1)
			again := f.putN(30, 4, "new-")
			if tc.restart {
				s = startConsumer(t, opts)
			}
			s.receiveAll(putData(again), 30*time.Second)
			require.NoError(t, s.stop(ackAll), fmt.Sprintf("Err after %s", tc.name))
		})
	}
}
