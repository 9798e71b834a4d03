package kcl

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kclgo/kcl/internal/leaseitem"
)

func TestLeaseTableSettingsValidate(t *testing.T) {
	for _, tc := range []struct {
		name     string
		app      string
		settings LeaseTableSettings
		bad      string // a part of the error; empty: valid
	}{
		{"zero without AppName", "", LeaseTableSettings{}, ""},
		{"zero", "app", LeaseTableSettings{}, ""},
		{"no create", "app", LeaseTableSettings{NoCreate: true}, ""},
		{"every creation setting", "app", LeaseTableSettings{Tags: map[string]string{"team": "a"}, DeletionProtection: true, PointInTimeRecovery: true, KMSKeyID: "alias/k", ReadCapacity: 5, WriteCapacity: 5}, ""},
		{"without AppName", "", LeaseTableSettings{NoCreate: true}, "needs AppName"},
		{"no create with tags", "app", LeaseTableSettings{NoCreate: true, Tags: map[string]string{"a": "b"}}, "NoCreate with settings"},
		{"no create with protection", "app", LeaseTableSettings{NoCreate: true, DeletionProtection: true}, "NoCreate with settings"},
		{"no create with recovery", "app", LeaseTableSettings{NoCreate: true, PointInTimeRecovery: true}, "NoCreate with settings"},
		{"no create with a key", "app", LeaseTableSettings{NoCreate: true, KMSKeyID: "k"}, "NoCreate with settings"},
		{"no create with capacity", "app", LeaseTableSettings{NoCreate: true, ReadCapacity: 1, WriteCapacity: 1}, "NoCreate with settings"},
		{"read capacity alone", "app", LeaseTableSettings{ReadCapacity: 5}, "set both"},
		{"write capacity alone", "app", LeaseTableSettings{WriteCapacity: 5}, "set both"},
		{"negative capacity", "app", LeaseTableSettings{ReadCapacity: -1, WriteCapacity: 5}, "negative"},
		{"empty tag key", "app", LeaseTableSettings{Tags: map[string]string{"": "x"}}, "empty key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Options{StreamName: "s", AppName: tc.app, LeaseTableSettings: tc.settings}.withDefaults()
			if tc.bad == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrInvalidOptions)
			assert.ErrorContains(t, err, "LeaseTableSettings")
			assert.ErrorContains(t, err, tc.bad)
		})
	}
}

// The zero settings create the table exactly as kcl always has; each
// setting adds only its own field.
func TestLeaseTableSettingsCreateInput(t *testing.T) {
	base := leaseitem.CreateTable("t1")
	for _, tc := range []struct {
		name     string
		settings LeaseTableSettings
		want     func(in *dynamodb.CreateTableInput)
	}{
		{"zero", LeaseTableSettings{}, func(*dynamodb.CreateTableInput) {}},
		{"tags, sorted by key", LeaseTableSettings{Tags: map[string]string{"team": "pay", "env": "prod"}}, func(in *dynamodb.CreateTableInput) {
			in.Tags = []types.Tag{{Key: aws.String("env"), Value: aws.String("prod")}, {Key: aws.String("team"), Value: aws.String("pay")}}
		}},
		{"deletion protection", LeaseTableSettings{DeletionProtection: true}, func(in *dynamodb.CreateTableInput) {
			in.DeletionProtectionEnabled = aws.Bool(true)
		}},
		{"recovery is a later call", LeaseTableSettings{PointInTimeRecovery: true}, func(*dynamodb.CreateTableInput) {}},
		{"KMS key", LeaseTableSettings{KMSKeyID: "alias/leases"}, func(in *dynamodb.CreateTableInput) {
			in.SSESpecification = &types.SSESpecification{Enabled: aws.Bool(true), SSEType: types.SSETypeKms, KMSMasterKeyId: aws.String("alias/leases")}
		}},
		{"provisioned", LeaseTableSettings{ReadCapacity: 3, WriteCapacity: 4}, func(in *dynamodb.CreateTableInput) {
			in.BillingMode = types.BillingModeProvisioned
			in.ProvisionedThroughput = &types.ProvisionedThroughput{ReadCapacityUnits: aws.Int64(3), WriteCapacityUnits: aws.Int64(4)}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := *base
			tc.want(&want)
			assert.Equal(t, &want, tc.settings.createInput("t1"))
		})
	}
}

// tableCalls wraps the lease table's client: it records the operations
// called, in order, and answers UpdateContinuousBackups itself (dynalite
// has no such call), failing the first unavailable times as DynamoDB does
// while a new table's backups are being set up.
type tableCalls struct {
	DynamoDBAPI
	mu          sync.Mutex
	ops         []string
	created     []*dynamodb.CreateTableInput
	unavailable int
	// activeBeforeBackups: the last DescribeTable before the first
	// UpdateContinuousBackups saw the table ACTIVE.
	activeBeforeBackups, lastActive, backupsCalled bool
}

func (d *tableCalls) record(op string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ops = append(d.ops, op)
}

func (d *tableCalls) count(op string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, o := range d.ops {
		if o == op {
			n++
		}
	}
	return n
}

func (d *tableCalls) CreateTable(ctx context.Context, in *dynamodb.CreateTableInput, o ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error) {
	d.record("CreateTable")
	d.mu.Lock()
	d.created = append(d.created, in)
	d.mu.Unlock()
	return d.DynamoDBAPI.CreateTable(ctx, in, o...)
}

func (d *tableCalls) DescribeTable(ctx context.Context, in *dynamodb.DescribeTableInput, o ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error) {
	d.record("DescribeTable")
	out, err := d.DynamoDBAPI.DescribeTable(ctx, in, o...)
	d.mu.Lock()
	d.lastActive = err == nil && out.Table.TableStatus == types.TableStatusActive
	d.mu.Unlock()
	return out, err
}

func (d *tableCalls) UpdateContinuousBackups(ctx context.Context, in *dynamodb.UpdateContinuousBackupsInput, o ...func(*dynamodb.Options)) (*dynamodb.UpdateContinuousBackupsOutput, error) {
	d.record("UpdateContinuousBackups")
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.backupsCalled {
		d.backupsCalled, d.activeBeforeBackups = true, d.lastActive
	}
	if !aws.ToBool(in.PointInTimeRecoverySpecification.PointInTimeRecoveryEnabled) {
		return nil, errors.New("test: recovery not enabled by the call")
	}
	if d.unavailable > 0 {
		d.unavailable--
		return nil, &types.ContinuousBackupsUnavailableException{Message: aws.String("Backups are being enabled for the table (test)")}
	}
	return &dynamodb.UpdateContinuousBackupsOutput{}, nil
}

// With NoCreate, a missing table ends the consumer at start: Err wraps
// ErrNoLeaseTable and names the table and dynamodb:CreateTable, and no
// CreateTable was called. A table made beforehand is used.
func TestNoCreateMissingTableEndsAtStart(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 1)
	calls := &tableCalls{DynamoDBAPI: f.ddb}
	opts := f.options()
	opts.DynamoDB = calls
	opts.LeaseTableSettings = LeaseTableSettings{NoCreate: true}
	s := startConsumer(t, opts)
	err := s.ends(10 * time.Second)
	require.ErrorIs(t, err, ErrNoLeaseTable)
	assert.ErrorContains(t, err, `"`+f.app+`"`)
	assert.ErrorContains(t, err, "dynamodb:CreateTable")
	assert.Zero(t, calls.count("CreateTable"))
	_, err = f.ddb.DescribeTable(context.Background(), dynamoDescribe(f.app))
	var notFound *types.ResourceNotFoundException
	require.ErrorAs(t, err, &notFound, "the table must still be missing")

	// Made by infrastructure code: used as it is.
	_, err = f.ddb.CreateTable(context.Background(), LeaseTableSettings{}.createInput(f.app))
	require.NoError(t, err)
	ps := f.putN(3, 3, "")
	s = startConsumer(t, opts)
	assert.ElementsMatch(t, putData(ps), dataOf(s.receive(3, 20*time.Second, ackAll)))
	require.NoError(t, s.stop(nil))
	assert.Zero(t, calls.count("CreateTable"))
}

// Each creation setting reaches dynalite's CreateTable; dynalite keeps the
// provisioned billing, and kcl turns on point-in-time recovery once the
// table is ACTIVE, retrying while DynamoDB says backups are unavailable.
// A second worker, which finds the table, calls neither.
func TestLeaseTableSettingsOnDynalite(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 1)
	settings := LeaseTableSettings{
		Tags:               map[string]string{"team": "payments", "env": "test"},
		DeletionProtection: true, PointInTimeRecovery: true,
		KMSKeyID:     "arn:aws:kms:us-east-1:000000000000:key/11111111-2222-3333-4444-555555555555",
		ReadCapacity: 5, WriteCapacity: 7,
	}
	first := &tableCalls{DynamoDBAPI: f.ddb, unavailable: 2}
	opts := f.options()
	opts.DynamoDB = first
	opts.LeaseTableSettings = settings
	ps := f.putN(4, 4, "")
	s := startConsumer(t, opts)
	assert.ElementsMatch(t, putData(ps), dataOf(s.receive(4, 30*time.Second, ackAll)))

	require.Len(t, first.created, 1)
	assert.Equal(t, settings.createInput(f.app), first.created[0])
	assert.Equal(t, 3, first.count("UpdateContinuousBackups"), "two unavailable answers, then success")
	assert.True(t, first.activeBeforeBackups, "recovery turned on before the table was ACTIVE")

	out, err := f.ddb.DescribeTable(context.Background(), dynamoDescribe(f.app))
	require.NoError(t, err)
	assert.True(t, leaseitem.IsLeaseTable(out.Table.KeySchema))
	assert.Equal(t, int64(5), aws.ToInt64(out.Table.ProvisionedThroughput.ReadCapacityUnits))
	assert.Equal(t, int64(7), aws.ToInt64(out.Table.ProvisionedThroughput.WriteCapacityUnits))

	second := &tableCalls{DynamoDBAPI: f.ddb}
	opts.DynamoDB = second
	opts.WorkerID = "second"
	s2 := startConsumer(t, opts)
	require.Eventually(t, func() bool { return second.count("DescribeTable") > 0 }, 10*time.Second, 20*time.Millisecond)
	s2.quiet(time.Second)
	require.NoError(t, s2.stop(nil))
	require.NoError(t, s.stop(nil))
	assert.Zero(t, second.count("CreateTable"), "the table exists")
	assert.Zero(t, second.count("UpdateContinuousBackups"), "only the creator turns recovery on")
}

// What dynalite 4.0.0 does with each setting, for docs/security.md: it
// accepts them all in CreateTable and keeps only the provisioned billing;
// it has no continuous backups calls at all.
func TestDynaliteTableSettingsFacts(t *testing.T) {
	db := dynamoClient(t)
	ctx := context.Background()
	table := uniqueName(t)
	settings := LeaseTableSettings{Tags: map[string]string{"team": "payments"}, DeletionProtection: true, KMSKeyID: "alias/leases", ReadCapacity: 5, WriteCapacity: 7}
	_, err := db.CreateTable(ctx, settings.createInput(table))
	require.NoError(t, err, "dynalite accepts every setting")
	out, err := dynamodb.NewTableExistsWaiter(db, func(o *dynamodb.TableExistsWaiterOptions) { o.MinDelay = 50 * time.Millisecond }).
		WaitForOutput(ctx, dynamoDescribe(table), time.Minute)
	require.NoError(t, err)
	assert.Equal(t, int64(5), aws.ToInt64(out.Table.ProvisionedThroughput.ReadCapacityUnits), "provisioned billing is kept")
	assert.Nil(t, out.Table.DeletionProtectionEnabled, "deletion protection is dropped")
	assert.Nil(t, out.Table.SSEDescription, "the KMS key is dropped")
	tags, err := db.ListTagsOfResource(ctx, &dynamodb.ListTagsOfResourceInput{ResourceArn: out.Table.TableArn})
	require.NoError(t, err)
	assert.Empty(t, tags.Tags, "CreateTable's tags are dropped")
	_, err = db.UpdateContinuousBackups(ctx, pitrInput(table))
	assert.Equal(t, "UnknownOperationException", errorCode(err))
	_, err = db.DescribeContinuousBackups(ctx, &dynamodb.DescribeContinuousBackupsInput{TableName: &table})
	assert.Equal(t, "UnknownOperationException", errorCode(err))
	_, err = db.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: &table})
	assert.NoError(t, err, "a table created with deletion protection is deleted")
}

// An emulator without UpdateContinuousBackups (dynalite) ends a consumer
// that would turn on point-in-time recovery at start, with the code, not
// retried forever; the table is made all the same.
func TestPointInTimeRecoveryOnAnEmulatorWithoutItEndsAtStart(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 1)
	opts := f.options()
	opts.LeaseTableSettings = LeaseTableSettings{PointInTimeRecovery: true}
	err := startConsumer(t, opts).ends(10 * time.Second)
	assert.ErrorContains(t, err, "point-in-time recovery")
	assert.Equal(t, "UnknownOperationException", errorCode(err))
}

// creatingTable answers DescribeTable with the table CREATING the first
// creating times, as DynamoDB does for a table infrastructure code has
// just made.
type creatingTable struct {
	DynamoDBAPI
	creating  atomic.Int32
	describes atomic.Int32
}

func (d *creatingTable) DescribeTable(ctx context.Context, in *dynamodb.DescribeTableInput, o ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error) {
	d.describes.Add(1)
	out, err := d.DynamoDBAPI.DescribeTable(ctx, in, o...)
	if err == nil && d.creating.Add(-1) >= 0 {
		out.Table.TableStatus = types.TableStatusCreating
	}
	return out, err
}

// With NoCreate, a table still CREATING is waited for, not taken for a
// missing one: the consumer reads once it is ACTIVE.
func TestNoCreateWaitsForATableStillCreating(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 1)
	_, err := f.ddb.CreateTable(context.Background(), LeaseTableSettings{}.createInput(f.app))
	require.NoError(t, err)
	table := &creatingTable{DynamoDBAPI: f.ddb}
	table.creating.Store(2)
	opts := f.options()
	opts.DynamoDB = table
	opts.LeaseTableSettings = LeaseTableSettings{NoCreate: true}
	ps := f.putN(3, 3, "")
	s := startConsumer(t, opts)
	assert.ElementsMatch(t, putData(ps), dataOf(s.receive(3, 20*time.Second, ackAll)))
	require.NoError(t, s.stop(nil))
	assert.Greater(t, table.describes.Load(), int32(2), "described until ACTIVE")
}

// With NoCreate, a missing table ends Process at start, as it ends
// Consume: its error wraps ErrNoLeaseTable and names the table and
// dynamodb:CreateTable; the handler is never called.
func TestNoCreateMissingTableEndsProcessAtStart(t *testing.T) {
	noLeak(t)
	f := newFixture(t, emu.kinesisLocal, 1)
	f.putN(3, 3, "")
	calls := &tableCalls{DynamoDBAPI: f.ddb}
	opts := f.options()
	opts.DynamoDB = calls
	opts.LeaseTableSettings = LeaseTableSettings{NoCreate: true}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := Process(ctx, opts, func(ctx context.Context, rec Record) error {
		t.Errorf("handler called for %s", rec.SequenceNumber)
		return nil
	})
	require.ErrorIs(t, err, ErrNoLeaseTable)
	assert.NoError(t, ctx.Err(), "ended at start, not by the test's timeout")
	assert.ErrorContains(t, err, `"`+f.app+`"`)
	assert.ErrorContains(t, err, "dynamodb:CreateTable")
	assert.Zero(t, calls.count("CreateTable"))
}
