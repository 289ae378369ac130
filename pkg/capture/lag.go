package capture

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gobucardo/gobucardo/pkg/catalog"
	"github.com/gobucardo/gobucardo/pkg/pg"
)

// DefaultBacklogLimit is how many pending delta rows ReadSourceLag counts
// on one source for one sync (and for each target behind there) when
// LagReader.Limit is 0.
const DefaultBacklogLimit = 100000

// DefaultLagTimeout is how long LagReader waits to connect to and read one
// source when LagReader.Timeout is 0.
const DefaultLagTimeout = 5 * time.Second

// ErrNoWatermark is returned (wrapped) by ReadSourceLag when the sync has
// no capture on the database: use errors.Is.
var ErrNoWatermark = errors.New("no watermark")

// ReadSourceLag reads what sync has not consumed yet on the source db
// behind conn (db names it in the result), per table, and what each of its
// targets that are behind there has to catch up; ReadAt is the source's
// clock, which the lags are taken on.
//
// The cost is bounded whatever the backlog: each table's pending rows are
// an index range on txid from the watermark's xmin (planned as such
// whatever the statistics), counted until limit rows have been counted
// over all the tables; a table reached after that is still probed (two
// rows) for its oldest change. Pending is then a lower bound (at most
// limit plus one per table), and Capped says so. Oldest is the oldest
// change of the earliest transactions, those the range starts with.
//
// A database without the sync's capture returns an error that wraps
// ErrNoWatermark and says what to run.
func ReadSourceLag(ctx context.Context, conn *pgx.Conn, db, sync string, limit int64) (catalog.SourceLag, error) {
	s := catalog.SourceLag{DB: db}
	if ok, err := Installed(ctx, conn); err != nil {
		return s, err
	} else if !ok {
		return s, noWatermark(db, sync)
	}
	var snap string
	var consumed time.Time
	err := conn.QueryRow(ctx, "SELECT snap::text, updated, clock_timestamp() FROM gobucardo.watermark WHERE sync = $1", sync).
		Scan(&snap, &consumed, &s.ReadAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return s, noWatermark(db, sync)
	}
	if err != nil {
		return s, fmt.Errorf("read watermark of sync %s: %w", sync, err)
	}
	s.Consumed = &consumed
	tables, err := tablesOf(ctx, conn, sync)
	if err != nil {
		return s, err
	}
	b, err := countSince(ctx, conn, tables, sync, snap, limit)
	if err != nil {
		return s, err
	}
	s.Pending, s.Capped, s.Oldest = b.pending, b.capped, b.oldest
	for _, t := range b.tables {
		if t.Pending > 0 {
			s.Tables = append(s.Tables, t)
		}
	}
	s.Behind, err = targetsBehind(ctx, conn, tables, sync, limit)
	return s, err
}

func noWatermark(db, sync string) error {
	return fmt.Errorf("sync %s has no capture on db %s: mcp validate %s installs it: %w", sync, db, sync, ErrNoWatermark)
}

// deltaTable is a captured table a sync reads and its delta table.
type deltaTable struct{ delta, schema, name string }

// tablesOf lists the tables sync reads on the database, by delta table.
func tablesOf(ctx context.Context, conn *pgx.Conn, sync string) ([]deltaTable, error) {
	rows, err := conn.Query(ctx, `SELECT c.delta_table, c.schema_name, c.rel_name
		FROM gobucardo.subscription s JOIN gobucardo.captured c USING (schema_name, rel_name)
		WHERE s.sync = $1 ORDER BY 1`, sync)
	if err != nil {
		return nil, fmt.Errorf("read tables of sync %s: %w", sync, err)
	}
	items, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (deltaTable, error) {
		var it deltaTable
		err := r.Scan(&it.delta, &it.schema, &it.name)
		return it, err
	})
	if err != nil {
		return nil, fmt.Errorf("read tables of sync %s: %w", sync, err)
	}
	return items, nil
}

// backlog is what a place (a snapshot) has not consumed on the database.
type backlog struct {
	pending int64
	capped  bool
	oldest  *time.Time
	tables  []catalog.TableLag // every table, in delta table order
}

// countSince counts, up to limit (see ReadSourceLag), the delta rows of
// tables not visible in snap, and the oldest change among them.
func countSince(ctx context.Context, conn *pgx.Conn, tables []deltaTable, sync, snap string, limit int64) (backlog, error) {
	var b backlog
	for _, it := range tables {
		// One row more than is left tells a cut count from an exact one.
		left := max(limit-b.pending, 1)
		t := catalog.TableLag{Schema: it.schema, Table: it.name}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off"); err != nil {
				return err
			}
			return tx.QueryRow(ctx, `SELECT count(*), min(changed_at) FROM (
					SELECT changed_at FROM `+pg.Ident("gobucardo", it.delta)+`
					WHERE txid >= pg_snapshot_xmin($1::pg_snapshot) AND NOT pg_visible_in_snapshot(txid, $1::pg_snapshot)
					  AND (origin IS NULL OR origin <> $2)
					ORDER BY txid LIMIT $3) p`, snap, sync, left+1).Scan(&t.Pending, &t.Oldest)
		})
		if err != nil {
			return backlog{}, fmt.Errorf("count pending deltas of %s: %w", pg.Display(it.schema, it.name), err)
		}
		if t.Pending > left {
			t.Pending, t.Capped = left, true
		}
		if t.Oldest != nil && (b.oldest == nil || t.Oldest.Before(*b.oldest)) {
			b.oldest = t.Oldest
		}
		b.pending += t.Pending
		b.capped = b.capped || t.Capped
		b.tables = append(b.tables, t)
	}
	return b, nil
}

// targetsBehind lists the targets of sync that are behind on the database
// behind conn, each with its backlog there counted up to limit.
func targetsBehind(ctx context.Context, conn *pgx.Conn, tables []deltaTable, sync string, limit int64) ([]catalog.TargetBacklog, error) {
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass('gobucardo.target_watermark') IS NOT NULL").Scan(&ok); err != nil || !ok {
		return nil, err
	}
	rows, err := conn.Query(ctx, "SELECT target, since, reason, snap::text FROM gobucardo.target_watermark WHERE sync = $1 ORDER BY target", sync)
	if err != nil {
		return nil, fmt.Errorf("read the targets of sync %s that are behind: %w", sync, err)
	}
	type item struct {
		t    catalog.TargetBacklog
		snap string
	}
	items, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (item, error) {
		var it item
		err := r.Scan(&it.t.Target, &it.t.Since, &it.t.Reason, &it.snap)
		return it, err
	})
	if err != nil {
		return nil, fmt.Errorf("read the targets of sync %s that are behind: %w", sync, err)
	}
	out := make([]catalog.TargetBacklog, len(items))
	for i, it := range items {
		b, err := countSince(ctx, conn, tables, sync, it.snap, limit)
		if err != nil {
			return nil, err
		}
		it.t.Pending, it.t.Capped, it.t.Oldest = b.pending, b.capped, b.oldest
		out[i] = it.t
	}
	return out, nil
}

// LagReader reads how far behind syncs are: for both mcp status and the
// metrics collector, the one way to get a catalog.SyncLag.
//
// It keeps one connection per source db until Close, and remembers a db
// it could not reach (or read in time) until Close, so that one pass over
// many syncs waits for each such db once: make one per mcp status call or
// per metrics scrape, and Close it. The zero value uses the defaults. Not
// safe for concurrent use.
type LagReader struct {
	Limit   int64         // pending rows counted per source (see ReadSourceLag); 0: DefaultBacklogLimit
	Runs    int           // good runs the rate is taken over; 0: catalog.RateRuns
	Timeout time.Duration // to connect to and read one source; 0: DefaultLagTimeout

	conns  map[string]*pgx.Conn
	failed map[string]string // db -> why it could not be reached
}

// Read reads how far behind the sync d is: the rate of its last runs from
// the main database behind q (an error there is returned), and on each of
// its sources what it has not consumed (an error there is the source's
// SourceLag.Error, a sentence without the password, and sets Unknown), all
// combined by catalog.ComputeLag. A sync with no delta role reads no
// source.
func (r *LagReader) Read(ctx context.Context, q catalog.Querier, d catalog.SyncDetail) (catalog.SyncLag, error) {
	runs := r.Runs
	if runs <= 0 {
		runs = catalog.RateRuns
	}
	rate, err := catalog.RecentRunRate(ctx, q, d.Name, runs)
	if err != nil {
		return catalog.SyncLag{}, err
	}
	var sources []catalog.SourceLag
	if d.HasDeltaRole() {
		for _, db := range d.Sources() {
			sources = append(sources, r.source(ctx, db, d.Name))
		}
	}
	return catalog.ComputeLag(d, sources, rate), nil
}

// source reads what sync has not consumed on db, or why it cannot.
func (r *LagReader) source(ctx context.Context, db catalog.DB, sync string) catalog.SourceLag {
	ctx, cancel := r.withTimeout(ctx)
	defer cancel()
	conn, err := r.Conn(ctx, db)
	if err != nil {
		return catalog.SourceLag{DB: db.Name, Error: err.Error()}
	}
	limit := r.Limit
	if limit <= 0 {
		limit = DefaultBacklogLimit
	}
	s, err := ReadSourceLag(ctx, conn, db.Name, sync, limit)
	if err == nil {
		return s
	}
	msg := fmt.Sprintf("db %s: %v", db.Name, pg.RedactError(err, db.Password))
	if errors.Is(err, ErrNoWatermark) {
		msg = err.Error()
	}
	if pg.IsConnectionError(err) || ctx.Err() != nil {
		conn.Close(context.WithoutCancel(ctx))
		delete(r.conns, db.Name)
		r.failed[db.Name] = msg
	}
	return catalog.SourceLag{DB: db.Name, Error: msg}
}

func (r *LagReader) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = DefaultLagTimeout
	}
	return context.WithTimeout(ctx, timeout)
}

// Conn returns the reader's connection to db, connecting the first time;
// the reader owns it (Close closes it). The error is a sentence naming the
// db, without its password; a db that failed once fails again until Close.
func (r *LagReader) Conn(ctx context.Context, db catalog.DB) (*pgx.Conn, error) {
	if r.conns == nil {
		r.conns, r.failed = map[string]*pgx.Conn{}, map[string]string{}
	}
	if msg, ok := r.failed[db.Name]; ok {
		return nil, errors.New(msg)
	}
	if c, ok := r.conns[db.Name]; ok {
		return c, nil
	}
	c, err := pg.Connect(ctx, db.ConnString())
	if err != nil {
		msg := fmt.Sprintf("cannot connect to db %s (%s): %v", db.Name, db.Display(), pg.RedactError(err, db.Password))
		r.failed[db.Name] = msg
		return nil, errors.New(msg)
	}
	r.conns[db.Name] = c
	return c, nil
}

// Close closes the reader's connections and forgets the dbs it could not
// reach; the reader can be used again.
func (r *LagReader) Close(ctx context.Context) {
	for _, c := range r.conns {
		c.Close(context.WithoutCancel(ctx))
	}
	r.conns, r.failed = nil, nil
}
