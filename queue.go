package kcl

// queue is a first-in first-out list that reuses its array: dropping from
// the front clears what it drops (nothing stays reachable through it) and
// pushing reuses the room freed at the front. The zero value is empty. It is
// not safe for concurrent use.
type queue[T any] struct {
	all  []T
	head int // all[head:] is the queue
}

func (q *queue[T]) len() int   { return len(q.all) - q.head }
func (q *queue[T]) items() []T { return q.all[q.head:] }
func (q *queue[T]) front() T   { return q.all[q.head] }
func (q *queue[T]) last() T    { return q.all[len(q.all)-1] }
func (q *queue[T]) push(v T)   { q.all = append(q.all, v) }

// drop removes the first n items.
func (q *queue[T]) drop(n int) {
	clear(q.all[q.head : q.head+n])
	q.head += n
	switch {
	case q.head == len(q.all):
		q.all, q.head = q.all[:0], 0
	case q.head > 1024 && q.head > len(q.all)/2:
		n := copy(q.all, q.all[q.head:])
		clear(q.all[n:])
		q.all, q.head = q.all[:n], 0
	}
}

// truncate keeps the first n items.
func (q *queue[T]) truncate(n int) {
	if n < q.len() {
		clear(q.all[q.head+n:])
		q.all = q.all[:q.head+n]
	}
}
