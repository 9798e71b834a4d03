package kcl

import (
	"context"
	"fmt"
	"io"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// group runs several in-process workers of one application and records what
// each delivered. Each worker acks every record as it receives it.
type group struct {
	t  *testing.T
	f  *fixture
	mu sync.Mutex
	// deliveries in arrival order, per worker
	got     map[string][]Record
	workers map[string]*groupWorker
}

type groupWorker struct {
	c      *Consumer
	cancel context.CancelFunc
	done   chan struct{}
}

func newGroup(t *testing.T, f *fixture) *group {
	g := &group{t: t, f: f, got: map[string][]Record{}, workers: map[string]*groupWorker{}}
	t.Cleanup(func() {
		for id := range g.workers {
			g.stop(id)
		}
	})
	return g
}

func (g *group) start(id string, edit func(*Options)) *Consumer {
	opts := g.f.options()
	opts.WorkerID = id
	if edit != nil {
		edit(&opts)
	}
	c, err := New(opts)
	require.NoError(g.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	w := &groupWorker{c: c, cancel: cancel, done: make(chan struct{})}
	g.mu.Lock()
	g.workers[id] = w
	g.mu.Unlock()
	ch := c.Consume(ctx)
	go func() {
		defer close(w.done)
		for r := range ch {
			g.mu.Lock()
			g.got[id] = append(g.got[id], r)
			g.mu.Unlock()
			r.Ack()
		}
	}()
	return c
}

// stop shuts worker id down gracefully and waits until it is done.
func (g *group) stop(id string) {
	g.mu.Lock()
	w, ok := g.workers[id]
	delete(g.workers, id)
	g.mu.Unlock()
	if ok {
		w.cancel()
		<-w.done
		require.NoError(g.t, w.c.Err())
	}
}

// held returns how many leases each running worker holds.
func (g *group) held() map[string]int {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := map[string]int{}
	for id, w := range g.workers {
		out[id] = len(w.c.held.list())
	}
	return out
}

// waitFair waits until the running workers hold shards leases between
// them, each its fair share, and returns how long that took.
func (g *group) waitFair(shards int, timeout time.Duration) time.Duration {
	g.t.Helper()
	start := time.Now()
	require.Eventually(g.t, func() bool {
		held := g.held()
		low, high := fairShare(shards, len(held), 0)
		total := 0
		for _, n := range held {
			if n < low || n > high {
				return false
			}
			total += n
		}
		return total == shards
	}, timeout, 20*time.Millisecond, "fair share not reached: %v", g.held())
	return time.Since(start)
}

// all returns every delivery so far.
func (g *group) all() []Record {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []Record
	for _, rs := range g.got {
		out = append(out, rs...)
	}
	return out
}

// waitDelivered waits until every record of puts was delivered.
func (g *group) waitDelivered(puts []put, timeout time.Duration) {
	g.t.Helper()
	want := map[string]bool{}
	for _, p := range puts {
		want[p.data] = true
	}
	require.Eventually(g.t, func() bool {
		seen := map[string]bool{}
		for _, r := range g.all() {
			if want[string(r.Data)] {
				seen[string(r.Data)] = true
			}
		}
		return len(seen) == len(want)
	}, timeout, 20*time.Millisecond)
}

// duplicates counts records delivered more than once, by anyone.
func (g *group) duplicates() int {
	seen := map[string]bool{}
	dups := 0
	for _, r := range g.all() {
		if seen[string(r.Data)] {
			dups++
		}
		seen[string(r.Data)] = true
	}
	return dups
}

func TestWorkersShareShardsFairly(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 8)
	puts := f.putN(160, 32, "")
	g := newGroup(t, f)
	for i := range 3 {
		g.start(fmt.Sprintf("w%d", i), nil)
	}
	took := g.waitFair(8, 20*time.Second)
	t.Logf("3 workers starting together reached 3/3/2 of 8 shards in %v", took)
	g.waitDelivered(puts, 30*time.Second)
	assert.Zero(t, g.duplicates())
}

func TestMaxLeasesPerWorkerCaps(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 5)
	g := newGroup(t, f)
	ddb := &countingDynamo{DynamoDBAPI: f.ddb}
	g.start("capped", func(o *Options) { o.MaxLeasesPerWorker = 2; o.DynamoDB = ddb })
	require.Eventually(t, func() bool { return g.held()["capped"] == 2 }, 10*time.Second, 20*time.Millisecond)
	// Several more reads of the table, each a chance to take a free lease.
	scans := ddb.reads.Load()
	require.Eventually(t, func() bool {
		require.LessOrEqual(t, g.held()["capped"], 2)
		return ddb.reads.Load() >= scans+5
	}, 20*time.Second, 5*time.Millisecond)
	assert.Equal(t, 2, g.held()["capped"])
}

func TestJoinReachesFairShareByHandoffWithoutRereadingAckedRecords(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 8)
	g := newGroup(t, f)
	g.start("first", nil)
	g.waitFair(8, 20*time.Second)

	// A producer writes while workers join.
	stop := make(chan struct{})
	produced := make(chan []put)
	go func() {
		var all []put
		for i := 0; ; i++ {
			select {
			case <-stop:
				produced <- all
				return
			default:
			}
			all = append(all, f.putN(16, 16, fmt.Sprintf("b%d-", i))...)
			time.Sleep(20 * time.Millisecond)
		}
	}()
	joined := time.Now()
	g.start("second", nil)
	took := g.waitFair(8, 20*time.Second)
	g.start("third", nil)
	took3 := g.waitFair(8, 20*time.Second)
	close(stop)
	puts := <-produced
	g.waitDelivered(puts, 30*time.Second)
	t.Logf("join to fair share: second worker %v, third worker %v (since %v ago)", took, took3, time.Since(joined))
	assert.Zero(t, g.duplicates(), "a hand-off never delivers an acked record again")
	checkShardOrderPerWorker(t, g)
}

func TestGracefulStopHandsShardsOverQuickly(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 8)
	first := f.putN(80, 16, "a")
	g := newGroup(t, f)
	g.start("stays", nil)
	g.start("leaves", nil)
	g.waitFair(8, 20*time.Second)
	g.waitDelivered(first, 30*time.Second)

	g.stop("leaves") // returns once its leases are released
	stopped := time.Now()
	// The bound is a safety net; the figure is logged (and measured over
	// many stops by TestChaos).
	require.Eventually(t, func() bool { return g.held()["stays"] == 8 }, 20*time.Second, 10*time.Millisecond,
		"the other worker takes the released shards")
	t.Logf("released shards taken %v after the stopping worker finished", time.Since(stopped))
	second := f.putN(80, 16, "b")
	g.waitDelivered(second, 30*time.Second)
	assert.Zero(t, g.duplicates(), "no acked record is delivered again after a graceful stop")
}

func checkShardOrderPerWorker(t *testing.T, g *group) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, rs := range g.got {
		checkShardOrder(t, rs)
	}
}

// A worker restarted under the same WorkerID finds a lease the table says it
// owns, but that another worker had asked for before the restart: it passes
// it on at once instead of leaving it unread.
func TestRestartedWorkerPassesOnALeaseClaimedBeforeItsRestart(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 2)
	g := newGroup(t, f)
	g.start("stable", nil)
	g.waitFair(2, 20*time.Second)
	g.stop("stable") // leases released
	for i, claim := range []string{"joiner", ""} {
		update := "SET leaseOwner = :o"
		values := map[string]ddbtypes.AttributeValue{":o": &ddbtypes.AttributeValueMemberS{Value: "stable"}}
		if claim != "" {
			update += ", handoffTo = :c"
			values[":c"] = &ddbtypes.AttributeValueMemberS{Value: claim}
		}
		_, err := f.ddb.UpdateItem(context.Background(), &dynamodb.UpdateItemInput{
			TableName: &f.app, UpdateExpression: &update, ExpressionAttributeValues: values,
			Key: map[string]ddbtypes.AttributeValue{attrLeaseKey: &ddbtypes.AttributeValueMemberS{Value: fmt.Sprintf("shardId-%012d", i)}},
		})
		require.NoError(t, err)
	}
	g.start("joiner", nil)
	g.start("stable", nil)
	g.waitFair(2, 10*time.Second)
	puts := f.putN(40, 8, "")
	g.waitDelivered(puts, 30*time.Second)
	assert.Zero(t, g.duplicates())
}

// TestJoinerAfterACrashTakesWhatAScannerPublished: a worker that joins after
// another crashed takes its share of the dead worker's leases as soon as a
// scanner has judged them expired and published it in the group item,
// instead of watching the dead heartbeat for a whole LeaseDuration itself.
// The joiner starts half a LeaseDuration after the kill, so it could judge
// the dead worker itself no earlier than 1.5 LeaseDuration after the kill;
// the scanner judges it about one LeaseDuration after.
func TestJoinerAfterACrashTakesWhatAScannerPublished(t *testing.T) {
	noLeak(t)
	const ld = 10 * time.Second
	f := newFixture(t, emu.kinesisLocal, 8)
	w := startWorkerProcess(t, f, "a-doomed", 0, io.Discard, "KCL_TEST_LEASE="+ld.String())
	go func() {
		for range w.lines {
		}
	}()
	g := newGroup(t, f)
	g.start("b", func(o *Options) { o.LeaseDuration = ld })
	table := &dynamoLeases{db: f.ddb, table: f.app}
	require.Eventually(t, func() bool {
		snap, err := table.list(context.Background(), true)
		owned := 0
		for _, l := range snap.leases {
			if l.owner == "a-doomed" {
				owned++
			}
		}
		return err == nil && owned == 4 && g.held()["b"] == 4
	}, 40*time.Second, 50*time.Millisecond, "the two workers share the shards")

	require.NoError(t, w.cmd.Process.Signal(syscall.SIGKILL))
	killed := time.Now()
	// When the scanner publishes the dead worker, as this test sees it (a
	// consistent read every 50 ms).
	published := make(chan time.Time, 1)
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	go func() {
		for watchCtx.Err() == nil {
			out, err := f.ddb.GetItem(watchCtx, &dynamodb.GetItemInput{
				TableName: &f.app, Key: map[string]ddbtypes.AttributeValue{attrLeaseKey: &ddbtypes.AttributeValueMemberS{Value: groupKey}}, ConsistentRead: aws.Bool(true),
			})
			if err == nil && out.Item != nil {
				if grp, err := groupFromItem(out.Item); err == nil {
					if _, ok := grp.expired[workerKeyPrefix+"a-doomed"]; ok {
						published <- time.Now()
						return
					}
				}
			}
			sleep(watchCtx, 50*time.Millisecond)
		}
	}()
	time.Sleep(ld / 2)
	g.start("c", func(o *Options) { o.LeaseDuration = ld })
	joined := time.Now()
	require.Eventually(t, func() bool { return g.held()["c"] == 4 }, 4*ld, 20*time.Millisecond, "the joiner takes the dead worker's four shards: %v", g.held())
	fair := time.Now()

	var at time.Time
	select {
	case at = <-published:
	case <-time.After(5 * time.Second):
		t.Fatal("the scanner never published the dead worker in the group item")
	}
	assert.Less(t, fair.Sub(joined), ld, "the joiner took the leases before it could have judged the dead worker itself")
	t.Logf("joiner at its fair share %v after the kill, %v after joining, %v after the scanner published the dead worker (LeaseDuration %v)",
		fair.Sub(killed).Round(10*time.Millisecond), fair.Sub(joined).Round(10*time.Millisecond), fair.Sub(at).Round(10*time.Millisecond), ld)
}
