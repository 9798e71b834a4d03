package main

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// -stream takes a stream of another account by its ARN, and every call
// names it so (GetRecords too, for -lag): kinesis-local looks a stream
// named by name, or a GetRecords without StreamARN, up in the caller's
// account, as AWS does (docs/security.md).
func TestStatusReadsAStreamOfAnotherAccountByItsARN(t *testing.T) {
	h := newHarness(t, 2)
	sum, err := h.kin.DescribeStreamSummary(context.Background(), &kinesis.DescribeStreamSummaryInput{StreamName: &h.stream})
	require.NoError(t, err)
	arn := aws.ToString(sum.StreamDescriptionSummary.StreamARN)
	data := h.putData("x-", 4)
	w := h.startWorker("deploy-1")
	w.receive(data...)
	w.stop()
	cfg := awsConfig()
	cfg.Credentials = credentials.NewStaticCredentialsProvider("222222222222", "x", "") // another account
	h.kinAPI = kinesis.NewFromConfig(cfg, func(o *kinesis.Options) { o.BaseEndpoint = aws.String(kinesisLocal.Endpoint) })

	code, _, stderr := h.run("status", "-app", h.table, "-stream", h.stream, "-json")
	assert.Equal(t, 1, code, "by name, the stream is looked up in the caller's account")
	assert.Contains(t, stderr, "ResourceNotFoundException")

	code, stdout, stderr := h.run("status", "-app", h.table, "-stream", arn, "-json", "-lag")
	require.Equal(t, 0, code, stderr)
	var rep statusReport
	require.NoError(t, json.Unmarshal([]byte(stdout), &rep))
	assert.Empty(t, rep.Problems)
	require.Len(t, rep.Shards, 2)
	for _, sh := range rep.Shards {
		assert.NotNil(t, sh.MillisBehind, "lag measured: %+v", sh)
	}
}
