// Command demo shows kcl end to end on local emulators: it starts
// kinesis-local and dynalite (unless AWS_ENDPOINT_URL_KINESIS is set), creates
// a stream, produces records, and runs several workers of one application
// that share the stream's shards through the lease table. Midway one worker
// stops gracefully and a new one joins; the shards move, nothing is lost.
//
//	go run ./examples/demo -duration 40s -workers 3 -shards 8
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
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
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/kclgo/kcl"
	"github.com/kclgo/kcl/internal/emulator"
)

func main() {
	duration := flag.Duration("duration", 40*time.Second, "how long the demo runs")
	workers := flag.Int("workers", 3, "workers at the start")
	shards := flag.Int("shards", 8, "shards of the demo stream")
	rate := flag.Int("rate", 100, "records produced per second")
	verbose := flag.Bool("v", false, "show kcl's own logs")
	flag.Parse()
	if err := run(*duration, *workers, *shards, *rate, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(duration time.Duration, nWorkers, nShards, rate int, verbose bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

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
		os.Setenv("AWS_ENDPOINT_URL_KINESIS", kin.Endpoint)
		os.Setenv("AWS_ENDPOINT_URL_DYNAMODB", ddb.Endpoint)
		os.Setenv("AWS_REGION", "us-east-1")
		os.Setenv("AWS_ACCESS_KEY_ID", "000000000000")
		os.Setenv("AWS_SECRET_ACCESS_KEY", "demo")
	}
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return err
	}
	kc := kinesis.NewFromConfig(cfg)
	stream := fmt.Sprintf("demo-orders-%d", time.Now().Unix())
	app := "demo-billing-" + stream
	fmt.Printf("creating stream %s with %d shards ...\n", stream, nShards)
	if _, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: &stream, ShardCount: aws.Int32(int32(nShards))}); err != nil {
		return err
	}
	if err := kinesis.NewStreamExistsWaiter(kc, func(o *kinesis.StreamExistsWaiterOptions) { o.MinDelay = 100 * time.Millisecond }).
		Wait(ctx, &kinesis.DescribeStreamInput{StreamName: &stream}, time.Minute); err != nil {
		return err
	}

	d := &demo{produced: map[string]bool{}, delivered: map[string]int{}, perShard: map[string]*shardProgress{}, perWorker: map[string]int{}}
	logLevel := slog.LevelWarn
	if verbose {
		logLevel = slog.LevelInfo
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel}))

	var wg sync.WaitGroup
	produceCtx, stopProducing := context.WithCancel(ctx)
	wg.Go(func() { d.produce(produceCtx, kc, stream, rate) })

	cancels := map[string]context.CancelFunc{}
	start := func(id string) {
		wctx, cancel := context.WithCancel(ctx)
		cancels[id] = cancel
		c, err := kcl.New(kcl.Options{StreamName: stream, AppName: app, WorkerID: id, InitialPosition: kcl.TrimHorizon,
			PollInterval: 200 * time.Millisecond, LeaseDuration: 3 * time.Second, CheckpointInterval: time.Second, Logger: logger})
		if err != nil {
			fmt.Fprintln(os.Stderr, "demo:", err)
			return
		}
		wg.Go(func() {
			for rec := range c.Consume(wctx) {
				d.handle(id, rec)
				rec.Ack()
			}
			if err := c.Err(); err != nil {
				fmt.Fprintf(os.Stderr, "demo: %s stopped: %v\n", id, err)
			}
		})
	}
	for i := 1; i <= nWorkers; i++ {
		start(fmt.Sprintf("worker-%d", i))
	}

	ddb := dynamodb.NewFromConfig(cfg)
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
			cancels[id]()
		}
		if !joined && elapsed > 2*duration/3 {
			joined = true
			id := fmt.Sprintf("worker-%d", nWorkers+1)
			d.event(fmt.Sprintf("%s joins: it asks the most loaded workers to hand shards over", id))
			start(id)
		}
		d.print(ctx, ddb, app, elapsed)
	}
	fmt.Println("stopping: producer first, then every worker drains, checkpoints and releases ...")
	stopProducing()
	time.Sleep(3 * time.Second) // let the workers catch up with the last records
	for _, cancel := range cancels {
		cancel()
	}
	wg.Wait()
	d.summary()
	return nil
}

type shardProgress struct {
	records int
	lastAt  time.Time // arrival time of the last record delivered
	worker  string
}

type demo struct {
	mu        sync.Mutex
	produced  map[string]bool
	delivered map[string]int
	perShard  map[string]*shardProgress
	perWorker map[string]int
	events    []string
}

func (d *demo) produce(ctx context.Context, kc *kinesis.Client, stream string, rate int) {
	batch := max(1, rate/10)
	for i := 0; ctx.Err() == nil; i++ {
		var entries []types.PutRecordsRequestEntry
		for j := range batch {
			entries = append(entries, types.PutRecordsRequestEntry{
				PartitionKey: aws.String(fmt.Sprintf("customer-%d", (i*batch+j)%997)),
				Data:         []byte(fmt.Sprintf(`{"order":%d}`, i*batch+j)),
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
	p := d.perShard[rec.ShardID]
	if p == nil {
		p = &shardProgress{}
		d.perShard[rec.ShardID] = p
	}
	p.records++
	p.lastAt = rec.ApproximateArrivalTimestamp
	p.worker = worker
	d.perWorker[worker]++
}

func (d *demo) event(s string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.events = append(d.events, s)
	fmt.Printf("\n>>> %s\n", s)
}

// print shows who holds what (from the lease table) and per-shard progress.
func (d *demo) print(ctx context.Context, ddb *dynamodb.Client, table string, elapsed time.Duration) {
	owners := map[string]string{}
	checkpoints := map[string]string{}
	if out, err := ddb.Scan(ctx, &dynamodb.ScanInput{TableName: &table}); err == nil {
		for _, item := range out.Items {
			key := attrS(item["leaseKey"])
			if strings.HasPrefix(key, "kcl-worker:") {
				continue
			}
			owners[key] = attrS(item["leaseOwner"])
			checkpoints[key] = attrS(item["checkpoint"])
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Printf("\n-- t=%-4s produced %d, delivered %d --\n", elapsed.Round(time.Second), len(d.produced), len(d.delivered))
	fmt.Printf("%-22s %-10s %8s %9s  %s\n", "shard", "owner", "records", "lag", "checkpoint")
	shards := slices.Sorted(func(yield func(string) bool) {
		for s := range owners {
			if !yield(s) {
				return
			}
		}
	})
	for _, s := range shards {
		p := d.perShard[s]
		records, lag := 0, "-"
		if p != nil {
			records = p.records
			lag = time.Since(p.lastAt).Round(10 * time.Millisecond).String()
		}
		owner := owners[s]
		if owner == "" {
			owner = "(free)"
		}
		cp := checkpoints[s]
		if len(cp) > 14 {
			cp = "…" + cp[len(cp)-12:]
		}
		fmt.Printf("%-22s %-10s %8d %9s  %s\n", s, owner, records, lag, cp)
	}
	held := map[string]int{}
	for _, o := range owners {
		if o != "" {
			held[o]++
		}
	}
	var ws []string
	for w := range held {
		ws = append(ws, w)
	}
	sort.Strings(ws)
	var parts []string
	for _, w := range ws {
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

func attrS(v ddbtypes.AttributeValue) string {
	if a, ok := v.(*ddbtypes.AttributeValueMemberS); ok {
		return a.Value
	}
	return ""
}
