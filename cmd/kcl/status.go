package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"golang.org/x/sync/errgroup"

	"github.com/kclgo/kcl/internal/leaseitem"
)

// statusReport is what status prints. Its JSON encoding is the documented
// shape, exactly; fields tagged "-" are for the human output only.
type statusReport struct {
	Stream   string      `json:"stream"`
	Table    string      `json:"table"`
	Shards   []shardRow  `json:"shards"`
	Workers  []workerRow `json:"workers"`
	Problems []string    `json:"problems"`

	Watched time.Duration `json:"-"`
	Lag     bool          `json:"-"`
	Notes   []string      `json:"-"` // what is neither a shard, a worker nor a problem
}

type shardRow struct {
	Shard        string   `json:"shard"`
	State        string   `json:"state"` // open, closed (no record will be added) or ended (checkpointed SHARD_END)
	Owner        string   `json:"owner"`
	OwnerAlive   bool     `json:"owner_alive"`
	Checkpoint   string   `json:"checkpoint"` // "" when the shard has no lease yet
	SubSequence  int64    `json:"sub_sequence"`
	Parents      []string `json:"parents"`
	MillisBehind *int64   `json:"millis_behind,omitempty"` // -lag only

	leased   bool
	startAt  int64  // kclStartTimestamp, Unix ms
	handoff  string // handoffTo
	javaFrom string // checkpointOwner
	lagFrom  ktypes.ShardIteratorType
	lagAt    string    // sequence number, for AFTER_SEQUENCE_NUMBER
	lagStart time.Time // for AT_TIMESTAMP
}

type workerRow struct {
	ID     string `json:"id"`
	Alive  bool   `json:"alive"`
	Leases int    `json:"leases"`

	stopping bool
}

func status(ctx context.Context, args []string, e *env) error {
	fs := flagSet("status", "-app APP -stream STREAM [-table T] [-lease D] [-lag] [-json]", e)
	tableName := tableFlags(fs)
	stream := fs.String("stream", "", "the Kinesis `stream` the group reads: its name, or its ARN (a stream of another account)")
	leaseDur := leaseFlag(fs)
	lag := fs.Bool("lag", false, "also ask Kinesis how far each shard's checkpoint is behind the tip (one GetShardIterator and one GetRecords per shard)")
	asJSON := fs.Bool("json", false, "print one JSON document instead of tables")
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
	db, kin, err := e.clients(ctx)
	if err != nil {
		return err
	}
	shards, _, err := listShards(ctx, kin, *stream)
	if err != nil {
		return err
	}
	w, err := observe(ctx, e, db, table, leaseDur, "to tell live workers from dead ones", *asJSON)
	if err != nil {
		return err
	}
	mine, others, streamID, err := leasesOf(ctx, kin, *stream, w.after)
	if err != nil {
		return err
	}
	_, created, err := describeStream(ctx, kin, *stream)
	if err != nil {
		return err
	}
	rep := buildStatus(*stream, table, shards, w, streamLeases{streamID: streamID, created: created, byShard: mine, others: others})
	rep.Notes = append(rep.Notes, protectionNotes(ctx, db, table)...)
	if *lag {
		problems, err := measureLag(ctx, kin, *stream, rep.Shards)
		if err != nil {
			return fmt.Errorf("stream %q: measuring lag: %w", *stream, err)
		}
		rep.Problems = append(rep.Problems, problems...)
		rep.Lag = true
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return rep.print(e.stdout)
}

// shardInfo is what ListShards says of a shard.
type shardInfo struct {
	id      string
	parents []string
	closed  bool // has an ending sequence number
	// first and last are its hash-key range; nil when not known.
	first, last *big.Int
}

// listShards returns every shard the stream lists, in its order, and the
// Date of Kinesis's first answer (zero if it gave none): Kinesis's clock,
// rounded down to the second, never ahead of it.
func listShards(ctx context.Context, kin Kinesis, stream string) ([]shardInfo, time.Time, error) {
	var shards []shardInfo
	var date time.Time
	in := &kinesis.ListShardsInput{}
	in.StreamName, in.StreamARN = streamInput(stream)
	for {
		out, err := kin.ListShards(ctx, in)
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("stream %q: ListShards: %w", stream, err)
		}
		if d, ok := awsmiddleware.GetServerTime(out.ResultMetadata); ok && date.IsZero() {
			date = d
		}
		for _, s := range out.Shards {
			info := shardInfo{id: aws.ToString(s.ShardId)}
			for _, p := range []*string{s.ParentShardId, s.AdjacentParentShardId} {
				if aws.ToString(p) != "" {
					info.parents = append(info.parents, *p)
				}
			}
			info.closed = s.SequenceNumberRange != nil && s.SequenceNumberRange.EndingSequenceNumber != nil
			if r := s.HashKeyRange; r != nil {
				info.first, _ = new(big.Int).SetString(aws.ToString(r.StartingHashKey), 10)
				info.last, _ = new(big.Int).SetString(aws.ToString(r.EndingHashKey), 10)
			}
			shards = append(shards, info)
		}
		if out.NextToken == nil {
			return shards, date, nil
		}
		in = &kinesis.ListShardsInput{NextToken: out.NextToken}
	}
}

// streamLeases are the leases of one stream in the table as last read.
type streamLeases struct {
	streamID string                     // account:stream:creationEpoch in a multi-stream table; "" otherwise
	created  time.Time                  // when the stream was created (zero: not known)
	byShard  map[string]leaseitem.Lease // by bare shard ID
	others   []leaseitem.Lease          // the table's other leases, in key order
}

// buildStatus puts the stream's shards, its leases, the table as last read
// and the liveness watch together. It is pure.
func buildStatus(stream, table string, shards []shardInfo, w watch, sl streamLeases) statusReport {
	rep := statusReport{Stream: stream, Table: table, Shards: []shardRow{}, Workers: []workerRow{}, Problems: []string{}, Watched: w.watched}
	alive := map[string]bool{}
	for _, id := range w.live() {
		alive[id] = true
	}
	listed := map[string]bool{}
	var unleased []string
	for _, s := range shards {
		listed[s.id] = true
		row := shardRow{Shard: s.id, State: "open", Parents: s.parents}
		if s.closed {
			row.State = "closed"
		}
		if row.Parents == nil {
			row.Parents = []string{}
		}
		l, ok := sl.byShard[s.id]
		if !ok {
			if _, unread := w.after.unread[leaseitem.Key(sl.streamID, s.id)]; !unread { // else a problem, below
				unleased = append(unleased, s.id)
			}
			rep.Shards = append(rep.Shards, row)
			continue
		}
		row.leased, row.startAt = true, l.StartAt
		row.Owner, row.OwnerAlive, row.handoff, row.javaFrom = l.Owner, l.Reader() != "" && alive[l.Reader()], l.HandoffTo, l.CheckpointOwner
		row.Checkpoint, row.SubSequence = l.Checkpoint, l.CheckpointSub
		if l.Checkpoint == leaseitem.ShardEnd {
			row.State = "ended"
		}
		row.lagFrom, row.lagAt, row.lagStart = openAt(l)
		rep.Shards = append(rep.Shards, row)
	}
	for _, id := range w.workers() {
		row := workerRow{ID: id, Alive: alive[id], stopping: w.after.beats[id].Stopping}
		for _, l := range w.after.leases {
			if l.Owner == id {
				row.Leases++
			}
		}
		rep.Workers = append(rep.Workers, row)
	}
	var gone []string
	for _, l := range sl.byShard {
		switch {
		case listed[l.ShardID()]:
		case l.Checkpoint == leaseitem.ShardEnd:
			gone = append(gone, l.ShardID())
		default:
			rep.Problems = append(rep.Problems, fmt.Sprintf("lease %q is for a shard stream %s does not list (past retention, or a lease of another stream), at checkpoint %s; a kcl worker that takes it finds it gone and ends it", l.Key, stream, l.Checkpoint))
		}
	}
	slices.Sort(gone)
	slices.Sort(rep.Problems)
	otherStreams, earlier := map[string]int{}, map[string]int{}
	prefix := sl.streamID[:strings.LastIndexByte(sl.streamID, ':')+1] // account:stream: of a multi-stream key
	for _, l := range sl.others {
		switch {
		case prefix != "" && strings.HasPrefix(l.StreamID(), prefix) && !strings.Contains(l.StreamID()[len(prefix):], ":"):
			earlier[l.StreamID()]++
		case sl.streamID == "":
			rep.Problems = append(rep.Problems, fmt.Sprintf("lease %q has a multi-stream key (account:stream:creationEpoch:shardId, Options.Streams) in a single-stream table; kcl workers refuse a table with both layouts", l.Key))
		case l.StreamID() == "":
			rep.Problems = append(rep.Problems, fmt.Sprintf("lease %q has a single-stream key in a multi-stream table (Options.Streams: keys account:stream:creationEpoch:shardId); kcl workers refuse a table with both layouts", l.Key))
		default:
			otherStreams[l.StreamID()]++
		}
	}
	rep.Problems = append(rep.Problems, w.after.unknown...)
	if len(unleased) > 0 {
		rep.Notes = append(rep.Notes, "no lease yet (a worker's next shard sync creates it): "+strings.Join(unleased, ", "))
	}
	if len(gone) > 0 {
		rep.Notes = append(rep.Notes, "ended leases of shards no longer in the stream (as expected after retention): "+strings.Join(gone, ", "))
	}
	if waiting := awaitingDeletion(shards, sl); len(waiting) > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("ended leases waiting for deletion (every child started; kcl deletes them after a delay): %d: %s", len(waiting), strings.Join(waiting, ", ")))
	}
	if sl.streamID != "" {
		rep.Notes = append(rep.Notes, "multi-stream table (Options.Streams): stream "+stream+" is "+sl.streamID)
	}
	rep.Notes = append(rep.Notes, recreatedNotes(stream, sl, earlier)...)
	if len(otherStreams) > 0 {
		var parts []string
		for _, id := range slices.Sorted(maps.Keys(otherStreams)) {
			parts = append(parts, fmt.Sprintf("%s (%d)", id, otherStreams[id]))
		}
		rep.Notes = append(rep.Notes, "leases of other streams of the group (or of an earlier stream of the same name), not shown: "+strings.Join(parts, ", "))
	}
	if len(w.after.kcl) > 0 {
		rep.Notes = append(rep.Notes, "other kcl items: "+strings.Join(w.after.kcl, ", "))
	}
	if len(w.after.java) > 0 {
		rep.Notes = append(rep.Notes, "Java KCL items that are not leases: "+strings.Join(w.after.java, ", "))
	}
	return rep
}

// awaitingDeletion returns the shards (sorted) whose leases kcl ended and
// deletes once a delay passed, as the workers judge it (the package's
// cleanup.go, endedLeases):
//   - checkpoint SHARD_END, no owner, no hand-off asked (kcl's or the Java
//     KCL's), and kcl's writer mark;
//   - in a single-stream table, the stream's creation time, known (else
//     nothing is deleted): a lease of an earlier stream of the name stays;
//   - every child started: each lease naming the shard as a parent, of the
//     same stream (creation time), and each listed child, whose lease must
//     name it;
//   - a listed shard's listed children cover its hash-key range: a
//     listing caught mid-reshard shows only some, and a listed shard
//     without children is not ready.
func awaitingDeletion(shards []shardInfo, sl streamLeases) []string {
	// The leases of the whole table naming a lease key as a parent, the
	// key matched whole, as the workers match it.
	children := map[string][]leaseitem.Lease{}
	for _, ls := range [][]leaseitem.Lease{slices.Collect(maps.Values(sl.byShard)), sl.others} {
		for _, l := range ls {
			for _, p := range l.Parents {
				children[p] = append(children[p], l)
			}
		}
	}
	listed := map[string]bool{}
	listedKids := map[string][]string{}
	for _, s := range shards {
		listed[s.id] = true
		for _, p := range s.parents {
			listedKids[p] = append(listedKids[p], s.id)
		}
	}
	covered := coveredByChildren(shards)
	single := sl.streamID == ""
	var out []string
	for shard, l := range sl.byShard {
		if l.Checkpoint != leaseitem.ShardEnd || l.Owner != "" || l.Writer.Worker == "" || l.CheckpointOwner != "" || l.HandoffTo != "" {
			continue
		}
		if single && (sl.created.IsZero() || l.StreamCreated != sl.created.UnixMilli()) {
			continue
		}
		if listed[shard] && !covered[shard] {
			continue
		}
		leased := map[string]bool{}
		ready := true
		for _, kl := range children[l.Key] {
			_, k := leaseitem.SplitKey(kl.Key)
			leased[k] = true
			ready = ready && started(kl) && kl.StreamCreated == l.StreamCreated
		}
		for _, k := range listedKids[shard] {
			ready = ready && leased[k]
		}
		if ready {
			out = append(out, shard)
		}
	}
	slices.Sort(out)
	return out
}

// coveredByChildren returns the listed shards whose listed children (those
// with a known range) cover their hash-key range, as the package's
// coveredByChildren (shardsync.go) judges it.
func coveredByChildren(shards []shardInfo) map[string]bool {
	children := map[string][]shardInfo{}
	for _, s := range shards {
		for _, p := range s.parents {
			if s.first != nil && s.last != nil {
				children[p] = append(children[p], s)
			}
		}
	}
	covered := map[string]bool{}
	for _, s := range shards {
		kids := children[s.id]
		if s.first == nil || s.last == nil || len(kids) == 0 {
			continue
		}
		slices.SortFunc(kids, func(a, b shardInfo) int { return a.first.Cmp(b.first) })
		next := new(big.Int).Set(s.first) // the first hash key not yet covered
		for _, k := range kids {
			if k.first.Cmp(next) > 0 {
				break // a gap
			}
			if k.last.Cmp(next) >= 0 {
				next.Add(k.last, big.NewInt(1))
			}
		}
		covered[s.id] = next.Cmp(s.last) > 0
	}
	return covered
}

// started reports whether a lease's checkpoint moved past where its shard
// began: a sequence number, or SHARD_END written by a reader (a lease made
// ended is never written: its counter is 0).
func started(l leaseitem.Lease) bool {
	switch l.Checkpoint {
	case leaseitem.TrimHorizon, leaseitem.Latest, leaseitem.AtTimestamp:
		return false
	case leaseitem.ShardEnd:
		return l.Counter > 0
	}
	return true
}

// recreatedNotes say what the table holds of earlier streams of this name
// (deleted and created again): in a multi-stream table, the leases of
// other identifiers of the stream's account and name (earlier, with their
// counts), left alone; in a single-stream one, leases stamped with an
// earlier creation time, which the next shard sync replaces.
func recreatedNotes(stream string, sl streamLeases, earlier map[string]int) []string {
	var notes []string
	for _, id := range slices.Sorted(maps.Keys(earlier)) {
		notes = append(notes, fmt.Sprintf("stream %s was created again (now %s, created %s): %d leases of %s, an earlier stream of this name, are left alone; the workers read the new one from its first record",
			stream, sl.streamID, sl.created.UTC().Format(time.RFC3339), earlier[id], id))
	}
	if sl.streamID != "" || sl.created.IsZero() {
		return notes
	}
	var old []string
	created := sl.created.UnixMilli()
	for _, l := range sl.byShard {
		if l.StreamCreated != 0 && l.StreamCreated < created {
			old = append(old, fmt.Sprintf("%s (stream created %s)", l.Key, time.UnixMilli(l.StreamCreated).UTC().Format(time.RFC3339)))
		}
	}
	if len(old) > 0 {
		slices.Sort(old)
		notes = append(notes, fmt.Sprintf("stream %s was created again (created %s): leases of the earlier stream of this name, which a worker's next shard sync replaces by the new stream's at TRIM_HORIZON: %s",
			stream, sl.created.UTC().Format(time.RFC3339), strings.Join(old, ", ")))
	}
	return notes
}

// openAt is where a worker taking l opens its shard, as kcl's
// startingPosition decides (for AT_TIMESTAMP without kclStartTimestamp, kcl
// uses the worker's InitialPosition, which the table does not hold: the
// oldest record, TRIM_HORIZON, is what kcl falls back to).
func openAt(l leaseitem.Lease) (ktypes.ShardIteratorType, string, time.Time) {
	switch {
	case leaseitem.IsSequenceNumber(l.Checkpoint):
		return ktypes.ShardIteratorTypeAfterSequenceNumber, l.Checkpoint, time.Time{}
	case l.Checkpoint == leaseitem.TrimHorizon:
		return ktypes.ShardIteratorTypeTrimHorizon, "", time.Time{}
	case (l.Checkpoint == leaseitem.Latest || l.Checkpoint == leaseitem.AtTimestamp) && l.StartAt > 0:
		return ktypes.ShardIteratorTypeAtTimestamp, "", time.UnixMilli(l.StartAt)
	case l.Checkpoint == leaseitem.Latest:
		return ktypes.ShardIteratorTypeLatest, "", time.Time{}
	case l.Checkpoint == leaseitem.AtTimestamp:
		return ktypes.ShardIteratorTypeTrimHorizon, "", time.Time{}
	}
	return "", "", time.Time{} // SHARD_END: nothing left to read
}

// measureLag fills MillisBehind of every leased shard: 0 for an ended one,
// otherwise MillisBehindLatest of one GetRecords (Limit 1) where its next
// owner would open it. Up to 8 shards are asked at a time. A shard whose
// calls fail keeps no figure and is returned as a problem naming it; the
// error is only ctx's.
func measureLag(ctx context.Context, kin Kinesis, stream string, rows []shardRow) ([]string, error) {
	failed := make([]error, len(rows))
	var g errgroup.Group
	g.SetLimit(8)
	for i := range rows {
		row := &rows[i]
		if !row.leased {
			continue
		}
		if row.lagFrom == "" {
			row.MillisBehind = aws.Int64(0)
			continue
		}
		g.Go(func() error {
			in := &kinesis.GetShardIteratorInput{
				ShardId: aws.String(row.Shard), ShardIteratorType: row.lagFrom,
				StartingSequenceNumber: nilIfEmpty(row.lagAt), Timestamp: timeOrNil(row.lagStart),
			}
			in.StreamName, in.StreamARN = streamInput(stream)
			it, err := kin.GetShardIterator(ctx, in)
			if err != nil {
				failed[i] = fmt.Errorf("GetShardIterator %s: %w", row.lagFrom, err)
				return nil
			}
			_, streamARN := streamInput(stream)
			out, err := kin.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator, Limit: aws.Int32(1), StreamARN: streamARN})
			if err != nil {
				failed[i] = fmt.Errorf("GetRecords: %w", err)
				return nil
			}
			row.MillisBehind = aws.Int64(aws.ToInt64(out.MillisBehindLatest))
			return nil
		})
	}
	_ = g.Wait() // the goroutines return nil: failures are in failed
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var problems []string
	for i, err := range failed {
		if err != nil {
			problems = append(problems, oneLine(fmt.Sprintf("shard %q: lag not measured: %v", rows[i].Shard, err)))
		}
	}
	return problems, nil
}

func nilIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// print writes the report as tables.
func (r statusReport) print(out io.Writer) error {
	w := &errWriter{w: out}
	fmt.Fprintf(w, "stream %s, lease table %s (liveness watched for %v)\n\n", r.Stream, r.Table, r.Watched)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	header := "SHARD\tSTATE\tOWNER\tALIVE\tCHECKPOINT\tSUB\tPARENTS"
	if r.Lag {
		header += "\tBEHIND"
	}
	fmt.Fprintln(tw, header)
	for _, s := range r.Shards {
		owner, alive, cp, sub := dash(s.Owner), "-", "(no lease)", "-"
		if s.Owner != "" {
			alive = yesNo(s.OwnerAlive)
		}
		if s.handoff != "" {
			owner += " (handing to " + s.handoff + ")"
		}
		if s.javaFrom != "" {
			owner += " (Java hand-off from " + s.javaFrom + ")"
		}
		if s.leased {
			sub = strconv.FormatInt(s.SubSequence, 10)
			cp = showCheckpoint(s.Checkpoint, s.startAt)
		}
		line := strings.Join([]string{s.Shard, s.State, owner, alive, cp, sub, dash(strings.Join(s.Parents, ","))}, "\t")
		if r.Lag {
			behind := "-"
			if s.MillisBehind != nil {
				behind = (time.Duration(*s.MillisBehind) * time.Millisecond).String()
			}
			line += "\t" + behind
		}
		fmt.Fprintln(tw, line)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if len(r.Workers) == 0 {
		fmt.Fprintln(w, "no workers in the table")
	} else {
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "WORKER\tALIVE\tLEASES")
		for _, wk := range r.Workers {
			alive := yesNo(wk.Alive)
			if wk.Alive && wk.stopping {
				alive += " (stopping)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\n", wk.ID, alive, wk.Leases)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	fmt.Fprintln(w)
	if len(r.Problems) == 0 {
		fmt.Fprintln(w, "problems: none")
	} else {
		fmt.Fprintf(w, "problems (%d):\n", len(r.Problems))
		for _, p := range r.Problems {
			fmt.Fprintln(w, "  "+p)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintln(w, "note: "+n)
	}
	return w.err
}

// showCheckpoint shows a checkpoint with where a sentinel with a start time
// opens: AT_TIMESTAMP at that time, and LATEST there for every owner but the
// first (kcl's startingPosition).
func showCheckpoint(cp string, startAt int64) string {
	if startAt <= 0 {
		return cp
	}
	at := time.UnixMilli(startAt).UTC().Format(time.RFC3339Nano)
	switch cp {
	case leaseitem.AtTimestamp:
		return leaseitem.AtTimestamp + " " + at
	case leaseitem.Latest:
		return leaseitem.Latest + " (later owners open at " + at + ")"
	}
	return cp
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// errWriter keeps the first write error, so that printing code can write
// freely and check once.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	if err != nil {
		e.err = fmt.Errorf("writing output: %w", err)
	}
	return n, err
}
