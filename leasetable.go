package kcl

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Lease table attribute names, those of the Java KCL 2.x, so that a table the
// Java KCL wrote is resumed in place and the other way round.
const (
	attrLeaseKey      = "leaseKey"
	attrOwner         = "leaseOwner"
	attrCounter       = "leaseCounter"
	attrCheckpoint    = "checkpoint"
	attrCheckpointSub = "checkpointSubSequenceNumber"
	attrOwnerSwitches = "ownerSwitchesSinceCheckpoint"
	attrParents       = "parentShardId"
	// The Java KCL's multi-stream layout (DynamoDBMultiStreamLeaseSerializer):
	// the stream's identifier (account:stream:creationEpoch) and the shard ID
	// of a lease keyed identifier:shardId (streams.go).
	attrStreamName = "streamName"
	attrShardID    = "shardId"
	// The Java KCL 3.x: the old owner during a graceful hand-off
	// (lease.checkpointOwner), and the kind of an item (3.5 and later).
	attrCheckpointOwner = "checkpointOwner"
	attrEntityType      = "entityType"
	// kcl's own: a worker asking the owner to hand the lease over, and the
	// stopping flag of a worker's heartbeat item.
	attrHandoff  = "handoffTo"
	attrStopping = "workerStopping"
	attrToken    = "workerToken" // the process that writes a heartbeat item
	// kcl's own: where a lease still at LATEST or AT_TIMESTAMP starts for
	// later owners (lease.startAt), in Unix milliseconds.
	attrStartAt = "kclStartTimestamp"
	// kcl's own: the group item (groupKey), which tells the workers when to
	// read the whole table (group.go).
	attrEpoch   = "kclEpoch"
	attrScans   = "kclScans"
	attrExpired = "kclExpired"
	attrDigest  = "kclDigest"
)

// entityType values. The Java KCL 3.5 marks every item of its lease table
// with an entityType: LEASE for leases (absent also means a lease), others for
// its own records (Leader, Migration3.0, TableMigration3.5, worker metrics;
// java-kcl-3x.md §4). kcl marks its own items with values of its own, so that
// the Java KCL's lease listing skips them. Items of any other entityType are
// the Java KCL's: kcl leaves them alone.
const (
	entityLease     = "LEASE"
	entityKCLWorker = "KCL_WORKER" // heartbeat items (workerKeyPrefix)
	entityKCLGroup  = "KCL_GROUP"  // the group item
)

// kclEntities are the entityType values of kcl's own items.
//
// The Java KCL 3.5's lease listing skips them, but its leader's lease
// assignment scan (3.5.0, 3.5.1: DynamoDBLeaseTableDao.resolveEntityType)
// reads an entityType it does not know as a lease. kcl's own items must
// therefore never carry ownerSwitchesSinceCheckpoint: without it the Java
// serializer fails on the item (a @NonNull setter) and logs it, where with it
// the item would pass for a lease and be assigned to a Java worker.
var kclEntities = []string{entityKCLWorker, entityKCLGroup}

// setEntity returns the clause "entityType = :entityType" for the SET of an
// update that writes one of kcl's own items, and adds its value (entity, one
// of kclEntities) to values. Every write of a kcl item goes through it, so
// that the item carries its entityType from its first write on.
func setEntity(values map[string]types.AttributeValue, entity string) string {
	values[":entityType"] = &types.AttributeValueMemberS{Value: entity}
	return attrEntityType + " = :entityType"
}

// itemKind is what an item of the lease table is to kcl.
type itemKind int

const (
	itemLease  itemKind = iota // a lease: entityType absent, not a string, or LEASE, as the Java KCL reads it
	itemWorker                 // a kcl heartbeat (key workerKeyPrefix+WorkerID)
	itemGroup                  // kcl's group item (key groupKey)
	itemKCL                    // another item of kcl's own (entityType in kclEntities)
	itemJava                   // a Java KCL item that is not a lease: never read as a lease, reported or written
)

// classifyItem tells what an item is. Like the Java KCL's serializer
// (DynamoDBLeaseSerializer.fromDynamoRecord), it takes an item for a lease
// unless it has a string entityType other than LEASE.
func classifyItem(item map[string]types.AttributeValue) itemKind {
	if key, ok := item[attrLeaseKey].(*types.AttributeValueMemberS); ok && strings.HasPrefix(key.Value, workerKeyPrefix) {
		return itemWorker
	} else if ok && key.Value == groupKey {
		return itemGroup
	}
	entity, ok := item[attrEntityType].(*types.AttributeValueMemberS)
	switch {
	case !ok || entity.Value == entityLease:
		return itemLease
	case slices.Contains(kclEntities, entity.Value):
		return itemKCL
	}
	return itemJava
}

// marksEntities reports whether an item shows that the table marks items
// with entityType (the Java KCL 3.5 wrote in it): an entityType that is not
// one of kcl's own.
func marksEntities(item map[string]types.AttributeValue) bool {
	entity, ok := item[attrEntityType].(*types.AttributeValueMemberS)
	return ok && !slices.Contains(kclEntities, entity.Value)
}

// dynamoLeases is the lease table in DynamoDB. Every write but create is
// conditional on the lease counter read before it, so two workers can never
// both believe a write of theirs took effect.
type dynamoLeases struct {
	db    DynamoDBAPI
	table string
	// entities: a read of the table found items marked with entityType (see
	// marksEntities), so leases created carry entityType LEASE, as the Java
	// KCL 3.5 writes them. Every create follows a list (syncShards).
	entities atomic.Bool
}

func (t *dynamoLeases) name() string { return t.table }

// ensure creates the table (on-demand billing) when it is missing, waits until
// it is active, and checks its key schema.
func (t *dynamoLeases) ensure(ctx context.Context) error {
	out, err := t.db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: &t.table})
	var notFound *types.ResourceNotFoundException
	if errors.As(err, &notFound) {
		_, err = t.db.CreateTable(ctx, &dynamodb.CreateTableInput{
			TableName:            &t.table,
			BillingMode:          types.BillingModePayPerRequest,
			AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String(attrLeaseKey), AttributeType: types.ScalarAttributeTypeS}},
			KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String(attrLeaseKey), KeyType: types.KeyTypeHash}},
		})
		var inUse *types.ResourceInUseException
		if err != nil && !errors.As(err, &inUse) { // in use: another worker is creating it
			return err
		}
		out, err = t.waitActive(ctx)
	}
	if err != nil {
		return err
	}
	if out.Table == nil || out.Table.TableStatus != types.TableStatusActive {
		if out, err = t.waitActive(ctx); err != nil {
			return err
		}
	}
	ks := out.Table.KeySchema
	if len(ks) != 1 || aws.ToString(ks[0].AttributeName) != attrLeaseKey {
		return errNotLeaseTable
	}
	return nil
}

// errNotLeaseTable says a table of the lease table's name exists with another
// key schema. No retry can fix it.
var errNotLeaseTable = fmt.Errorf("key schema is not a lease table's (hash key %q only)", attrLeaseKey)

func (t *dynamoLeases) waitActive(ctx context.Context) (*dynamodb.DescribeTableOutput, error) {
	w := dynamodb.NewTableExistsWaiter(t.db, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay, o.MaxDelay = 50*time.Millisecond, 2*time.Second
	})
	return w.WaitForOutput(ctx, &dynamodb.DescribeTableInput{TableName: &t.table}, 5*time.Minute)
}

// list reads every item, with a consistent read when asked. Items that are
// neither leases nor items of kcl's own it understands are returned as
// errors in bad, never rewritten; the Java KCL's items
// that are not leases (classifyItem) are skipped.
func (t *dynamoLeases) list(ctx context.Context, consistent bool) (tableSnapshot, error) {
	snap := tableSnapshot{workers: map[string]workerBeat{}}
	in := &dynamodb.ScanInput{TableName: &t.table, ConsistentRead: aws.Bool(consistent)}
	for {
		out, err := t.db.Scan(ctx, in)
		if err != nil {
			return tableSnapshot{}, err
		}
		for _, item := range out.Items {
			if marksEntities(item) {
				t.entities.Store(true)
			}
			switch classifyItem(item) {
			case itemJava, itemKCL:
				continue
			case itemGroup:
				g, err := groupFromItem(item)
				if err != nil {
					snap.bad = append(snap.bad, err)
					continue
				}
				snap.group = g
			case itemWorker:
				key := item[attrLeaseKey].(*types.AttributeValueMemberS)
				counter, err := numberAttr(item, attrCounter, true)
				if err != nil {
					snap.bad = append(snap.bad, fmt.Errorf("heartbeat %q: %s: %w", key.Value, attrCounter, err))
					continue
				}
				stopping, _ := item[attrStopping].(*types.AttributeValueMemberBOOL)
				snap.workers[strings.TrimPrefix(key.Value, workerKeyPrefix)] = workerBeat{counter: counter, stopping: stopping != nil && stopping.Value}
			default:
				l, err := leaseFromItem(item)
				if err != nil {
					snap.bad = append(snap.bad, err)
					continue
				}
				snap.leases = append(snap.leases, l)
			}
		}
		if len(out.LastEvaluatedKey) == 0 {
			return snap, nil
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
}

var groupItemKey = map[string]types.AttributeValue{attrLeaseKey: &types.AttributeValueMemberS{Value: groupKey}}

// group reads the group item with an eventually consistent read: a stale
// answer only delays a pass.
func (t *dynamoLeases) group(ctx context.Context) (groupItem, error) {
	out, err := t.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: &t.table, Key: groupItemKey})
	if err != nil || out.Item == nil {
		return groupItem{}, err
	}
	return groupFromItem(out.Item)
}

// bump adds one to the group's epoch, making the item if there is none.
func (t *dynamoLeases) bump(ctx context.Context) error {
	values := map[string]types.AttributeValue{":one": number(1)}
	_, err := t.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: &t.table, Key: groupItemKey,
		UpdateExpression:          aws.String("SET " + setEntity(values, entityKCLGroup) + " ADD " + attrEpoch + " :one"),
		ExpressionAttributeValues: values,
	})
	return err
}

// tick bumps the group's scans counter, making the item if there is none.
func (t *dynamoLeases) tick(ctx context.Context) error {
	values := map[string]types.AttributeValue{":one": number(1)}
	_, err := t.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: &t.table, Key: groupItemKey,
		UpdateExpression:          aws.String("SET " + setEntity(values, entityKCLGroup) + " ADD " + attrScans + " :one"),
		ExpressionAttributeValues: values,
	})
	return err
}

// publish writes a scanner's judgement and bumps the epoch, unless the group
// holds digest already (errLeaseLost).
func (t *dynamoLeases) publish(ctx context.Context, expired map[string]int64, digest string) error {
	m := make(map[string]types.AttributeValue, len(expired))
	for k, c := range expired {
		m[k] = number(c)
	}
	values := map[string]types.AttributeValue{
		":m": &types.AttributeValueMemberM{Value: m}, ":d": &types.AttributeValueMemberS{Value: digest}, ":one": number(1),
	}
	_, err := t.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: &t.table, Key: groupItemKey,
		ConditionExpression:       aws.String("attribute_not_exists(" + attrDigest + ") OR " + attrDigest + " <> :d"),
		UpdateExpression:          aws.String("SET " + attrExpired + " = :m, " + attrDigest + " = :d, " + setEntity(values, entityKCLGroup) + " ADD " + attrEpoch + " :one"),
		ExpressionAttributeValues: values,
	})
	if isConditionFailed(err) {
		return errLeaseLost
	}
	return err
}

// removeGroup deletes the group item if its epoch is still epoch.
func (t *dynamoLeases) removeGroup(ctx context.Context, epoch int64) error {
	_, err := t.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName: &t.table, Key: groupItemKey,
		ConditionExpression:       aws.String(attrEpoch + " = :e"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":e": number(epoch)},
	})
	if isConditionFailed(err) {
		return errLeaseLost
	}
	return err
}

func groupFromItem(item map[string]types.AttributeValue) (groupItem, error) {
	bad := func(attr, why string) (groupItem, error) {
		return groupItem{}, fmt.Errorf("group item %q: %s: %s", groupKey, attr, why)
	}
	g := groupItem{present: true}
	var err error
	if g.epoch, err = numberAttr(item, attrEpoch, false); err != nil {
		return bad(attrEpoch, err.Error())
	}
	if g.scans, err = numberAttr(item, attrScans, false); err != nil {
		return bad(attrScans, err.Error())
	}
	if v, ok := item[attrDigest]; ok {
		s, ok := v.(*types.AttributeValueMemberS)
		if !ok {
			return bad(attrDigest, "not a string")
		}
		g.digest = s.Value
	}
	if v, ok := item[attrExpired]; ok {
		m, ok := v.(*types.AttributeValueMemberM)
		if !ok {
			return bad(attrExpired, "not a map")
		}
		g.expired = make(map[string]int64, len(m.Value))
		for k := range m.Value {
			c, err := numberAttr(m.Value, k, true)
			if err != nil {
				return bad(attrExpired+"."+k, err.Error())
			}
			g.expired[k] = c
		}
	}
	return g, nil
}

// create writes a new, unowned lease unless one exists for the shard already.
// A lease of a multi-stream table is written as the Java KCL writes it
// (java-kcl-3x.md §1, §5): with streamName and shardId, and its parents'
// bare shard IDs (the keys of its parents' leases less the stream's
// identifier).
func (t *dynamoLeases) create(ctx context.Context, l lease) (bool, error) {
	item := map[string]types.AttributeValue{
		attrLeaseKey:      &types.AttributeValueMemberS{Value: l.shardID},
		attrCounter:       number(l.counter),
		attrCheckpoint:    &types.AttributeValueMemberS{Value: l.checkpoint.seq},
		attrCheckpointSub: number(l.checkpoint.sub),
		attrOwnerSwitches: number(0),
	}
	stream, shard := splitLeaseKey(l.shardID)
	if stream != "" {
		item[attrStreamName] = &types.AttributeValueMemberS{Value: stream}
		item[attrShardID] = &types.AttributeValueMemberS{Value: shard}
	}
	if len(l.parents) > 0 {
		parents := make([]string, len(l.parents))
		for i, p := range l.parents {
			parents[i] = strings.TrimPrefix(p, stream+":")
		}
		item[attrParents] = &types.AttributeValueMemberSS{Value: parents}
	}
	if t.entities.Load() {
		item[attrEntityType] = &types.AttributeValueMemberS{Value: entityLease}
	}
	_, err := t.db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:           &t.table,
		Item:                item,
		ConditionExpression: aws.String("attribute_not_exists(" + attrLeaseKey + ")"),
	})
	if isConditionFailed(err) {
		return false, nil
	}
	return err == nil, err
}

// take makes owner the owner of l, provided nobody wrote l since it was
// read, and clears any hand-off claim, kcl's or the Java KCL's
// (checkpointOwner: its take removes it too, DynamoDBLeaseSerializer's
// getDynamoTakeLeaseUpdate).
func (t *dynamoLeases) take(ctx context.Context, l lease, owner string) (lease, error) {
	cond := "leaseCounter = :c AND attribute_not_exists(leaseOwner)"
	values := map[string]types.AttributeValue{
		":c": number(l.counter), ":n": number(l.counter + 1),
		":me": &types.AttributeValueMemberS{Value: owner}, ":sw": number(l.ownerSwitches + 1),
	}
	if l.owner != "" {
		cond = "leaseCounter = :c AND leaseOwner = :old"
		values[":old"] = &types.AttributeValueMemberS{Value: l.owner}
	}
	set := "SET leaseOwner = :me, leaseCounter = :n, ownerSwitchesSinceCheckpoint = :sw"
	if !l.startAt.IsZero() {
		set += ", " + attrStartAt + " = :start"
		values[":start"] = number(l.startAt.UnixMilli())
	}
	err := t.update(ctx, l.shardID, cond, set+" REMOVE handoffTo, "+attrCheckpointOwner, values)
	if err != nil {
		return l, err
	}
	l.owner, l.counter, l.ownerSwitches, l.handoffTo, l.checkpointOwner = owner, l.counter+1, l.ownerSwitches+1, "", ""
	return l, nil
}

// claim asks the owner of l to hand it to taker. It leaves the counter alone,
// so the owner's own writes, checkpoints and the hand-off, still succeed.
func (t *dynamoLeases) claim(ctx context.Context, l lease, taker string) error {
	return t.update(ctx, l.shardID, "leaseOwner = :owner AND attribute_not_exists(handoffTo)", "SET handoffTo = :taker",
		map[string]types.AttributeValue{
			":owner": &types.AttributeValueMemberS{Value: l.owner}, ":taker": &types.AttributeValueMemberS{Value: taker},
		})
}

func (t *dynamoLeases) unclaim(ctx context.Context, l lease) error {
	return t.update(ctx, l.shardID, "leaseOwner = :owner AND handoffTo = :taker", "REMOVE handoffTo",
		map[string]types.AttributeValue{
			":owner": &types.AttributeValueMemberS{Value: l.owner}, ":taker": &types.AttributeValueMemberS{Value: l.handoffTo},
		})
}

// checkpoint writes cp to a lease this worker holds and passes it to next.
// A lease in a Java KCL hand-off (checkpointOwner) is never written: its old
// owner reads it until it passes it on.
func (t *dynamoLeases) checkpoint(ctx context.Context, l lease, cp checkpoint, next string) (lease, error) {
	update := "SET checkpoint = :cp, checkpointSubSequenceNumber = :sub, ownerSwitchesSinceCheckpoint = :zero, leaseCounter = :n"
	values := map[string]types.AttributeValue{
		":me": &types.AttributeValueMemberS{Value: l.owner}, ":c": number(l.counter), ":n": number(l.counter + 1),
		":cp": &types.AttributeValueMemberS{Value: cp.seq}, ":sub": number(cp.sub), ":zero": number(0),
	}
	switch next {
	case l.owner:
	case "":
		update += " REMOVE leaseOwner, handoffTo"
	default:
		update += ", leaseOwner = :next REMOVE handoffTo"
		values[":next"] = &types.AttributeValueMemberS{Value: next}
	}
	if err := t.update(ctx, l.shardID, "leaseOwner = :me AND leaseCounter = :c AND attribute_not_exists("+attrCheckpointOwner+")", update, values); err != nil {
		return l, err
	}
	l.counter++
	l.checkpoint, l.ownerSwitches = cp, 0
	if next != l.owner {
		l.owner, l.handoffTo = next, ""
	}
	return l, nil
}

// heartbeat bumps the counter of the worker's own item from last, the
// counter this process wrote before, and marks the item with token, this
// process's own. With last < 0 (the first beat of a process) it creates the
// item or takes it over, whatever it holds. A write whose condition fails is
// read back: if the item holds this process's token, an earlier write of its
// own took effect with its reply lost, and the write is made again from the
// counter found; another token means another process beats with the same
// worker ID (errDuplicateWorker).
func (t *dynamoLeases) heartbeat(ctx context.Context, worker, token string, stopping bool, last int64) (int64, error) {
	key := map[string]types.AttributeValue{attrLeaseKey: &types.AttributeValueMemberS{Value: workerKeyPrefix + worker}}
	values := map[string]types.AttributeValue{
		":tok": &types.AttributeValueMemberS{Value: token}, ":stopping": &types.AttributeValueMemberBOOL{Value: stopping},
	}
	in := &dynamodb.UpdateItemInput{TableName: &t.table, Key: key, ExpressionAttributeValues: values}
	if last < 0 {
		// A heartbeat item made anew starts its counter at the time in
		// microseconds, not at 0: beats are far rarer than that, so a
		// counter an earlier item of this worker had, which the group item
		// may still name as expired, never comes back.
		values[":one"], values[":base"] = number(1), number(time.Now().UnixMicro())
		in.UpdateExpression = aws.String("SET leaseCounter = if_not_exists(leaseCounter, :base) + :one, " + attrToken + " = :tok, " + attrStopping + " = :stopping, " + setEntity(values, entityKCLWorker))
		in.ReturnValues = types.ReturnValueUpdatedNew
		out, err := t.db.UpdateItem(ctx, in)
		if err != nil {
			return 0, err
		}
		return numberAttr(out.Attributes, attrCounter, true)
	}
	values[":c"], values[":n"] = number(last), number(last+1)
	in.UpdateExpression = aws.String("SET leaseCounter = :n, " + attrStopping + " = :stopping, " + setEntity(values, entityKCLWorker))
	in.ConditionExpression = aws.String("leaseCounter = :c AND " + attrToken + " = :tok")
	_, err := t.db.UpdateItem(ctx, in)
	if !isConditionFailed(err) {
		return last + 1, err
	}
	item, err := t.get(ctx, key)
	if err != nil {
		return 0, err
	}
	if item == nil { // removed by a worker that took this one for dead
		return t.heartbeat(ctx, worker, token, stopping, -1)
	}
	if tok, _ := item[attrToken].(*types.AttributeValueMemberS); tok == nil || tok.Value != token {
		return 0, errDuplicateWorker
	}
	n, err := numberAttr(item, attrCounter, true)
	if err != nil || n == last {
		return 0, fmt.Errorf("heartbeat %q: %s is %d, the write's condition failed", worker, attrCounter, n)
	}
	// An earlier write of this process took effect though its reply was
	// lost (also one that made the item anew after another worker removed
	// it): write again from there, so that the beat returned is one sent no
	// earlier than the caller thinks.
	return t.heartbeat(ctx, worker, token, stopping, n)
}

// get reads one item, nil when there is none.
func (t *dynamoLeases) get(ctx context.Context, key map[string]types.AttributeValue) (map[string]types.AttributeValue, error) {
	out, err := t.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: &t.table, Key: key, ConsistentRead: aws.Bool(true)})
	if err != nil {
		return nil, err
	}
	return out.Item, nil
}

func (t *dynamoLeases) removeWorker(ctx context.Context, worker string, counter int64) error {
	in := &dynamodb.DeleteItemInput{
		TableName: &t.table,
		Key:       map[string]types.AttributeValue{attrLeaseKey: &types.AttributeValueMemberS{Value: workerKeyPrefix + worker}},
	}
	if counter >= 0 {
		in.ConditionExpression = aws.String("leaseCounter = :c")
		in.ExpressionAttributeValues = map[string]types.AttributeValue{":c": number(counter)}
	}
	_, err := t.db.DeleteItem(ctx, in)
	if isConditionFailed(err) {
		return errLeaseLost
	}
	return err
}

// readBeat reads a worker's heartbeat item, with a consistent read.
func (t *dynamoLeases) readBeat(ctx context.Context, worker string) (workerBeat, bool, error) {
	item, err := t.get(ctx, map[string]types.AttributeValue{attrLeaseKey: &types.AttributeValueMemberS{Value: workerKeyPrefix + worker}})
	if err != nil || item == nil {
		return workerBeat{}, false, err
	}
	counter, err := numberAttr(item, attrCounter, true)
	if err != nil {
		return workerBeat{}, false, fmt.Errorf("heartbeat %q: %s: %w", worker, attrCounter, err)
	}
	stopping, _ := item[attrStopping].(*types.AttributeValueMemberBOOL)
	return workerBeat{counter: counter, stopping: stopping != nil && stopping.Value}, true, nil
}

// update runs one conditional update of a lease item; a failed condition
// is errLeaseLost.
func (t *dynamoLeases) update(ctx context.Context, shardID, cond, update string, values map[string]types.AttributeValue) error {
	_, err := t.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 &t.table,
		Key:                       map[string]types.AttributeValue{attrLeaseKey: &types.AttributeValueMemberS{Value: shardID}},
		ConditionExpression:       &cond,
		UpdateExpression:          &update,
		ExpressionAttributeValues: values,
	})
	if isConditionFailed(err) {
		return errLeaseLost
	}
	return err
}

// read reads one lease, with a consistent read.
func (t *dynamoLeases) read(ctx context.Context, shardID string) (lease, bool, error) {
	item, err := t.get(ctx, map[string]types.AttributeValue{attrLeaseKey: &types.AttributeValueMemberS{Value: shardID}})
	if err != nil || item == nil {
		return lease{}, false, err
	}
	l, err := leaseFromItem(item)
	return l, err == nil, err
}

func isConditionFailed(err error) bool {
	var ccf *types.ConditionalCheckFailedException
	return errors.As(err, &ccf)
}

func number(n int64) *types.AttributeValueMemberN {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}

// leaseFromItem reads a lease item. Attributes kcl does not use are ignored
// (and, since kcl only ever updates the attributes it owns, kept).
func leaseFromItem(item map[string]types.AttributeValue) (lease, error) {
	var l lease
	key, ok := item[attrLeaseKey].(*types.AttributeValueMemberS)
	if !ok || key.Value == "" {
		return l, fmt.Errorf("item without a string %s", attrLeaseKey)
	}
	l.shardID = key.Value
	bad := func(attr, why string) (lease, error) {
		return lease{}, fmt.Errorf("lease %q: %s: %s", l.shardID, attr, why)
	}
	if v, present := item[attrOwner]; present {
		s, ok := v.(*types.AttributeValueMemberS)
		if !ok {
			return bad(attrOwner, "not a string")
		}
		l.owner = s.Value
	}
	var err error
	if l.counter, err = numberAttr(item, attrCounter, true); err != nil {
		return bad(attrCounter, err.Error())
	}
	cp, ok := item[attrCheckpoint].(*types.AttributeValueMemberS)
	if !ok {
		return bad(attrCheckpoint, "missing or not a string")
	}
	l.checkpoint.seq = cp.Value
	if !l.checkpoint.isSentinel() && !isSequenceNumber(cp.Value) {
		return bad(attrCheckpoint, fmt.Sprintf("%q is neither a sequence number nor a sentinel", cp.Value))
	}
	if l.checkpoint.sub, err = numberAttr(item, attrCheckpointSub, false); err != nil {
		return bad(attrCheckpointSub, err.Error())
	}
	if l.ownerSwitches, err = numberAttr(item, attrOwnerSwitches, false); err != nil {
		return bad(attrOwnerSwitches, err.Error())
	}
	if v, present := item[attrHandoff]; present {
		s, ok := v.(*types.AttributeValueMemberS)
		if !ok {
			return bad(attrHandoff, "not a string")
		}
		l.handoffTo = s.Value
	}
	// Read as the Java KCL reads it: a value that is not a string is none.
	if co, ok := item[attrCheckpointOwner].(*types.AttributeValueMemberS); ok {
		l.checkpointOwner = co.Value
	}
	if start, err := numberAttr(item, attrStartAt, false); err != nil {
		return bad(attrStartAt, err.Error())
	} else if start > 0 {
		l.startAt = time.UnixMilli(start)
	}
	if v, present := item[attrParents]; present {
		switch p := v.(type) {
		case *types.AttributeValueMemberSS:
			l.parents = p.Value
		case *types.AttributeValueMemberS: // tolerated: a single parent written as a string
			l.parents = []string{p.Value}
		default:
			return bad(attrParents, "not a string set")
		}
	}
	// In a multi-stream table parents are stored as bare shard IDs of the
	// same stream: read as the keys of their leases.
	if stream, _ := splitLeaseKey(l.shardID); stream != "" {
		l.parents = slices.Clone(l.parents) // not the item's own
		for i, p := range l.parents {
			if !multiStreamKey(p) {
				l.parents[i] = leaseKey(stream, p)
			}
		}
	}
	return l, nil
}

func numberAttr(item map[string]types.AttributeValue, attr string, required bool) (int64, error) {
	v, present := item[attr]
	if !present {
		if required {
			return 0, errors.New("missing")
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

// isSequenceNumber reports whether s looks like a Kinesis sequence number: up
// to 128 decimal digits.
func isSequenceNumber(s string) bool {
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
