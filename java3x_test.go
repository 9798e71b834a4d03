package kcl

// Tables left by the Java KCL 3.x, built item by item as its source writes
// them (KCL-Java v3.5.1; file:line references as in
// ../shared/java-kcl-3x.md: DLS = leases/dynamodb/DynamoDBLeaseSerializer.java,
// DLR = leases/dynamodb/DynamoDBLeaseRefresher.java, LMC =
// leases/LeaseManagementConfig.java, WMS =
// worker/metricstats/WorkerMetricStats.java).

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kclgo/kcl/internal/leaseitem"
)

// javaLease is a lease item as DynamoDBLeaseSerializer.toDynamoRecord writes
// it (DLS:68-131).
type javaLease struct {
	key, owner      string
	counter         int64
	switches        int64
	checkpoint      string
	sub             int64
	parents         []string
	hashStart       string // startingHashKey / endingHashKey, decimal (DLS:108-117)
	hashEnd         string
	throughput      string // throughputKBps, written on renew by 3.0+ (DLR:839-841)
	checkpointOwner string // the old owner during a graceful hand-off, 3.0+ (DLS:123-125)
	v35             bool   // entityType LEASE, 3.5+ (DLS:127-129)
}

func (j javaLease) item() map[string]ddbtypes.AttributeValue {
	it := map[string]ddbtypes.AttributeValue{
		"leaseKey":                     s(j.key),
		"leaseCounter":                 n(strconv.FormatInt(j.counter, 10)),
		"ownerSwitchesSinceCheckpoint": n(strconv.FormatInt(j.switches, 10)),
		"checkpoint":                   s(j.checkpoint),
		"checkpointSubSequenceNumber":  n(strconv.FormatInt(j.sub, 10)),
	}
	if j.owner != "" { // DLS:74-76
		it["leaseOwner"] = s(j.owner)
	}
	if len(j.parents) > 0 { // DLS:85-87
		it["parentShardId"] = &ddbtypes.AttributeValueMemberSS{Value: j.parents}
	}
	if j.hashStart != "" {
		it["startingHashKey"], it["endingHashKey"] = s(j.hashStart), s(j.hashEnd)
	}
	if j.throughput != "" {
		it["throughputKBps"] = n(j.throughput)
	}
	if j.checkpointOwner != "" {
		it["checkpointOwner"] = s(j.checkpointOwner)
	}
	if j.v35 {
		it["entityType"] = s("LEASE")
	}
	return it
}

// java35Items are the items of the Java KCL 3.5's single lease table that are
// not leases (leases/EntityType.java:31-57), for an application whose one
// worker is javaWorker.
func java35Items(javaWorker string) []map[string]ddbtypes.AttributeValue {
	now := strconv.FormatInt(time.Now().UnixMilli(), 10)
	history := &ddbtypes.AttributeValueMemberL{Value: []ddbtypes.AttributeValue{&ddbtypes.AttributeValueMemberM{Value: map[string]ddbtypes.AttributeValue{
		"cv": s("CLIENT_VERSION_UPGRADE_FROM_2X"), "mb": s(javaWorker), "mts": n(now),
	}}}}
	return []map[string]ddbtypes.AttributeValue{
		// The leader's lock (leader/LeaderLock.java:38; dynamodb-lock-client
		// attributes plus entityType, leader/DynamoDBLockBasedLeaderDecider.java:134-148,182-187).
		{"leaseKey": s("Leader"), "entityType": s("LEADER"), "ownerName": s(javaWorker), "leaseDuration": s("120000"),
			"recordVersionNumber": s("0b5c3d4e-1f2a-4b3c-8d9e-0a1b2c3d4e5f")},
		// The client version (coordinator/migration/MigrationState.java:49-60,92-109).
		{"leaseKey": s("Migration3.0"), "entityType": s("CLIENT_VERSION_MIGRATION"), "cv": s("CLIENT_VERSION_3X"),
			"mb": s(javaWorker), "mts": n(now), "h": history},
		// The table migration (coordinator/migration/TableMigrationState.java:50-61).
		{"leaseKey": s("TableMigration3.5"), "entityType": s("TABLE_MIGRATION"), "tm": s("TABLE_MIGRATION_STATUS_COMPLETE"),
			"mb": s(javaWorker), "mts": n(now)},
		// A worker's metrics, keyed by its worker ID (WMS:82-191,231-238).
		{"leaseKey": s(javaWorker), "entityType": s("WORKER_METRIC_STATS"), "lut": n(strconv.FormatInt(time.Now().Unix(), 10)),
			"sts": &ddbtypes.AttributeValueMemberM{Value: map[string]ddbtypes.AttributeValue{"CPU": &ddbtypes.AttributeValueMemberL{Value: []ddbtypes.AttributeValue{n("12.5"), n("20")}}}},
			"opr": &ddbtypes.AttributeValueMemberM{Value: map[string]ddbtypes.AttributeValue{"CPU": &ddbtypes.AttributeValueMemberL{Value: []ddbtypes.AttributeValue{n("100")}}}},
			"sup": n("1"), "slu": n(strconv.FormatInt(time.Now().Unix(), 10))},
	}
}

// createJava3xLeaseTable creates the fixture's lease table as the Java KCL
// 3.x leaves it: hash key leaseKey (DLS:432-451), on demand (LMC:245), with
// the index LeaseOwnerToLeaseKeyIndex (leaseOwner, leaseKey; keys only;
// DLR:340-406, DLS:454-479). The Java KCL adds the index to the table at its
// first start in 3.x mode; here it is created with the table, to the same
// end (dynalite adds an index to an on-demand table only with a provisioned
// throughput).
func (f *fixture) createJava3xLeaseTable() {
	f.t.Helper()
	_, err := f.ddb.CreateTable(context.Background(), &dynamodb.CreateTableInput{
		TableName:   &f.app,
		BillingMode: ddbtypes.BillingModePayPerRequest,
		AttributeDefinitions: []ddbtypes.AttributeDefinition{
			{AttributeName: aws.String("leaseKey"), AttributeType: ddbtypes.ScalarAttributeTypeS},
			{AttributeName: aws.String("leaseOwner"), AttributeType: ddbtypes.ScalarAttributeTypeS},
		},
		KeySchema: []ddbtypes.KeySchemaElement{{AttributeName: aws.String("leaseKey"), KeyType: ddbtypes.KeyTypeHash}},
		GlobalSecondaryIndexes: []ddbtypes.GlobalSecondaryIndex{{
			IndexName: aws.String("LeaseOwnerToLeaseKeyIndex"),
			KeySchema: []ddbtypes.KeySchemaElement{
				{AttributeName: aws.String("leaseOwner"), KeyType: ddbtypes.KeyTypeHash},
				{AttributeName: aws.String("leaseKey"), KeyType: ddbtypes.KeyTypeRange},
			},
			Projection: &ddbtypes.Projection{ProjectionType: ddbtypes.ProjectionTypeKeysOnly},
		}},
	})
	require.NoError(f.t, err)
	f.waitTable(f.app)
}

// waitTable waits until a table and its indexes are active.
func (f *fixture) waitTable(table string) {
	f.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		out, err := f.ddb.DescribeTable(context.Background(), dynamoDescribe(table))
		require.NoError(f.t, err)
		active := out.Table.TableStatus == ddbtypes.TableStatusActive
		for _, gsi := range out.Table.GlobalSecondaryIndexes {
			active = active && gsi.IndexStatus == ddbtypes.IndexStatusActive
		}
		if active {
			return
		}
		require.True(f.t, time.Now().Before(deadline), "table %s not active", table)
		time.Sleep(50 * time.Millisecond)
	}
}

// allItems reads every item of a table, by its hash key attribute.
func (f *fixture) allItems(table, hashKey string) map[string]map[string]ddbtypes.AttributeValue {
	f.t.Helper()
	items := map[string]map[string]ddbtypes.AttributeValue{}
	in := &dynamodb.ScanInput{TableName: &table, ConsistentRead: aws.Bool(true)}
	for {
		out, err := f.ddb.Scan(context.Background(), in)
		require.NoError(f.t, err)
		for _, it := range out.Items {
			items[it[hashKey].(*ddbtypes.AttributeValueMemberS).Value] = it
		}
		if len(out.LastEvaluatedKey) == 0 {
			return items
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
}

// The lease table of a Java KCL 3.5 application (one table: leases with
// entityType LEASE, and the Java KCL's other items, an index): kcl lists its
// leases without reporting the other items, marks its heartbeat items with
// an entityType of its own, creates leases with entityType LEASE, and
// leaves the Java items as they are. On a table without entityType (2.x,
// 3.0-3.4), it creates leases without one.
func TestJava3xLeaseTableItems(t *testing.T) {
	ctx := context.Background()
	trim := checkpoint{seq: checkpointTrimHorizon}
	for _, v35 := range []bool{true, false} {
		t.Run(fmt.Sprintf("3.5=%v", v35), func(t *testing.T) {
			f := &fixture{t: t, ddb: dynamoClient(t), app: "app-" + uniqueName(t)}
			f.createJava3xLeaseTable()
			var java []map[string]ddbtypes.AttributeValue
			if v35 {
				java = java35Items("java-worker-1")
			}
			for _, it := range java {
				f.putItem(it)
			}
			f.putItem(javaLease{key: "shardId-000000000000", owner: "java-worker-1", counter: 7, checkpoint: "49590338271490256608559692538361571095921575989136588898",
				hashStart: "0", hashEnd: "340282366920938463463374607431768211455", throughput: "12.5", v35: v35}.item())

			tbl := &dynamoLeases{db: f.ddb, table: f.app}
			require.NoError(t, tbl.ensure(ctx), "a table with the Java KCL's index is a lease table")
			c, err := tbl.heartbeat(ctx, "w1", "token", false, -1, nil)
			require.NoError(t, err)
			snap, err := tbl.list(ctx, true)
			require.NoError(t, err)
			assert.Empty(t, snap.bad, "the Java KCL's items are not reported")
			require.Len(t, snap.leases, 1)
			assert.Equal(t, "shardId-000000000000", snap.leases[0].shardID)
			assert.Contains(t, snap.workers, "w1")

			_, err = tbl.create(ctx, lease{shardID: "shardId-000000000001", checkpoint: trim})
			require.NoError(t, err)
			_, err = tbl.heartbeat(ctx, "w1", "token", true, c, nil)
			require.NoError(t, err)

			items := f.allItems(f.app, "leaseKey")
			assert.Equal(t, entityKCLWorker, str(items[workerKeyPrefix+"w1"], "entityType"), "a heartbeat item carries kcl's entityType")
			assert.NotContains(t, items[workerKeyPrefix+"w1"], "ownerSwitchesSinceCheckpoint",
				"the Java KCL 3.5's lease assignment reads an unknown entityType as a lease: without it, that read fails (kclEntities)")
			if v35 {
				assert.Equal(t, "LEASE", str(items["shardId-000000000001"], "entityType"), "a lease created in a table that uses entityType has it")
			} else {
				assert.NotContains(t, items["shardId-000000000001"], "entityType", "a table without entityType gets none")
			}
			for _, it := range java {
				assert.Equal(t, it, items[str(it, "leaseKey")], "the Java KCL's items are left as they are")
			}
			require.NoError(t, tbl.removeWorker(ctx, "w1", -1))
		})
	}
}

// assess on leases in the middle of a Java KCL 3.x graceful hand-off
// (java-kcl-3x.md §3: the leader sets leaseOwner to the new owner and
// checkpointOwner to the old one without a counter change, DLR:979-1062; the
// old owner renews the counter until it passes the lease on,
// DynamoDBLeaseRenewer.java:195-205). Both workers are judged by the usual
// rule: the lease is left alone while its old owner is alive (the counter
// moves, or a live heartbeat); once it is dead, the new owner's liveness
// decides, and a take removes checkpointOwner.
func TestJava3xAssessHandoff(t *testing.T) {
	const ld = 10 * time.Second
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	trim := checkpoint{seq: checkpointTrimHorizon}
	handoff := func(owner, from string, counter int64) lease {
		return lease{shardID: "s1", owner: owner, checkpointOwner: from, counter: counter, checkpoint: trim}
	}
	beats := func(ws ...string) map[string]workerBeat {
		m := map[string]workerBeat{}
		for _, w := range ws {
			m[w] = workerBeat{counter: 1}
		}
		return m
	}
	bLater := map[string]workerBeat{"me": {counter: 1}, "b": {counter: 2}} // b beat since
	type pass struct {
		leases  []lease
		workers map[string]workerBeat
		held    []string
		listed  time.Duration
	}
	tests := []struct {
		name       string
		passes     []pass
		take, lost []string
	}{
		{
			name: "the old owner renews: left alone, though the table names this worker the new owner",
			passes: []pass{
				{leases: []lease{handoff("me", "javaA", 3)}, workers: beats("me")},
				{leases: []lease{handoff("me", "javaA", 4)}, workers: beats("me"), listed: ld + time.Second},
			},
		},
		{
			name: "the old owner renews: left alone while the new owner is a dead Java worker",
			passes: []pass{
				{leases: []lease{handoff("javaB", "javaA", 3)}, workers: beats("me")},
				{leases: []lease{handoff("javaB", "javaA", 4)}, workers: beats("me"), listed: ld + time.Second},
			},
		},
		{
			name:   "first seen: the old owner counts as alive",
			passes: []pass{{leases: []lease{handoff("me", "javaA", 3)}, workers: beats("me")}},
		},
		{
			name: "the old owner's name has a live kcl heartbeat, which says nothing (kcl never finishes a Java hand-off): judged by the lease's counter, taken",
			passes: []pass{
				{leases: []lease{handoff("javaB", "b", 3)}, workers: beats("me", "b")},
				{leases: []lease{handoff("javaB", "b", 3)}, workers: bLater, listed: ld + time.Second},
			},
			take: []string{"s1"},
		},
		{
			name: "the old owner is dead and this worker the new owner: taken",
			passes: []pass{
				{leases: []lease{handoff("me", "javaA", 3)}, workers: beats("me")},
				{leases: []lease{handoff("me", "javaA", 3)}, workers: beats("me"), listed: ld + time.Millisecond},
			},
			take: []string{"s1"},
		},
		{
			name: "the old owner and the new owner (a Java worker) are dead: free, taken",
			passes: []pass{
				{leases: []lease{handoff("javaB", "javaA", 3)}, workers: beats("me")},
				{leases: []lease{handoff("javaB", "javaA", 3)}, workers: beats("me"), listed: ld + time.Millisecond},
			},
			take: []string{"s1"},
		},
		{
			name: "the old owner is dead and the new owner a live kcl worker: left to it",
			passes: []pass{
				{leases: []lease{handoff("b", "javaA", 3)}, workers: beats("me", "b")},
				{leases: []lease{handoff("b", "javaA", 3)}, workers: bLater, listed: ld + time.Millisecond},
			},
		},
		{
			name: "a claim on it is ignored: this worker, the new owner, takes it rather than pass it on",
			passes: []pass{
				{leases: []lease{{shardID: "s1", owner: "me", checkpointOwner: "javaA", handoffTo: "b", counter: 3, checkpoint: trim}}, workers: beats("me", "b")},
				{leases: []lease{{shardID: "s1", owner: "me", checkpointOwner: "javaA", handoffTo: "b", counter: 3, checkpoint: trim}}, workers: bLater, listed: ld + time.Millisecond},
			},
			take: []string{"s1"},
		},
		{
			name:   "a lease this worker reads that a hand-off began on is lost",
			passes: []pass{{leases: []lease{handoff("me", "javaA", 3)}, workers: beats("me"), held: []string{"s1"}}},
			lost:   []string{"s1"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			seen := map[string]observation{}
			var d decisions
			for _, p := range tc.passes {
				held := map[string]bool{}
				for _, id := range p.held {
					held[id] = true
				}
				at := t0.Add(p.listed)
				in := assessInput{me: "me", snap: tableSnapshot{leases: p.leases, workers: p.workers}, held: held,
					listed: at, now: at, leaseDuration: ld, settled: true, confirmed: map[string]int64{}}
				d = assessConfirming(in, seen)
			}
			assert.Equal(t, tc.take, d.take, "take")
			assert.Equal(t, tc.lost, d.lost, "lost")
			assert.Empty(t, d.claim, "claim")
			assert.Empty(t, d.pass, "pass")
			assert.Empty(t, d.handoffs, "handoffs")
		})
	}
}

// A lease in a Java hand-off, in either lease table: kcl never writes its
// checkpoint (neither keeping, releasing nor passing it on), and its take
// removes checkpointOwner in the same conditional write, as the Java KCL's
// take does (DLR:921-973, DLS getDynamoTakeLeaseUpdate).
func checkJavaHandoffWrites(t *testing.T, tbl leaseTable, plant func(lease)) {
	ctx := context.Background()
	cp := checkpoint{seq: "49590338271490256608559692538361571095921575989136588898", sub: 2}
	plant(lease{shardID: "s", owner: "me", checkpointOwner: "javaA", counter: 5, checkpoint: cp})
	l, ok, err := tbl.read(ctx, "s")
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, "javaA", l.checkpointOwner)
	for _, next := range []string{"me", "", "b"} {
		_, err := tbl.checkpoint(ctx, l, checkpoint{seq: "49590338271490256608559692538361571095921575989136588999"}, next, writer{})
		require.ErrorIs(t, err, errLeaseLost, "a checkpoint write passing it to %q", next)
	}
	after, _, err := tbl.read(ctx, "s")
	require.NoError(t, err)
	assert.Equal(t, l, after, "nothing written")

	taken, err := tbl.take(ctx, l, writer{id: "me"})
	require.NoError(t, err)
	assert.Empty(t, taken.checkpointOwner)
	stored, _, err := tbl.read(ctx, "s")
	require.NoError(t, err)
	assert.Equal(t, taken, stored)
	assert.Equal(t, lease{shardID: "s", owner: "me", counter: 6, ownerSwitches: 1, checkpoint: cp, writer: writer{id: "me"}}, stored, "checkpointOwner removed, the counter bumped, the writer marked")
	_, err = tbl.checkpoint(ctx, stored, checkpoint{seq: checkpointShardEnd}, "", writer{})
	require.NoError(t, err, "once taken, the lease is kcl's")
}

func TestJava3xLeaseTableHandoffWrites(t *testing.T) {
	f := &fixture{t: t, ddb: dynamoClient(t), app: "app-" + uniqueName(t)}
	f.createJava3xLeaseTable()
	checkJavaHandoffWrites(t, &dynamoLeases{db: f.ddb, table: f.app}, func(l lease) {
		f.putItem(javaLease{key: l.shardID, owner: l.owner, counter: l.counter, checkpoint: l.checkpoint.seq, sub: l.checkpoint.sub,
			checkpointOwner: l.checkpointOwner}.item())
	})
}

func TestJava3xMemTableHandoffWrites(t *testing.T) {
	tbl := newMemLeases()
	checkJavaHandoffWrites(t, tbl, func(l lease) { tbl.leases[l.shardID] = l })
}

// shardStarts returns the starting hash key of every shard of the stream.
func (f *fixture) shardStarts() map[string]string {
	f.t.Helper()
	out, err := f.kin.ListShards(context.Background(), &kinesis.ListShardsInput{StreamName: &f.stream})
	require.NoError(f.t, err)
	starts := map[string]string{}
	for _, sh := range out.Shards {
		starts[*sh.ShardId] = *sh.HashKeyRange.StartingHashKey
	}
	return starts
}

// putTo writes n records to the shard whose hash key range starts at start.
func (f *fixture) putTo(start string, n int, prefix string) []put {
	f.t.Helper()
	var out []put
	for i := range n {
		data := fmt.Sprintf("%s:%03d", prefix, i)
		res, err := f.kin.PutRecord(context.Background(), &kinesis.PutRecordInput{
			StreamName: &f.stream, PartitionKey: aws.String(prefix), ExplicitHashKey: aws.String(start), Data: []byte(data),
		})
		require.NoError(f.t, err)
		out = append(out, put{key: prefix, data: data, shard: *res.ShardId, seq: *res.SequenceNumber})
	}
	return out
}

// putAggregateTo writes one KPL aggregate of per user records to the shard
// whose hash key range starts at start; every user record gets the
// aggregate's sequence number, and its index as sub-sequence number.
func (f *fixture) putAggregateTo(start string, per int, prefix string) []put {
	f.t.Helper()
	var recs []userRecord
	for j := range per {
		recs = append(recs, userRecord{partitionKey: prefix, explicitHashKey: start, data: []byte(fmt.Sprintf("%s.%03d", prefix, j))})
	}
	res, err := f.kin.PutRecord(context.Background(), &kinesis.PutRecordInput{
		StreamName: &f.stream, PartitionKey: aws.String(prefix), ExplicitHashKey: aws.String(start), Data: aggregate(recs),
	})
	require.NoError(f.t, err)
	var out []put
	for _, r := range recs {
		out = append(out, put{key: prefix, data: string(r.data), shard: *res.ShardId, seq: *res.SequenceNumber})
	}
	return out
}

// checkJavaReadable fails unless a Java KCL worker can read every item of a
// lease table: each lease as DynamoDBLeaseSerializer.fromDynamoRecord reads
// it (DLS:140-186, with Lease's @NonNull setters, leases/Lease.java:362-432),
// and no other item but the Java KCL's own ones named in java (a 3.5 table's:
// 2.x and 3.0-3.4 read every item as a lease, and fail on any other).
func checkJavaReadable(t *testing.T, items map[string]map[string]ddbtypes.AttributeValue, java map[string]bool) {
	t.Helper()
	isInt := func(v ddbtypes.AttributeValue) bool { // new Long(av.n()) (DynamoUtils.safeGetLong)
		num, ok := v.(*ddbtypes.AttributeValueMemberN)
		if !ok {
			return false
		}
		_, err := strconv.ParseInt(num.Value, 10, 64)
		return err == nil
	}
	isString := func(v ddbtypes.AttributeValue) bool {
		str, ok := v.(*ddbtypes.AttributeValueMemberS)
		return ok && str.Value != ""
	}
	for key, it := range items {
		if entity, ok := it["entityType"].(*ddbtypes.AttributeValueMemberS); ok && entity.Value != "LEASE" {
			assert.True(t, java[key], "item %q (entityType %s) is not one of the Java KCL's", key, entity.Value)
			continue
		}
		assert.False(t, java[key], "the Java KCL's item %q became a lease", key)
		why := func(attr, what string) string { return fmt.Sprintf("lease %q: %s %s", key, attr, what) }
		assert.True(t, isString(it["leaseKey"]), why("leaseKey", "is a string"))
		// Required: Lease.leaseCounter and ownerSwitchesSinceCheckpoint are
		// @NonNull, and a lease is resumed from checkpoint.
		for _, attr := range []string{"leaseCounter", "ownerSwitchesSinceCheckpoint"} {
			assert.True(t, isInt(it[attr]), why(attr, "is an integer"))
		}
		require.True(t, isString(it["checkpoint"]), why("checkpoint", "is a string"))
		cp := checkpoint{seq: it["checkpoint"].(*ddbtypes.AttributeValueMemberS).Value}
		assert.True(t, cp.isSentinel() || leaseitem.IsSequenceNumber(cp.seq), why("checkpoint", "is a sequence number or a sentinel"))
		for attr, v := range it {
			switch attr {
			case "checkpointSubSequenceNumber", "pendingCheckpointSubSequenceNumber":
				assert.True(t, isInt(v), why(attr, "is an integer"))
			case "leaseOwner", "pendingCheckpoint", "startingHashKey", "endingHashKey", "checkpointOwner":
				assert.True(t, isString(v), why(attr, "is a string"))
			case "parentShardId", "childShardIds":
				assert.IsType(t, &ddbtypes.AttributeValueMemberSS{}, v, why(attr, "is a string set"))
			case "pendingCheckpointState":
				assert.IsType(t, &ddbtypes.AttributeValueMemberB{}, v, why(attr, "is binary"))
			case "throughputKBps": // new Double(av.n())
				num, ok := v.(*ddbtypes.AttributeValueMemberN)
				if assert.True(t, ok, why(attr, "is a number")) {
					_, err := strconv.ParseFloat(num.Value, 64)
					assert.NoError(t, err, why(attr, "is a double"))
				}
			}
		}
		_, start := it["startingHashKey"]
		_, end := it["endingHashKey"]
		assert.Equal(t, start, end, why("startingHashKey", "comes with endingHashKey"))
		if co, ok := it["checkpointOwner"]; ok {
			assert.NotEqual(t, str(it, "leaseOwner"), str(map[string]ddbtypes.AttributeValue{"v": co}, "v"), why("checkpointOwner", "differs from leaseOwner (DLR:1432-1439)"))
		}
	}
}

// checkResumed checks what a resumed consumer delivered: exactly want, each
// shard in order, and every record of parent before any of its children.
func checkResumed(t *testing.T, got []Record, want []string, parent string, children ...string) {
	t.Helper()
	require.ElementsMatch(t, want, dataOf(got), "resumes right after each Java checkpoint")
	checkShardOrder(t, got)
	lastParent, firstChild := -1, len(got)
	for i, r := range got {
		switch {
		case r.ShardID == parent:
			lastParent = i
		case slices.Contains(children, r.ShardID):
			firstChild = min(firstChild, i)
		}
	}
	assert.Less(t, lastParent, firstChild, "the parent's records come before its children's")
}

// javaStream is the stream of the resume tests: two shards, shard 0 split
// after records were written to it, records in all four shards, one KPL
// aggregate in shard 1.
type javaStream struct {
	parent, other, child1, child2 string
	parentPuts, otherPuts         []put // otherPuts: the aggregate's 4 user records, then 10 plain
	childPuts                     []put
	hash                          map[string]string // shard -> starting hash key
}

func newJavaStream(f *fixture) javaStream {
	f.t.Helper()
	starts := f.shardStarts()
	require.Len(f.t, starts, 2)
	var js javaStream
	for id, start := range starts {
		if start == "0" {
			js.parent = id
		} else {
			js.other = id
		}
	}
	js.parentPuts = f.putTo("0", 10, "p")
	js.otherPuts = append(f.putAggregateTo(starts[js.other], 4, "agg"), f.putTo(starts[js.other], 10, "o")...)
	f.split()
	js.hash = f.shardStarts()
	for id := range js.hash {
		if id == js.parent || id == js.other {
			continue
		}
		if js.child1 == "" || id < js.child1 {
			js.child1, js.child2 = id, js.child1
		} else {
			js.child2 = id
		}
	}
	require.NotEmpty(f.t, js.child2)
	js.childPuts = append(f.putTo(js.hash[js.child1], 10, "c1"), f.putTo(js.hash[js.child2], 10, "c2")...)
	return js
}

// want is what a consumer resuming from the parent's 5th record and the
// aggregate's second user record delivers.
func (js javaStream) want() []string {
	return append(append(putData(js.parentPuts[5:]), putData(js.otherPuts[2:])...), putData(js.childPuts)...)
}

// javaLeases are the stream's leases as the Java KCL left them: the parent
// checkpointed at its 5th record by a worker that died holding it, shard 1
// at the aggregate's second user record, released; with the children's
// leases (at TRIM_HORIZON, DLS create) when the Java KCL saw the split.
func (js javaStream) javaLeases(v35, children bool) []javaLease {
	ls := []javaLease{
		{key: js.parent, owner: "java-worker-1", counter: 41, switches: 2, checkpoint: js.parentPuts[4].seq,
			hashStart: js.hash[js.parent], hashEnd: "170141183460469231731687303715884105727", throughput: "3.25", v35: v35},
		{key: js.other, counter: 17, checkpoint: js.otherPuts[1].seq, sub: 1,
			hashStart: js.hash[js.other], hashEnd: "340282366920938463463374607431768211455", throughput: "0.5", v35: v35},
	}
	if children {
		for _, c := range []string{js.child1, js.child2} {
			ls = append(ls, javaLease{key: c, checkpoint: checkpointTrimHorizon, parents: []string{js.parent}, v35: v35})
		}
	}
	return ls
}

// A Java KCL 3.0-3.4 application (3.x mode) left its lease table, with the
// index, and its side tables <app>-CoordinatorState and
// <app>-WorkerMetricStats (java-kcl-3x.md §4). kcl resumes every shard
// after its checkpoint and sub-sequence number, children after their
// parent, leaves the side tables and the index alone, and after a graceful
// stop leaves nothing a Java worker cannot read.
func TestJava3xResumeFrom30WithSideTables(t *testing.T) {
	noLeak(t)
	ctx := context.Background()
	f := newFixture(t, emu.kinesisLocal, 2)
	js := newJavaStream(f)
	f.createJava3xLeaseTable()
	for _, l := range js.javaLeases(false, true) {
		f.putItem(l.item())
	}
	// The side tables: coordinator state, keyed by "key"
	// (coordinator/CoordinatorConfig.java:233-237), holding the client
	// version and the leader's lock (CoordinatorStateDAO.java:334-378); worker
	// metrics keyed by "wid" (LMC:626-629; WMS:216-223). Items of 3.0-3.4
	// have no entityType.
	coordinator, metrics := f.app+"-CoordinatorState", f.app+"-WorkerMetricStats"
	now := strconv.FormatInt(time.Now().UnixMilli(), 10)
	side := map[string][]map[string]ddbtypes.AttributeValue{
		coordinator: {
			{"key": s("Migration3.0"), "cv": s("CLIENT_VERSION_3X"), "mb": s("java-worker-1"), "mts": n(now)},
			{"key": s("Leader"), "ownerName": s("java-worker-1"), "leaseDuration": s("120000"), "recordVersionNumber": s("4a1b2c3d-0000-4000-8000-000000000001")},
		},
		metrics: {
			{"wid": s("java-worker-1"), "lut": n(strconv.FormatInt(time.Now().Unix(), 10)),
				"sts": &ddbtypes.AttributeValueMemberM{Value: map[string]ddbtypes.AttributeValue{"CPU": &ddbtypes.AttributeValueMemberL{Value: []ddbtypes.AttributeValue{n("40")}}}},
				"opr": &ddbtypes.AttributeValueMemberM{Value: map[string]ddbtypes.AttributeValue{"CPU": &ddbtypes.AttributeValueMemberL{Value: []ddbtypes.AttributeValue{n("100")}}}}},
		},
	}
	hashKeys := map[string]string{coordinator: "key", metrics: "wid"}
	for table, items := range side {
		_, err := f.ddb.CreateTable(ctx, &dynamodb.CreateTableInput{
			TableName: aws.String(table), BillingMode: ddbtypes.BillingModePayPerRequest,
			AttributeDefinitions: []ddbtypes.AttributeDefinition{{AttributeName: aws.String(hashKeys[table]), AttributeType: ddbtypes.ScalarAttributeTypeS}},
			KeySchema:            []ddbtypes.KeySchemaElement{{AttributeName: aws.String(hashKeys[table]), KeyType: ddbtypes.KeyTypeHash}},
		})
		require.NoError(t, err)
		f.waitTable(table)
		for _, it := range items {
			_, err := f.ddb.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: it})
			require.NoError(t, err)
		}
	}

	opts := f.options()
	opts.WorkerID = "kcl-1"
	sess := startConsumer(t, opts)
	got := sess.receive(len(js.want()), 30*time.Second, ackAll)
	sess.quiet(300 * time.Millisecond)
	require.NoError(t, sess.stop(nil))
	checkResumed(t, got, js.want(), js.parent, js.child1, js.child2)

	items := f.allItems(f.app, "leaseKey")
	checkJavaReadable(t, items, nil)
	assert.Len(t, items, 4, "the four leases, nothing else")
	for key, it := range items {
		assert.NotContains(t, it, "entityType", "lease %q: a table without entityType gets none", key)
		assert.NotContains(t, it, "leaseOwner", "lease %q: released", key)
	}
	assert.Equal(t, "3.25", str(items[js.parent], "throughputKBps"), "attributes kcl does not use are kept")
	assert.Equal(t, js.hash[js.parent], str(items[js.parent], "startingHashKey"))
	assert.Equal(t, checkpointShardEnd, str(items[js.parent], "checkpoint"))
	for table, want := range side {
		got := f.allItems(table, hashKeys[table])
		assert.Len(t, got, len(want), "side table %s", table)
		for _, it := range want {
			assert.Equal(t, it, got[str(it, hashKeys[table])], "side table %s is left alone", table)
		}
	}
	out, err := f.ddb.DescribeTable(ctx, dynamoDescribe(f.app))
	require.NoError(t, err)
	require.Len(t, out.Table.GlobalSecondaryIndexes, 1, "the index is left alone")
	assert.Equal(t, "LeaseOwnerToLeaseKeyIndex", *out.Table.GlobalSecondaryIndexes[0].IndexName)
}

// A Java KCL 3.5 application left its single lease table (leases with
// entityType LEASE; Leader, Migration3.0, TableMigration3.5 and worker
// metrics items; the index), and the stream was split after it stopped, so
// that the children have no lease yet. kcl resumes, creates the children's
// leases with entityType LEASE, leaves the Java items alone, marks its
// heartbeat with its own entityType while it runs, and after a graceful stop
// leaves nothing a Java worker cannot read.
func TestJava3xResumeFrom35SingleTable(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 2)
	js := newJavaStream(f)
	f.createJava3xLeaseTable()
	java := java35Items("java-worker-1")
	javaKeys := map[string]bool{}
	for _, it := range java {
		f.putItem(it)
		javaKeys[str(it, "leaseKey")] = true
	}
	for _, l := range js.javaLeases(true, false) {
		f.putItem(l.item())
	}

	var logs bytes.Buffer
	opts := f.options()
	opts.WorkerID = "kcl-1"
	opts.Logger = slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, nil))
	sess := startConsumer(t, opts)
	got := sess.receive(len(js.want()), 30*time.Second, ackAll)
	running := f.allItems(f.app, "leaseKey")
	sess.quiet(300 * time.Millisecond)
	require.NoError(t, sess.stop(nil))
	checkResumed(t, got, js.want(), js.parent, js.child1, js.child2)
	assert.Equal(t, entityKCLWorker, str(running[workerKeyPrefix+"kcl-1"], "entityType"), "the heartbeat item, while kcl runs")
	assert.NotContains(t, logs.String(), "not understood", "the Java KCL's items are not reported")

	items := f.allItems(f.app, "leaseKey")
	checkJavaReadable(t, items, javaKeys)
	assert.Len(t, items, len(java)+4, "the Java items and four leases, nothing else")
	for _, it := range java {
		assert.Equal(t, it, items[str(it, "leaseKey")], "the Java KCL's items are left as they are")
	}
	for _, c := range []string{js.child1, js.child2} {
		assert.Equal(t, "LEASE", str(items[c], "entityType"), "a lease kcl created in a 3.5 table")
		assert.Equal(t, []string{js.parent}, items[c]["parentShardId"].(*ddbtypes.AttributeValueMemberSS).Value)
	}
	assert.Equal(t, "LEASE", str(items[js.parent], "entityType"))
}

// javaWorker writes a lease as a Java KCL 3.x worker does, with the
// conditions of its writes (legacy Expected clauses in DLR, written here as
// condition expressions).
type javaWorker struct {
	f       *fixture
	counter map[string]int64 // the counter it last wrote, by lease
}

func (j *javaWorker) update(key, cond, update string, values map[string]ddbtypes.AttributeValue) error {
	_, err := j.f.ddb.UpdateItem(context.Background(), &dynamodb.UpdateItemInput{
		TableName: &j.f.app, Key: map[string]ddbtypes.AttributeValue{"leaseKey": s(key)},
		ConditionExpression: &cond, UpdateExpression: &update, ExpressionAttributeValues: values,
	})
	return err
}

// renew: counter N to N+1, conditional on N (DLR:833-915; without the
// checkpointOwner condition once the hand-off is known, DLR:875-889).
func (j *javaWorker) renew(key string) error {
	c := j.counter[key]
	err := j.update(key, "leaseCounter = :c", "SET leaseCounter = :n, throughputKBps = :kbps",
		map[string]ddbtypes.AttributeValue{":c": n(fmt.Sprint(c)), ":n": n(fmt.Sprint(c + 1)), ":kbps": n("1.5")})
	if err == nil {
		j.counter[key] = c + 1
	}
	return err
}

// checkpoint: the checkpoint, ownerSwitchesSinceCheckpoint 0, counter N+1,
// conditional on N (DLR:1278-1316).
func (j *javaWorker) checkpoint(key, seq string) error {
	c := j.counter[key]
	err := j.update(key, "leaseCounter = :c", "SET checkpoint = :cp, checkpointSubSequenceNumber = :zero, ownerSwitchesSinceCheckpoint = :zero, leaseCounter = :n",
		map[string]ddbtypes.AttributeValue{":c": n(fmt.Sprint(c)), ":n": n(fmt.Sprint(c + 1)), ":cp": s(seq), ":zero": n("0")})
	if err == nil {
		j.counter[key] = c + 1
	}
	return err
}

// transfer ends the old owner's part of a graceful hand-off: leaseOwner to,
// checkpointOwner removed, counter + 1, conditional on both owners
// (lifecycle/LeaseGracefulShutdownHandler.java:217-231, an assign,
// DLR:1068-1147, DLS:219-224).
func (j *javaWorker) transfer(key, from, to string) error {
	return j.update(key, "leaseOwner = :to AND checkpointOwner = :from AND attribute_exists(leaseKey)",
		"SET leaseOwner = :to REMOVE checkpointOwner ADD leaseCounter :one",
		map[string]ddbtypes.AttributeValue{":to": s(to), ":from": s(from), ":one": n("1")})
}

// Leases frozen in the middle of a Java KCL 3.x graceful hand-off (the
// leader wrote leaseOwner = new owner, checkpointOwner = old owner without a
// counter change, DLR:979-1062). kcl reads none of these shards while the
// old owner lives (renews the counter): it takes the lease, removing
// checkpointOwner, once the old owner is dead, or adopts it when the old
// owner passes it to kcl's worker, right after the old owner's last
// checkpoint.
//   - shard 0: no hand-off (released), for comparison;
//   - shard 1: java-a hands off to java-b; both die, java-a after 2.5 s;
//   - shard 2: java-a2 hands off to kcl-1 (kcl's WorkerID): it renews,
//     checkpoints 5 records further after 1.5 s, and passes the lease on;
//   - shard 3: java-c hands off to kcl-1, and is dead from the start.
func TestJava3xLeaseFrozenMidHandoff(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 4)
	starts := f.shardStarts()
	shards := slices.Sorted(maps.Keys(starts))
	puts := map[string][]put{}
	for i, sh := range shards {
		puts[sh] = f.putTo(starts[sh], 20, fmt.Sprintf("s%d", i))
	}
	f.createJava3xLeaseTable()
	const me = "kcl-1"
	leases := []javaLease{
		{key: shards[0], counter: 5},
		{key: shards[1], owner: "java-b", checkpointOwner: "java-a", counter: 10},
		{key: shards[2], owner: me, checkpointOwner: "java-a2", counter: 20},
		{key: shards[3], owner: me, checkpointOwner: "java-c", counter: 30},
	}
	for _, l := range leases {
		l.checkpoint = puts[l.key][4].seq
		l.switches = 1
		f.putItem(l.item())
	}
	want := append(append(append(putData(puts[shards[0]][5:]), putData(puts[shards[1]][5:])...), putData(puts[shards[2]][10:])...), putData(puts[shards[3]][5:])...)

	// The old owners of shards 1 and 2, renewing every 100 ms.
	javaErrs := make(chan error, 10)
	start := time.Now()
	var aDied, transferred time.Time
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		a := &javaWorker{f: f, counter: map[string]int64{shards[1]: 10, shards[2]: 20}}
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		a2Done := false
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if !a2Done && time.Since(start) > 1500*time.Millisecond {
				a2Done = true
				if err := a.checkpoint(shards[2], puts[shards[2]][9].seq); err != nil {
					javaErrs <- fmt.Errorf("java-a2's checkpoint: %w", err)
				}
				transferred = time.Now()
				if err := a.transfer(shards[2], "java-a2", me); err != nil {
					javaErrs <- fmt.Errorf("java-a2's transfer: %w", err)
				}
			}
			if time.Since(start) > 2500*time.Millisecond {
				aDied = time.Now()
				return
			}
			for _, sh := range []string{shards[1], shards[2]} {
				if sh == shards[2] && a2Done {
					continue
				}
				if err := a.renew(sh); err != nil {
					javaErrs <- fmt.Errorf("the old owner of %s lost its lease while alive: %w", sh, err)
				}
			}
		}
	}()
	defer func() { cancel(); wg.Wait() }()

	opts := f.options()
	opts.WorkerID = me
	opts.LeaseDuration = 2 * time.Second // the old owners renew every 100 ms: ample margin on a busy machine
	sess := startConsumer(t, opts)
	var got []Record
	var at []time.Time
	deadline := time.After(30 * time.Second)
	for len(got) < len(want) {
		select {
		case r, ok := <-sess.ch:
			require.True(t, ok, "channel closed: %v", sess.c.Err())
			got, at = append(got, r), append(at, time.Now())
			r.Ack()
		case <-deadline:
			t.Fatalf("received %d of %d records", len(got), len(want))
		}
	}
	sess.quiet(300 * time.Millisecond)
	require.NoError(t, sess.stop(nil))
	cancel()
	wg.Wait()
	close(javaErrs)
	for err := range javaErrs {
		t.Error(err)
	}
	require.ElementsMatch(t, want, dataOf(got), "each shard right after its last checkpoint")
	checkShardOrder(t, got)
	require.False(t, aDied.IsZero())
	for i, r := range got {
		switch r.ShardID {
		case shards[1]:
			assert.True(t, at[i].After(aDied), "shard 1 read while its old owner was alive")
		case shards[2]:
			assert.True(t, at[i].After(transferred), "shard 2 read before its old owner passed it on")
		}
	}

	items := f.allItems(f.app, "leaseKey")
	checkJavaReadable(t, items, nil)
	assert.Len(t, items, 4)
	for key, it := range items {
		assert.NotContains(t, it, "checkpointOwner", "lease %q", key)
		assert.NotContains(t, it, "leaseOwner", "lease %q: released", key)
		assert.Equal(t, puts[key][len(puts[key])-1].seq, str(it, "checkpoint"), "lease %q", key)
	}
}
