package kcl

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/cenkalti/backoff/v4"
)

// Backoff between retries of transient errors: exponential with jitter,
// starting at 100ms, capped at 10s, and no cap on elapsed time while the
// context lives.
const (
	retryInitialInterval = 100 * time.Millisecond
	retryMaxInterval     = 10 * time.Second
)

func newBackOff() *backoff.ExponentialBackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = retryInitialInterval
	b.MaxInterval = retryMaxInterval
	b.MaxElapsedTime = 0
	b.Reset()
	return b
}

// fatalCodes are AWS error codes that retrying cannot fix: a missing or
// inaccessible stream or table, a bad request, a disabled KMS key.
var fatalCodes = map[string]bool{
	"ResourceNotFoundException":   true,
	"AccessDeniedException":       true,
	"AccessDenied":                true,
	"UnrecognizedClientException": true,
	"InvalidSignatureException":   true,
	"InvalidArgumentException":    true,
	"ValidationException":         true,
	"KMSDisabledException":        true,
	"KMSInvalidStateException":    true,
	"KMSAccessDeniedException":    true,
	"KMSNotFoundException":        true,
	"KMSOptInRequired":            true,
	"IncompleteSignature":         true,
	"MissingAuthenticationToken":  true,
	"UnknownOperationException":   true, // an emulator without the call
}

// isFatal reports whether err is an AWS error that no retry can fix, a
// second process with this worker's ID, or a lease table of the other layout
// (checkLayout). Everything else (throttling,
// limits, 5xx, network) is transient.
func isFatal(err error) bool {
	if errors.Is(err, errDuplicateWorker) || errors.Is(err, errTableLayout) || errors.Is(err, errForeignWorkers) {
		return true
	}
	var apiErr smithy.APIError
	return errors.As(err, &apiErr) && fatalCodes[apiErr.ErrorCode()]
}

// isConfigError reports whether err is an AWS SDK call that failed before
// its request was sent: no region, no credentials, an endpoint that does not
// parse. On a consumer's first calls no retry fixes those. (Later, a
// credentials provider may fail for a while and recover, so they are retried
// then.) A call that failed inside another one, such as the instance
// metadata service answering 403, 404 or 500, or timing out, on a host
// without a role, means the called service was never asked: whatever that
// inner call met (found by a user, issue 24), but a throttle (many pods
// assuming a role at once), which is retried. Any answer of the called
// service itself, and a connection it refused, are retried too.
func isConfigError(err error) bool {
	var op *smithy.OperationError
	if !errors.As(err, &op) || errors.Is(err, context.Canceled) {
		return false
	}
	switch innerCause(op.Unwrap()) {
	case causeNested:
		return !throttleCodes[errorCode(err)] // a credentials provider's call throttled is retried
	case causeAnswered:
		return false
	}
	return !errors.Is(err, context.DeadlineExceeded)
}

// The first thing met in the chain of a call's error: another call's error
// (a credentials provider's), an HTTP response to the call, or neither.
const (
	causeNone = iota
	causeAnswered
	causeNested
)

// innerCause returns what the chain of err, the cause of a call's error,
// meets first.
func innerCause(err error) int {
	switch e := err.(type) {
	case nil:
		return causeNone
	case *smithyhttp.ResponseError, *awshttp.ResponseError:
		// The SDK's own wraps smithy's, and its Unwrap skips past it: a
		// throttle, a 5xx or a refused connection is this call's own.
		return causeAnswered
	case *smithy.OperationError:
		return causeNested
	case interface{ Unwrap() []error }:
		for _, x := range e.Unwrap() {
			if c := innerCause(x); c != causeNone {
				return c
			}
		}
		return causeNone
	}
	return innerCause(errors.Unwrap(err))
}

// stage says whether a call is made while a consumer starts or once it
// runs: retry gives up at once on an AWS configuration error only at start.
type stage bool

const (
	// running: configuration errors are retried, as a credentials provider
	// may fail for a while and recover.
	running stage = false
	// starting: no retry fixes a configuration error before any request was
	// sent (isConfigError).
	starting stage = true
)

func errorCode(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode()
	}
	return ""
}

// throttleCodes are the AWS error codes that say a limit was hit.
var throttleCodes = map[string]bool{
	"ProvisionedThroughputExceededException": true,
	"KMSThrottlingException":                 true,
	"LimitExceededException":                 true,
	"ThrottlingException":                    true,
	"RequestLimitExceeded":                   true,
	"Throttling":                             true,
}

// retryCounters count what retry waited out, for Stats.
type retryCounters struct {
	retries, throttles atomic.Int64
}

// retry calls op until it succeeds, or until it returns an error that no
// retry fixes, or ctx ends; it returns op's last result.
//
//   - An error stops it at once if isFatal, if permanent says so, or, while
//     the consumer is starting (st), if it is a configuration error.
//   - Transient errors are counted in n, logged at Warn, and waited out
//     with exponential backoff and jitter.
func retry[T any](ctx context.Context, st stage, n *retryCounters, log *slog.Logger, what string, permanent func(error) bool, op func() (T, error)) (T, error) {
	return backoff.RetryNotifyWithData(func() (T, error) {
		v, err := op()
		if err != nil && (isFatal(err) || (permanent != nil && permanent(err)) || ctx.Err() != nil || st == starting && isConfigError(err)) {
			return v, backoff.Permanent(err)
		}
		return v, err
	}, backoff.WithContext(newBackOff(), ctx), func(err error, wait time.Duration) {
		n.retries.Add(1)
		if throttleCodes[errorCode(err)] {
			n.throttles.Add(1)
		}
		log.Warn("kcl: retrying "+what, "error", err, "code", errorCode(err), "wait", wait)
	})
}

// retryErr is retry for an op that returns only an error.
func retryErr(ctx context.Context, st stage, n *retryCounters, log *slog.Logger, what string, permanent func(error) bool, op func() error) error {
	_, err := retry(ctx, st, n, log, what, permanent, func() (struct{}, error) { return struct{}{}, op() })
	return err
}

// sleep waits for d or until ctx ends, and reports whether the full time passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
