package kcl

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// The held set starts nothing once shutdown began, and forgets a lease only
// as the one it holds under that key: a lease taken again since stays.
func TestHeldSet(t *testing.T) {
	s := newHeldSet(discardLogger())
	held := func(id string) *heldLease {
		h := newHeldLease(lease{shardID: id, checkpoint: checkpoint{seq: checkpointTrimHorizon}}, nil, id)
		h.cancel = func() {}
		return h
	}
	a, b := held("a"), held("b")
	ran := 0
	assert.True(t, s.start(a, func() { ran++ }))
	assert.True(t, s.start(b, func() { ran++ }))
	assert.Equal(t, 2, ran)
	assert.Equal(t, []*heldLease{a, b}, s.list())
	assert.Equal(t, []*heldLease{b, nil}, s.lookup([]string{"b", "c"}))

	again := held("a") // a taken again, after its first holding was lost
	s.held["a"] = again
	s.forget(a)
	assert.True(t, s.has("a"), "the lease held now is not the one forgotten")
	s.forgetLost(again, "other")
	assert.False(t, s.has("a"))
	assert.True(t, again.markGone(), "a lost lease is gone: no more writes")

	s.close()
	keys, closing := s.snapshot()
	assert.True(t, closing)
	assert.Equal(t, map[string]bool{"b": true}, keys)
	assert.False(t, s.start(held("c"), func() { ran++ }), "shutdown began")
	assert.Equal(t, 2, ran)
	assert.False(t, s.has("c"))
}
