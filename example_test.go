package kcl_test

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kclgo/kcl"
	"github.com/kclgo/kcl/internal/kinesisfake"
)

func handle([]byte) {}

// ordersStream makes an in-process Kinesis with a stream "orders" of the
// given shards and n records, "order 0" to "order n-1", keyed by three
// customers. It stands in for the real Kinesis so that the examples run as
// tests: a program leaves Options.Kinesis unset.
func ordersStream(shards, n int) *kinesisfake.Server {
	kin := kinesisfake.New(kinesisfake.Options{})
	kin.CreateStream("orders", shards)
	for i := range n {
		if _, _, err := kin.PutRecord("orders", fmt.Sprintf("customer-%d", i%3), fmt.Appendf(nil, "order %d", i)); err != nil {
			panic(err)
		}
	}
	return kin
}

// Consume and ack: the checkpoint moves past a record once it and every
// earlier record of its shard are acked. (AppName is empty here, so leases
// and checkpoints are kept in memory; set it to share the stream between
// workers through a DynamoDB lease table.)
func ExampleConsume() {
	kin := ordersStream(1, 3)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	handled := 0
	opts := kcl.Options{StreamName: "orders", Kinesis: kin, InitialPosition: kcl.TrimHorizon, Logger: slog.New(slog.DiscardHandler)}
	for rec := range kcl.Consume(ctx, opts) {
		fmt.Printf("%s: %s\n", rec.PartitionKey, rec.Data)
		rec.Ack()
		if handled++; handled == 3 {
			cancel() // a service runs until it is told to stop
		}
	}
	// Output:
	// customer-0: order 0
	// customer-1: order 1
	// customer-2: order 2
}

// Process records concurrently: acks may come in any order, from any
// goroutine. The checkpoint of each shard only covers the contiguous prefix
// of acked records, so nothing unprocessed is ever checkpointed. Handling of
// one partition key in order is the caller's to keep: here, one goroutine
// per shard handles that shard's records in order (and so each key's), while
// shards are handled in parallel.
func ExampleConsumer_Consume_concurrent() {
	const n = 30
	kin := ordersStream(4, n)
	c, err := kcl.New(kcl.Options{StreamName: "orders", Kinesis: kin, InitialPosition: kcl.TrimHorizon, MaxUnackedPerShard: 1000, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var mu sync.Mutex
	handled := map[string][]string{} // by customer, in the order handled
	var wg sync.WaitGroup
	perShard := map[string]chan kcl.Record{}
	for rec := range c.Consume(ctx) {
		work, ok := perShard[rec.ShardID]
		if !ok {
			work = make(chan kcl.Record, 100)
			perShard[rec.ShardID] = work
			wg.Add(1)
			go func() {
				defer wg.Done()
				for rec := range work {
					handle(rec.Data)
					mu.Lock()
					handled[rec.PartitionKey] = append(handled[rec.PartitionKey], string(rec.Data))
					if total := len(handled["customer-0"]) + len(handled["customer-1"]) + len(handled["customer-2"]); total == n {
						cancel()
					}
					mu.Unlock()
					rec.Ack() // out of order with other shards: fine
				}
			}()
		}
		work <- rec
	}
	for _, work := range perShard {
		close(work)
	}
	wg.Wait()
	if err := c.Err(); err != nil {
		fmt.Println(err)
	}
	for _, customer := range slices.Sorted(maps.Keys(handled)) {
		fmt.Printf("%s: %s\n", customer, strings.Join(handled[customer], ", "))
	}
	// Output:
	// customer-0: order 0, order 3, order 6, order 9, order 12, order 15, order 18, order 21, order 24, order 27
	// customer-1: order 1, order 4, order 7, order 10, order 13, order 16, order 19, order 22, order 25, order 28
	// customer-2: order 2, order 5, order 8, order 11, order 14, order 17, order 20, order 23, order 26, order 29
}

// Enhanced fan-out: records are pushed over HTTP/2, with 2 MB/s per shard for
// this consumer alone. The stream consumer (named AppName unless
// ConsumerName says otherwise) is registered if missing. (Not run: it needs
// AWS, or kinesis-local as in fanout_test.go.)
func ExampleOptions_enhancedFanOut() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opts := kcl.Options{StreamName: "orders", AppName: "billing", EnhancedFanOut: true}
	for rec := range kcl.Consume(ctx, opts) {
		handle(rec.Data)
		rec.Ack()
	}
}

// Several streams as one group: every worker with this AppName shares the
// shards of all of them through one lease table (the Java KCL's
// multi-stream layout), and each record names its stream. Streams may be
// given by name or by ARN.
func ExampleOptions_streams() {
	kin := ordersStream(2, 4)
	kin.CreateStream("payments", 1)
	for i := range 2 {
		if _, _, err := kin.PutRecord("payments", "customer-0", fmt.Appendf(nil, "payment %d", i)); err != nil {
			panic(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	perStream := map[string]int{}
	opts := kcl.Options{Streams: []string{"orders", "payments"}, Kinesis: kin, InitialPosition: kcl.TrimHorizon, Logger: slog.New(slog.DiscardHandler)}
	for rec := range kcl.Consume(ctx, opts) {
		name := rec.StreamARN[strings.LastIndex(rec.StreamARN, "/")+1:]
		perStream[name]++
		rec.Ack()
		if perStream["orders"] == 4 && perStream["payments"] == 2 {
			cancel()
		}
	}
	fmt.Println(perStream)
	// Output:
	// map[orders:4 payments:2]
}

// Shut down on SIGTERM: the range loop ends only once what was acked is
// checkpointed and the leases are released, so another replica takes over
// at once and the program may exit. (Not run: it waits for a signal.)
func Example_gracefulShutdown() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	c, err := kcl.New(kcl.Options{StreamName: "orders", AppName: "billing", ShutdownTimeout: 20 * time.Second})
	if err != nil {
		fmt.Println(err)
		return
	}
	for rec := range c.Consume(ctx) {
		handle(rec.Data)
		rec.Ack()
	}
	if err := c.Err(); err != nil {
		fmt.Println("stopped:", err)
	}
}

// Read Stats for logs or metrics (examples/prometheus exports them): here
// once every record was handled; a service would read them on a ticker.
func ExampleConsumer_Stats() {
	kin := ordersStream(1, 5)
	c, err := kcl.New(kcl.Options{StreamName: "orders", Kinesis: kin, InitialPosition: kcl.TrimHorizon, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var pending []kcl.Record
	for rec := range c.Consume(ctx) {
		handle(rec.Data)
		if pending = append(pending, rec); len(pending) <= 3 {
			rec.Ack() // the last two are acked only after Stats is read
		}
		if len(pending) == 5 {
			for _, sh := range c.Stats().Shards {
				if sh.Held {
					fmt.Printf("%s: %d delivered, %d acked, %d unacked\n", sh.ShardID, sh.RecordsDelivered, sh.RecordsAcked, sh.Unacked)
				}
			}
			pending[3].Ack()
			pending[4].Ack()
			cancel()
		}
	}
	// Output:
	// shardId-000000000000: 5 delivered, 3 acked, 2 unacked
}
