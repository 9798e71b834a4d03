package main

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kclgo/kcl/internal/leaseitem"
)

// protectedTable reports the table as DynamoDB would with deletion
// protection and point-in-time recovery on, which dynalite cannot show
// (docs/security.md). pitr overrides the recovery status; denied answers
// both calls with AccessDeniedException.
type protectedTable struct {
	DynamoDB
	protection bool
	pitr       types.PointInTimeRecoveryStatus
	denied     bool
}

var errDenied = &smithy.GenericAPIError{Code: "AccessDeniedException", Message: "not authorized (test)"}

func (p *protectedTable) DescribeTable(ctx context.Context, in *dynamodb.DescribeTableInput, o ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error) {
	if p.denied {
		return nil, errDenied
	}
	out, err := p.DynamoDB.DescribeTable(ctx, in, o...)
	if err == nil {
		out.Table.DeletionProtectionEnabled = aws.Bool(p.protection)
	}
	return out, err
}

func (p *protectedTable) DescribeContinuousBackups(ctx context.Context, in *dynamodb.DescribeContinuousBackupsInput, o ...func(*dynamodb.Options)) (*dynamodb.DescribeContinuousBackupsOutput, error) {
	if p.denied {
		return nil, errDenied
	}
	return &dynamodb.DescribeContinuousBackupsOutput{ContinuousBackupsDescription: &types.ContinuousBackupsDescription{
		ContinuousBackupsStatus:        types.ContinuousBackupsStatusEnabled,
		PointInTimeRecoveryDescription: &types.PointInTimeRecoveryDescription{PointInTimeRecoveryStatus: p.pitr},
	}}, nil
}

// status notes a lease table without deletion protection or point-in-time
// recovery, and one whose protection it may not read, and still exits 0
// with "problems: none".
func TestStatusNotesAnUnprotectedTable(t *testing.T) {
	h := newHarness(t, 1)
	h.put(leaseItem("shardId-000000000000", "", 1, leaseitem.TrimHorizon))
	const (
		noProtection = "note: the lease table has no deletion protection: a DeleteTable loses every checkpoint (docs/security.md)\n"
		noRecovery   = "note: the lease table has no point-in-time recovery: checkpoints overwritten by mistake cannot be restored (docs/security.md)\n"
	)
	for _, tc := range []struct {
		name  string
		db    DynamoDB
		notes string
	}{
		{"dynalite as it is", h.db, noProtection + "note: point-in-time recovery of the lease table not checked: UnknownOperationException\n"},
		{"neither", &protectedTable{DynamoDB: h.db, pitr: types.PointInTimeRecoveryStatusDisabled}, noProtection + noRecovery},
		{"no recovery", &protectedTable{DynamoDB: h.db, protection: true, pitr: types.PointInTimeRecoveryStatusDisabled}, noRecovery},
		{"no protection", &protectedTable{DynamoDB: h.db, pitr: types.PointInTimeRecoveryStatusEnabled}, noProtection},
		{"both", &protectedTable{DynamoDB: h.db, protection: true, pitr: types.PointInTimeRecoveryStatusEnabled}, ""},
		{"not allowed to look", &protectedTable{DynamoDB: h.db, denied: true},
			"note: deletion protection of the lease table not checked: AccessDeniedException\n" +
				"note: point-in-time recovery of the lease table not checked: AccessDeniedException\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.ddb = tc.db
			code, stdout, stderr := h.run("status", "-app", h.table, "-stream", h.stream)
			require.Equal(t, 0, code, stderr)
			_, notes, ok := strings.Cut(stdout, "\nproblems: none\n")
			require.True(t, ok, stdout)
			assert.Equal(t, tc.notes, notes)
		})
	}
}
