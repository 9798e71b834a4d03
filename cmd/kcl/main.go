// Command kcl shows and steers a kcl consumer group through its DynamoDB
// lease table: who reads which shard and how far behind, replaying from a
// point in time, forgetting a dead worker, and moving from vmware-go-kcl.
//
//	go install github.com/kclgo/kcl/cmd/kcl@latest
//
//	kcl status -app APP -stream STREAM [-table T] [-lease D] [-lag] [-json]
//	kcl reset -app APP -stream STREAM -to trim-horizon|latest|RFC3339-TIME [-shard ID]... [-table T] [-lease D] [-dry-run] [-force]
//	kcl forget-worker -app APP -worker ID [-table T] [-lease D] [-dry-run]
//	kcl migrate-vmware -from VMWARE_APP -to KCL_APP [-watch D] [-dry-run] [-force]
//
// The lease table is -table, by default the application name (-app), as in
// kcl's Options. Whether a worker is alive is judged as kcl's workers judge
// it: the command reads the table, waits -lease (by default the longest
// LeaseDuration the heartbeats name, else 10s) and reads it again; a worker
// whose heartbeat (or, for a Java KCL worker, one of its leases) changed
// meanwhile is alive.
//
// AWS settings come from the environment, as for any AWS SDK program
// (config.LoadDefaultConfig: AWS_REGION, AWS_PROFILE, and
// AWS_ENDPOINT_URL_KINESIS / AWS_ENDPOINT_URL_DYNAMODB for emulators).
//
// Output is human-readable tables; status -json prints one JSON document.
// Exit status: 0 on success, 1 on an error (one line on stderr), 2 on bad
// usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
)

// DynamoDB is the part of *dynamodb.Client the command calls.
type DynamoDB interface {
	Scan(ctx context.Context, in *dynamodb.ScanInput, optFns ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error)
	DescribeTable(ctx context.Context, in *dynamodb.DescribeTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
	// DescribeContinuousBackups: only status, for its note on point-in-time recovery.
	DescribeContinuousBackups(ctx context.Context, in *dynamodb.DescribeContinuousBackupsInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DescribeContinuousBackupsOutput, error)
	CreateTable(ctx context.Context, in *dynamodb.CreateTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error)
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
}

// Kinesis is the part of *kinesis.Client the command calls.
type Kinesis interface {
	ListShards(ctx context.Context, in *kinesis.ListShardsInput, optFns ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error)
	GetShardIterator(ctx context.Context, in *kinesis.GetShardIteratorInput, optFns ...func(*kinesis.Options)) (*kinesis.GetShardIteratorOutput, error)
	GetRecords(ctx context.Context, in *kinesis.GetRecordsInput, optFns ...func(*kinesis.Options)) (*kinesis.GetRecordsOutput, error)
	// DescribeStreamSummary: only for a multi-stream lease table, whose
	// keys name the stream by account, name and creation time.
	DescribeStreamSummary(ctx context.Context, in *kinesis.DescribeStreamSummaryInput, optFns ...func(*kinesis.Options)) (*kinesis.DescribeStreamSummaryOutput, error)
}

var (
	_ DynamoDB = (*dynamodb.Client)(nil)
	_ Kinesis  = (*kinesis.Client)(nil)
)

// env is what a subcommand runs against: the tests give their own.
type env struct {
	stdout, stderr io.Writer
	// progress gets what the command is doing while it waits (the liveness
	// watch): stderr when it is a terminal, nothing otherwise, so that
	// scripts see one line on stderr for an error and nothing else.
	progress io.Writer
	// clients returns the AWS clients; called only by subcommands that need
	// them, after their flags were checked.
	clients func(ctx context.Context) (DynamoDB, Kinesis, error)
	now     func() time.Time
	// wait is the liveness watch between two reads of the lease table: it
	// waits d unless ctx ends first.
	wait func(ctx context.Context, d time.Duration) error
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	var progress io.Writer = io.Discard
	if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		progress = os.Stderr
	}
	code := run(ctx, os.Args[1:], &env{
		stdout: os.Stdout, stderr: os.Stderr, progress: progress,
		clients: func(ctx context.Context) (DynamoDB, Kinesis, error) {
			cfg, err := config.LoadDefaultConfig(ctx)
			if err != nil {
				return nil, nil, fmt.Errorf("AWS configuration: %w", err)
			}
			return dynamodb.NewFromConfig(cfg), kinesis.NewFromConfig(cfg), nil
		},
		now:  time.Now,
		wait: sleep,
	})
	stop()
	os.Exit(code)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// subcommand runs one subcommand; a usageError makes the exit status 2.
type subcommand struct {
	name, summary string
	run           func(ctx context.Context, args []string, e *env) error
}

var subcommands = []subcommand{
	{"status", "who reads which shard, whether each owner is alive, how far behind (-lag)", status},
	{"reset", "move checkpoints to trim-horizon, latest or a time, so the group re-reads (or skips) from there", reset},
	{"forget-worker", "remove a dead worker's heartbeat item and release its leases", forgetWorker},
	{"migrate-vmware", "write kcl leases from a vmware-go-kcl checkpoint table", migrateVMware},
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: kcl <command> [flags]   (kcl <command> -h for its flags)")
	fmt.Fprintln(w)
	for _, c := range subcommands {
		fmt.Fprintf(w, "  %-15s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "AWS settings come from the environment (AWS_REGION, AWS_PROFILE, AWS_ENDPOINT_URL_*).")
	fmt.Fprintln(w, "Exit status: 0 success, 1 error, 2 bad usage.")
}

// run runs the command line args and returns the exit status.
func run(ctx context.Context, args []string, e *env) int {
	if len(args) == 0 {
		usage(e.stderr)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(e.stdout)
		return 0
	}
	for _, c := range subcommands {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], e)
		var bad usageError
		switch {
		case err == nil, errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, &bad):
			fmt.Fprintf(e.stderr, "kcl %s: %v (kcl %s -h for help)\n", c.name, err, c.name)
			return 2
		default:
			fmt.Fprintf(e.stderr, "kcl %s: %s\n", c.name, oneLine(err.Error()))
			return 1
		}
	}
	fmt.Fprintf(e.stderr, "kcl: unknown command %q (kcl -h for help)\n", args[0])
	return 2
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// usageError is bad usage: a flag missing, malformed or contradictory.
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// flagSet makes a subcommand's flag set: errors come back to run, which
// prints them on one line with a hint; -h prints the usage on stdout
// (parse). Each flag's usage names the kind of its value in backquotes.
func flagSet(name, synopsis string, e *env) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprintf(e.stdout, "usage: kcl %s %s\n\n", name, synopsis)
		fs.SetOutput(e.stdout)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	return fs
}

// parse parses args; -h prints the usage (fs.Usage) and returns
// flag.ErrHelp. Parse calls Usage on every error too: it is silenced
// meanwhile, so that a bad flag is one line (run).
func parse(fs *flag.FlagSet, args []string) error {
	usage := fs.Usage
	fs.Usage = func() {}
	err := fs.Parse(args)
	fs.Usage = usage
	if errors.Is(err, flag.ErrHelp) {
		usage()
		return err
	}
	if err != nil {
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// tableFlags adds -app and -table; the returned function gives the lease
// table's name, or a usage error when neither is set.
func tableFlags(fs *flag.FlagSet) func() (string, error) {
	app := fs.String("app", "", "the application `name`, kcl's AppName")
	table := fs.String("table", "", "the lease `table`, kcl's LeaseTable (default: the -app name)")
	return func() (string, error) {
		switch {
		case *table != "":
			return *table, nil
		case *app != "":
			return *app, nil
		}
		return "", usagef("-app is required (or -table)")
	}
}

// leaseFlag adds -lease, the liveness watch.
func leaseFlag(fs *flag.FlagSet) *leaseWatch {
	w := &leaseWatch{d: positiveDuration(defaultLeaseDuration)}
	fs.Var(w, "lease", "the group's LeaseDuration: how long (a `duration`, such as 30s) to watch the table to tell live workers from dead ones (default: the longest its heartbeats name, else 10s)")
	return w
}

// leaseWatch is -lease. Unset, the watch lasts the longest LeaseDuration
// that the table's heartbeats name (kcl workers write theirs), or
// defaultLeaseDuration when none does: a group with a longer LeaseDuration
// is never called dead for being quiet within it.
type leaseWatch struct {
	d   positiveDuration
	set bool
}

// String is the value set, or "" unset: the usage states the default.
func (w *leaseWatch) String() string {
	if w == nil || !w.set {
		return ""
	}
	return w.d.String()
}
func (w *leaseWatch) Set(v string) error {
	w.set = true
	return w.d.Set(v)
}

// of returns how long to watch the table read as before.
func (w *leaseWatch) of(before snapshot) time.Duration {
	if w.set {
		return time.Duration(w.d)
	}
	d := time.Duration(w.d)
	for _, b := range before.beats {
		d = max(d, b.LeaseDuration)
	}
	return d
}

// positiveDuration is a duration flag that refuses zero and negative values.
type positiveDuration time.Duration

func (d *positiveDuration) String() string { return time.Duration(*d).String() }
func (d *positiveDuration) Set(v string) error {
	p, err := time.ParseDuration(v)
	if err != nil {
		return err
	}
	if p <= 0 {
		return errors.New("must be positive")
	}
	*d = positiveDuration(p)
	return nil
}

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }
