package leaseitem

import (
	"maps"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

type item = map[string]types.AttributeValue

const seq = "49590338271490256608559692538361571095921575989136588898"

func s(v string) *types.AttributeValueMemberS { return &types.AttributeValueMemberS{Value: v} }
func n(v int64) *types.AttributeValueMemberN {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(v, 10)}
}
func ss(v ...string) *types.AttributeValueMemberSS { return &types.AttributeValueMemberSS{Value: v} }

// leaseItem is a lease item as kcl writes it.
func leaseItem(key, owner string, counter int64, checkpoint string) item {
	it := item{AttrLeaseKey: s(key), AttrCounter: n(counter), AttrCheckpoint: s(checkpoint), AttrCheckpointSub: n(0), AttrOwnerSwitches: n(0)}
	if owner != "" {
		it[AttrOwner] = s(owner)
	}
	return it
}

// with returns a copy of it with attr set to v, or removed when v is nil.
func with(it item, attr string, v types.AttributeValue) item {
	out := maps.Clone(it)
	if v == nil {
		delete(out, attr)
	} else {
		out[attr] = v
	}
	return out
}
