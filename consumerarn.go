package kcl

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// A pre-registered fan-out consumer (Options.ConsumerARN, ConsumerARNs) is
// one that infrastructure code registered: kcl describes it by its ARN and
// never registers one. Its ARN names its stream: the stream's ARN, then
// "/consumer/", its name, ":" and its creation time.

// consumerARNPattern matches a stream consumer's ARN; its first group is
// the stream's ARN, its second the consumer's name.
var consumerARNPattern = regexp.MustCompile(`^(arn:aws[a-z-]*:kinesis:[a-z0-9-]+:[0-9]{12}:stream/([a-zA-Z0-9_.-]{1,128}))/consumer/[a-zA-Z0-9_.-]{1,128}:[0-9]+$`)

// errGivenConsumer says the consumer Options give by ARN cannot be read:
// missing, being deleted, of another stream, or deregistered while
// running. kcl registers no consumer in its place.
var errGivenConsumer = errors.New("the stream consumer given by ARN cannot be read, and kcl registers none in its place")

// consumerGiven reports whether the fan-out consumers are given by ARN.
func (o *Options) consumerGiven() bool { return o.ConsumerARN != "" || o.ConsumerARNs != nil }

// consumerField returns the option that gives the consumers, for errors.
func (o *Options) consumerField() string {
	if o.ConsumerARNs != nil {
		return "ConsumerARNs"
	}
	return "ConsumerARN"
}

// givenConsumerARNs returns the consumer ARNs Options give, nil if none.
func (o *Options) givenConsumerARNs() []string {
	if o.ConsumerARN != "" {
		return []string{o.ConsumerARN}
	}
	return o.ConsumerARNs
}

// consumerOf reports whether consumerARN, a valid one, is of stream as
// Options name it: by its ARN, or by its name (the account and region are
// known only once the stream is described).
func consumerOf(consumerARN, stream string) bool {
	m := consumerARNPattern.FindStringSubmatch(consumerARN)
	if streamARNPattern.MatchString(stream) {
		return m[1] == stream
	}
	return m[2] == stream
}

// checkConsumerARNs validates ConsumerARN and ConsumerARNs: consumer ARNs,
// with EnhancedFanOut and without ConsumerName, one for each stream read
// and each of a stream read.
func (o *Options) checkConsumerARNs() error {
	if !o.consumerGiven() {
		return nil
	}
	field := o.consumerField()
	switch {
	case o.ConsumerARN != "" && o.ConsumerARNs != nil:
		return invalid("ConsumerARNs", "exclusive with ConsumerARN: ConsumerARN for one stream, ConsumerARNs for Streams")
	case o.ConsumerARN != "" && o.multiStream():
		return invalid("ConsumerARN", "is for one stream (StreamName or StreamARN); with Streams, give each stream's consumer in ConsumerARNs")
	case o.ConsumerARNs != nil && !o.multiStream():
		return invalid("ConsumerARNs", "is for Streams; with one stream, set ConsumerARN")
	case !o.EnhancedFanOut:
		return invalid(field, "needs EnhancedFanOut: the consumer is read by SubscribeToShard")
	case o.ConsumerName != "":
		return invalid("ConsumerName", "exclusive with %s: kcl neither registers nor looks up by name a consumer given by ARN", field)
	}
	streams := o.Streams
	if !o.multiStream() {
		streams = []string{o.streamLabel()}
	}
	arns := o.givenConsumerARNs()
	for i, arn := range arns {
		switch {
		case !consumerARNPattern.MatchString(arn):
			return invalid(field, "%q is not a Kinesis stream consumer ARN (arn:aws:kinesis:REGION:ACCOUNT:stream/STREAM/consumer/NAME:CREATED)", arn)
		case slices.Index(arns, arn) != i:
			return invalid(field, "%q is listed twice", arn)
		case !slices.ContainsFunc(streams, func(s string) bool { return consumerOf(arn, s) }):
			return invalid(field, "%q is a consumer of stream %s, which is not read (%s)", arn, consumerARNPattern.FindStringSubmatch(arn)[1], strings.Join(streams, ", "))
		}
	}
	for _, s := range streams {
		n := 0
		for _, arn := range arns {
			if consumerOf(arn, s) {
				n++
			}
		}
		switch {
		case n == 0:
			return invalid(field, "no consumer of stream %q: give one for each stream read", s)
		case n > 1 && streamARNPattern.MatchString(s):
			return invalid(field, "%d consumers of stream %q: give one for each stream read", n, s)
		}
	}
	return nil
}

// givenConsumerOf returns the consumer Options give for s, once described
// (its ARN known): the one whose ARN begins with the stream's. An error
// names the option when there is none, or more than one.
func (o *Options) givenConsumerOf(s *kstream) (string, error) {
	var mine []string
	for _, arn := range o.givenConsumerARNs() {
		if consumerOf(arn, s.arn) {
			mine = append(mine, arn)
		}
	}
	if len(mine) != 1 {
		return "", fmt.Errorf("%s: stream %q is %s, and %d of the consumers given are its (%s): give one for each stream read: %w",
			"Options."+o.consumerField(), s.label, s.arn, len(mine), strings.Join(o.givenConsumerARNs(), ", "), errGivenConsumer)
	}
	return mine[0], nil
}

// checkGivenConsumersUsed fails unless each consumer Options give is of a
// stream read, now that the streams' ARNs are known (one given by name may
// be in another account or region than a consumer of its name).
func (c *Consumer) checkGivenConsumersUsed(streams []*kstream) error {
	for _, arn := range c.opts.givenConsumerARNs() {
		if !slices.ContainsFunc(streams, func(s *kstream) bool { return s.givenConsumer == arn }) {
			return fmt.Errorf("%s: %q is a consumer of no stream read: %w", "Options."+c.opts.consumerField(), arn, errGivenConsumer)
		}
	}
	return nil
}

// describeGivenConsumer waits until the consumer Options give for s is
// ACTIVE, and records its ARN. Missing, DELETING or of another stream, it
// is an error naming the ARN (errGivenConsumer): kcl registers none. It
// runs where registerConsumer runs.
func (c *Consumer) describeGivenConsumer(ctx context.Context, st stage, s *kstream) error {
	arn := s.givenConsumer
	field := "Options." + c.opts.consumerField()
	logged := false
	for {
		out, err := retry(ctx, st, &c.counters.retryCounters, s.log, "DescribeStreamConsumer", isNotFound, func() (*kinesis.DescribeStreamConsumerOutput, error) {
			return s.kinesis.DescribeStreamConsumer(ctx, &kinesis.DescribeStreamConsumerInput{ConsumerARN: &arn})
		})
		switch {
		case isNotFound(err):
			return fmt.Errorf("stream %q: consumer %s (%s) does not exist; register it, or give the ARN of one that does: %w: %w", s.label, arn, field, errGivenConsumer, err)
		case err != nil:
			return fmt.Errorf("stream %q: consumer %s (%s): %w", s.label, arn, field, err)
		}
		d := out.ConsumerDescription
		if of := aws.ToString(d.StreamARN); of != "" && of != s.arn {
			return fmt.Errorf("stream %q: consumer %s (%s) is a consumer of stream %s, not of %s: %w", s.label, arn, field, of, s.arn, errGivenConsumer)
		}
		switch d.ConsumerStatus {
		case types.ConsumerStatusActive:
			s.consumerARN.Store(&arn)
			return nil
		case types.ConsumerStatusDeleting:
			return fmt.Errorf("stream %q: consumer %s (%s) is being deleted (DELETING); register another and give its ARN: %w", s.label, arn, field, errGivenConsumer)
		}
		if !logged {
			s.log.Info("kcl: waiting for the stream consumer to be active", "consumer_arn", arn, "status", d.ConsumerStatus)
			logged = true
		}
		if !sleep(ctx, 200*time.Millisecond) {
			return ctx.Err()
		}
	}
}
