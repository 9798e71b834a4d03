package kcl

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Streams in other accounts (docs/security.md). kinesis-local keeps the
// streams of each account apart by the access key id of the request, a
// 12-digit account ID; a request that names a stream by ARN reaches the
// stream of the ARN's account, whatever the key (and authorizes nothing).
// roleClient adds what kinesis-local lacks: the role's reach.

// The accounts of these tests.
const (
	accountA   = "111111111111" // owns a stream
	accountB   = "222222222222" // runs the application: its lease table, its role
	accountC   = "333333333333" // owns another stream
	accountNil = "444444444444" // owns nothing and may read nothing
)

// accountConfig is testAWSConfig signing as account: kinesis-local takes
// the access key id for the caller's account.
func accountConfig(account string) aws.Config {
	cfg := testAWSConfig()
	cfg.Credentials = credentials.NewStaticCredentialsProvider(account, "secret", "")
	return cfg
}

// accountKinesis returns a kinesis-local client acting as account: on its
// HTTP/2 port, with a connection per subscription (fanOutClient), when
// fanOut is set.
func accountKinesis(t testing.TB, account string, fanOut bool) KinesisAPI {
	needEmulators(t)
	if !fanOut {
		return kinesis.NewFromConfig(accountConfig(account), func(o *kinesis.Options) { o.BaseEndpoint = aws.String(emu.kinesisLocal.Endpoint) })
	}
	return &emulatorSubscriptions{KinesisAPI: kinesis.NewFromConfig(accountConfig(account), func(o *kinesis.Options) {
		o.BaseEndpoint = aws.String(emu.kinesisLocal.TLS)
		o.HTTPClient = emulatorHTTPClient()
	}), conns: map[string]*http.Client{}}
}

// newAccountFixture creates a stream of account on kinesis-local; the
// fixture writes it as that account.
func newAccountFixture(t *testing.T, account string, shards int) *fixture {
	t.Helper()
	kin := accountKinesis(t, account, false).(*kinesis.Client)
	f := &fixture{t: t, kin: kin, ddb: dynamoClient(t), stream: uniqueName(t), app: "app-" + uniqueName(t)}
	_, err := kin.CreateStream(context.Background(), &kinesis.CreateStreamInput{StreamName: &f.stream, ShardCount: aws.Int32(int32(shards))})
	require.NoError(t, err)
	f.waitActive()
	return f
}

// roleClient is Kinesis as an IAM role sees it: a call on a stream of an
// account outside reach is refused with AccessDenied (no resource policy
// there admits the role). A call that does not name its stream by ARN is
// a violation: Kinesis looks a stream named by name up in the caller's own
// account, and consults another account's resource policy only for a
// request that carries the ARN (GetRecords too, by its StreamARN).
//
// Every method is written out, on the wrapped client kin: a method added
// to KinesisAPI fails to compile here until it is checked too.
type roleClient struct {
	kin   KinesisAPI
	name  string   // which client, for messages
	reach []string // the accounts whose streams the role may read

	mu         sync.Mutex
	calls      []string // "Operation account" of each call
	violations []string
}

var _ KinesisAPI = (*roleClient)(nil)

func newRoleClient(name string, kin KinesisAPI, reach ...string) *roleClient {
	return &roleClient{kin: kin, name: name, reach: reach}
}

// check notes a call on the stream (or consumer) arn, and refuses it if
// the role may not reach it. name is the StreamName the request gave.
func (r *roleClient) check(op string, name, arn *string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if aws.ToString(name) != "" || aws.ToString(arn) == "" {
		r.violations = append(r.violations, fmt.Sprintf("%s: %s names its stream by name %q, not by ARN", r.name, op, aws.ToString(name)))
		return &types.AccessDeniedException{Message: aws.String(op + " without a stream ARN")}
	}
	parts := strings.SplitN(aws.ToString(arn), ":", 6)
	account := parts[4]
	r.calls = append(r.calls, op+" "+account)
	if !slices.Contains(r.reach, account) {
		return &types.AccessDeniedException{Message: aws.String(fmt.Sprintf("%s may not call %s on %s", r.name, op, aws.ToString(arn)))}
	}
	return nil
}

// checked returns the calls and violations so far.
func (r *roleClient) checked() (calls, violations []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls), slices.Clone(r.violations)
}

func (r *roleClient) ListShards(ctx context.Context, in *kinesis.ListShardsInput, o ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error) {
	if in.NextToken == nil { // a later page names no stream: its token does
		if err := r.check("ListShards", in.StreamName, in.StreamARN); err != nil {
			return nil, err
		}
	}
	return r.kin.ListShards(ctx, in, o...)
}

func (r *roleClient) GetShardIterator(ctx context.Context, in *kinesis.GetShardIteratorInput, o ...func(*kinesis.Options)) (*kinesis.GetShardIteratorOutput, error) {
	if err := r.check("GetShardIterator", in.StreamName, in.StreamARN); err != nil {
		return nil, err
	}
	return r.kin.GetShardIterator(ctx, in, o...)
}

func (r *roleClient) GetRecords(ctx context.Context, in *kinesis.GetRecordsInput, o ...func(*kinesis.Options)) (*kinesis.GetRecordsOutput, error) {
	if err := r.check("GetRecords", nil, in.StreamARN); err != nil {
		return nil, err
	}
	return r.kin.GetRecords(ctx, in, o...)
}

func (r *roleClient) DescribeStreamSummary(ctx context.Context, in *kinesis.DescribeStreamSummaryInput, o ...func(*kinesis.Options)) (*kinesis.DescribeStreamSummaryOutput, error) {
	if err := r.check("DescribeStreamSummary", in.StreamName, in.StreamARN); err != nil {
		return nil, err
	}
	return r.kin.DescribeStreamSummary(ctx, in, o...)
}

func (r *roleClient) DescribeStreamConsumer(ctx context.Context, in *kinesis.DescribeStreamConsumerInput, o ...func(*kinesis.Options)) (*kinesis.DescribeStreamConsumerOutput, error) {
	arn := in.StreamARN
	if in.ConsumerARN != nil {
		arn = in.ConsumerARN
	}
	if err := r.check("DescribeStreamConsumer", nil, arn); err != nil {
		return nil, err
	}
	return r.kin.DescribeStreamConsumer(ctx, in, o...)
}

func (r *roleClient) RegisterStreamConsumer(ctx context.Context, in *kinesis.RegisterStreamConsumerInput, o ...func(*kinesis.Options)) (*kinesis.RegisterStreamConsumerOutput, error) {
	if err := r.check("RegisterStreamConsumer", nil, in.StreamARN); err != nil {
		return nil, err
	}
	return r.kin.RegisterStreamConsumer(ctx, in, o...)
}

func (r *roleClient) SubscribeToShard(ctx context.Context, in *kinesis.SubscribeToShardInput, o ...func(*kinesis.Options)) (*kinesis.SubscribeToShardOutput, error) {
	if err := r.check("SubscribeToShard", nil, in.ConsumerARN); err != nil {
		return nil, err
	}
	return r.kin.SubscribeToShard(ctx, in, o...)
}

// checkRole fails the test on any violation of r, and unless its calls
// reached exactly the accounts want.
func checkRole(t *testing.T, r *roleClient, want ...string) {
	t.Helper()
	calls, violations := r.checked()
	assert.Empty(t, violations)
	var reached []string
	for _, c := range calls {
		account := c[strings.LastIndexByte(c, ' ')+1:]
		if !slices.Contains(reached, account) {
			reached = append(reached, account)
		}
	}
	assert.ElementsMatch(t, want, reached, "%s: the accounts its calls reached: %v", r.name, calls)
}

// javaLeaseKeys returns the lease keys the Java KCL's multi-stream mode
// gives the shards of f's stream (account:stream:creationEpoch:shardId),
// asking as the stream's own account.
func (f *fixture) javaLeaseKeys() []string {
	f.t.Helper()
	_, id := f.javaStreamID()
	out, err := f.kin.ListShards(context.Background(), &kinesis.ListShardsInput{StreamName: &f.stream})
	require.NoError(f.t, err)
	var keys []string
	for _, sh := range out.Shards {
		keys = append(keys, id+":"+aws.ToString(sh.ShardId))
	}
	return keys
}

// An application of account B reads a stream of account A by its ARN, its
// lease table in B: every call names the stream by ARN, GetRecords too
// (without it, kinesis-local looks the iterator's stream up in B and
// answers ResourceNotFound, as AWS refuses it). Single-stream, the lease
// keys are the shard IDs.
func TestAStreamOfAnotherAccountIsReadByItsARN(t *testing.T) {
	noLeak(t)
	a := newAccountFixture(t, accountA, 2)
	arn, _ := a.javaStreamID()
	puts := a.putN(40, 8, "a")
	role := newRoleClient("B's role", accountKinesis(t, accountB, false), accountA, accountB)
	opts := a.options()
	opts.StreamName, opts.StreamARN, opts.Kinesis = "", arn, role
	s := startConsumer(t, opts)
	got := s.receive(len(puts), 30*time.Second, ackAll)
	s.quiet(300 * time.Millisecond)
	require.NoError(t, s.stop(nil))
	require.ElementsMatch(t, putData(puts), dataOf(got))
	for _, r := range got {
		assert.Equal(t, arn, r.StreamARN)
	}
	checkRole(t, role, accountA)
	items := a.leaseItems()
	assert.ElementsMatch(t, []string{"shardId-000000000000", "shardId-000000000001"}, slices.Collect(maps.Keys(items)))
}

// Options.Streams lists streams of two other accounts, by ARN: each
// stream's lease keys carry its own account, exactly as the Java KCL's
// (account:stream:creationEpoch:shardId), and every call names its stream
// by ARN.
func TestStreamsOfSeveralAccountsKeepTheirAccountsInTheirLeaseKeys(t *testing.T) {
	noLeak(t)
	a, c := newAccountFixture(t, accountA, 2), newAccountFixture(t, accountC, 1)
	c.app = a.app
	arnA, _ := a.javaStreamID()
	arnC, _ := c.javaStreamID()
	want := map[string]string{}
	for _, p := range a.putN(30, 6, "a") {
		want[p.data] = arnA
	}
	for _, p := range c.putN(20, 4, "c") {
		want[p.data] = arnC
	}
	role := newRoleClient("B's role", accountKinesis(t, accountB, false), accountA, accountB, accountC)
	opts := a.options()
	opts.StreamName, opts.Streams, opts.Kinesis = "", []string{arnA, arnC}, role
	col := newCollector(t)
	col.start("w1", opts)
	col.waitFor(want, 30*time.Second)
	require.NoError(t, col.stop("w1"))
	checkStreamDeliveries(t, col.all(), want)
	checkRole(t, role, accountA, accountC)

	items := a.leaseItems()
	checkMultiStreamItems(t, items)
	wantKeys := append(a.javaLeaseKeys(), c.javaLeaseKeys()...)
	assert.ElementsMatch(t, wantKeys, slices.Collect(maps.Keys(items)))
	for _, k := range wantKeys {
		assert.Regexp(t, `^[0-9]{12}:[^:]+:[0-9]+:shardId-[0-9]+$`, k, "the Java KCL's multi-stream key")
	}
}

// Options.KinesisFor gives each stream its own client, a role of its own
// account that reaches nothing else: every call on a stream, its fan-out
// consumer's included, goes to that client and names the stream by ARN;
// the consumer's client (Kinesis) gets none. New asks once per stream, as
// given. Single- and multi-stream, polling and fan-out (and a consumer
// given by ConsumerARN, described through the stream's client); the lease
// keys are the Java KCL's.
func TestKinesisForGivesEachStreamItsOwnClient(t *testing.T) {
	for _, fanOut := range []bool{false, true} {
		t.Run(fmt.Sprintf("fanOut=%v", fanOut), func(t *testing.T) {
			noLeak(t)
			a, c := newAccountFixture(t, accountA, 2), newAccountFixture(t, accountC, 1)
			c.app = a.app + "-multi"
			arnA, _ := a.javaStreamID()
			arnC, _ := c.javaStreamID()
			var mu sync.Mutex
			var asked []string
			roles := map[string]*roleClient{
				arnA: newRoleClient("A's role", accountKinesis(t, accountA, fanOut), accountA),
				arnC: newRoleClient("C's role", accountKinesis(t, accountC, fanOut), accountC),
			}
			deny := newRoleClient("the consumer's client", accountKinesis(t, accountNil, fanOut))
			options := func(f *fixture) Options {
				opts := f.options()
				opts.StreamName, opts.Kinesis, opts.EnhancedFanOut = "", deny, fanOut
				opts.KinesisFor = func(stream string) KinesisAPI {
					mu.Lock()
					defer mu.Unlock()
					asked = append(asked, stream)
					return roles[stream]
				}
				return opts
			}

			// One stream of A, by StreamARN: its lease keys are its shard IDs.
			want := map[string]string{}
			for _, p := range a.putN(30, 6, "a") {
				want[p.data] = arnA
			}
			opts := options(a)
			opts.StreamARN = arnA
			col := newCollector(t)
			col.start("w1", opts)
			col.waitFor(want, 30*time.Second)
			require.NoError(t, col.stop("w1"))
			checkStreamDeliveries(t, col.all(), want)
			assert.ElementsMatch(t, []string{"shardId-000000000000", "shardId-000000000001"}, slices.Collect(maps.Keys(a.leaseItems())))
			assert.Equal(t, []string{arnA}, asked)

			// A's and C's, by Streams, in a table of their own.
			for _, p := range c.putN(20, 4, "c") {
				want[p.data] = arnC
			}
			opts = options(c)
			opts.InitialPosition, opts.Streams = TrimHorizon, []string{arnA, arnC}
			col = newCollector(t)
			col.start("w1", opts)
			col.waitFor(want, 30*time.Second)
			require.NoError(t, col.stop("w1"))
			checkStreamDeliveries(t, col.all(), want)
			items := c.leaseItems()
			checkMultiStreamItems(t, items)
			assert.ElementsMatch(t, append(a.javaLeaseKeys(), c.javaLeaseKeys()...), slices.Collect(maps.Keys(items)))
			assert.Equal(t, []string{arnA, arnA, arnC}, asked, "once per stream, by each New")

			if fanOut {
				// A's stream through a consumer registered beforehand
				// (ConsumerARN): described and subscribed to through A's
				// role, never registered.
				calls, _ := roles[arnA].checked()
				before := len(calls)
				wantA := map[string]string{}
				for data, arn := range want {
					if arn == arnA {
						wantA[data] = arn
					}
				}
				opts = options(a)
				opts.AppName = a.app + "-given"
				opts.StreamARN, opts.ConsumerARN = arnA, a.registerConsumer(a.app+"-given")
				col = newCollector(t)
				col.start("w1", opts)
				col.waitFor(wantA, 30*time.Second)
				require.NoError(t, col.stop("w1"))
				checkStreamDeliveries(t, col.all(), wantA)
				calls, _ = roles[arnA].checked()
				assert.Contains(t, calls[before:], "DescribeStreamConsumer "+accountA)
				assert.Contains(t, calls[before:], "SubscribeToShard "+accountA)
				assert.NotContains(t, calls[before:], "RegisterStreamConsumer "+accountA)
				assert.Equal(t, []string{arnA, arnA, arnC, arnA}, asked)
			}

			checkRole(t, roles[arnA], accountA)
			checkRole(t, roles[arnC], accountC)
			checkRole(t, deny)
			if fanOut {
				calls, _ := roles[arnC].checked()
				assert.Contains(t, calls, "SubscribeToShard "+accountC)
			}
		})
	}
}

// What kinesis-local does with accounts (docs/security.md, "What the
// emulator shows"): a stream named by name is looked up in the caller's
// account (its access key id); by ARN, in the ARN's account, whatever the
// key, with no authorization. GetRecords looks its iterator's stream up in
// the caller's account unless the request carries the stream's ARN. A
// consumer registered on another account's stream by ARN is that
// account's, and described by its ARN from any account.
func TestKinesisLocalScopesStreamsByTheAccessKey(t *testing.T) {
	ctx := context.Background()
	a := newAccountFixture(t, accountA, 1)
	arn, _ := a.javaStreamID()
	assert.True(t, strings.HasPrefix(arn, "arn:aws:kinesis:us-east-1:"+accountA+":stream/"), arn)
	a.putN(1, 1, "a")
	b := accountKinesis(t, accountB, false)

	_, err := b.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: &a.stream})
	assert.True(t, isNotFound(err), "by name, in B: %v", err)
	_, err = b.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamARN: &arn})
	assert.NoError(t, err, "by ARN, from B")
	_, err = accountKinesis(t, "AKIDEXAMPLE", false).DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamARN: &arn})
	assert.NoError(t, err, "by ARN, with a key that is no account ID (the default account)")

	it, err := b.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamARN: &arn, ShardId: aws.String("shardId-000000000000"), ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
	require.NoError(t, err)
	_, err = b.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator})
	assert.True(t, isNotFound(err), "GetRecords without StreamARN looks in B: %v", err)
	out, err := b.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator, StreamARN: &arn})
	require.NoError(t, err, "GetRecords with StreamARN")
	assert.Len(t, out.Records, 1)

	reg, err := b.RegisterStreamConsumer(ctx, &kinesis.RegisterStreamConsumerInput{StreamARN: &arn, ConsumerName: aws.String("from-b")})
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(aws.ToString(reg.Consumer.ConsumerARN), arn+"/consumer/from-b:"), aws.ToString(reg.Consumer.ConsumerARN))
	d, err := a.kin.DescribeStreamConsumer(ctx, &kinesis.DescribeStreamConsumerInput{ConsumerARN: reg.Consumer.ConsumerARN})
	require.NoError(t, err)
	assert.Equal(t, types.ConsumerStatusCreating, d.ConsumerDescription.ConsumerStatus, "just registered")
}

// KinesisFor's nil, a nil interface or a nil *kinesis.Client (a missing
// entry of a map of clients), means the consumer's client, never a client
// that panics at its first call.
func TestKinesisForNilMeansTheConsumersClient(t *testing.T) {
	def := newRoleClient("the consumer's client", nil)
	mine := newRoleClient("orders' client", nil)
	clients := map[string]*kinesis.Client{}
	c, err := New(Options{Streams: []string{"orders", "payments", "refunds"}, Kinesis: def, KinesisFor: func(stream string) KinesisAPI {
		switch stream {
		case "orders":
			return mine
		case "payments":
			return nil
		}
		return clients[stream]
	}})
	require.NoError(t, err)
	var got []KinesisAPI
	for _, s := range c.streamList() {
		got = append(got, s.kinesis)
	}
	assert.Equal(t, []KinesisAPI{mine, def, def}, got)
}
