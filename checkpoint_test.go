package kcl

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pushOne registers one record with sequence number seq.
func pushOne(w *ackWindow, seq string) (uint64, bool) {
	return w.push([]Record{{SequenceNumber: seq, Data: []byte("x")}})
}

func TestAckWindowCheckpointsOnlyTheContiguousAckedPrefix(t *testing.T) {
	start := checkpoint{seq: checkpointTrimHorizon}
	tests := []struct {
		name        string
		delivered   int
		acks        []int // indexes acked, in this order
		wantAcked   string
		wantUnacked int
	}{
		{"nothing acked keeps the starting checkpoint", 3, nil, checkpointTrimHorizon, 3},
		{"acks in order move it to the last", 3, []int{0, 1, 2}, "s2", 0},
		{"a gap at the front holds it back", 3, []int{1, 2}, checkpointTrimHorizon, 3},
		{"filling the gap moves it over all", 3, []int{2, 1, 0}, "s2", 0},
		{"a gap in the middle stops it before the gap", 5, []int{0, 1, 3, 4}, "s1", 3},
		{"repeated acks count once", 3, []int{0, 0, 0}, "s0", 2},
		{"acks of unknown indexes are ignored", 2, []int{7, 100}, checkpointTrimHorizon, 2},
		{"reverse order", 6, []int{5, 4, 3, 2, 1, 0}, "s5", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newAckWindow(start)
			for i := range tt.delivered {
				idx, ok := pushOne(w, fmt.Sprintf("s%d", i))
				require.True(t, ok)
				require.Equal(t, uint64(i), idx)
			}
			for _, i := range tt.acks {
				w.ack(uint64(i))
			}
			acked, unacked := w.state()
			assert.Equal(t, tt.wantAcked, acked.seq)
			assert.Equal(t, tt.wantUnacked, unacked)
		})
	}
}

func TestAckWindowIgnoresEverythingOnceClosed(t *testing.T) {
	w := newAckWindow(checkpoint{seq: "s"})
	idx, _ := pushOne(w, "a")
	w.close()
	w.ack(idx)
	acked, _ := w.state()
	assert.Equal(t, "s", acked.seq, "a late ack after the lease was lost must not move the checkpoint")
	_, ok := pushOne(w, "b")
	assert.False(t, ok)
}

func TestAckWindowTruncateWithdrawsWhatWasNotDelivered(t *testing.T) {
	w := newAckWindow(checkpoint{seq: "s"})
	first, _ := w.push([]Record{{SequenceNumber: "a"}, {SequenceNumber: "b"}, {SequenceNumber: "c"}})
	w.truncate(first + 1) // only "a" reached the user
	_, n := w.state()
	assert.Equal(t, 1, n)
	w.ack(first)
	acked, n := w.state()
	assert.Equal(t, "a", acked.seq)
	assert.Equal(t, 0, n)
	d, _ := pushOne(w, "d")
	assert.Equal(t, first+1, d, "an index withdrawn is reused")
	w.truncate(first) // an index inside the acked prefix: ignored
	acked, n = w.state()
	assert.Equal(t, "a", acked.seq)
	assert.Equal(t, 1, n)
}

func TestAckWindowConcurrentAcksFromManyGoroutines(t *testing.T) {
	const n = 20000
	w := newAckWindow(checkpoint{seq: "start"})
	idx := make([]uint64, n)
	for i := range idx {
		idx[i], _ = pushOne(w, fmt.Sprint(i))
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := n - 1 - g; i >= 0; i -= 8 { // every goroutine acks backwards
				w.ack(idx[i])
			}
		})
	}
	wg.Wait()
	acked, unacked := w.state()
	assert.Equal(t, fmt.Sprint(n-1), acked.seq)
	assert.Equal(t, 0, unacked)
}

func TestAckWindowWaitBelowWakesOnAck(t *testing.T) {
	w := newAckWindow(checkpoint{seq: "s"})
	a, _ := pushOne(w, "a")
	done := make(chan bool)
	go func() { done <- w.waitBelow(context.Background(), 1) }()
	select {
	case <-done:
		t.Fatal("waitBelow returned while a record was unacked")
	case <-time.After(50 * time.Millisecond):
	}
	w.ack(a)
	assert.True(t, <-done)

	ctx, cancel := context.WithCancel(context.Background())
	pushOne(w, "b")
	cancel()
	assert.False(t, w.waitBelow(ctx, 1), "a cancelled wait reports false")
}
