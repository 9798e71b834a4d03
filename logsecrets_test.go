package kcl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Markers of what the run below produces: every partition key holds
// secretKey (as a user's email would), every payload secretData.
const (
	secretKey  = "uid-xq7"
	secretData = "zv9-data"
)

// Every log line of a run, at every level down to Debug, holds no payload,
// and no partition key above Debug; nor do Stats or the error Process
// returns. The run consumes with Consume (one stream, then two), then
// with Process (a handler
// that fails and is retried, one that panics, OnFailure, a failure that
// stops Process), over plain records, KPL aggregates (two with user
// records on the wrong shard, dropped: a Warn, then Debug) and a malformed
// one.
func TestLogsCarryNoPayloadAndNoKeyAboveDebug(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 2)
	key := func(s string) string { return secretKey + "-" + s + "@example.org" }
	data := func(s string) string { return secretData + "-" + s }
	f.put(40, func(i int) string { return key(fmt.Sprint(i % 10)) }, func(i int) string { return data(fmt.Sprintf("%02d", i)) })
	lower, upper := aggHashKey(0, 0), aggHashKey(2, 0) // on shard 0, on shard 1
	putRaw := func(blob []byte) {
		_, err := f.kin.PutRecord(context.Background(), &kinesis.PutRecordInput{StreamName: &f.stream, PartitionKey: aws.String(key("outer")), ExplicitHashKey: aws.String(lower), Data: blob})
		require.NoError(t, err)
	}
	putRaw(aggregate([]userRecord{{partitionKey: key("a"), explicitHashKey: lower, data: []byte(data("a"))}, {partitionKey: key("b"), explicitHashKey: upper, data: []byte(data("b"))}}))
	putRaw(aggregate([]userRecord{{partitionKey: key("c"), explicitHashKey: upper, data: []byte(data("c"))}})) // misplaced: Warn
	putRaw(aggregate([]userRecord{{partitionKey: key("d"), explicitHashKey: upper, data: []byte(data("d"))}})) // misplaced again: Debug
	bad := aggregate([]userRecord{{partitionKey: key("e"), data: []byte(data("e"))}})
	bad[len(bad)-1] ^= 0xff // MD5 wrong: delivered whole, logged
	putRaw(bad)
	const total = 40 + 1 // the three aggregates with a key on the wrong shard are dropped (and logged); the malformed one is delivered whole

	scan := &logScan{}
	opts := f.options()
	opts.Logger = scan.logger()
	var stats []string

	// Consume.
	s := startConsumer(t, opts)
	s.receive(total, 30*time.Second, ackAll)
	stats = append(stats, fmt.Sprintf("%+v", s.c.Stats()))
	require.NoError(t, s.stop(nil))

	// Consume, multi-stream: this stream and another.
	g := newFixture(t, emu.kinesisLocal, 1)
	g.put(10, func(i int) string { return key(fmt.Sprint("g", i)) }, func(i int) string { return data(fmt.Sprintf("g%02d", i)) })
	multi := opts
	multi.AppName, multi.StreamName, multi.Streams = f.app+"-multi", "", []string{f.stream, g.stream}
	s = startConsumer(t, multi)
	s.receive(total+10, 30*time.Second, ackAll)
	stats = append(stats, fmt.Sprintf("%+v", s.c.Stats()))
	require.NoError(t, s.stop(nil))

	// Process: data 03 always fails (OnFailure takes it), 05 panics once,
	// 07 fails once.
	opts.AppName, opts.LeaseTable = f.app+"-process", ""
	opts.Concurrency, opts.MaxAttempts, opts.RetryDelay = 4, 2, 10*time.Millisecond
	var mu sync.Mutex
	done := map[string]bool{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opts.OnFailure = func(ctx context.Context, rec Record, err error) error { return nil }
	c, err := New(opts)
	require.NoError(t, err)
	err = c.Process(ctx, func(ctx context.Context, rec Record) error {
		d := string(rec.Data)
		switch {
		case d == data("03"):
			return errors.New("handler failed (test)")
		case d == data("05") && Attempt(ctx) == 1:
			panic("handler panicked (test)")
		case d == data("07") && Attempt(ctx) == 1:
			return errors.New("handler failed once (test)")
		}
		mu.Lock()
		defer mu.Unlock()
		done[d] = true
		if len(done) == total-1 {
			stats = append(stats, fmt.Sprintf("%+v", c.Stats()))
			cancel()
		}
		return nil
	})
	require.NoError(t, err)

	// Process stopped by a record that fails with no OnFailure: its error.
	opts.AppName, opts.OnFailure = f.app+"-stop", nil
	err = Process(context.Background(), opts, func(ctx context.Context, rec Record) error {
		if string(rec.Data) == data("03") {
			return errors.New("handler failed (test)")
		}
		return nil
	})
	require.Error(t, err)
	assert.NotContains(t, err.Error(), secretKey)
	assert.NotContains(t, err.Error(), secretData)
	for _, st := range stats {
		assert.NotContains(t, st, secretKey)
		assert.NotContains(t, st, secretData)
	}

	scan.check(t)
	for _, want := range []string{"outside the shard's hash-key range", "malformed aggregated record", "handler panicked", "retrying the record", "level=DEBUG"} {
		assert.Contains(t, scan.text(), want, "the run reached what it is meant to")
	}
	assert.Positive(t, scan.keysAtDebug(), "the second misplaced aggregate logs its key at Debug: the scan sees keys")
}

// The forms a payload holding secretData takes when printed: as it is (or
// quoted, %q), and its bytes as decimals (a []byte printed with %v) or as
// hex (%x).
var payloadForms = func() []string {
	var dec, hex []string
	for _, b := range []byte(secretData) {
		dec = append(dec, fmt.Sprint(b))
		hex = append(hex, fmt.Sprintf("%02x", b))
	}
	return []string{secretData, strings.Join(dec, " "), strings.Join(hex, "")}
}()

// leakIn says what line, written by slog's text handler, gives away: a
// payload at any level, a partition key above Debug; "" for neither.
func leakIn(line string) string {
	for _, form := range payloadForms {
		if strings.Contains(line, form) {
			return "a payload (" + form + ")"
		}
	}
	if strings.Contains(line, secretKey) && !strings.Contains(line, " level=DEBUG ") {
		return "a partition key above Debug"
	}
	return ""
}

// logScan is a Debug logger that checks each line as it is written (leakIn)
// and keeps them all. Safe for concurrent use.
type logScan struct {
	mu    sync.Mutex
	all   strings.Builder
	keys  int      // lines at Debug with a partition key
	leaks []string // the lines leakIn refuses, with why
}

var lineStart = regexp.MustCompile(`^time=\S+ level=(\w+) `)

// Write takes one line: slog's text handler writes each record in one call.
func (s *logScan) Write(p []byte) (int, error) {
	line := strings.TrimSuffix(string(p), "\n")
	s.mu.Lock()
	defer s.mu.Unlock()
	s.all.WriteString(line + "\n")
	switch why := leakIn(line); {
	case !lineStart.MatchString(line) || strings.Contains(line, "\n"):
		s.leaks = append(s.leaks, "not one text handler line: "+line)
	case why != "":
		s.leaks = append(s.leaks, why+": "+line)
	case strings.Contains(line, secretKey):
		s.keys++
	}
	return len(p), nil
}

func (s *logScan) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(s, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (s *logScan) text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.all.String()
}

func (s *logScan) keysAtDebug() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys
}

// check fails the test on every line that leaks, and if nothing was
// logged at Debug (a scan of nothing).
func (s *logScan) check(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.leaks {
		t.Errorf("logged %s", l)
	}
	assert.Contains(t, s.all.String(), " level=DEBUG ", "the scan saw Debug lines")
}

// Stats carries no partition key or payload: its only strings name
// workers, streams, shards and checkpoints, and it holds no bytes. A field
// added to Stats must be added here, once it is known to be neither.
func TestStatsHoldNoKeyOrPayloadField(t *testing.T) {
	allowed := map[string]bool{"Stats.WorkerID": true, "ShardStats.ShardID": true, "ShardStats.StreamARN": true, "ShardStats.Owner": true, "ShardStats.Checkpoint": true}
	var walk func(t reflect.Type)
	walk = func(typ reflect.Type) {
		for i := range typ.NumField() {
			fld := typ.Field(i)
			ft := fld.Type
			for ft.Kind() == reflect.Slice || ft.Kind() == reflect.Pointer || ft.Kind() == reflect.Map {
				if ft.Kind() == reflect.Map {
					assert.Fail(t, "a map in Stats", "%s.%s", typ.Name(), fld.Name)
				}
				assert.NotEqual(t, reflect.Uint8, ft.Elem().Kind(), "bytes in %s.%s", typ.Name(), fld.Name)
				ft = ft.Elem()
			}
			switch ft.Kind() {
			case reflect.String:
				assert.True(t, allowed[typ.Name()+"."+fld.Name], "a string field %s.%s: may it hold a key or a payload?", typ.Name(), fld.Name)
			case reflect.Struct:
				if ft.PkgPath() == typ.PkgPath() {
					walk(ft)
				}
			case reflect.Interface:
				assert.Fail(t, "an interface in Stats", "%s.%s", typ.Name(), fld.Name)
			}
		}
	}
	walk(reflect.TypeFor[Stats]())
}
