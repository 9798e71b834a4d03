package kcl

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// A lane's ready records come out oldest delivered first, however they
// went in: in order (a new key's first record, a key's next), or out of it
// (a retry woken, a call the gate cut short, pushed back).
func TestReadyQueueGivesTheOldestFirst(t *testing.T) {
	for _, tc := range []struct {
		name string
		ops  []int // n >= 0 pushes the task of arrival n; -1 pops
		want []uint64
	}{
		{"in order", []int{1, 2, 3, -1, -1, -1}, []uint64{1, 2, 3}},
		{"an older one pushed back", []int{5, 6, 2, -1, -1, -1}, []uint64{2, 5, 6}},
		{"older ones between pops", []int{10, 11, -1, 3, 12, -1, 4, -1, -1, -1}, []uint64{10, 3, 4, 11, 12}},
		{"all out of order", []int{9, 7, 8, 1, -1, -1, -1, -1}, []uint64{1, 7, 8, 9}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var q readyQueue
			var got []uint64
			for _, op := range tc.ops {
				if op < 0 {
					got = append(got, q.pop().n)
					continue
				}
				q.push(&task{n: uint64(op)})
			}
			assert.Equal(t, tc.want, got)
			assert.Zero(t, q.len())
		})
	}
}
