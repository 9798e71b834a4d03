package kcl

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The pause gate's deadline, on real time with a short LeaseDuration: each
// case waits past a deadline (sleeps are lower bounds here, never
// synchronisation) and checks what the gate lets through.
func TestPauseGateDeadline(t *testing.T) {
	const lease = 100 * time.Millisecond // deadline: 90ms after a beat is sent
	past := func(g *pauseGate) {
		time.Sleep(time.Duration(g.deadline.Load()) - time.Since(g.epoch) + 5*time.Millisecond)
	}
	tests := []struct {
		name string
		run  func(t *testing.T, g *pauseGate)
	}{
		{"a beat confirmed in time keeps it open", func(t *testing.T, g *pauseGate) {
			now := time.Now()
			assert.False(t, g.beat(now, now))
			assert.True(t, g.check())
			time.Sleep(50 * time.Millisecond)
			now = time.Now()
			assert.False(t, g.beat(now, now), "before the deadline: trusted")
			time.Sleep(50 * time.Millisecond) // past the first beat's deadline, not the second's
			assert.True(t, g.check())
		}},
		{"the deadline shuts it on the next check", func(t *testing.T, g *pauseGate) {
			g.stop() // no timer: only check can shut it
			now := time.Now()
			g.beat(now, now)
			past(g)
			assert.False(t, g.check())
			assert.True(t, g.isShut())
		}},
		{"the deadline shuts it by itself for a blocked send", func(t *testing.T, g *pauseGate) {
			now := time.Now()
			g.beat(now, now)
			shutting := g.closing()
			select {
			case <-shutting:
			case <-time.After(10 * time.Second):
				t.Fatal("the gate did not shut by its timer")
			}
			assert.True(t, g.isShut())
		}},
		{"the deadline counts from when the beat was sent", func(t *testing.T, g *pauseGate) {
			g.stop()
			sent := time.Now()
			time.Sleep(60 * time.Millisecond) // a slow write, confirmed in time
			g.beat(sent, time.Now())
			time.Sleep(40 * time.Millisecond) // 100ms after sending: past 90ms
			assert.False(t, g.check())
		}},
		{"a beat confirmed after the deadline does not reopen it", func(t *testing.T, g *pauseGate) {
			now := time.Now()
			g.beat(now, now)
			past(g)
			g.check()
			now = time.Now()
			assert.True(t, g.beat(now, now), "late")
			assert.True(t, g.isShut())
			assert.False(t, g.check())
			pending, round := g.fencePending()
			assert.True(t, pending)
			now = time.Now()
			assert.True(t, g.beat(now, now), "still late until fenced")
			assert.True(t, g.fenced(round), "a beat in time for the pending one does not void the round: reopened")
			assert.True(t, g.check())
			pending, _ = g.fencePending()
			assert.False(t, pending)

			time.Sleep(100 * time.Millisecond) // past the deadline again
			now = time.Now()
			assert.True(t, g.beat(now, now), "late")
			_, round = g.fencePending()
			time.Sleep(100 * time.Millisecond) // the next beat comes too late for the pending one
			now = time.Now()
			assert.True(t, g.beat(now, now), "still late until fenced")
			assert.False(t, g.fenced(round), "a fence begun before a beat too late for it does not reopen the gate")
			_, round = g.fencePending()
			assert.True(t, g.fenced(round), "fenced after the last late beat: reopened")
			assert.True(t, g.check())
			pending, _ = g.fencePending()
			assert.False(t, pending)
		}},
		{"a late beat whose own deadline passed before the fence stays shut", func(t *testing.T, g *pauseGate) {
			g.stop()
			now := time.Now()
			g.beat(now, now)
			past(g)
			g.check()
			sent := time.Now()
			g.beat(sent, sent)
			_, round := g.fencePending()
			time.Sleep(100 * time.Millisecond) // the fence took longer than the lease
			assert.False(t, g.fenced(round))
			assert.True(t, g.isShut())
		}},
		{"a beat confirmed after the deadline with no check since is late too", func(t *testing.T, g *pauseGate) {
			g.stop() // a frozen process: no timer fired, no reader checked
			now := time.Now()
			g.beat(now, now)
			past(g)
			now = time.Now()
			assert.True(t, g.beat(now, now))
			assert.False(t, g.check())
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := newPauseGate(lease, discardLogger())
			defer g.stop()
			tc.run(t, g)
		})
	}
}

// Before its first heartbeat a gate lets nothing through.
func TestPauseGateBeforeTheFirstBeat(t *testing.T) {
	g := newPauseGate(time.Second, discardLogger())
	defer g.stop()
	require.False(t, g.check())
}

// keepDelivering opens the pause gate of a Consumer that a test drives
// without its lease loop, for an hour: no heartbeat will extend it.
func keepDelivering(c *Consumer) {
	now := time.Now()
	c.pause.beat(now.Add(time.Hour), now)
	c.pause.stop()
}

// Go's monotonic clock stands still while a Linux host is suspended; the
// wall clock goes on. A host that wakes from a suspend longer than the
// delivery deadline must find the gate shut, though its monotonic clock
// says no time passed: another worker may have taken its leases meanwhile.
func TestTheGateShutsWhenTheHostWakesFromASuspend(t *testing.T) {
	g := newPauseGate(time.Second, discardLogger())
	defer g.stop()
	now := time.Now()
	g.beat(now, now)
	require.True(t, g.check(), "just after a beat")
	mono, wall := g.clock()
	g.clock = func() (time.Duration, int64) { // suspended for a minute: only the wall clock moved
		return mono, wall + int64(time.Minute)
	}
	assert.False(t, g.check(), "the wall clock says the deadline passed")
	assert.True(t, g.isShut())
	late := time.Unix(0, wall+int64(time.Minute))
	assert.True(t, g.beat(late.Add(-time.Millisecond), late), "a beat confirmed after the wake is late: the leases are fenced first")
}
