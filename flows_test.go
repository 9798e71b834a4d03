package kcl_test

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kclgo/kcl"
	"github.com/kclgo/kcl/internal/kinesisfake"
)

// ordersStream makes an in-process Kinesis with a stream "orders" of the
// given shards and n records, "order 0" to "order n-1", keyed by three
// customers.
func ordersStream(t *testing.T, shards, n int) *kinesisfake.Server {
	t.Helper()
	kin := kinesisfake.New(kinesisfake.Options{})
	kin.CreateStream("orders", shards)
	for i := range n {
		if _, _, err := kin.PutRecord("orders", fmt.Sprintf("customer-%d", i%3), fmt.Appendf(nil, "order %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	return kin
}

// byCustomer prints what was handled, per customer in the order handled.
func byCustomer(handled map[string][]string) string {
	var out strings.Builder
	for _, customer := range slices.Sorted(maps.Keys(handled)) {
		fmt.Fprintf(&out, "%s: %s\n", customer, strings.Join(handled[customer], ", "))
	}
	return out.String()
}

// The flows of the Examples, run end to end on an in-process Kinesis with
// leases in memory (the Examples need AWS, so they are only compiled).
func TestExampleFlows(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	tests := []struct {
		name string
		run  func(t *testing.T) string
		want string
	}{
		{"Consume: each shard in order, acked", func(t *testing.T) string {
			kin := ordersStream(t, 1, 3)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var out strings.Builder
			handled := 0
			for rec := range kcl.Consume(ctx, kcl.Options{StreamName: "orders", Kinesis: kin, InitialPosition: kcl.TrimHorizon, Logger: quiet}) {
				fmt.Fprintf(&out, "%s: %s\n", rec.PartitionKey, rec.Data)
				rec.Ack()
				if handled++; handled == 3 {
					cancel()
				}
			}
			return out.String()
		}, "customer-0: order 0\ncustomer-1: order 1\ncustomer-2: order 2\n"},

		{"Consume, a goroutine per shard: each key in order", func(t *testing.T) string {
			const n = 30
			kin := ordersStream(t, 4, n)
			c, err := kcl.New(kcl.Options{StreamName: "orders", Kinesis: kin, InitialPosition: kcl.TrimHorizon, MaxUnackedPerShard: 1000, Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var mu sync.Mutex
			handled := map[string][]string{}
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
							mu.Lock()
							handled[rec.PartitionKey] = append(handled[rec.PartitionKey], string(rec.Data))
							if len(handled["customer-0"])+len(handled["customer-1"])+len(handled["customer-2"]) == n {
								cancel()
							}
							mu.Unlock()
							rec.Ack()
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
				t.Fatal(err)
			}
			return byCustomer(handled)
		}, "customer-0: order 0, order 3, order 6, order 9, order 12, order 15, order 18, order 21, order 24, order 27\n" +
			"customer-1: order 1, order 4, order 7, order 10, order 13, order 16, order 19, order 22, order 25, order 28\n" +
			"customer-2: order 2, order 5, order 8, order 11, order 14, order 17, order 20, order 23, order 26, order 29\n"},

		{"Streams: each record names its stream", func(t *testing.T) string {
			kin := ordersStream(t, 2, 4)
			kin.CreateStream("payments", 1)
			for i := range 2 {
				if _, _, err := kin.PutRecord("payments", "customer-0", fmt.Appendf(nil, "payment %d", i)); err != nil {
					t.Fatal(err)
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			perStream := map[string]int{}
			for rec := range kcl.Consume(ctx, kcl.Options{Streams: []string{"orders", "payments"}, Kinesis: kin, InitialPosition: kcl.TrimHorizon, Logger: quiet}) {
				perStream[rec.StreamARN[strings.LastIndex(rec.StreamARN, "/")+1:]]++
				rec.Ack()
				if perStream["orders"] == 4 && perStream["payments"] == 2 {
					cancel()
				}
			}
			return fmt.Sprint(perStream)
		}, "map[orders:4 payments:2]"},

		{"Stats: delivered, acked, unacked", func(t *testing.T) string {
			kin := ordersStream(t, 1, 5)
			c, err := kcl.New(kcl.Options{StreamName: "orders", Kinesis: kin, InitialPosition: kcl.TrimHorizon, Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var out strings.Builder
			var pending []kcl.Record
			for rec := range c.Consume(ctx) {
				if pending = append(pending, rec); len(pending) <= 3 {
					rec.Ack() // the last two are acked only after Stats is read
				}
				if len(pending) == 5 {
					for _, sh := range c.Stats().Shards {
						if sh.Held {
							fmt.Fprintf(&out, "%s: %d delivered, %d acked, %d unacked\n", sh.ShardID, sh.RecordsDelivered, sh.RecordsAcked, sh.Unacked)
						}
					}
					pending[3].Ack()
					pending[4].Ack()
					cancel()
				}
			}
			return out.String()
		}, "shardId-000000000000: 5 delivered, 3 acked, 2 unacked\n"},

		{"Process: each key in order, Concurrency 8", func(t *testing.T) string {
			const n = 12
			kin := ordersStream(t, 2, n)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var mu sync.Mutex
			handled := map[string][]string{}
			err := kcl.Process(ctx, kcl.Options{StreamName: "orders", Kinesis: kin, InitialPosition: kcl.TrimHorizon, Concurrency: 8, Logger: quiet},
				func(ctx context.Context, rec kcl.Record) error {
					time.Sleep(time.Millisecond) // the work
					mu.Lock()
					defer mu.Unlock()
					handled[rec.PartitionKey] = append(handled[rec.PartitionKey], string(rec.Data))
					if len(handled["customer-0"])+len(handled["customer-1"])+len(handled["customer-2"]) == n {
						cancel()
					}
					return nil
				})
			if err != nil {
				t.Fatal(err)
			}
			return byCustomer(handled)
		}, "customer-0: order 0, order 3, order 6, order 9\ncustomer-1: order 1, order 4, order 7, order 10\ncustomer-2: order 2, order 5, order 8, order 11\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.run(t); got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}
