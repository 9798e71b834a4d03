package kcl

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pushOne registers one record with sequence number seq.
func pushOne(w *ackWindow, seq string) (Record, bool) {
	r := []Record{{SequenceNumber: seq, Data: []byte("x")}}
	ok := w.push(r)
	return r[0], ok
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
		{"reverse order", 6, []int{5, 4, 3, 2, 1, 0}, "s5", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newAckWindow(start)
			var recs []Record
			for i := range tt.delivered {
				r, ok := pushOne(w, fmt.Sprintf("s%d", i))
				require.True(t, ok)
				require.Equal(t, uint64(i), r.index)
				recs = append(recs, r)
			}
			for _, i := range tt.acks {
				recs[i].Ack()
			}
			acked, unacked := w.state()
			assert.Equal(t, tt.wantAcked, acked.seq)
			assert.Equal(t, tt.wantUnacked, unacked)
		})
	}
}

func TestAckWindowIgnoresEverythingOnceClosed(t *testing.T) {
	w := newAckWindow(checkpoint{seq: "s"})
	r, _ := pushOne(w, "a")
	w.close()
	r.Ack()
	acked, _ := w.state()
	assert.Equal(t, "s", acked.seq, "a late ack after the lease was lost must not move the checkpoint")
	_, ok := pushOne(w, "b")
	assert.False(t, ok)

	// The lease taken again: a new window, which the old record's ack does not touch.
	again := newAckWindow(checkpoint{seq: "s"})
	pushOne(again, "a")
	r.Ack()
	acked, unacked := again.state()
	assert.Equal(t, "s", acked.seq)
	assert.Equal(t, 1, unacked)
}

// close counts the acks made before it, though nobody asked for the
// prefix since: a write that passes the lease on closes the window first,
// and writes the prefix as it stood then (found by a review).
func TestAckWindowCloseCountsTheAcksBeforeIt(t *testing.T) {
	w := newAckWindow(checkpoint{seq: "s"})
	r, _ := pushOne(w, "a")
	r.Ack()
	w.close()
	acked, unacked := w.state()
	assert.Equal(t, "a", acked.seq)
	assert.Zero(t, unacked)
}

func TestAckWindowTruncateWithdrawsWhatWasNotDelivered(t *testing.T) {
	w := newAckWindow(checkpoint{seq: "s"})
	recs := []Record{{SequenceNumber: "a"}, {SequenceNumber: "b"}, {SequenceNumber: "c"}}
	w.push(recs)
	w.truncate(recs[1].index) // only "a" reached the user
	_, n := w.state()
	assert.Equal(t, 1, n)
	recs[0].Ack()
	acked, n := w.state()
	assert.Equal(t, "a", acked.seq)
	assert.Equal(t, 0, n)
	d, _ := pushOne(w, "d")
	assert.Equal(t, recs[1].index, d.index, "an index withdrawn is reused")
	w.truncate(recs[0].index) // an index inside the acked prefix: ignored
	acked, n = w.state()
	assert.Equal(t, "a", acked.seq)
	assert.Equal(t, 1, n)
	d.Ack()
	acked, n = w.state()
	assert.Equal(t, "d", acked.seq)
	assert.Equal(t, 0, n)
}

// TestAckWindowMatchesAModel acks pages of records, pushed in pieces of any
// size (so that acks cross the 64-record chunks), in random orders with
// repeats, and checks the prefix, the unacked count and the acked counts
// against the plainest model after every ack.
func TestAckWindowMatchesAModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 50 {
		w := newAckWindow(checkpoint{seq: "start"})
		var recs []Record
		for len(recs) < 300 {
			piece := make([]Record, 1+rng.IntN(150))
			for i := range piece {
				piece[i] = Record{SequenceNumber: fmt.Sprint(len(recs) + i), Data: make([]byte, len(recs)+i)}
			}
			require.True(t, w.push(piece))
			recs = append(recs, piece...)
		}
		acked := make([]bool, len(recs))
		ackedCount, ackedBytes := int64(0), int64(0)
		for _, i := range rng.Perm(len(recs)) {
			if rng.IntN(4) == 0 {
				i = rng.IntN(len(recs)) // a repeat, or an ack out of turn
			}
			recs[i].Ack()
			if !acked[i] {
				acked[i] = true
				ackedCount++
				ackedBytes += int64(len(recs[i].Data))
			}
			prefix := 0
			for prefix < len(recs) && acked[prefix] {
				prefix++
			}
			want := "start"
			if prefix > 0 {
				want = recs[prefix-1].SequenceNumber
			}
			cp, unacked, records, bytes, _ := w.stats()
			require.Equal(t, want, cp.seq, "round %d", round)
			require.Equal(t, len(recs)-prefix, unacked, "round %d", round)
			require.Equal(t, ackedCount, records, "round %d", round)
			require.Equal(t, ackedBytes, bytes, "round %d", round)
		}
	}
}

func TestAckWindowConcurrentAcksFromManyGoroutines(t *testing.T) {
	const n = 20000
	w := newAckWindow(checkpoint{seq: "start"})
	recs := make([]Record, n)
	for i := range recs {
		recs[i].SequenceNumber = fmt.Sprint(i)
	}
	for i := 0; i < n; i += 64 {
		w.push(recs[i:min(n, i+64)])
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := n - 1 - g; i >= 0; i -= 8 { // every goroutine acks backwards
				recs[i].Ack()
			}
		}()
		wg.Add(1)
		go func() { // while the prefix is worked out
			defer wg.Done()
			for range 100 {
				w.state()
			}
		}()
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
	a.Ack()
	assert.True(t, <-done)

	ctx, cancel := context.WithCancel(context.Background())
	pushOne(w, "b")
	cancel()
	assert.False(t, w.waitBelow(ctx, 1), "a cancelled wait reports false")
}

// TestAckWindowWaiterNeverMissesTheLastAck races a waiter against acks from
// several goroutines, many times over: the waiter registers and reads the
// marks while the last acks land, and must still be woken.
func TestAckWindowWaiterNeverMissesTheLastAck(t *testing.T) {
	for round := range 2000 {
		w := newAckWindow(checkpoint{seq: "s"})
		recs := make([]Record, 8)
		w.push(recs)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				recs[2*g].Ack()
				recs[2*g+1].Ack()
			}()
		}
		ok := w.waitBelow(ctx, 1)
		cancel()
		wg.Wait()
		require.True(t, ok, "round %d: every record was acked, yet the waiter was not woken", round)
	}
}
