//go:build go1.25

package kcl

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kclgo/kcl/internal/kinesisfake"
)

// A healthy kcl worker is never taken for a Java KCL worker, also while
// its heartbeat item is gone: two processes with one WorkerID (w4), the
// second started while the first holds no lease yet and stopped at once,
// removing the item (twinHolds finds no lease of w4 written by the first).
// The first takes leases and checkpoints them for up to a heartbeat
// interval with no heartbeat item; a scanner holding leases sees w4's
// counters rise, and a consistent read finds no heartbeat item. The lease
// writes' kclWriter mark says they are a kcl worker's (found by a review:
// the scanner ended with errForeignWorkers). A third worker, D, stops
// gracefully after the twin, and C may hold only two leases, so that the
// first process takes D's inside that window.
func TestATwinStoppedAtOnceDoesNotMakeALiveWorkerLookForeign(t *testing.T) {
	noLeak(t)
	synctest.Test(t, func(t *testing.T) {
		kin := kinesisfake.New(kinesisfake.Options{})
		kin.CreateStream("s", 4)
		g := newSchedGroup(t, kin)
		slow := func(o *Options) { o.LeaseDuration = 10 * time.Second }
		ctx, stopProducing := context.WithCancel(context.Background())
		defer stopProducing()
		g.produce(ctx, "s", 8, 10*time.Millisecond)

		c := g.consume(g.newWorker("C", func(o *Options) { slow(o); o.MaxLeasesPerWorker = 2 })) // D's leases go to A
		d := g.consume(g.newWorker("D", slow))
		time.Sleep(3 * time.Second)

		a := g.newWorker("A", func(o *Options) { slow(o); o.WorkerID = "w4" })
		b := g.newWorker("B", func(o *Options) { slow(o); o.WorkerID = "w4" })
		var once sync.Once
		aBeat := make(chan struct{})
		a.table.set(func(h *hookTable) {
			h.after = func(op, key string, err error) {
				if op == "heartbeat" && err == nil {
					once.Do(func() { close(aBeat) })
				}
			}
		})
		var bOnce sync.Once
		g.consume(a)
		<-aBeat
		b.table.set(func(h *hookTable) {
			h.after = func(op, key string, err error) {
				if op == "heartbeat" && err == nil {
					bOnce.Do(func() { go b.cancel() }) // the twin stops right after its first beat
				}
			}
		})
		g.consume(b)
		<-b.done
		_, beatOK, _ := g.table.readBeat(context.Background(), "w4")
		t.Logf("after the twin stopped, w4's heartbeat item present: %v", beatOK)
		d.cancel() // a graceful stop frees D's leases: A takes some

		time.Sleep(30 * time.Second)
		if c.stopped() && errors.Is(c.c.Err(), errForeignWorkers) {
			t.Fatalf("a kcl-only group: worker C ended as if beside Java workers: %v", c.c.Err())
		}
		if a.stopped() {
			t.Logf("A stopped: %v", a.c.Err())
		}
	})
}
