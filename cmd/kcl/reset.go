package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/kclgo/kcl/internal/leaseitem"
)

// resetCounterStep is how much reset raises a lease's counter. kcl's own
// writes raise it by 1, and a worker whose conditional write failed reads
// the lease back and takes a counter exactly 1 higher, with the checkpoint
// and owner it meant to write, for its own write whose reply was lost
// (checkpointOnce in lease.go). A reset to a sentinel the worker was about
// to write again (a fence write of a lease at TRIM_HORIZON that read
// nothing yet) would pass that test, and the worker would keep the lease
// and read on from memory, undoing the reset. Raising the counter by 2 makes
// the reset impossible to mistake for any write of a worker's; the Java KCL
// only ever compares counters for equality.
const resetCounterStep = 2

// target is where reset moves checkpoints.
type target struct {
	checkpoint string // TRIM_HORIZON, LATEST or AT_TIMESTAMP
	at         time.Time
}

// onKinesisClock returns t with a LATEST target's stored start no later
// than kinesisNow (a Date Kinesis gave; zero: none) less a minute. The
// start is what a worker opens AT_TIMESTAMP of when the lease moves before
// its first ack, so on a host whose clock runs ahead of Kinesis's it would
// skip what was written between the first open and it.
func (t target) onKinesisClock(kinesisNow time.Time) target {
	if t.checkpoint == leaseitem.Latest && !kinesisNow.IsZero() {
		t.at = minTime(t.at, kinesisNow.Add(-latestSkew))
	}
	return t
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func (t target) String() string {
	if t.checkpoint == leaseitem.AtTimestamp {
		return leaseitem.AtTimestamp + " " + t.at.UTC().Format(time.RFC3339Nano)
	}
	return t.checkpoint
}

// startAt is the kclStartTimestamp the reset writes: the time for
// AT_TIMESTAMP, and the reset's own time less latestSkew for LATEST, so
// that the shard is read from the reset on, not from whenever a worker
// next takes it; none (the attribute removed) for TRIM_HORIZON.
func (t target) startAt() int64 {
	if t.checkpoint != leaseitem.TrimHorizon && !t.at.IsZero() {
		return t.at.UnixMilli()
	}
	return 0
}

// latestSkew is how far before its own clock reset -to latest stores the
// start, as kcl's workers do for a LATEST lease they take first.
const latestSkew = time.Minute

// parseTarget reads -to: trim-horizon, latest or an RFC 3339 time no later
// than now.
func parseTarget(s string, now time.Time) (target, error) {
	switch strings.ToLower(s) {
	case "":
		return target{}, usagef("-to is required: trim-horizon, latest or an RFC 3339 time")
	case "trim-horizon", "trim_horizon":
		return target{checkpoint: leaseitem.TrimHorizon}, nil
	case "latest":
		// A minute before now, as a kcl worker stores its own start;
		// onKinesisClock then keeps it from running ahead of Kinesis's.
		return target{checkpoint: leaseitem.Latest, at: now.Add(-latestSkew)}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return target{}, usagef("-to %q: want trim-horizon, latest or an RFC 3339 time such as 2026-11-27T08:00:00Z", s)
	}
	if t.After(now) {
		return target{}, usagef("-to %s is in the future", s)
	}
	if t.UnixMilli() <= 0 {
		return target{}, usagef("-to %s is not after 1970", s)
	}
	return target{checkpoint: leaseitem.AtTimestamp, at: t}, nil
}

// resetRow is one lease reset considered.
type resetRow struct {
	shard, owner string
	key          string // leaseKey: the item written
	from         string // checkpoint as read, with sub-sequence and kclStartTimestamp
	to           string
	result       string
	counter      int64 // leaseCounter as read: the write's condition
	unchanged    bool
	// create: the shard has no lease, though a leased shard descends from
	// it (the Java KCL deleted its lease once its children started): reset
	// makes it a lease at the target, with parents and stamp, so that it is
	// read again before its children.
	create  bool
	parents []string // lease keys, for create
	stamp   int64    // kclStreamCreated, for create: its children's
}

// resetReport is what reset prints.
type resetReport struct {
	table, stream string
	to            target
	dryRun        bool
	rows          []resetRow
	notes         []string
	live          []string // workers alive during the watch (only with -force)
	leftAlone     []string
}

func reset(ctx context.Context, args []string, e *env) error {
	fs := flagSet("reset", "-app APP -stream STREAM -to trim-horizon|latest|RFC3339-TIME [-shard ID]... [-table T] [-lease D] [-dry-run] [-force]", e)
	tableName := tableFlags(fs)
	stream := fs.String("stream", "", "the Kinesis `stream` the group reads: its name, or its ARN (a stream of another account)")
	to := fs.String("to", "", "where the checkpoints go: trim-horizon (the oldest record), latest (skip to the tip), or an RFC 3339 `time` (the first record at or after it)")
	var only stringList
	fs.Var(&only, "shard", "reset only shard `ID` (repeatable; default: every shard of the stream)")
	leaseDur := leaseFlag(fs)
	dryRun := fs.Bool("dry-run", false, "print every change; write nothing")
	force := fs.Bool("force", false, "reset even while workers of the group are alive")
	if err := parse(fs, args); err != nil {
		return err
	}
	table, err := tableName()
	if err != nil {
		return err
	}
	if *stream == "" {
		return usagef("-stream is required")
	}
	tgt, err := parseTarget(*to, e.now())
	if err != nil {
		return err
	}
	db, kin, err := e.clients(ctx)
	if err != nil {
		return err
	}
	shards, kinesisNow, err := listShards(ctx, kin, *stream)
	if err != nil {
		return err
	}
	tgt = tgt.onKinesisClock(kinesisNow)
	w, err := observe(ctx, e, db, table, leaseDur, "to tell live workers from dead ones", false)
	if err != nil {
		return err
	}
	live := w.live()
	if len(live) > 0 && !*force {
		return fmt.Errorf("lease table %q: workers of the group are alive: %s; stop them (or wait until their heartbeats stop), or pass -force", table, describeWorkers(live, w))
	}
	mine, others, streamID, err := leasesOf(ctx, kin, *stream, w.after)
	if err != nil {
		return err
	}
	rep, err := planReset(*stream, table, tgt, shards, streamLeases{streamID: streamID, byShard: mine, others: others}, w.after.unread, only)
	if err != nil {
		return err
	}
	rep.dryRun = *dryRun
	if len(live) > 0 {
		rep.live = live
	}
	if !*dryRun {
		for i := range rep.rows {
			row := &rep.rows[i]
			if row.unchanged {
				continue
			}
			var err error
			if row.create {
				err = writeCreate(ctx, db, table, *row, tgt)
			} else {
				err = writeReset(ctx, db, table, row.key, row.counter, tgt)
			}
			switch {
			case row.create && err == nil:
				row.result = "re-read"
				continue
			case isConditionFailed(err):
				row.result = "left alone: written since it was read (a worker wrote it)"
				rep.leftAlone = append(rep.leftAlone, row.shard)
			case err != nil:
				row.result = "failed (below)"
				for j := i + 1; j < len(rep.rows); j++ {
					if !rep.rows[j].unchanged {
						rep.rows[j].result = "not written"
					}
				}
				_ = rep.print(e.stdout) // what was written before the error
				return fmt.Errorf("lease table %q: resetting shard %q: %w", table, row.shard, err)
			default:
				row.result = "reset"
			}
		}
		bumpGroup(ctx, db, table)
	}
	if err := rep.print(e.stdout); err != nil {
		return err
	}
	if len(rep.leftAlone) > 0 {
		return fmt.Errorf("lease table %q: %d shards left alone, changed since they were read: %s; run reset again", table, len(rep.leftAlone), strings.Join(rep.leftAlone, ", "))
	}
	return nil
}

// describeWorkers names workers with the leases each holds.
func describeWorkers(ids []string, w watch) string {
	parts := make([]string, 0, len(ids))
	for _, id := range ids {
		n := 0
		for _, l := range w.after.leases {
			if l.Owner == id {
				n++
			}
		}
		parts = append(parts, fmt.Sprintf("%s (%d leases)", id, n))
	}
	return strings.Join(parts, ", ")
}

// planReset decides what reset changes: every lease of a shard the stream
// lists, or those of -shard. It is pure. With latest, ended shards stay
// ended (nothing new will arrive in them). An ended shard re-read while a
// child goes on would break per-key order: resetting one without its
// children is refused. A lease already at the target is left unchanged
// unless it has an owner (or a Java hand-off's old owner): then it is
// written all the same, so that its counter moves and the owner, alive
// after all (frozen past the watch, or with -force), fails its next write
// and drops what it acked in memory instead of checkpointing past the
// target. A listed shard whose lease item cannot be
// read (unread, by key) is refused, naming the item.
func planReset(stream, table string, tgt target, shards []shardInfo, sl streamLeases, unread map[string]string, only []string) (resetReport, error) {
	rep := resetReport{table: table, stream: stream, to: tgt}
	leases := sl.byShard
	listed := map[string]bool{}
	for _, s := range shards {
		listed[s.id] = true
	}
	unreadable := func(id string) error {
		key := leaseitem.Key(sl.streamID, id)
		if why, ok := unread[key]; ok {
			return fmt.Errorf("lease table %q: the lease item %q of shard %q is not understood (%s): fix or delete it by hand, then reset again", table, key, id, why)
		}
		return nil
	}
	selected := map[string]bool{}
	if len(only) > 0 {
		for _, id := range only {
			if !listed[id] {
				return rep, fmt.Errorf("stream %q does not list shard %q", stream, id)
			}
			if _, ok := leases[id]; !ok {
				if err := unreadable(id); err != nil {
					return rep, err
				}
				return rep, fmt.Errorf("lease table %q has no lease for shard %q yet (a worker's shard sync creates it)", table, id)
			}
			selected[id] = true
		}
	} else {
		var unleased, unlisted []string
		for _, s := range shards {
			if _, ok := leases[s.id]; ok {
				selected[s.id] = true
				continue
			}
			if err := unreadable(s.id); err != nil {
				return rep, err
			}
			unleased = append(unleased, s.id)
		}
		for _, id := range slices.Sorted(maps.Keys(leases)) {
			if !listed[id] {
				unlisted = append(unlisted, id)
			}
		}
		unleased = slices.DeleteFunc(unleased, func(id string) bool { return ancestorOfLeased(id, shards, leases) })
		if len(unleased) > 0 {
			rep.notes = append(rep.notes, fmt.Sprintf("no lease yet, so not reset (they start at the group's InitialPosition): %s", strings.Join(unleased, ", ")))
		}
		if len(unlisted) > 0 {
			rep.notes = append(rep.notes, fmt.Sprintf("left alone, not in the stream: %s", strings.Join(unlisted, ", ")))
		}
	}
	if len(sl.others) > 0 {
		rep.notes = append(rep.notes, fmt.Sprintf("left alone: %d leases of other streams, or keyed in the other layout (kcl status lists them)", len(sl.others)))
	}
	if len(selected) == 0 {
		return rep, fmt.Errorf("lease table %q has no lease for any shard of stream %q: nothing to reset", table, stream)
	}
	children := map[string][]string{}
	for _, s := range shards {
		for _, p := range s.parents {
			children[p] = append(children[p], s.id)
		}
	}
	if tgt.checkpoint == leaseitem.Latest {
		// A worker's shard sync makes no lease for a listed shard of which
		// a lease moved to LATEST descends (skipsAncestors in the kcl
		// package): what is left of these is skipped, as asked.
		var skipped []string
		for _, row := range deletedAncestors(tgt, shards, sl, selected) {
			skipped = append(skipped, row.shard)
		}
		if len(skipped) > 0 {
			rep.notes = append(rep.notes, fmt.Sprintf("read to their end and their leases deleted, not read again: %s", strings.Join(skipped, ", ")))
		}
	} else {
		for _, row := range deletedAncestors(tgt, shards, sl, selected) {
			for _, c := range children[row.shard] {
				if _, leased := leases[c]; leased && !selected[c] {
					return rep, fmt.Errorf("shard %q, read to its end and its lease deleted, would be read again and its child %q would not be reset: re-reading a parent while its child goes on breaks per-key order; add -shard %s, or reset every shard", row.shard, c, c)
				}
			}
			rep.rows = append(rep.rows, row)
		}
	}
	for _, l := range leases {
		for _, key := range l.Parents {
			_, p := leaseitem.SplitKey(key)
			if !slices.Contains(children[p], l.ShardID()) {
				children[p] = append(children[p], l.ShardID())
			}
		}
	}
	for _, s := range shards {
		if !selected[s.id] {
			continue
		}
		l := leases[s.id]
		if l.Checkpoint == leaseitem.ShardEnd && tgt.checkpoint == leaseitem.Latest {
			continue
		}
		if l.Checkpoint == leaseitem.ShardEnd {
			for _, c := range children[s.id] {
				if _, leased := leases[c]; leased && !selected[c] {
					return rep, fmt.Errorf("shard %q is ended and its child %q would not be reset: re-reading a parent while its child goes on breaks per-key order; add -shard %s, or reset every shard", s.id, c, c)
				}
			}
		}
		row := resetRow{shard: s.id, key: l.Key, owner: l.Owner, from: describeCheckpoint(l), to: tgt.String(), counter: l.Counter}
		row.unchanged = l.Checkpoint == tgt.checkpoint && l.CheckpointSub == 0 && l.StartAt == tgt.startAt() && l.Reader() == ""
		row.result = "would reset"
		if row.unchanged {
			row.result = "unchanged"
		}
		rep.rows = append(rep.rows, row)
	}
	if tgt.checkpoint == leaseitem.Latest {
		var ended []string
		for _, s := range shards {
			if selected[s.id] && leases[s.id].Checkpoint == leaseitem.ShardEnd {
				ended = append(ended, s.id)
			}
		}
		if len(ended) > 0 {
			rep.notes = append(rep.notes, fmt.Sprintf("ended shards stay ended (nothing new arrives in them): %s", strings.Join(ended, ", ")))
		}
	}
	return rep, nil
}

// deletedAncestors returns the rows that make a lease, at tgt, for each
// listed shard without one from which a selected leased shard descends:
// the Java KCL deleted its lease once its children started. Their children
// name them as parents, so they are read again first, and per-key order
// holds. Parents come before their children.
func deletedAncestors(tgt target, shards []shardInfo, sl streamLeases, selected map[string]bool) []resetRow {
	byID := map[string]shardInfo{}
	for _, s := range shards {
		byID[s.id] = s
	}
	need := map[string]int64{} // shard -> the stamp of a leased descendant
	var walk func(id string, stamp int64)
	walk = func(id string, stamp int64) {
		for _, p := range byID[id].parents {
			if _, leased := sl.byShard[p]; leased {
				continue
			}
			if _, listed := byID[p]; !listed {
				continue // trimmed: nothing left to read
			}
			if _, seen := need[p]; !seen {
				need[p] = stamp
				walk(p, stamp)
			}
		}
	}
	for _, s := range shards {
		if l, ok := sl.byShard[s.id]; ok && selected[s.id] {
			walk(s.id, l.StreamCreated)
		}
	}
	var rows []resetRow
	for _, s := range shards { // the listing's order: parents first
		stamp, ok := need[s.id]
		if !ok {
			continue
		}
		row := resetRow{shard: s.id, key: leaseitem.Key(sl.streamID, s.id), from: "no lease (read to its end; its lease deleted)", to: tgt.String(),
			result: "would re-read", create: true, stamp: stamp}
		for _, p := range s.parents {
			row.parents = append(row.parents, leaseitem.Key(sl.streamID, p))
		}
		rows = append(rows, row)
	}
	return rows
}

// ancestorOfLeased reports whether a leased shard of the listing descends
// from shard id.
func ancestorOfLeased(id string, shards []shardInfo, leases map[string]leaseitem.Lease) bool {
	for _, s := range shards {
		if _, ok := leases[s.id]; ok && descendsFrom(s.id, id, shards) {
			return true
		}
	}
	return false
}

// descendsFrom reports whether shard child descends from shard ancestor in
// the listing.
func descendsFrom(child, ancestor string, shards []shardInfo) bool {
	parents := map[string][]string{}
	for _, s := range shards {
		parents[s.id] = s.parents
	}
	seen := map[string]bool{}
	stack := slices.Clone(parents[child])
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if p == ancestor {
			return true
		}
		if !seen[p] {
			seen[p] = true
			stack = append(stack, parents[p]...)
		}
	}
	return false
}

// writeCreate makes the lease of row, a shard whose lease was deleted, at
// tgt, unless one exists meanwhile.
func writeCreate(ctx context.Context, db DynamoDB, table string, row resetRow, tgt target) error {
	l := leaseitem.Lease{Key: row.key, Counter: 1, Checkpoint: tgt.checkpoint, StartAt: tgt.startAt(), Parents: row.parents, StreamCreated: row.stamp}
	_, err := db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: aws.String(table), Item: leaseitem.NewItem(l, false), ConditionExpression: aws.String("attribute_not_exists(" + leaseitem.AttrLeaseKey + ")"),
	})
	return err
}

// describeCheckpoint shows a lease's checkpoint as reset reads it.
func describeCheckpoint(l leaseitem.Lease) string {
	s := showCheckpoint(l.Checkpoint, l.StartAt)
	if l.CheckpointSub != 0 {
		s += " sub " + strconv.FormatInt(l.CheckpointSub, 10)
	}
	return s
}

// writeReset moves one lease's checkpoint to tgt, conditional on the
// counter read: checkpoint and sub-sequence, kclStartTimestamp (set for a
// time, removed otherwise: a worker then opens the shard at the sentinel
// itself), ownerSwitchesSinceCheckpoint 0 and the Java KCL's pending
// checkpoint removed, as a checkpoint write does; the owner is left as it
// is. The counter goes up by resetCounterStep.
func writeReset(ctx context.Context, db DynamoDB, table, key string, counter int64, tgt target) error {
	values := map[string]types.AttributeValue{
		":c": leaseitem.Number(counter), ":n": leaseitem.Number(counter + resetCounterStep),
		":cp": &types.AttributeValueMemberS{Value: tgt.checkpoint}, ":zero": leaseitem.Number(0),
	}
	update := "SET " + leaseitem.AttrCheckpoint + " = :cp, " + leaseitem.AttrCheckpointSub + " = :zero, " +
		leaseitem.AttrOwnerSwitches + " = :zero, " + leaseitem.AttrCounter + " = :n"
	remove := []string{leaseitem.AttrPending, leaseitem.AttrPendingSub, leaseitem.AttrPendingState}
	if start := tgt.startAt(); start > 0 {
		update += ", " + leaseitem.AttrStartAt + " = :start"
		values[":start"] = leaseitem.Number(start)
	} else {
		remove = append(remove, leaseitem.AttrStartAt)
	}
	update += " REMOVE " + strings.Join(remove, ", ")
	_, err := db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(table),
		Key:                       leaseitem.ItemKey(key),
		ConditionExpression:       aws.String(leaseitem.AttrCounter + " = :c"),
		UpdateExpression:          aws.String(update),
		ExpressionAttributeValues: values,
	})
	return err
}

// liveWorkerEffect says what a live kcl worker does about a reset of a lease
// it holds (checkpointOnce and assess in the kcl package), one line each.
var liveWorkerEffect = []string{
	"A live worker keeps reading a reset shard from where it is in memory until its next write",
	"of that lease (a checkpoint after an ack, a hand-off, its shutdown). That write fails its",
	"counter condition, the worker drops the lease, and the next owner (often the same worker,",
	"at its next read of the table) opens the shard at the reset checkpoint. Records delivered",
	"meanwhile are delivered again; an idle shard stays where it is until such a write.",
}

// print writes the reset as a table.
func (r resetReport) print(out io.Writer) error {
	w := &errWriter{w: out}
	verb := "reset"
	if r.dryRun {
		verb = "dry run (nothing written): reset"
	}
	fmt.Fprintf(w, "%s of lease table %s, stream %s, to %s\n\n", verb, r.table, r.stream, r.to)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SHARD\tOWNER\tFROM\tTO\tRESULT")
	done, unchanged := 0, 0
	for _, row := range r.rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", row.shard, dash(row.owner), row.from, row.to, row.result)
		switch row.result {
		case "reset", "would reset", "re-read", "would re-read":
			done++
		case "unchanged":
			unchanged++
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if r.dryRun {
		fmt.Fprintf(w, "%d would be reset, %d unchanged\n", done, unchanged)
	} else {
		fmt.Fprintf(w, "%d reset, %d unchanged, %d left alone\n", done, unchanged, len(r.leftAlone))
	}
	for _, n := range r.notes {
		fmt.Fprintln(w, "note: "+n)
	}
	if len(r.live) > 0 {
		fmt.Fprintf(w, "warning: reset with -force while workers were alive: %s\n", strings.Join(r.live, ", "))
		for _, line := range liveWorkerEffect {
			fmt.Fprintln(w, "  "+line)
		}
	}
	return w.err
}
