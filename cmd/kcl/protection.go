package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
)

// protectionNotes say what the lease table lacks of the protection
// docs/security.md recommends: deletion protection, and point-in-time
// recovery. They are notes, never problems, since kcl runs without either.
// A check that could not be made (no permission, an emulator without the
// call) is a note too, saying why.
func protectionNotes(ctx context.Context, db DynamoDB, table string) []string {
	var notes []string
	desc, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: &table})
	switch {
	case err != nil:
		notes = append(notes, "deletion protection of the lease table not checked: "+reason(err))
	case desc.Table == nil || !aws.ToBool(desc.Table.DeletionProtectionEnabled):
		notes = append(notes, "the lease table has no deletion protection: a DeleteTable loses every checkpoint (docs/security.md)")
	}
	backups, err := db.DescribeContinuousBackups(ctx, &dynamodb.DescribeContinuousBackupsInput{TableName: &table})
	switch {
	case err != nil:
		notes = append(notes, "point-in-time recovery of the lease table not checked: "+reason(err))
	case pitrStatus(backups) != types.PointInTimeRecoveryStatusEnabled:
		notes = append(notes, "the lease table has no point-in-time recovery: checkpoints overwritten by mistake cannot be restored (docs/security.md)")
	}
	return notes
}

func pitrStatus(out *dynamodb.DescribeContinuousBackupsOutput) types.PointInTimeRecoveryStatus {
	if d := out.ContinuousBackupsDescription; d != nil && d.PointInTimeRecoveryDescription != nil {
		return d.PointInTimeRecoveryDescription.PointInTimeRecoveryStatus
	}
	return ""
}

// reason is an error's AWS code when it has one (AccessDeniedException,
// UnknownOperationException), or the error.
func reason(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode()
	}
	return fmt.Sprint(err)
}
