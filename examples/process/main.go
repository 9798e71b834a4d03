// Command process reads a Kinesis stream with kcl.Process: 32 handlers at
// once (records of one partition key one at a time, in order) write each
// record to a slow sink, standing in for a database or an HTTP API. A sink
// write that fails is retried with backoff; after -max-attempts the record
// goes to a dead-letter file (stderr by default) and the stream goes on.
// Point it at AWS with the usual credentials, or at local emulators with
// AWS_ENDPOINT_URL_KINESIS and AWS_ENDPOINT_URL_DYNAMODB:
//
//	go run ./examples/producer -stream orders -create 4 -n 2000 -rate 500
//	go run ./examples/process -stream orders -app billing -from-start -fail 0.05
//
// Run it several times with the same -app: the processes share the shards,
// and a handler whose shard moves to another process sees its context end.
// Ctrl-C shuts it down cleanly: handlers in flight get ShutdownTimeout to
// finish, what they finished is checkpointed, leases are released.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/kclgo/kcl"
)

func main() {
	stream := flag.String("stream", "", "Kinesis stream name (required)")
	app := flag.String("app", "", "application name: the consumer group and its lease table; empty keeps leases in memory")
	fromStart := flag.Bool("from-start", false, "start shards without a checkpoint at TRIM_HORIZON instead of LATEST")
	concurrency := flag.Int("concurrency", 32, "sink writes at once, over all shards")
	latency := flag.Duration("latency", 20*time.Millisecond, "how long one sink write takes")
	failRate := flag.Float64("fail", 0, "share of sink writes that fail (0..1), to watch retries and dead letters")
	maxAttempts := flag.Int("max-attempts", 3, "sink writes of one record before it is dead-lettered; 0 retries for ever")
	deadLetters := flag.String("dead-letters", "", "file the dead letters are appended to, one JSON object a line; empty: stderr")
	flag.Parse()

	if err := run(*stream, *app, *fromStart, *concurrency, *latency, *failRate, *maxAttempts, *deadLetters); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if errors.Is(err, kcl.ErrInvalidOptions) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func run(stream, app string, fromStart bool, concurrency int, latency time.Duration, failRate float64, maxAttempts int, deadLetterPath string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var dlq io.Writer = os.Stderr
	if deadLetterPath != "" {
		f, err := os.OpenFile(deadLetterPath, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		dlq = f
	}
	dead := &deadLetterQueue{w: dlq}
	sink := &slowSink{latency: latency, failRate: failRate, out: os.Stdout}

	opts := kcl.Options{
		StreamName:  stream,
		AppName:     app,
		Concurrency: concurrency,
		MaxAttempts: maxAttempts,
		// After MaxAttempts failed writes: dead-letter the record, and go on.
		// Were the dead-letter write to fail, Process would stop with its
		// error, and the record would come again after a restart.
		OnFailure: dead.put,
		Logger:    slog.New(slog.NewTextHandler(os.Stderr, nil)),
	}
	if fromStart {
		opts.InitialPosition = kcl.TrimHorizon
	}
	c, err := kcl.New(opts)
	if err != nil {
		return err
	}
	err = c.Process(ctx, sink.write)
	fmt.Fprintf(os.Stderr, "process: %d records written, %d failed writes retried or dead-lettered, %d dead letters\n",
		sink.written(), sink.failed(), dead.count())
	return err
}

// slowSink stands in for a database: each write takes latency, and a share
// failRate of them fail. It is called by up to Concurrency goroutines.
type slowSink struct {
	latency  time.Duration
	failRate float64

	mu      sync.Mutex
	out     io.Writer
	ok, bad int
}

var errSinkUnavailable = errors.New("sink: unavailable")

func (s *slowSink) write(ctx context.Context, rec kcl.Record) error {
	select {
	case <-time.After(s.latency):
	case <-ctx.Done():
		// The shard went to another worker (or shutdown is over): give up,
		// the record was not acked and is written again there.
		return ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if rand.Float64() < s.failRate {
		s.bad++
		return errSinkUnavailable
	}
	s.ok++
	// A demo: a real application should not log keys (often user IDs) or payloads.
	_, err := fmt.Fprintf(s.out, "%s %s %s %q\n", rec.ShardID, rec.SequenceNumber, rec.PartitionKey, rec.Data)
	return err
}

func (s *slowSink) written() int { s.mu.Lock(); defer s.mu.Unlock(); return s.ok }
func (s *slowSink) failed() int  { s.mu.Lock(); defer s.mu.Unlock(); return s.bad }

// deadLetterQueue appends records that could not be written, as JSON lines.
type deadLetterQueue struct {
	mu sync.Mutex
	w  io.Writer
	n  int
}

func (q *deadLetterQueue) put(ctx context.Context, rec kcl.Record, cause error) error {
	line, err := json.Marshal(map[string]any{
		"shard":          rec.ShardID,
		"sequenceNumber": rec.SequenceNumber,
		"subSequence":    rec.SubSequenceNumber,
		"partitionKey":   rec.PartitionKey,
		"data":           rec.Data, // base64
		"error":          cause.Error(),
		"at":             time.Now().UTC().Format(time.RFC3339Nano),
	})
	if err != nil {
		return err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, err := q.w.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("dead-letter queue: %w", err) // stops Process: the record is not acked
	}
	q.n++
	return nil
}

func (q *deadLetterQueue) count() int { q.mu.Lock(); defer q.mu.Unlock(); return q.n }
