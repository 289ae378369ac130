package catalog

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// RunEnd is how a run ended, as FinishRun records it.
type RunEnd struct {
	// State is the run's state in syncrun: RunGood, RunEmpty, RunBad or
	// RunCancelled.
	State string
	// Status is its text in syncrun ("Complete: ...", "Failed: ...",
	// "Cancelled: ..."), secrets already removed.
	Status string
	Counts RunCounts
	// Pause, when not "", pauses the sync with this reason (a conflict
	// under bucardo_abort).
	Pause string
	// OneTimeCopyDone sets the sync's onetimecopy back to 0.
	OneTimeCopyDone bool
	// Forget deletes the run's record instead: an empty run that a
	// controller made for its own bookkeeping is not news.
	Forget bool
	// PluginCalls are the calls the run made to the sync's plugins; they
	// are added to gobucardo.plugin_calls whatever the run's outcome (also
	// when Forget).
	PluginCalls []PluginCalls
}

// FinishRun records the end of run id of sync, started by StartRun on
// conn's session, in one transaction: a run that did not commit (bad or
// cancelled) loses the conflicts it logged and the rows it parked (the next
// run meets them again), the sync is paused when the end says so, and
// onetimecopy is cleared once done; the run's plugin calls are added to the
// sync's totals, whatever the run's outcome. It then releases the run lock, whatever
// became of the record.
func FinishRun(ctx context.Context, conn Session, sync string, id int64, end RunEnd) error {
	if end.onlyRecord() {
		return finishRecordOnly(ctx, conn, sync, id, end)
	}
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if err := AddPluginCalls(ctx, tx, sync, end.PluginCalls); err != nil {
			return err
		}
		if end.Forget {
			return ForgetRun(ctx, tx, id)
		}
		if end.State == RunBad || end.State == RunCancelled {
			if err := ForgetRunRecords(ctx, tx, id); err != nil {
				return err
			}
		}
		if err := EndRun(ctx, tx, id, end.State, end.Status, end.Counts); err != nil {
			return err
		}
		if end.Pause != "" {
			if err := Pause(ctx, tx, sync, end.Pause); err != nil {
				return err
			}
		}
		if end.OneTimeCopyDone {
			return ClearOneTimeCopy(ctx, tx, sync)
		}
		return nil
	})
	return errors.Join(err, EndRunLock(ctx, conn, sync))
}

// onlyRecord: the run committed and its end asks for nothing but its
// record (the common case, at every run of a sync under load): no pause,
// no onetimecopy to clear, no plugin calls to add.
func (e RunEnd) onlyRecord() bool {
	return (e.State == RunGood || e.State == RunEmpty) && !e.Forget && e.Pause == "" && !e.OneTimeCopyDone &&
		len(e.PluginCalls) == 0
}

// finishRecordOnly is FinishRun of an end that onlyRecord: the record and
// the release of the run lock in one statement, one round trip where
// BEGIN, the UPDATE, COMMIT and the unlock took four. The lock is released
// once the record is written (the statement's CTE runs first); if the
// statement fails, EndRunLock releases it.
func finishRecordOnly(ctx context.Context, conn Session, sync string, id int64, end RunEnd) error {
	c := end.Counts
	var unlocked bool
	err := conn.QueryRow(ctx, "WITH ended AS ("+endRunSQL+" RETURNING id) SELECT pg_advisory_unlock($8, hashtext($9)) FROM (SELECT count(*) FROM ended) e",
		id, end.State, end.Status, c.Deletes, c.Inserts, c.Truncates, c.Conflicts, runLockClass, sync).Scan(&unlocked)
	if err != nil {
		return errors.Join(fmt.Errorf("record end of run %d: %w", id, err), EndRunLock(ctx, conn, sync))
	}
	return nil
}
