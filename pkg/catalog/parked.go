package catalog

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// ParkedRow is a row an exception handler set aside: it was not applied to
// TargetDB, and waits there for `mcp parked retry`.
type ParkedRow struct {
	ID         int64           `json:"id"`
	Sync       string          `json:"sync"`
	Schema     string          `json:"schema"`
	Name       string          `json:"table"`
	SourceDB   string          `json:"source_db"`
	TargetDB   string          `json:"target_db"`
	Key        json.RawMessage `json:"key"`
	Row        json.RawMessage `json:"row"` // null when the source had no row
	SQLState   string          `json:"sqlstate"`
	Error      string          `json:"error"`
	CustomCode string          `json:"customcode"`
	Created    time.Time       `json:"created"`
}

// Park records rows set aside by run id. A row parked again (the same sync,
// table, source, target and key) is updated, not recorded twice: a run that
// parks and then fails is tried again and parks the same rows.
func Park(ctx context.Context, q Querier, run int64, rows []ParkedRow) error {
	if len(rows) == 0 {
		return nil
	}
	data, err := json.Marshal(rows)
	if err != nil {
		return err
	}
	_, err = q.Exec(ctx, `INSERT INTO gobucardo.parked (sync_name, schema_name, rel_name, source_db, target_db, key, row_data,
			sqlstate, error, customcode, syncrun_id)
		SELECT p.sync, p.schema, p."table", p.source_db, p.target_db, p.key, p."row", nullif(p.sqlstate, ''), p.error,
			nullif(p.customcode, ''), nullif($2, 0)
		FROM jsonb_to_recordset($1::jsonb) AS p(sync text, schema text, "table" text, source_db text, target_db text, key jsonb,
			"row" jsonb, sqlstate text, error text, customcode text)
		ON CONFLICT (sync_name, schema_name, rel_name, source_db, target_db, key) DO UPDATE
		SET row_data = excluded.row_data, sqlstate = excluded.sqlstate, error = excluded.error,
			customcode = excluded.customcode, syncrun_id = excluded.syncrun_id, created = now()`, string(data), run)
	if err != nil {
		return fmt.Errorf("record %d parked rows: %w", len(rows), err)
	}
	return nil
}

// ListParked returns the parked rows of sync ("" for every sync), oldest
// first.
func ListParked(ctx context.Context, q Querier, sync string) ([]ParkedRow, error) {
	rows, err := q.Query(ctx, `SELECT id, sync_name, schema_name, rel_name, source_db, target_db, key, coalesce(row_data, 'null'),
			coalesce(sqlstate, ''), error, coalesce(customcode, ''), created
		FROM gobucardo.parked WHERE $1 = '' OR sync_name = $1 ORDER BY created, id`, sync)
	if err != nil {
		return nil, fmt.Errorf("list parked rows: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (ParkedRow, error) {
		var p ParkedRow
		var key, row []byte
		err := r.Scan(&p.ID, &p.Sync, &p.Schema, &p.Name, &p.SourceDB, &p.TargetDB, &key, &row, &p.SQLState, &p.Error, &p.CustomCode, &p.Created)
		p.Key, p.Row = key, row
		return p, err
	})
}

// Unpark forgets parked rows once they are applied.
func Unpark(ctx context.Context, q Querier, ids []int64) error {
	if _, err := q.Exec(ctx, "DELETE FROM gobucardo.parked WHERE id = ANY($1)", ids); err != nil {
		return fmt.Errorf("forget parked rows: %w", err)
	}
	return nil
}

// SetParkedError records why a retry of a parked row failed.
func SetParkedError(ctx context.Context, q Querier, id int64, sqlstate, msg string) error {
	if _, err := q.Exec(ctx, "UPDATE gobucardo.parked SET sqlstate = nullif($2, ''), error = $3 WHERE id = $1", id, sqlstate, msg); err != nil {
		return fmt.Errorf("update parked row %d: %w", id, err)
	}
	return nil
}
