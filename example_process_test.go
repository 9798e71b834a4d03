package kcl_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/kclgo/kcl"
)

// Process calls the handler for every record, up to Concurrency at once;
// the records of one partition key run one at a time, in order, and a
// record is acked once its handler returned nil. (Not run: it needs AWS, or
// the emulators.)
func ExampleProcess() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := kcl.Process(ctx, kcl.Options{StreamName: "orders", AppName: "billing", Concurrency: 32},
		func(ctx context.Context, rec kcl.Record) error {
			return charge(ctx, rec.Data) // an error: the record is retried, with backoff
		})
	if err != nil {
		log.Fatal(err)
	}
}

// A failure policy: each record gets 5 attempts, with backoff between them;
// then it goes to a dead-letter queue and the stream goes on. Were the
// dead-letter queue unreachable, Process would stop with that error, the
// record unacked, and deliver it again after a restart.
func ExampleConsumer_Process() {
	deadLetters, err := os.OpenFile("dead-letters.jsonl", os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		log.Fatal(err)
	}
	defer deadLetters.Close()
	c, err := kcl.New(kcl.Options{
		StreamName:  "orders",
		AppName:     "billing",
		Concurrency: 32,
		MaxAttempts: 5,
		OnFailure: func(ctx context.Context, rec kcl.Record, err error) error {
			_, werr := fmt.Fprintf(deadLetters, "{\"shard\":%q,\"seq\":%q,\"error\":%q}\n", rec.ShardID, rec.SequenceNumber, err)
			return werr // nil: acked, go on
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := c.Process(ctx, func(ctx context.Context, rec kcl.Record) error {
		return charge(ctx, rec.Data) // ctx ends if this worker loses the shard
	}); err != nil {
		log.Print(err) // the dead-letter file failed: rec is delivered again after a restart
	}
}

// charge stands for the reader's own code in the examples.
func charge(ctx context.Context, order []byte) error {
	if len(order) == 0 {
		return errors.New("empty order")
	}
	return ctx.Err()
}
