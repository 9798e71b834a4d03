package kcl

import (
	"sync"
	"time"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/smithy-go/middleware"
)

// kinesisClock reads Kinesis's clock from the Date of its responses, so
// that a time kcl stores for Kinesis to compare with its own (a lease's
// start, lease.startAt) is never ahead of it, however fast this host's
// clock runs.
//
//   - It holds the last Date noted and when it was noted. Time since is
//     counted on this process's monotonic clock, which no setting of the
//     wall clock moves.
//   - What it gives is never ahead of Kinesis's clock: Date is rounded down
//     to the second and was taken before the response left Kinesis.
//   - Without a Date noted (a KinesisAPI that gives none, such as a test's
//     fake) it gives this host's clock.
//   - It only lags otherwise: a suspended host's monotonic clock stops, so
//     after a wake it lags by the suspension until the next Date noted.
//   - One per stream (kstream.kinesisTime): Options.KinesisFor may send
//     each stream's calls to another endpoint, with its own clock.
//
// Its zero value has no Date. It is safe for concurrent use.
type kinesisClock struct {
	mu   sync.Mutex
	date time.Time // synchronized on mu: the last Date noted; zero: none
	at   time.Time // synchronized on mu: when date was noted, with its monotonic reading
}

// note notes the Date of a response, if md holds one (the SDK records it).
func (k *kinesisClock) note(md middleware.Metadata) {
	date, ok := awsmiddleware.GetServerTime(md)
	if !ok {
		return
	}
	now := time.Now()
	k.mu.Lock()
	defer k.mu.Unlock()
	k.date, k.at = date, now
}

// now returns Kinesis's clock as this worker knows it: the last Date noted
// and the time since, or this host's clock if no Date was noted.
func (k *kinesisClock) now() time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.date.IsZero() {
		return time.Now()
	}
	return k.date.Add(time.Since(k.at))
}

// kinesisNow returns the clock of the Kinesis that serves the stream of a
// lease key (kstream.kinesisTime), or this host's clock for a key of a
// stream this consumer does not read.
func (c *Consumer) kinesisNow(key string) time.Time {
	if s, _, ok := c.streamOf(key); ok {
		return s.kinesisTime.now()
	}
	return time.Now()
}
