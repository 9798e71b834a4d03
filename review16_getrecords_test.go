//go:build !race

// The race detector's sync.Pool drops a quarter of what is put in it, so
// these measures of the pool's reuse only mean something without it.

package kcl

import (
	"bytes"
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestReview16PooledBodiesStayPooledAsPagesVary: answers of at most
// maxPooledBody bytes are read into buffers the pool keeps (getrecords.go:
// "Only buffers of at most maxPooledBody bytes are kept"). A shard whose
// pages vary in size between 2 and 4 MiB (a 1 MB page of 100-byte records
// is 2.8 MiB) must then read them without a fresh buffer each time.
//
// bytes.Buffer.Grow doubles the capacity of the pooled buffer it is given
// (2.2 MiB -> 4.4 MiB for a 2.6 MiB answer), so the buffer ends above
// maxPooledBody and is dropped: with pages alternating 2.2 and 2.6 MiB,
// every answer is read into a new buffer, 3.3 MiB allocated per call.
func TestReview16PooledBodiesStayPooledAsPagesVary(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))  // one P: the pool's private slot is seen by the next Get
	defer debug.SetGCPercent(debug.SetGCPercent(-1)) // no collection clears the pool
	bodies := [][]byte{padded(22 << 20 / 10), padded(26 << 20 / 10)}
	for _, b := range bodies {
		require.LessOrEqual(t, len(b)+bytes.MinRead, maxPooledBody, "each answer fits a pooled buffer")
	}
	call := func(i int) {
		_, err := kclGetRecords(bodies[i%2])
		require.NoError(t, err)
	}
	for i := range 4 { // warm up: the pool holds a buffer for each size there is
		call(i)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const calls = 20
	for i := range calls {
		call(i)
	}
	runtime.ReadMemStats(&after)
	perCall := (after.TotalAlloc - before.TotalAlloc) / calls
	t.Logf("%d bytes allocated a call (answers of %d and %d bytes)", perCall, len(bodies[0]), len(bodies[1]))
	require.Less(t, perCall, uint64(256<<10), "answers under maxPooledBody are read into pooled buffers")
}

// padded is a valid, empty GetRecords answer of n bytes: "{}" then spaces,
// which the decoder skips after the closing brace as the SDK does.
func padded(n int) []byte {
	b := bytes.Repeat([]byte(" "), n)
	copy(b, "{}")
	return b
}
