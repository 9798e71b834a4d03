package kcl

// The invariant checker of the simulation (sim_test.go): a pure function of
// a log, so that it can be tested on hand-made logs (TestSimChecker) and
// shown to reject what it must.

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"
	"time"
)

// simPut is one record written, from the fake's ledger, in write order
// within its stream (sequence numbers are stream-wide, so ledger order is
// write order). With several streams, Shard and Key (and so Data) are
// qualified by the stream (simStreams): no key spans two streams, so
// per-key order is checked within a stream.
type simPut struct {
	Data, Key, Shard, Seq string
	// Sub is a KPL user record's place in its aggregate (0 for a plain
	// record). A producer that puts a user record again (the KPL after a
	// split, class e) writes Data twice: each put is a copy of its own.
	Sub     int64
	Arrival time.Time
	Trimmed bool // retention or RemoveShard dropped it
	// Misplaced: a user record of a KPL aggregate that landed on a shard
	// not owning all its keys. kcl drops the aggregate whole, as the Java
	// KCL does (Options.KeepMisplacedAggregates), so it must not be
	// delivered; the KPL put it again, and that copy is owed.
	Misplaced bool
	// Early: with InitialPosition Latest, written well before its shard's
	// first open, which was at LATEST or at its LATEST lease's stored start
	// (earlySlack). The shard's first owner
	// must not deliver it (issue 27 item 7): only a lease that moved
	// reopens at the stored start, a minute before.
	Early bool
	Reads int // GetRecords replies that returned it
	// Owed: the group must deliver it. False for records written, with
	// InitialPosition Latest, before the group first opened the shard (or
	// an ancestor of it), except in an incarnation created again under the
	// name the group was reading (owed from its first record); and for
	// every record of a stream that no worker lists at the end (a rolling
	// deploy removed it: README's Many streams leaves it alone). A stream
	// that some worker lists at the end owes all its records, whoever
	// listed it meanwhile: its leases keep their checkpoints, and whoever
	// reads it resumes there. A record of an incarnation deleted before it
	// was delivered is trimmed: excused.
	Owed bool
}

// simDelivery is one record received by a worker's user loop.
type simDelivery struct {
	Worker  string // the incarnation ("w1#2"): one Consumer
	ID      string // its WorkerID, as the lease table names owners
	Window  int    // the lease acquisition (ack window) it came from, unique per run
	Index   int    // its place in the incarnation's deliveries
	Shard   string // named as simPut.Shard: from Record.StreamARN and ShardID
	Seq     string
	Sub     int64
	Data    string
	Key     string
	At      time.Time // received (recorded after the receive)
	Step    int64     // its place in the run's order of events (simLog)
	AckedAt time.Time // Ack returned; zero: never acked
	// AckedStep is the step of AckedAt; 0: never acked.
	AckedStep int64
	// OldLease: the record is of a stream created again under its name,
	// read on the lease of the old stream's shard of that ID by a worker
	// that had not noticed the new stream yet (a lease at TRIM_HORIZON or
	// LATEST opens whichever stream the name has). README's Known limits:
	// such deliveries are extra, class d; the new stream's own lease
	// delivers the record too.
	OldLease bool
}

// simWrite is one lease-table write that took effect (reply lost or not).
type simWrite struct {
	At    time.Time
	Step  int64  // its place in the run's order of events (simLog)
	Shard string // named as simPut.Shard: from the lease key
	Op    string // "take" or "checkpoint"
	By    string // the WorkerID that wrote it
	// Proc is the incarnation (the process, "w1#2") that wrote it: two
	// processes may share a WorkerID (twins). "" in hand-made logs: any
	// process of By.
	Proc string
	// Tried is, for a write that passed the lease on (a release, a
	// hand-off), its first attempt: kcl closed the lease's ack window
	// just before it, so later acks did nothing. Zero: not known.
	Tried simMoment
	Prev  string // owner before
	Owner string // owner after
	CP    checkpoint
	// Open: a take from another worker (Prev), the incarnations of that
	// worker that still held the lease, could deliver from it, and whose
	// delivery deadline had not passed when the take landed.
	Open []string
}

// simOutage is a time an incarnation could not reach the lease table: a
// partition, a freeze or a crash (To zero: until the end).
type simOutage struct {
	Worker   string
	From, To time.Time
	// FromStep and ToStep place From and To in the run's order of events
	// (simLog); ToStep is 0 with To.
	FromStep, ToStep int64
}

// simStop is how an incarnation ended.
type simStop struct {
	Worker   string
	Graceful bool // ctx cancelled with the table reachable: Err must be nil
	// Died: the channel closed before anyone stopped the worker and it had
	// not crashed: the Consumer gave up on its own (a fatal error). Nothing
	// in the simulation is fatal (the table stays; a stream deleted while
	// workers run is waited for, and none starts while one is missing), and
	// a group whose workers die one by one starves its streams. The one
	// exception is a twin's (simLog.Twinned).
	Died bool
	Err  error
}

// simLog is a finished run's log. Every event in it (a delivery, an ack, a
// lease-table write, an outage's start and end) carries a Step: its place
// in one order of all the run's events, counted when it happened, at the
// moment its time was read. In virtual time (testing/synctest) computation
// takes no time, so many events share one time: the checker orders events
// by Step alone, and uses their times only for durations (how long a worker
// could reach the table) and to print them. A Put has no Step: the fake's
// ledger keeps write order.
type simLog struct {
	Puts       []simPut
	Deliveries []simDelivery
	Writes     []simWrite // in the order they took effect
	Outages    []simOutage
	Stops      []simStop
	// Bound is the most records a worker may deliver from a lease after the
	// lease moved on (the channel buffer plus one chunk of 64).
	Bound int
	// LagBound is the longest an ack may wait for its checkpoint while the
	// worker can reach the table and holds the lease.
	LagBound time.Duration
	// Unread are the shards still open at the end that no worker ever
	// opened (GetShardIterator), of the streams some worker lists at the
	// end (simPut.Owed). With InitialPosition Latest a record is owed only
	// once its shard (or an ancestor) was opened, so a shard, or a whole
	// stream, that kcl never reads owes nothing: only this tells.
	Unread []string
	// Twinned are the incarnations that ran at once with another process
	// of their WorkerID (twins, a misconfiguration). kcl documents that the
	// first stops with its duplicate-WorkerID error (errDuplicateWorker);
	// which one is first is the one whose heartbeat finds the other's, so
	// either may, on its own or while stopping. That end is not a violation
	// for them, and for no one else.
	Twinned map[string]bool
	// Calls are the handler calls of the workers that run Process
	// (sim_process_check_test.go), in the order they started.
	Calls []simCall
	// PassOnBound is how long after a worker's own write that passed a
	// lease on (a release, a hand-off) the contexts of its calls of that
	// lease may stay live: until it learns that the write took effect,
	// which a lost reply puts off until a retry reads the lease back
	// (checkProcess).
	PassOnBound time.Duration
	// Parents are every shard's parents, as the log names shards.
	Parents map[string][]string
	// KeepMisplaced: the workers set Options.KeepMisplacedAggregates, so
	// the user records of a misplaced KPL aggregate (simPut.Misplaced) are
	// delivered, each an extra copy of one the KPL put again (class e), and
	// their keys are read from two shards at once (README, Known limits).
	KeepMisplaced bool
	// Unlisted are the shards that left their stream (retention) before any
	// worker's sync listed them: no lease was ever made for them. Their
	// children's leases name them as parents, but no lease says whose
	// children they were, so per-key order across them is not kept for
	// records their ancestors' holders had fetched but not yet delivered
	// (README, Known limits). On AWS a shard is listed for the retention
	// period (24 hours at least), which many ShardSyncIntervals cover.
	Unlisted map[string]bool
}

// acrossUnlisted reports whether shard descends from ancestor through a
// shard in l.Unlisted.
func (l *simLog) acrossUnlisted(shard, ancestor string) bool {
	var walk func(id string, broken bool, depth int) bool
	walk = func(id string, broken bool, depth int) bool {
		if depth > 64 {
			return false
		}
		for _, p := range l.Parents[id] {
			if p == ancestor && broken || walk(p, broken || l.Unlisted[p], depth+1) {
				return true
			}
		}
		return false
	}
	return walk(shard, false, 0)
}

// Duplicate classes.
const (
	dupUnacked  = "a: delivered but not acked (or behind an unacked record) when redelivered, when the lease moved, or when its worker's hand-off or release closed its acks"
	dupLag      = "b: acked but not yet checkpointed when the worker lost the lease (crash, freeze, partition, lease taken)"
	dupStale    = "c: a worker delivering from its buffer after its lease moved"
	dupOldLease = "d: a stream created again, read on the old stream's lease before the worker noticed"
	dupRePut    = "e: a KPL user record its producer put again (an aggregate on another shard than predicted, after a split): the first delivery of the other copy"
)

type simReport struct {
	Violations     []string
	Delivered      int            // deliveries
	Records        int            // records written
	Owed           int            // records owed
	Excused        int            // owed but trimmed before any delivery
	ExcusedRead    int            // of those, read by some GetRecords reply (never received)
	StaleTrimmed   int            // owed, trimmed, delivered only after its lease moved (class c): exempt from key order
	OrderUnlisted  int            // key-order inversions (or Process calls of a key at once) behind a shard no sync listed (simLog.Unlisted): exempt
	Dups           map[string]int // duplicate deliveries per class
	Stale          int            // deliveries after the lease moved
	MaxStale       int            // most stale deliveries of one lease acquisition
	MaxLag         time.Duration  // longest ack-to-loss time of a class b duplicate (table reachable)
	Windows        int            // lease acquisitions that delivered
	KeyOrderChecks int
	Calls          int // Process handler calls (a ProcessBatch call counts each of its records)
	Batches        int // ProcessBatch handler calls
	Leftovers      int // calls of a key that began while another worker's call of it ran on with its context ended
	Unconfirmed    int // calls of a key that began while another worker's call of it ran on, its worker not yet sure that it had passed the lease on
	RePutOverlap   int // calls of a key at once on two shards, one of a KPL user record put again (class e): exempt
	Misplaced      int // user records of misplaced KPL aggregates, checked not delivered (simPut.Misplaced) unless kept
	MisplacedKept  int // of those, delivered with simLog.KeepMisplaced
	KeptOrder      int // key-order inversions through a misplaced copy kept and delivered first: exempt (Known limits)
	Early          int // records written before their shard's first open at LATEST (simPut.Early), checked (checkEarly)
	// Edges counts what the simulation's edges produced (sim_edges_test.go),
	// by name: set by the run, not by the checker.
	Edges map[string]int
}

func (r *simReport) violate(format string, args ...any) {
	if len(r.Violations) < 50 {
		r.Violations = append(r.Violations, fmt.Sprintf(format, args...))
	} else if len(r.Violations) == 50 {
		r.Violations = append(r.Violations, "... more violations left out")
	}
}

func cpLess(aSeq string, aSub int64, bSeq string, bSub int64) bool {
	return seqLess(aSeq, bSeq) || aSeq == bSeq && aSub < bSub
}

// covers reports whether checkpoint cp is at or past (seq, sub).
func covers(cp checkpoint, seq string, sub int64) bool {
	if cp.shardEnd() {
		return true
	}
	if cp.isSentinel() {
		return false
	}
	return !cpLess(cp.seq, cp.sub, seq, sub)
}

type simWindow struct {
	id        int
	worker    string
	wid       string
	shard     string
	ds        []int       // indexes into Deliveries, in delivery order
	prefixAck []simMoment // when each delivery's prefix was acked (its last ack); zero: never
	take      simMoment   // the take that started it
	end       simMoment   // the lease moved on; zero: never in the log
	passedOn  bool        // by a write of its own worker ID: a release, a hand-off, a shard end
	closed    simMoment   // when its acks stopped counting: the first attempt of the write that passed it on, else end
	first     simMoment   // its first delivery
}

// simMoment is when an event of the log happened: its time, for durations
// and display, and its step, by which the checker orders events.
type simMoment struct {
	at   time.Time
	step int64 // 0: the zero moment, an event that never happened
}

// after reports whether m came after o in the run's order of events.
func (m simMoment) after(o simMoment) bool { return m.step > o.step }

// orNever returns m, or a moment after every event if m is zero.
func (m simMoment) orNever() simMoment {
	if m.step == 0 {
		return simMoment{never, math.MaxInt64}
	}
	return m
}

func (d simDelivery) moment() simMoment { return simMoment{d.At, d.Step} }
func (d simDelivery) acked() simMoment  { return simMoment{d.AckedAt, d.AckedStep} }
func (w simWrite) moment() simMoment    { return simMoment{w.At, w.Step} }

var never = time.Unix(1<<40, 0)

func orNever(t time.Time) time.Time {
	if t.IsZero() {
		return never
	}
	return t
}

// checkSim checks the invariants over a finished run's log.
func checkSim(l *simLog) simReport {
	rep := simReport{Dups: map[string]int{}, Delivered: len(l.Deliveries), Records: len(l.Puts)}
	// Deliveries and calls of a stream created again, on the old stream's
	// lease (class d): extra, left out of every check.
	ds := slices.DeleteFunc(slices.Clone(l.Deliveries), func(d simDelivery) bool { return d.OldLease })
	calls := slices.DeleteFunc(slices.Clone(l.Calls), func(c simCall) bool { return c.OldLease })
	if n := len(l.Deliveries) - len(ds) + len(l.Calls) - len(calls); n > 0 {
		rep.Dups[dupOldLease] = n
	}
	kept := *l
	kept.Deliveries, kept.Calls = ds, calls
	l = &kept

	// Lease acquisitions (ack windows), their take and the end of the
	// ownership that take began.
	wins := map[int]*simWindow{}
	byWorker := map[string][]int{}
	for i, d := range ds {
		byWorker[d.Worker] = append(byWorker[d.Worker], i)
	}
	for _, idx := range byWorker {
		slices.SortFunc(idx, func(a, b int) int { return ds[a].Index - ds[b].Index })
		for _, i := range idx {
			d := ds[i]
			w := wins[d.Window]
			if w == nil {
				w = &simWindow{id: d.Window, worker: d.Worker, wid: d.ID, shard: d.Shard, first: d.moment()}
				wins[d.Window] = w
			}
			if w.worker != d.Worker || w.shard != d.Shard {
				rep.violate("window %d delivered by %s/%s and %s/%s", d.Window, w.worker, w.shard, d.Worker, d.Shard)
				continue
			}
			w.ds = append(w.ds, i)
		}
	}
	addCallWindows(l.Calls, wins, &rep)
	rep.Windows = len(wins)
	writesByShard := map[string][]simWrite{}
	for _, w := range l.Writes {
		writesByShard[w.Shard] = append(writesByShard[w.Shard], w)
	}
	windowIDs := slices.Sorted(maps.Keys(wins))
	for _, id := range windowIDs {
		w := wins[id]
		// Per-shard order within one continuous ownership.
		var prefix simMoment
		for k, i := range w.ds {
			d := ds[i]
			if k > 0 {
				p := ds[w.ds[k-1]]
				if !cpLess(p.Seq, p.Sub, d.Seq, d.Sub) {
					rep.violate("order: %s delivered %s %s/%d (%q) after %s/%d (%q) in one lease acquisition (window %d)", d.Worker, d.Shard, d.Seq, d.Sub, d.Data, p.Seq, p.Sub, p.Data, w.id)
				}
			}
			if k == 0 || prefix.step != 0 {
				if d.AckedStep == 0 {
					prefix = simMoment{}
				} else if d.acked().after(prefix) {
					prefix = d.acked()
				}
			}
			w.prefixAck = append(w.prefixAck, prefix)
		}
	}
	// The take that began each acquisition, and its end: the next change of
	// ownership. The acquisitions of one shard by one process deliver
	// through one channel in the order of their takes (the records of a
	// later one never overtake those of an earlier one), so, from the last
	// delivered to the first, each has the last take by its WorkerID before
	// its first delivery and before the take of the acquisition after it,
	// written by its own process. An acquisition whose records all sat in
	// the channel until after its worker took the lease again (a freeze),
	// or after a twin took it (another process with its WorkerID), thus
	// keeps its own, older take. One with no take of its own but a twin's
	// (which a read-back took for its own lost reply) is a violation: the
	// two read the shard at once. It is then checked on that take, so that
	// the overlap check below counts what the two delivered at once.
	type procShard struct{ worker, shard string }
	groups := map[procShard][]*simWindow{}
	for _, id := range windowIDs {
		w := wins[id]
		groups[procShard{w.worker, w.shard}] = append(groups[procShard{w.worker, w.shard}], w)
	}
	keys := slices.SortedFunc(maps.Keys(groups), func(a, b procShard) int {
		return cmp.Or(strings.Compare(a.shard, b.shard), strings.Compare(a.worker, b.worker))
	})
	for _, k := range keys {
		list := groups[k]
		slices.SortFunc(list, func(a, b *simWindow) int { return cmp.Compare(b.first.step, a.first.step) })
		ws := writesByShard[k.shard]
		next := simMoment{}.orNever() // the take of the acquisition delivered after
		for _, w := range list {
			take, twin := -1, -1
			for j, x := range ws {
				if x.moment().after(w.first) || !next.after(x.moment()) {
					break
				}
				if x.Op == "take" && x.Owner == w.wid {
					if x.Proc == "" || x.Proc == w.worker {
						take = j
					} else {
						twin = j
					}
				}
			}
			if take < 0 && twin >= 0 {
				x := ws[twin]
				rep.violate("twin: %s delivered %s from %s (window %d) on a take that %s, another process with WorkerID %s, wrote at %s: both read the shard",
					w.worker, w.shard, w.first.at.Format("15:04:05.000"), w.id, x.Proc, w.wid, x.At.Format("15:04:05.000"))
				take = twin
			}
			if take < 0 {
				rep.violate("lease: %s delivered %s at %s without a take of its lease by %s in the table log", w.worker, w.shard, w.first.at.Format("15:04:05.000"), w.wid)
				continue
			}
			w.take, next = ws[take].moment(), ws[take].moment()
			for _, x := range ws[take+1:] {
				if x.Op == "take" || x.Owner != w.wid {
					w.end, w.passedOn = x.moment(), x.Op != "take" && x.By == w.wid
					w.closed = w.end
					if w.passedOn && x.Tried.step != 0 {
						w.closed = x.Tried
					}
					break
				}
			}
		}
	}

	checkEarly(l, ds, wins, writesByShard, &rep)

	// Deliveries after the lease moved (class c), and the overlap of
	// successive acquisitions of one shard.
	stale := make([]bool, len(ds))
	for _, id := range windowIDs {
		w := wins[id]
		n := 0
		for _, i := range w.ds {
			if ds[i].moment().after(w.end.orNever()) {
				stale[i] = true
				n++
			}
		}
		rep.Stale += n
		rep.MaxStale = max(rep.MaxStale, n)
		if n > l.Bound {
			rep.violate("stale: %s delivered %d records of %s after its lease moved at %s (bound %d)", w.worker, n, w.shard, w.end.at.Format("15:04:05.000"), l.Bound)
		}
	}
	byShard := map[string][]*simWindow{}
	for _, id := range windowIDs {
		byShard[wins[id].shard] = append(byShard[wins[id].shard], wins[id])
	}
	for shard, list := range byShard {
		for _, w := range list {
			if w.take.step == 0 {
				continue // no take: reported above, and no order among the others
			}
			// The first delivery of any later acquisition of the shard: one
			// whose take came after w's, or, on a twin's take (see above),
			// one of the same take that began delivering after w. (An
			// earlier one may deliver after w began, from a frozen worker's
			// channel: its records are stale.)
			var next simMoment
			for _, o := range list {
				later := o.take.after(w.take) || o.take.step == w.take.step && o.first.after(w.first)
				if o != w && later && (next.step == 0 || next.after(o.first)) {
					next = o.first
				}
			}
			if next.step == 0 {
				continue
			}
			n := 0
			for _, i := range w.ds {
				if ds[i].moment().after(next) {
					n++
				}
			}
			if n > l.Bound {
				rep.violate("overlap: %s delivered %d records of %s after another acquisition of it began delivering at %s (bound %d)", w.worker, n, shard, next.at.Format("15:04:05.000"), l.Bound)
			}
		}
	}

	// At-least-once, and per-key order of first deliveries: a record handled
	// by a Process worker (its handler returned nil, or OnFailure accepted
	// it) counts as delivered when that call returned.
	handled := checkProcess(l, wins, &rep)
	byData := map[string][]int{}
	for i, d := range ds {
		byData[d.Data] = append(byData[d.Data], i)
	}
	first := func(data string) (simDelivery, bool) {
		h, handledOK := handled.first[data]
		idx := byData[data]
		if len(idx) == 0 {
			return h, handledOK
		}
		best := idx[0]
		for _, i := range idx[1:] {
			if ds[i].Step < ds[best].Step {
				best = i
			}
		}
		if handledOK && h.Step < ds[best].Step {
			return h, true
		}
		return ds[best], true
	}
	// A trimmed record delivered only after its lease moved (class c): the
	// old owner's user loop took it from the channel buffer late (a freeze),
	// while the new owner found the shard gone (removed) and went on with
	// its children (seed 1009). kcl had no copy left to deliver in order,
	// as with a trimmed record never delivered, so it is exempt from key
	// order; a record that was not trimmed is not.
	staleOnly := func(data string) bool {
		if handled.fresh[data] {
			return false
		}
		for _, i := range byData[data] {
			if !stale[i] {
				return false
			}
		}
		return true
	}
	written := map[string]simPut{}
	copies := map[string][]simPut{} // every put of a Data: more than one for a KPL user record put again
	for _, p := range l.Puts {
		copies[p.Data] = append(copies[p.Data], p)
	}
	// delivered reports whether copy p was delivered (or, on a Process
	// worker, handled: calls name no copy).
	delivered := func(p simPut) bool {
		if len(copies[p.Data]) == 1 {
			return true // first found a delivery: of the one copy (identity, below)
		}
		if _, ok := handled.first[p.Data]; ok {
			return true
		}
		return slices.ContainsFunc(byData[p.Data], func(i int) bool { return ds[i].Shard == p.Shard && ds[i].Seq == p.Seq && ds[i].Sub == p.Sub })
	}
	lastByKey := map[string]simDelivery{}
	lastPutByKey := map[string]simPut{}
	// placed is the first copy of each Data that is not misplaced: its
	// key's order is checked there.
	placed := map[string]simPut{}
	for _, p := range l.Puts {
		if _, ok := placed[p.Data]; !ok && !p.Misplaced {
			placed[p.Data] = p
		}
	}
	// handedOver reports whether copy p was delivered, or given to a
	// Process handler, whatever the call's result.
	handedOver := func(p simPut) bool {
		same := func(shard, seq string, sub int64) bool { return shard == p.Shard && seq == p.Seq && sub == p.Sub }
		return slices.ContainsFunc(byData[p.Data], func(i int) bool { return same(ds[i].Shard, ds[i].Seq, ds[i].Sub) }) ||
			slices.ContainsFunc(l.Calls, func(c simCall) bool { return c.Data == p.Data && same(c.Shard, c.Seq, c.Sub) })
	}
	// keptCopy are the Data of misplaced copies delivered with KeepMisplaced.
	keptCopy := map[string]bool{}
	for _, p := range l.Puts {
		written[p.Data] = p
		if p.Misplaced {
			if l.KeepMisplaced && handedOver(p) {
				keptCopy[p.Data] = true
				rep.MisplacedKept++
			} else if handedOver(p) {
				rep.violate("misplaced: %q (shard %s, seq %s) delivered, a user record of a KPL aggregate on a shard that does not own all its keys (dropped by default, as the Java KCL does)", p.Data, p.Shard, p.Seq)
			}
			rep.Misplaced++
			continue
		}
		if !p.Owed {
			continue
		}
		rep.Owed++
		d, ok := first(p.Data)
		ok = ok && delivered(p)
		if !ok {
			if p.Trimmed {
				rep.Excused++
				if p.Reads > 0 {
					rep.ExcusedRead++
				}
				continue
			}
			rep.violate("lost: %q (shard %s, seq %s) never delivered", p.Data, p.Shard, p.Seq)
			continue
		}
		if p.Trimmed && staleOnly(p.Data) {
			rep.StaleTrimmed++
			continue
		}
		if placed[p.Data] != p {
			continue // a copy put again (class e): its key's order was checked at the first placed one
		}
		if prev, ok := lastByKey[p.Key]; ok {
			rep.KeyOrderChecks++
			pp := lastPutByKey[p.Key]
			if d.Step < prev.Step && pp.Trimmed && l.acrossUnlisted(p.Shard, pp.Shard) {
				rep.OrderUnlisted++
			} else if d.Step < prev.Step && (keptCopy[p.Data] || keptCopy[pp.Data]) {
				rep.KeptOrder++
			} else if d.Step < prev.Step {
				rep.violate("key order: key %s: %q (%s, written after %q in %s) first delivered at %s by %s, before %q first delivered at %s by %s",
					p.Key, p.Data, p.Shard, pp.Data, pp.Shard, d.At.Format("15:04:05.000000"), d.Worker, prev.Data, prev.At.Format("15:04:05.000000"), prev.Worker)
			}
		}
		lastByKey[p.Key], lastPutByKey[p.Key] = d, p
	}
	for data, idx := range byData {
		p, ok := written[data]
		if !ok {
			rep.violate("phantom: %q delivered %d times, never written", data, len(idx))
			continue
		}
		// Every delivery, not only the first, names the shard (and so the
		// stream) and sequence number the record was written with: a
		// redelivery under another stream's name would otherwise pass
		// wherever the worker also held that stream's lease of the same ID.
		for _, i := range idx {
			d := ds[i]
			if !slices.ContainsFunc(copies[data], func(p simPut) bool { return d.Shard == p.Shard && d.Seq == p.Seq && d.Sub == p.Sub }) {
				rep.violate("identity: %q written to %s/%s/%d, delivered by %s as %s/%s/%d", p.Data, p.Shard, p.Seq, p.Sub, d.Worker, d.Shard, d.Seq, d.Sub)
			}
		}
	}

	// Duplicates: every delivery of a record after its first is explained.
	outages := map[string][]simOutage{}
	for _, o := range l.Outages {
		outages[o.Worker] = append(outages[o.Worker], o)
	}
	// reachable is how long within [from, to] the worker could reach the table.
	reachable := func(worker string, from, to time.Time) time.Duration {
		if !to.After(from) {
			return 0
		}
		type span struct{ a, b time.Time }
		var cut []span
		for _, o := range outages[worker] {
			a, b := o.From, orNever(o.To)
			if a.Before(from) {
				a = from
			}
			if b.After(to) {
				b = to
			}
			if b.After(a) {
				cut = append(cut, span{a, b})
			}
		}
		sort.Slice(cut, func(i, j int) bool { return cut[i].a.Before(cut[j].a) })
		total, at := to.Sub(from), from
		for _, s := range cut {
			if s.a.Before(at) {
				s.a = at
			}
			if s.b.After(s.a) {
				total -= s.b.Sub(s.a)
				at = s.b
			}
		}
		return total
	}
	winOf := func(i int) (*simWindow, int) {
		w := wins[ds[i].Window]
		if w == nil {
			return nil, -1
		}
		return w, slices.Index(w.ds, i)
	}
	for _, data := range slices.Sorted(maps.Keys(byData)) {
		idx := slices.Clone(byData[data])
		if len(idx) < 2 {
			continue
		}
		slices.SortFunc(idx, func(a, b int) int { return cmp.Compare(ds[a].Step, ds[b].Step) })
		for n, i := range idx[1:] {
			di := ds[i]
			// Only the deliveries of the same copy explain this one; the
			// first of another copy is the producer's duplicate (class e).
			earlier := slices.DeleteFunc(slices.Clone(idx[:n+1]), func(j int) bool {
				return ds[j].Shard != di.Shard || ds[j].Seq != di.Seq || ds[j].Sub != di.Sub
			})
			if len(earlier) == 0 && len(copies[data]) > 1 {
				rep.Dups[dupRePut]++
				continue
			}
			wi, _ := winOf(i)
			// A checkpoint at or past the record, written before the take
			// that began this delivery's acquisition: a rewind.
			if wi != nil && !stale[i] {
				for _, x := range writesByShard[di.Shard] {
					if wi.take.after(x.moment()) && x.Op == "checkpoint" && covers(x.CP, di.Seq, di.Sub) {
						rep.violate("rewind: %q delivered again by %s at %s though checkpoint %s/%d by %s at %s covered it before its take at %s",
							data, di.Worker, di.At.Format("15:04:05.000"), x.CP.seq, x.CP.sub, x.By, x.At.Format("15:04:05.000"), wi.take.at.Format("15:04:05.000"))
						break
					}
				}
			}
			class := ""
			if stale[i] || slices.ContainsFunc(earlier, func(j int) bool { return stale[j] }) {
				class = dupStale
			}
			var lag time.Duration
			why := []string{}
			for _, j := range earlier {
				if class != "" {
					break
				}
				wj, k := winOf(j)
				if wj == nil {
					continue
				}
				acked := wj.prefixAck[k].orNever()
				end := wj.end.orNever()
				switch {
				case acked.after(di.moment()) || acked.after(end) || wj.closed.step != 0 && acked.after(wj.closed):
					// Not acked when redelivered, when the lease moved, or
					// when a hand-off or release of its own worker closed
					// its acks (after ShutdownTimeout, the write's first
					// attempt): such an ack does nothing.
					class = dupUnacked
				default:
					r := reachable(wj.worker, acked.at, end.at)
					if r <= l.LagBound {
						class, lag = dupLag, r
					} else {
						why = append(why, fmt.Sprintf("%s acked it at %s, lease moved at %s, table reachable %v of that", wj.worker, acked.at.Format("15:04:05.000"), fmtEnd(wj.end.at), r.Round(time.Millisecond)))
					}
				}
			}
			if class == "" {
				rep.violate("duplicate: %q delivered again by %s at %s, unexplained: %s", data, di.Worker, di.At.Format("15:04:05.000"), strings.Join(why, "; "))
				continue
			}
			rep.Dups[class]++
			if class == dupLag {
				rep.MaxLag = max(rep.MaxLag, lag)
			}
		}
	}

	// The lease-table writes themselves:
	//   - A take from another worker lands only once that worker stopped
	//     delivering the shard: no incarnation of it that held the lease had
	//     its delivery deadline still ahead ("No overlap between owners",
	//     whatever mix of item ages the taker's reads returned). What it
	//     delivers meanwhile may stay within the class-c bound, so only this
	//     tells.
	//   - A checkpoint write is made only by the lease's owner: once a lease
	//     ended for a worker (shard end, release, hand-off, loss), no later
	//     write of that worker touches it, though queued behind the write
	//     that ended it.
	for _, w := range l.Writes {
		switch {
		case w.Op == "take" && len(w.Open) > 0:
			rep.violate("fence: %s took %s from %s at %s while %s held it with its delivery deadline ahead",
				w.By, w.Shard, w.Prev, w.At.Format("15:04:05.000000"), strings.Join(w.Open, ", "))
		case w.Op == "checkpoint" && w.Prev != w.By:
			rep.violate("ended: %s wrote checkpoint %s/%d of %s at %s, owned by %q then: a write after its lease ended for it",
				w.By, w.CP.seq, w.CP.sub, w.Shard, w.At.Format("15:04:05.000000"), w.Prev)
		}
	}

	// Every shard is read: after the quiet phase, none still open is left
	// unopened (records or not).
	for _, shard := range l.Unread {
		rep.violate("starved: shard %s, open at the end, was never read", shard)
	}

	// Graceful stops end without error; only a twin ends with its
	// duplicate-WorkerID error, on its own or not.
	for _, s := range l.Stops {
		twin := l.Twinned[s.Worker] && errors.Is(s.Err, errDuplicateWorker)
		if s.Graceful && s.Err != nil && !twin {
			rep.violate("err: %s stopped gracefully with Err %v", s.Worker, s.Err)
		}
		if s.Died && !twin {
			rep.violate("died: %s ended on its own, not stopped or crashed: Err %v", s.Worker, s.Err)
		}
	}
	return rep
}

func fmtEnd(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Format("15:04:05.000")
}

// checkEarly reports the records written well before their shard was
// first opened at LATEST (simPut.Early) that its first acquisition
// delivered, or gave a Process handler: the first owner reads from where
// it opened, also after a failed first subscription or an expired
// iterator (issue 27 item 7).
func checkEarly(l *simLog, ds []simDelivery, wins map[int]*simWindow, writesByShard map[string][]simWrite, rep *simReport) {
	type copyID struct {
		shard, seq string
		sub        int64
	}
	early := map[copyID]simPut{}
	for _, p := range l.Puts {
		if p.Early {
			early[copyID{p.Shard, p.Seq, p.Sub}] = p
		}
	}
	rep.Early = len(early)
	if len(early) == 0 {
		return
	}
	firstTake := func(w *simWindow) bool {
		return w != nil && w.take.step != 0 && // no take found: reported
			!slices.ContainsFunc(writesByShard[w.shard], func(x simWrite) bool { return x.Op == "take" && w.take.after(x.moment()) })
	}
	found := func(worker, shard, seq string, sub int64, w *simWindow) {
		if p, ok := early[copyID{shard, seq, sub}]; ok {
			rep.violate("early: %s delivered %q of %s (arrived %s) on the shard's first take (window %d), written before the group first opened it at LATEST",
				worker, p.Data, shard, p.Arrival.Format("15:04:05.000"), w.id)
		}
	}
	for _, w := range wins {
		if !firstTake(w) {
			continue
		}
		for _, i := range w.ds {
			found(ds[i].Worker, ds[i].Shard, ds[i].Seq, ds[i].Sub, w)
		}
	}
	for _, c := range l.Calls {
		if w := wins[c.Window]; firstTake(w) {
			found(c.Worker, c.Shard, c.Seq, c.Sub, w)
		}
	}
}
