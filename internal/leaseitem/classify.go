package leaseitem

import (
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Kind is what an item of a lease table is to kcl.
type Kind int

const (
	KindLease Kind = iota // a lease: entityType absent, not a string, or LEASE, as the Java KCL reads it
	KindBeat              // a kcl worker's heartbeat (key WorkerKeyPrefix+WorkerID)
	KindGroup             // kcl's group item (key GroupKey)
	KindKCL               // another item of kcl's own (entityType one of kcl's)
	KindJava              // a Java KCL item that is not a lease: never read, reported or written
)

// kclEntities are the entityType values of kcl's own items.
//
// The Java KCL 3.5's lease listing skips them, but its leader's lease
// assignment scan (3.5.0, 3.5.1: DynamoDBLeaseTableDao.resolveEntityType)
// reads an entityType it does not know as a lease. kcl's own items must
// therefore never carry ownerSwitchesSinceCheckpoint: without it the Java
// serializer fails on the item (a @NonNull setter) and logs it, where with
// it the item would pass for a lease and be assigned to a Java worker.
var kclEntities = []string{EntityKCLWorker, EntityKCLGroup}

// Classify tells what an item is. kcl's heartbeats and group item are told
// by their keys. Otherwise, like the Java KCL's serializer
// (DynamoDBLeaseSerializer.fromDynamoRecord), an item is a lease unless it
// has a string entityType other than LEASE.
func Classify(item map[string]types.AttributeValue) Kind {
	if key, ok := item[AttrLeaseKey].(*types.AttributeValueMemberS); ok && strings.HasPrefix(key.Value, WorkerKeyPrefix) {
		return KindBeat
	} else if ok && key.Value == GroupKey {
		return KindGroup
	}
	entity, ok := item[AttrEntityType].(*types.AttributeValueMemberS)
	switch {
	case !ok || entity.Value == EntityLease:
		return KindLease
	case slices.Contains(kclEntities, entity.Value):
		return KindKCL
	}
	return KindJava
}

// MarksEntities reports whether an item shows that the table marks its
// items with entityType (the Java KCL 3.5 wrote in it): an entityType that
// is not one of kcl's own.
func MarksEntities(item map[string]types.AttributeValue) bool {
	entity, ok := item[AttrEntityType].(*types.AttributeValueMemberS)
	return ok && !slices.Contains(kclEntities, entity.Value)
}

// Item is one item of a lease table, classified and read.
type Item struct {
	Kind   Kind
	Key    string // leaseKey; "" when it is not a string
	Entity string // entityType; "" when it is not a string
	Lease  Lease  // KindLease
	Beat   Beat   // KindBeat
	Group  Group  // KindGroup
	// Err says why an item of kind KindLease, KindBeat or KindGroup cannot
	// be read (an *Error): kcl reports it and never rewrites it.
	Err error
}

// Read classifies an item and reads it: a lease, a heartbeat or the group
// item. Items of kinds KindKCL and KindJava are classified only.
func Read(item map[string]types.AttributeValue) Item {
	it := Item{Kind: Classify(item)}
	if key, ok := item[AttrLeaseKey].(*types.AttributeValueMemberS); ok {
		it.Key = key.Value
	}
	if entity, ok := item[AttrEntityType].(*types.AttributeValueMemberS); ok {
		it.Entity = entity.Value
	}
	switch it.Kind {
	case KindLease:
		it.Lease, it.Err = ParseLease(item)
	case KindBeat:
		it.Beat, it.Err = ParseBeat(item)
	case KindGroup:
		it.Group, it.Err = ParseGroup(item)
	}
	return it
}
