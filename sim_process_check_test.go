package kcl

// The Process section of the simulation's checker (sim_check_test.go): the
// handler calls of the workers that run Consumer.Process
// (sim_process_test.go), held to Process's own contract.

import (
	"cmp"
	"maps"
	"slices"
	"time"
)

// simCall is one attempt of a Process worker at a record: its handler call
// and, when Process passed the record on to OnFailure, that call (at the
// same instant, right after it).
type simCall struct {
	Worker string // the incarnation ("w1#2"): one Consumer
	ID     string // its WorkerID
	Window int    // the lease acquisition (ack window) the record came from, numbered as deliveries' are
	Shard  string // named as simPut.Shard
	Seq    string
	Sub    int64
	Data   string
	Key    string
	Start  simMoment // the handler was called
	// End: the handler returned (OnFailure, if called, returned); for a
	// worker that crashed meanwhile, the crash, after which it runs nothing.
	End simMoment
	// CtxEnd is when the call's context ended, if it did before the call
	// returned; zero: live at return. Every wait of the handler watches the
	// context, so this is the virtual time of its end.
	CtxEnd simMoment
	Result string        // one of the call results below
	Ignore time.Duration // how long it runs on once its context ends; 0: it returns at once
	// Batch numbers the ProcessBatch call the record was in (its calls
	// share Start, End and CtxEnd: one call); 0 for a Process call.
	Batch int
	said  string // in a batch: the result the handler gave it (Result is callBehind if a record before it of its key was not acked)
	// OldLease: a record of a stream created again, read on the lease of
	// the old one's shard of that ID (simDelivery.OldLease).
	OldLease bool
}

// Call results.
const (
	callOK       = "ok"       // the handler returned nil: the record was handled
	callFailed   = "failed"   // it returned an error, with its context live: Process retries or stops
	callAccepted = "accepted" // it failed its last attempt and OnFailure returned nil: handled
	callRefused  = "refused"  // OnFailure returned an error: Process stops, the record is owed again
	callCtx      = "ctx"      // it returned because its context ended (at once, or after ignoring it)
	callBehind   = "behind"   // in a batch, behind a record of its key that failed: not acked, whatever the handler said
	callCrashed  = "crashed"  // its worker crashed while it ran
)

// handled reports whether the call handled its record: the handler
// returned nil, or OnFailure accepted the record.
func (c simCall) handled() bool { return c.Result == callOK || c.Result == callAccepted }

// simSpinCalls is how many calls of one record one worker may start at one
// virtual instant. Retries wait a backoff of at least 50ms, and a call cut
// short by the pause gate runs again only once the gate reopened (which
// takes a lease-table write), so kcl never comes near: more is a busy loop.
const simSpinCalls = 50

// simHandled is what the Process calls say of each record: its first
// handling (a successful call's end), for at-least-once and key order, and
// whether some handling was in time (fresh).
type simHandled struct {
	first map[string]simDelivery // the call that handled the record first, as a delivery at its End
	// fresh: some call that handled the record started before its lease
	// moved and returned with its context live. A trimmed record handled
	// only otherwise is exempt from key order, as one delivered only after
	// its lease moved is (checkSim's staleOnly): no copy was left for the
	// next owner to run in order, and the call that handled it ran late,
	// on past the end of its context (its handler ignored it, which the
	// contract allows to break per-key order across workers).
	fresh map[string]bool
}

// addCallWindows adds to wins the lease acquisitions the Process calls came
// from: each begins with its first call, so that the take analysis finds
// its take and the end of its ownership as it does for deliveries.
func addCallWindows(calls []simCall, wins map[int]*simWindow, rep *simReport) {
	for _, c := range calls {
		w := wins[c.Window]
		if w == nil {
			wins[c.Window] = &simWindow{id: c.Window, worker: c.Worker, wid: c.ID, shard: c.Shard, first: c.Start}
			continue
		}
		if w.worker != c.Worker || w.shard != c.Shard {
			rep.violate("window %d handled by %s/%s and %s/%s", c.Window, w.worker, w.shard, c.Worker, c.Shard)
			continue
		}
		if w.first.after(c.Start) {
			w.first = c.Start
		}
	}
}

// checkProcess holds the Process calls of l to Process's contract (process.go,
// docs/process.md), given the lease acquisitions with their takes and ends
// (checkSim's take analysis), and returns what the calls handled for the
// checks of at-least-once and key order, which count a record handled by a
// Process worker like one delivered by a Consume loop.
//
// Exclusion: no two calls of one partition key run at once anywhere in the
// group, beyond this bound. Take any two calls a and b of a key, b started
// after a (by step) and before a returned. Then:
//   - They are on two Consumers: one worker never runs two calls of a key
//     at once, whichever acquisitions they came from.
//   - a returned at the instant b started, or a's context had ended by that
//     instant (virtual time: kcl orders no two workers' events of one
//     instant). Its context ends when its lease was lost, handed off or
//     released, or when its worker's pause gate shut at the delivery
//     deadline; a handler that honours it returns at that instant (the
//     simulation's do, by construction), one that ignores it runs on for
//     its simCall.Ignore (and any freeze). That is the bound.
//   - Or one of them ran then only because its worker had passed its lease
//     on by a write of its own whose reply was lost (unconfirmed, below),
//     within PassOnBound of that write. kcl ends a lease's calls before it
//     sends such a write (writeCheckpoint), so the simulation sets it to 0;
//     the checker's tests show a bound still holds a worker to it.
//   - Or they are twins (simLog.Twinned): two processes of one WorkerID
//     share its leases until kcl stops the first.
//
// Anything else is a violation: a call of the key started while another
// ran with a live context, or started with its own already over (a call
// started after its worker's delivery deadline passed meets the calls of
// the worker that took its lease, begun earlier, with theirs live). A
// worker that restarts one record in a busy loop at one instant (simSpinCalls)
// is reported too.
func checkProcess(l *simLog, wins map[int]*simWindow, rep *simReport) simHandled {
	h := simHandled{first: map[string]simDelivery{}, fresh: map[string]bool{}}
	rep.Calls = len(l.Calls)
	batches := map[int]bool{}
	for _, c := range l.Calls {
		if c.Batch != 0 {
			batches[c.Batch] = true
		}
	}
	rep.Batches = len(batches)
	written := map[string]simPut{}
	copies := map[string][]simPut{} // more than one: a KPL user record put again (class e)
	for _, p := range l.Puts {
		written[p.Data] = p
		copies[p.Data] = append(copies[p.Data], p)
	}
	writesByShard := map[string][]simWrite{}
	for _, w := range l.Writes {
		writesByShard[w.Shard] = append(writesByShard[w.Shard], w)
	}
	type spinKey struct {
		worker, data string
		at           time.Time
	}
	spins := map[spinKey]int{}
	byKey := map[string][]int{}
	for i, c := range l.Calls {
		spins[spinKey{c.Worker, c.Data, c.Start.at}]++
		p, ok := written[c.Data]
		// The key as written: of its stream's incarnation (a stream created
		// again under its name is another stream, with keys of its own).
		if ok {
			byKey[p.Key] = append(byKey[p.Key], i)
		} else {
			byKey[c.Key] = append(byKey[c.Key], i)
		}
		switch {
		case !ok:
			rep.violate("phantom: %q handled by %s, never written", c.Data, c.Worker)
			continue
		case !slices.ContainsFunc(copies[c.Data], func(p simPut) bool { return c.Shard == p.Shard && c.Seq == p.Seq }):
			rep.violate("identity: %q written to %s/%s, handled by %s as %s/%s", p.Data, p.Shard, p.Seq, c.Worker, c.Shard, c.Seq)
		}
		w := wins[c.Window]
		stale := w != nil && c.Start.after(w.end.orNever())
		if w != nil && !stale {
			// A call of a record behind a checkpoint written before the take
			// of the call's acquisition: the record was read again behind it.
			for _, x := range writesByShard[c.Shard] {
				if w.take.after(x.moment()) && x.Op == "checkpoint" && covers(x.CP, c.Seq, c.Sub) {
					rep.violate("rewind: %q handled again by %s at %s though checkpoint %s/%d by %s at %s covered it before its take at %s",
						c.Data, c.Worker, c.Start.at.Format("15:04:05.000"), x.CP.seq, x.CP.sub, x.By, x.At.Format("15:04:05.000"), w.take.at.Format("15:04:05.000"))
					break
				}
			}
		}
		if !c.handled() {
			continue
		}
		if !stale && c.CtxEnd.step == 0 {
			h.fresh[c.Data] = true
		}
		if f, ok := h.first[c.Data]; !ok || f.Step > c.End.step {
			h.first[c.Data] = simDelivery{Worker: c.Worker, ID: c.ID, Window: c.Window, Shard: c.Shard, Seq: c.Seq, Sub: c.Sub, Data: c.Data, Key: c.Key, At: c.End.at, Step: c.End.step}
		}
	}
	for _, k := range slices.SortedFunc(maps.Keys(spins), func(a, b spinKey) int {
		return cmp.Or(a.at.Compare(b.at), cmp.Compare(a.worker, b.worker), cmp.Compare(a.data, b.data))
	}) {
		if n := spins[k]; n >= simSpinCalls {
			rep.violate("spin: %s called its handler %d times for %q at one instant, %s", k.worker, n, k.data, k.at.Format("15:04:05.000000"))
		}
	}

	// unconfirmed reports whether call x ran beside b (started at or after
	// the other) only because its worker had not learned yet that its own
	// write passing x's lease on (a release, a hand-off), before b began,
	// took effect: the reply was lost, and x's context ended once a retry
	// read the lease back, within PassOnBound of that write (or x returned
	// first).
	unconfirmed := func(x, b simCall) bool {
		w := wins[x.Window]
		end := x.CtxEnd
		if end.step == 0 {
			end = x.End
		}
		return w != nil && w.passedOn && b.Start.after(w.end) && end.at.Sub(w.end.at) <= l.PassOnBound
	}
	for _, key := range slices.Sorted(maps.Keys(byKey)) {
		idx := byKey[key]
		slices.SortFunc(idx, func(a, b int) int { return cmp.Compare(l.Calls[a].Start.step, l.Calls[b].Start.step) })
		var running []int // calls of the key started so far and still running
		for _, i := range idx {
			b := l.Calls[i]
			kept := running[:0]
			for _, j := range running {
				if l.Calls[j].End.after(b.Start) {
					kept = append(kept, j)
				}
			}
			running = kept
			for _, j := range running {
				a := l.Calls[j]
				switch {
				case a.Batch != 0 && a.Batch == b.Batch:
					// Records of one key in one batch: one call, which
					// holds them in order (the handler checks it).
				case a.Worker != b.Worker && !a.End.at.After(b.Start.at):
					// It returned at the instant b started: kcl orders no
					// two workers' events of one instant (a worker's window
					// closes just after its hand-off write lands, while
					// another may already have read it).
				case a.ID == b.ID && a.Worker != b.Worker && l.Twinned[a.Worker] && l.Twinned[b.Worker]:
					// Twins: two processes of one WorkerID, a misconfiguration
					// kcl ends (errDuplicateWorker) but cannot keep apart
					// until then; they share its leases.
				case a.Worker == b.Worker:
					rep.violate("exclusion: key %s: %s started %q at %s while its call of %q, started at %s, ran (one worker runs one call of a key at a time)",
						key, b.Worker, b.Data, b.Start.at.Format("15:04:05.000000"), a.Data, a.Start.at.Format("15:04:05.000000"))
				case a.CtxEnd.step != 0 && !a.CtxEnd.at.After(b.Start.at):
					rep.Leftovers++
				case l.acrossUnlisted(b.Shard, a.Shard) || l.acrossUnlisted(a.Shard, b.Shard):
					// One shard descends from the other through a shard no
					// sync listed (simLog.Unlisted): no lease says the
					// descendant waits (README, Known limits).
					rep.OrderUnlisted++
				case a.Shard != b.Shard && (len(copies[a.Data]) > 1 || len(copies[b.Data]) > 1):
					// A KPL user record put again (class e): its key is
					// read from the shard the aggregate landed on and from
					// its own at once (README, Known limits).
					rep.RePutOverlap++
				case unconfirmed(a, b) || unconfirmed(b, b):
					rep.Unconfirmed++
				default:
					rep.violate("exclusion: key %s: %s started %q at %s while %s's call of %q, started at %s, ran with its context live (until %s; it returned %s at %s)",
						key, b.Worker, b.Data, b.Start.at.Format("15:04:05.000000"), a.Worker, a.Data, a.Start.at.Format("15:04:05.000000"),
						fmtMoment(a.CtxEnd), a.Result, a.End.at.Format("15:04:05.000000"))
				}
			}
			running = append(running, i)
		}
	}
	return h
}

func fmtMoment(m simMoment) string {
	if m.step == 0 {
		return "its return"
	}
	return m.at.Format("15:04:05.000000")
}
