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
