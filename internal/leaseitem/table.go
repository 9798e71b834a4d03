package leaseitem

import (
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// CreateTable returns the request that creates a lease table: hash key
// leaseKey (a string) alone, on-demand billing.
func CreateTable(table string) *dynamodb.CreateTableInput {
	return &dynamodb.CreateTableInput{
		TableName:            aws.String(table),
		BillingMode:          types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String(AttrLeaseKey), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String(AttrLeaseKey), KeyType: types.KeyTypeHash}},
	}
}

// IsLeaseTable reports whether a table's key schema is a lease table's.
func IsLeaseTable(keys []types.KeySchemaElement) bool {
	return len(keys) == 1 && aws.ToString(keys[0].AttributeName) == AttrLeaseKey
}
