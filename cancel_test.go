package kcl

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Cancel means no more records: the records still waiting in the channel's
// buffer are taken back by kcl (never received, they are not the loop's to
// ack), so a loop that cancels and then drains the channel without acking
// gets none of them, and shutdown does not wait ShutdownTimeout for them
// (issue 24, item 4: a loop that cancelled after 50 records received 80
// more, and shutdown waited with "80 unacked"). On the emulators.
func TestCancelTakesBackTheRecordsStillInTheChannel(t *testing.T) {
	f := newFixture(t, emu.kinesisLocal, 1)
	f.putN(400, 8, "")
	lines := &lineCounter{counts: map[string]int{"records taken back": 0, "shutdown timeout": 0}}
	opts := f.options()
	opts.ShutdownTimeout = 5 * time.Second
	opts.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(testOutput{t}, lines), &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := startConsumer(t, opts)
	s.receive(50, 30*time.Second, ackAll)
	deadline := time.Now().Add(20 * time.Second)
	for len(s.ch) < cap(s.ch) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	require.Equal(t, cap(s.ch), len(s.ch), "the buffer fills while the loop waits")

	s.cancel()
	for lines.get("records taken back") == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	require.Equal(t, 1, lines.get("records taken back"), "kcl takes the buffer back")
	more := 0
	for range s.ch { // not acked: the loop believes none comes after cancel
		more++
	}
	assert.Zero(t, more, "records received after cancel")
	assert.Zero(t, lines.get("shutdown timeout"), "shutdown waited for records never received")
	require.NoError(t, s.c.Err())
}
