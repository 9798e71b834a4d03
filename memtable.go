package kcl

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"
)

// memLeases is the lease table kept in memory when Options.AppName is empty:
// the same conditional semantics as dynamoLeases, for one process.
type memLeases struct {
	mu      sync.Mutex
	leases  map[string]lease
	workers map[string]workerBeat
	grp     groupItem // the group item
	base    int64     // the counter the last heartbeat item made started at
}

func newMemLeases() *memLeases {
	return &memLeases{leases: map[string]lease{}, workers: map[string]workerBeat{}}
}

func (t *memLeases) name() string                     { return "(in memory)" }
func (t *memLeases) ensure(ctx context.Context) error { return nil }

func (t *memLeases) list(ctx context.Context, consistent bool) (tableSnapshot, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	snap := tableSnapshot{workers: maps.Clone(t.workers), group: t.grp.clone()}
	for _, l := range t.leases {
		l.parents = slices.Clone(l.parents)
		snap.leases = append(snap.leases, l)
	}
	return snap, nil
}

func (t *memLeases) read(ctx context.Context, shardID string) (lease, bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l, ok := t.leases[shardID]
	l.parents = slices.Clone(l.parents)
	return l, ok, nil
}

func (t *memLeases) create(ctx context.Context, l lease) (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.leases[l.shardID]; ok {
		return false, nil
	}
	l.owner, l.ownerSwitches, l.handoffTo, l.checkpointOwner, l.parents = "", 0, "", "", slices.Clone(l.parents)
	t.leases[l.shardID] = l
	return true, nil
}

func (t *memLeases) replace(ctx context.Context, l, fresh lease) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if stored, ok := t.leases[l.shardID]; !ok || !sameStored(stored, l) {
		return errLeaseLost
	}
	fresh.owner, fresh.ownerSwitches, fresh.handoffTo, fresh.checkpointOwner, fresh.parents = "", 0, "", "", slices.Clone(fresh.parents)
	t.leases[l.shardID] = fresh
	return nil
}

func (t *memLeases) remove(ctx context.Context, l lease) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if stored, ok := t.leases[l.shardID]; !ok || !sameStored(stored, l) || stored.checkpoint != l.checkpoint {
		return errLeaseLost
	}
	delete(t.leases, l.shardID)
	return nil
}

// write applies change to the stored lease if it still has cur's owner and
// (unless counted is false) counter.
func (t *memLeases) write(cur lease, counted bool, change func(*lease) bool) (lease, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	stored, ok := t.leases[cur.shardID]
	if !ok || stored.owner != cur.owner || counted && stored.counter != cur.counter || !change(&stored) {
		return cur, errLeaseLost
	}
	if counted {
		stored.counter++
	}
	t.leases[cur.shardID] = stored
	return stored, nil
}

// sameStored is dynamoLeases' sameLease: stored is still l as read, by
// counter and by the stream creation time it was stamped with.
func sameStored(stored, l lease) bool {
	return stored.counter == l.counter && stored.streamCreated == l.streamCreated
}

func (t *memLeases) take(ctx context.Context, l lease, w writer) (lease, error) {
	return t.write(l, true, func(s *lease) bool {
		if s.streamCreated != l.streamCreated {
			return false
		}
		s.owner, s.handoffTo, s.checkpointOwner, s.startAt = w.id, "", "", l.startAt
		s.writer = w
		s.ownerSwitches++
		return true
	})
}

func (t *memLeases) claim(ctx context.Context, l lease, taker string) error {
	_, err := t.write(l, false, func(s *lease) bool {
		if s.handoffTo != "" {
			return false
		}
		s.handoffTo = taker
		return true
	})
	return err
}

func (t *memLeases) unclaim(ctx context.Context, l lease) error {
	_, err := t.write(l, false, func(s *lease) bool {
		if s.handoffTo != l.handoffTo {
			return false
		}
		s.handoffTo = ""
		return true
	})
	return err
}

func (t *memLeases) checkpoint(ctx context.Context, l lease, cp checkpoint, next string, w writer) (lease, error) {
	return t.write(l, true, func(s *lease) bool {
		if s.checkpointOwner != "" { // a Java hand-off: never written
			return false
		}
		s.checkpoint, s.ownerSwitches = cp, 0
		switch {
		case next == s.owner:
			s.writer = w
		case next == "" && cp.shardEnd(): // kcl's mark stays on a lease it ended (cleanup.go)
			s.owner, s.handoffTo, s.writer = "", "", w
		default:
			s.owner, s.handoffTo, s.writer = next, "", writer{}
		}
		return true
	})
}

func (t *memLeases) heartbeat(ctx context.Context, worker, token string, stopping bool, last int64, streams []string) (int64, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	w, ok := t.workers[worker]
	if ok && last >= 0 && w.token != token {
		return 0, errDuplicateWorker
	}
	if !ok { // as dynamoLeases: a new item's counter never repeats an old one's
		t.base = max(time.Now().UnixMicro(), t.base+1)
		w.counter = t.base
	}
	t.workers[worker] = workerBeat{counter: w.counter + 1, stopping: stopping, token: token, streams: slices.Clone(streams)}
	return w.counter + 1, nil
}

func (t *memLeases) removeWorker(ctx context.Context, worker string, counter int64) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if counter >= 0 && t.workers[worker].counter != counter {
		return errLeaseLost
	}
	delete(t.workers, worker)
	return nil
}

func (t *memLeases) group(ctx context.Context) (groupItem, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.grp.clone(), nil
}

func (t *memLeases) bump(ctx context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.grp.present = true
	t.grp.epoch++
	return nil
}

func (t *memLeases) publish(ctx context.Context, expired map[string]int64, digest string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.grp.present && t.grp.digest == digest {
		return errLeaseLost
	}
	t.grp.present = true
	t.grp.epoch++
	t.grp.expired, t.grp.digest = maps.Clone(expired), digest
	return nil
}

func (t *memLeases) removeGroup(ctx context.Context, epoch int64) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.grp.present || t.grp.epoch != epoch {
		return errLeaseLost
	}
	t.grp = groupItem{}
	return nil
}

func (t *memLeases) readBeat(ctx context.Context, worker string) (workerBeat, bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	w, ok := t.workers[worker]
	return w, ok, nil
}

func (t *memLeases) tick(ctx context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.grp.present = true
	t.grp.scans++
	return nil
}
