package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/kclgo/kcl"
	"github.com/kclgo/kcl/internal/emulator"
)

// The lease-table cost command (issue 11). TestLeaseTableCost runs only
// when -cost.shards is given:
//
//	go test -run '^TestLeaseTableCost$' -v -timeout 0 ./bench/ \
//	    -cost.shards 50,200,500 -cost.workers 4,20,40 -cost.window 60s [-cost.busy]
//
// TestLeaseTableCostCheck always runs, on one small group, so that the
// instrument keeps working as kcl changes.
var (
	costShards  = flag.String("cost.shards", "", "comma-separated shard counts: runs TestLeaseTableCost for each with each worker count")
	costWorkers = flag.String("cost.workers", "4,20,40", "comma-separated worker counts for TestLeaseTableCost")
	costWindow  = flag.Duration("cost.window", 60*time.Second, "how long each cell of TestLeaseTableCost measures, once the group settled")
	costBusy    = flag.Bool("cost.busy", false, "every GetRecords returns a few records, so that checkpoints move")
	costSettle  = flag.Duration("cost.settle", 5*time.Minute, "how long a cell may take to settle before it fails")
	costQuiet   = flag.Duration("cost.quiet", 15*time.Second, "how long to wait once the group is fair before the window opens: the workers' first LeaseDuration (every pass reads the table) and the publications after the last takes end")
	costOut     = flag.String("cost.out", "", "also write the markdown report to this file")
)

// On-demand prices (USD per million request units) and the Java KCL 2.x
// model's defaults.
const (
	usdPerMillionReads  = 0.125
	usdPerMillionWrites = 0.625
	minutesPerMonth     = 30 * 24 * 60
	javaFailover        = 10 * time.Second
	javaEpsilon         = 25 * time.Millisecond
	// javaRenewalsPerMinute: every lease renewed every failover/3, one
	// write unit each (lease items are under 1 KB).
	javaRenewalsPerMinute = 18.0
	recordsPerCall        = 3 // busy: records per GetRecords call
)

// javaTakerInterval is how often each Java KCL 2.x worker scans the whole
// lease table: 2 x (failover + epsilon).
var javaTakerInterval = 2 * (javaFailover + javaEpsilon)

// price is the on-demand price of the given read and write units.
func price(reads, writes float64) float64 {
	return (reads*usdPerMillionReads + writes*usdPerMillionWrites) / 1e6
}

// javaModel is the Java KCL 2.x's lease management per lease-minute at S
// shards and W workers: 18 renewal writes, and each worker's scan of the
// whole table every javaTakerInterval, scanUnits read units each (the
// measured size of an eventually consistent scan of the leases: the Java
// KCL's listLeases scans without ConsistentRead).
func javaModel(shards, workers int, scanUnits float64) (reads, writes float64) {
	scansPerMinute := float64(workers) * float64(time.Minute) / float64(javaTakerInterval)
	return scansPerMinute * scanUnits / float64(shards), javaRenewalsPerMinute
}

// cellConfig is one measurement: a group of workers on one stream.
type cellConfig struct {
	shards, workers int
	window, settle  time.Duration
	quiet           time.Duration // waited between settling and the window
	busy            bool
	// LeaseDuration and CheckpointInterval; zero is kcl's default.
	leaseDuration, checkpointInterval time.Duration
	// until, when set, extends the window (up to maxWindow) until it holds
	// of what the window measured.
	until     func(costSnapshot) bool
	maxWindow time.Duration
}

// cellResult is what one cell measured.
type cellResult struct {
	cellConfig
	settled, elapsed time.Duration // time to settle; the window's actual length
	cost             costSnapshot  // over the window
	heldAtEnd        []int         // leases held per worker when the window ended
	javaScanUnits    float64       // eventually consistent units of one scan of the leases alone
	tableItems       int           // items in the table, leases and kcl-* items
	leaseBytes       float64       // mean size of a lease item
	settleCost       tally         // every call from the start until the window
	warnings         [3]int64      // kcl logs at Warn or above: before, in and after the window
	firstWarnings    []string
	kinesisCalls     [4]int64 // over the window: ListShards, GetShardIterator, GetRecords, records
	unwrapped        []string // DynamoDB operations sent that the meter does not count
	shapes           map[string]replyShape
	consistentScan   float64 // the meter's correction of consistent scans' units (scanConsistency)
}

// leaseMinutes is what the window's figures are divided by: every lease
// held for the whole window (the group had settled).
func (r cellResult) leaseMinutes() float64 { return float64(r.shards) * r.elapsed.Minutes() }

func (r cellResult) per(u float64) float64 { return u / r.leaseMinutes() }

// management is the lease-management units: every category but
// checkpoints.
func (r cellResult) management() (reads, writes float64) {
	for c := range categories {
		if c != checkpoints {
			reads += r.cost.cats[c].read
			writes += r.cost.cats[c].write
		}
	}
	return reads, writes
}

// warnCounter is a slog handler counting kcl's logs at Warn and above,
// keeping the first few.
type warnCounter struct {
	n     atomic.Int64
	mu    sync.Mutex
	first []string
}

func (w *warnCounter) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w *warnCounter) WithAttrs([]slog.Attr) slog.Handler           { return w }
func (w *warnCounter) WithGroup(string) slog.Handler                { return w }
func (w *warnCounter) Handle(_ context.Context, r slog.Record) error {
	if w.n.Add(1) <= 5 {
		var b strings.Builder
		b.WriteString(r.Message)
		r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
		w.mu.Lock()
		w.first = append(w.first, b.String())
		w.mu.Unlock()
	}
	return nil
}

// needDynalite skips the test when dynalite is not installed, unless the
// emulators are required (scripts/test, and so CI).
func needDynalite(t *testing.T) {
	if err := emulator.Installed(emulator.Dynalite); err != nil {
		if os.Getenv(emulator.RequireEnv) == "" {
			t.Skipf("needs dynalite (./scripts/setup): %v", err)
		}
		t.Fatalf("needs dynalite: %v", err)
	}
}

// runCell starts dynalite, a stub stream of cfg.shards shards and
// cfg.workers kcl consumers in this process (one AppName, distinct
// WorkerIDs, kcl's defaults but for cfg's durations), waits until every
// worker holds its fair share, measures for the window, and stops.
func runCell(ctx context.Context, cfg cellConfig) (res cellResult, err error) {
	res.cellConfig = cfg
	srv, err := emulator.Start(ctx, emulator.Dynalite)
	if err != nil {
		return res, err
	}
	defer srv.Stop()

	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 2 * cfg.workers
	ops := &httpOps{next: transport}
	defer transport.CloseIdleConnections()
	ddb := dynamodb.NewFromConfig(aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("bench", "bench", ""),
		HTTPClient:  &http.Client{Transport: ops},
	}, func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(srv.Endpoint) })
	m := newMeter(ddb)
	if res.consistentScan, err = scanConsistency(ctx, ddb); err != nil {
		return res, fmt.Errorf("probing how the emulator charges consistent scans: %w", err)
	}
	m.setConsistentScan(res.consistentScan)
	perCall := 0
	if cfg.busy {
		perCall = recordsPerCall
	}
	const stream, table = "cost", "kcl-cost"
	kin := newStubKinesis(stream, cfg.shards, perCall)
	warns := &warnCounter{}
	logger := slog.New(warns)

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	consumers := make([]*kcl.Consumer, cfg.workers)
	var wg sync.WaitGroup
	closed := make([]atomic.Bool, cfg.workers)
	for i := range consumers {
		c, err := kcl.New(kcl.Options{
			StreamName: stream, AppName: table, WorkerID: fmt.Sprintf("worker-%03d", i),
			Kinesis: kin, DynamoDB: m, Logger: logger,
			LeaseDuration: cfg.leaseDuration, CheckpointInterval: cfg.checkpointInterval,
		})
		if err != nil {
			stop()
			wg.Wait()
			return res, err
		}
		consumers[i] = c
		records := c.Consume(runCtx)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range records {
				r.Ack()
			}
			closed[i].Store(true)
		}()
	}
	stopped := make(chan struct{})
	shutdown := func() error {
		stop()
		go func() { wg.Wait(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(time.Minute):
			return errors.New("the consumers did not stop within a minute")
		}
		var errs []error
		for _, c := range consumers {
			if err := c.Err(); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
	defer func() {
		if serr := shutdown(); serr != nil && err == nil {
			err = serr
		}
		res.warnings[2] = warns.n.Load() - res.warnings[0] - res.warnings[1]
		warns.mu.Lock()
		res.firstWarnings = slices.Clone(warns.first)
		warns.mu.Unlock()
	}()

	held := func() []int {
		h := make([]int, len(consumers))
		for i, c := range consumers {
			h[i] = c.Stats().LeasesHeld
		}
		return h
	}
	fair := func(h []int) bool {
		sum := 0
		for _, n := range h {
			sum += n
		}
		return sum == cfg.shards && slices.Max(h)-slices.Min(h) <= 1
	}

	start := time.Now()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for !fair(held()) {
		for i := range closed {
			if closed[i].Load() {
				return res, fmt.Errorf("worker %d stopped while settling: %v", i, consumers[i].Err())
			}
		}
		if time.Since(start) > cfg.settle {
			return res, fmt.Errorf("not settled after %v: leases held %v", cfg.settle, held())
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-tick.C:
		}
	}
	res.settled = time.Since(start)
	select { // steady state: see -cost.quiet
	case <-ctx.Done():
		return res, ctx.Err()
	case <-time.After(cfg.quiet):
	}

	before, k0, w0 := m.snapshot(), kin.counts(), warns.n.Load()
	res.settleCost = before.total
	begin := time.Now()
	maxWindow := max(cfg.window, cfg.maxWindow)
	for {
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-tick.C:
		}
		elapsed := time.Since(begin)
		if elapsed < cfg.window {
			continue
		}
		if cfg.until == nil || cfg.until(m.snapshot().minus(before)) || elapsed >= maxWindow {
			break
		}
	}
	res.cost, res.elapsed = m.snapshot().minus(before), time.Since(begin)
	w1 := warns.n.Load()
	res.warnings[0], res.warnings[1] = w0, w1-w0
	k1 := kin.counts()
	for i := range k1 {
		res.kinesisCalls[i] = k1[i] - k0[i]
	}
	res.heldAtEnd = held()
	res.unwrapped = ops.unwrapped()
	res.shapes = m.shapes()
	if err := res.measureScan(ctx, ddb, table); err != nil {
		return res, fmt.Errorf("measuring a scan of the table: %w", err)
	}
	return res, nil
}

func (k *stubKinesis) counts() [4]int64 {
	var c [4]int64
	for i := range c {
		c[i] = k.calls[i].Load()
	}
	return c
}

// measureScan scans the table once, eventually consistent as the Java
// KCL's lease taker does, outside the meter, and keeps the units dynalite
// reports for it, scaled to the lease items' share of the bytes (kcl's own
// kcl-* items are not in a Java KCL table).
func (r *cellResult) measureScan(ctx context.Context, db *dynamodb.Client, table string) error {
	var all, leases, nLeases int
	units, err := scanUnits(ctx, db, &dynamodb.ScanInput{TableName: aws.String(table)}, func(items []map[string]types.AttributeValue) {
		for _, item := range items {
			size := itemSize(item)
			all += size
			if !isKCLKey(keyOf(item)) {
				leases += size
				nLeases++
			}
			r.tableItems++
		}
	})
	if err != nil {
		return err
	}
	if all == 0 || nLeases == 0 {
		return errors.New("the table holds no leases")
	}
	r.javaScanUnits = units * float64(leases) / float64(all)
	r.leaseBytes = float64(leases) / float64(nLeases)
	return nil
}

// TestLeaseTableCost is the lease-table cost grid of issue 11: for each
// shard count S and worker count W given, W kcl consumers in this process
// share S idle shards (busy with -cost.busy) through a lease table in
// dynalite, at kcl's defaults; once every worker holds its fair share, the
// capacity DynamoDB reports for every lease-table call is added up over
// the window, by category, and printed per lease-minute with its on-demand
// price and the Java KCL 2.x model's at the same S and W.
func TestLeaseTableCost(t *testing.T) {
	if *costShards == "" {
		t.Skip("the cost grid runs with -cost.shards (e.g. -cost.shards 50,200,500 -cost.workers 4,20,40)")
	}
	needDynalite(t)
	shards, err := parseCounts(*costShards)
	if err != nil {
		t.Fatalf("-cost.shards: %v", err)
	}
	workers, err := parseCounts(*costWorkers)
	if err != nil {
		t.Fatalf("-cost.workers: %v", err)
	}
	var results []cellResult
	for _, s := range shards {
		for _, w := range workers {
			t.Run(fmt.Sprintf("S=%d/W=%d", s, w), func(t *testing.T) {
				res, err := runCell(context.Background(), cellConfig{shards: s, workers: w, window: *costWindow, settle: *costSettle, quiet: *costQuiet, busy: *costBusy})
				if err != nil {
					t.Errorf("S=%d W=%d: %v", s, w, err)
					if res.elapsed == 0 || res.javaScanUnits == 0 {
						return // nothing measured
					}
				}
				checkCell(t, res)
				t.Logf("settled in %v; %s", res.settled.Round(100*time.Millisecond), rowSummary(res))
				results = append(results, res)
			})
		}
	}
	if len(results) == 0 {
		return
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		t.Logf("peak resident memory of this process (the workers and the stub; dynalite is another process): %d MiB", ru.Maxrss>>10)
	}
	report := costReport(results, *costBusy, *costWindow) + "\nWhat dynalite's replies carried, over the last cell:\n\n" + shapeReport(results[len(results)-1].shapes)
	fmt.Print(report)
	if *costOut != "" {
		if err := os.WriteFile(*costOut, []byte(report), 0o644); err != nil {
			t.Error(err)
		}
	}
}

// TestLeaseTableCostCheck runs the instrument on one small group (10
// shards, 2 workers, LeaseDuration 1s), idle and busy, for a few seconds,
// and checks only what must hold whatever kcl's design: no category is
// negative, the categories add up to the total, the workers scan and
// write heartbeats, idle shards write no moving checkpoint and busy ones
// do, and the meter counts every data call kcl sends.
func TestLeaseTableCostCheck(t *testing.T) {
	needDynalite(t)
	for _, busy := range []bool{false, true} {
		t.Run(map[bool]string{false: "idle", true: "busy"}[busy], func(t *testing.T) {
			cfg := cellConfig{shards: 10, workers: 2, window: 2 * time.Second, settle: 2 * time.Minute, busy: busy,
				leaseDuration: time.Second, checkpointInterval: 500 * time.Millisecond, maxWindow: time.Minute}
			cfg.until = func(s costSnapshot) bool {
				return s.cats[scans].calls > 0 && s.cats[heartbeatWrites].calls > 0 && (!busy || s.cats[checkpoints].calls > 0)
			}
			res, err := runCell(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			checkCell(t, res)
			c := res.cost.cats
			if c[scans].calls == 0 || c[scans].read <= 0 {
				t.Errorf("no scan measured in %v: %+v", res.elapsed, c[scans])
			}
			if c[heartbeatWrites].calls == 0 || c[heartbeatWrites].write <= 0 {
				t.Errorf("no heartbeat write measured in %v: %+v", res.elapsed, c[heartbeatWrites])
			}
			if busy && c[checkpoints].calls == 0 {
				t.Errorf("records flowed and were acked, but no checkpoint moved in %v", res.elapsed)
			}
			if !busy && c[checkpoints].calls != 0 {
				t.Errorf("idle shards, but %d checkpoint writes moved a checkpoint", c[checkpoints].calls)
			}
			if busy && res.kinesisCalls[3] == 0 {
				t.Errorf("busy, but the stub returned no records")
			}
			t.Logf("%s\n%s", rowSummary(res), shapeReport(res.shapes))
			t.Log("\n" + costReport([]cellResult{res}, busy, res.elapsed))
		})
	}
}

// checkCell checks what holds of any measurement: no negative figure,
// categories adding up to the total, every DynamoDB call counted.
func checkCell(t *testing.T, r cellResult) {
	t.Helper()
	var sum tally
	for c := range categories {
		x := r.cost.cats[c]
		if x.calls < 0 || x.failed < 0 || x.read < 0 || x.write < 0 || x.computed < 0 {
			t.Errorf("%v: negative: %+v", c, x)
		}
		sum.add(x)
	}
	tot := r.cost.total
	if sum.calls != tot.calls || sum.failed != tot.failed || !near(sum.read, tot.read) || !near(sum.write, tot.write) || !near(sum.computed, tot.computed) {
		t.Errorf("categories add up to %+v, the total is %+v", sum, tot)
	}
	if len(r.unwrapped) > 0 {
		t.Errorf("kcl sent DynamoDB operations the meter does not count: %v", r.unwrapped)
	}
	if r.javaScanUnits <= 0 {
		t.Errorf("the measured scan cost nothing: %v", r.javaScanUnits)
	}
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-6*math.Max(1, math.Abs(b)) }

func parseCounts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive count", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// rowSummary is one line of a cell's figures, for the test log.
func rowSummary(r cellResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "S=%d W=%d window %v:", r.shards, r.workers, r.elapsed.Round(time.Millisecond))
	for c := range categories {
		x := r.cost.cats[c]
		fmt.Fprintf(&b, " %s %d calls (%d failed) R %.2f W %.2f;", c, x.calls, x.failed, r.per(x.read), r.per(x.write))
	}
	lr, lw := r.management()
	fmt.Fprintf(&b, " per lease-minute; management R %.2f W %.2f; held at end %v; kcl warnings before/in/after the window %v; settling cost R %.1f W %.1f units", r.per(lr), r.per(lw), r.heldAtEnd, r.warnings, r.settleCost.read, r.settleCost.write)
	for _, w := range r.firstWarnings {
		fmt.Fprintf(&b, "\n  warning: %s", w)
	}
	return b.String()
}

// shapeReport says, per operation, which capacity figures the emulator's
// replies carried.
func shapeReport(shapes map[string]replyShape) string {
	ops := make([]string, 0, len(shapes))
	for op := range shapes {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	var b strings.Builder
	b.WriteString("| operation | replies | with CapacityUnits | with ReadCapacityUnits | with WriteCapacityUnits | with none | failed conditions (charged by the meter) |\n|---|---|---|---|---|---|---|\n")
	for _, op := range ops {
		s := shapes[op]
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %d | %d |\n", op, s.replies, s.total, s.readUnits, s.writeUnits, s.none, s.conditionFailed)
	}
	return b.String()
}

// costReport is the markdown report of a grid.
func costReport(results []cellResult, busy bool, window time.Duration) string {
	var b strings.Builder
	mode := "idle shards"
	if busy {
		mode = fmt.Sprintf("busy shards (%d records per GetRecords call)", recordsPerCall)
	}
	settings := "kcl defaults"
	if r := results[0]; r.leaseDuration != 0 || r.checkpointInterval != 0 {
		settings = fmt.Sprintf("LeaseDuration %v, CheckpointInterval %v (0: default), other kcl defaults", r.leaseDuration, r.checkpointInterval)
	}
	fmt.Fprintf(&b, "\n## Lease-table cost per lease-minute (%s, %s, %v window from %v after the group settled)\n\n", mode, settings, window, *costQuiet)
	b.WriteString("Capacity units per lease-minute as DynamoDB (dynalite) reported them; LM = lease management, every category but checkpoints. ")
	fmt.Fprintf(&b, "USD per lease-month on demand (%.3f USD per million read units, %.3f per million write units, 30 days). ", usdPerMillionReads, usdPerMillionWrites)
	fmt.Fprintf(&b, "Java KCL 2.x model: %.0f renewal write units a lease-minute (failover %v, renewal every failover/3) plus each worker scanning the whole table every %v, eventually consistent, at the size measured for this table's leases.\n\n", javaRenewalsPerMinute, javaFailover, javaTakerInterval)
	if slices.ContainsFunc(results, func(r cellResult) bool { return r.consistentScan != 1 }) {
		b.WriteString("The emulator charged strongly consistent scans like eventually consistent ones (dynalite 4.0.0 drops ConsistentRead from Scan requests); the meter doubled their units, as DynamoDB charges them. ")
	}
	b.WriteString("Failed conditional writes, for which dynalite reports nothing, are charged as DynamoDB charges them: one write unit per started KB of the item as last seen.\n\n")
	b.WriteString("| S | W | heartbeat W | liveness R | scans R | takes R | takes W | LM R | LM W | kcl LM µUSD/lease-minute | kcl LM USD/lease-month | Java R | Java W | Java USD/lease-month | kcl/Java | checkpoints W |\n")
	b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range results {
		c := r.cost.cats
		lr, lw := r.management()
		jr, jw := javaModel(r.shards, r.workers, r.javaScanUnits)
		kUSD, jUSD := price(r.per(lr), r.per(lw))*minutesPerMonth, price(jr, jw)*minutesPerMonth
		fmt.Fprintf(&b, "| %d | %d | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.3f | %.4f | %.2f | %.2f | %.4f | %.2f | %.2f |\n",
			r.shards, r.workers, r.per(c[heartbeatWrites].write), r.per(c[livenessReads].read), r.per(c[scans].read),
			r.per(c[takes].read), r.per(c[takes].write), r.per(lr), r.per(lw), price(r.per(lr), r.per(lw))*1e6, kUSD,
			jr, jw, jUSD, kUSD/jUSD, r.per(c[checkpoints].write))
	}
	b.WriteString("\nDetails: calls per lease-minute by category (heartbeat writes / liveness reads / scans / takes / checkpoints), scans per worker-second, the Java model's scan (eventually consistent units for the leases alone, mean lease item size), time to settle and the units spent settling (in all, not per lease-minute: lease creation by every worker, takes), window, failed calls and units the meter computed itself (failed conditional writes) in the window, kcl's warnings before, in and after the window.\n\n")
	b.WriteString("| S | W | calls hb/live/scan/take/ckpt | scans per worker-s | Java scan units | lease item B | settle s | settle R / W units | window s | failed calls | computed units | warnings |\n")
	b.WriteString("|---:|---:|---|---:|---:|---:|---:|---|---:|---:|---:|---|\n")
	for _, r := range results {
		c := r.cost.cats
		calls := make([]string, categories)
		for i := range categories {
			calls[i] = fmt.Sprintf("%.1f", r.per(float64(c[i].calls)))
		}
		fmt.Fprintf(&b, "| %d | %d | %s | %.2f | %.2f | %.0f | %.1f | %.0f / %.0f | %.1f | %d | %.1f | %d / %d / %d |\n",
			r.shards, r.workers, strings.Join(calls, " / "), float64(c[scans].calls)/float64(r.workers)/r.elapsed.Seconds(),
			r.javaScanUnits, r.leaseBytes, r.settled.Seconds(), r.settleCost.read, r.settleCost.write, r.elapsed.Seconds(),
			r.cost.total.failed, r.cost.total.computed, r.warnings[0], r.warnings[1], r.warnings[2])
	}
	return b.String()
}
