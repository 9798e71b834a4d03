package kcl_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kclgo/kcl"
	"github.com/kclgo/kcl/internal/kinesisfake"
)

// Process calls the handler for every record, up to Concurrency at once;
// the records of one partition key run one at a time, in order. (An
// in-process Kinesis stands in for the real one here, so that the example
// runs as a test; a program leaves Options.Kinesis unset.)
func ExampleProcess() {
	kin := kinesisfake.New(kinesisfake.Options{})
	kin.CreateStream("orders", 2)
	const n = 12
	for i := range n {
		customer := fmt.Sprintf("customer-%d", i%3)
		if _, _, err := kin.PutRecord("orders", customer, fmt.Appendf(nil, "order %d", i)); err != nil {
			fmt.Println(err)
			return
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	orders := map[string][]string{} // by customer, in the order handled
	err := kcl.Process(ctx, kcl.Options{
		StreamName:      "orders",
		Kinesis:         kin,
		InitialPosition: kcl.TrimHorizon,
		Concurrency:     8,
		Logger:          slog.New(slog.DiscardHandler),
	}, func(ctx context.Context, rec kcl.Record) error {
		time.Sleep(time.Millisecond) // the work
		mu.Lock()
		defer mu.Unlock()
		orders[rec.PartitionKey] = append(orders[rec.PartitionKey], string(rec.Data))
		if len(orders["customer-0"])+len(orders["customer-1"])+len(orders["customer-2"]) == n {
			cancel() // all handled: shut down (a service runs until it is told to stop)
		}
		return nil
	})
	if err != nil {
		fmt.Println(err)
	}
	for _, customer := range slices.Sorted(maps.Keys(orders)) {
		fmt.Printf("%s: %s\n", customer, strings.Join(orders[customer], ", "))
	}
	// Output:
	// customer-0: order 0, order 3, order 6, order 9
	// customer-1: order 1, order 4, order 7, order 10
	// customer-2: order 2, order 5, order 8, order 11
}

// A failure policy: each record gets 5 attempts, with backoff between them;
// then it goes to a dead-letter queue and the stream goes on. Were the
// dead-letter queue unreachable, Process would stop with that error, the
// record unacked, and deliver it again after a restart.
func ExampleConsumer_Process() {
	deadLetters, err := os.OpenFile("dead-letters.jsonl", os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		fmt.Println(err)
		return
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
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := c.Process(ctx, func(ctx context.Context, rec kcl.Record) error {
		return charge(ctx, rec.Data) // ctx ends if this worker loses the shard
	}); err != nil {
		fmt.Println(err)
	}
}

func charge(ctx context.Context, order []byte) error {
	if len(order) == 0 {
		return errors.New("empty order")
	}
	return ctx.Err()
}
