package kcl

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNewRejectsBadOptionsNamingTheField(t *testing.T) {
	cfg := &aws.Config{Region: "us-east-1"}
	ok := Options{StreamName: "orders", AWSConfig: cfg}
	tests := []struct {
		field string
		edit  func(*Options)
	}{
		{"StreamName", func(o *Options) { o.StreamName = "" }},
		{"StreamName", func(o *Options) { o.StreamName = "has space" }},
		{"StreamARN", func(o *Options) { o.StreamName, o.StreamARN = "", "arn:aws:s3:::bucket" }},
		{"AppName", func(o *Options) { o.AppName = "ab" }},
		{"LeaseTable", func(o *Options) { o.LeaseTable = "leases" }},
		{"LeaseTable", func(o *Options) { o.AppName, o.LeaseTable = "billing", "bad/name" }},
		{"InitialPosition", func(o *Options) { o.InitialPosition = AtTimestamp(time.Time{}) }},
		{"MaxRecords", func(o *Options) { o.MaxRecords = 10001 }},
		{"MaxRecords", func(o *Options) { o.MaxRecords = -1 }},
		{"MaxUnackedPerShard", func(o *Options) { o.MaxUnackedPerShard = -5 }},
		{"PollInterval", func(o *Options) { o.PollInterval = -time.Second }},
		{"LeaseDuration", func(o *Options) { o.LeaseDuration = -time.Second }},
		{"LeaseDuration", func(o *Options) { o.LeaseDuration = 10 * time.Millisecond }},
		{"CheckpointInterval", func(o *Options) { o.CheckpointInterval = -1 }},
		{"ShardSyncInterval", func(o *Options) { o.ShardSyncInterval = -1 }},
		{"ShutdownTimeout", func(o *Options) { o.ShutdownTimeout = -1 }},
		{"BufferSize", func(o *Options) { o.BufferSize = -2 }},
		{"MaxLeasesPerWorker", func(o *Options) { o.MaxLeasesPerWorker = -1 }},
		{"ConsumerName", func(o *Options) { o.ConsumerName = "has space" }},
		{"ConsumerName", func(o *Options) { o.EnhancedFanOut = true }}, // no AppName to default from
		// AppName is a valid table name but not a valid consumer name (too
		// long), and ConsumerName defaults to it.
		{"ConsumerName", func(o *Options) { o.AppName, o.EnhancedFanOut = strings.Repeat("a", 129), true }},
		{"Streams", func(o *Options) { o.Streams = []string{"payments"} }}, // with StreamName
		{"Streams", func(o *Options) {
			o.StreamName, o.StreamARN, o.Streams = "", "arn:aws:kinesis:us-east-1:123456789012:stream/orders", []string{"payments"}
		}},
		{"Streams", func(o *Options) { o.StreamName, o.Streams = "", []string{"orders", "has space"} }},
		{"Streams", func(o *Options) { o.StreamName, o.Streams = "", []string{"orders", "arn:aws:s3:::bucket"} }},
		{"Streams", func(o *Options) { o.StreamName, o.Streams = "", []string{"orders", "payments", "orders"} }},
		{"Streams", func(o *Options) { o.StreamName, o.Streams = "", []string{} }},
		// A consumer given by ARN (consumerarn.go).
		{"ConsumerARN", func(o *Options) { o.ConsumerARN = consumerOfOrders }}, // no EnhancedFanOut
		{"ConsumerARN", func(o *Options) {
			o.EnhancedFanOut, o.ConsumerARN = true, "arn:aws:kinesis:us-east-1:123456789012:stream/orders"
		}},
		{"ConsumerARN", func(o *Options) { o.EnhancedFanOut, o.ConsumerARN = true, consumerOfPayments }},
		{"ConsumerARN", func(o *Options) {
			o.StreamName, o.StreamARN = "", "arn:aws:kinesis:us-east-1:999999999999:stream/orders" // another account's orders
			o.EnhancedFanOut, o.ConsumerARN = true, consumerOfOrders
		}},
		{"ConsumerARN", func(o *Options) {
			o.StreamName, o.Streams, o.EnhancedFanOut, o.ConsumerARN = "", []string{"orders"}, true, consumerOfOrders
		}},
		{"ConsumerName", func(o *Options) { o.EnhancedFanOut, o.ConsumerName, o.ConsumerARN = true, "fan", consumerOfOrders }},
		{"ConsumerARNs", func(o *Options) { o.EnhancedFanOut, o.ConsumerARNs = true, []string{consumerOfOrders} }}, // one stream
		{"ConsumerARNs", func(o *Options) {
			o.StreamName, o.Streams, o.EnhancedFanOut = "", []string{"orders"}, true
			o.ConsumerARN, o.ConsumerARNs = consumerOfOrders, []string{consumerOfOrders}
		}},
		{"ConsumerARNs", func(o *Options) { // none of payments
			o.StreamName, o.Streams, o.EnhancedFanOut, o.ConsumerARNs = "", []string{"orders", "payments"}, true, []string{consumerOfOrders}
		}},
		{"ConsumerARNs", func(o *Options) { // two of orders
			o.StreamName, o.Streams, o.EnhancedFanOut = "", []string{"arn:aws:kinesis:us-east-1:123456789012:stream/orders"}, true
			o.ConsumerARNs = []string{consumerOfOrders, strings.Replace(consumerOfOrders, "/consumer/fan:", "/consumer/other:", 1)}
		}},
		{"ConsumerARNs", func(o *Options) {
			o.StreamName, o.Streams, o.EnhancedFanOut, o.ConsumerARNs = "", []string{"orders"}, true, []string{consumerOfOrders, consumerOfOrders}
		}},
		{"ConsumerARNs", func(o *Options) {
			o.StreamName, o.Streams, o.EnhancedFanOut, o.ConsumerARNs = "", []string{"orders"}, true, []string{}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			o := ok
			tt.edit(&o)
			c, err := New(o)
			require.Error(t, err)
			assert.Nil(t, c)
			assert.True(t, errors.Is(err, ErrInvalidOptions), "%v does not wrap ErrInvalidOptions", err)
			assert.Contains(t, err.Error(), tt.field)
			assert.Contains(t, err.Error(), "kcl:")
		})
	}
}

const (
	consumerOfOrders   = "arn:aws:kinesis:us-east-1:123456789012:stream/orders/consumer/fan:1700000000"
	consumerOfPayments = "arn:aws:kinesis:us-east-1:123456789012:stream/payments/consumer/fan:1700000000"
)

// A consumer given by ARN is one for each stream, matched to it by the
// stream's ARN, or by its name until it is described; ConsumerName is then
// not defaulted, being neither registered nor looked up.
func TestNewAcceptsAConsumerARNForEachStream(t *testing.T) {
	cfg := &aws.Config{}
	for _, o := range []Options{
		{StreamName: "orders", ConsumerARN: consumerOfOrders},
		{StreamARN: "arn:aws:kinesis:us-east-1:123456789012:stream/orders", ConsumerARN: consumerOfOrders},
		{Streams: []string{"payments", "arn:aws:kinesis:us-east-1:123456789012:stream/orders"}, ConsumerARNs: []string{consumerOfOrders, consumerOfPayments}},
	} {
		o.AWSConfig, o.AppName, o.EnhancedFanOut = cfg, "billing", true
		c, err := New(o)
		require.NoError(t, err)
		assert.Empty(t, c.opts.ConsumerName)
	}
}

func TestNewFillsDocumentedDefaults(t *testing.T) {
	c, err := New(Options{StreamName: "orders", AppName: "billing", AWSConfig: &aws.Config{Region: "us-east-1"}})
	require.NoError(t, err)
	o := c.opts
	assert.Equal(t, "billing", o.LeaseTable)
	assert.NotEmpty(t, o.WorkerID)
	assert.Equal(t, Latest, o.InitialPosition)
	assert.Equal(t, 10000, o.MaxRecords)
	assert.Equal(t, 10000, o.MaxUnackedPerShard)
	assert.Equal(t, time.Second, o.PollInterval)
	assert.Equal(t, 10*time.Second, o.LeaseDuration)
	assert.Equal(t, 5*time.Second, o.CheckpointInterval)
	assert.Equal(t, 30*time.Second, o.ShardSyncInterval)
	assert.Equal(t, 10*time.Second, o.ShutdownTimeout)
	assert.Equal(t, 128, o.BufferSize)
	assert.Equal(t, "billing", o.ConsumerName)
	assert.Zero(t, o.MaxLeasesPerWorker)
	assert.False(t, o.EnhancedFanOut)
	assert.Same(t, slog.Default(), o.Logger)

	other, err := New(Options{StreamName: "orders", AWSConfig: &aws.Config{}})
	require.NoError(t, err)
	assert.NotEqual(t, o.WorkerID, other.opts.WorkerID, "default worker IDs differ between consumers")
	assert.IsType(t, &memLeases{}, other.table, "an empty AppName keeps leases in memory")
}

func TestBufferSizeMinusOneIsAnUnbufferedChannel(t *testing.T) {
	c, err := New(Options{StreamName: "orders", AWSConfig: &aws.Config{}, BufferSize: -1})
	require.NoError(t, err)
	assert.Zero(t, c.opts.BufferSize)
	c, err = New(Options{StreamName: "orders", AWSConfig: &aws.Config{}, BufferSize: 7})
	require.NoError(t, err)
	assert.Equal(t, 7, c.opts.BufferSize)
}

// Options that are set are kept: a default never overrides a value.
func TestNewKeepsWhatIsSet(t *testing.T) {
	c, err := New(Options{StreamName: "orders", AppName: "billing", AWSConfig: &aws.Config{}, LeaseTable: "leases", ConsumerName: "fan",
		WorkerID: "w1", MaxRecords: 5, MaxUnackedPerShard: 6, PollInterval: time.Minute, LeaseDuration: time.Minute,
		CheckpointInterval: time.Minute, ShardSyncInterval: time.Minute, ShutdownTimeout: time.Minute, MaxLeasesPerWorker: 3})
	require.NoError(t, err)
	o := c.opts
	assert.Equal(t, []any{"leases", "fan", "w1", 5, 6, 3}, []any{o.LeaseTable, o.ConsumerName, o.WorkerID, o.MaxRecords, o.MaxUnackedPerShard, o.MaxLeasesPerWorker})
	for _, d := range []time.Duration{o.PollInterval, o.LeaseDuration, o.CheckpointInterval, o.ShardSyncInterval, o.ShutdownTimeout} {
		assert.Equal(t, time.Minute, d)
	}
}

func TestStreamARNIsAccepted(t *testing.T) {
	_, err := New(Options{StreamARN: "arn:aws:kinesis:us-east-1:123456789012:stream/orders", AWSConfig: &aws.Config{}})
	require.NoError(t, err)
}

func TestStreamsAreAcceptedByNameAndARN(t *testing.T) {
	given := []string{"orders", "arn:aws:kinesis:us-east-1:123456789012:stream/payments"}
	c, err := New(Options{Streams: given, AWSConfig: &aws.Config{}})
	require.NoError(t, err)
	require.Len(t, c.streamList(), 2)
	assert.Equal(t, "orders", c.streamList()[0].name, "a name is used as a name")
	assert.Equal(t, given[1], c.streamList()[1].arn, "an ARN as an ARN")
	given[0] = "changed"
	assert.Equal(t, "orders", c.opts.Streams[0], "New keeps a copy of Streams")
}

// A PollInterval or CheckpointInterval under its floor costs without
// helping: New raises it to the floor and logs one Warn naming the option.
// Zero is the default, and a value at or above the floor is kept.
func TestOptionsRaiseCostOnlyIntervalsToTheirFloor(t *testing.T) {
	tests := []struct {
		name               string
		poll, checkpoint   time.Duration
		wantPoll, wantCkpt time.Duration
		warned             []string // options named by a Warn
	}{
		{"defaults", 0, 0, time.Second, 5 * time.Second, nil},
		{"one nanosecond each", 1, 1, 200 * time.Millisecond, 100 * time.Millisecond, []string{"PollInterval", "CheckpointInterval"}},
		{"just under", 199 * time.Millisecond, 99 * time.Millisecond, 200 * time.Millisecond, 100 * time.Millisecond, []string{"PollInterval", "CheckpointInterval"}},
		{"at the floors", 200 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 100 * time.Millisecond, nil},
		{"poll only", 50 * time.Millisecond, time.Second, 200 * time.Millisecond, time.Second, []string{"PollInterval"}},
		{"checkpoint only", time.Second, 10 * time.Millisecond, time.Second, 100 * time.Millisecond, []string{"CheckpointInterval"}},
		{"above", 250 * time.Millisecond, 150 * time.Millisecond, 250 * time.Millisecond, 150 * time.Millisecond, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs strings.Builder
			c, err := New(Options{StreamName: "orders", AWSConfig: &aws.Config{}, PollInterval: tt.poll, CheckpointInterval: tt.checkpoint,
				Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
			require.NoError(t, err)
			assert.Equal(t, tt.wantPoll, c.opts.PollInterval)
			assert.Equal(t, tt.wantCkpt, c.opts.CheckpointInterval)
			lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
			if len(tt.warned) == 0 {
				assert.Empty(t, logs.String())
				return
			}
			require.Len(t, lines, len(tt.warned), logs.String())
			for i, name := range tt.warned {
				assert.Contains(t, lines[i], "level=WARN")
				assert.Contains(t, lines[i], "kcl: option below its minimum, raised to it")
				assert.Contains(t, lines[i], "option="+name)
			}
		})
	}
}
