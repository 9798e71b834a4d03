//go:build go1.25

package kcl

// The simulation's deploys, streams created again and twins (issue 21):
// schedules of a real deployment that the adversary of sim_test.go could
// not make.
//
//   - Rolling deploys that change Streams (multi-stream runs): one adds the
//     late stream (simConfig.late), one removes a stream (widen.remove).
//     Either may halt after a canary of one or two workers, so that old and
//     new workers, listing different streams, run side by side until the
//     end, and drain side by side (drainers). Replaced workers get new
//     WorkerIDs, or keep theirs (restarted in place).
//   - A stream deleted and created again under its name, while workers run
//     or while every worker is down (stopped, then started again with
//     their IDs), in either mode. The log names each incarnation apart
//     (simStreams); records of the new one are owed from its first, those
//     of the old one left unread are trimmed (excused).
//   - Twins: a second process started with the WorkerID of a live one,
//     sometimes while leases are freed for both to race for. kcl stops the
//     older with its duplicate-WorkerID error, which the checker accepts
//     for twins only (simLog.Twinned).
//
// What is owed at the end (simPut.Owed): the records of the streams the
// workers that drain list, and no others.

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kclgo/kcl/internal/kinesisfake"
)

// Kinds of the adversary's events added here (act); below every kind of
// sim_test.go's.
const (
	simEvWiden       = -100 // this and below: actWiden's
	simEvRemove      = -101 // a rolling deploy removes widen.remove from Streams
	simEvRecreate    = -102 // a stream deleted and created again while workers run
	simEvRecreateAll = -103 // the same while every worker is down
	simEvTwin        = -104 // a second process with a live worker's WorkerID
)

// simWiden is the part of a seed's set-up drawn here, from a generator of
// its own (drawWiden), so that the seeds drawn before keep their set-up and
// schedule unless they draw one of these.
type simWiden struct {
	// remove is the stream a rolling deploy removes from Streams at
	// removeAt (multi-stream, with no late stream).
	remove   string
	removeAt time.Duration
	// halt: a deploy (adding the late stream, or removing one) replaces
	// only this many live workers and halts, a canary: old and new run side
	// by side until the end. 0: it replaces every live worker.
	halt int
	// sameIDs: a deploy restarts each worker under its WorkerID (once its
	// stop is over) instead of starting one with a new ID.
	sameIDs bool
	// recreates are when a stream is deleted and created again, and
	// whether every worker is down meanwhile.
	recreates []simRecreate
	// twins are when a second process starts with a live worker's ID.
	twins []time.Duration
	// events are the above as the adversary's events.
	events []simWidenEvent
}

type simRecreate struct {
	at   time.Duration
	down bool
}

// simWidenEvent is one event of the adversary's schedule (runSim's event).
type simWidenEvent struct {
	at   time.Duration
	kind int
	r    uint64
}

// simRecreateOn turns on streams deleted and created again. On by default;
// -sim.recreate=false turns them off. The draws are the same either way: a
// seed's other events do not change.
var simRecreateOn = flag.Bool("sim.recreate", true, "TestSimulation: streams are deleted and created again")

// simTwinsOn turns on twins, two processes with one WorkerID (a
// misconfiguration kcl ends with errDuplicateWorker). On by default;
// -sim.twins=false turns them off. The draws are the same either way.
var simTwinsOn = flag.Bool("sim.twins", true, "TestSimulation: twins, two processes with one WorkerID")

// drawWiden draws a seed's deploys, streams created again and twins.
func drawWiden(seed uint64, c simConfig, chaos time.Duration) simWiden {
	rng := rand.New(rand.NewPCG(seed^0xdeb10e5, seed+0x7a1e))
	var w simWiden
	if c.streams > 1 {
		if !c.late && rng.IntN(2) == 0 {
			w.remove, w.removeAt = simMultiStreams[rng.IntN(c.streams)], chaos/5+time.Duration(rng.Int64N(int64(chaos/2)))
		}
		if rng.IntN(2) == 0 {
			w.halt = 1 + rng.IntN(2)
		}
		w.sameIDs = rng.IntN(3) == 0
	}
	if rng.IntN(3) == 0 {
		for range 1 + rng.IntN(4)/3 {
			w.recreates = append(w.recreates, simRecreate{at: time.Duration(rng.Int64N(int64(chaos * 4 / 5))), down: rng.IntN(2) == 0})
		}
	}
	if rng.IntN(2) == 0 {
		for range 1 + rng.IntN(2) {
			w.twins = append(w.twins, time.Duration(rng.Int64N(int64(chaos))))
		}
	}
	if w.remove != "" {
		w.events = append(w.events, simWidenEvent{w.removeAt, simEvRemove, rng.Uint64()})
	}
	for _, r := range w.recreates {
		kind := simEvRecreate
		if r.down {
			kind = simEvRecreateAll
		}
		if ev := (simWidenEvent{r.at, kind, rng.Uint64()}); *simRecreateOn {
			w.events = append(w.events, ev)
		}
	}
	if !*simRecreateOn {
		w.recreates = nil
	}
	for _, at := range w.twins {
		if ev := (simWidenEvent{at, simEvTwin, rng.Uint64()}); *simTwinsOn {
			w.events = append(w.events, ev)
		}
	}
	if !*simTwinsOn {
		w.twins = nil
	}
	return w
}

// String is the config line's part of w.
func (w simWiden) String() string {
	var b strings.Builder
	if w.remove != "" {
		fmt.Fprintf(&b, " remove=%s@%v", w.remove, w.removeAt.Round(time.Millisecond))
	}
	if w.halt > 0 {
		fmt.Fprintf(&b, " canary=%d", w.halt)
	}
	if w.sameIDs {
		b.WriteString(" deploySameIDs")
	}
	for _, r := range w.recreates {
		fmt.Fprintf(&b, " recreate=%v", r.at.Round(time.Millisecond))
		if r.down {
			b.WriteString("(down)")
		}
	}
	for _, at := range w.twins {
		fmt.Fprintf(&b, " twin=%v", at.Round(time.Millisecond))
	}
	return b.String()
}

// simWide is a run's state of what this file adds. Synchronized on mu.
type simWide struct {
	mu sync.Mutex
	// lists are the Streams each WorkerID was last started with: a
	// restart or a twin lists the same (multi-stream).
	lists map[string][]string
	// canary: a halted deploy left workers of old (listing from) and new
	// (listing to); a worker joining with a new ID lists either.
	canary   bool
	from, to []string
	// twinned are the incarnations that ran at once with another process
	// of their WorkerID (simLog.Twinned).
	twinned map[string]bool
	// end are the streams the workers that drain list (drainers); nil
	// before the quiet phase.
	end map[string]bool
	// next, when not nil, is the list of the next worker started with a
	// new WorkerID (drainers).
	next []string
}

// starting returns the Streams that incarnation name, about to start with
// WorkerID id, lists: the ID's last list, or for a new ID the current one
// (during a halted deploy, the old or the new by the worker's seed). If a
// live worker has that ID, both become twinned: kcl stops the one whose
// heartbeat finds the other's, which is the older unless the older has not
// beaten yet (its start is slow).
func (s *simRun) starting(id, name string, seed uint64) []string {
	live := s.live()
	s.mu.Lock()
	reading := s.reading
	s.mu.Unlock()
	s.wide.mu.Lock()
	defer s.wide.mu.Unlock()
	for _, w := range live {
		if w.id == id {
			if s.wide.twinned == nil {
				s.wide.twinned = map[string]bool{}
			}
			s.wide.twinned[w.name], s.wide.twinned[name] = true, true
		}
	}
	if l, ok := s.wide.lists[id]; ok {
		return l
	}
	if s.wide.canary && seed&1 == 0 {
		reading = s.wide.from
	}
	if s.wide.next != nil {
		reading, s.wide.next = s.wide.next, nil
	}
	if s.wide.lists == nil {
		s.wide.lists = map[string][]string{}
	}
	s.wide.lists[id] = reading
	return reading
}

// twinnedSet returns a copy of the twinned incarnations.
func (s *simRun) twinnedSet() map[string]bool {
	s.wide.mu.Lock()
	defer s.wide.mu.Unlock()
	out := make(map[string]bool, len(s.wide.twinned))
	for k, v := range s.wide.twinned {
		out[k] = v
	}
	return out
}

// actWiden applies one of this file's events.
func (s *simRun) actWiden(ctx context.Context, kind int, rng *rand.Rand) {
	switch kind {
	case simEvRemove:
		s.mu.Lock()
		to := slices.DeleteFunc(slices.Clone(s.reading), func(name string) bool { return name == s.cfg.widen.remove })
		s.mu.Unlock()
		s.rollOut(ctx, rng, to, "removes "+s.cfg.widen.remove)
	case simEvRecreate, simEvRecreateAll:
		s.recreateStream(rng, kind == simEvRecreateAll)
	case simEvTwin:
		s.twin(rng)
	}
}

// deploy is the rolling deploy that adds the late stream to Streams.
func (s *simRun) deploy(ctx context.Context, rng *rand.Rand) {
	s.rollOut(ctx, rng, s.sts.names, "adds "+s.sts.names[len(s.sts.names)-1])
}

// rollOut is a rolling deploy to Streams to: each live worker in turn
// stops (a frozen one is killed) and a new one, listing to, starts; with a
// new WorkerID, or with its own once it stopped (widen.sameIDs). It halts
// after widen.halt workers when fewer than all (a canary): the others keep
// their list until the end, and workers that join from then on list either.
// Without a canary, workers started from now on list to.
func (s *simRun) rollOut(ctx context.Context, rng *rand.Rand, to []string, what string) {
	s.mu.Lock()
	from := s.reading
	s.reading = to
	s.mu.Unlock()
	live := s.live()
	n, wide := len(live), s.cfg.widen
	if wide.halt > 0 && wide.halt < n {
		n = wide.halt
	}
	ids := "new WorkerIDs"
	if wide.sameIDs {
		ids = "same WorkerIDs"
	}
	s.event("deploy %s: Streams %v, %d of %d workers, %s", what, to, n, len(live), ids)
	for _, w := range live[:n] {
		id := ""
		if wide.sameIDs {
			id = w.id
			s.wide.mu.Lock()
			s.wide.lists[id] = to // started by starting, so not nil
			s.wide.mu.Unlock()
		}
		if w.isFrozen() {
			s.event("deploy: kill %s (frozen)", w.name)
			w.crash(false)
			s.wg.Go(w.kill)
		} else {
			s.event("deploy: stop %s", w.name)
			w.stop(wide.sameIDs)
		}
		s.startWorker(rng.Uint64(), id)
		sleep(ctx, time.Duration(rng.IntN(200))*time.Millisecond)
	}
	if n < len(live) {
		s.event("deploy halted: %d workers list %v, %d list %v", n, to, len(live)-n, from)
		s.wide.mu.Lock()
		s.wide.canary, s.wide.from, s.wide.to = true, from, to
		s.wide.mu.Unlock()
	}
}

// recreateStream deletes a stream the group reads and creates it again
// under its name, a second or more later, with 1 to 4 shards; with down,
// every live worker stops first (a frozen one is killed) and starts again
// with its WorkerID once the stream exists again. The adversary does
// nothing else meanwhile: a worker starting while a stream it lists is
// missing ends with an error, as documented, and so, while workers run,
// each live worker's start is over before the deletion.
func (s *simRun) recreateStream(rng *rand.Rand, down bool) {
	stream := s.recreatable(rng)
	if stream == "" {
		return
	}
	var restart []string
	if !down {
		s.waitBegun()
	}
	if down {
		// No supervisor starts a Process worker again meanwhile: it would
		// start while the stream is missing.
		s.proc.restart.Lock()
		defer s.proc.restart.Unlock()
		for _, w := range s.live() {
			if w.isFrozen() {
				w.crash(false)
				s.wg.Go(w.kill)
			} else {
				w.stop(true)
			}
			restart = append(restart, w.id)
		}
	}
	s.event("recreate %s: deleted (gen %d)%s", stream, s.sts.gen(stream), map[bool]string{true: ", every worker stopped", false: ""}[down])
	create, err := s.sts.recreate(s.kin, stream)
	if err != nil {
		s.t.Errorf("DeleteStream: %v", err)
		return
	}
	time.Sleep(time.Duration(rng.IntN(500)) * time.Millisecond)
	inc, err := create(1 + rng.IntN(4))
	if err != nil {
		s.t.Errorf("CreateStream: %v", err)
	}
	s.noteShards()
	s.event("recreate %s: created again (gen %d, %d shards)", stream, inc.gen, len(s.openShards(stream)))
	for _, id := range restart {
		s.startWorker(rng.Uint64(), id)
	}
}

// recreatable draws a stream to delete and create again: one that some
// live worker lists and whose incarnation the lease table holds leases of,
// so that the group was reading that name (kcl then reads the new one from
// its first record). "" if none.
func (s *simRun) recreatable(rng *rand.Rand) string {
	listed := map[string]bool{}
	for _, w := range s.live() {
		for _, name := range w.streams {
			listed[name] = true
		}
	}
	leased := map[string]bool{} // by incarnation, as simStreams.label names it
	t := s.leases
	t.mu.Lock()
	for key, l := range t.leases {
		name := s.sts.ofLease(key, l.streamCreated)
		label := s.sts.names[0] // a single stream's first incarnation: the bare shard ID
		if i := strings.IndexByte(name, '/'); i >= 0 {
			label = name[:i]
		}
		if !strings.HasPrefix(name, "unknown") {
			leased[label] = true
		}
	}
	t.mu.Unlock()
	var out []string
	for _, name := range s.sts.names {
		if listed[name] && leased[s.sts.label(name, s.sts.gen(name))] {
			out = append(out, name)
		}
	}
	if len(out) == 0 {
		return ""
	}
	return out[rng.IntN(len(out))]
}

// twin starts a second process with the WorkerID of a live worker, beside
// it, and mostly frees leases for the two to race for while the first has
// not yet met the second's heartbeat (issue 21's schedule 5): another
// worker stops (it releases its leases, then has the group read the table
// at once), or a shard splits.
func (s *simRun) twin(rng *rand.Rand) {
	live := s.live()
	if len(live) == 0 {
		return
	}
	w := live[rng.IntN(len(live))]
	s.event("twin %s: a second process with WorkerID %s", w.name, w.id)
	s.startWorker(rng.Uint64(), w.id)
	others := slices.DeleteFunc(slices.Clone(live), func(o *simWorker) bool { return o.id == w.id || o.isFrozen() })
	switch x := rng.IntN(4); {
	case x < 3 && len(others) > 0:
		o := others[rng.IntN(len(others))]
		s.event("twin: stop %s, whose leases both race for", o.name)
		o.stop(false)
	case x < 3:
		s.split(rng)
	}
}

// simBegun is a worker's lease table as its Consumer sees it: its
// simTable, noting when the lease loop first reads the table, after start
// (which reads it consistently only). From then on a stream missing is
// waited for, not an error.
type simBegun struct {
	*simTable
	begun atomic.Bool
}

func (t *simBegun) list(ctx context.Context, consistent bool) (tableSnapshot, error) {
	if !consistent {
		t.begun.Store(true)
	}
	return t.simTable.list(ctx, consistent)
}

func (t *simBegun) group(ctx context.Context) (groupItem, error) {
	t.begun.Store(true)
	return t.simTable.group(ctx)
}

// waitBegun waits until every live worker's start is over.
func (s *simRun) waitBegun() {
	for range 2000 {
		if !slices.ContainsFunc(s.live(), func(w *simWorker) bool { return !w.begun.begun.Load() }) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.t.Errorf("a live worker's start not over after 20s")
}

// drainers ends the adversary's run for the quiet phase: it stops every
// live worker but those that drain the group, and starts one if none is
// left. Those that drain are the first one or two (as drawn) and, for each
// Streams list a live worker has, one with that list (so that a halted
// deploy's old and new workers drain side by side, as they ran). One that
// ran as a twin, which kcl may stop on its own, is replaced by a worker
// with a new WorkerID and its list. It returns the workers that drain, and
// notes the streams they list: those that owe records (simPut.Owed).
func (s *simRun) drainers(rng *rand.Rand) []*simWorker {
	live := s.live()
	keep := 1 + rng.IntN(2)
	kept := map[*simWorker]bool{}
	lists := map[string]bool{}
	for _, w := range live {
		if l := fmt.Sprint(w.streams); len(kept) < keep || !lists[l] {
			kept[w] = true
			lists[l] = true
		}
	}
	twinned := s.twinnedSet()
	for _, w := range live {
		if !kept[w] || twinned[w.name] {
			w.stop(true)
		}
	}
	for _, w := range live {
		if kept[w] && twinned[w.name] {
			s.event("quiet: %s ran as a twin; a worker with a new WorkerID and its Streams drains instead", w.name)
			s.wide.mu.Lock()
			s.wide.next = w.streams
			s.wide.mu.Unlock()
			s.startWorker(rng.Uint64(), "")
		}
	}
	if len(live) == 0 {
		s.startWorker(rng.Uint64(), "")
	}
	live = s.live()
	end := map[string]bool{}
	for _, w := range live {
		for _, name := range w.streams {
			end[name] = true
		}
	}
	s.wide.mu.Lock()
	s.wide.end = end
	s.wide.mu.Unlock()
	return live
}

// owes reports whether stream owes its records: some worker that drains
// lists it (or the quiet phase has not begun).
func (s *simRun) owes(stream string) bool {
	s.wide.mu.Lock()
	defer s.wide.mu.Unlock()
	return s.wide.end == nil || s.wide.end[stream]
}

// earlySlack is how long before a shard's first open at LATEST a record
// may have arrived and still be delivered by its first owner: kcl notes
// Kinesis's clock at that open by the response's Date, in whole seconds,
// less a second, and reopens there (shardReader.latestAt): up to 2 s
// before the open. The slack adds a little for the open being logged
// after Kinesis answered it (seed 226: a first subscription dropped 943 ms
// into a second reopened 1.94 s before it).
//
// Only a shard first opened at LATEST (or AT_TIMESTAMP of its LATEST
// lease's stored start, which its first owner must not do) has early
// records. A child whose parent had a lease is read from TRIM_HORIZON,
// whatever it holds: when the parent was first opened after the split
// (its LATEST lease waited for a take), the child's records from before
// that open are not early, though they are not owed (seed 277414919: a
// throttled table kept a new stream's LATEST leases untaken across a
// split).
const earlySlack = 2100 * time.Millisecond

// putsOf returns every record written to stream, each incarnation's after
// the one before, in write order, named as the log names them; since is
// when each shard's records became owed (owedSince).
func (s *simRun) putsOf(stream string, since func(shard string) time.Time) []simPut {
	owes := s.owes(stream)
	latest := s.opens.latestOpens()
	recs := s.kin.Records(stream)
	out := make([]simPut, 0, len(recs))
	for i, r := range recs {
		gen := s.sts.genOfPut(stream, i)
		shard := s.sts.qualifyGen(stream, gen, r.ShardID)
		p := simPut{
			Data: string(r.Data), Key: s.sts.keyOf(stream, gen, r.PartitionKey), Shard: shard, Seq: r.SequenceNumber, Arrival: r.Arrival,
			Trimmed: r.Trimmed, Reads: r.Reads, Owed: owes && (gen > 0 || r.Arrival.After(since(shard))),
		}
		if opened, ok := latest[shard]; ok {
			p.Early = s.cfg.position == Latest && !s.cfg.edges.skew && gen == 0 && r.Arrival.Before(opened.Add(-earlySlack))
		}
		users := s.kplUsers(stream, r.SequenceNumber) // a KPL aggregate: its user records (sim_edges_test.go)
		if users == nil {
			out = append(out, p)
		}
		p.Misplaced = users != nil && s.kplMisplaced(stream, r.SequenceNumber)
		for j, u := range users {
			p.Data, p.Key, p.Sub = u.data, s.sts.keyOf(stream, gen, u.key), int64(j)
			out = append(out, p)
		}
	}
	return out
}

// TestSimStreamsRecreate checks the simulation's names for a stream
// deleted and created again (simStreams.recreate) against the fake: each
// record, delivery and lease is named by its incarnation, though shard IDs,
// the ARN and the name repeat.
func TestSimStreamsRecreate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, names := range [][]string{{"s"}, {"s", "t"}} {
			kin := kinesisfake.New(kinesisfake.Options{})
			sts := newSimStreams(t, kin, 2, names...)
			put := func(data string) {
				if _, _, err := kin.PutRecord("s", "k", []byte(data)); err != nil {
					t.Fatal(err)
				}
			}
			put("old-1")
			put("old-2")
			first := time.Now()
			create, err := sts.recreate(kin, "s")
			if err != nil {
				t.Fatal(err)
			}
			if !sts.missing("s") {
				t.Errorf("%v: s not missing between its deletion and creation", names)
			}
			inc, err := create(1)
			if err != nil {
				t.Fatal(err)
			}
			if inc.gen != 1 || sts.missing("s") || time.Since(first) < time.Second {
				t.Errorf("%v: incarnation %+v, missing %v, created %v after the first", names, inc, sts.missing("s"), time.Since(first))
			}
			put("new-1")
			arn := kinesisfake.StreamARN("s")
			prefix := map[bool]string{true: "s/", false: ""}[len(names) > 1]
			for i, want := range []struct{ gen int }{{0}, {0}, {1}} {
				if g := sts.genOfPut("s", i); g != want.gen {
					t.Errorf("%v: record %d of generation %d, want %d", names, i, g, want.gen)
				}
			}
			for data, want := range map[string]string{"old-1": prefix + "shardId-000000000000", "new-1": "s@1/shardId-000000000000"} {
				if got := sts.ofDelivery(arn, "shardId-000000000000", data); got != want {
					t.Errorf("%v: delivery of %s named %q, want %q", names, data, got, want)
				}
			}
			key := func(created time.Time) (string, int64) {
				if len(names) > 1 {
					return kinesisfake.Account + ":s:" + strconv.FormatInt(created.Unix(), 10) + ":shardId-000000000000", 0
				}
				return "shardId-000000000000", created.UnixMilli()
			}
			for _, c := range []struct {
				created time.Time
				want    string
			}{{first, prefix + "shardId-000000000000"}, {inc.created, "s@1/shardId-000000000000"}} {
				if k, stamp := key(c.created); sts.ofLease(k, stamp) != c.want {
					t.Errorf("%v: lease %s (stamp %d) named %q, want %q", names, k, stamp, sts.ofLease(k, stamp), c.want)
				}
			}
			if got := sts.qualify("s", "shardId-000000000000"); got != "s@1/shardId-000000000000" {
				t.Errorf("%v: current shard named %q", names, got)
			}
		}
	})
}
