package kcl_test

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/kclgo/kcl"
)

func handle([]byte) {}

// Consume and ack: the checkpoint moves past a record once it and every
// earlier record of its shard are acked.
func ExampleConsume() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for rec := range kcl.Consume(ctx, kcl.Options{StreamName: "orders", AppName: "billing"}) {
		handle(rec.Data)
		rec.Ack()
	}
}

// Process records concurrently: acks may come in any order, from any
// goroutine. The checkpoint of each shard only covers the contiguous prefix
// of acked records, so nothing unprocessed is ever checkpointed. Handling of
// one partition key in order is the caller's to keep (here: by shard).
func ExampleConsumer_Consume_concurrent() {
	c, err := kcl.New(kcl.Options{StreamName: "orders", AppName: "billing", MaxUnackedPerShard: 1000})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	work := make(chan kcl.Record)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for rec := range work {
				handle(rec.Data)
				rec.Ack() // out of order with other workers: fine
			}
		}()
	}
	for rec := range c.Consume(ctx) {
		work <- rec
	}
	close(work)
	wg.Wait()
	if err := c.Err(); err != nil {
		fmt.Println(err)
	}
}

// Enhanced fan-out: records are pushed over HTTP/2, with 2 MB/s per shard for
// this consumer alone. The stream consumer (named AppName unless
// ConsumerName says otherwise) is registered if missing.
func ExampleOptions_enhancedFanOut() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opts := kcl.Options{StreamName: "orders", AppName: "billing", EnhancedFanOut: true}
	for rec := range kcl.Consume(ctx, opts) {
		handle(rec.Data)
		rec.Ack()
	}
}

// Shut down on SIGTERM: the range loop ends only once what was acked is
// checkpointed and the leases are released, so another replica takes over
// at once and the program may exit.
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

// Read Stats for logs or metrics (examples/prometheus exports them).
func ExampleConsumer_Stats() {
	c, err := kcl.New(kcl.Options{StreamName: "orders", AppName: "billing"})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { // ends with ctx
		tick := time.NewTicker(10 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			for _, sh := range c.Stats().Shards {
				if sh.Held {
					fmt.Printf("%s: %d ms behind, %d unacked, checkpoint %v old\n", sh.ShardID, sh.MillisBehindLatest, sh.Unacked, sh.CheckpointAge)
				}
			}
		}
	}()
	for rec := range c.Consume(ctx) {
		handle(rec.Data)
		rec.Ack()
	}
}
