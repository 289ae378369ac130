package replicate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/gobucardo/gobucardo/pkg/capture"
	"github.com/gobucardo/gobucardo/pkg/pg"
)

// Roles of a db in a run.
const (
	RoleSource   = "source"
	RoleTarget   = "target"
	RoleFullcopy = "fullcopy"
)

// DB is one database of the sync.
type DB struct {
	Name       string
	Role       string
	ConnString string // never logged
}

// Relation is a table or sequence to replicate, in order.
type Relation struct {
	Schema, Name string
	Sequence     bool
	KeyColumns   []string // empty: fullcopy targets only
}

// Display is schema.name for messages.
func (r Relation) Display() string { return pg.Display(r.Schema, r.Name) }

// Sync is what one run needs to know of a sync.
type Sync struct {
	Name           string
	DBs            []DB
	Relations      []Relation
	OneTimeCopy    int    // 0 off, 1 copy every table in full, 2 copy tables empty on the target
	CommitEvery    int    // commit the targets after about this many rows; 0: once
	IsolationLevel string // of the source: "repeatable read" (default) or "serializable"
	DeleteMethod   string // how fullcopy empties a target: delete (default), truncate, truncate_cascade
}

// Progress reports what a run is doing.
type Progress struct {
	Table string // schema.name
	Phase string // keys, delete, copy, fullcopy, sequence, commit
	Rows  int64  // rows so far in this phase
	Total int64  // rows expected, when known (else 0)
}

// Options tune a run. The zero value is usable.
type Options struct {
	// Progress, when set, is called from the run's goroutine at each phase
	// and about every ProgressEvery rows during copies.
	Progress func(Progress)
	// ProgressEvery is how often (in time) copy progress is reported; 0: 1s.
	ProgressEvery time.Duration
	// Log receives debug logs; nil discards them.
	Log *zap.Logger
	// Hook, when set, is called at named points of the run: "before-commit"
	// (every target applied, nothing committed) and "targets-committed"
	// (before the watermark advances). Fault tests break things there.
	Hook func(point string)
}

// TableResult is what a run did to one relation.
type TableResult struct {
	Table     string `json:"table"`
	Mode      string `json:"mode"` // delta, fullcopy, delta+fullcopy, sequence, none
	Keys      int64  `json:"keys"` // changed keys read; for a sequence, targets set
	Deletes   int64  `json:"deletes"`
	Inserts   int64  `json:"inserts"`
	Truncated bool   `json:"truncated"`
}

// Result sums up a run. Deletes and Inserts count rows over all targets.
type Result struct {
	Deletes, Inserts, Truncates int64
	Tables                      []TableResult
	Duration                    time.Duration
	OneTimeCopyDone             bool // the run did the sync's onetimecopy
}

// Empty reports whether the run changed nothing.
func (r Result) Empty() bool { return r.Deletes == 0 && r.Inserts == 0 && r.Truncates == 0 }

// ErrBusy means another run of the sync holds its lock. Use errors.Is.
var ErrBusy = errors.New("another run of this sync is in progress")

// sessionParams make text-format COPY identical on every database.
var sessionParams = map[string]string{
	"DateStyle": "ISO, YMD", "IntervalStyle": "postgres", "extra_float_digits": "3", "bytea_output": "hex",
	"TimeZone": "UTC", "client_encoding": "UTF8", "standard_conforming_strings": "on", "statement_timeout": "0",
}

func connect(ctx context.Context, d DB) (*pgx.Conn, error) {
	cfg, err := pg.ParseConfig(d.ConnString)
	if err != nil {
		return nil, fmt.Errorf("db %s: %w", d.Name, err)
	}
	for k, v := range sessionParams {
		cfg.RuntimeParams[k] = v
	}
	conn, err := pg.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to db %s: %w", d.Name, err)
	}
	return conn, nil
}

// node is one open database of a run.
type node struct {
	DB
	conn *pgx.Conn
	tx   pgx.Tx
}

type run struct {
	s       Sync
	opts    Options
	log     *zap.Logger
	src     *node
	targets []*node
	cur     string // the source snapshot of this run
	last    string // the watermark: snapshot of the last run ("" when none)
	rows    int64  // rows written to targets since their last commit
	res     Result
}

// Run performs one run of s.
func Run(ctx context.Context, s Sync, opts Options) (Result, error) {
	start := time.Now()
	r := &run{s: s, opts: opts, log: opts.Log}
	if r.log == nil {
		r.log = zap.NewNop()
	}
	if err := r.open(ctx); err != nil {
		r.close(ctx)
		return Result{}, err
	}
	defer r.close(ctx)
	if err := r.apply(ctx); err != nil {
		return Result{}, err
	}
	r.hook("before-commit")
	if err := r.commit(ctx); err != nil {
		return Result{}, err
	}
	r.res.Duration = time.Since(start)
	return r.res, nil
}

func (r *run) hook(point string) {
	if r.opts.Hook != nil {
		r.opts.Hook(point)
	}
}

func (r *run) progress(p Progress) {
	if r.opts.Progress != nil {
		r.opts.Progress(p)
	}
}

// open connects to every db, begins the source's snapshot and the targets'
// transactions.
func (r *run) open(ctx context.Context) error {
	var sources []DB
	for _, d := range r.s.DBs {
		switch d.Role {
		case RoleSource:
			sources = append(sources, d)
		case RoleTarget, RoleFullcopy:
			r.targets = append(r.targets, &node{DB: d})
		default:
			return fmt.Errorf("db %s: unknown role %q", d.Name, d.Role)
		}
	}
	switch {
	case len(sources) == 0:
		return fmt.Errorf("sync %s has no source", r.s.Name)
	case len(sources) > 1:
		return fmt.Errorf("sync %s has %d sources: runs over several sources are not supported yet", r.s.Name, len(sources))
	}
	r.src = &node{DB: sources[0]}
	g, gctx := errgroup.WithContext(ctx)
	for _, n := range append([]*node{r.src}, r.targets...) {
		n := n
		g.Go(func() error {
			conn, err := connect(gctx, n.DB)
			n.conn = conn
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	iso := pgx.RepeatableRead
	if r.s.IsolationLevel == "serializable" {
		iso = pgx.Serializable
	}
	var err error
	if r.src.tx, err = r.src.conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: iso}); err != nil {
		return fmt.Errorf("begin on source %s: %w", r.src.Name, err)
	}
	var locked bool
	if err := r.src.tx.QueryRow(ctx, "SELECT pg_try_advisory_xact_lock(hashtext('gobucardo sync ' || $1))", r.s.Name).Scan(&locked); err != nil {
		return fmt.Errorf("lock sync %s on %s: %w", r.s.Name, r.src.Name, err)
	}
	if !locked {
		return fmt.Errorf("sync %s: %w", r.s.Name, ErrBusy)
	}
	if err := r.src.tx.QueryRow(ctx, "SELECT pg_current_snapshot()::text").Scan(&r.cur); err != nil {
		return fmt.Errorf("snapshot of %s: %w", r.src.Name, err)
	}
	var hasCapture bool
	if err := r.src.tx.QueryRow(ctx, "SELECT to_regclass('gobucardo.watermark') IS NOT NULL").Scan(&hasCapture); err != nil {
		return err
	}
	if hasCapture {
		err := r.src.tx.QueryRow(ctx, "SELECT snap::text FROM gobucardo.watermark WHERE sync = $1", r.s.Name).Scan(&r.last)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("read watermark of sync %s on %s: %w", r.s.Name, r.src.Name, err)
		}
	}
	for _, t := range r.targets {
		if err := r.beginTarget(ctx, t); err != nil {
			return err
		}
	}
	return nil
}

func (r *run) beginTarget(ctx context.Context, t *node) error {
	var err error
	if t.tx, err = t.conn.Begin(ctx); err != nil {
		return fmt.Errorf("begin on target %s: %w", t.Name, err)
	}
	if _, err := t.tx.Exec(ctx, "SET LOCAL session_replication_role = replica"); err != nil {
		return fmt.Errorf("target %s: cannot set session_replication_role (gobucardo's user must be a superuser, "+
			"or on PostgreSQL 15+ hold GRANT SET ON PARAMETER session_replication_role): %w", t.Name, err)
	}
	return nil
}

func (r *run) close(ctx context.Context) {
	bg := context.WithoutCancel(ctx)
	for _, n := range append([]*node{r.src}, r.targets...) {
		if n == nil || n.conn == nil {
			continue
		}
		if n.tx != nil {
			_ = n.tx.Rollback(bg)
		}
		_ = n.conn.Close(bg)
	}
}

// commit commits the targets, then advances the watermark and commits the
// source. A failure between the two re-applies the same changes next run.
func (r *run) commit(ctx context.Context) error {
	r.progress(Progress{Phase: "commit"})
	for _, t := range r.targets {
		if err := t.tx.Commit(ctx); err != nil {
			return fmt.Errorf("commit on target %s: %w", t.Name, err)
		}
		t.tx = nil
	}
	r.hook("targets-committed")
	if r.last != "" || r.needsWatermark() {
		if _, err := r.src.tx.Exec(ctx, `INSERT INTO gobucardo.watermark (sync, snap, updated) VALUES ($1, $2::pg_snapshot, now())
			ON CONFLICT (sync) DO UPDATE SET snap = excluded.snap, updated = excluded.updated`, r.s.Name, r.cur); err != nil {
			return fmt.Errorf("advance watermark of sync %s on %s: %w", r.s.Name, r.src.Name, err)
		}
	}
	if err := r.src.tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit on source %s: %w", r.src.Name, err)
	}
	r.src.tx = nil
	return nil
}

// needsWatermark: the sync has delta targets and tables with keys.
func (r *run) needsWatermark() bool {
	if !r.hasDeltaTargets() {
		return false
	}
	for _, rel := range r.s.Relations {
		if !rel.Sequence && len(rel.KeyColumns) > 0 {
			return true
		}
	}
	return false
}

func (r *run) hasDeltaTargets() bool {
	for _, t := range r.targets {
		if t.Role == RoleTarget {
			return true
		}
	}
	return false
}

// maybeCommitTargets commits the targets' work so far when commit_every is
// reached, and begins new transactions.
func (r *run) maybeCommitTargets(ctx context.Context) error {
	if r.s.CommitEvery <= 0 || r.rows < int64(r.s.CommitEvery) {
		return nil
	}
	for _, t := range r.targets {
		if err := t.tx.Commit(ctx); err != nil {
			return fmt.Errorf("commit on target %s: %w", t.Name, err)
		}
		t.tx = nil
		if err := r.beginTarget(ctx, t); err != nil {
			return err
		}
	}
	r.log.Debug("committed a piece", zap.Int64("rows", r.rows))
	r.rows = 0
	return nil
}

func (r *run) apply(ctx context.Context) error {
	if r.needsWatermark() && r.last == "" {
		return fmt.Errorf("sync %s has no watermark on source %s: its capture is not installed (run mcp validate %s)",
			r.s.Name, r.src.Name, r.s.Name)
	}
	for _, rel := range r.s.Relations {
		var tr TableResult
		var err error
		if rel.Sequence {
			tr, err = r.sequence(ctx, rel)
		} else {
			tr, err = r.table(ctx, rel)
		}
		if err != nil {
			return err
		}
		r.res.Tables = append(r.res.Tables, tr)
		r.res.Deletes += tr.Deletes
		r.res.Inserts += tr.Inserts
		if tr.Truncated {
			r.res.Truncates++
		}
	}
	r.res.OneTimeCopyDone = r.s.OneTimeCopy != 0
	return nil
}

func (r *run) sequence(ctx context.Context, rel Relation) (TableResult, error) {
	tr := TableResult{Table: rel.Display(), Mode: "sequence"}
	r.progress(Progress{Table: tr.Table, Phase: "sequence"})
	var last int64
	var called bool
	if err := r.src.tx.QueryRow(ctx, "SELECT last_value, is_called FROM "+pg.Ident(rel.Schema, rel.Name)).Scan(&last, &called); err != nil {
		return tr, fmt.Errorf("read sequence %s on %s: %w", tr.Table, r.src.Name, err)
	}
	for _, t := range r.targets {
		var tl int64
		var tc bool
		if err := t.tx.QueryRow(ctx, "SELECT last_value, is_called FROM "+pg.Ident(rel.Schema, rel.Name)).Scan(&tl, &tc); err != nil {
			return tr, fmt.Errorf("read sequence %s on %s: %w", tr.Table, t.Name, err)
		}
		if tl == last && tc == called {
			continue
		}
		if _, err := t.tx.Exec(ctx, "SELECT setval($1::regclass, $2, $3)", pg.Ident(rel.Schema, rel.Name), last, called); err != nil {
			return tr, fmt.Errorf("set sequence %s on %s: %w", tr.Table, t.Name, err)
		}
		tr.Keys++ // targets whose value changed
	}
	return tr, nil
}

// table replicates one table to every target, by delta or in full.
func (r *run) table(ctx context.Context, rel Relation) (TableResult, error) {
	tr := TableResult{Table: rel.Display(), Mode: "none"}
	cols, err := r.columns(ctx, rel)
	if err != nil {
		return tr, err
	}
	truncated := false
	if r.last != "" && len(rel.KeyColumns) > 0 {
		if truncated, err = r.truncatedSince(ctx, rel); err != nil {
			return tr, err
		}
	}
	var full, delta []*node
	for _, t := range r.targets {
		switch {
		case t.Role == RoleFullcopy, truncated, r.s.OneTimeCopy == 1:
			full = append(full, t)
		case r.s.OneTimeCopy == 2:
			var empty bool
			if err := t.tx.QueryRow(ctx, "SELECT NOT EXISTS (SELECT 1 FROM ONLY "+pg.Ident(rel.Schema, rel.Name)+")").Scan(&empty); err != nil {
				return tr, fmt.Errorf("look at %s on %s: %w", tr.Table, t.Name, err)
			}
			if empty {
				full = append(full, t)
			} else {
				delta = append(delta, t)
			}
		default:
			delta = append(delta, t)
		}
	}
	if len(delta) > 0 && len(rel.KeyColumns) == 0 {
		return tr, fmt.Errorf("table %s has no key, so it cannot go to target %s by delta: make that db a fullcopy target", tr.Table, delta[0].Name)
	}
	tr.Truncated = truncated
	if len(full) > 0 {
		tr.Mode = "fullcopy"
		d, n, err := r.fullCopy(ctx, rel, cols, full)
		if err != nil {
			return tr, err
		}
		tr.Deletes += d
		tr.Inserts += n
	}
	if len(delta) > 0 {
		if tr.Mode == "none" {
			tr.Mode = "delta"
		} else {
			tr.Mode = "delta+fullcopy"
		}
		keys, d, n, err := r.deltaCopy(ctx, rel, cols, delta)
		if err != nil {
			return tr, err
		}
		tr.Keys, tr.Deletes, tr.Inserts = keys, tr.Deletes+d, tr.Inserts+n
	}
	return tr, nil
}

// truncatedSince reports whether the source truncated rel since the
// watermark.
func (r *run) truncatedSince(ctx context.Context, rel Relation) (bool, error) {
	var truncated bool
	err := r.src.tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM gobucardo.truncate_log
		WHERE schema_name = $1 AND rel_name = $2
		  AND txid >= pg_snapshot_xmin($3::pg_snapshot) AND NOT pg_visible_in_snapshot(txid, $3::pg_snapshot))`,
		rel.Schema, rel.Name, r.last).Scan(&truncated)
	if err != nil {
		return false, fmt.Errorf("read truncates of %s on %s: %w", rel.Display(), r.src.Name, err)
	}
	return truncated, nil
}

// empty removes every row of rel on t as the sync's deletemethod says.
func (r *run) empty(ctx context.Context, rel Relation, t *node) (int64, error) {
	tbl := pg.Ident(rel.Schema, rel.Name)
	var sql string
	switch r.s.DeleteMethod {
	case "truncate":
		sql = "TRUNCATE ONLY " + tbl
	case "truncate_cascade":
		sql = "TRUNCATE ONLY " + tbl + " CASCADE"
	default:
		sql = "DELETE FROM ONLY " + tbl
	}
	tag, err := t.tx.Exec(ctx, sql)
	if err != nil {
		return 0, fmt.Errorf("empty %s on %s: %w", rel.Display(), t.Name, err)
	}
	return tag.RowsAffected(), nil
}

func (r *run) fullCopy(ctx context.Context, rel Relation, cols *columnSet, targets []*node) (deletes, inserts int64, err error) {
	table := rel.Display()
	r.progress(Progress{Table: table, Phase: "fullcopy"})
	for _, t := range targets {
		n, err := r.empty(ctx, rel, t)
		if err != nil {
			return 0, 0, err
		}
		deletes += n
	}
	var total int64
	if err := r.src.tx.QueryRow(ctx, "SELECT count(*) FROM ONLY "+pg.Ident(rel.Schema, rel.Name)).Scan(&total); err != nil {
		return 0, 0, fmt.Errorf("count %s on %s: %w", table, r.src.Name, err)
	}
	srcSQL := fmt.Sprintf("COPY (SELECT %s FROM ONLY %s) TO STDOUT%s", cols.selectList("t"), pg.Ident(rel.Schema, rel.Name)+" t", cols.format())
	n, err := r.fanOut(ctx, table, "copy", total, srcSQL, targets, cols.copyIn(rel))
	if err != nil {
		return 0, 0, err
	}
	r.rows += n
	return deletes, n, r.maybeCommitTargets(ctx)
}

// deltaCopy applies the keys changed since the watermark: staged once on
// the source, deleted on each target, their current rows copied.
func (r *run) deltaCopy(ctx context.Context, rel Relation, cols *columnSet, targets []*node) (keys, deletes, inserts int64, err error) {
	table := rel.Display()
	r.progress(Progress{Table: table, Phase: "keys"})
	delta := pg.Ident("gobucardo", capture.DeltaName(rel.Schema, rel.Name))
	keyList := identList(rel.KeyColumns, "")
	chunked := r.s.CommitEvery > 0
	rn := ""
	if chunked {
		rn = "row_number() OVER () AS gb_rn, "
	}
	// The index range on txid keeps this fast whatever the statistics say.
	stage := fmt.Sprintf(`CREATE TEMP TABLE gb_keys ON COMMIT DROP AS SELECT %s%s FROM (SELECT DISTINCT %s FROM %s
		WHERE txid >= pg_snapshot_xmin($1::pg_snapshot) AND NOT pg_visible_in_snapshot(txid, $1::pg_snapshot)) d`,
		rn, keyList, keyList, delta)
	if _, err := r.src.tx.Exec(ctx, "DROP TABLE IF EXISTS pg_temp.gb_keys"); err != nil {
		return 0, 0, 0, err
	}
	tag, err := r.src.tx.Exec(ctx, stage, r.last)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("read changed keys of %s on %s: %w", table, r.src.Name, err)
	}
	keys = tag.RowsAffected()
	if keys == 0 {
		return 0, 0, 0, nil
	}
	if chunked {
		if _, err := r.src.tx.Exec(ctx, "CREATE INDEX ON pg_temp.gb_keys (gb_rn)"); err != nil {
			return 0, 0, 0, err
		}
	}
	if _, err := r.src.tx.Exec(ctx, "ANALYZE pg_temp.gb_keys"); err != nil {
		return 0, 0, 0, err
	}
	piece := keys
	if chunked && int64(r.s.CommitEvery) < keys {
		piece = int64(r.s.CommitEvery)
	}
	for lo := int64(0); lo < keys; lo += piece {
		where := ""
		if chunked {
			where = fmt.Sprintf(" WHERE k.gb_rn > %d AND k.gb_rn <= %d", lo, lo+piece)
		}
		d, n, err := r.applyKeys(ctx, rel, cols, targets, where, min(piece, keys-lo))
		if err != nil {
			return 0, 0, 0, err
		}
		deletes += d
		inserts += n
		r.rows += d + n
		if err := r.maybeCommitTargets(ctx); err != nil {
			return 0, 0, 0, err
		}
	}
	return keys, deletes, inserts, nil
}

// applyKeys copies the staged keys (those where selects) to each target,
// deletes them there, and copies their current rows from the source.
func (r *run) applyKeys(ctx context.Context, rel Relation, cols *columnSet, targets []*node, where string, count int64) (deletes, inserts int64, err error) {
	table := rel.Display()
	tbl := pg.Ident(rel.Schema, rel.Name)
	keyList := identList(rel.KeyColumns, "")
	for _, t := range targets {
		stmts := []string{
			"DROP TABLE IF EXISTS pg_temp.gb_keys",
			fmt.Sprintf("CREATE TEMP TABLE gb_keys ON COMMIT DROP AS SELECT %s FROM ONLY %s WITH NO DATA", keyList, tbl),
		}
		for _, s := range stmts {
			if _, err := t.tx.Exec(ctx, s); err != nil {
				return 0, 0, fmt.Errorf("stage keys of %s on %s: %w", table, t.Name, err)
			}
		}
	}
	keyFormat := cols.keyFormat(rel.KeyColumns)
	srcKeys := fmt.Sprintf("COPY (SELECT %s FROM pg_temp.gb_keys k%s) TO STDOUT%s", identList(rel.KeyColumns, "k"), where, keyFormat)
	if _, err := r.fanOut(ctx, table, "keys", count, srcKeys, targets, "COPY pg_temp.gb_keys ("+keyList+") FROM STDIN"+keyFormat); err != nil {
		return 0, 0, err
	}
	r.progress(Progress{Table: table, Phase: "delete", Total: count})
	var join []string
	for _, k := range rel.KeyColumns {
		join = append(join, fmt.Sprintf("t.%s = k.%s", pg.Ident(k), pg.Ident(k)))
	}
	on := strings.Join(join, " AND ")
	for _, t := range targets {
		if count > 1000 {
			if _, err := t.tx.Exec(ctx, "ANALYZE pg_temp.gb_keys"); err != nil {
				return 0, 0, err
			}
		}
		tag, err := t.tx.Exec(ctx, fmt.Sprintf("DELETE FROM ONLY %s t USING pg_temp.gb_keys k WHERE %s", tbl, on))
		if err != nil {
			return 0, 0, fmt.Errorf("delete changed rows of %s on %s: %w", table, t.Name, err)
		}
		deletes += tag.RowsAffected()
	}
	srcRows := fmt.Sprintf("COPY (SELECT %s FROM ONLY %s t JOIN pg_temp.gb_keys k ON %s%s) TO STDOUT%s",
		cols.selectList("t"), tbl, on, where, cols.format())
	n, err := r.fanOut(ctx, table, "copy", count, srcRows, targets, cols.copyIn(rel))
	if err != nil {
		return 0, 0, err
	}
	return deletes, n, nil
}

// fanOut streams one COPY TO of the source into a COPY FROM on each target
// at once, reporting progress; it returns the rows inserted over all
// targets. Nothing is held in memory but the copy buffers.
func (r *run) fanOut(ctx context.Context, table, phase string, total int64, srcSQL string, targets []*node, dstSQL string) (int64, error) {
	counter := newRowCounter(strings.Contains(srcSQL, "FORMAT binary"))
	writers := []io.Writer{counter}
	readers := make([]*io.PipeReader, len(targets))
	pipes := make([]*io.PipeWriter, len(targets))
	for i := range targets {
		readers[i], pipes[i] = io.Pipe()
		writers = append(writers, pipes[i])
	}
	g, gctx := errgroup.WithContext(ctx)
	counts := make([]int64, len(targets))
	for i, t := range targets {
		i, t := i, t
		g.Go(func() error {
			tag, err := t.conn.PgConn().CopyFrom(gctx, readers[i], dstSQL)
			readers[i].CloseWithError(errTargetDone)
			if err != nil {
				return fmt.Errorf("copy %s into %s: %w", table, t.Name, err)
			}
			counts[i] = tag.RowsAffected()
			return nil
		})
	}
	done := make(chan struct{})
	go func() {
		every := r.opts.ProgressEvery
		if every <= 0 {
			every = time.Second
		}
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				r.progress(Progress{Table: table, Phase: phase, Rows: counter.Rows(), Total: total})
			}
		}
	}()
	_, srcErr := r.src.conn.PgConn().CopyTo(gctx, io.MultiWriter(writers...), srcSQL)
	for _, p := range pipes {
		if srcErr != nil {
			p.CloseWithError(srcErr)
		} else {
			p.Close()
		}
	}
	err := g.Wait()
	close(done)
	if srcErr != nil && !errors.Is(srcErr, errTargetDone) {
		if err != nil {
			return 0, err // the target's error explains the broken pipe
		}
		return 0, fmt.Errorf("copy %s from %s: %w", table, r.src.Name, srcErr)
	}
	if err != nil {
		return 0, err
	}
	var sum int64
	for _, c := range counts {
		sum += c
	}
	r.progress(Progress{Table: table, Phase: phase, Rows: counter.Rows(), Total: total})
	return sum, nil
}

var errTargetDone = errors.New("target stopped reading")

func identList(cols []string, alias string) string {
	out := make([]string, len(cols))
	for i, c := range cols {
		if alias != "" {
			out[i] = alias + "." + pg.Ident(c)
		} else {
			out[i] = pg.Ident(c)
		}
	}
	return strings.Join(out, ", ")
}
