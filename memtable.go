package kcl

import (
	"context"
	"slices"
	"sync"
)

// memLeases is the lease table kept in memory when Options.AppName is empty:
// the same conditional semantics as dynamoLeases, for one process.
type memLeases struct {
	mu     sync.Mutex
	leases map[string]lease
}

func newMemLeases() *memLeases { return &memLeases{leases: map[string]lease{}} }

func (t *memLeases) name() string                     { return "(in memory)" }
func (t *memLeases) ensure(ctx context.Context) error { return nil }

func (t *memLeases) list(ctx context.Context) ([]lease, []error, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]lease, 0, len(t.leases))
	for _, l := range t.leases {
		l.parents = slices.Clone(l.parents)
		out = append(out, l)
	}
	return out, nil, nil
}

func (t *memLeases) create(ctx context.Context, l lease) (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.leases[l.shardID]; ok {
		return false, nil
	}
	l.owner, l.ownerSwitches, l.parents = "", 0, slices.Clone(l.parents)
	t.leases[l.shardID] = l
	return true, nil
}

// write applies change to the stored lease if it still has cur's counter and
// owner (want, when owner is fenced), and returns the stored result.
func (t *memLeases) write(cur lease, change func(*lease)) (lease, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	stored, ok := t.leases[cur.shardID]
	if !ok || stored.counter != cur.counter || stored.owner != cur.owner {
		return cur, errLeaseLost
	}
	change(&stored)
	stored.counter++
	t.leases[cur.shardID] = stored
	return stored, nil
}

func (t *memLeases) take(ctx context.Context, l lease, owner string) (lease, error) {
	return t.write(l, func(s *lease) { s.owner = owner; s.ownerSwitches++ })
}

func (t *memLeases) renew(ctx context.Context, l lease) (lease, error) {
	return t.write(l, func(*lease) {})
}

func (t *memLeases) checkpoint(ctx context.Context, l lease, cp checkpoint, release bool) (lease, error) {
	return t.write(l, func(s *lease) {
		s.checkpoint, s.ownerSwitches = cp, 0
		if release {
			s.owner = ""
		}
	})
}
