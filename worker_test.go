package kcl

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kclgo/kcl/internal/leaseitem"
)

// The test binary doubles as a worker process: with workerEnv set, TestMain
// runs runWorker instead of the tests. Tests start workers as separate OS
// processes to kill them for real.
const workerEnv = "KCL_TEST_WORKER"

// runWorker consumes the stream named by the environment and prints one line
// per record it delivered, "shard seq data", before acking it, and one,
// "#ack unixnano shard seq", once it acked it; "#cp shard seq" for each
// checkpoint write of its own that succeeded. SIGTERM or SIGINT shut it
// down gracefully.
func runWorker() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	cfg := testAWSConfig()
	var mu sync.Mutex // one line at a time on stdout
	out := bufio.NewWriter(os.Stdout)
	printf := func(format string, args ...any) {
		mu.Lock()
		fmt.Fprintf(out, format, args...)
		out.Flush()
		mu.Unlock()
	}
	ddb := &countingDynamo{DynamoDBAPI: &printedCheckpoints{
		DynamoDBAPI: dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(os.Getenv("KCL_TEST_DYNAMODB")) }),
		printf:      printf,
	}}
	opts := Options{
		StreamName:         os.Getenv("KCL_TEST_STREAM"),
		AppName:            os.Getenv("KCL_TEST_APP"),
		WorkerID:           os.Getenv(workerEnv),
		InitialPosition:    TrimHorizon,
		Kinesis:            kinesis.NewFromConfig(cfg, func(o *kinesis.Options) { o.BaseEndpoint = aws.String(os.Getenv("KCL_TEST_KINESIS")) }),
		DynamoDB:           ddb,
		MaxRecords:         10,
		PollInterval:       50 * time.Millisecond,
		LeaseDuration:      time.Second,
		CheckpointInterval: 100 * time.Millisecond,
		ShardSyncInterval:  time.Second,
		ShutdownTimeout:    2 * time.Second,
		Logger:             slog.New(slog.NewTextHandler(os.Stderr, nil)),
	}
	if streams := os.Getenv("KCL_TEST_STREAMS"); streams != "" { // several streams: shards print as streamARN/shardID
		opts.StreamName, opts.Streams = "", strings.Split(streams, ",")
	}
	delay, _ := time.ParseDuration(os.Getenv("KCL_TEST_DELAY"))
	if d, err := time.ParseDuration(os.Getenv("KCL_TEST_LEASE")); err == nil {
		opts.LeaseDuration = d
	}
	c, err := New(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	// Every second, the lease-table calls so far: "#ddb reads writes".
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	go func() {
		for range tick.C {
			printf("#ddb %d %d\n", ddb.reads.Load(), ddb.writes.Load())
		}
	}()
	for r := range c.Consume(ctx) {
		shard := r.ShardID
		if len(opts.Streams) > 0 {
			shard = r.StreamARN + "/" + r.ShardID
		}
		printf("%s %s %s\n", shard, r.SequenceNumber, r.Data)
		time.Sleep(delay)
		r.Ack()
		printf("#ack %d %s %s\n", time.Now().UnixNano(), shard, r.SequenceNumber)
	}
	if err := c.Err(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// printedCheckpoints prints "#cp shard seq" for each checkpoint write that
// succeeded (as the table now holds it).
type printedCheckpoints struct {
	DynamoDBAPI
	printf func(string, ...any)
}

func (d *printedCheckpoints) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, o ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	out, err := d.DynamoDBAPI.UpdateItem(ctx, in, o...)
	key, _ := in.Key[attrLeaseKey].(*ddbtypes.AttributeValueMemberS)
	cp, _ := in.ExpressionAttributeValues[":cp"].(*ddbtypes.AttributeValueMemberS)
	if err == nil && key != nil && cp != nil && isCheckpointWrite(in) {
		d.printf("#cp %s %s\n", key.Value, cp.Value)
	}
	return out, err
}

// workerLog is what one worker process printed, parsed.
type workerLog struct {
	deliveries []workerDelivery     // in the order printed
	acked      map[string]time.Time // by "shard seq": when the worker acked it
	checkpoint map[string]string    // by shard: the last checkpoint it wrote
	killedAt   time.Time            // when it was sent SIGKILL; zero if never
}

type workerDelivery struct{ shard, seq, data string }

func newWorkerLog() *workerLog {
	return &workerLog{acked: map[string]time.Time{}, checkpoint: map[string]string{}}
}

// add parses one line the worker printed; it returns the delivery, if the
// line is one.
func (w *workerLog) add(line string) (workerDelivery, bool) {
	f := strings.Fields(line)
	switch {
	case len(f) == 4 && f[0] == "#ack":
		ns, _ := strconv.ParseInt(f[1], 10, 64)
		w.acked[f[2]+" "+f[3]] = time.Unix(0, ns)
	case len(f) == 3 && f[0] == "#cp":
		if cur := w.checkpoint[f[1]]; cur == "" || !leaseitem.IsSequenceNumber(cur) || !leaseitem.IsSequenceNumber(f[2]) || seqLess(cur, f[2]) {
			w.checkpoint[f[1]] = f[2]
		}
	case strings.HasPrefix(line, "#"):
	default:
		shard, seq, data := parseLine(line)
		d := workerDelivery{shard, seq, data}
		w.deliveries = append(w.deliveries, d)
		return d, true
	}
	return workerDelivery{}, false
}

// mayDeliverAgain says whether a record this worker delivered may be
// delivered again by another, by the rule of "What it guarantees": only if
// the worker crashed (SIGKILL here; no test here makes a worker lose a lease
// otherwise) and the record was either never acked, or acked but not yet
// checkpointed, at most CheckpointInterval before the crash. slack allows
// for the checkpoint write itself (a round trip to the emulator on a loaded
// machine).
func (w *workerLog) mayDeliverAgain(d workerDelivery, checkpointInterval, slack time.Duration) (bool, string) {
	if w.killedAt.IsZero() {
		return false, "its worker was not killed and lost no lease"
	}
	ackedAt, acked := w.acked[d.shard+" "+d.seq]
	if !acked {
		return true, ""
	}
	if cp := w.checkpoint[d.shard]; cp != "" && leaseitem.IsSequenceNumber(cp) && !seqLess(cp, d.seq) {
		return false, fmt.Sprintf("it was acked and checkpointed (%s) before the crash", cp)
	}
	if age := w.killedAt.Sub(ackedAt); age > checkpointInterval+slack {
		return false, fmt.Sprintf("it was acked %v before the crash, more than CheckpointInterval %v (+%v)", age.Round(time.Millisecond), checkpointInterval, slack)
	}
	return true, ""
}

// workerProcess is a worker running as its own OS process.
type workerProcess struct {
	cmd   *exec.Cmd
	lines chan string // what it printed, closed when it exits
}

func startWorkerProcess(t *testing.T, f *fixture, id string, delay time.Duration, stderr io.Writer, env ...string) *workerProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), workerEnv+"="+id, "KCL_TEST_STREAM="+f.stream, "KCL_TEST_APP="+f.app,
		"KCL_TEST_KINESIS="+emu.kinesisLocal.Endpoint, "KCL_TEST_DYNAMODB="+emu.dynalite.Endpoint, "KCL_TEST_DELAY="+delay.String())
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	w := &workerProcess{cmd: cmd, lines: make(chan string, 1<<16)}
	go func() {
		defer close(w.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			w.lines <- sc.Text()
		}
		_ = cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		for range w.lines {
		}
	})
	return w
}

// parseLine splits a worker's line into shard, sequence number and data.
func parseLine(line string) (shard, seq, data string) {
	parts := strings.SplitN(line, " ", 3)
	return parts[0], parts[1], parts[2]
}

func TestKilledProcessLosesNothing(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 2)
	puts := f.putN(400, 10, "")
	w := startWorkerProcess(t, f, "doomed", 10*time.Millisecond, io.Discard)
	log := newWorkerLog()
	for line := range w.lines {
		if _, ok := log.add(line); ok && len(log.deliveries) == 300 {
			log.killedAt = time.Now()
			require.NoError(t, w.cmd.Process.Signal(syscall.SIGKILL))
		}
	}
	printed := log.deliveries
	require.GreaterOrEqual(t, len(printed), 300, "the worker was killed mid-stream")
	require.Less(t, len(printed), len(puts), "the worker was killed mid-stream")

	// What the dead worker checkpointed; a new worker must start exactly after it.
	items := f.leaseItems()
	var want []string
	for _, p := range puts {
		cp := str(items[p.shard], attrCheckpoint)
		if cp == checkpointTrimHorizon || seqLess(cp, p.seq) {
			want = append(want, p.data)
		}
	}
	s := startConsumer(t, f.options())
	got := s.receive(len(want), 30*time.Second, ackAll)
	s.quiet(500 * time.Millisecond)
	require.NoError(t, s.stop(nil))
	require.ElementsMatch(t, want, dataOf(got), "the new worker delivers exactly what follows the dead one's checkpoints")

	// Nothing lost: what the dead worker printed and what the new one got
	// cover every record. A record delivered again was not acked, or acked
	// but not yet checkpointed when the worker was killed.
	seen := map[string]workerDelivery{}
	for _, d := range printed {
		seen[d.data] = d
	}
	dups, ackedDups := 0, 0
	for _, d := range dataOf(got) {
		if first, ok := seen[d]; ok {
			dups++
			if _, acked := log.acked[first.shard+" "+first.seq]; acked {
				ackedDups++
			}
			ok, why := log.mayDeliverAgain(first, 100*time.Millisecond, time.Second)
			assert.True(t, ok, "record %s delivered again: %s", d, why)
		}
		seen[d] = workerDelivery{}
	}
	require.Len(t, seen, len(puts))
	t.Logf("killed after %d records printed; %d delivered again, %d of them acked", len(printed), dups, ackedDups)
}

// A SIGKILLed worker's shards are read again: the time from the kill until
// the survivor delivers a record written after the kill to each of them.
// The bound is a safety net for a hung run, not the figure: the figure is
// logged (README, "Many workers").
func TestCrashedWorkersShardsAreReadAgain(t *testing.T) {
	noLeak(t)
	const leaseDuration = 3 * time.Second
	f := newFixture(t, emu.kinesisLocal, 8)
	f.putN(80, 16, "a")
	w := startWorkerProcess(t, f, "doomed", 0, io.Discard, "KCL_TEST_LEASE="+leaseDuration.String())
	go func() {
		for range w.lines {
		}
	}()
	g := newGroup(t, f)
	g.start("survivor", func(o *Options) { o.LeaseDuration = leaseDuration })
	require.Eventually(t, func() bool { return g.held()["survivor"] == 4 }, 20*time.Second, 10*time.Millisecond, "the two workers share the shards")

	require.NoError(t, w.cmd.Process.Signal(syscall.SIGKILL))
	killed := time.Now()
	after := f.putN(200, 200, "b")
	shards := lastSeqPerShard(after)
	require.Len(t, shards, 8, "records written after the kill reach every shard")
	var took time.Duration
	require.Eventually(t, func() bool {
		read := map[string]bool{}
		g.mu.Lock()
		for _, r := range g.got["survivor"] {
			if strings.HasPrefix(string(r.Data), "b") {
				read[r.ShardID] = true
			}
		}
		g.mu.Unlock()
		took = time.Since(killed)
		return len(read) == len(shards)
	}, 5*leaseDuration, 10*time.Millisecond, "every shard read again by the survivor")
	t.Logf("a SIGKILLed worker's shards were read again (a record written after the kill delivered from each) %v after the kill (LeaseDuration %v)", took.Round(10*time.Millisecond), leaseDuration)
}
