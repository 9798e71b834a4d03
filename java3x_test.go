package kcl

// Tables left by the Java KCL 3.x, built item by item as its source writes
// them (KCL-Java v3.5.1; file:line references as in
// ../shared/java-kcl-3x.md: DLS = leases/dynamodb/DynamoDBLeaseSerializer.java,
// DLR = leases/dynamodb/DynamoDBLeaseRefresher.java, LMC =
// leases/LeaseManagementConfig.java, WMS =
// worker/metricstats/WorkerMetricStats.java).

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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

func TestJava3xClassifyItem(t *testing.T) {
	key := func(k string, attrs ...string) map[string]ddbtypes.AttributeValue {
		it := map[string]ddbtypes.AttributeValue{"leaseKey": s(k)}
		for i := 0; i+1 < len(attrs); i += 2 {
			it[attrs[i]] = s(attrs[i+1])
		}
		return it
	}
	numericEntity := key("shardId-000000000001")
	numericEntity["entityType"] = n("1")
	for _, tc := range []struct {
		name    string
		item    map[string]ddbtypes.AttributeValue
		want    itemKind
		entites bool // marksEntities
	}{
		{"a 2.x lease", key("shardId-000000000000"), itemLease, false},
		{"a 3.5 lease", key("shardId-000000000000", "entityType", "LEASE"), itemLease, true},
		{"an entityType that is not a string is none, as the Java serializer reads it (DynamoUtils.safeGetString)", numericEntity, itemLease, false},
		{"the leader's lock", key("Leader", "entityType", "LEADER"), itemJava, true},
		{"the client version", key("Migration3.0", "entityType", "CLIENT_VERSION_MIGRATION"), itemJava, true},
		{"the table migration", key("TableMigration3.5", "entityType", "TABLE_MIGRATION"), itemJava, true},
		{"a worker's metrics", key("java-worker-1", "entityType", "WORKER_METRIC_STATS"), itemJava, true},
		{"a stream", key("123456789012:orders:1700000000", "entityType", "STREAM"), itemJava, true},
		{"an entity of a later Java KCL", key("Something", "entityType", "SOMETHING_NEW"), itemJava, true},
		{"a kcl heartbeat", key(workerKeyPrefix+"w1", "entityType", entityKCLWorker), itemWorker, false},
		{"a heartbeat of an older kcl, without entityType", key(workerKeyPrefix + "w1"), itemWorker, false},
		{"kcl's group item", key("kcl-group", "entityType", entityKCLGroup), itemKCL, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, classifyItem(tc.item))
			assert.Equal(t, tc.entites, marksEntities(tc.item))
		})
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
			c, err := tbl.heartbeat(ctx, "w1", "token", false, -1)
			require.NoError(t, err)
			snap, err := tbl.list(ctx)
			require.NoError(t, err)
			assert.Empty(t, snap.bad, "the Java KCL's items are not reported")
			require.Len(t, snap.leases, 1)
			assert.Equal(t, "shardId-000000000000", snap.leases[0].shardID)
			assert.Contains(t, snap.workers, "w1")

			_, err = tbl.create(ctx, lease{shardID: "shardId-000000000001", checkpoint: trim})
			require.NoError(t, err)
			_, err = tbl.heartbeat(ctx, "w1", "token", true, c)
			require.NoError(t, err)

			items := f.allItems(f.app, "leaseKey")
			assert.Equal(t, entityKCLWorker, str(items[workerKeyPrefix+"w1"], "entityType"), "a heartbeat item carries kcl's entityType")
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
			name: "the old owner has a live heartbeat: left alone",
			passes: []pass{
				{leases: []lease{handoff("javaB", "b", 3)}, workers: beats("me", "b")},
				{leases: []lease{handoff("javaB", "b", 3)}, workers: bLater, listed: ld + time.Second},
			},
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
				d = assess(assessInput{me: "me", snap: tableSnapshot{leases: p.leases, workers: p.workers}, held: held,
					listed: at, now: at, leaseDuration: ld, settled: true}, seen)
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
		_, err := tbl.checkpoint(ctx, l, checkpoint{seq: "49590338271490256608559692538361571095921575989136588999"}, next)
		require.ErrorIs(t, err, errLeaseLost, "a checkpoint write passing it to %q", next)
	}
	after, _, err := tbl.read(ctx, "s")
	require.NoError(t, err)
	assert.Equal(t, l, after, "nothing written")

	taken, err := tbl.take(ctx, l, "me")
	require.NoError(t, err)
	assert.Empty(t, taken.checkpointOwner)
	stored, _, err := tbl.read(ctx, "s")
	require.NoError(t, err)
	assert.Equal(t, taken, stored)
	assert.Equal(t, lease{shardID: "s", owner: "me", counter: 6, ownerSwitches: 1, checkpoint: cp}, stored, "checkpointOwner removed, the counter bumped")
	_, err = tbl.checkpoint(ctx, stored, checkpoint{seq: checkpointShardEnd}, "")
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
