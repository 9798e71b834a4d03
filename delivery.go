package kcl

import (
	"context"
	"sync"
)

// Records leave kcl by one of two ways, chosen once per Consumer:
//
//   - Consume: one at a time on the channel it returned (Consumer.out),
//     which the user receives from.
//   - Process and ProcessBatch: a chunk at a time (Consumer.chunks), to
//     the dispatcher (processor), which holds them until the handler runs
//     them. One channel operation a chunk instead of one a record: with a
//     no-op handler, a send and a receive a record cost Process a third of
//     Consume's rate.
//
// Either way, shardReader.deliver is where records are handed over, each
// registered in its ack window first.

// deliverChunk is how many records deliver converts, registers and sends
// at a time. For Consume, few enough to sit on its stack, so that
// converting them costs no heap write and nothing of a page is kept once
// it is sent; for Process, a pooled recordChunk, cleared when given back.
const deliverChunk = 64

// recordChunk is up to deliverChunk records of one shard, in order, sent
// to Process's dispatcher at once. The dispatcher gives it back
// (putChunk) once it copied the records out.
type recordChunk struct {
	recs []Record // of buf
	buf  [deliverChunk]Record
}

var chunkPool = sync.Pool{New: func() any { return new(recordChunk) }}

// getChunk returns an empty chunk.
func getChunk() *recordChunk { return chunkPool.Get().(*recordChunk) }

// putChunk gives back ch, cleared, so that it keeps no record's data:
// the whole array, since a record the filling skipped (the end of a KPL
// aggregate, one at or before the checkpoint) may lie past recs.
func putChunk(ch *recordChunk) {
	clear(ch.buf[:])
	ch.recs = nil
	chunkPool.Put(ch)
}

// chunkBuffer is how many chunks may wait for Process's dispatcher: as
// many as hold BufferSize records (none for an unbuffered channel).
func chunkBuffer(bufferSize int) int { return max(0, bufferSize) / deliverChunk }

// sendChunk puts ch on out unless ctx ends first (done is ctx.Done()),
// waiting while the worker is paused (pause.go), as send does for one
// record. It returns how many records it sent (all or none) and their
// bytes. Once sent, ch is the receiver's.
func sendChunk(ctx context.Context, done <-chan struct{}, out chan<- *recordChunk, gate *pauseGate, ch *recordChunk) (sent int, bytes int64) {
	n := len(ch.recs)
	for i := range ch.recs {
		bytes += int64(len(ch.recs[i].Data))
	}
	if !gate.wait(ctx) {
		return 0, 0
	}
	select {
	case <-done:
		return 0, 0
	default:
	}
	for {
		select {
		case out <- ch:
			return n, bytes
		case <-done:
			return 0, 0
		case <-gate.closing():
			if !gate.wait(ctx) {
				return 0, 0
			}
		}
	}
}

// closeOut closes the way records leave, once run is over.
func (c *Consumer) closeOut() {
	if c.chunks != nil {
		close(c.finished)
		close(c.chunks)
	} else {
		close(c.out)
	}
}

// takeBack takes back the records still waiting in the channel once every
// reader stopped (shutdown, step 1): never received, they are no unacked
// work of the user's. Each one's ack window forgets it and what follows it
// (ackWindow.truncate), so that shutdown waits only for records the user
// received; the shard's next owner delivers them. A receiver racing it may
// still get some of them: their acks then do nothing, and they are
// delivered again too. It runs on run's goroutine.
func (c *Consumer) takeBack() {
	n := 0
	for {
		select {
		case r := <-c.out: // nil, never ready, for Process
			if r.chunk != nil {
				r.chunk.window.truncate(r.index)
			}
			n++
			continue
		case ch := <-c.chunks: // nil, never ready, for Consume
			if r := ch.recs[0]; r.chunk != nil {
				r.chunk.window.truncate(r.index)
			}
			n += len(ch.recs)
			putChunk(ch)
			continue
		default:
		}
		if n > 0 {
			c.log.Debug("kcl: records taken back from the channel: never received, delivered again by the next owner", "records", n)
		}
		return
	}
}
