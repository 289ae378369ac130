package capture

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/gobucardo/gobucardo/pkg/pg"
)

// Installed reports whether the database behind q has gobucardo's capture.
func Installed(ctx context.Context, q interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}) (bool, error) {
	var ok bool
	err := q.QueryRow(ctx, "SELECT to_regclass('gobucardo.captured') IS NOT NULL AND to_regclass('gobucardo.watermark') IS NOT NULL").Scan(&ok)
	return ok, err
}

// Pending is the backlog of one captured table for one sync.
type Pending struct {
	Schema, Name string
	Sync         string // "" when no sync reads the table
	Pending      int64  // delta rows the sync has not consumed
	Total        int64  // delta rows kept
}

// Backlog counts, per captured table and subscribed sync, the delta rows
// not yet consumed (newer than the sync's watermark) and kept in all.
func Backlog(ctx context.Context, conn *pgx.Conn) ([]Pending, error) {
	rows, err := conn.Query(ctx, `SELECT c.schema_name, c.rel_name, c.delta_table, coalesce(s.sync, ''), w.snap::text
		FROM gobucardo.captured c
		LEFT JOIN gobucardo.subscription s USING (schema_name, rel_name)
		LEFT JOIN gobucardo.watermark w ON w.sync = s.sync
		ORDER BY 1, 2, 4`)
	if err != nil {
		return nil, fmt.Errorf("read captured tables: %w", err)
	}
	type item struct {
		p     Pending
		delta string
		snap  *string
	}
	items, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (item, error) {
		var it item
		err := r.Scan(&it.p.Schema, &it.p.Name, &it.delta, &it.p.Sync, &it.snap)
		return it, err
	})
	if err != nil {
		return nil, err
	}
	out := make([]Pending, 0, len(items))
	for _, it := range items {
		delta := pg.Ident("gobucardo", it.delta)
		sql := "SELECT count(*), count(*) FROM " + delta
		args := []any{}
		if it.snap != nil {
			sql = "SELECT count(*) FILTER (WHERE txid >= pg_snapshot_xmin($1::pg_snapshot) AND NOT pg_visible_in_snapshot(txid, $1::pg_snapshot)), count(*) FROM " + delta
			args = append(args, *it.snap)
		}
		if err := conn.QueryRow(ctx, sql, args...).Scan(&it.p.Pending, &it.p.Total); err != nil {
			return nil, fmt.Errorf("count deltas of %s: %w", pg.Display(it.p.Schema, it.p.Name), err)
		}
		out = append(out, it.p)
	}
	return out, nil
}

// Purge deletes the delta rows and truncate records that every sync
// reading their table has consumed (older than the oldest watermark's
// xmin), and returns how many delta rows it deleted.
func Purge(ctx context.Context, conn *pgx.Conn) (int64, error) {
	rows, err := conn.Query(ctx, `SELECT c.delta_table, c.schema_name, c.rel_name,
			(SELECT min(pg_snapshot_xmin(w.snap)) FROM gobucardo.subscription s JOIN gobucardo.watermark w USING (sync)
			  WHERE (s.schema_name, s.rel_name) = (c.schema_name, c.rel_name))::text
		FROM gobucardo.captured c ORDER BY 1`)
	if err != nil {
		return 0, fmt.Errorf("read captured tables: %w", err)
	}
	type item struct {
		delta, schema, name string
		horizon             *string
	}
	items, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (item, error) {
		var it item
		err := r.Scan(&it.delta, &it.schema, &it.name, &it.horizon)
		return it, err
	})
	if err != nil {
		return 0, err
	}
	var total int64
	for _, it := range items {
		if it.horizon == nil {
			continue // no sync reads it: nothing is known to be consumed
		}
		tag, err := conn.Exec(ctx, "DELETE FROM "+pg.Ident("gobucardo", it.delta)+" WHERE txid < $1::xid8", *it.horizon)
		if err != nil {
			return total, fmt.Errorf("purge deltas of %s: %w", pg.Display(it.schema, it.name), err)
		}
		total += tag.RowsAffected()
		if _, err := conn.Exec(ctx, "DELETE FROM gobucardo.truncate_log WHERE schema_name = $1 AND rel_name = $2 AND txid < $3::xid8",
			it.schema, it.name, *it.horizon); err != nil {
			return total, fmt.Errorf("purge truncates of %s: %w", pg.Display(it.schema, it.name), err)
		}
	}
	return total, nil
}

// Syncs lists the syncs that have a watermark on this database.
func Syncs(ctx context.Context, conn *pgx.Conn) ([]string, error) {
	rows, err := conn.Query(ctx, "SELECT sync FROM gobucardo.watermark ORDER BY sync")
	if err != nil {
		return nil, fmt.Errorf("read watermarks: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}
