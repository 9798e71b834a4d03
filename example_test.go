package kcl_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/kclgo/kcl"
)

// handle and handlePayment stand for the reader's own code in the examples.
func handle([]byte)        {}
func handlePayment([]byte) {}

// Consume and ack: the checkpoint moves past a record once it and every
// earlier record of its shard are acked. Every worker started with the same
// AppName shares the stream's shards through the DynamoDB lease table
// "billing" (created on first use). (Not run: it needs AWS, or the
// emulators.)
func ExampleConsume() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	for rec := range kcl.Consume(ctx, kcl.Options{StreamName: "orders", AppName: "billing"}) {
		handle(rec.Data)
		rec.Ack()
	}
	// The loop ends once ctx ended and shutdown completed: acks
	// checkpointed, leases released.
}

// New checks the options and makes no network call: an error wraps
// ErrInvalidOptions and names the field.
func ExampleNew() {
	_, err := kcl.New(kcl.Options{StreamName: "orders", AppName: "billing", MaxRecords: 20000})
	fmt.Println(errors.Is(err, kcl.ErrInvalidOptions))
	fmt.Println(err)
	// Output:
	// true
	// kcl: invalid options: MaxRecords: 20000 is out of range 1..10000
}

// Handle records concurrently: acks may come in any order, from any
// goroutine. The checkpoint of each shard only covers the contiguous prefix
// of acked records, so nothing unhandled is ever checkpointed. Keeping one
// partition key in order is the caller's part: here, one goroutine per shard
// handles that shard's records in order (and so each key's), while shards
// are handled in parallel. (Process does this, per key; not run: it needs
// AWS.)
func ExampleConsumer_Consume_concurrent() {
	c, err := kcl.New(kcl.Options{StreamName: "orders", AppName: "billing"})
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	perShard := map[string]chan kcl.Record{}
	done := make(chan struct{})
	workers := 0
	for rec := range c.Consume(ctx) {
		work, ok := perShard[rec.ShardID]
		if !ok {
			work = make(chan kcl.Record, 100)
			perShard[rec.ShardID] = work
			workers++
			go func() {
				defer func() { done <- struct{}{} }()
				for rec := range work {
					handle(rec.Data)
					rec.Ack() // out of order with other shards: fine
				}
			}()
		}
		work <- rec
	}
	for _, work := range perShard {
		close(work)
	}
	for range workers {
		<-done
	}
	if err := c.Err(); err != nil {
		log.Fatal(err)
	}
}

// Enhanced fan-out: records are pushed over HTTP/2, with 2 MB/s per shard for
// this consumer alone. The stream consumer (named AppName unless
// ConsumerName says otherwise) is registered if missing. (Not run: it needs
// AWS.)
func ExampleOptions_enhancedFanOut() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := kcl.Options{StreamName: "orders", AppName: "billing", EnhancedFanOut: true}
	for rec := range kcl.Consume(ctx, opts) {
		handle(rec.Data)
		rec.Ack()
	}
}

// Several streams as one group: every worker with this AppName shares the
// shards of all of them through one lease table (the Java KCL's
// multi-stream layout), and each record names its stream. Streams may be
// given by name or by ARN. (Not run: it needs AWS.)
func ExampleOptions_streams() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := kcl.Options{
		Streams: []string{"orders", "arn:aws:kinesis:eu-west-1:123456789012:stream/payments"},
		AppName: "billing",
	}
	for rec := range kcl.Consume(ctx, opts) {
		switch rec.StreamARN[strings.LastIndex(rec.StreamARN, "/")+1:] {
		case "orders":
			handle(rec.Data)
		case "payments":
			handlePayment(rec.Data)
		}
		rec.Ack()
	}
}

// Shut down on SIGTERM: the range loop ends only once what was acked is
// checkpointed and the leases are released, so another replica takes over
// at once and the program may exit. (Not run: it waits for a signal.)
func Example_gracefulShutdown() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	c, err := kcl.New(kcl.Options{StreamName: "orders", AppName: "billing", ShutdownTimeout: 20 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	for rec := range c.Consume(ctx) {
		handle(rec.Data)
		rec.Ack()
	}
	if err := c.Err(); err != nil {
		log.Fatal("stopped: ", err)
	}
}

// Read Stats on a ticker, for logs or metrics (examples/prometheus exports
// them as Prometheus metrics). (Not run: it needs AWS.)
func ExampleConsumer_Stats() {
	c, err := kcl.New(kcl.Options{StreamName: "orders", AppName: "billing"})
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		tick := time.NewTicker(time.Minute)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			for _, sh := range c.Stats().Shards {
				if sh.Held {
					log.Printf("%s: %d ms behind, %d delivered, %d acked, %d unacked",
						sh.ShardID, sh.MillisBehindLatest, sh.RecordsDelivered, sh.RecordsAcked, sh.Unacked)
				}
			}
		}
	}()
	for rec := range c.Consume(ctx) {
		handle(rec.Data)
		rec.Ack()
	}
}
