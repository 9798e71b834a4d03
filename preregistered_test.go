package kcl

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A fan-out consumer registered beforehand, by infrastructure code
// (Options.ConsumerARN, ConsumerARNs; consumerarn.go). On kinesis-local.

// noRegister is a role without kinesis:RegisterStreamConsumer: it refuses
// the call, and counts it.
type noRegister struct {
	KinesisAPI
	registers atomic.Int64
}

func (n *noRegister) RegisterStreamConsumer(ctx context.Context, in *kinesis.RegisterStreamConsumerInput, o ...func(*kinesis.Options)) (*kinesis.RegisterStreamConsumerOutput, error) {
	n.registers.Add(1)
	return nil, &types.AccessDeniedException{Message: aws.String("not authorized to perform: kinesis:RegisterStreamConsumer")}
}

// registerConsumer registers a consumer of f's stream as its own account
// (infrastructure code would) and returns its ARN, still CREATING.
func (f *fixture) registerConsumer(name string) string {
	f.t.Helper()
	arn, _ := f.javaStreamID()
	out, err := f.kin.RegisterStreamConsumer(context.Background(), &kinesis.RegisterStreamConsumerInput{StreamARN: &arn, ConsumerName: &name})
	require.NoError(f.t, err)
	return aws.ToString(out.Consumer.ConsumerARN)
}

// The application in account B reads streams of A and C through consumers
// A and C registered: kcl waits while they are CREATING (as AWS reports
// them for seconds after registration), never calls
// RegisterStreamConsumer, names every stream by ARN, and calls only what
// docs/iam-fanout-preregistered.json allows. One stream (ConsumerARN), and
// both (ConsumerARNs).
func TestAPreRegisteredConsumerIsReadWithoutRegisterPermission(t *testing.T) {
	allowed := policyActions(t, "docs/iam-fanout-preregistered.json")
	for _, multi := range []bool{false, true} {
		t.Run(fmt.Sprintf("multi=%v", multi), func(t *testing.T) {
			noLeak(t)
			a, c := newAccountFixture(t, accountA, 2), newAccountFixture(t, accountC, 1)
			arnA, _ := a.javaStreamID()
			arnC, _ := c.javaStreamID()
			consumerA, consumerC := a.registerConsumer("infra-a"), c.registerConsumer("infra-c")
			want := map[string]string{}
			for _, p := range a.putN(30, 6, "a") {
				want[p.data] = arnA
			}
			status := &consumerStatus{KinesisAPI: accountKinesis(t, accountB, true), creating: 3}
			register := &noRegister{KinesisAPI: status}
			role := newRoleClient("B's role", register, accountA, accountB, accountC)
			opts := a.options()
			opts.StreamName, opts.StreamARN, opts.ConsumerARN = "", arnA, consumerA
			opts.Kinesis, opts.EnhancedFanOut = role, true
			if multi {
				for _, p := range c.putN(20, 4, "c") {
					want[p.data] = arnC
				}
				opts.StreamARN, opts.ConsumerARN = "", ""
				opts.Streams, opts.ConsumerARNs = []string{arnA, arnC}, []string{consumerC, consumerA}
			}
			col := newCollector(t)
			col.start("w1", opts)
			col.waitFor(want, 30*time.Second)
			require.NoError(t, col.stop("w1"))
			checkStreamDeliveries(t, col.all(), want)

			assert.Zero(t, register.registers.Load(), "RegisterStreamConsumer called")
			assert.Greater(t, status.describes.Load(), status.creating, "described until no longer CREATING")
			calls, violations := role.checked()
			assert.Empty(t, violations)
			for _, call := range calls {
				assert.Contains(t, allowed, "kinesis:"+strings.Fields(call)[0], "a call the policy does not allow")
			}
			assert.Contains(t, calls, "SubscribeToShard "+accountA)
		})
	}
}

// A consumer given by ARN that is missing, DELETING, or of a stream of the
// name in another account, ends the consumer at start with an error naming
// its ARN; none is registered in its place.
func TestAPreRegisteredConsumerMissingOrDeletingEndsTheConsumerNamingIt(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 1)
	arn, _ := f.javaStreamID()
	deleting := f.registerConsumer("going") // reported DELETING: kinesis-local's is over too soon to be seen
	for _, tc := range []struct {
		name, consumer string
		status         types.ConsumerStatus // as DescribeStreamConsumer reports it; "" as kinesis-local does
	}{
		{"missing", arn + "/consumer/never-registered:1700000000", ""},
		{"deleting", deleting, types.ConsumerStatusDeleting},
		{"another account's", strings.Replace(deleting, ":000000000000:", ":999999999999:", 1), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kin := &noRegister{KinesisAPI: &consumerStatus{KinesisAPI: fanOutClient(), status: tc.status}}
			opts := f.options()
			opts.Kinesis, opts.EnhancedFanOut, opts.ConsumerARN = kin, true, tc.consumer
			s := startConsumer(t, opts)
			err := s.ends(30 * time.Second)
			require.Error(t, err)
			assert.True(t, errors.Is(err, errGivenConsumer), "%v", err)
			assert.Contains(t, err.Error(), tc.consumer)
			assert.Contains(t, err.Error(), "Options.ConsumerARN")
			assert.Zero(t, kin.registers.Load(), "RegisterStreamConsumer called")
		})
	}
}

// consumerStatus reports every consumer it describes in status, when set,
// and CREATING in its first creating answers (kinesis-local's consumers are
// ACTIVE within moments; AWS's take seconds).
type consumerStatus struct {
	KinesisAPI
	status    types.ConsumerStatus
	creating  int64
	describes atomic.Int64
}

func (c *consumerStatus) DescribeStreamConsumer(ctx context.Context, in *kinesis.DescribeStreamConsumerInput, o ...func(*kinesis.Options)) (*kinesis.DescribeStreamConsumerOutput, error) {
	out, err := c.KinesisAPI.DescribeStreamConsumer(ctx, in, o...)
	switch n := c.describes.Add(1); {
	case err != nil:
	case n <= c.creating:
		out.ConsumerDescription.ConsumerStatus = types.ConsumerStatusCreating
	case c.status != "":
		out.ConsumerDescription.ConsumerStatus = c.status
	}
	return out, err
}

// A consumer given by ARN and deregistered while kcl runs ends the
// consumer, with an error naming its ARN, once a subscription is refused:
// kcl registers none in its place (a consumer it registered itself is
// registered again: TestFanOutRegistersAConsumerDeregisteredWhileRunning).
// What was received before is checkpointed.
func TestAPreRegisteredConsumerDeregisteredWhileRunningEndsTheConsumer(t *testing.T) {
	noLeak(t)
	ctx := context.Background()
	f := newFixture(t, emu.kinesisLocal, 2)
	consumer := f.registerConsumer("infra")
	first := f.putN(40, 8, "a")
	kin := &noRegister{KinesisAPI: fanOutClient()}
	opts := f.options()
	opts.Kinesis, opts.EnhancedFanOut, opts.ConsumerARN = kin, true, consumer
	c, err := New(opts)
	require.NoError(t, err)
	c.resubscribeAfter = 2500 * time.Millisecond // AWS ends the subscriptions of a consumer deregistered; kinesis-local keeps them
	cctx, cancel := context.WithCancel(ctx)
	s := &session{t: t, c: c, ch: c.Consume(cctx), cancel: cancel}
	t.Cleanup(func() { s.stop(nil) })
	got := s.receive(len(first), 30*time.Second, ackAll)
	require.ElementsMatch(t, putData(first), dataOf(got))

	_, err = f.kin.DeregisterStreamConsumer(ctx, &kinesis.DeregisterStreamConsumerInput{ConsumerARN: &consumer})
	require.NoError(t, err)
	err = s.ends(30 * time.Second)
	require.Error(t, err)
	assert.True(t, errors.Is(err, errGivenConsumer), "%v", err)
	assert.Contains(t, err.Error(), consumer)
	assert.Contains(t, err.Error(), "deregistered while running")
	assert.Zero(t, kin.registers.Load(), "RegisterStreamConsumer called")
	items := f.leaseItems()
	for _, p := range first {
		assert.NotEqual(t, checkpointTrimHorizon, str(items[p.shard], "checkpoint"), "shard %s: what was acked is checkpointed", p.shard)
	}
}
