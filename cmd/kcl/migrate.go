package main

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/kclgo/kcl/internal/leaseitem"
)

// vmware-go-kcl's checkpoint table attributes.
const (
	vmShardID      = "ShardID"
	vmCheckpoint   = "Checkpoint"
	vmAssignedTo   = "AssignedTo"
	vmLeaseTimeout = "LeaseTimeout"
	vmParent       = "ParentShardId"
)

// vmShard is one row of the vmware table, as the migration sees it.
type vmShard struct {
	id, checkpoint, owner, parent string
	leaseTimeout                  time.Time
	hasTimeout                    bool
}

// migrateVMware moves an application from vmware-go-kcl to kcl without
// reprocessing its stream: it reads vmware-go-kcl's checkpoint table and
// writes a kcl lease (the Java KCL 2.x schema kcl uses) for each shard, with
// the same checkpoint, so kcl resumes right after it. It refuses while any
// vmware lease is live, unless -force: owned, and either renewed while the
// command watched the table (-watch: a live worker renews its leases,
// whatever its clock says) or with a LeaseTimeout still to come on the
// command's clock. It never overwrites a lease that exists in the kcl table: one at
// or past vmware's checkpoint is left as it is, and one before it
// (checkKCLLeases) makes the command refuse before it writes anything.
func migrateVMware(ctx context.Context, args []string, e *env) error {
	fs := flagSet("migrate-vmware", "-from VMWARE_APP -to KCL_APP [-watch D] [-dry-run] [-force]", e)
	from := fs.String("from", "", "vmware-go-kcl checkpoint `table` (its application name)")
	to := fs.String("to", "", "kcl lease `table` (Options.LeaseTable, by default the AppName)")
	dryRun := fs.Bool("dry-run", false, "print what would be written; write nothing")
	force := fs.Bool("force", false, "migrate even while vmware leases are live")
	watchFor := fs.Duration("watch", 10*time.Second, "how long to watch vmware-go-kcl's table for live workers, which renew their leases every few seconds whatever their clocks say")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *from == "" || *to == "" {
		return usagef("-from and -to are required")
	}
	db, _, err := e.clients(ctx)
	if err != nil {
		return err
	}
	out, now := e.stdout, e.now()

	shards, err := readVMware(ctx, db, *from)
	if err != nil {
		return fmt.Errorf("reading %q: %w", *from, err)
	}
	renewed := map[string]bool{}
	if *watchFor > 0 {
		// LeaseTimeout is the vmware worker's clock: one that runs behind
		// the command's looks expired while it renews.
		fmt.Fprintf(e.progress, "watching %q for %v for live vmware-go-kcl workers\n", *from, *watchFor)
		if err := e.wait(ctx, *watchFor); err != nil {
			return err
		}
		before := shards
		if shards, err = readVMware(ctx, db, *from); err != nil {
			return fmt.Errorf("reading %q: %w", *from, err)
		}
		for _, s := range shards {
			i := slices.IndexFunc(before, func(b vmShard) bool { return b.id == s.id })
			renewed[s.id] = i >= 0 && s.owner != "" && (before[i].owner != s.owner || before[i].checkpoint != s.checkpoint || !before[i].leaseTimeout.Equal(s.leaseTimeout))
		}
		now = e.now()
	}
	var live []string
	for _, s := range shards {
		switch {
		case renewed[s.id]:
			live = append(live, fmt.Sprintf("%s (owner %s renewed it during the %v watch)", s.id, s.owner, *watchFor))
		case s.owner != "" && s.hasTimeout && s.leaseTimeout.After(now):
			live = append(live, fmt.Sprintf("%s (owner %s until %s)", s.id, s.owner, s.leaseTimeout.Format(time.RFC3339)))
		}
	}
	if len(live) > 0 && !*force {
		return fmt.Errorf("vmware-go-kcl leases are still live: %s; stop its workers, wait for the leases to time out, or pass -force", strings.Join(live, ", "))
	}
	if err := checkKCLLeases(ctx, db, *to, shards); err != nil {
		return err
	}
	if !*dryRun {
		if err := ensureTable(ctx, db, *to); err != nil {
			return fmt.Errorf("lease table %q: %w", *to, err)
		}
	}
	written, skipped := 0, 0
	for _, s := range shards {
		switch {
		case s.checkpoint == "":
			fmt.Fprintf(out, "skip  %s: no checkpoint (kcl starts it from its InitialPosition)\n", s.id)
			skipped++
			continue
		case s.checkpoint != leaseitem.ShardEnd && !leaseitem.IsSequenceNumber(s.checkpoint):
			fmt.Fprintf(out, "skip  %s: checkpoint %q is neither a sequence number nor SHARD_END\n", s.id, s.checkpoint)
			skipped++
			continue
		}
		// Counter 1, not 0: vmware-go-kcl read these shards. A lease kcl
		// finds at SHARD_END with counter 0 was created ended and never read
		// (a closed shard at Latest), and its children would start at
		// InitialPosition instead of TRIM_HORIZON.
		l := leaseitem.Lease{Key: s.id, Counter: 1, Checkpoint: s.checkpoint}
		if s.parent != "" {
			l.Parents = []string{s.parent}
		}
		line := fmt.Sprintf("%s checkpoint=%s parents=[%s]", s.id, s.checkpoint, s.parent)
		if *dryRun {
			fmt.Fprintln(out, "would write", line)
			continue
		}
		_, err := db.PutItem(ctx, &dynamodb.PutItemInput{
			TableName: to, Item: leaseitem.NewItem(l, false), ConditionExpression: aws.String("attribute_not_exists(" + leaseitem.AttrLeaseKey + ")"),
		})
		var exists *types.ConditionalCheckFailedException
		switch {
		case errors.As(err, &exists):
			// Made since checkKCLLeases read the table: a kcl worker runs.
			if err := checkKCLLeases(ctx, db, *to, []vmShard{s}); err != nil {
				return err
			}
			fmt.Fprintf(out, "skip  %s: a kcl lease exists already, at or past this checkpoint; left as it is\n", s.id)
			skipped++
		case err != nil:
			return fmt.Errorf("writing lease %q to %q: %w", s.id, *to, err)
		default:
			fmt.Fprintln(out, "wrote", line)
			written++
		}
	}
	fmt.Fprintf(out, "%d shards read from %s; %d leases written to %s; %d skipped\n", len(shards), *from, written, *to, skipped)
	return nil
}

// checkKCLLeases refuses the migration when table already holds a kcl
// lease of a shard to migrate that is not at or past vmware-go-kcl's
// checkpoint: kcl workers ran before the migration, so kcl would go on from
// its own position, and from LATEST or a time it would skip what came after
// vmware's checkpoint. Nothing is written then. A missing table holds none.
func checkKCLLeases(ctx context.Context, db DynamoDB, table string, shards []vmShard) error {
	var behind []string
	for _, s := range shards {
		if s.checkpoint == "" || s.checkpoint != leaseitem.ShardEnd && !leaseitem.IsSequenceNumber(s.checkpoint) {
			continue // not migrated
		}
		out, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: &table, Key: leaseitem.ItemKey(s.id), ConsistentRead: aws.Bool(true)})
		var missing *types.ResourceNotFoundException
		switch {
		case errors.As(err, &missing):
			return nil
		case err != nil:
			return fmt.Errorf("lease table %q: reading lease %q: %w", table, s.id, err)
		case out.Item == nil:
			continue
		}
		l, err := leaseitem.ParseLease(out.Item)
		if err != nil {
			return fmt.Errorf("lease table %q: lease %q is not understood: %w", table, s.id, err)
		}
		if !atOrPast(l.Checkpoint, s.checkpoint) {
			behind = append(behind, fmt.Sprintf("%s (kcl at %s, vmware-go-kcl at %s)", s.id, l.Checkpoint, s.checkpoint))
		}
	}
	if len(behind) > 0 {
		return fmt.Errorf("lease table %q already has kcl leases behind vmware-go-kcl's checkpoints: %s; kcl workers ran before the migration, and would go on from there (from LATEST or a time, skipping what came after vmware's checkpoint). Stop the kcl workers, delete those leases (or the table), and migrate again; nothing was written", table, strings.Join(behind, ", "))
	}
	return nil
}

// atOrPast reports whether kcl's checkpoint cp is at or past vmware-go-kcl's
// vm (a sequence number or SHARD_END) in the same shard: SHARD_END is past
// everything, a sentinel before any record, and sequence numbers compare as
// numbers.
func atOrPast(cp, vm string) bool {
	switch {
	case cp == leaseitem.ShardEnd:
		return true
	case vm == leaseitem.ShardEnd || !leaseitem.IsSequenceNumber(cp):
		return false
	}
	a, _ := new(big.Int).SetString(cp, 10)
	b, _ := new(big.Int).SetString(vm, 10)
	return a != nil && b != nil && a.Cmp(b) >= 0
}

func readVMware(ctx context.Context, db DynamoDB, table string) ([]vmShard, error) {
	var shards []vmShard
	in := &dynamodb.ScanInput{TableName: &table, ConsistentRead: aws.Bool(true)}
	for {
		page, err := db.Scan(ctx, in)
		if err != nil {
			return nil, err
		}
		for _, item := range page.Items {
			s := vmShard{id: str(item, vmShardID), checkpoint: str(item, vmCheckpoint), owner: str(item, vmAssignedTo), parent: str(item, vmParent)}
			if s.id == "" {
				return nil, fmt.Errorf("an item has no %s: not a vmware-go-kcl table", vmShardID)
			}
			if t := str(item, vmLeaseTimeout); t != "" {
				lt, err := time.Parse(time.RFC3339, t)
				if err != nil {
					return nil, fmt.Errorf("shard %s: %s %q is not an RFC 3339 time", s.id, vmLeaseTimeout, t)
				}
				s.leaseTimeout, s.hasTimeout = lt, true
			}
			shards = append(shards, s)
		}
		if len(page.LastEvaluatedKey) == 0 {
			return shards, nil
		}
		in.ExclusiveStartKey = page.LastEvaluatedKey
	}
}

// ensureTable creates the kcl lease table as kcl does, if missing.
func ensureTable(ctx context.Context, db DynamoDB, table string) error {
	_, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: &table})
	var notFound *types.ResourceNotFoundException
	if !errors.As(err, &notFound) {
		return err
	}
	_, err = db.CreateTable(ctx, leaseitem.CreateTable(table))
	if err != nil {
		return err
	}
	return dynamodb.NewTableExistsWaiter(db, func(o *dynamodb.TableExistsWaiterOptions) { o.MinDelay = 100 * time.Millisecond }).
		Wait(ctx, &dynamodb.DescribeTableInput{TableName: &table}, 5*time.Minute)
}

func str(item map[string]types.AttributeValue, attr string) string {
	if v, ok := item[attr].(*types.AttributeValueMemberS); ok {
		return v.Value
	}
	return ""
}
