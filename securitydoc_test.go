package kcl

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// docSettings are the settings docs/security.md's templates show.
var docSettings = LeaseTableSettings{
	Tags:               map[string]string{"team": "payments"},
	DeletionProtection: true, PointInTimeRecovery: true,
	KMSKeyID: "arn:aws:kms:REGION:ACCOUNT:key/KEY_ID",
}

// fencedBlock returns the one code block fenced as lang in the section of
// docs/security.md under heading (up to the next heading).
func fencedBlock(t *testing.T, doc, heading, lang string) string {
	at := strings.Index(doc, "\n"+heading+"\n")
	require.GreaterOrEqual(t, at, 0, "docs/security.md has %q", heading)
	section := doc[at+len(heading)+2:]
	if end := strings.Index(section, "\n#"); end >= 0 {
		section = section[:end]
	}
	blocks := regexp.MustCompile("(?s)```"+lang+"\n(.*?)```").FindAllStringSubmatch(section, -1)
	require.Len(t, blocks, 1, "one %s block under %q in docs/security.md", lang, heading)
	return blocks[0][1]
}

// The CloudFormation and Terraform definitions of the lease table in
// docs/security.md make the table kcl creates with docSettings: its key
// schema, attribute, billing, deletion protection, encryption and tags,
// and point-in-time recovery.
func TestSecurityDocTemplatesMatchTheTableKclCreates(t *testing.T) {
	raw, err := os.ReadFile("docs/security.md")
	require.NoError(t, err)
	doc := string(raw)
	want := docSettings.createInput("my-app")

	t.Run("CloudFormation", func(t *testing.T) {
		var tmpl struct {
			Resources map[string]struct {
				Type       string
				Properties struct {
					TableName                        string
					BillingMode                      types.BillingMode
					AttributeDefinitions             []types.AttributeDefinition
					KeySchema                        []types.KeySchemaElement
					DeletionProtectionEnabled        *bool
					PointInTimeRecoverySpecification struct{ PointInTimeRecoveryEnabled bool }
					SSESpecification                 struct {
						SSEEnabled     bool
						SSEType        types.SSEType
						KMSMasterKeyId *string
					}
					Tags []types.Tag
				}
			}
		}
		require.NoError(t, json.Unmarshal([]byte(fencedBlock(t, doc, "### The same table in CloudFormation", "json")), &tmpl))
		require.Len(t, tmpl.Resources, 1)
		for _, r := range tmpl.Resources {
			p := r.Properties
			assert.Equal(t, "AWS::DynamoDB::Table", r.Type)
			assert.Equal(t, aws.ToString(want.TableName), p.TableName)
			assert.Equal(t, want.BillingMode, p.BillingMode)
			assert.Equal(t, want.AttributeDefinitions, p.AttributeDefinitions)
			assert.Equal(t, want.KeySchema, p.KeySchema)
			assert.Equal(t, want.DeletionProtectionEnabled, p.DeletionProtectionEnabled)
			assert.Equal(t, docSettings.PointInTimeRecovery, p.PointInTimeRecoverySpecification.PointInTimeRecoveryEnabled)
			assert.Equal(t, aws.ToBool(want.SSESpecification.Enabled), p.SSESpecification.SSEEnabled)
			assert.Equal(t, want.SSESpecification.SSEType, p.SSESpecification.SSEType)
			assert.Equal(t, want.SSESpecification.KMSMasterKeyId, p.SSESpecification.KMSMasterKeyId)
			assert.Equal(t, want.Tags, p.Tags)
		}
	})

	t.Run("Terraform", func(t *testing.T) {
		hcl := fencedBlock(t, doc, "### The same table in Terraform", "hcl")
		one := func(pattern string) []string {
			m := regexp.MustCompile(pattern).FindAllStringSubmatch(hcl, -1)
			require.Len(t, m, 1, "one match of %s", pattern)
			return m[0]
		}
		assert.Equal(t, aws.ToString(want.TableName), one(`\bname\s*=\s*"([^"]+)"\s*#`)[1])
		assert.Equal(t, string(want.BillingMode), one(`\bbilling_mode\s*=\s*"(\w+)"`)[1])
		assert.Equal(t, aws.ToString(want.KeySchema[0].AttributeName), one(`\bhash_key\s*=\s*"(\w+)"`)[1])
		assert.NotContains(t, hcl, "range_key", "kcl's table has a hash key only")
		attr := one(`attribute\s*\{\s*name\s*=\s*"(\w+)"\s*type\s*=\s*"(\w)"\s*\}`)
		assert.Equal(t, []string{aws.ToString(want.AttributeDefinitions[0].AttributeName), string(want.AttributeDefinitions[0].AttributeType)}, attr[1:])
		assert.Len(t, want.AttributeDefinitions, 1)
		assert.Len(t, regexp.MustCompile(`attribute\s*\{`).FindAllString(hcl, -1), 1, "one attribute")
		one(`\bdeletion_protection_enabled\s*=\s*true`)
		one(`point_in_time_recovery\s*\{\s*enabled\s*=\s*true\s*\}`)
		sse := one(`server_side_encryption\s*\{\s*enabled\s*=\s*true\s*kms_key_arn\s*=\s*"([^"]+)"\s*\}`)
		assert.Equal(t, aws.ToString(want.SSESpecification.KMSMasterKeyId), sse[1])
		tags := one(`(?s)tags\s*=\s*\{(.*?)\}`)
		var got []types.Tag
		for _, kv := range regexp.MustCompile(`(\w+)\s*=\s*"([^"]*)"`).FindAllStringSubmatch(tags[1], -1) {
			got = append(got, types.Tag{Key: aws.String(kv[1]), Value: aws.String(kv[2])})
		}
		assert.Equal(t, want.Tags, got)
	})
	assert.True(t, strings.Contains(doc, "LeaseTableSettings{Tags"), "the doc names the settings its templates match")
}

// The accounts, roles and resources of docs/security.md's policies.
const (
	docRoleB    = "arn:aws:iam::222222222222:role/billing"       // the application's role, in B
	docRoleA    = "arn:aws:iam::111111111111:role/orders-reader" // the role of A that B's assumes (KinesisFor)
	docStreamA  = "arn:aws:kinesis:eu-west-1:111111111111:stream/orders"
	docTableB   = "arn:aws:dynamodb:eu-west-1:222222222222:table/billing"
	docConsumer = docStreamA + "/consumer/billing:1700000000" // pre-registered
)

// docStatement is what a statement of a policy in docs/security.md must
// be: the actions of the statement sid of a policy file, or actions; on
// resource, exactly, of the same kind (arnKind) as the file's statement.
type docStatement struct {
	sid             string
	file, fileSid   string
	actions         []string // when file is ""
	resource        string   // "" for a trust policy
	principal       string   // "" for an identity policy
	resourceAccount string   // the account resource is in
}

// Each policy in docs/security.md repeats the statements of the policy
// files it names, action for action, and puts each resource in its
// account: A's stream and consumer and role in A, B's table in B, and B's
// role as the principal of A's resource and trust policies.
func TestSecurityDocPoliciesMatchThePolicyFiles(t *testing.T) {
	raw, err := os.ReadFile("docs/security.md")
	require.NoError(t, err)
	doc := string(raw)
	const a, b = "111111111111", "222222222222"
	for _, tc := range []struct {
		heading    string
		statements []docStatement
	}{
		{"### The stream's resource policy, in A", []docStatement{
			{sid: "BillingInBReadsOrders", file: "docs/iam-polling.json", fileSid: "ReadTheStream", resource: docStreamA, principal: docRoleB, resourceAccount: a},
		}},
		{"### The application's identity policy, in B", []docStatement{
			{sid: "ReadOrdersInA", file: "docs/iam-polling.json", fileSid: "ReadTheStream", resource: docStreamA, resourceAccount: a},
			{sid: "KeepLeasesAndCheckpoints", file: "docs/iam-polling.json", fileSid: "KeepLeasesAndCheckpoints", resource: docTableB, resourceAccount: b},
		}},
		{"### The consumer's resource policy, in A (across accounts)", []docStatement{
			{sid: "BillingInBSubscribes", file: "docs/iam-fanout-preregistered.json", fileSid: "SubscribeAsThePreRegisteredConsumer", resource: docConsumer, principal: docRoleB, resourceAccount: a},
		}},
		{"#### The trust policy of A's role, in A", []docStatement{
			{sid: "BillingInBAssumesOrdersReader", actions: []string{"sts:AssumeRole"}, principal: docRoleB},
		}},
		{"#### The permissions of A's role, polling, in A", []docStatement{
			{sid: "ReadTheStream", file: "docs/iam-polling.json", fileSid: "ReadTheStream", resource: docStreamA, resourceAccount: a},
		}},
		{"#### The permissions of A's role, fan-out, in A", []docStatement{
			{sid: "ReadTheStream", file: "docs/iam-fanout.json", fileSid: "ReadTheStream", resource: docStreamA, resourceAccount: a},
			{sid: "SubscribeAsTheRegisteredConsumer", file: "docs/iam-fanout.json", fileSid: "SubscribeAsTheRegisteredConsumer", resource: docStreamA + "/consumer/billing:*", resourceAccount: a},
		}},
		{"#### The identity policy of B's role, in B", []docStatement{
			{sid: "AssumeOrdersReaderInA", actions: []string{"sts:AssumeRole"}, resource: docRoleA, resourceAccount: a},
			{sid: "KeepLeasesAndCheckpoints", file: "docs/iam-polling.json", fileSid: "KeepLeasesAndCheckpoints", resource: docTableB, resourceAccount: b},
		}},
	} {
		t.Run(strings.Trim(tc.heading, "# "), func(t *testing.T) {
			got := parsePolicy(t, fencedBlock(t, doc, tc.heading, "json"))
			var sids []string
			for _, s := range got {
				sids = append(sids, s.Sid)
			}
			var want []string
			for _, w := range tc.statements {
				want = append(want, w.sid)
			}
			require.Equal(t, want, sids, "the statements")
			for i, w := range tc.statements {
				s := got[i]
				assert.Equal(t, "Allow", s.Effect, w.sid)
				actions := w.actions
				if w.file != "" {
					fs := fileStatement(t, w.file, w.fileSid)
					actions = fs.Action
					require.Len(t, fs.Resource, 1)
					assert.Equal(t, arnKind(fs.Resource[0]), arnKind(w.resource), "%s: the kind of resource of %s's %s", w.sid, w.file, w.fileSid)
				}
				assert.ElementsMatch(t, actions, s.Action, "%s: the actions (first: of %s %s)", w.sid, w.file, w.fileSid)
				if w.resource == "" {
					assert.Empty(t, s.Resource, "%s: a trust policy names no resource", w.sid)
				} else {
					require.Len(t, s.Resource, 1, w.sid)
					assert.Equal(t, w.resourceAccount, strings.Split(s.Resource[0], ":")[4], "%s: the resource's account", w.sid)
					assert.Equal(t, w.resource, s.Resource[0], w.sid)
				}
				assert.Equal(t, w.principal, s.Principal.AWS, "%s: the principal", w.sid)
			}
		})
	}
	kinesisFor := fencedBlock(t, doc, "### A client per stream: `Options.KinesisFor`", "go")
	assert.Contains(t, kinesisFor, `"`+docStreamA+`": "`+docRoleA+`"`, "the example assumes the role the policies name for the stream")
}

// policyStatement is a statement of an IAM policy, its Action and
// Resource as lists.
type policyStatement struct {
	Sid, Effect string
	Principal   struct{ AWS string }
	Action      []string
	Resource    []string
}

// parsePolicy returns the statements of an IAM policy (version
// 2012-10-17), whose Action and Resource are each a string or a list.
func parsePolicy(t *testing.T, text string) []policyStatement {
	var policy struct {
		Version   string
		Statement []struct {
			Sid, Effect string
			Principal   struct{ AWS string }
			Action      any
			Resource    any
		}
	}
	require.NoError(t, json.Unmarshal([]byte(text), &policy))
	require.Equal(t, "2012-10-17", policy.Version)
	var out []policyStatement
	for _, s := range policy.Statement {
		out = append(out, policyStatement{Sid: s.Sid, Effect: s.Effect, Principal: s.Principal, Action: oneOrMany(t, s.Action), Resource: oneOrMany(t, s.Resource)})
	}
	return out
}

// fileStatement returns the statement sid of the policy file path.
func fileStatement(t *testing.T, path, sid string) policyStatement {
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	for _, s := range parsePolicy(t, string(raw)) {
		if s.Sid == sid {
			return s
		}
	}
	require.Failf(t, "no such statement", "%s has no statement %s", path, sid)
	return policyStatement{}
}
