//go:build go1.25

package kcl

// The simulation's lease table (sim_test.go): DynamoDB as AWS documents it,
// shared by the group, and seen by each worker through a fault injector.
//
// simDB is the table. Its writes are memLeases' (conditional writes are
// atomic per item), and every item keeps the versions it had over the last
// seconds, so that reads are answered as DynamoDB answers them:
//   - An eventually consistent read (a Scan without ConsistentRead, the
//     GetItem of the group item) returns each item as it was at a moment of
//     its own: most as they are, some as they were up to simDBModel.lag
//     ago, drawn per item and per read. Items of one Scan differ in age.
//   - A Scan reads a page at a time, in the order of its keys' hashes, each
//     page when it gets there (after its own latency): even a consistent
//     Scan is no snapshot, writes land between its pages.
//   - A consistent GetItem (read, readBeat) sees every write acknowledged
//     before it.
//   - Every call takes time before it lands, with a long tail: most a few
//     milliseconds, some writes 100-500 ms, rare ones over a second; reads
//     less. A write whose caller gave up meanwhile may land all the same.
//
// simTable is one worker's view, with the faults of that worker's network:
// transient errors, lost replies (applied, then failed), partitions (every
// call fails, or hangs until its ctx ends or the partition heals), and
// takes or Scans refused for a while (throttling).
//
// Two things DynamoDB may do are held back unless asked for, because kcl
// fails on them today (sim.missing and sim.slowcreate):
//   - A read never misses an item that exists while returning one created
//     after it (simItem.read, simTable.list).
//   - A lease's creation lands within milliseconds (callCreate).

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// simDBModel is a seed's DynamoDB: how stale its eventually consistent reads
// are, how slow its calls, how it pages a Scan; and how often the adversary
// cuts a worker off for longer than LeaseDuration or refuses takes.
type simDBModel struct {
	fresh     float64       // an eventually consistent read returns an item as it is with this probability...
	lag       time.Duration // ...else as it was up to this long ago (uniform)
	slow      float64       // a write lands after 100-500 ms with this probability; a read after 20-200 ms with a third of it
	slower    float64       // a write lands after 1-1.5 s with this probability
	late      float64       // a write whose caller gave up before it landed lands all the same with this probability
	page      int           // items per page of a Scan
	outages   int           // long outages (simRun.longOutage)
	throttles int           // times some workers' takes are refused (simRun.throttleTakes)
}

// drawDBModel draws a seed's DynamoDB from rng, a stream of its own, so
// that the seeds' other draws stay as they were.
func drawDBModel(rng *rand.Rand) simDBModel {
	return simDBModel{
		fresh:     0.5 + 0.45*rng.Float64(),
		lag:       time.Duration(200+rng.IntN(1301)) * time.Millisecond,
		slow:      0.01 + 0.07*rng.Float64(),
		slower:    0.002 + 0.008*rng.Float64(),
		late:      0.5 * rng.Float64(),
		page:      2 + rng.IntN(7),
		outages:   1 + rng.IntN(2),
		throttles: rng.IntN(3),
	}
}

func (m simDBModel) String() string {
	return fmt.Sprintf("dynamodb{fresh=%.2f lag<=%v slow=%.3f slower=%.4f late=%.2f page=%d outages=%d throttles=%d}",
		m.fresh, m.lag, m.slow, m.slower, m.late, m.page, m.outages, m.throttles)
}

var simMissing = flag.Bool("sim.missing", false, "TestSimulation: reads may miss an item created lately and return one created after it (simItem.read, simTable.list)")

// simHistory is how long versions are kept beyond the longest lag.
const simHistory = 500 * time.Millisecond

// simSlowCall is the latency from which a call counts as an outage of its
// worker: the table did not answer it meanwhile (simLog.LagBound).
const simSlowCall = 50 * time.Millisecond

// simDB is the lease table of one run, shared by its workers.
//
//   - inner holds every item as it is now; writes are applied to it.
//   - items holds every item's recent versions, the last as it is now.
//   - Each write is applied, its version noted and (an owner's change) logged
//     under run.tableMu, so that versions and the write log keep table order.
type simDB struct {
	run   *simRun    // immutable
	inner *memLeases // immutable
	model simDBModel // immutable
	salt  uint64     // immutable: where a Scan meets each key

	items map[string]*simItem // synchronized on run.tableMu
	late  sync.WaitGroup      // writes landing after their caller gave up
}

// simItem is one item's recent history.
type simItem struct {
	pos      uint64       // where a Scan meets it: a hash of its key
	versions []simVersion // oldest first; the last is the item as it is
}

// simVersion is an item as a write left it: a lease, a heartbeat or the
// group item, or gone.
type simVersion struct {
	at   time.Time
	gone bool
	l    lease
	b    workerBeat
	g    groupItem
}

func newSimDB(run *simRun, inner *memLeases, model simDBModel, salt uint64) *simDB {
	return &simDB{run: run, inner: inner, model: model, salt: salt, items: map[string]*simItem{}}
}

// noteLocked records the item at key as inner holds it now, after a write
// (run.tableMu held).
func (db *simDB) noteLocked(key string) {
	ctx := context.Background()
	v := simVersion{at: time.Now()}
	switch {
	case key == groupKey:
		v.g, _ = db.inner.group(ctx)
		v.gone = !v.g.present
	case strings.HasPrefix(key, workerKeyPrefix):
		var ok bool
		v.b, ok, _ = db.inner.readBeat(ctx, strings.TrimPrefix(key, workerKeyPrefix))
		v.gone = !ok
	default:
		var ok bool
		v.l, ok, _ = db.inner.read(ctx, key)
		v.gone = !ok
	}
	db.addLocked(key, v)
}

// goneLocked records that the lease at key was deleted behind inner's back
// (the Java KCL's cleaner; run.tableMu held).
func (db *simDB) goneLocked(key string) { db.addLocked(key, simVersion{at: time.Now(), gone: true}) }

func (db *simDB) addLocked(key string, v simVersion) {
	it := db.items[key]
	if it == nil {
		h := fnv.New64a()
		fmt.Fprintf(h, "%d:%s", db.salt, key)
		it = &simItem{pos: h.Sum64()}
		db.items[key] = it
	}
	it.versions = append(it.versions, v)
	// Keep what a read lagging the most can still return: every version
	// since then, and the one it started from.
	horizon := v.at.Add(-db.model.lag - simHistory)
	drop := 0
	for drop+1 < len(it.versions) && it.versions[drop+1].at.Before(horizon) {
		drop++
	}
	it.versions = slices.Delete(it.versions, 0, drop)
}

// read returns the item as an eventually consistent read of it at t's
// moment returns it; false if it returns none.
//
// Without -sim.missing, a read never misses an item that exists now: if it
// did not exist at t, the read returns its first version since. (AWS
// documents no such bound: kcl takes a lease whose parent's lease such a
// read missed for one whose parent was trimmed, and reads the child first.)
func (it *simItem) read(t time.Time) (simVersion, bool) {
	i := len(it.versions) - 1
	for i > 0 && it.versions[i].at.After(t) {
		i--
	}
	v := it.versions[i]
	if v.at.After(t) || v.gone {
		if *simMissing {
			return simVersion{}, false
		}
		for ; i < len(it.versions) && it.versions[i].gone; i++ {
		}
		if i == len(it.versions) || it.versions[len(it.versions)-1].gone {
			return simVersion{}, false
		}
		v = it.versions[i]
	}
	return v, true
}

// simCursor is where a Scan stopped: the last key it read, in scan order.
type simCursor struct {
	pos   uint64
	key   string
	begun bool
}

func (c simCursor) before(pos uint64, key string) bool {
	return !c.begun || c.pos < pos || c.pos == pos && c.key < key
}

// keys returns the keys of the items there are now, or were lately.
func (db *simDB) keys() map[string]bool {
	db.run.tableMu.Lock()
	defer db.run.tableMu.Unlock()
	keys := make(map[string]bool, len(db.items))
	for key := range db.items {
		keys[key] = true
	}
	return keys
}

// page reads the next page of a Scan into snap: up to db.model.page keys
// after cur (of known only, unless nil), each as it was age() ago (zero: as
// it is). It returns where the page ended, and whether keys remain after
// it.
func (db *simDB) page(snap *tableSnapshot, cur simCursor, known map[string]bool, age func() time.Duration) (simCursor, bool) {
	db.run.tableMu.Lock()
	defer db.run.tableMu.Unlock()
	type entry struct {
		key string
		it  *simItem
	}
	var next []entry
	for key, it := range db.items {
		if cur.before(it.pos, key) && (known == nil || known[key]) {
			next = append(next, entry{key, it})
		}
	}
	slices.SortFunc(next, func(a, b entry) int {
		if a.it.pos != b.it.pos {
			if a.it.pos < b.it.pos {
				return -1
			}
			return 1
		}
		return strings.Compare(a.key, b.key)
	})
	more := len(next) > db.model.page
	if more {
		next = next[:db.model.page]
	}
	now := time.Now()
	for _, e := range next {
		cur = simCursor{pos: e.it.pos, key: e.key, begun: true}
		v, ok := e.it.read(now.Add(-age()))
		if !ok {
			continue
		}
		switch {
		case e.key == groupKey:
			snap.group = v.g.clone()
		case strings.HasPrefix(e.key, workerKeyPrefix):
			snap.workers[strings.TrimPrefix(e.key, workerKeyPrefix)] = v.b
		default:
			l := v.l
			l.parents = slices.Clone(l.parents)
			snap.leases = append(snap.leases, l)
		}
	}
	return cur, more
}

// groupAsOf returns the group item as it was age ago.
func (db *simDB) groupAsOf(age time.Duration) groupItem {
	db.run.tableMu.Lock()
	defer db.run.tableMu.Unlock()
	it := db.items[groupKey]
	if it == nil {
		return groupItem{}
	}
	v, ok := it.read(time.Now().Add(-age))
	if !ok {
		return groupItem{}
	}
	return v.g.clone()
}

// apply lands a write on the item at key and records the item's version if
// it took effect (changed reports whether it did).
func (db *simDB) apply(key string, write func() (changed bool)) {
	db.run.tableMu.Lock()
	defer db.run.tableMu.Unlock()
	if write() {
		db.noteLocked(key)
	}
}

// logged lands a write that may change a lease's owner, by t's worker:
// once it took effect it is recorded and logged (simWrite), naming the
// shard of the lease key as the log does. A take from another worker notes
// which incarnations of that worker still held the lease with their
// delivery gate open (simWrite.Open).
func (db *simDB) logged(t *simTable, op, key string, write func() (lease, error)) (lease, error) {
	s := db.run
	s.tableMu.Lock()
	defer s.tableMu.Unlock()
	prev, _, _ := db.inner.read(context.Background(), key)
	l, err := write()
	if err != nil {
		return l, err
	}
	db.noteLocked(key)
	var open []string
	if op == "take" && prev.owner != "" && prev.owner != t.id {
		open = s.openHolders(prev.owner, key)
	}
	s.mu.Lock()
	at, step := s.now()
	var tried simMoment
	if op == "checkpoint" && l.owner != t.id {
		k := passOnKey(key, t.worker, l.owner)
		tried = s.passOns[k]
		delete(s.passOns, k)
	}
	if op == "take" { // a new acquisition: its pass-on is yet to come
		for k := range s.passOns {
			if strings.HasPrefix(k, key+"\x00"+t.worker+"\x00") {
				delete(s.passOns, k)
			}
		}
	}
	s.writes = append(s.writes, simWrite{At: at, Step: step, Shard: s.sts.ofLease(key, l.streamCreated), Op: op, By: t.id, Proc: t.worker, Prev: prev.owner, Owner: l.owner, CP: l.checkpoint, Open: open, Tried: tried})
	s.mu.Unlock()
	return l, nil
}

// openHolders returns the incarnations of worker id that hold the lease at
// key, may deliver from it (not crashed, not shutting down) and whose
// delivery deadline has not passed: another worker's take of the lease
// must come after each one's deadline (README, "No overlap between
// owners").
func (s *simRun) openHolders(id, key string) []string {
	var open []string
	for _, w := range s.all() {
		if w.id != id {
			continue
		}
		w.mu.Lock()
		crashed := w.crashed
		w.mu.Unlock()
		if !crashed && w.c.held.has(key) && !w.c.held.isClosing() && !w.c.pause.isShut() && !w.c.pause.passed() {
			open = append(open, w.name)
		}
	}
	return open
}

// simDBCall is the kind of a call, for its latency and faults.
type simDBCall int

const (
	callRead simDBCall = iota // a GetItem
	callList                  // the first page of a Scan
	callPage                  // a page of a Scan after the first: slow or cut off, never failing on its own
	callWrite
	// callCreate creates a lease if it has none. Without -sim.slowcreate it
	// lands within milliseconds, never late: kcl decides a creation on a
	// read of the table, and one that lands after the lease was created,
	// read to its end and deleted by the Java KCL's cleaner makes the shard
	// read again from TRIM_HORIZON.
	callCreate
)

var simSlowCreate = flag.Bool("sim.slowcreate", false, "TestSimulation: lease creations are as slow as other writes, and may land after their caller gave up (callCreate)")

// simTable is one worker's view of the group's lease table (simDB), with
// that worker's faults.
type simTable struct {
	db     *simDB // immutable
	run    *simRun
	worker string
	id     string
	faults atomic.Bool // transient errors and lost replies on

	mu          sync.Mutex
	rng         *rand.Rand // the faults' draws
	lat         *rand.Rand // latencies and the ages of eventually consistent reads
	p           simTableFaults
	part        chan struct{} // non-nil while partitioned; closed when healed
	block       bool
	forever     bool
	outage      int       // index in run.outages of the current partition
	refuse      time.Time // takes are refused (throttled) until then
	refuseScans time.Time // Scans are refused (throttled) until then
}

// newSimTable returns the view of worker name (WorkerID id) of the run's
// table; faults draws its faults, seed the rest.
func (s *simRun) newSimTable(name, id string, faults *rand.Rand, seed uint64) *simTable {
	return &simTable{db: s.db, run: s, worker: name, id: id, rng: faults, lat: rand.New(rand.NewPCG(seed, 13)), p: s.cfg.table}
}

func simThrottled() error {
	return &ddbtypes.ProvisionedThroughputExceededException{Message: aws.String("sim: throughput exceeded")}
}

var _ leaseTable = (*simTable)(nil)

func (t *simTable) partition(block, forever bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.forever {
		return
	}
	if t.part == nil {
		t.part = make(chan struct{})
		t.run.mu.Lock()
		from, step := t.run.now()
		t.run.outages = append(t.run.outages, simOutage{Worker: t.worker, From: from, FromStep: step})
		t.outage = len(t.run.outages) - 1
		t.run.mu.Unlock()
	}
	t.block, t.forever = block, forever
}

func (t *simTable) heal() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.part == nil || t.forever {
		return
	}
	close(t.part)
	t.part = nil
	t.run.mu.Lock()
	o := &t.run.outages[t.outage]
	o.To, o.ToStep = t.run.now()
	t.run.mu.Unlock()
}

// refuseTakes makes every take fail (throttled, not applied) until until.
func (t *simTable) refuseTakes(until time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.refuse = until
}

func (t *simTable) takesRefused() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return time.Now().Before(t.refuse)
}

// refuseScansUntil makes every Scan fail (throttled) until until.
func (t *simTable) refuseScansUntil(until time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.refuseScans = until
}

func (t *simTable) scansRefused() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return time.Now().Before(t.refuseScans)
}

// latencyLocked draws how long a call takes before it lands (t.mu held).
func (t *simTable) latencyLocked(call simDBCall) time.Duration {
	m, r := t.db.model, t.lat
	x := r.Float64()
	switch {
	case call == callWrite && x < m.slower:
		return time.Second + time.Duration(r.Int64N(int64(500*time.Millisecond)))
	case call == callWrite && x < m.slower+m.slow:
		return 100*time.Millisecond + time.Duration(r.Int64N(int64(400*time.Millisecond)))
	case (call == callRead || call == callList || call == callPage) && x < m.slow/3:
		return 20*time.Millisecond + time.Duration(r.Int64N(int64(180*time.Millisecond)))
	case r.IntN(2) == 0:
		return 0
	case call == callWrite || call == callCreate:
		return time.Duration(1+r.IntN(8)) * time.Millisecond
	}
	return time.Duration(1+r.IntN(4)) * time.Millisecond
}

// age draws how old an item returned by an eventually consistent read is.
func (t *simTable) age() time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.db.model
	if t.lat.Float64() < m.fresh {
		return 0
	}
	return time.Duration(t.lat.Int64N(int64(m.lag) + 1))
}

// gate runs before each call: it waits the call's latency and returns the
// call's error, if any, and whether its reply is to be lost once applied.
// A write passes land, which lands it: should its caller give up during
// its latency, it may land all the same, at its time, unanswered.
func (t *simTable) gate(ctx context.Context, call simDBCall, land func()) (lost bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	began := time.Now()
	t.mu.Lock()
	part, block := t.part, t.block
	if call == callCreate && *simSlowCreate {
		call = callWrite
	}
	delay := t.latencyLocked(call)
	late := land != nil && call != callCreate && t.lat.Float64() < t.db.model.late
	var fail bool
	if part == nil && t.faults.Load() && call != callPage {
		scale := 1.0
		if call == callList {
			scale = 0.5 // every pass starts with a list: keep it mostly working
		}
		if t.rng.Float64() < t.p.delay {
			delay += time.Duration(1 + t.rng.Int64N(int64(t.p.maxDelay)))
		}
		switch x := t.rng.Float64(); {
		case x < t.p.err*scale:
			fail = true
		case x < (t.p.err+t.p.lost)*scale:
			lost = true
		}
	}
	t.mu.Unlock()
	var step int64 // of began, for a slow call's outage
	if delay >= simSlowCall {
		_, step = t.run.now()
	}
	if part != nil {
		if block {
			select {
			case <-ctx.Done():
				return false, ctx.Err()
			case <-part:
			}
		}
		return false, simThrottled()
	}
	if delay == 0 {
		runtime.Gosched()
	} else if !sleep(ctx, delay) {
		t.slow(began, step)
		if late && !fail {
			rest := time.Until(began.Add(delay))
			t.db.late.Go(func() {
				time.Sleep(rest)
				if !t.run.over(t.worker) {
					land()
				}
			})
		}
		return false, ctx.Err()
	}
	t.slow(began, step)
	t.mu.Lock()
	cut := t.part != nil
	t.mu.Unlock()
	if cut || fail {
		return false, simThrottled()
	}
	return lost, nil
}

// over reports whether the incarnation name crashed or ended. Its writes
// still in flight are then dropped, not landed late: the simulation
// restarts a WorkerID at once, far sooner than a real process restarts,
// and a late heartbeat of the old incarnation would make the new one stop
// as a second process with its WorkerID.
func (s *simRun) over(name string) bool {
	for _, w := range s.all() {
		if w.name != name {
			continue
		}
		w.mu.Lock()
		crashed := w.crashed
		w.mu.Unlock()
		select {
		case <-w.done:
			return true
		default:
			return crashed
		}
	}
	return false
}

// slow notes a call that began at began (step) and ends now as an outage
// of the worker, if long: the table did not answer it meanwhile.
func (t *simTable) slow(began time.Time, step int64) {
	if time.Since(began) < simSlowCall {
		return
	}
	s := t.run
	s.mu.Lock()
	defer s.mu.Unlock()
	o := simOutage{Worker: t.worker, From: began, FromStep: step}
	o.To, o.ToStep = s.now()
	s.outages = append(s.outages, o)
}

func lostErr(lost bool) error {
	if lost {
		return simThrottled()
	}
	return nil
}

// write runs a write that does not change an owner: its faults and latency,
// then apply, which lands it on the item at key and reports whether it
// changed it, and returns its error.
func (t *simTable) write(ctx context.Context, key string, apply func() (changed bool, err error)) error {
	return t.writeAs(ctx, callWrite, key, apply)
}

func (t *simTable) writeAs(ctx context.Context, call simDBCall, key string, apply func() (changed bool, err error)) error {
	var err error
	land := func() { t.db.apply(key, func() bool { changed, werr := apply(); err = werr; return changed }) }
	lost, gerr := t.gate(ctx, call, land)
	if gerr != nil {
		return gerr
	}
	land()
	return errors.Join(err, lostErr(lost && err == nil))
}

func (t *simTable) name() string { return "sim" }

func (t *simTable) ensure(ctx context.Context) error {
	_, err := t.gate(ctx, callRead, nil)
	return err
}

// list is a Scan, paged (simDB.page): consistent, each item as it is when
// its page is read; else each as it was at a moment of its own.
//
// Without -sim.missing, a Scan returns no item created after it began: an
// item created ahead of its cursor is returned by DynamoDB, but one created
// behind it is not, so a child's lease could be returned without its
// parent's, created just before (kcl then reads the child first).
func (t *simTable) list(ctx context.Context, consistent bool) (tableSnapshot, error) {
	lost, err := t.gate(ctx, callList, nil)
	if err != nil || lost {
		return tableSnapshot{}, errors.Join(err, lostErr(lost))
	}
	if t.scansRefused() {
		return tableSnapshot{}, simThrottled()
	}
	age := t.age
	if consistent {
		age = func() time.Duration { return 0 }
	}
	var known map[string]bool
	if !*simMissing {
		known = t.db.keys()
	}
	snap := tableSnapshot{workers: map[string]workerBeat{}}
	var cur simCursor
	for {
		var more bool
		cur, more = t.db.page(&snap, cur, known, age)
		if !more {
			return snap, nil
		}
		if _, err := t.gate(ctx, callPage, nil); err != nil { // the next page is a call of its own
			return tableSnapshot{}, err
		}
	}
}

// group is an eventually consistent GetItem.
func (t *simTable) group(ctx context.Context) (groupItem, error) {
	lost, err := t.gate(ctx, callRead, nil)
	if err != nil || lost {
		return groupItem{}, errors.Join(err, lostErr(lost))
	}
	return t.db.groupAsOf(t.age()), nil
}

func (t *simTable) readBeat(ctx context.Context, worker string) (workerBeat, bool, error) {
	lost, err := t.gate(ctx, callRead, nil)
	if err != nil || lost {
		return workerBeat{}, false, errors.Join(err, lostErr(lost))
	}
	return t.db.inner.readBeat(ctx, worker)
}

func (t *simTable) read(ctx context.Context, shardID string) (lease, bool, error) {
	lost, err := t.gate(ctx, callRead, nil)
	if err != nil || lost {
		return lease{}, false, errors.Join(err, lostErr(lost))
	}
	return t.db.inner.read(ctx, shardID)
}

func (t *simTable) tick(ctx context.Context) error {
	return t.write(ctx, groupKey, func() (bool, error) { return true, t.db.inner.tick(ctx) })
}

func (t *simTable) bump(ctx context.Context) error {
	return t.write(ctx, groupKey, func() (bool, error) { return true, t.db.inner.bump(ctx) })
}

func (t *simTable) publish(ctx context.Context, expired map[string]int64, digest string) error {
	return t.write(ctx, groupKey, func() (bool, error) {
		err := t.db.inner.publish(ctx, expired, digest)
		return err == nil, err
	})
}

func (t *simTable) removeGroup(ctx context.Context, epoch int64) error {
	return t.write(ctx, groupKey, func() (bool, error) {
		err := t.db.inner.removeGroup(ctx, epoch)
		return err == nil, err
	})
}

func (t *simTable) create(ctx context.Context, l lease) (bool, error) {
	var created bool
	err := t.writeAs(ctx, callCreate, l.shardID, func() (bool, error) {
		var err error
		created, err = t.db.inner.create(ctx, l)
		return created, err
	})
	if err != nil {
		return false, err
	}
	if created {
		t.db.run.noteCreated(l)
	}
	return created, nil
}

// noteCreated notes that lease l was made (simLog.Unlisted: its shard was
// listed by a sync, whatever became of the lease).
func (s *simRun) noteCreated(l lease) {
	name := s.sts.ofLease(l.shardID, l.streamCreated)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.created[name] = true
}

func (t *simTable) remove(ctx context.Context, l lease) error {
	return t.write(ctx, l.shardID, func() (bool, error) {
		err := t.db.inner.remove(ctx, l)
		if err == nil && l.checkpoint.shardEnd() {
			t.db.run.cleaned.Add(1)
		}
		return err == nil, err
	})
}

func (t *simTable) claim(ctx context.Context, l lease, taker string) error {
	return t.write(ctx, l.shardID, func() (bool, error) {
		err := t.db.inner.claim(ctx, l, taker)
		return err == nil, err
	})
}

func (t *simTable) unclaim(ctx context.Context, l lease) error {
	return t.write(ctx, l.shardID, func() (bool, error) {
		err := t.db.inner.unclaim(ctx, l)
		return err == nil, err
	})
}

func (t *simTable) heartbeat(ctx context.Context, worker, token string, stopping bool, last int64, streams []string) (int64, error) {
	var n int64
	err := t.write(ctx, workerKeyPrefix+worker, func() (bool, error) {
		var err error
		n, err = t.db.inner.heartbeat(ctx, worker, token, stopping, last, streams)
		return err == nil, err
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

func (t *simTable) removeWorker(ctx context.Context, worker string, counter int64) error {
	return t.write(ctx, workerKeyPrefix+worker, func() (bool, error) {
		err := t.db.inner.removeWorker(ctx, worker, counter)
		return err == nil, err
	})
}

// logged runs a write that may change the owner (simDB.logged). A take is
// refused while takes are throttled (refuseTakes).
func (t *simTable) logged(ctx context.Context, op, key string, write func() (lease, error)) (lease, error) {
	var l lease
	var err error
	land := func() { l, err = t.db.logged(t, op, key, write) }
	refused := op == "take" && t.takesRefused()
	if refused {
		land = nil
	}
	lost, gerr := t.gate(ctx, callWrite, land)
	if gerr != nil {
		return lease{}, gerr
	}
	if refused {
		return lease{}, simThrottled()
	}
	land()
	if lost && err == nil {
		return lease{}, simThrottled()
	}
	return l, err
}

func (t *simTable) take(ctx context.Context, l lease, w writer) (lease, error) {
	return t.logged(ctx, "take", l.shardID, func() (lease, error) { return t.db.inner.take(ctx, l, w) })
}

func (t *simTable) checkpoint(ctx context.Context, l lease, cp checkpoint, next string, w writer) (lease, error) {
	if next != t.id {
		t.db.run.notePassOn(passOnKey(l.shardID, t.worker, next))
	}
	return t.logged(ctx, "checkpoint", l.shardID, func() (lease, error) { return t.db.inner.checkpoint(ctx, l, cp, next, w) })
}

// passOnKey names a write by process proc that passes lease key on to next
// (a release when next is ""): its retries, whatever counter a fence gave
// the lease meanwhile, are the same write. The entry is dropped when the
// write lands.
func passOnKey(key, proc, next string) string {
	return key + "\x00" + proc + "\x00" + next
}

// notePassOn notes the first attempt of the write that passes a lease on
// (passOnKey): kcl closed the lease's ack window just before it, so an ack
// after it does nothing (simWindow.closed).
func (s *simRun) notePassOn(key string) {
	at, step := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.passOns[key]; !ok {
		s.passOns[key] = simMoment{at: at, step: step}
	}
}

func (t *simTable) replace(ctx context.Context, l, fresh lease) error {
	_, err := t.logged(ctx, "replace", l.shardID, func() (lease, error) { return fresh, t.db.inner.replace(ctx, l, fresh) })
	return err
}

// longOutage cuts a worker that holds leases off from the table for 1 to 3
// LeaseDurations, its calls failing (throttled) or hanging, while it goes
// on delivering until its deadline. Two times in three the lease items'
// partition is throttled for the other workers meanwhile (their heartbeats
// go through): their takes are refused from within the outage, and their
// Scans from when they have likely judged it dead, until after it heals.
// Their takes of its leases then come after its late heartbeat and the
// fence that follows, decided on a read that may mix items of every age
// (issue 21, schedule 1). The throttling ends at a time drawn, or, half the
// time, soon after the worker's gate reopened (its fence written).
func (s *simRun) longOutage(ctx context.Context, rng *rand.Rand) {
	live := s.live()
	if len(live) == 0 {
		return
	}
	var holders []*simWorker
	for _, w := range live {
		if held, _ := w.c.held.snapshot(); len(held) > 0 {
			holders = append(holders, w)
		}
	}
	if len(holders) == 0 {
		holders = live
	}
	ld := s.cfg.leaseDuration
	w := holders[rng.IntN(len(holders))]
	d, block := time.Duration(float64(ld)*(1+2*rng.Float64())), rng.IntN(2) == 0
	throttle := rng.IntN(3) > 0
	takes := time.Duration(float64(ld) * rng.Float64())
	scans := min(d, time.Duration(float64(ld)*(1.2+0.3*rng.Float64())))
	until := d + time.Duration(float64(ld)*(0.05+0.95*rng.Float64()))
	fenced := rng.IntN(2) == 0
	after := time.Duration(float64(ld) * 0.3 * rng.Float64())
	others := ""
	switch {
	case throttle && fenced:
		others = fmt.Sprintf("; others' takes refused from %v, Scans from %v, until %v after its fence", takes.Round(time.Millisecond), scans.Round(time.Millisecond), after.Round(time.Millisecond))
		until = d + 2*ld
	case throttle:
		others = fmt.Sprintf("; others' takes refused from %v, Scans from %v, until %v", takes.Round(time.Millisecond), scans.Round(time.Millisecond), until.Round(time.Millisecond))
	}
	s.event("outage %s for %v (calls %s)%s", w.name, d.Round(time.Millisecond), map[bool]string{true: "hang", false: "fail"}[block], others)
	w.table.partition(block, false)
	began := time.Now()
	if throttle {
		s.wg.Go(func() {
			if !sleep(ctx, takes) {
				return
			}
			for _, o := range s.live() {
				if o != w {
					o.table.refuseTakes(began.Add(until))
				}
			}
			if !sleep(ctx, scans-takes) {
				return
			}
			for _, o := range s.live() {
				if o != w {
					o.table.refuseScansUntil(began.Add(until))
				}
			}
			if !fenced || !sleep(ctx, d-scans) {
				return
			}
			for time.Since(began) < until && w.c.pause.isShut() && sleep(ctx, 5*time.Millisecond) {
			}
			if !sleep(ctx, after) {
				return
			}
			for _, o := range s.live() {
				if o != w {
					o.table.refuseTakes(time.Now())
					o.table.refuseScansUntil(time.Now())
				}
			}
		})
	}
	s.wg.Go(func() {
		sleep(ctx, d)
		w.table.heal()
	})
	// A shutdown during the outage, in one in four, drawn last so that the
	// outage's draws stay as they were: stopped with at least a
	// LeaseDuration of it left, its releases are never written, and its
	// Process must still end the handlers' contexts and return.
	if rng.IntN(4) == 0 && len(live) > 1 {
		at := time.Duration(float64(d-ld) * rng.Float64())
		s.wg.Go(func() {
			if sleep(ctx, at) && !w.isFrozen() {
				s.event("stop %s during its outage", w.name)
				w.stop(false)
			}
		})
	}
}

// cutDuringShutdown cuts w, just stopped, off the lease table for two
// LeaseDurations, at a point of its wait for acks (ShutdownTimeout): its
// heartbeat stops after the gate was frozen open, so its final releases
// are never written and their ack windows stay open. Its Process must
// still end the handlers' contexts and return (review13: at Concurrency 1
// a call waiting for its context held Process for ever).
func (s *simRun) cutDuringShutdown(ctx context.Context, w *simWorker, rng *rand.Rand) {
	at := time.Duration(rng.Int64N(int64(w.c.opts.ShutdownTimeout) + 1))
	d, block := 2*s.cfg.leaseDuration, rng.IntN(2) == 0
	s.wg.Go(func() {
		if !sleep(ctx, at) {
			return
		}
		s.event("%s cut off the lease table during its shutdown for %v (calls %s)", w.name, d, map[bool]string{true: "hang", false: "fail"}[block])
		w.table.partition(block, false)
		sleep(ctx, d)
		w.table.heal()
	})
}

// throttleTakes refuses the takes of some live workers (one at least) for
// 0.3 to 2 LeaseDurations: a throttled table that refuses some writers and
// not others.
func (s *simRun) throttleTakes(rng *rand.Rand) {
	live := s.live()
	if len(live) == 0 {
		return
	}
	rng.Shuffle(len(live), func(i, j int) { live[i], live[j] = live[j], live[i] })
	some := live[:1+rng.IntN(len(live))]
	d := time.Duration(float64(s.cfg.leaseDuration) * (0.3 + 1.7*rng.Float64()))
	var names []string
	for _, w := range some {
		names = append(names, w.name)
		w.table.refuseTakes(time.Now().Add(d))
	}
	s.event("throttle takes of %s for %v", strings.Join(names, ","), d.Round(time.Millisecond))
}
