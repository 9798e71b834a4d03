//go:build go1.25

package kcl

// ProcessBatch and the pause gate, in virtual time (synctest), as
// guarantees_test.go holds Process to it.

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kclgo/kcl/internal/kinesisfake"
)

// ProcessBatch starts no batch once the worker's pause gate is shut, and a
// running batch's context ends at the deadline (as
// TestProcessRunsNoHandlerPastTheDeliveryDeadline for Process).
func TestProcessBatchRunsNoHandlerPastTheDeliveryDeadline(t *testing.T) {
	noLeak(t)
	synctest.Test(t, func(t *testing.T) {
		kin := kinesisfake.New(kinesisfake.Options{})
		kin.CreateStream("s", 1)
		for i := range 400 {
			if _, _, err := kin.PutRecord("s", fmt.Sprint("k", i%5), fmt.Appendf(nil, "s/k:%d", i)); err != nil {
				t.Fatal(err)
			}
		}
		g := newSchedGroup(t, kin)
		var mu sync.Mutex
		var startedShut, ranPast int
		gateShutAt := map[*schedWorker]time.Time{}
		handler := func(w **schedWorker) func(context.Context, []Record) error {
			return func(ctx context.Context, recs []Record) error {
				gate := (*w).c.pause
				shutAtStart := gate.isShut()
				var err error
				select {
				case <-time.After(150 * time.Millisecond):
				case <-ctx.Done():
					err = ctx.Err()
				}
				mu.Lock()
				defer mu.Unlock()
				if shutAtStart {
					startedShut++
				} else if shut := gateShutAt[*w]; !shut.IsZero() && time.Now().After(shut) && ctx.Err() == nil {
					ranPast++
				}
				return err
			}
		}
		opts := func(o *Options) { o.BatchSize = 7 }
		var w1, w2 *schedWorker
		w1 = g.newWorker("w1", opts)
		gateShutAt[w1] = time.Time{}
		go func() {
			<-w1.c.pause.closing()
			mu.Lock()
			gateShutAt[w1] = time.Now()
			mu.Unlock()
		}()
		processBatch(g, w1, handler(&w1))
		waitFor(t, 5*time.Second, "w1 takes the lease", func() bool { return g.owner(shard0) == "w1" })
		w2 = g.newWorker("w2", opts)
		processBatch(g, w2, handler(&w2))
		time.Sleep(500 * time.Millisecond)
		w1.table.cutOff()
		waitFor(t, 5*time.Second, "w2 takes the lease", func() bool { return g.owner(shard0) == "w2" })
		time.Sleep(time.Second)
		g.stop()
		mu.Lock()
		defer mu.Unlock()
		require.Zero(t, startedShut, "batches w1 started after its gate shut")
		require.Zero(t, ranPast, "batches whose context outlived w1's delivery deadline")
		require.NotEmpty(t, both(g.deliveries(), "w1", "w2"), "w2 ran records w1 had run: the lease moved mid-stream")
	})
}

// processBatch runs ProcessBatch on w as schedGroup.process runs Process.
func processBatch(g *schedGroup, w *schedWorker, handle func(context.Context, []Record) error) {
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	go func() {
		defer close(w.done)
		w.err = w.c.ProcessBatch(ctx, func(ctx context.Context, recs []Record) error {
			for _, r := range recs {
				g.note(w.name, r)
			}
			return handle(ctx, recs)
		})
	}()
}
