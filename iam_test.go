package kcl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/smithy-go/middleware"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// iamModes names, for each policy file in docs/ that the library's modes
// use, the run on the emulators whose calls it must grant: exactly those,
// but for the actions listed in unrecorded, each with why no run on the
// emulators can show it.
var iamModes = []struct {
	file       string
	run        func(t *testing.T, f *fixture, rec *opRecorder) Options
	unrecorded map[string]string
}{
	{file: "docs/iam-polling.json", run: func(t *testing.T, f *fixture, rec *opRecorder) Options {
		return rec.options(f)
	}},
	{file: "docs/iam-fanout.json", run: func(t *testing.T, f *fixture, rec *opRecorder) Options {
		opts := rec.options(f)
		opts.Kinesis = rec.fanOutClient()
		opts.EnhancedFanOut = true
		return opts
	}},
	{file: "docs/iam-nocreate.json", run: func(t *testing.T, f *fixture, rec *opRecorder) Options {
		_, err := f.ddb.CreateTable(context.Background(), LeaseTableSettings{}.createInput(f.app)) // by infrastructure code
		require.NoError(t, err)
		opts := rec.options(f)
		opts.LeaseTableSettings = LeaseTableSettings{NoCreate: true}
		return opts
	}},
	{file: "docs/iam-table-settings.json", run: func(t *testing.T, f *fixture, rec *opRecorder) Options {
		rec.answer("UpdateContinuousBackups", &dynamodb.UpdateContinuousBackupsOutput{}) // dynalite has no such call
		opts := rec.options(f)
		opts.LeaseTableSettings = LeaseTableSettings{
			Tags: map[string]string{"team": "payments"}, DeletionProtection: true, PointInTimeRecovery: true,
			KMSKeyID: "arn:aws:kms:us-east-1:000000000000:key/11111111-2222-3333-4444-555555555555",
		}
		return opts
	}, unrecorded: map[string]string{
		"dynamodb:TagResource":                "authorizes CreateTable's Tags; no call of its own",
		"kms:DescribeKey":                     "DynamoDB calls it with the creator's credentials for KMSKeyID; no emulator has KMS",
		"kms:CreateGrant":                     "DynamoDB calls it with the creator's credentials for KMSKeyID; no emulator has KMS",
		"kms:Encrypt":                         "DynamoDB's key policy for a customer managed key names it for the principals using the table; no emulator has KMS",
		"kms:Decrypt":                         "as kms:Encrypt",
		"kms:ReEncryptFrom":                   "as kms:Encrypt (its ReEncrypt*)",
		"kms:ReEncryptTo":                     "as kms:Encrypt (its ReEncrypt*)",
		"kms:GenerateDataKey":                 "as kms:Encrypt (its GenerateDataKey*)",
		"kms:GenerateDataKeyWithoutPlaintext": "as kms:Encrypt (its GenerateDataKey*)",
	}},
	{file: "docs/iam-fanout-preregistered.json", run: func(t *testing.T, f *fixture, rec *opRecorder) Options {
		opts := rec.options(f)
		opts.Kinesis = rec.fanOutClient()
		opts.EnhancedFanOut = true
		opts.ConsumerARN = f.registerConsumer(f.app + "-given") // by infrastructure code: never registered by kcl
		return opts
	}},
}

// iamCommandFiles are the policies of cmd/kcl, which its own TestIAMPolicies
// checks against the command's calls.
var iamCommandFiles = []string{"docs/iam-cmd-readonly.json", "docs/iam-cmd-writes.json"}

// Every policy file in docs/ is checked by a test.
func TestIAMEveryPolicyFileIsChecked(t *testing.T) {
	files, err := filepath.Glob("docs/iam*.json")
	require.NoError(t, err)
	checked := slices.Clone(iamCommandFiles)
	for _, m := range iamModes {
		checked = append(checked, m.file)
	}
	assert.ElementsMatch(t, checked, files)
}

// Each policy grants exactly the actions kcl calls in its mode, each on
// the kind of resource it is called on (a stream, a consumer, the lease
// table), recorded from a run on the emulators: a call missing from the
// file fails, and so does an action in the file that the run never called
// (unless listed as unrecorded, with its reason), or one granted on a kind
// of resource it is never called on. The run reaches every call kcl makes in
// the mode: a missing table created, leases created, a shard ended, leases
// taken by other
// workers and released, the group item read by a worker that is no
// scanner, heartbeat items removed at shutdown.
func TestIAMPoliciesGrantExactlyTheActionsKclCalls(t *testing.T) {
	for _, m := range iamModes {
		t.Run(strings.TrimSuffix(filepath.Base(m.file), ".json"), func(t *testing.T) {
			noLeak(t)
			f := newFixture(t, emu.kinesisLocal, 3)
			rec := &opRecorder{}
			opts := m.run(t, f, rec)
			recordedRun(t, f, opts)
			granted := policyGrants(t, m.file)
			for action, why := range m.unrecorded {
				n := len(granted)
				granted = slices.DeleteFunc(granted, func(g string) bool { return strings.HasPrefix(g, action+" on ") })
				assert.Less(t, len(granted), n, "%s listed as unrecorded (%s) but not granted", action, why)
			}
			assert.ElementsMatch(t, rec.calls(), granted, "recorded calls (first) against %s (second)", m.file)
		})
	}
}

// recordedRun consumes records with one worker (Consume), splits a shard,
// starts two more that take leases from it (Process, whose handler fails
// some records once, and ProcessBatch, whose first batch fails once), puts
// more records, lets the third worker, which is no scanner (group.go), read
// the group item, and stops all three. Every partition key holds secretKey
// and every payload secretData, and every log line, at Debug, is checked
// for them (logScan): in fan-out modes the run subscribes, resubscribes to
// the split's children and confirms the parent's end.
func recordedRun(t *testing.T, f *fixture, opts Options) {
	scan := &logScan{}
	opts.Logger = scan.logger()
	put := func(n int, batch string) []put {
		return f.put(n, func(i int) string { return fmt.Sprintf("%s-k%d@example.org", secretKey, i) },
			func(i int) string { return fmt.Sprintf("%s-%s%06d", secretData, batch, i) })
	}
	first := put(30, "a")
	opts.WorkerID = "w1"
	w1 := startConsumer(t, opts)
	assert.ElementsMatch(t, putData(first), dataOf(w1.receive(len(first), 30*time.Second, ackAll)))
	f.splitShard("shardId-000000000000") // a shard ends: fan-out confirms it by GetRecords

	type handledBy struct{ worker, data string }
	handled := make(chan handledBy, 1000) // by w2 and w3
	opts.WorkerID = "w2"
	w2 := goProcess(t, opts, func(ctx context.Context, c *Consumer) error {
		return c.Process(ctx, func(ctx context.Context, rec Record) error {
			if Attempt(ctx) == 1 && strings.HasSuffix(string(rec.Data), "3") {
				return errors.New("handler failed once (test)")
			}
			handled <- handledBy{"w2", string(rec.Data)}
			return nil
		})
	})
	opts.WorkerID = "w3"
	var batchFailed atomic.Bool
	w3 := goProcess(t, opts, func(ctx context.Context, c *Consumer) error {
		return c.ProcessBatch(ctx, func(ctx context.Context, recs []Record) error {
			if batchFailed.CompareAndSwap(false, true) {
				return errors.New("batch failed once (test)")
			}
			for _, r := range recs {
				handled <- handledBy{"w3", string(r.Data)}
			}
			return nil
		})
	})
	more := put(30, "b")
	var got []string
	seen := map[string]bool{}
	deadline := time.After(30 * time.Second)
	settled := time.After(3 * opts.LeaseDuration)
	again := time.NewTicker(opts.LeaseDuration / 2) // more records until w2 and w3 each handled some
	defer again.Stop()
	for len(got) < len(more) || settled != nil || !seen["w2"] || !seen["w3"] {
		select {
		case r := <-w1.ch:
			r.Ack()
			got = append(got, string(r.Data))
		case h := <-handled:
			got = append(got, h.data)
			seen[h.worker] = true
		case <-again.C:
			if !seen["w2"] || !seen["w3"] {
				more = append(more, put(30, fmt.Sprint("c", len(more)))...)
			}
		case <-settled:
			settled = nil
		case <-deadline:
			t.Fatalf("received %d of %d records; w2, w3 handled some: %v", len(got), len(more), seen)
		}
	}
	assert.Subset(t, got, putData(more))
	require.NoError(t, w3.stop())
	require.NoError(t, w2.stop())
	require.NoError(t, w1.stop(ackAll))
	scan.check(t)
}

// background is a worker's Process or ProcessBatch, run in the background.
type background struct {
	cancel context.CancelFunc
	done   chan error
}

// goProcess builds a Consumer from opts and runs run on it until stop.
func goProcess(t *testing.T, opts Options, run func(ctx context.Context, c *Consumer) error) *background {
	c, err := New(opts)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	r := &background{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- run(ctx, c) }()
	t.Cleanup(func() { r.stop() })
	return r
}

// stop cancels the run and returns its error; again, the same error.
func (r *background) stop() error {
	r.cancel()
	err := <-r.done
	r.done <- err
	return err
}

// opRecorder records the AWS operations of the clients it builds, by
// their IAM action names (service prefix, then the operation) and the kind
// of resource each names (callKind). An operation it was told to answer
// does not reach the emulator.
type opRecorder struct {
	mu      sync.Mutex
	seen    map[string]bool // "action on kind"
	answers map[string]any  // by operation
}

func (r *opRecorder) answer(op string, out any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.answers == nil {
		r.answers = map[string]any{}
	}
	r.answers[op] = out
}

// calls returns the calls recorded, as "action on kind", sorted.
func (r *opRecorder) calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Sorted(maps.Keys(r.seen))
}

// callKind returns the kind of resource, as IAM authorizes it, that the
// input of op names: a table (TableName), a consumer (by its ARN, or its
// name with its stream's), or a stream (by its name or ARN, or by an
// iterator or a page token of it). RegisterStreamConsumer names the
// consumer it makes, but is authorized on the stream.
func callKind(op string, params any) string {
	v := reflect.Indirect(reflect.ValueOf(params))
	set := func(field string) bool { f := v.FieldByName(field); return f.IsValid() && !f.IsZero() }
	switch {
	case set("TableName"):
		return "table"
	case set("ConsumerARN"), set("ConsumerName") && op != "RegisterStreamConsumer":
		return "consumer"
	case set("StreamARN"), set("StreamName"), set("ShardIterator"), set("NextToken"):
		return "stream"
	}
	return "resource of unknown kind"
}

// arnKind returns the kind of resource a policy's Resource (an ARN
// pattern) names, as callKind does for a call.
func arnKind(arn string) string {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) < 6 || parts[0] != "arn" {
		return "not an ARN: " + arn
	}
	service, res := parts[2], parts[5]
	switch {
	case service == "kinesis" && strings.HasPrefix(res, "stream/") && strings.Contains(res, "/consumer/"):
		return "consumer"
	case service == "kinesis" && strings.HasPrefix(res, "stream/"):
		return "stream"
	case service == "dynamodb" && strings.HasPrefix(res, "table/") && !strings.Contains(res[len("table/"):], "/"):
		return "table"
	case service == "kms" && strings.HasPrefix(res, "key/"):
		return "key"
	case service == "iam" && strings.HasPrefix(res, "role/"):
		return "role"
	}
	return "resource of unknown kind: " + arn
}

func (r *opRecorder) middleware(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("kclRecordOperation", func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
		op := awsmiddleware.GetOperationName(ctx)
		r.mu.Lock()
		if r.seen == nil {
			r.seen = map[string]bool{}
		}
		r.seen[strings.ToLower(awsmiddleware.GetServiceID(ctx))+":"+op+" on "+callKind(op, in.Parameters)] = true
		answer, ok := r.answers[op]
		r.mu.Unlock()
		if ok {
			return middleware.InitializeOutput{Result: answer}, middleware.Metadata{}, nil
		}
		return next.HandleInitialize(ctx, in)
	}), middleware.After)
}

// options returns f's options with recording clients.
func (r *opRecorder) options(f *fixture) Options {
	opts := f.options()
	opts.Logger = discardLogger()
	opts.Kinesis = kinesis.NewFromConfig(testAWSConfig(), func(o *kinesis.Options) {
		o.BaseEndpoint = aws.String(emu.kinesisLocal.Endpoint)
		o.APIOptions = append(o.APIOptions, r.middleware)
	})
	opts.DynamoDB = dynamodb.NewFromConfig(testAWSConfig(), func(o *dynamodb.Options) {
		o.BaseEndpoint = aws.String(emu.dynalite.Endpoint)
		o.APIOptions = append(o.APIOptions, r.middleware)
	})
	return opts
}

// fanOutClient is fanOutClient, recording.
func (r *opRecorder) fanOutClient() KinesisAPI {
	return &emulatorSubscriptions{KinesisAPI: kinesis.NewFromConfig(testAWSConfig(), func(o *kinesis.Options) {
		o.BaseEndpoint = aws.String(emu.kinesisLocal.TLS)
		o.HTTPClient = emulatorHTTPClient()
		o.APIOptions = append(o.APIOptions, r.middleware)
	}), conns: map[string]*http.Client{}}
}

// policyGrants returns what a policy file allows, as "action on kind"
// (arnKind of each Resource), checking that it is a plain identity
// policy: Allow statements with a resource, no wildcard action, no action
// twice in a statement. An action may be granted on several resources by
// several statements.
func policyGrants(t *testing.T, path string) []string {
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	var policy struct {
		Version   string
		Statement []struct {
			Effect   string
			Action   []string
			Resource any
		}
	}
	require.NoError(t, json.Unmarshal(raw, &policy))
	require.Equal(t, "2012-10-17", policy.Version)
	var grants []string
	for _, s := range policy.Statement {
		require.Equal(t, "Allow", s.Effect)
		resources := oneOrMany(t, s.Resource)
		require.NotEmpty(t, resources, "%s: a statement without Resource", path)
		for _, a := range s.Action {
			require.NotContains(t, a, "*", "%s: %s is a wildcard", path, a)
		}
		require.Len(t, slices.Compact(slices.Sorted(slices.Values(s.Action))), len(s.Action), "%s: an action twice in a statement", path)
		for _, a := range s.Action {
			for _, r := range resources {
				if g := a + " on " + arnKind(r); !slices.Contains(grants, g) {
					grants = append(grants, g)
				}
			}
		}
	}
	return grants
}

// oneOrMany returns a statement's Action or Resource: a string or a list of them.
func oneOrMany(t *testing.T, v any) []string {
	switch r := v.(type) {
	case string:
		return []string{r}
	case []any:
		var out []string
		for _, e := range r {
			s, ok := e.(string)
			require.True(t, ok, "not a string: %v", e)
			out = append(out, s)
		}
		return out
	}
	return nil
}

// policyActions returns the actions a policy file allows (policyGrants),
// on whatever resource.
func policyActions(t *testing.T, path string) []string {
	var actions []string
	for _, g := range policyGrants(t, path) {
		if a, _, _ := strings.Cut(g, " on "); !slices.Contains(actions, a) {
			actions = append(actions, a)
		}
	}
	return actions
}
