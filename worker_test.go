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
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The test binary doubles as a worker process: with workerEnv set, TestMain
// runs runWorker instead of the tests. Tests start workers as separate OS
// processes to kill them for real.
const workerEnv = "KCL_TEST_WORKER"

// runWorker consumes the stream named by the environment and prints one line
// per record it delivered, "shard seq data", before acking it. SIGTERM or
// SIGINT shut it down gracefully.
func runWorker() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	cfg := testAWSConfig()
	ddb := &countingDynamo{DynamoDBAPI: dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(os.Getenv("KCL_TEST_DYNAMODB")) })}
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
	delay, _ := time.ParseDuration(os.Getenv("KCL_TEST_DELAY"))
	if d, err := time.ParseDuration(os.Getenv("KCL_TEST_LEASE")); err == nil {
		opts.LeaseDuration = d
	}
	c, err := New(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var mu sync.Mutex // one line at a time on stdout
	out := bufio.NewWriter(os.Stdout)
	// Every second, the lease-table calls so far: "#ddb reads writes".
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	go func() {
		for range tick.C {
			mu.Lock()
			fmt.Fprintf(out, "#ddb %d %d\n", ddb.reads.Load(), ddb.writes.Load())
			out.Flush()
			mu.Unlock()
		}
	}()
	for r := range c.Consume(ctx) {
		mu.Lock()
		fmt.Fprintf(out, "%s %s %s\n", r.ShardID, r.SequenceNumber, r.Data)
		out.Flush()
		mu.Unlock()
		time.Sleep(delay)
		r.Ack()
	}
	if err := c.Err(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
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
	puts := f.putN(300, 10, "")
	w := startWorkerProcess(t, f, "doomed", 5*time.Millisecond, io.Discard)
	var printed []string
	for line := range w.lines {
		printed = append(printed, line)
		if len(printed) == 100 {
			require.NoError(t, w.cmd.Process.Signal(syscall.SIGKILL))
		}
	}
	require.GreaterOrEqual(t, len(printed), 100, "the worker was killed mid-stream")
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
	// cover every record; the overlap is the dead worker's unacked window.
	seen := map[string]bool{}
	for _, line := range printed {
		_, _, data := parseLine(line)
		seen[data] = true
	}
	dups := 0
	for _, d := range dataOf(got) {
		if seen[d] {
			dups++
		}
		seen[d] = true
	}
	require.Len(t, seen, len(puts))
	t.Logf("killed after %d records printed; %d delivered again", len(printed), dups)
}

func TestCrashedWorkersShardsAreReadAgainWithinOneAndAHalfLeaseDurations(t *testing.T) {
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
	require.Eventually(t, func() bool { return g.held()["survivor"] == 8 }, 3*leaseDuration, 10*time.Millisecond)
	took := time.Since(killed)
	t.Logf("a SIGKILLed worker's shards were taken %v after the kill (LeaseDuration %v)", took, leaseDuration)
	assert.Less(t, took, leaseDuration*3/2)
}
