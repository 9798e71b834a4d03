package leaseitem

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Error says why an item cannot be read: which item, and which attribute
// holds what. Items kcl cannot read are reported and never rewritten.
type Error struct {
	Item string // what the item was read as: "lease", "heartbeat" or "group item"
	Key  string // its leaseKey; "" when it has none
	Attr string // the attribute at fault
	Why  string // what is wrong with it
}

func (e *Error) Error() string {
	if e.Key == "" {
		return "item without a string " + AttrLeaseKey
	}
	return fmt.Sprintf("%s %q: %s", e.Item, e.Key, e.Reason())
}

// Reason is the error without the item's name: the attribute and what is
// wrong with it.
func (e *Error) Reason() string { return e.Attr + ": " + e.Why }

// Why an attribute cannot be read.
var (
	errMissing   = errors.New("missing")
	errNotString = errors.New("not a string")
	errNotMap    = errors.New("not a map")
)

// number reads a non-negative integer attribute, 0 when absent and not
// required.
func number(item map[string]types.AttributeValue, attr string, required bool) (int64, error) {
	v, present := item[attr]
	if !present {
		if required {
			return 0, errMissing
		}
		return 0, nil
	}
	n, ok := v.(*types.AttributeValueMemberN)
	if !ok {
		return 0, errors.New("not a number")
	}
	i, err := strconv.ParseInt(n.Value, 10, 64)
	if err != nil || i < 0 {
		return 0, fmt.Errorf("%q is not a non-negative integer", n.Value)
	}
	return i, nil
}

// Counter reads an item's leaseCounter, which every lease and heartbeat
// item has.
func Counter(item map[string]types.AttributeValue) (int64, error) {
	return number(item, AttrCounter, true)
}

// Number returns the attribute value of n.
func Number(n int64) *types.AttributeValueMemberN {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}

// IsSentinel reports whether a checkpoint is one of the sentinels rather
// than a sequence number.
func IsSentinel(cp string) bool {
	switch cp {
	case TrimHorizon, Latest, AtTimestamp, ShardEnd:
		return true
	}
	return false
}

// IsSequenceNumber reports whether s looks like a Kinesis sequence number:
// up to 128 decimal digits.
func IsSequenceNumber(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
