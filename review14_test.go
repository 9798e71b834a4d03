package kcl

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/stretchr/testify/require"
)

// The test helper run (helpers_test.go) ends a run only once the
// dispatcher took every chunk; the consumer does not wait for that: its
// shutdown takes back what is left in the channel (takeBack), then closes
// finished and the channel. At Concurrency 1, with the dispatcher in a call
// that waits for its context and a later record still in the channel, the
// helper never closes finished, and the run hangs where Process returns.
// A harness defect: the helper cannot express the production schedule of
// review13's bug as soon as a second record is in flight.
func TestReview14HelperRunEndsWithARecordStillInTheChannel(t *testing.T) {
	c, err := New(Options{StreamName: "s", AWSConfig: &aws.Config{}, Concurrency: 1, Logger: discardLogger()})
	require.NoError(t, err)
	w := newAckWindow(checkpoint{seq: checkpointTrimHorizon}) // a lease whose release was never sent
	recs := []Record{{PartitionKey: "a", SequenceNumber: "1"}, {PartitionKey: "b", SequenceNumber: "2"}}
	require.True(t, w.push(recs))
	in := make(chan Record, 2)
	in <- recs[0]
	started := make(chan struct{}, 2)
	stop := make(chan struct{})
	defer close(stop)
	returned := runProcessor(t, c, in, func(ctx context.Context, r Record) error {
		started <- struct{}{}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-stop:
			return errors.New("stopped by the test")
		}
	})
	<-started
	in <- recs[1] // delivered while the dispatcher is in the call
	close(in)     // the consumer's shutdown is over
	select {
	case <-returned:
	case <-time.After(2 * time.Second):
		t.Fatal("run did not return: the helper waits for the dispatcher to take a chunk the consumer would have taken back")
	}
}
