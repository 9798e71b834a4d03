package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/kclgo/kcl/internal/leaseitem"
)

// forgetRow is one write forget-worker makes.
type forgetRow struct {
	key, action, result string
	counter             int64 // leaseCounter as read: the write's condition
	heartbeat           bool  // the heartbeat item, not a lease
	handoff             bool  // a lease the worker reads as a Java KCL 3.x hand-off's old owner
}

type forgetReport struct {
	table, worker string
	dryRun        bool
	rows          []forgetRow
	leftAlone     []string
}

func forgetWorker(ctx context.Context, args []string, e *env) error {
	fs := flagSet("forget-worker", "-app APP -worker ID [-table T] [-lease D] [-dry-run]", e)
	tableName := tableFlags(fs)
	worker := fs.String("worker", "", "the worker `ID` (leaseOwner) to forget")
	leaseDur := leaseFlag(fs)
	dryRun := fs.Bool("dry-run", false, "print every change; write nothing")
	if err := parse(fs, args); err != nil {
		return err
	}
	table, err := tableName()
	if err != nil {
		return err
	}
	if *worker == "" {
		return usagef("-worker is required")
	}
	db, _, err := e.clients(ctx)
	if err != nil {
		return err
	}
	// A worker the table does not know is said at once, not after the watch.
	first, err := readTable(ctx, db, table)
	if err != nil {
		return err
	}
	if len(planForget(table, *worker, first).rows) == 0 {
		return fmt.Errorf("lease table %q has no heartbeat item and no lease of worker %q", table, *worker)
	}
	w, err := observe(ctx, e, db, table, leaseDur, "to tell whether "+*worker+" is alive", false)
	if err != nil {
		return err
	}
	if w.alive(*worker) {
		return fmt.Errorf("lease table %q: worker %q is alive (its heartbeat or a lease of its changed within %v); stop it first", table, *worker, w.watched)
	}
	rep := planForget(table, *worker, w.after)
	if len(rep.rows) == 0 {
		return fmt.Errorf("lease table %q has no heartbeat item and no lease of worker %q", table, *worker)
	}
	rep.dryRun = *dryRun
	if !*dryRun {
		for i := range rep.rows {
			row := &rep.rows[i]
			var err error
			switch {
			case row.heartbeat:
				err = deleteHeartbeat(ctx, db, table, row.key, row.counter)
			case row.handoff:
				err = endHandoff(ctx, db, table, row.key, *worker, row.counter)
			default:
				err = releaseLease(ctx, db, table, row.key, *worker, row.counter)
			}
			switch {
			case isConditionFailed(err):
				row.result = "left alone: written since it was read"
				rep.leftAlone = append(rep.leftAlone, row.key)
			case err != nil:
				row.result = "failed (below)"
				for j := i + 1; j < len(rep.rows); j++ {
					rep.rows[j].result = "not written"
				}
				_ = rep.print(e.stdout) // what was written before the error
				return fmt.Errorf("lease table %q: item %q: %w", table, row.key, err)
			case row.heartbeat:
				row.result = "deleted"
			case row.handoff:
				row.result = "hand-off ended"
			default:
				row.result = "released"
			}
		}
		bumpGroup(ctx, db, table)
	}
	if err := rep.print(e.stdout); err != nil {
		return err
	}
	if len(rep.leftAlone) > 0 {
		return fmt.Errorf("lease table %q: %d items left alone, changed since they were read (is %s back?): %s", table, len(rep.leftAlone), *worker, strings.Join(rep.leftAlone, ", "))
	}
	return nil
}

// planForget lists the writes that forget a worker: release each lease it
// owns, end each Java KCL 3.x hand-off it is the old owner of (the lease
// is then its new owner's), then delete its heartbeat item. It is pure.
func planForget(table, worker string, snap snapshot) forgetReport {
	rep := forgetReport{table: table, worker: worker}
	for _, l := range snap.sortedLeases() {
		switch {
		case l.Owner == worker:
			rep.rows = append(rep.rows, forgetRow{key: l.Key, action: "release lease (remove its owner and hand-off claims)", result: "would release", counter: l.Counter})
		case l.CheckpointOwner == worker:
			rep.rows = append(rep.rows, forgetRow{key: l.Key, action: "end Java hand-off (remove checkpointOwner; the lease stays " + l.Owner + "'s)", result: "would end hand-off", counter: l.Counter, handoff: true})
		}
	}
	if b, ok := snap.beats[worker]; ok {
		rep.rows = append(rep.rows, forgetRow{key: leaseitem.WorkerKey(worker), action: "delete heartbeat item", result: "would delete", counter: b.Counter, heartbeat: true})
	}
	return rep
}

// releaseLease releases a lease as a kcl worker does (leasetable.go's
// checkpoint with next ""), without moving its checkpoint: owner and
// hand-off claims removed (kcl's handoffTo, and the Java KCL 3.x's
// checkpointOwner, as its eviction and kcl's take remove it), counter
// bumped, conditional on the counter and owner read.
func releaseLease(ctx context.Context, db DynamoDB, table, shard, owner string, counter int64) error {
	_, err := db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:           aws.String(table),
		Key:                 leaseitem.ItemKey(shard),
		ConditionExpression: aws.String(leaseitem.AttrCounter + " = :c AND " + leaseitem.AttrOwner + " = :owner"),
		UpdateExpression: aws.String("SET " + leaseitem.AttrCounter + " = :n REMOVE " +
			leaseitem.AttrOwner + ", " + leaseitem.AttrHandoff + ", " + leaseitem.AttrCheckpointOwner),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":c": leaseitem.Number(counter), ":n": leaseitem.Number(counter + 1), ":owner": &types.AttributeValueMemberS{Value: owner},
		},
	})
	return err
}

// endHandoff ends a Java KCL 3.x graceful hand-off whose old owner
// (checkpointOwner) is dead, as a kcl worker's take of such a lease does:
// it removes checkpointOwner, leaving the lease to its owner, and bumps the counter,
// conditional on the counter and old owner read.
func endHandoff(ctx context.Context, db DynamoDB, table, key, oldOwner string, counter int64) error {
	_, err := db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:           aws.String(table),
		Key:                 leaseitem.ItemKey(key),
		ConditionExpression: aws.String(leaseitem.AttrCounter + " = :c AND " + leaseitem.AttrCheckpointOwner + " = :old"),
		UpdateExpression:    aws.String("SET " + leaseitem.AttrCounter + " = :n REMOVE " + leaseitem.AttrCheckpointOwner),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":c": leaseitem.Number(counter), ":n": leaseitem.Number(counter + 1), ":old": &types.AttributeValueMemberS{Value: oldOwner},
		},
	})
	return err
}

// deleteHeartbeat deletes a heartbeat item if its counter is still the one
// read. A worker that comes back makes it anew (heartbeat in leasetable.go).
func deleteHeartbeat(ctx context.Context, db DynamoDB, table, key string, counter int64) error {
	_, err := db.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName:                 aws.String(table),
		Key:                       leaseitem.ItemKey(key),
		ConditionExpression:       aws.String(leaseitem.AttrCounter + " = :c"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":c": leaseitem.Number(counter)},
	})
	return err
}

func (r forgetReport) print(out io.Writer) error {
	w := &errWriter{w: out}
	verb := "forget"
	if r.dryRun {
		verb = "dry run (nothing written): forget"
	}
	fmt.Fprintf(w, "%s worker %s in lease table %s\n\n", verb, r.worker, r.table)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ITEM\tACTION\tRESULT")
	for _, row := range r.rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", row.key, row.action, row.result)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if !r.dryRun {
		fmt.Fprintf(w, "\n%d written, %d left alone\n", len(r.rows)-len(r.leftAlone), len(r.leftAlone))
	}
	return w.err
}
