package replicate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/gobucardo/gobucardo/pkg/capture"
	"github.com/gobucardo/gobucardo/pkg/catalog"
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
	// MakeDelta records the changes a run applies here as deltas of this
	// db (with the sync as their origin), so that other syncs reading it
	// carry them on, and kicks those syncs.
	MakeDelta bool
	// Inactive (the db's status=inactive): a target is left out of the run
	// and catches up once active again; a source holds the whole sync.
	Inactive bool
	// Hold, for a target, leaves it out of the run for that reason (a
	// controller that could not reach it, and tries it on its own); it
	// catches up later as an inactive one does.
	Hold string
}

// leftOut is a target a run leaves out, and why.
type leftOut struct {
	DB
	reason string
}

// TargetsLostError is a run that failed because the connection to targets
// broke (a server gone, a network cut). Use errors.As; Unwrap gives the
// run's error.
type TargetsLostError struct {
	DBs []string
	Err error
}

func (e *TargetsLostError) Error() string { return e.Err.Error() }
func (e *TargetsLostError) Unwrap() error { return e.Err }

// Relation is a table or sequence to replicate, in order.
type Relation struct {
	Schema, Name string
	Sequence     bool
	KeyColumns   []string // empty: fullcopy targets only
	// ConflictStrategy overrides the sync's for this table ("" = the sync's).
	ConflictStrategy string
	// MakeDelta overrides the dbs' makedelta for this table (nil = as the db says).
	MakeDelta *bool
	// Lenient is strict_checking=false (the table's, else the sync's): a
	// column of the source that a target lacks is left out of the copy
	// (and reported in the run's result) instead of failing the run.
	Lenient bool
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
	// ConflictStrategy resolves keys changed on several sources: bucardo_latest
	// (default), bucardo_latest_all_tables, bucardo_source, bucardo_skip,
	// bucardo_random, bucardo_abort, custom, or an ordered list of db names
	// "B A C" (the names are catalog's Strategy constants).
	ConflictStrategy string
	// CustomCode is the sync's plugins, in the order they run; the run calls
	// them through Options.Handlers, which a plugin host builds from them.
	CustomCode []CustomCode
}

// CustomCode is a plugin attached to the sync (Table empty) or to one of its
// tables, at one hook point (WhenRun), as the catalog has it.
type CustomCode = catalog.AttachedCode

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
	// Conflicts, when set, receives every conflict of a table once it is
	// resolved; an error fails the run.
	Conflicts func([]Conflict) error
	// Handlers are the plugins the run calls (conflicts, exceptions, hooks).
	Handlers Handlers
	// Parked, when set, records rows an exception handler set aside, before
	// the run commits; an error fails the run. Without it, a handler's
	// skip_rows fails the run: nothing is set aside unrecorded.
	Parked func([]Parked) error
	// Attempt is the try of this run, 1 the first time (RunRetrying counts).
	Attempt int
	// Sessions, when set, keeps the run's database sessions for the next
	// runs of the sync (see Sessions); nil: each run connects afresh.
	Sessions *Sessions
	// CatchUpPiece bounds what a run catches up of a target that missed
	// runs: about this many changes per table and source (the rest in the
	// next runs), so that one long outage does not make one long run that
	// holds up the other targets. 0: DefaultCatchUpPiece.
	CatchUpPiece int
}

// DefaultCatchUpPiece is Options.CatchUpPiece's default.
const DefaultCatchUpPiece = 20000

// TableResult is what a run did to one relation.
type TableResult struct {
	Table     string `json:"table"`
	Mode      string `json:"mode"` // delta, fullcopy, delta+fullcopy, sequence, none
	Keys      int64  `json:"keys"` // changed keys read; for a sequence, targets set
	Deletes   int64  `json:"deletes"`
	Inserts   int64  `json:"inserts"`
	Truncated bool   `json:"truncated"`
	Conflicts int64  `json:"conflicts"`
}

// Result sums up a run. Deletes and Inserts count rows over all targets.
type Result struct {
	Deletes, Inserts, Truncates, Conflicts int64
	Tables                                 []TableResult
	Duration                               time.Duration
	OneTimeCopyDone                        bool  // the run did the sync's onetimecopy
	Parked                                 int64 // rows an exception handler set aside
	// Skipped are the targets left out of the run (inactive, or not
	// reachable): each keeps its own watermark and catches up later.
	Skipped []Skipped
	// CaughtUp are the targets that were behind and are in step again.
	CaughtUp []string
	// OmittedColumns are the columns strict_checking=false left out of the
	// copies into (and from) the dbs that lack them: "column note of
	// public.t (not on B)".
	OmittedColumns []string
}

// Skipped is a target left out of a run, and why.
type Skipped struct {
	DB     string `json:"db"`
	Reason string `json:"reason"`
}

// Empty reports whether the run changed nothing.
func (r Result) Empty() bool { return r.Deletes == 0 && r.Inserts == 0 && r.Truncates == 0 }

// ErrBusy means another run of the sync holds its lock. Use errors.Is.
var ErrBusy = errors.New("another run of this sync is in progress")

// sessionParams make text-format COPY identical on every database, and
// give a run's joins of changed keys (staged keys against the table on a
// source, DELETE ... USING them on a target) the memory to hash a large
// backlog in one pass: with the default 4MB a 1M-key run spills in batches
// and takes 1.45x as long (make bench, BulkUpdate 1M: 11.3 s against 7.7 s).
var sessionParams = map[string]string{
	"DateStyle": "ISO, YMD", "IntervalStyle": "postgres", "extra_float_digits": "3", "bytea_output": "hex",
	"TimeZone": "UTC", "client_encoding": "UTF8", "standard_conforming_strings": "on", "statement_timeout": "0",
	"work_mem": "64MB",
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

// node is a connection that writes: a target, or (with several sources) a
// source receiving the other sources' changes.
type node struct {
	DB
	conn  *pgx.Conn
	temps map[string]bool // the session's temporary tables (see keysTable)
	tx    pgx.Tx
	// source: the db also takes the application's writes, which may race
	// ours; rows go through a staging table and a keyed ON CONFLICT DO
	// NOTHING, so that a row written there meanwhile is kept (it is a change
	// of that db's own, which the next run carries on) instead of failing
	// the run.
	source bool
	// behind: a target that missed runs (it was down or inactive). Each
	// source keeps its place (source.behind), and this run also applies
	// the keys changed since, before the run's own (see deltaCopy).
	behind bool
}

// source is a source's reading side: one snapshot for the whole run.
type source struct {
	DB
	index  int // among the sources, in dbgroup order
	conn   *pgx.Conn
	temps  map[string]bool // the session's temporary tables (see keysTable)
	tx     pgx.Tx
	cur    string // this run's snapshot
	last   string // the watermark: the snapshot of the last run ("" when none)
	writer *node  // with several sources: where the others' changes go
	// behind is, per target that missed runs, its own watermark here.
	behind map[string]string
	// upTo is, per target that missed runs, the snapshot up to which this
	// run catches it up: the watermark, or a piece's end (see catchUpTo).
	upTo map[string]string
	// targetMarks: the source has gobucardo.target_watermark.
	targetMarks bool
}

func (s *source) endpoint() endpoint { return endpoint{name: s.Name, conn: s.conn} }

type run struct {
	s       Sync
	opts    Options
	log     *zap.Logger
	sources []*source
	targets []*node   // role target or fullcopy, that the run reaches
	skipped []leftOut // targets left out: inactive or unreachable
	writers []*node   // targets, then the sources' writers
	rows    int64     // rows written since the writers' last commit
	latest  []any     // per source, its latest change over all tables (bucardo_latest_all_tables)
	res     Result
}

// Run performs one run of s.
func Run(ctx context.Context, s Sync, opts Options) (Result, error) {
	start := time.Now()
	r := &run{s: s, opts: opts, log: opts.Log}
	if r.log == nil {
		r.log = zap.NewNop()
	}
	if err := r.hooks(ctx, BeforeSync, nil); err != nil {
		return Result{}, err
	}
	err := r.run(ctx)
	lost := r.lostTargets(err)
	r.close(ctx, err == nil)
	if len(lost) > 0 {
		err = &TargetsLostError{DBs: lost, Err: err}
	}
	if err != nil {
		_ = r.hooks(ctx, AfterSync, r.summary(err))
		return Result{}, err
	}
	r.res.Duration = time.Since(start)
	_ = r.hooks(ctx, AfterSync, r.summary(nil))
	return r.res, nil
}

func (r *run) run(ctx context.Context) error {
	if err := r.open(ctx); err != nil {
		return err
	}
	if err := r.hooks(ctx, BeforeTxn, nil); err != nil {
		return err
	}
	if err := r.apply(ctx); err != nil {
		return err
	}
	if err := r.hooks(ctx, AfterTxn, r.summary(nil)); err != nil {
		return err
	}
	r.hook("before-commit")
	return r.commit(ctx)
}

// lostTargets are, after the run failed, the targets whose connection
// broke (pgx closes a connection that failed; the run closes its own only
// after this).
func (r *run) lostTargets(err error) []string {
	if err == nil {
		return nil
	}
	var lost []string
	for _, t := range r.targets {
		if t.conn != nil && t.conn.IsClosed() {
			lost = append(lost, t.Name)
		}
	}
	return lost
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

func (r *run) multi() bool { return len(r.sources) > 1 }

// open connects to every db, takes each source's snapshot and begins the
// writers' transactions. A target that is inactive, or cannot be reached,
// is left out (r.skipped): the others go on without it. A source that is
// inactive or down holds the whole run.
func (r *run) open(ctx context.Context) error {
	var targets []*node
	for _, d := range r.s.DBs {
		switch {
		case d.Role == RoleSource && d.Inactive:
			return fmt.Errorf("sync %s waits: its source db %s is inactive (mcp update db %s status=active)", r.s.Name, d.Name, d.Name)
		case d.Role == RoleSource:
			r.sources = append(r.sources, &source{DB: d, index: len(r.sources)})
		case d.Role == RoleTarget || d.Role == RoleFullcopy:
			targets = append(targets, &node{DB: d})
		default:
			return fmt.Errorf("db %s: unknown role %q", d.Name, d.Role)
		}
	}
	if len(r.sources) == 0 {
		return fmt.Errorf("sync %s has no source", r.s.Name)
	}
	if r.multi() {
		for _, s := range r.sources {
			s.writer = &node{DB: s.DB, source: true}
		}
	}
	// Targets are reached on their own: one that fails is skipped.
	var wg sync.WaitGroup
	reached := make([]error, len(targets))
	for i, t := range targets {
		if t.Inactive || t.Hold != "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var k kept
			k, t.tx, reached[i] = r.session(ctx, t.DB, true, pgx.TxOptions{})
			t.conn, t.temps = k.conn, k.temps
		}()
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, s := range r.sources {
		g.Go(func() error {
			k, tx, err := r.session(gctx, s.DB, false, r.sourceTxOptions())
			s.conn, s.temps, s.tx = k.conn, k.temps, tx
			return err
		})
		if s.writer != nil {
			g.Go(func() error {
				k, tx, err := r.session(gctx, s.DB, true, pgx.TxOptions{})
				s.writer.conn, s.writer.temps, s.writer.tx = k.conn, k.temps, tx
				return err
			})
		}
	}
	srcErr := g.Wait()
	wg.Wait()
	for i, t := range targets {
		switch {
		case t.Inactive:
			r.skipped = append(r.skipped, leftOut{t.DB, "inactive"})
		case t.Hold != "":
			r.skipped = append(r.skipped, leftOut{t.DB, t.Hold})
		case reached[i] != nil:
			r.skipped = append(r.skipped, leftOut{t.DB, "unreachable: " + reached[i].Error()})
		default:
			r.targets = append(r.targets, t)
		}
	}
	for _, d := range r.skipped {
		r.res.Skipped = append(r.res.Skipped, Skipped{DB: d.Name, Reason: d.reason})
		r.log.Info("target left out of the run; it catches up later", zap.String("db", d.Name), zap.String("reason", d.reason))
	}
	r.writers = append(r.writers, r.targets...)
	for _, s := range r.sources {
		if s.writer != nil {
			r.writers = append(r.writers, s.writer)
		}
	}
	if srcErr != nil {
		return srcErr
	}
	for _, n := range r.writers {
		if err := r.beginWriter(ctx, n, false); err != nil {
			return err
		}
	}
	// A source's writer takes its locks right after the source's reading
	// session did: see lockTables.
	for _, s := range r.sources {
		if err := r.beginSource(ctx, s); err != nil {
			return err
		}
	}
	for _, t := range r.targets {
		if err := r.lockTables(ctx, t.tx, t.Name, "ROW EXCLUSIVE"); err != nil {
			return err
		}
		for _, s := range r.sources {
			if t.Role == RoleTarget && s.behind[t.Name] != "" {
				t.behind = true
			}
		}
	}
	if r.needsWatermark() {
		for _, d := range r.skipped {
			for _, s := range r.sources {
				if d.Role == RoleTarget && !s.targetMarks {
					return fmt.Errorf("target %s is left out (%s), but the capture on source %s is of an older version that cannot keep its place: run mcp validate %s",
						d.Name, d.reason, s.Name, r.s.Name)
				}
			}
		}
	}
	return nil
}

// catchUpTo sets s.upTo[t]: how far this run catches up target t on s.
// That is the sync's watermark, unless more than a piece (CatchUpPiece) of
// changes of one table lie between t's place and it: then the piece ends
// at a transaction id X, the snapshot "X:X:" (every transaction before X
// is done: X is below the watermark's xmin), and t keeps a place there.
// Keys changed since X, which t takes from this run's own pass on, are
// applied again by the next pieces: applying is idempotent.
func (r *run) catchUpTo(ctx context.Context, s *source, t *node) error {
	wm := s.behind[t.Name]
	if wm == "" || s.last == "" {
		return nil
	}
	s.upTo[t.Name] = s.last
	piece := r.opts.CatchUpPiece
	if piece <= 0 {
		piece = DefaultCatchUpPiece
	}
	// A pg_snapshot's text is "xmin:xmax:xip,...".
	xmin, _, _ := strings.Cut(s.last, ":")
	end, err := strconv.ParseInt(xmin, 10, 64)
	if err != nil {
		return fmt.Errorf("the watermark of sync %s on %s is not a snapshot: %q", r.s.Name, s.Name, s.last)
	}
	cut := end
	for _, rel := range r.s.Relations {
		if rel.Sequence || len(rel.KeyColumns) == 0 {
			continue
		}
		var x int64
		err := s.tx.QueryRow(ctx, `SELECT txid::text::bigint + 1 FROM `+pg.Ident("gobucardo", capture.DeltaName(rel.Schema, rel.Name))+`
			WHERE txid >= pg_snapshot_xmin($1::pg_snapshot) AND NOT pg_visible_in_snapshot(txid, $1::pg_snapshot)
			  AND pg_visible_in_snapshot(txid, $2::pg_snapshot)
			ORDER BY txid OFFSET $3 LIMIT 1`, wm, s.last, piece).Scan(&x)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
		case err != nil:
			return fmt.Errorf("measure what target %s has to catch up of %s on %s: %w", t.Name, rel.Display(), s.Name, err)
		case x < cut:
			cut = x
		}
	}
	if cut < end {
		s.upTo[t.Name] = fmt.Sprintf("%d:%d:", cut, cut)
		r.log.Info("catching up a target in pieces", zap.String("db", t.Name), zap.String("source", s.Name), zap.Int64("up_to_txid", cut))
	}
	return nil
}

// stillBehind: this run caught t up only in part, on some source.
func (r *run) stillBehind(t *node) bool {
	for _, s := range r.sources {
		if up := s.upTo[t.Name]; up != "" && up != s.last {
			return true
		}
	}
	return false
}

// sourceTxOptions is how a source's reading transaction begins.
func (r *run) sourceTxOptions() pgx.TxOptions {
	if r.s.IsolationLevel == "serializable" {
		return pgx.TxOptions{IsoLevel: pgx.Serializable}
	}
	return pgx.TxOptions{IsoLevel: pgx.RepeatableRead}
}

// beginSource takes s's lock of the sync, its table locks and its
// snapshot, in the transaction open began (its snapshot is taken by its
// first statement, here, after the writers began theirs).
func (r *run) beginSource(ctx context.Context, s *source) error {
	var locked bool
	if err := s.tx.QueryRow(ctx, "SELECT pg_try_advisory_xact_lock(hashtext('gobucardo sync ' || $1))", r.s.Name).Scan(&locked); err != nil {
		return fmt.Errorf("lock sync %s on %s: %w", r.s.Name, s.Name, err)
	}
	if !locked {
		return fmt.Errorf("sync %s: %w", r.s.Name, ErrBusy)
	}
	if err := r.lockTables(ctx, s.tx, s.Name, "ACCESS SHARE"); err != nil {
		return err
	}
	if s.writer != nil {
		if err := r.lockTables(ctx, s.writer.tx, s.Name, "ROW EXCLUSIVE"); err != nil {
			return err
		}
	}
	var hasCapture bool
	if err := s.tx.QueryRow(ctx, `SELECT pg_current_snapshot()::text,
			to_regclass('gobucardo.watermark') IS NOT NULL, to_regclass('gobucardo.target_watermark') IS NOT NULL`).
		Scan(&s.cur, &hasCapture, &s.targetMarks); err != nil {
		return fmt.Errorf("snapshot of %s: %w", s.Name, err)
	}
	if hasCapture {
		err := s.tx.QueryRow(ctx, "SELECT snap::text FROM gobucardo.watermark WHERE sync = $1", r.s.Name).Scan(&s.last)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("read watermark of sync %s on %s: %w", r.s.Name, s.Name, err)
		}
		if err := s.readBehind(ctx, r.s.Name); err != nil {
			return err
		}
	}
	return nil
}

// readBehind reads the watermarks of the sync's targets that are behind.
func (s *source) readBehind(ctx context.Context, sync string) error {
	s.behind, s.upTo = map[string]string{}, map[string]string{}
	if !s.targetMarks {
		return nil
	}
	rows, err := s.tx.Query(ctx, "SELECT target, snap::text FROM gobucardo.target_watermark WHERE sync = $1", sync)
	if err != nil {
		return fmt.Errorf("read the watermarks of the targets of sync %s on %s: %w", sync, s.Name, err)
	}
	defer rows.Close()
	for rows.Next() {
		var target, snap string
		if err := rows.Scan(&target, &snap); err != nil {
			return err
		}
		s.behind[target] = snap
	}
	return rows.Err()
}

// beginWriter begins t's transaction (unless open began it already);
// with lock, it also takes its table locks (open takes them itself, in an
// order of its own).
func (r *run) beginWriter(ctx context.Context, t *node, lock bool) error {
	if t.tx == nil {
		var err error
		if t.tx, err = t.conn.Begin(ctx); err != nil {
			return fmt.Errorf("begin on %s: %w", t.Name, err)
		}
	}
	if _, err := t.tx.Exec(ctx, "SET LOCAL session_replication_role = replica"); err != nil {
		return fmt.Errorf("db %s: cannot set session_replication_role (gobucardo's user must be a superuser, "+
			"or on PostgreSQL 15+ hold GRANT SET ON PARAMETER session_replication_role): %w", t.Name, err)
	}
	if !lock {
		return nil
	}
	return r.lockTables(ctx, t.tx, t.Name, "ROW EXCLUSIVE")
}

// lockWait bounds how long a run waits for its table locks when it begins
// (and so how long an application's TRUNCATE may wait for a run that
// cannot begin).
const lockWait = "1s"

// lockTables takes, at the start of a transaction of the run on db, the
// lock its statements will need on every table of the sync (partitions
// and inheritance children with them). Taken later, one statement at a
// time, such a lock could queue behind an application's TRUNCATE or ALTER
// TABLE that itself waits for another session of this run: a deadlock
// across sessions that the server cannot see, and the run and the
// application would wait forever. Taken first, with lock_timeout, the run
// either holds them all or fails within lockWait and is retried. On a
// source that is also written to, its two sessions lock one right after
// the other, so that such a statement rarely comes between them.
func (r *run) lockTables(ctx context.Context, tx pgx.Tx, db, mode string) error {
	var tables []string
	for _, rel := range r.s.Relations {
		if !rel.Sequence {
			tables = append(tables, pg.Ident(rel.Schema, rel.Name))
		}
	}
	if len(tables) == 0 {
		return nil
	}
	// One round trip: without arguments, pgx sends the three statements as one query.
	sql := fmt.Sprintf("SET LOCAL lock_timeout = '%s'; LOCK TABLE %s IN %s MODE; SET LOCAL lock_timeout TO DEFAULT",
		lockWait, strings.Join(tables, ", "), mode)
	if _, err := tx.Exec(ctx, sql); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42P01" {
			return fmt.Errorf("db %s: %s: create it there, or run mcp validate %s", db, pgErr.Message, r.s.Name)
		}
		return fmt.Errorf("lock the tables of sync %s on db %s: %w", r.s.Name, db, err)
	}
	return nil
}

// close ends the run's transactions and closes its sessions; with
// Options.Sessions, those of a run that succeeded are kept instead.
func (r *run) close(ctx context.Context, ok bool) {
	bg := context.WithoutCancel(ctx)
	keep := map[sessionKey]kept{}
	end := func(d DB, writer bool, conn *pgx.Conn, temps map[string]bool, tx pgx.Tx) {
		if tx != nil {
			_ = tx.Rollback(bg)
		}
		switch {
		case conn == nil:
		case ok && r.opts.Sessions != nil && !conn.IsClosed() && conn.PgConn().TxStatus() == 'I':
			keep[sessionKey{db: d.Name, dsn: d.ConnString, writer: writer}] = kept{conn: conn, temps: temps}
		default:
			_ = conn.Close(bg)
		}
	}
	for _, s := range r.sources {
		end(s.DB, false, s.conn, s.temps, s.tx)
	}
	for _, n := range r.writers {
		end(n.DB, true, n.conn, n.temps, n.tx)
	}
	if r.opts.Sessions != nil {
		r.opts.Sessions.keepOnly(bg, keep)
	}
}

// commit commits every writer, then advances each source's watermark and
// commits it. A failure between the two re-applies the same changes next
// run, which converges: applying is idempotent.
func (r *run) commit(ctx context.Context) error {
	r.progress(Progress{Phase: "commit"})
	for _, t := range r.writers {
		if err := t.tx.Commit(ctx); err != nil {
			return fmt.Errorf("commit on %s: %w", t.Name, err)
		}
		t.tx = nil
	}
	r.hook("targets-committed")
	for _, s := range r.sources {
		if s.last != "" || r.needsWatermark() {
			if err := r.keepTargetPlaces(ctx, s); err != nil {
				return err
			}
			if _, err := s.tx.Exec(ctx, `INSERT INTO gobucardo.watermark (sync, snap, updated) VALUES ($1, $2::pg_snapshot, now())
				ON CONFLICT (sync) DO UPDATE SET snap = excluded.snap, updated = excluded.updated`, r.s.Name, s.cur); err != nil {
				return fmt.Errorf("advance watermark of sync %s on %s: %w", r.s.Name, s.Name, err)
			}
		}
		if err := s.tx.Commit(ctx); err != nil {
			return fmt.Errorf("commit on source %s: %w", s.Name, err)
		}
		s.tx = nil
	}
	for _, t := range r.targets {
		if t.behind && !r.stillBehind(t) {
			r.res.CaughtUp = append(r.res.CaughtUp, t.Name)
		}
	}
	return nil
}

// keepTargetPlaces records, on source s, where each target left out of
// this run stopped: the watermark it had (the sync's, before this run;
// or its own, if it was behind already), so that it catches up from there
// once back; and forgets the place of each target this run caught up.
// It runs in s's transaction, which advances the sync's watermark: a run
// that dies before then changes neither.
func (r *run) keepTargetPlaces(ctx context.Context, s *source) error {
	for _, d := range r.skipped {
		if d.Role != RoleTarget || s.last == "" {
			continue
		}
		if _, err := s.tx.Exec(ctx, `INSERT INTO gobucardo.target_watermark (sync, target, snap, reason) VALUES ($1, $2, $3::pg_snapshot, $4)
			ON CONFLICT (sync, target) DO UPDATE SET reason = excluded.reason`, r.s.Name, d.Name, s.last, d.reason); err != nil {
			return fmt.Errorf("keep the place of target %s of sync %s on %s: %w", d.Name, r.s.Name, s.Name, err)
		}
	}
	// A target caught up in part moves its place to the piece's end.
	keep := []string{} // not nil: = ANY(NULL) would keep every row
	for _, t := range r.targets {
		if up := s.upTo[t.Name]; up != "" && up != s.last {
			keep = append(keep, t.Name)
			if _, err := s.tx.Exec(ctx, `UPDATE gobucardo.target_watermark SET snap = $3::pg_snapshot, reason = 'catching up'
				WHERE sync = $1 AND target = $2`, r.s.Name, t.Name, up); err != nil {
				return fmt.Errorf("move the place of target %s of sync %s on %s: %w", t.Name, r.s.Name, s.Name, err)
			}
		}
	}
	// Targets caught up, and those no longer targets of the sync (their
	// place would hold back the purge for ever).
	for _, d := range r.skipped {
		if d.Role == RoleTarget {
			keep = append(keep, d.Name)
		}
	}
	gone := false
	for name := range s.behind {
		if !slices.Contains(keep, name) {
			gone = true
		}
	}
	if gone {
		if _, err := s.tx.Exec(ctx, "DELETE FROM gobucardo.target_watermark WHERE sync = $1 AND NOT (target = ANY($2))", r.s.Name, keep); err != nil {
			return fmt.Errorf("forget the places of the targets of sync %s on %s that are in step: %w", r.s.Name, s.Name, err)
		}
	}
	return nil
}

// needsWatermark: the sync replicates by delta (targets, or several
// sources) and has tables with keys.
func (r *run) needsWatermark() bool {
	if !r.hasDeltaTargets() && !r.multi() {
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

// maybeCommitWriters commits the writers' work so far when commit_every is
// reached, and begins new transactions.
func (r *run) maybeCommitWriters(ctx context.Context) error {
	if r.s.CommitEvery <= 0 || r.rows < int64(r.s.CommitEvery) {
		return nil
	}
	for _, t := range r.writers {
		if err := t.tx.Commit(ctx); err != nil {
			return fmt.Errorf("commit on %s: %w", t.Name, err)
		}
		t.tx = nil
		if err := r.beginWriter(ctx, t, true); err != nil {
			return err
		}
	}
	r.log.Debug("committed a piece", zap.Int64("rows", r.rows))
	r.rows = 0
	return nil
}

func (r *run) apply(ctx context.Context) error {
	if r.needsWatermark() {
		for _, s := range r.sources {
			if s.last == "" {
				return fmt.Errorf("sync %s has no watermark on source %s: its capture is not installed (run mcp validate %s)",
					r.s.Name, s.Name, r.s.Name)
			}
		}
	}
	for _, t := range r.targets {
		if !t.behind {
			continue
		}
		for _, s := range r.sources {
			if err := r.catchUpTo(ctx, s, t); err != nil {
				return err
			}
		}
	}
	if r.multi() && r.strategy(Relation{}) == catalog.StrategyLatestAllTables {
		if err := r.latestAll(ctx); err != nil {
			return err
		}
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
		r.res.Conflicts += tr.Conflicts
		if tr.Truncated {
			r.res.Truncates++
		}
	}
	r.res.OneTimeCopyDone = r.s.OneTimeCopy != 0
	return nil
}
