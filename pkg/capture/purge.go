package capture

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

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

// Purge defaults: see Purger.
const (
	DefaultPurgeBatch       = 10000
	DefaultPurgeLockTimeout = 500 * time.Millisecond
)

// Purger deletes consumed deltas; the zero value uses the defaults.
//
// A delta row is consumed when every sync that reads its table has a
// watermark whose xmin is above the row's txid: the slowest consumer
// bounds the purge, so a paused, inactive or failing sync (whose watermark
// does not advance) keeps every delta it still needs. A table that a
// subscribed sync has no watermark for is not purged at all.
//
// Rows are deleted in batches, each its own short transaction, found by an
// index range on txid whatever the statistics say: a purge of millions of
// rows holds no long transaction (which would hold back vacuum) and takes
// no lock but the ROW EXCLUSIVE one of a DELETE on gobucardo's own tables.
// Each batch sets lock_timeout: when another session holds a conflicting
// lock on a delta table (a reinstall, another purge), the table is left for
// the next pass instead of queueing; Result.Busy names it. A purge cut
// short (cancelled, killed, a db gone) loses nothing: every batch that
// committed deleted consumed rows only, and the next pass goes on.
type Purger struct {
	BatchSize   int           // rows per DELETE transaction; 0: DefaultPurgeBatch
	LockTimeout time.Duration // how long a batch may wait for a lock; 0: DefaultPurgeLockTimeout
}

// PurgeResult is what one Purge deleted.
type PurgeResult struct {
	Deltas    int64    // delta rows deleted
	Truncates int64    // truncate records deleted
	Batches   int      // DELETE transactions committed
	Busy      []string // tables (schema.name) skipped because a lock was held
}

// Purge deletes, with the default Purger, the delta rows and truncate
// records that every sync reading their table has consumed, and returns
// how many delta rows it deleted.
func Purge(ctx context.Context, conn *pgx.Conn) (int64, error) {
	r, err := Purger{}.Purge(ctx, conn)
	return r.Deltas, err
}

// Purge deletes, in batches, the delta rows and truncate records of every
// captured table that every sync reading the table has consumed (txid below
// the oldest xmin of their watermarks). On error, the result counts what
// was deleted before it.
func (p Purger) Purge(ctx context.Context, conn *pgx.Conn) (PurgeResult, error) {
	if p.BatchSize <= 0 {
		p.BatchSize = DefaultPurgeBatch
	}
	if p.LockTimeout <= 0 {
		p.LockTimeout = DefaultPurgeLockTimeout
	}
	var res PurgeResult
	// The horizon of a table is NULL when no sync reads it (nothing is known
	// to be consumed) or when one that reads it has no watermark. A target
	// that is behind keeps its own watermark: it still needs what is after.
	var targets bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass('gobucardo.target_watermark') IS NOT NULL").Scan(&targets); err != nil {
		return res, fmt.Errorf("read captured tables: %w", err)
	}
	behind := "NULL::xid8"
	if targets {
		behind = "(SELECT min(pg_snapshot_xmin(t.snap)) FROM gobucardo.target_watermark t WHERE t.sync = s.sync)"
	}
	rows, err := conn.Query(ctx, `SELECT c.delta_table, c.schema_name, c.rel_name,
			(SELECT CASE WHEN count(*) = count(w.sync) THEN min(least(pg_snapshot_xmin(w.snap), `+behind+`)) END
			   FROM gobucardo.subscription s LEFT JOIN gobucardo.watermark w USING (sync)
			  WHERE (s.schema_name, s.rel_name) = (c.schema_name, c.rel_name))::text
		FROM gobucardo.captured c ORDER BY 1`)
	if err != nil {
		return res, fmt.Errorf("read captured tables: %w", err)
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
		return res, fmt.Errorf("read captured tables: %w", err)
	}
	for _, it := range items {
		if it.horizon == nil {
			continue
		}
		table := pg.Display(it.schema, it.name)
		parts := []struct {
			what, table, filter string
			args                []any
			count               *int64
		}{
			{"deltas", pg.Ident("gobucardo", it.delta), "", nil, &res.Deltas},
			{"truncates", "gobucardo.truncate_log", " AND schema_name = $4 AND rel_name = $5", []any{it.schema, it.name}, &res.Truncates},
		}
		for _, part := range parts {
			n, err := p.deleteBelow(ctx, conn, &res, part.table, part.filter, *it.horizon, part.args...)
			*part.count += n
			if isLockTimeout(err) {
				res.Busy = append(res.Busy, table)
				break
			}
			if err != nil {
				return res, fmt.Errorf("purge %s of %s: %w", part.what, table, err)
			}
		}
	}
	return res, nil
}

// deleteBelow deletes the rows of table (quoted) with txid below horizon
// and matching filter (a constant condition on $4...), a batch per
// transaction, and returns how many it deleted. Each batch walks the txid
// index from where the last one stopped, so that it does not wade again
// through the index entries of the rows already deleted.
func (p Purger) deleteBelow(ctx context.Context, conn *pgx.Conn, res *PurgeResult, table, filter, horizon string, filterArgs ...any) (int64, error) {
	sql := `WITH del AS (
			DELETE FROM ` + table + ` WHERE ctid = ANY (ARRAY(
				SELECT ctid FROM ` + table + ` WHERE txid >= $1::xid8 AND txid < $2::xid8` + filter + `
				ORDER BY txid LIMIT $3))
			RETURNING txid)
		SELECT count(*), coalesce(max(txid), $1::xid8)::text FROM del`
	// The inner SELECT can only be an index range on txid, whatever the
	// statistics say; the outer DELETE is a TID scan.
	set := fmt.Sprintf("SET LOCAL lock_timeout = %d; SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; "+
		"SET LOCAL synchronous_commit = off", p.LockTimeout.Milliseconds())
	from := "0"
	var total int64
	for {
		var n int64
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, set); err != nil {
				return err
			}
			args := append([]any{from, horizon, p.BatchSize}, filterArgs...)
			return tx.QueryRow(ctx, sql, args...).Scan(&n, &from)
		})
		if err != nil {
			return total, err
		}
		total += n
		res.Batches++
		if n < int64(p.BatchSize) {
			return total, nil
		}
	}
}

// isLockTimeout reports whether err is PostgreSQL's lock_not_available
// (lock_timeout expired).
func isLockTimeout(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "55P03"
}

// Syncs lists the syncs that have a watermark on this database.
func Syncs(ctx context.Context, conn *pgx.Conn) ([]string, error) {
	rows, err := conn.Query(ctx, "SELECT sync FROM gobucardo.watermark ORDER BY sync")
	if err != nil {
		return nil, fmt.Errorf("read watermarks: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}
