package main

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"sort"
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

// The command's policies grant exactly the actions it calls, recorded from
// runs on the emulators: read-only, status and every subcommand's -dry-run;
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
			assert.ElementsMatch(t, rec.actions(), policyActions(t, tc.file), "recorded calls (first) against %s (second)", tc.file)
		})
	}
}

// opRecorder records the AWS operations of the clients it is added to, by
// their IAM action names.
type opRecorder struct {
	mu   sync.Mutex
	seen map[string]bool
}

func (r *opRecorder) actions() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for a := range r.seen {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

func (r *opRecorder) middleware(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("kclRecordOperation", func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
		r.mu.Lock()
		if r.seen == nil {
			r.seen = map[string]bool{}
		}
		r.seen[strings.ToLower(awsmiddleware.GetServiceID(ctx))+":"+awsmiddleware.GetOperationName(ctx)] = true
		r.mu.Unlock()
		return next.HandleInitialize(ctx, in)
	}), middleware.After)
}

// policyActions returns the actions a policy file allows: Allow
// statements with a resource, no wildcard, no action twice in a
// statement. An action may be granted on several resources by several
// statements.
func policyActions(t *testing.T, path string) []string {
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
	var actions []string
	for _, st := range policy.Statement {
		require.Equal(t, "Allow", st.Effect)
		require.NotNil(t, st.Resource, "%s: a statement without Resource", path)
		for _, a := range st.Action {
			require.NotContains(t, a, "*", "%s: %s is a wildcard", path, a)
		}
		require.Len(t, slices.Compact(slices.Sorted(slices.Values(st.Action))), len(st.Action), "%s: an action twice in a statement", path)
		for _, a := range st.Action {
			if !slices.Contains(actions, a) {
				actions = append(actions, a)
			}
		}
	}
	return actions
}
