package kcl

import (
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// kcl calls AWS only through KinesisAPI and DynamoDBAPI, so their methods
// are exactly the actions it needs: the policies in docs/ must grant those
// and nothing more. Fan-out needs the fan-out methods; polling the rest.
func TestIAMPoliciesGrantExactlyTheActionsKclCalls(t *testing.T) {
	fanOutOnly := []string{"kinesis:DescribeStreamConsumer", "kinesis:RegisterStreamConsumer", "kinesis:SubscribeToShard"}
	var all []string
	for prefix, api := range map[string]reflect.Type{
		"kinesis:":  reflect.TypeFor[KinesisAPI](),
		"dynamodb:": reflect.TypeFor[DynamoDBAPI](),
	} {
		for i := range api.NumMethod() {
			all = append(all, prefix+api.Method(i).Name)
		}
	}
	var polling []string
	for _, a := range all {
		if !slices.Contains(fanOutOnly, a) {
			polling = append(polling, a)
		}
	}
	assert.ElementsMatch(t, polling, policyActions(t, "docs/iam-polling.json"))
	assert.ElementsMatch(t, all, policyActions(t, "docs/iam-fanout.json"))
	// A consumer given by ARN (Options.ConsumerARN) is never registered.
	preRegistered := slices.DeleteFunc(slices.Clone(all), func(a string) bool { return a == "kinesis:RegisterStreamConsumer" })
	assert.ElementsMatch(t, preRegistered, policyActions(t, "docs/iam-fanout-preregistered.json"))
}

func policyActions(t *testing.T, path string) []string {
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	var policy struct {
		Statement []struct {
			Effect string
			Action []string
		}
	}
	require.NoError(t, json.Unmarshal(raw, &policy))
	var actions []string
	for _, s := range policy.Statement {
		require.Equal(t, "Allow", s.Effect)
		actions = append(actions, s.Action...)
	}
	return actions
}
