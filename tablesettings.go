package kcl

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/kclgo/kcl/internal/leaseitem"
)

// LeaseTableSettings says whether kcl may create a missing lease table, and
// how it creates one. The zero value is kcl's default: a missing table is
// created with on-demand billing, no tags, no deletion protection, no
// point-in-time recovery, and DynamoDB's own encryption key.
//
//   - The settings apply only to a table kcl creates. A table that exists is
//     used as it is, never changed: kcl status notes one without deletion
//     protection or point-in-time recovery.
//   - Only a worker that finds the table missing applies them, in its
//     CreateTable. It turns on point-in-time recovery before it reads a
//     shard (so does one whose CreateTable was answered in use: its own
//     call may have made the table); if it stops before that, the table
//     stays without it.
//   - docs/security.md gives the same table in CloudFormation and Terraform,
//     and the IAM actions each setting needs.
type LeaseTableSettings struct {
	// NoCreate forbids kcl to create the table. A missing table ends the
	// consumer at start with an error that wraps ErrNoLeaseTable and names
	// the table and dynamodb:CreateTable. Every other field must then be
	// zero.
	NoCreate bool
	// Tags are set on the table as it is created.
	Tags map[string]string
	// DeletionProtection creates the table with deletion protection on.
	DeletionProtection bool
	// PointInTimeRecovery turns on continuous backups once the table is
	// active (UpdateContinuousBackups).
	PointInTimeRecovery bool
	// KMSKeyID encrypts the table with this customer-managed KMS key (its
	// ID, ARN, alias name or alias ARN). Empty: the AWS-owned key.
	KMSKeyID string
	// ReadCapacity and WriteCapacity, set together, create the table with
	// provisioned billing. Zero: on-demand billing.
	ReadCapacity, WriteCapacity int64
}

// ErrNoLeaseTable is wrapped by the error of a consumer that found no lease
// table while LeaseTableSettings.NoCreate forbade it to create one.
var ErrNoLeaseTable = errors.New("no such lease table")

// validate checks s as given: an error wraps ErrInvalidOptions.
func (s LeaseTableSettings) validate(appName string) error {
	const field = "LeaseTableSettings"
	switch {
	case !s.isZero() && appName == "":
		return invalid(field, "needs AppName (an empty AppName keeps leases in memory)")
	case s.NoCreate && !(LeaseTableSettings{NoCreate: true}).equal(s):
		return invalid(field, "NoCreate with settings that apply only to a table kcl creates")
	case s.ReadCapacity < 0 || s.WriteCapacity < 0:
		return invalid(field, "ReadCapacity %d and WriteCapacity %d: negative", s.ReadCapacity, s.WriteCapacity)
	case (s.ReadCapacity == 0) != (s.WriteCapacity == 0):
		return invalid(field, "ReadCapacity %d and WriteCapacity %d: set both for provisioned billing, or neither for on-demand", s.ReadCapacity, s.WriteCapacity)
	}
	for k := range s.Tags {
		if k == "" {
			return invalid(field, "a tag with an empty key")
		}
	}
	return nil
}

func (s LeaseTableSettings) isZero() bool { return s.equal(LeaseTableSettings{}) }

func (s LeaseTableSettings) equal(o LeaseTableSettings) bool {
	return s.NoCreate == o.NoCreate && maps.Equal(s.Tags, o.Tags) && s.DeletionProtection == o.DeletionProtection &&
		s.PointInTimeRecovery == o.PointInTimeRecovery && s.KMSKeyID == o.KMSKeyID &&
		s.ReadCapacity == o.ReadCapacity && s.WriteCapacity == o.WriteCapacity
}

// createInput returns the CreateTable call that makes the lease table
// with these settings: leaseitem.CreateTable's key schema, plus tags,
// deletion protection, encryption and billing.
func (s LeaseTableSettings) createInput(table string) *dynamodb.CreateTableInput {
	in := leaseitem.CreateTable(table)
	for _, k := range slices.Sorted(maps.Keys(s.Tags)) {
		in.Tags = append(in.Tags, types.Tag{Key: aws.String(k), Value: aws.String(s.Tags[k])})
	}
	if s.DeletionProtection {
		in.DeletionProtectionEnabled = aws.Bool(true)
	}
	if s.KMSKeyID != "" {
		in.SSESpecification = &types.SSESpecification{Enabled: aws.Bool(true), SSEType: types.SSETypeKms, KMSMasterKeyId: aws.String(s.KMSKeyID)}
	}
	if s.ReadCapacity > 0 {
		in.BillingMode = types.BillingModeProvisioned
		in.ProvisionedThroughput = &types.ProvisionedThroughput{ReadCapacityUnits: aws.Int64(s.ReadCapacity), WriteCapacityUnits: aws.Int64(s.WriteCapacity)}
	}
	return in
}

// pitrInput is the call that turns on point-in-time recovery.
func pitrInput(table string) *dynamodb.UpdateContinuousBackupsInput {
	return &dynamodb.UpdateContinuousBackupsInput{
		TableName:                        aws.String(table),
		PointInTimeRecoverySpecification: &types.PointInTimeRecoverySpecification{PointInTimeRecoveryEnabled: aws.Bool(true)},
	}
}

// errNoTable is the error of a missing table that kcl may not create;
// start adds the table's name.
var errNoTable = fmt.Errorf("%w, and LeaseTableSettings.NoCreate forbids creating it (which needs dynamodb:CreateTable): create it as docs/security.md shows", ErrNoLeaseTable)
