package kcl

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var chaosDuration = flag.Duration("chaos.duration", 20*time.Second, "how long TestChaos kills, stops and adds workers; raise it for a soak")

// chaosDelivery is one line a worker process printed, stamped on arrival.
type chaosDelivery struct {
	worker, shard, seq, data string
	at                       time.Time
	n                        int // which process of that worker ID (restarts)
}

type chaosWorker struct {
	id      string
	n       int
	calls   [2]int64 // lease-table reads and writes, as last printed
	proc    *workerProcess
	log     *workerLog // guarded by chaos.mu
	exited  chan time.Time
	killed  bool
	stopped bool
}

type chaos struct {
	t  *testing.T
	f  *fixture
	mu sync.Mutex
	// everything delivered, in arrival order
	deliveries []chaosDelivery
	live       map[string]*chaosWorker
	all        []*chaosWorker
	started    int
}

func (ch *chaos) start(id string) *chaosWorker {
	ch.started++
	w := &chaosWorker{id: id, n: ch.started, log: newWorkerLog(), exited: make(chan time.Time, 1)}
	w.proc = startWorkerProcess(ch.t, ch.f, id, time.Millisecond, io.Discard)
	go func() {
		for line := range w.proc.lines {
			if strings.HasPrefix(line, "#ddb ") {
				var r, wr int64
				fmt.Sscanf(line, "#ddb %d %d", &r, &wr)
				ch.mu.Lock()
				w.calls = [2]int64{r, wr}
				ch.mu.Unlock()
				continue
			}
			ch.mu.Lock()
			if d, ok := w.log.add(line); ok {
				ch.deliveries = append(ch.deliveries, chaosDelivery{worker: id, shard: d.shard, seq: d.seq, data: d.data, at: time.Now(), n: w.n})
			}
			ch.mu.Unlock()
		}
		w.exited <- time.Now()
	}()
	ch.live[id] = w
	ch.all = append(ch.all, w)
	return w
}

// shardsOf returns the shards worker process n delivered from in the last
// window before t.
func (ch *chaos) shardsOf(n int, t time.Time, window time.Duration) []string {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	set := map[string]bool{}
	for _, d := range ch.deliveries {
		if d.n == n && d.at.Before(t) && t.Sub(d.at) < window {
			set[d.shard] = true
		}
	}
	var out []string
	for s := range set {
		out = append(out, s)
	}
	return out
}

// pickedUp waits until every shard in shards was delivered by a process
// other than n after t, and returns how long after t the last one was.
func (ch *chaos) pickedUp(n int, shards []string, t time.Time, timeout time.Duration) (time.Duration, bool) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		ch.mu.Lock()
		first := map[string]time.Time{}
		for _, d := range ch.deliveries {
			if d.n != n && d.at.After(t) && slices.Contains(shards, d.shard) {
				if _, ok := first[d.shard]; !ok {
					first[d.shard] = d.at
				}
			}
		}
		ch.mu.Unlock()
		if len(first) == len(shards) {
			var worst time.Duration
			for _, at := range first {
				worst = max(worst, at.Sub(t))
			}
			return worst, true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return 0, false
}

// TestChaos runs worker processes on one stream while a producer writes,
// and kills (SIGKILL), stops (SIGTERM), restarts and adds workers at random.
// From what every process printed it proves that no record was lost, that
// each worker delivered each shard in order, and that a record is delivered
// twice only by the rule of "What it guarantees": its first worker was
// killed, and it was not acked, or acked but not yet checkpointed (at most
// CheckpointInterval before the kill). It prints its figures; its time
// bounds are safety nets for a hung run (several times the slowest figure
// measured), not the figures.
// A soak: ./scripts/setup && go test -race -timeout 30m -run 'TestChaos$' -v -chaos.duration=10m .
func TestChaos(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 8)
	ch := &chaos{t: t, f: f, live: map[string]*chaosWorker{}}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	seed := rng.Uint64()
	rng = rand.New(rand.NewPCG(seed, 2))
	t.Logf("chaos seed %d, duration %v", seed, *chaosDuration)

	// The producer: ~100 records/s, unique data, random keys.
	ctx, stopProducing := context.WithCancel(context.Background())
	var produced []string
	producerDone := make(chan struct{})
	go func() {
		defer close(producerDone)
		for i := 0; ctx.Err() == nil; i++ {
			var entries []types.PutRecordsRequestEntry
			for j := range 10 {
				entries = append(entries, types.PutRecordsRequestEntry{
					PartitionKey: aws.String(fmt.Sprintf("key-%d", rand.IntN(1000))),
					Data:         []byte(fmt.Sprintf("r%06d-%d", i, j)),
				})
			}
			for len(entries) > 0 && ctx.Err() == nil {
				out, err := f.kin.PutRecords(context.Background(), &kinesis.PutRecordsInput{StreamName: &f.stream, Records: entries})
				if err != nil {
					time.Sleep(50 * time.Millisecond)
					continue
				}
				var again []types.PutRecordsRequestEntry
				for k, r := range out.Records {
					if r.ErrorCode != nil {
						again = append(again, entries[k])
					} else {
						produced = append(produced, string(entries[k].Data))
					}
				}
				entries = again
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()

	next := 0
	newID := func() string { next++; return fmt.Sprintf("w%d", next) }
	for range 4 {
		ch.start(newID())
	}
	var crashFailover, gracefulHandoff, joinFair []time.Duration
	var kills, stops, restarts, adds int
	end := time.Now().Add(*chaosDuration)
	for time.Now().Before(end) {
		time.Sleep(time.Duration(1500+rng.IntN(1500)) * time.Millisecond)
		ids := slices.Sorted(mapsKeys(ch.live))
		victim := ch.live[ids[rng.IntN(len(ids))]]
		action := rng.IntN(4)
		switch {
		case len(ids) <= 4: // at least 4 worker processes at all times but during a kill
			action = 3
		case len(ids) >= 7:
			action = rng.IntN(2)
		}
		switch action {
		case 0, 2: // kill; for 2, restart under the same worker ID
			held := ch.shardsOf(victim.n, time.Now(), time.Second)
			victim.killed = true
			killedAt := time.Now()
			ch.mu.Lock()
			victim.log.killedAt = killedAt
			ch.mu.Unlock()
			require.NoError(t, victim.proc.cmd.Process.Signal(syscall.SIGKILL))
			<-victim.exited
			delete(ch.live, victim.id)
			if action == 2 {
				restarts++
				ch.start(victim.id)
			} else {
				kills++
			}
			if took, ok := ch.pickedUp(victim.n, held, killedAt, 15*time.Second); ok && len(held) > 0 {
				crashFailover = append(crashFailover, took)
			} else if len(held) > 0 {
				t.Errorf("shards %v of killed worker %s not read again within 15s", held, victim.id)
			}
		case 1: // graceful stop
			held := ch.shardsOf(victim.n, time.Now(), time.Second)
			victim.stopped = true
			require.NoError(t, victim.proc.cmd.Process.Signal(syscall.SIGTERM))
			exitedAt := <-victim.exited
			delete(ch.live, victim.id)
			stops++
			if took, ok := ch.pickedUp(victim.n, held, exitedAt, 10*time.Second); ok && len(held) > 0 {
				gracefulHandoff = append(gracefulHandoff, took)
			} else if len(held) > 0 {
				t.Errorf("shards %v of stopped worker %s not read again within 10s", held, victim.id)
			}
		case 3:
			adds++
			joined := time.Now()
			ch.start(newID())
			if ch.waitFair(10 * time.Second) {
				joinFair = append(joinFair, time.Since(joined))
			} else {
				t.Errorf("no fair share within 10s of a join")
			}
		}
	}
	stopProducing()
	<-producerDone

	// Every record written is delivered at last.
	want := map[string]bool{}
	for _, d := range produced {
		want[d] = true
	}
	require.Eventually(t, func() bool {
		ch.mu.Lock()
		defer ch.mu.Unlock()
		seen := map[string]bool{}
		for _, d := range ch.deliveries {
			if want[d.data] {
				seen[d.data] = true
			}
		}
		return len(seen) == len(want)
	}, 60*time.Second, 100*time.Millisecond, "records lost")
	steady := ch.steadyCalls(5 * time.Second)
	for _, w := range ch.live {
		w.stopped = true
		_ = w.proc.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, w := range ch.live {
		<-w.exited
	}
	for _, w := range ch.all {
		if w.stopped {
			assert.Equal(t, 0, w.proc.cmd.ProcessState.ExitCode(), "worker %s (process %d) exits cleanly on SIGTERM", w.id, w.n)
		}
	}

	dups := checkChaos(t, ch)
	report := []string{
		fmt.Sprintf("records written %d, delivered %d, duplicates %d", len(produced), len(ch.deliveries), dups),
		fmt.Sprintf("processes %d: SIGKILL %d, SIGKILL+restart %d, SIGTERM %d, added %d", len(ch.all), kills, restarts, stops, adds),
		"crash failover (SIGKILL to every shard read again): " + durations(crashFailover),
		"graceful hand-off (exit to every shard read again): " + durations(gracefulHandoff),
		"join to fair share (start to every live worker holding 8/W): " + durations(joinFair),
		steady,
	}
	for _, line := range report {
		t.Log(line)
	}
	if path := os.Getenv("KCL_CHAOS_REPORT"); path != "" {
		_ = os.WriteFile(path, []byte(fmt.Sprintln(report)), 0o644)
	}
}

// checkChaos checks the deliveries: per process and shard in sequence order,
// and every duplicate by the rule (workerLog.mayDeliverAgain). It returns
// the number of duplicates.
func checkChaos(t *testing.T, ch *chaos) int {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	procs := map[int]*chaosWorker{}
	for _, w := range ch.all {
		procs[w.n] = w
	}
	type key struct {
		n     int
		shard string
	}
	last := map[key]string{}
	for _, d := range ch.deliveries {
		k := key{d.n, d.shard}
		if prev, ok := last[k]; ok {
			require.True(t, seqLess(prev, d.seq), "process %d (%s) shard %s: %s after %s", d.n, d.worker, d.shard, d.seq, prev)
		}
		last[k] = d.seq
	}
	firstBy := map[string]chaosDelivery{}
	dups, acked := 0, 0
	var oldestAck time.Duration
	for _, d := range ch.deliveries {
		prev, seen := firstBy[d.data]
		firstBy[d.data] = d
		if !seen {
			continue
		}
		dups++
		w := procs[prev.n]
		first := workerDelivery{prev.shard, prev.seq, prev.data}
		if at, ok := w.log.acked[prev.shard+" "+prev.seq]; ok {
			acked++
			oldestAck = max(oldestAck, w.log.killedAt.Sub(at))
		}
		ok, why := w.log.mayDeliverAgain(first, 100*time.Millisecond, time.Second)
		assert.True(t, ok, "record %s delivered by process %d (%s), and again by %s: %s", d.data, prev.n, prev.worker, d.worker, why)
	}
	t.Logf("duplicates %d: %d never acked, %d acked but not checkpointed (acked at most %v before the kill)", dups, dups-acked, acked, oldestAck.Round(time.Millisecond))
	return dups
}

func durations(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none measured"
	}
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return fmt.Sprintf("n=%d median %v max %v", len(s), s[len(s)/2].Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond))
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// waitFair waits until the live workers hold the 8 leases, each its fair
// share, as the lease table says.
func (ch *chaos) waitFair(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		held := map[string]int{}
		total := 0
		for _, item := range ch.f.leaseItems() {
			if owner := str(item, attrOwner); owner != "" && str(item, attrCheckpoint) != checkpointShardEnd {
				held[owner]++
				total++
			}
		}
		low, high := fairShare(8, len(ch.live), 0)
		fair := total == 8
		for id := range ch.live {
			fair = fair && held[id] >= low && held[id] <= high
		}
		if fair {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// steadyCalls measures the live workers' lease-table calls over a window in
// which nothing changes, per held lease per minute.
func (ch *chaos) steadyCalls(window time.Duration) string {
	sum := func() (r, w int64) {
		ch.mu.Lock()
		defer ch.mu.Unlock()
		for _, wk := range ch.live {
			r += wk.calls[0]
			w += wk.calls[1]
		}
		return r, w
	}
	time.Sleep(1500 * time.Millisecond) // a fresh "#ddb" line from everyone
	r0, w0 := sum()
	time.Sleep(window)
	r1, w1 := sum()
	perLeaseMinute := func(n int64) float64 { return float64(n) / 8 / window.Minutes() }
	return fmt.Sprintf("steady state, %d workers, 8 leases, LeaseDuration 1s, CheckpointInterval 100ms: lease-table reads %.1f, writes %.1f per lease per minute",
		len(ch.live), perLeaseMinute(r1-r0), perLeaseMinute(w1-w0))
}
