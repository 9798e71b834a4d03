package kcl

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/kclgo/kcl/internal/leaseitem"
)

// The lease table's attributes, keys and entity types, as this package
// names them. internal/leaseitem spells them, and holds every rule of the
// item format: what an item is, how a lease, a heartbeat and the group item
// are read, and how a new lease is written. This file holds the writes:
// which attributes each one sets, and on what condition.
const (
	attrLeaseKey        = leaseitem.AttrLeaseKey
	attrOwner           = leaseitem.AttrOwner
	attrCounter         = leaseitem.AttrCounter
	attrCheckpoint      = leaseitem.AttrCheckpoint
	attrCheckpointSub   = leaseitem.AttrCheckpointSub
	attrOwnerSwitches   = leaseitem.AttrOwnerSwitches
	attrCheckpointOwner = leaseitem.AttrCheckpointOwner
	attrEntityType      = leaseitem.AttrEntityType
	attrHandoff         = leaseitem.AttrHandoff
	attrStartAt         = leaseitem.AttrStartAt
	attrWriter          = leaseitem.AttrWriter
	attrStopping        = leaseitem.AttrStopping
	attrToken           = leaseitem.AttrToken
	attrStreams         = leaseitem.AttrStreams
	attrEpoch           = leaseitem.AttrEpoch
	attrScans           = leaseitem.AttrScans
	attrExpired         = leaseitem.AttrExpired
	attrDigest          = leaseitem.AttrDigest
	attrCreated         = leaseitem.AttrCreated

	workerKeyPrefix = leaseitem.WorkerKeyPrefix // then the WorkerID: a worker's heartbeat item
	groupKey        = leaseitem.GroupKey        // the group item (group.go)

	entityKCLWorker = leaseitem.EntityKCLWorker
	entityKCLGroup  = leaseitem.EntityKCLGroup
)

// setEntity returns the clause that sets entityType, for the SET of an
// update that writes one of kcl's own items, and adds its value (entity,
// entityKCLWorker or entityKCLGroup) to values. Every write of a kcl item
// goes through it, so that the item carries its entityType from its first
// write on.
func setEntity(values map[string]types.AttributeValue, entity string) string {
	values[":entityType"] = &types.AttributeValueMemberS{Value: entity}
	return eq(attrEntityType, ":entityType")
}

// Expressions of the writes, built from the attribute names.
func eq(attr, value string) string     { return attr + " = " + value } // a condition, or an assignment
func absent(attr string) string        { return "attribute_not_exists(" + attr + ")" }
func and(conds ...string) string       { return strings.Join(conds, " AND ") }
func setting(assigns ...string) string { return "SET " + strings.Join(assigns, ", ") }
func removing(attrs ...string) string  { return "REMOVE " + strings.Join(attrs, ", ") }
func adding(attr, value string) string { return "ADD " + attr + " " + value }
func clauses(cls ...string) string     { return strings.Join(cls, " ") }

// dynamoLeases is the lease table in DynamoDB. Every write but create is
// conditional on the lease counter read before it, so two workers can never
// both believe a write of theirs took effect.
type dynamoLeases struct {
	db    DynamoDBAPI
	table string
	// entities: a read of the table found items marked with entityType
	// (leaseitem.MarksEntities), so leases created carry entityType LEASE,
	// as the Java KCL 3.5 writes them. Every create follows a list
	// (syncShards).
	entities atomic.Bool
	// leaseDuration is Options.LeaseDuration, which heartbeats carry
	// (leaseitem.AttrLeaseDuration) for the command's watch. Immutable.
	leaseDuration time.Duration
	// settings are Options.LeaseTableSettings. Immutable.
	settings LeaseTableSettings
	// created: this worker found the table missing and called CreateTable,
	// whatever the answer (in use: another worker's racing it, or the SDK's
	// retry of this one's whose answer was lost), and ensure has not
	// finished the settings that follow it. Only touched by start.
	created bool
}

func (t *dynamoLeases) name() string { return t.table }

// ensure creates the table when it is missing (unless settings forbid
// it), waits until it is active, and checks its key schema. A worker that
// found it missing and asked to create it then turns on point-in-time
// recovery, if asked, before ensure returns nil: a retried ensure finds the
// table and does that part again. A CreateTable that failed, or was
// answered in use, counts: it may have made the table (the SDK's retry of
// a call whose answer was lost is answered in use), and turning recovery
// on twice does no harm.
func (t *dynamoLeases) ensure(ctx context.Context) error {
	out, err := t.db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: &t.table})
	var notFound *types.ResourceNotFoundException
	if errors.As(err, &notFound) {
		if t.settings.NoCreate {
			return errNoTable
		}
		_, err = t.db.CreateTable(ctx, t.settings.createInput(t.table))
		t.created = true // whatever the answer: it may have made the table
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
	if !leaseitem.IsLeaseTable(out.Table.KeySchema) {
		return errNotLeaseTable
	}
	if t.created && t.settings.PointInTimeRecovery {
		if _, err := t.db.UpdateContinuousBackups(ctx, pitrInput(t.table)); err != nil {
			return fmt.Errorf("turning on point-in-time recovery: %w", err)
		}
	}
	t.created = false
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
// errors in bad, never rewritten; the Java KCL's items that are not leases
// (leaseitem.KindJava) are skipped.
func (t *dynamoLeases) list(ctx context.Context, consistent bool) (tableSnapshot, error) {
	snap := tableSnapshot{workers: map[string]workerBeat{}}
	in := &dynamodb.ScanInput{TableName: &t.table, ConsistentRead: aws.Bool(consistent)}
	for {
		out, err := t.db.Scan(ctx, in)
		if err != nil {
			return tableSnapshot{}, err
		}
		for _, item := range out.Items {
			if leaseitem.MarksEntities(item) {
				t.entities.Store(true)
			}
			it := leaseitem.Read(item)
			switch {
			case it.Kind == leaseitem.KindJava || it.Kind == leaseitem.KindKCL:
			case it.Err != nil:
				snap.bad = append(snap.bad, it.Err)
			case it.Kind == leaseitem.KindGroup:
				snap.group = groupOf(it.Group)
			case it.Kind == leaseitem.KindBeat:
				snap.workers[it.Beat.Worker] = beatOf(it.Beat)
			default:
				snap.leases = append(snap.leases, leaseOf(it.Lease))
			}
		}
		if len(out.LastEvaluatedKey) == 0 {
			return snap, nil
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
}

var groupItemKey = leaseitem.ItemKey(groupKey)

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
	values := map[string]types.AttributeValue{":one": leaseitem.Number(1)}
	_, err := t.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: &t.table, Key: groupItemKey,
		UpdateExpression:          aws.String(clauses(setting(setEntity(values, entityKCLGroup)), adding(attrEpoch, ":one"))),
		ExpressionAttributeValues: values,
	})
	return err
}

// tick bumps the group's scans counter, making the item if there is none.
func (t *dynamoLeases) tick(ctx context.Context) error {
	values := map[string]types.AttributeValue{":one": leaseitem.Number(1)}
	_, err := t.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: &t.table, Key: groupItemKey,
		UpdateExpression:          aws.String(clauses(setting(setEntity(values, entityKCLGroup)), adding(attrScans, ":one"))),
		ExpressionAttributeValues: values,
	})
	return err
}

// publish writes a scanner's judgement and bumps the epoch, unless the group
// holds digest already (errLeaseLost).
func (t *dynamoLeases) publish(ctx context.Context, expired map[string]int64, digest string) error {
	m := make(map[string]types.AttributeValue, len(expired))
	for k, c := range expired {
		m[k] = leaseitem.Number(c)
	}
	values := map[string]types.AttributeValue{
		":m": &types.AttributeValueMemberM{Value: m}, ":d": &types.AttributeValueMemberS{Value: digest}, ":one": leaseitem.Number(1),
	}
	_, err := t.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: &t.table, Key: groupItemKey,
		ConditionExpression:       aws.String(absent(attrDigest) + " OR " + attrDigest + " <> :d"),
		UpdateExpression:          aws.String(clauses(setting(eq(attrExpired, ":m"), eq(attrDigest, ":d"), setEntity(values, entityKCLGroup)), adding(attrEpoch, ":one"))),
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
		ConditionExpression:       aws.String(eq(attrEpoch, ":e")),
		ExpressionAttributeValues: map[string]types.AttributeValue{":e": leaseitem.Number(epoch)},
	})
	if isConditionFailed(err) {
		return errLeaseLost
	}
	return err
}

// groupFromItem reads the group item.
func groupFromItem(item map[string]types.AttributeValue) (groupItem, error) {
	g, err := leaseitem.ParseGroup(item)
	if err != nil {
		return groupItem{}, err
	}
	return groupOf(g), nil
}

func groupOf(g leaseitem.Group) groupItem {
	return groupItem{present: true, epoch: g.Epoch, scans: g.Scans, expired: g.Expired, digest: g.Digest}
}

// create writes a new, unowned lease unless one exists for the shard already
// (leaseitem.NewItem).
func (t *dynamoLeases) create(ctx context.Context, l lease) (bool, error) {
	_, err := t.db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:           &t.table,
		Item:                leaseitem.NewItem(itemOf(l), t.entities.Load()),
		ConditionExpression: aws.String(absent(attrLeaseKey)),
	})
	if isConditionFailed(err) {
		return false, nil
	}
	return err == nil, err
}

// sameLease returns the condition that the stored lease is l as read: its
// counter, and the stream creation time it was stamped with (sameStream).
func sameLease(values map[string]types.AttributeValue, l lease) string {
	values[":c"] = leaseitem.Number(l.counter)
	return and(eq(attrCounter, ":c"), sameStream(values, l))
}

// sameStream returns the condition that the stored lease was stamped with
// l's stream creation time (lease.streamCreated), or unstamped as l is. A
// lease deleted and made again under its key (a stream created again, in a
// single-stream table) starts its counter over: a write decided on a read
// of the earlier one may find the same counter on the later one, but not
// its stamp.
//
// Unstamped is absent, or 0 (as a hand edit may leave it): both read as 0.
func sameStream(values map[string]types.AttributeValue, l lease) string {
	values[":sc"] = leaseitem.Number(l.streamCreated)
	if l.streamCreated == 0 {
		return "(" + absent(attrCreated) + " OR " + eq(attrCreated, ":sc") + ")"
	}
	return eq(attrCreated, ":sc")
}

// replace writes fresh, a new lease (leaseitem.NewItem), in place of l, if
// the stored lease is still l as read (sameLease).
func (t *dynamoLeases) replace(ctx context.Context, l, fresh lease) error {
	values := map[string]types.AttributeValue{}
	_, err := t.db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:                 &t.table,
		Item:                      leaseitem.NewItem(itemOf(fresh), t.entities.Load()),
		ConditionExpression:       aws.String(sameLease(values, l)),
		ExpressionAttributeValues: values,
	})
	if isConditionFailed(err) {
		return errLeaseLost
	}
	return err
}

// remove deletes l if the stored lease is still l as read (sameLease),
// with the checkpoint read.
func (t *dynamoLeases) remove(ctx context.Context, l lease) error {
	values := map[string]types.AttributeValue{":cp": &types.AttributeValueMemberS{Value: l.checkpoint.seq}}
	_, err := t.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName:                 &t.table,
		Key:                       leaseitem.ItemKey(l.shardID),
		ConditionExpression:       aws.String(and(sameLease(values, l), eq(attrCheckpoint, ":cp"))),
		ExpressionAttributeValues: values,
	})
	if isConditionFailed(err) {
		return errLeaseLost
	}
	return err
}

// take makes w.id the owner of l, provided nobody wrote l since it was
// read (sameLease, and the owner read), marks it written by w, and clears
// any hand-off claim, kcl's or the Java KCL's (checkpointOwner: its take
// removes it too, DynamoDBLeaseSerializer's getDynamoTakeLeaseUpdate).
func (t *dynamoLeases) take(ctx context.Context, l lease, w writer) (lease, error) {
	values := map[string]types.AttributeValue{
		":n":  leaseitem.Number(l.counter + 1),
		":me": &types.AttributeValueMemberS{Value: w.id}, ":sw": leaseitem.Number(l.ownerSwitches + 1),
	}
	cond := and(sameLease(values, l), absent(attrOwner))
	if l.owner != "" {
		cond = and(sameLease(values, l), eq(attrOwner, ":old"))
		values[":old"] = &types.AttributeValueMemberS{Value: l.owner}
	}
	assigns := append([]string{eq(attrOwner, ":me"), eq(attrCounter, ":n"), eq(attrOwnerSwitches, ":sw")}, writtenBy(values, w)...)
	if !l.startAt.IsZero() {
		assigns = append(assigns, eq(attrStartAt, ":start"))
		values[":start"] = leaseitem.Number(l.startAt.UnixMilli())
	}
	err := t.update(ctx, l.shardID, cond, clauses(setting(assigns...), removing(attrHandoff, attrCheckpointOwner)), values)
	if err != nil {
		return l, err
	}
	l.owner, l.counter, l.ownerSwitches, l.handoffTo, l.checkpointOwner = w.id, l.counter+1, l.ownerSwitches+1, "", ""
	l.writer = w
	return l, nil
}

// writtenBy returns the assignments that mark a lease written by w
// (lease.writer), and adds its value to values.
func writtenBy(values map[string]types.AttributeValue, w writer) []string {
	values[":writer"] = leaseitem.Writer{Worker: w.id, Token: w.token, Beat: w.beat}.Item()
	return []string{eq(attrWriter, ":writer")}
}

// claim asks the owner of l to hand it to taker. It leaves the counter alone,
// so the owner's own writes, checkpoints and the hand-off, still succeed.
func (t *dynamoLeases) claim(ctx context.Context, l lease, taker string) error {
	return t.update(ctx, l.shardID, and(eq(attrOwner, ":owner"), absent(attrHandoff)), setting(eq(attrHandoff, ":taker")),
		map[string]types.AttributeValue{
			":owner": &types.AttributeValueMemberS{Value: l.owner}, ":taker": &types.AttributeValueMemberS{Value: taker},
		})
}

func (t *dynamoLeases) unclaim(ctx context.Context, l lease) error {
	return t.update(ctx, l.shardID, and(eq(attrOwner, ":owner"), eq(attrHandoff, ":taker")), removing(attrHandoff),
		map[string]types.AttributeValue{
			":owner": &types.AttributeValueMemberS{Value: l.owner}, ":taker": &types.AttributeValueMemberS{Value: l.handoffTo},
		})
}

// checkpoint writes cp to a lease this worker holds and passes it to next,
// marking it written by w if it keeps it or ends it (SHARD_END, released). A lease in a Java KCL hand-off
// (checkpointOwner) is never written: its old owner reads it until it
// passes it on.
func (t *dynamoLeases) checkpoint(ctx context.Context, l lease, cp checkpoint, next string, w writer) (lease, error) {
	assigns := []string{eq(attrCheckpoint, ":cp"), eq(attrCheckpointSub, ":sub"), eq(attrOwnerSwitches, ":zero"), eq(attrCounter, ":n")}
	values := map[string]types.AttributeValue{
		":me": &types.AttributeValueMemberS{Value: l.owner}, ":c": leaseitem.Number(l.counter), ":n": leaseitem.Number(l.counter + 1),
		":cp": &types.AttributeValueMemberS{Value: cp.seq}, ":sub": leaseitem.Number(cp.sub), ":zero": leaseitem.Number(0),
	}
	var remove []string
	switch next {
	case l.owner:
		assigns = append(assigns, writtenBy(values, w)...)
	case "":
		remove = []string{attrOwner, attrHandoff, attrWriter}
		if cp.shardEnd() {
			// kcl's mark stays on a lease it ended: cleanup.go deletes
			// only those.
			remove = remove[:2]
			assigns = append(assigns, writtenBy(values, w)...)
		}
	default:
		assigns = append(assigns, eq(attrOwner, ":next"))
		remove = []string{attrHandoff, attrWriter}
		values[":next"] = &types.AttributeValueMemberS{Value: next}
	}
	expr := setting(assigns...)
	if len(remove) > 0 {
		expr = clauses(expr, removing(remove...))
	}
	cond := and(eq(attrOwner, ":me"), eq(attrCounter, ":c"), absent(attrCheckpointOwner))
	if err := t.update(ctx, l.shardID, cond, expr, values); err != nil {
		return l, err
	}
	l.counter++
	l.checkpoint, l.ownerSwitches = cp, 0
	switch {
	case next == l.owner:
		l.writer = w
	case next == "" && cp.shardEnd():
		l.owner, l.handoffTo, l.writer = "", "", w
	default:
		l.owner, l.handoffTo, l.writer = next, "", writer{}
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
func (t *dynamoLeases) heartbeat(ctx context.Context, worker, token string, stopping bool, last int64, streams []string) (int64, error) {
	key := leaseitem.ItemKey(leaseitem.WorkerKey(worker))
	values := map[string]types.AttributeValue{
		":tok": &types.AttributeValueMemberS{Value: token}, ":stopping": &types.AttributeValueMemberBOOL{Value: stopping},
	}
	assigns := []string{eq(attrStopping, ":stopping"), setEntity(values, entityKCLWorker)}
	if len(streams) > 0 {
		values[":streams"] = &types.AttributeValueMemberSS{Value: streams}
		assigns = append(assigns, eq(attrStreams, ":streams"))
	}
	if t.leaseDuration > 0 {
		values[":ld"] = leaseitem.Number(t.leaseDuration.Milliseconds())
		assigns = append(assigns, eq(leaseitem.AttrLeaseDuration, ":ld"))
	}
	in := &dynamodb.UpdateItemInput{TableName: &t.table, Key: key, ExpressionAttributeValues: values}
	if last < 0 {
		// A heartbeat item made anew starts its counter at the time in
		// microseconds, not at 0: beats are far rarer than that, so a
		// counter an earlier item of this worker had, which the group item
		// may still name as expired, never comes back.
		values[":one"], values[":base"] = leaseitem.Number(1), leaseitem.Number(time.Now().UnixMicro())
		in.UpdateExpression = aws.String(setting(append([]string{eq(attrCounter, "if_not_exists("+attrCounter+", :base) + :one"), eq(attrToken, ":tok")}, assigns...)...))
		in.ReturnValues = types.ReturnValueUpdatedNew
		out, err := t.db.UpdateItem(ctx, in)
		if err != nil {
			return 0, err
		}
		return leaseitem.Counter(out.Attributes)
	}
	values[":c"], values[":n"] = leaseitem.Number(last), leaseitem.Number(last+1)
	in.UpdateExpression = aws.String(setting(append([]string{eq(attrCounter, ":n")}, assigns...)...))
	in.ConditionExpression = aws.String(and(eq(attrCounter, ":c"), eq(attrToken, ":tok")))
	_, err := t.db.UpdateItem(ctx, in)
	if !isConditionFailed(err) {
		return last + 1, err
	}
	item, err := t.get(ctx, key)
	if err != nil {
		return 0, err
	}
	if item == nil { // removed by a worker that took this one for dead
		return t.heartbeat(ctx, worker, token, stopping, -1, streams)
	}
	if tok, _ := item[attrToken].(*types.AttributeValueMemberS); tok == nil || tok.Value != token {
		return 0, errDuplicateWorker
	}
	n, err := leaseitem.Counter(item)
	if err != nil || n == last {
		return 0, fmt.Errorf("heartbeat %q: %s is %d, the write's condition failed", worker, attrCounter, n)
	}
	// An earlier write of this process took effect though its reply was
	// lost (also one that made the item anew after another worker removed
	// it): write again from there, so that the beat returned is one sent no
	// earlier than the caller thinks.
	return t.heartbeat(ctx, worker, token, stopping, n, streams)
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
	in := &dynamodb.DeleteItemInput{TableName: &t.table, Key: leaseitem.ItemKey(leaseitem.WorkerKey(worker))}
	if counter >= 0 {
		in.ConditionExpression = aws.String(eq(attrCounter, ":c"))
		in.ExpressionAttributeValues = map[string]types.AttributeValue{":c": leaseitem.Number(counter)}
	}
	_, err := t.db.DeleteItem(ctx, in)
	if isConditionFailed(err) {
		return errLeaseLost
	}
	return err
}

// readBeat reads a worker's heartbeat item, with a consistent read.
func (t *dynamoLeases) readBeat(ctx context.Context, worker string) (workerBeat, bool, error) {
	item, err := t.get(ctx, leaseitem.ItemKey(leaseitem.WorkerKey(worker)))
	if err != nil || item == nil {
		return workerBeat{}, false, err
	}
	b, err := leaseitem.ParseBeat(item)
	if err != nil {
		return workerBeat{}, false, err
	}
	return beatOf(b), true, nil
}

// beatOf is the heartbeat an item holds.
func beatOf(b leaseitem.Beat) workerBeat {
	return workerBeat{counter: b.Counter, stopping: b.Stopping, streams: b.Streams}
}

// update runs one conditional update of a lease item; a failed condition
// is errLeaseLost.
func (t *dynamoLeases) update(ctx context.Context, shardID, cond, expr string, values map[string]types.AttributeValue) error {
	_, err := t.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 &t.table,
		Key:                       leaseitem.ItemKey(shardID),
		ConditionExpression:       &cond,
		UpdateExpression:          &expr,
		ExpressionAttributeValues: values,
	})
	if isConditionFailed(err) {
		return errLeaseLost
	}
	return err
}

// read reads one lease, with a consistent read.
func (t *dynamoLeases) read(ctx context.Context, shardID string) (lease, bool, error) {
	item, err := t.get(ctx, leaseitem.ItemKey(shardID))
	if err != nil || item == nil {
		return lease{}, false, err
	}
	l, err := leaseitem.ParseLease(item)
	return leaseOf(l), err == nil, err
}

func isConditionFailed(err error) bool {
	var ccf *types.ConditionalCheckFailedException
	return errors.As(err, &ccf)
}

// leaseOf is the lease an item holds.
func leaseOf(l leaseitem.Lease) lease {
	out := lease{
		shardID: l.Key, owner: l.Owner, counter: l.Counter,
		checkpoint: checkpoint{seq: l.Checkpoint, sub: l.CheckpointSub}, ownerSwitches: l.OwnerSwitches,
		parents: l.Parents, handoffTo: l.HandoffTo, checkpointOwner: l.CheckpointOwner,
		writer: writer{id: l.Writer.Worker, token: l.Writer.Token, beat: l.Writer.Beat}, streamCreated: l.StreamCreated,
		recreated: l.Recreated,
	}
	if l.StartAt > 0 {
		out.startAt = time.UnixMilli(l.StartAt)
	}
	return out
}

// itemOf is the item of a lease.
func itemOf(l lease) leaseitem.Lease {
	out := leaseitem.Lease{
		Key: l.shardID, Owner: l.owner, Counter: l.counter,
		Checkpoint: l.checkpoint.seq, CheckpointSub: l.checkpoint.sub, OwnerSwitches: l.ownerSwitches,
		Parents: l.parents, HandoffTo: l.handoffTo, CheckpointOwner: l.checkpointOwner,
		Writer: leaseitem.Writer{Worker: l.writer.id, Token: l.writer.token, Beat: l.writer.beat}, StreamCreated: l.streamCreated,
		Recreated: l.recreated,
	}
	if !l.startAt.IsZero() {
		out.StartAt = l.startAt.UnixMilli()
	}
	return out
}
