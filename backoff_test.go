package kcl

import (
	"context"
	"errors"
	"fmt"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"net/http"
	"testing"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/stretchr/testify/assert"
)

func TestIsConfigError(t *testing.T) {
	answer := func(status int) error {
		return &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}}, Err: errors.New("api error")}
	}
	call := func(service string, err error) error {
		return &smithy.OperationError{ServiceID: service, OperationName: "Op", Err: err}
	}
	// sdkAnswer is an answer as the SDK wraps it: its own ResponseError,
	// whose Unwrap skips past smithy's.
	sdkAnswer := func(status int, code string) error {
		return &awshttp.ResponseError{ResponseError: &smithyhttp.ResponseError{
			Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}}, Err: &smithy.GenericAPIError{Code: code}}}
	}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"no region: nothing sent", call("Kinesis", errors.New("failed to resolve service endpoint")), true},
		{"the service answered", call("Kinesis", answer(400)), false},
		{"the service answered, wrapped", call("Kinesis", fmt.Errorf("deserialize: %w", answer(500))), false},
		{"no credentials behind an instance-metadata 403: nothing sent (issue 24)",
			call("Kinesis", fmt.Errorf("get identity: get credentials: %w", call("ec2imds", answer(403)))), true},
		{"a joined cause with the service's answer", call("Kinesis", errors.Join(errors.New("x"), answer(503))), false},
		{"no credentials behind an instance-metadata timeout: nothing sent",
			call("Kinesis", fmt.Errorf("get credentials: %w", call("ec2imds", fmt.Errorf("canceled, %w", context.DeadlineExceeded)))), true},
		{"this call's own deadline", call("Kinesis", fmt.Errorf("request send failed: %w", context.DeadlineExceeded)), false},
		{"cancelled", call("Kinesis", context.Canceled), false},
		{"the service answered a throttle, as the SDK wraps it (a review)", call("Kinesis", sdkAnswer(400, "LimitExceededException")), false},
		{"a refused connection, as the SDK wraps it: status 0", call("Kinesis", sdkAnswer(0, "")), false},
		{"the credentials provider's call throttled (many pods assuming a role at once)",
			call("Kinesis", fmt.Errorf("get credentials: %w", call("STS", sdkAnswer(400, "Throttling")))), false},
		{"not an SDK call", errors.New("lease lost"), false},
	} {
		assert.Equal(t, tc.want, isConfigError(tc.err), tc.name)
	}
}
