package main

import (
	"context"
	"encoding/json"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/smithy-go/middleware"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kclgo/kcl/internal/leaseitem"
)

// The command's policies grant exactly the actions it calls, each on the
// kind of resource it is called on (a stream, a table), recorded from runs
// on the emulators: read-only, status and every subcommand's -dry-run;
// writes, every subcommand for real besides. The library's policies are
// checked by the kcl package's TestIAMPoliciesGrantExactlyTheActionsKclCalls,
// which also checks that every docs/iam*.json file has a test.
func TestIAMPolicies(t *testing.T) {
	for _, tc := range []struct {
		file   string
		writes bool
	}{
		{"../../docs/iam-cmd-readonly.json", false},
		{"../../docs/iam-cmd-writes.json", true},
	} {
		t.Run(strings.TrimSuffix(strings.TrimPrefix(tc.file, "../../docs/"), ".json"), func(t *testing.T) {
			h := newHarness(t, 1)
			rec := &opRecorder{}
			h.ddb = dynamodb.NewFromConfig(awsConfig(), func(o *dynamodb.Options) {
				o.BaseEndpoint = aws.String(dynalite.Endpoint)
				o.APIOptions = append(o.APIOptions, rec.middleware)
			})
			h.kinAPI = kinesis.NewFromConfig(awsConfig(), func(o *kinesis.Options) {
				o.BaseEndpoint = aws.String(kinesisLocal.Endpoint)
				o.APIOptions = append(o.APIOptions, rec.middleware)
			})
			// A parent split in two whose lease the Java KCL deleted: reset
			// makes it again (PutItem).
			parent := h.shardIDs()[0]
			_, err := h.kin.SplitShard(context.Background(), &kinesis.SplitShardInput{
				StreamName: &h.stream, ShardToSplit: &parent, NewStartingHashKey: aws.String("170141183460469231731687303715884105728"),
			})
			require.NoError(t, err)
			require.Eventually(t, func() bool { return len(h.shardIDs()) == 3 }, 30*time.Second, 50*time.Millisecond)
			for _, id := range h.shardIDs()[1:] {
				child := leaseItem(id, "dead", 3, leaseitem.TrimHorizon)
				child[leaseitem.AttrParents] = &types.AttributeValueMemberSS{Value: []string{parent}}
				h.put(child)
			}
			h.put(beatItem("dead", 7))
			h.put(item{leaseitem.AttrLeaseKey: s(leaseitem.GroupKey), leaseitem.AttrEntityType: s("KCL_GROUP"), "kclEpoch": n(5)})
			// vmware-go-kcl's table, with the parent read to its end:
			// migrate-vmware checks the kcl table (GetItem) and writes the
			// lease (PutItem).
			vmware, to := "vmware-"+h.table, "migrated-"+h.table
			createVMwareTable(t, h.db, vmware)
			_, err = h.db.PutItem(context.Background(), &dynamodb.PutItemInput{TableName: &vmware, Item: map[string]types.AttributeValue{
				"ShardID": s(parent), "Checkpoint": s(leaseitem.ShardEnd), "AssignedTo": s("vmware-1"),
				"LeaseTimeout": s(time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)),
			}})
			require.NoError(t, err)

			runs := [][]string{
				{"status", "-app", h.table, "-stream", h.stream, "-lag"},
				{"reset", "-app", h.table, "-stream", h.stream, "-to", "trim-horizon", "-dry-run"},
				{"forget-worker", "-app", h.table, "-worker", "dead", "-dry-run"},
				{"migrate-vmware", "-from", vmware, "-to", to, "-dry-run"},
			}
			if tc.writes {
				runs = append(runs,
					[]string{"reset", "-app", h.table, "-stream", h.stream, "-to", "trim-horizon"},
					[]string{"forget-worker", "-app", h.table, "-worker", "dead"},
					[]string{"migrate-vmware", "-from", vmware, "-to", to})
			}
			for _, args := range runs {
				code, stdout, stderr := h.run(args...)
				require.Equal(t, 0, code, "%v: %s%s", args, stdout, stderr)
			}
			assert.ElementsMatch(t, rec.calls(), policyGrants(t, tc.file), "recorded calls (first) against %s (second)", tc.file)
		})
	}
}

// opRecorder records the AWS operations of the clients it is added to, by
// their IAM action names and the kind of resource each names (callKind).
type opRecorder struct {
	mu   sync.Mutex
	seen map[string]bool // "action on kind"
}

// calls returns the calls recorded, as "action on kind", sorted.
func (r *opRecorder) calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Sorted(maps.Keys(r.seen))
}

func (r *opRecorder) middleware(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("kclRecordOperation", func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
		op := awsmiddleware.GetOperationName(ctx)
		r.mu.Lock()
		if r.seen == nil {
			r.seen = map[string]bool{}
		}
		r.seen[strings.ToLower(awsmiddleware.GetServiceID(ctx))+":"+op+" on "+callKind(in.Parameters)] = true
		r.mu.Unlock()
		return next.HandleInitialize(ctx, in)
	}), middleware.After)
}

// callKind returns the kind of resource, as IAM authorizes it, that an
// operation's input names: a table (TableName) or a stream (by its name
// or ARN, or by an iterator or a page token of it). The command calls
// nothing on a consumer.
func callKind(params any) string {
	v := reflect.Indirect(reflect.ValueOf(params))
	set := func(field string) bool { f := v.FieldByName(field); return f.IsValid() && !f.IsZero() }
	switch {
	case set("TableName"):
		return "table"
	case set("StreamARN"), set("StreamName"), set("ShardIterator"), set("NextToken"):
		return "stream"
	}
	return "resource of unknown kind"
}

// arnKind returns the kind of resource a policy's Resource names, as
// callKind does for a call.
func arnKind(arn string) string {
	parts := strings.SplitN(arn, ":", 6)
	switch {
	case len(parts) < 6 || parts[0] != "arn":
		return "not an ARN: " + arn
	case parts[2] == "kinesis" && strings.HasPrefix(parts[5], "stream/") && !strings.Contains(parts[5], "/consumer/"):
		return "stream"
	case parts[2] == "dynamodb" && strings.HasPrefix(parts[5], "table/") && !strings.Contains(parts[5][len("table/"):], "/"):
		return "table"
	}
	return "resource of unknown kind: " + arn
}

// policyGrants returns what a policy file allows, as "action on kind"
// (arnKind of its Resource): Allow statements with one resource each, no
// wildcard action, no action twice in a statement. An action may be
// granted on several resources by several statements.
func policyGrants(t *testing.T, path string) []string {
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	var policy struct {
		Version   string
		Statement []struct {
			Effect   string
			Action   []string
			Resource string
		}
	}
	require.NoError(t, json.Unmarshal(raw, &policy))
	require.Equal(t, "2012-10-17", policy.Version)
	var grants []string
	for _, st := range policy.Statement {
		require.Equal(t, "Allow", st.Effect)
		require.NotEmpty(t, st.Resource, "%s: a statement without Resource", path)
		for _, a := range st.Action {
			require.NotContains(t, a, "*", "%s: %s is a wildcard", path, a)
		}
		require.Len(t, slices.Compact(slices.Sorted(slices.Values(st.Action))), len(st.Action), "%s: an action twice in a statement", path)
		for _, a := range st.Action {
			if g := a + " on " + arnKind(st.Resource); !slices.Contains(grants, g) {
				grants = append(grants, g)
			}
		}
	}
	return grants
}
