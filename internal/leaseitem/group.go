package leaseitem

import (
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Group is kcl's group item (key GroupKey): what the scanners, two workers
// that read the whole table, tell the others.
type Group struct {
	Epoch   int64            // bumped whenever a worker must read the whole table
	Scans   int64            // bumped by the scanners every heartbeat interval
	Expired map[string]int64 // heartbeat or lease key -> the counter it was judged expired at
	Digest  string           // of what the scanner that last published saw
}

// ParseGroup reads the group item. What kcl cannot read is an *Error
// naming the attribute (kclExpired.<key> for one of its entries).
func ParseGroup(item map[string]types.AttributeValue) (Group, error) {
	bad := func(attr, why string) (Group, error) {
		return Group{}, &Error{Item: "group item", Key: GroupKey, Attr: attr, Why: why}
	}
	var g Group
	var err error
	if g.Epoch, err = number(item, AttrEpoch, false); err != nil {
		return bad(AttrEpoch, err.Error())
	}
	if g.Scans, err = number(item, AttrScans, false); err != nil {
		return bad(AttrScans, err.Error())
	}
	if v, ok := item[AttrDigest]; ok {
		s, ok := v.(*types.AttributeValueMemberS)
		if !ok {
			return bad(AttrDigest, "not a string")
		}
		g.Digest = s.Value
	}
	if v, ok := item[AttrExpired]; ok {
		m, ok := v.(*types.AttributeValueMemberM)
		if !ok {
			return bad(AttrExpired, "not a map")
		}
		g.Expired = make(map[string]int64, len(m.Value))
		for k := range m.Value {
			c, err := number(m.Value, k, true)
			if err != nil {
				return bad(AttrExpired+"."+k, err.Error())
			}
			g.Expired[k] = c
		}
	}
	return g, nil
}
