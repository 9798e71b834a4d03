package kcl

import (
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestChunkBuffer(t *testing.T) {
	for _, tc := range []struct{ bufferSize, chunks int }{
		{0, 0}, // -1 (unbuffered) is 0 once New normalized it
		{1, 0},
		{63, 0},
		{64, 1},
		{128, 2}, // the default
		{1000, 15},
	} {
		assert.Equal(t, tc.chunks, chunkBuffer(tc.bufferSize), "BufferSize %d", tc.bufferSize)
	}
}

// The chunks still waiting for Process's dispatcher once the readers
// stopped are taken back as Consume's records are: their windows forget
// them, so that shutdown does not wait ShutdownTimeout for records no
// handler will see, and the chunks go back to the pool cleared.
func TestTakeBackTakesTheChunksStillWaiting(t *testing.T) {
	c, err := New(Options{StreamName: "s", AWSConfig: &aws.Config{}, Logger: discardLogger()})
	require.NoError(t, err)
	c.chunks = make(chan *recordChunk, 2)
	w := newAckWindow(checkpoint{seq: checkpointTrimHorizon})
	var sent []*recordChunk
	for i := range 2 {
		ch := getChunk()
		ch.recs = ch.buf[:3]
		for j := range ch.recs {
			ch.recs[j] = Record{PartitionKey: "k", SequenceNumber: fmt.Sprint(10*i + j + 1), Data: []byte("x")}
		}
		require.True(t, w.push(ch.recs))
		c.chunks <- ch
		sent = append(sent, ch)
	}
	_, unacked := w.state()
	require.Equal(t, 6, unacked)

	c.takeBack()
	assert.Empty(t, c.chunks, "the channel is drained")
	_, unacked = w.state()
	assert.Zero(t, unacked, "the window forgot the records never received")
	for _, ch := range sent {
		assert.Nil(t, ch.recs, "given back cleared")
		assert.Equal(t, Record{}, ch.buf[0], "no record's data kept")
	}
}
