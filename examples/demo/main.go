// Command demo shows kcl end to end on local emulators: it starts
// kinesis-local and dynalite, creates a stream (or several, with -streams),
// produces records, and runs several workers of one application that share
// the shards through the lease table. Midway one worker stops gracefully and
// a new one joins; the shards move, nothing is lost.
//
// With AWS_ENDPOINT_URL_KINESIS set (`./scripts/demo -keep` sets it from
// ./scripts/emulators), it uses the emulators the variables name instead,
// prints the `kcl status` command for each stream, and leaves the streams
// and the lease table behind.
//
//	go run ./examples/demo -duration 40s -workers 3 -shards 8
//	go run ./examples/demo -streams 3 -shards 2   # three streams, one group (Options.Streams)
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/kclgo/kcl"
	"github.com/kclgo/kcl/internal/emulator"
)

// leaseDuration is the workers' Options.LeaseDuration: short, so that the
// demo shows a lease move within seconds.
const leaseDuration = 3 * time.Second

func main() {
	duration := flag.Duration("duration", 40*time.Second, "how long the demo runs")
	workers := flag.Int("workers", 3, "workers at the start")
	shards := flag.Int("shards", 8, "shards of each demo stream")
	streams := flag.Int("streams", 1, "streams, read as one group (Options.Streams) when more than 1")
	rate := flag.Int("rate", 100, "records produced per second, per stream")
	verbose := flag.Bool("v", false, "show kcl's own logs")
	flag.Parse()
	if *streams < 1 {
		fmt.Fprintln(os.Stderr, "demo: -streams must be at least 1")
		os.Exit(2)
	}
	if err := run(*duration, *workers, *shards, *streams, *rate, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(duration time.Duration, nWorkers, nShards, nStreams, rate int, verbose bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	external := false // emulators (or AWS) set up by the caller, outliving the demo
	if os.Getenv("AWS_ENDPOINT_URL_KINESIS") == "" {
		fmt.Println("starting kinesis-local and dynalite on loopback ...")
		kin, err := emulator.Start(ctx, emulator.KinesisLocal)
		if err != nil {
			return err
		}
		defer kin.Stop()
		ddb, err := emulator.Start(ctx, emulator.Dynalite)
		if err != nil {
			return err
		}
		defer ddb.Stop()
		// The standard variables: kcl and the SDK pick them up by themselves.
		for _, kv := range emulator.Env(kin, ddb) {
			name, value, _ := strings.Cut(kv, "=")
			os.Setenv(name, value)
		}
	} else {
		external = true
	}
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return err
	}
	kc := kinesis.NewFromConfig(cfg)
	base := fmt.Sprintf("demo-orders-%d", time.Now().Unix())
	app := "demo-billing-" + base
	var streams []string
	for i := 1; i <= nStreams; i++ {
		stream := base
		if nStreams > 1 {
			stream = fmt.Sprintf("%s-%d", base, i)
		}
		streams = append(streams, stream)
		fmt.Printf("creating stream %s with %d shards ...\n", stream, nShards)
		if _, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: &stream, ShardCount: aws.Int32(int32(nShards))}); err != nil {
			return err
		}
		if err := kinesis.NewStreamExistsWaiter(kc, func(o *kinesis.StreamExistsWaiterOptions) { o.MinDelay = 100 * time.Millisecond }).
			Wait(ctx, &kinesis.DescribeStreamInput{StreamName: &stream}, time.Minute); err != nil {
			return err
		}
	}

	// The streams and table outlive a demo on the caller's emulators: say
	// how to look at them, now and at the end.
	statusHint := func() {
		for _, stream := range streams {
			fmt.Printf("lease table (in a shell with the emulators' variables): go run ./cmd/kcl status -app %s -stream %s -lag\n", app, stream)
		}
	}
	if external {
		statusHint()
	}

	d := &demo{produced: map[string]bool{}, delivered: map[string]int{}, perWorker: map[string]int{}, consumers: map[string]*kcl.Consumer{}, lastCount: map[string]int64{},
		streams: nStreams, width: 22}
	if nStreams > 1 {
		d.width = len(streams[0]) + 22
	}
	logLevel := slog.LevelWarn
	if verbose {
		logLevel = slog.LevelInfo
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel}))

	var wg sync.WaitGroup
	produceCtx, stopProducing := context.WithCancel(ctx)
	for _, stream := range streams {
		wg.Add(1)
		go func() { defer wg.Done(); d.produce(produceCtx, kc, stream, rate) }()
	}

	cancels := map[string]context.CancelFunc{}
	start := func(id string) {
		d.mu.Lock()
		defer d.mu.Unlock()
		wctx, cancel := context.WithCancel(ctx)
		cancels[id] = cancel
		opts := kcl.Options{AppName: app, WorkerID: id, InitialPosition: kcl.TrimHorizon,
			PollInterval: 200 * time.Millisecond, LeaseDuration: leaseDuration, CheckpointInterval: time.Second, Logger: logger}
		if len(streams) == 1 {
			opts.StreamName = streams[0]
		} else {
			opts.Streams = streams // one group, one lease table: the Java KCL's multi-stream layout
		}
		c, err := kcl.New(opts)
		if err != nil {
			fmt.Fprintln(os.Stderr, "demo:", err)
			return
		}
		d.consumers[id] = c
		wg.Add(1)
		go func() {
			defer wg.Done()
			for rec := range c.Consume(wctx) {
				d.handle(id, rec)
				rec.Ack()
			}
			if err := c.Err(); err != nil {
				fmt.Fprintf(os.Stderr, "demo: %s stopped: %v\n", id, err)
			}
			d.mu.Lock()
			delete(d.consumers, id)
			d.mu.Unlock()
		}()
	}
	for i := 1; i <= nWorkers; i++ {
		start(fmt.Sprintf("worker-%d", i))
	}

	began := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	stopped, joined := false, false
	for ctx.Err() == nil && time.Since(began) < duration {
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
		elapsed := time.Since(began)
		if !stopped && elapsed > duration/3 && nWorkers > 1 {
			stopped = true
			id := fmt.Sprintf("worker-%d", nWorkers)
			d.event(fmt.Sprintf("%s stops gracefully (ctx cancelled): it checkpoints, releases its leases, others take them", id))
			d.mu.Lock()
			cancel := cancels[id]
			d.mu.Unlock()
			cancel()
		}
		if !joined && elapsed > 2*duration/3 {
			joined = true
			id := fmt.Sprintf("worker-%d", nWorkers+1)
			d.event(fmt.Sprintf("%s joins: it asks the most loaded workers to hand shards over", id))
			start(id)
		}
		d.print(elapsed)
	}
	fmt.Println("stopping: producer first, then every worker drains, checkpoints and releases ...")
	stopProducing()
	time.Sleep(3 * time.Second) // let the workers catch up with the last records
	d.mu.Lock()
	for _, cancel := range cancels {
		cancel()
	}
	d.mu.Unlock()
	wg.Wait()
	d.summary()
	if external {
		statusHint()
	}
	return nil
}

type demo struct {
	mu        sync.Mutex
	produced  map[string]bool
	delivered map[string]int
	perWorker map[string]int
	consumers map[string]*kcl.Consumer
	lastCount map[string]int64 // records delivered per shard (stream/shard) at the last print
	lastPrint time.Time
	events    []string
	streams   int // how many streams
	width     int // of the shard column
}

func (d *demo) produce(ctx context.Context, kc *kinesis.Client, stream string, rate int) {
	batch := max(1, rate/10)
	for i := 0; ctx.Err() == nil; i++ {
		var entries []types.PutRecordsRequestEntry
		for j := range batch {
			entries = append(entries, types.PutRecordsRequestEntry{
				PartitionKey: aws.String(fmt.Sprintf("customer-%d", (i*batch+j)%997)),
				Data:         []byte(fmt.Sprintf(`{"stream":%q,"order":%d}`, stream, i*batch+j)),
			})
		}
		// Not ctx: a batch sent is counted, even if the demo is stopping.
		out, err := kc.PutRecords(context.Background(), &kinesis.PutRecordsInput{StreamName: &stream, Records: entries})
		if err == nil {
			d.mu.Lock()
			for k, r := range out.Records {
				if r.ErrorCode == nil {
					d.produced[string(entries[k].Data)] = true
				}
			}
			d.mu.Unlock()
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (d *demo) handle(worker string, rec kcl.Record) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.delivered[string(rec.Data)]++
	d.perWorker[worker]++
}

func (d *demo) event(s string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.events = append(d.events, s)
	fmt.Printf("\n>>> %s\n", s)
}

// print shows who holds what, per-shard throughput and lag, from each
// worker's Stats.
func (d *demo) print(elapsed time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	secs := now.Sub(d.lastPrint).Seconds()
	d.lastPrint = now
	rows := map[string]kcl.ShardStats{}
	held := map[string]int{}
	for _, c := range d.consumers {
		st := c.Stats()
		held[st.WorkerID] = st.LeasesHeld
		for _, sh := range st.Shards {
			id := sh.ShardID
			if i := strings.LastIndex(sh.StreamARN, "/"); i >= 0 && d.streams > 1 {
				id = sh.StreamARN[i+1:] + "/" + sh.ShardID // several streams: shard IDs repeat
			}
			if sh.Held || rows[id].ShardID == "" {
				rows[id] = sh
			}
		}
	}
	fmt.Printf("\n-- t=%-4s produced %d, delivered %d --\n", elapsed.Round(time.Second), len(d.produced), len(d.delivered))
	fmt.Printf("%-*s %-10s %9s %8s %10s %9s %12s\n", d.width, "shard", "owner", "records", "rec/s", "behind", "unacked", "checkpointed")
	for _, id := range slices.Sorted(maps.Keys(rows)) {
		sh := rows[id]
		owner := sh.Owner
		if owner == "" {
			owner = "(free)"
		}
		if sh.Checkpoint == "SHARD_END" {
			continue
		}
		rate := "-"
		if sh.Held && secs > 0 && secs < 10 {
			rate = fmt.Sprintf("%.0f", float64(max(0, sh.RecordsDelivered-d.lastCount[id]))/secs)
		}
		d.lastCount[id] = sh.RecordsDelivered
		checkpointed := "-" // the age is only known to the lease's holder
		if sh.Held {
			checkpointed = sh.CheckpointAge.Round(100*time.Millisecond).String() + " ago"
		}
		fmt.Printf("%-*s %-10s %9d %8s %8dms %9d %12s\n", d.width, id, owner, sh.RecordsDelivered, rate, sh.MillisBehindLatest, sh.Unacked, checkpointed)
	}
	var parts []string
	for _, w := range slices.Sorted(maps.Keys(held)) {
		parts = append(parts, fmt.Sprintf("%s: %d shards", w, held[w]))
	}
	fmt.Println("leases:", strings.Join(parts, ", "))
}

func (d *demo) summary() {
	d.mu.Lock()
	defer d.mu.Unlock()
	missing, dups := 0, 0
	for r := range d.produced {
		if d.delivered[r] == 0 {
			missing++
		}
	}
	for _, n := range d.delivered {
		dups += n - 1
	}
	fmt.Printf("\nproduced %d records; delivered %d distinct, %d missing, %d delivered twice\n", len(d.produced), len(d.delivered), missing, dups)
	var ws []string
	for w := range d.perWorker {
		ws = append(ws, w)
	}
	sort.Strings(ws)
	for _, w := range ws {
		fmt.Printf("  %s handled %d records\n", w, d.perWorker[w])
	}
}
