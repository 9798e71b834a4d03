// Command consumer reads a Kinesis stream with kcl and prints each record.
// Point it at AWS with the usual credentials, or at local emulators with
// AWS_ENDPOINT_URL_KINESIS and AWS_ENDPOINT_URL_DYNAMODB:
//
//	go run ./examples/consumer -stream orders -app billing
//
// Run it several times with the same -app: the processes share the shards.
// Ctrl-C shuts it down cleanly: what was printed is checkpointed, leases are
// released, and another process takes over at once.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/kclgo/kcl"
)

func main() {
	stream := flag.String("stream", "", "Kinesis stream name (required)")
	app := flag.String("app", "", "application name: the consumer group and its lease table; empty keeps leases in memory")
	fromStart := flag.Bool("from-start", false, "start shards without a checkpoint at TRIM_HORIZON instead of LATEST")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := kcl.Options{StreamName: *stream, AppName: *app, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))}
	if *fromStart {
		opts.InitialPosition = kcl.TrimHorizon
	}
	c, err := kcl.New(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for rec := range c.Consume(ctx) {
		// A demo: a real application should not log keys (often user IDs) or payloads.
		fmt.Printf("%s %s %s %q\n", rec.ShardID, rec.SequenceNumber, rec.PartitionKey, rec.Data)
		rec.Ack()
	}
	if err := c.Err(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
