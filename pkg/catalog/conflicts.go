package catalog

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Loser is a source whose change of a conflicting key lost.
type Loser struct {
	DB        string          `json:"db"`
	ChangedAt time.Time       `json:"changed_at"`
	Row       json.RawMessage `json:"row"` // null: the row was deleted there
}

// ConflictRecord is one resolved conflict, as gobucardo.conflict_log keeps it.
type ConflictRecord struct {
	ID         int64           `json:"id"`
	Sync       string          `json:"sync"`
	Schema     string          `json:"schema"`
	Name       string          `json:"table"`
	Key        json.RawMessage `json:"key"`
	Strategy   string          `json:"strategy"`
	Winner     string          `json:"winner"` // "" when skipped
	Losers     []Loser         `json:"losers"`
	ResolvedAt time.Time       `json:"resolved_at"`
}

// LogConflicts records the conflicts of run id with one COPY.
func LogConflicts(ctx context.Context, conn *pgx.Conn, run int64, sync string, cs []ConflictRecord) error {
	if len(cs) == 0 {
		return nil
	}
	rows := make([][]any, len(cs))
	for i, c := range cs {
		losers := c.Losers
		if losers == nil {
			losers = []Loser{}
		}
		lj, err := json.Marshal(losers)
		if err != nil {
			return err
		}
		var winner any
		if c.Winner != "" {
			winner = c.Winner
		}
		rows[i] = []any{run, sync, c.Schema, c.Name, string(c.Key), c.Strategy, winner, string(lj)}
	}
	_, err := conn.CopyFrom(ctx, pgx.Identifier{"gobucardo", "conflict_log"},
		[]string{"syncrun_id", "sync_name", "schema_name", "rel_name", "key", "strategy", "winner", "losers"}, pgx.CopyFromRows(rows))
	if err != nil {
		return fmt.Errorf("record %d conflicts of sync %s: %w", len(cs), sync, err)
	}
	return nil
}

// ForgetRunRecords removes the conflicts logged and the rows parked by run
// id, whose changes were rolled back: the next run meets them again.
func ForgetRunRecords(ctx context.Context, q Querier, run int64) error {
	if _, err := q.Exec(ctx, "DELETE FROM gobucardo.conflict_log WHERE syncrun_id = $1", run); err != nil {
		return fmt.Errorf("forget conflicts of run %d: %w", run, err)
	}
	if _, err := q.Exec(ctx, "DELETE FROM gobucardo.parked WHERE syncrun_id = $1", run); err != nil {
		return fmt.Errorf("forget rows parked by run %d: %w", run, err)
	}
	return nil
}

// ListConflicts returns the conflicts recorded since the given time (zero:
// all), of sync when not "", newest first, at most limit (0: all).
func ListConflicts(ctx context.Context, q Querier, sync string, since time.Time, limit int) ([]ConflictRecord, error) {
	rows, err := q.Query(ctx, `SELECT id, sync_name, schema_name, rel_name, key::text, strategy, coalesce(winner, ''), losers::text, resolved_at
		FROM gobucardo.conflict_log
		WHERE ($1 = '' OR sync_name = $1) AND resolved_at >= $2
		ORDER BY resolved_at DESC, id DESC LIMIT nullif($3, 0)`, sync, since, limit)
	if err != nil {
		return nil, fmt.Errorf("list conflicts: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (ConflictRecord, error) {
		var c ConflictRecord
		var key, losers string
		if err := r.Scan(&c.ID, &c.Sync, &c.Schema, &c.Name, &key, &c.Strategy, &c.Winner, &losers, &c.ResolvedAt); err != nil {
			return c, err
		}
		c.Key = json.RawMessage(key)
		return c, json.Unmarshal([]byte(losers), &c.Losers)
	})
}

// Pause marks a sync paused with a reason (the daemon does not run it
// until it is resumed).
//
// Pause takes the update lock on the sync's row that StartRun's share lock
// waits for: in a transaction, from the commit on no run of the sync
// starts (WaitForRuns then waits for the one in progress).
func Pause(ctx context.Context, q Querier, sync, reason string) error {
	if _, err := q.Exec(ctx, "SELECT FROM gobucardo.sync WHERE name = $1 FOR NO KEY UPDATE", sync); err != nil {
		return fmt.Errorf("pause sync %s: %w", sync, err)
	}
	_, err := q.Exec(ctx, `INSERT INTO gobucardo.sync_state (sync, paused, reason, updated) VALUES ($1, true, $2, now())
		ON CONFLICT (sync) DO UPDATE SET paused = true, reason = excluded.reason, updated = now()`, sync, reason)
	if err != nil {
		return fmt.Errorf("pause sync %s: %w", sync, err)
	}
	return nil
}

// Resume clears a sync's pause.
func Resume(ctx context.Context, q Querier, sync string) error {
	_, err := q.Exec(ctx, `UPDATE gobucardo.sync_state SET paused = false, reason = NULL, updated = now() WHERE sync = $1`, sync)
	return err
}

// Paused reports whether the sync is paused, and why.
func Paused(ctx context.Context, q Querier, sync string) (bool, string, error) {
	var paused bool
	var reason *string
	err := q.QueryRow(ctx, `SELECT coalesce(bool_or(paused), false), max(reason) FROM gobucardo.sync_state WHERE sync = $1`, sync).
		Scan(&paused, &reason)
	if reason == nil {
		return paused, "", err
	}
	return paused, *reason, err
}
