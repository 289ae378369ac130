package metrics

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/gobucardo/gobucardo/pkg/catalog"
)

// SyncLag is how far one target of a sync is behind, as the Lag hook of
// Catalog reports it.
type SyncLag struct {
	Sync string
	// DB is the db the figures are about (a target for the lag).
	DB string
	// LagSeconds is the age of the oldest change not yet applied; 0 when
	// the db is in step.
	LagSeconds float64
	// PendingRows is how many changed rows wait to be applied (exact or
	// estimated, as the hook computes it).
	PendingRows float64
}

// SourceUp says whether the Lag hook could read what a sync has not
// consumed yet on one of its source dbs.
type SourceUp struct {
	Sync, DB string
	Up       bool
}

// Lags is what the Lag hook of Catalog reports.
type Lags struct {
	// Targets are the lag and pending rows of every target of the syncs
	// whose sources could all be read.
	Targets []SyncLag
	// Sources are every source db of every sync the hook looked at, up or
	// not: a sync with a source down has no Targets (its lag is unknown).
	Sources []SourceUp
}

// RunDurationBuckets are the upper bounds, in seconds, of
// gobucardo_sync_run_duration_seconds.
var RunDurationBuckets = []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600}

// The outcomes of a run (gobucardo.syncrun's states but running).
var outcomes = []string{catalog.RunGood, catalog.RunEmpty, catalog.RunBad, catalog.RunCancelled}

// gapGrace is how long an id that syncrun skipped is looked for again: a run
// whose StartRun transaction had not committed when it was passed, or one
// that was rolled back or forgotten (deleted).
const gapGrace = time.Minute

// gapWindow bounds how many of the newest ids of the first scrape are
// watched as possible gaps (older gaps are runs forgotten long ago).
const gapWindow = 10000

// Catalog is a prometheus.Collector of the per-sync figures the catalog
// holds: runs by outcome, rows deleted and inserted, conflicts by strategy,
// run durations, last runs, parked rows, whether a sync is active, paused or
// running, and the calls its runs made to its plugins. Set the fields, then register it; it opens its own connection to
// the main database at the first scrape and keeps it (Close closes it).
//
// The counters are the catalog's totals: the first scrape reads the whole
// history once; every later one reads only the runs recorded or ended since
// the previous scrape. When the catalog cannot be read, the figures last
// read are exposed and gobucardo_catalog_up is 0.
type Catalog struct {
	// DSN reaches the main database; never logged.
	DSN string
	// Timeout bounds the catalog queries of one scrape; 0: 5s.
	Timeout time.Duration
	// Lag, when set, reports the lag and pending rows of every sync and
	// db, as gobucardo_sync_lag_seconds and gobucardo_sync_pending_rows,
	// and whether each source could be read, as gobucardo_sync_source_up,
	// reading the catalog through q (the collector's connection); nil:
	// those metrics are not exposed.
	Lag func(ctx context.Context, q catalog.Querier) (Lags, error)
	// Log receives the reasons a scrape failed; nil: discarded.
	Log *zap.Logger

	mu      sync.Mutex
	conn    catalog.Conn
	top     int64               // every syncrun id up to top was read once
	pending map[int64]time.Time // ids not counted yet (running, or not visible yet), since when
	syncs   map[string]*syncFigures
	plugins []catalog.PluginCallTotals // as last read, whole
}

// syncFigures are the totals of one sync.
type syncFigures struct {
	runs      map[string]float64 // by outcome
	deleted   float64
	inserted  float64
	truncated float64
	conflicts map[string]float64 // by strategy
	buckets   []uint64           // not cumulative; the last is +Inf
	count     uint64
	sum       float64
	lastGood  time.Time
	lastEnd   time.Time

	// As of the last successful scrape:
	present   bool // in gobucardo.sync
	active    bool
	paused    bool
	checktime float64 // seconds; 0: none
	running   bool
	parked    float64
}

func newSyncFigures() *syncFigures {
	return &syncFigures{runs: map[string]float64{}, conflicts: map[string]float64{},
		buckets: make([]uint64, len(RunDurationBuckets)+1)}
}

var (
	labelSync = []string{"sync"}

	descCatalogUp = prometheus.NewDesc("gobucardo_catalog_up",
		"Whether the last scrape read the catalog (1) or not (0): the other gobucardo_sync_* figures are then the last read.", nil, nil)
	descScrape = prometheus.NewDesc("gobucardo_catalog_scrape_duration_seconds",
		"How long the last scrape of the catalog took.", nil, nil)
	descRuns = prometheus.NewDesc("gobucardo_sync_runs_total",
		"Runs of the sync that ended, by outcome (good, empty, bad, cancelled), as gobucardo.syncrun records them.", []string{"sync", "outcome"}, nil)
	descDeleted = prometheus.NewDesc("gobucardo_sync_rows_deleted_total",
		"Rows the runs of the sync deleted on their targets.", labelSync, nil)
	descInserted = prometheus.NewDesc("gobucardo_sync_rows_inserted_total",
		"Rows the runs of the sync copied into their targets.", labelSync, nil)
	descTruncated = prometheus.NewDesc("gobucardo_sync_truncates_total",
		"Truncates the runs of the sync replicated.", labelSync, nil)
	descConflicts = prometheus.NewDesc("gobucardo_sync_conflicts_total",
		"Conflicting rows the committed runs of the sync resolved, by strategy, as gobucardo.conflict_log records them.", []string{"sync", "strategy"}, nil)
	descDuration = prometheus.NewDesc("gobucardo_sync_run_duration_seconds",
		"How long the runs of the sync took, whatever their outcome.", labelSync, nil)
	descLastGood = prometheus.NewDesc("gobucardo_sync_last_good_run_timestamp_seconds",
		"When the last good or empty run of the sync ended (Unix time).", labelSync, nil)
	descLastRun = prometheus.NewDesc("gobucardo_sync_last_run_timestamp_seconds",
		"When the last run of the sync ended, whatever its outcome (Unix time).", labelSync, nil)
	descParked = prometheus.NewDesc("gobucardo_sync_parked_rows",
		"Rows of the sync an exception handler parked that wait for mcp parked retry.", labelSync, nil)
	descActive = prometheus.NewDesc("gobucardo_sync_active",
		"Whether the sync is active (1) or inactive (0).", labelSync, nil)
	descPaused = prometheus.NewDesc("gobucardo_sync_paused",
		"Whether the sync is paused (1) or not (0).", labelSync, nil)
	descRunning = prometheus.NewDesc("gobucardo_sync_running",
		"Whether a run of the sync is in progress (1) or not (0).", labelSync, nil)
	descChecktime = prometheus.NewDesc("gobucardo_sync_checktime_seconds",
		"The sync's checktime: it runs at least this often (absent when it has none).", labelSync, nil)
	descLag = prometheus.NewDesc("gobucardo_sync_lag_seconds",
		"Age of the oldest change of the sync not yet applied to the db (0: in step).", []string{"sync", "db"}, nil)
	descPending = prometheus.NewDesc("gobucardo_sync_pending_rows",
		"Changed rows of the sync waiting to be applied to the db.", []string{"sync", "db"}, nil)
	descSourceUp = prometheus.NewDesc("gobucardo_sync_source_up",
		"Whether the last scrape could read what the sync has not consumed yet on the source db (1) or not (0: the sync's lag and pending rows are then absent).",
		[]string{"sync", "db"}, nil)
	descPluginCalls = prometheus.NewDesc("gobucardo_plugin_calls_total",
		"Calls the runs of the sync made to the plugin of the customcode (code), by outcome: ok, error (it answered an error), timeout, crash (its process died), start_failed.",
		[]string{"sync", "code", "outcome"}, nil)
	descPluginSeconds = prometheus.NewDesc("gobucardo_plugin_call_seconds_total",
		"Seconds the calls the runs of the sync made to the plugin of the customcode (code) took, whatever their outcome.",
		[]string{"sync", "code"}, nil)
)

// Describe sends every descriptor Catalog may expose.
func (c *Catalog) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCatalogUp, descScrape, descRuns, descDeleted, descInserted, descTruncated,
		descConflicts, descDuration, descLastGood, descLastRun, descParked, descActive, descPaused, descRunning,
		descChecktime, descLag, descPending, descSourceUp, descPluginCalls, descPluginSeconds} {
		ch <- d
	}
}

// Collect reads what changed in the catalog since the last scrape and sends
// every figure.
func (c *Catalog) Collect(ch chan<- prometheus.Metric) {
	timeout := c.Timeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c.mu.Lock()
	defer c.mu.Unlock()
	started := time.Now()
	up := 1.0
	if err := c.read(ctx); err != nil {
		up = 0
		c.conn.Failed(err)
		c.logf("cannot read the catalog for the metrics", err)
	}
	ch <- prometheus.MustNewConstMetric(descCatalogUp, prometheus.GaugeValue, up)
	c.send(ch)
	if c.Lag != nil {
		var lags Lags
		conn, err := c.conn.Get(ctx)
		if err == nil {
			lags, err = c.Lag(ctx, conn)
		}
		if err != nil {
			c.logf("cannot compute the lag for the metrics", err)
		}
		for _, l := range lags.Targets {
			ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, l.LagSeconds, l.Sync, l.DB)
			ch <- prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, l.PendingRows, l.Sync, l.DB)
		}
		for _, s := range lags.Sources {
			ch <- prometheus.MustNewConstMetric(descSourceUp, prometheus.GaugeValue, b2f(s.Up), s.Sync, s.DB)
		}
	}
	ch <- prometheus.MustNewConstMetric(descScrape, prometheus.GaugeValue, time.Since(started).Seconds())
}

// Close closes the collector's connection.
func (c *Catalog) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.conn.Close()
}

func (c *Catalog) logf(msg string, err error) {
	if c.Log != nil {
		c.Log.Warn(msg, zap.Error(err))
	}
}

func (c *Catalog) send(ch chan<- prometheus.Metric) {
	names := make([]string, 0, len(c.syncs))
	for name := range c.syncs {
		names = append(names, name)
	}
	sort.Strings(names)
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	for _, name := range names {
		s := c.syncs[name]
		for _, o := range outcomes {
			counter(descRuns, s.runs[o], name, o)
		}
		counter(descDeleted, s.deleted, name)
		counter(descInserted, s.inserted, name)
		counter(descTruncated, s.truncated, name)
		for strategy, n := range s.conflicts {
			counter(descConflicts, n, name, strategy)
		}
		cum := map[float64]uint64{}
		var n uint64
		for i, b := range RunDurationBuckets {
			n += s.buckets[i]
			cum[b] = n
		}
		ch <- prometheus.MustNewConstHistogram(descDuration, s.count, s.sum, cum, name)
		if !s.lastGood.IsZero() {
			gauge(descLastGood, float64(s.lastGood.UnixNano())/1e9, name)
		}
		if !s.lastEnd.IsZero() {
			gauge(descLastRun, float64(s.lastEnd.UnixNano())/1e9, name)
		}
		if !s.present {
			continue // a removed sync keeps its history, not its state
		}
		gauge(descActive, b2f(s.active), name)
		gauge(descPaused, b2f(s.paused), name)
		gauge(descRunning, b2f(s.running), name)
		gauge(descParked, s.parked, name)
		if s.checktime > 0 {
			gauge(descChecktime, s.checktime, name)
		}
	}
	sendPluginCalls(ch, c.plugins)
}

// sendPluginCalls sends the plugin call totals (sorted by sync and code).
func sendPluginCalls(ch chan<- prometheus.Metric, totals []catalog.PluginCallTotals) {
	for i := 0; i < len(totals); {
		t := totals[i]
		var seconds float64
		for ; i < len(totals) && totals[i].Sync == t.Sync && totals[i].Code == t.Code; i++ {
			ch <- prometheus.MustNewConstMetric(descPluginCalls, prometheus.CounterValue, float64(totals[i].Calls), t.Sync, t.Code, totals[i].Outcome)
			seconds += totals[i].Seconds
		}
		ch <- prometheus.MustNewConstMetric(descPluginSeconds, prometheus.CounterValue, seconds, t.Sync, t.Code)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (c *Catalog) sync(name string) *syncFigures {
	s := c.syncs[name]
	if s == nil {
		s = newSyncFigures()
		c.syncs[name] = s
	}
	return s
}

// read brings the figures up to date in one read-only snapshot of the
// catalog; on error nothing is changed.
func (c *Catalog) read(ctx context.Context) error {
	c.conn.DSN = c.DSN
	conn, err := c.conn.Get(ctx)
	if err != nil {
		return err
	}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	next, err := readNew(ctx, tx, c.top, c.pending)
	if err != nil {
		return err
	}
	reset := next.reset
	if reset {
		// The history went back (a catalog installed again): count anew.
		if next, err = readNew(ctx, tx, 0, nil); err != nil {
			return err
		}
	}
	state, err := readSyncs(ctx, tx)
	if err != nil {
		return err
	}
	plugins, err := catalog.LoadPluginCalls(ctx, tx)
	if err != nil {
		return err
	}
	// Everything read: apply.
	if c.syncs == nil || reset {
		c.syncs = map[string]*syncFigures{}
	}
	for _, a := range next.runs {
		s := c.sync(a.sync)
		s.runs[a.outcome] += float64(a.count)
		s.deleted += a.deleted
		s.inserted += a.inserted
		s.truncated += a.truncated
		s.buckets[a.bucket] += uint64(a.count)
		s.count += uint64(a.count)
		s.sum += a.seconds
		if a.ended.After(s.lastEnd) {
			s.lastEnd = a.ended
		}
		if (a.outcome == catalog.RunGood || a.outcome == catalog.RunEmpty) && a.ended.After(s.lastGood) {
			s.lastGood = a.ended
		}
	}
	for _, k := range next.conflicts {
		c.sync(k.sync).conflicts[k.strategy] += float64(k.count)
	}
	c.top, c.pending, c.plugins = next.top, next.pending, plugins
	for _, s := range c.syncs {
		s.present, s.running, s.parked = false, false, 0
	}
	for _, st := range state {
		s := c.sync(st.name)
		s.present, s.active, s.paused, s.checktime, s.parked = true, st.active, st.paused, st.checktime, st.parked
	}
	for _, name := range next.running {
		c.sync(name).running = true
	}
	return nil
}

// runAgg is the sum of the runs of one sync, outcome and duration bucket.
type runAgg struct {
	sync, outcome                         string
	bucket                                int
	count                                 int64
	seconds, deleted, inserted, truncated float64
	ended                                 time.Time
}

type conflictAgg struct {
	sync, strategy string
	count          int64
}

// newRuns is what readNew found.
type newRuns struct {
	reset     bool // syncrun's highest id went back
	top       int64
	runs      []runAgg
	conflicts []conflictAgg
	pending   map[int64]time.Time
	running   []string // syncs with a run in progress
}

// doneRuns selects the runs counted by this scrape: those ended with an id
// above the last scrape's top ($1) up to this one's ($2), and those pending
// ($3) that have ended since.
const doneRuns = `WITH done AS (
	SELECT id, sync_name, state, started, ended, deletes, inserts, truncates, conflicts,
		extract(epoch FROM ended - started)::float8 AS seconds
	FROM gobucardo.syncrun
	WHERE ((id > $1 AND id <= $2) OR id = ANY($3::bigint[])) AND state <> 'running')
`

// bucketCase is the index in RunDurationBuckets of the bucket of a run
// that took seconds (len: +Inf), as SQL: a CASE over constants, much
// cheaper per row than a subquery over an array.
var bucketCase = func() string {
	var b strings.Builder
	b.WriteString("CASE")
	for i, le := range RunDurationBuckets {
		fmt.Fprintf(&b, " WHEN seconds <= %s THEN %d", strconv.FormatFloat(le, 'g', -1, 64), i)
	}
	fmt.Fprintf(&b, " ELSE %d END", len(RunDurationBuckets))
	return b.String()
}()

// readNew reads the runs recorded or ended since the scrape that read up to
// id top, pending being the ids it could not count yet.
func readNew(ctx context.Context, tx pgx.Tx, top int64, pending map[int64]time.Time) (newRuns, error) {
	var out newRuns
	if err := tx.QueryRow(ctx, "SELECT coalesce(max(id), 0) FROM gobucardo.syncrun").Scan(&out.top); err != nil {
		return out, fmt.Errorf("read syncrun: %w", err)
	}
	if out.top < top {
		out.reset = true
		return out, nil
	}
	ids := make([]int64, 0, len(pending))
	for id := range pending {
		ids = append(ids, id)
	}
	rows, err := tx.Query(ctx, doneRuns+`
	SELECT sync_name, state, `+bucketCase+`, count(*),
		sum(seconds), sum(deletes), sum(inserts), sum(truncates), max(ended)
	FROM done GROUP BY 1, 2, 3`, top, out.top, ids)
	if err != nil {
		return out, fmt.Errorf("read syncrun: %w", err)
	}
	out.runs, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (runAgg, error) {
		var a runAgg
		err := r.Scan(&a.sync, &a.outcome, &a.bucket, &a.count, &a.seconds, &a.deleted, &a.inserted, &a.truncated, &a.ended)
		return a, err
	})
	if err != nil {
		return out, fmt.Errorf("read syncrun: %w", err)
	}
	// A committed run's conflicts lie between its start and end in
	// conflict_log's (sync_name, resolved_at) index; a failed run's were
	// deleted with it.
	rows, err = tx.Query(ctx, doneRuns+`
	SELECT c.sync_name, c.strategy, count(*)
	FROM done d JOIN gobucardo.conflict_log c ON c.sync_name = d.sync_name AND c.resolved_at BETWEEN d.started AND d.ended
		AND c.syncrun_id = d.id
	WHERE d.conflicts > 0 AND d.state IN ('good', 'empty')
	GROUP BY 1, 2`, top, out.top, ids)
	if err != nil {
		return out, fmt.Errorf("read conflict_log: %w", err)
	}
	out.conflicts, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (conflictAgg, error) {
		var a conflictAgg
		err := r.Scan(&a.sync, &a.strategy, &a.count)
		return a, err
	})
	if err != nil {
		return out, fmt.Errorf("read conflict_log: %w", err)
	}
	out.pending, out.running, err = stillPending(ctx, tx, top, out.top, ids, pending)
	return out, err
}

// stillPending returns the ids a later scrape must look at again: runs in
// progress, and ids in (top, newTop] or pending that this snapshot does not
// show (a run being recorded, or one deleted: kept for gapGrace).
func stillPending(ctx context.Context, tx pgx.Tx, top, newTop int64, ids []int64, pending map[int64]time.Time) (map[int64]time.Time, []string, error) {
	lo := max(top, newTop-gapWindow)
	rows, err := tx.Query(ctx, `SELECT id, sync_name, state = 'running' FROM gobucardo.syncrun
		WHERE (id > $1 AND id <= $2) OR id = ANY($3::bigint[]) OR (state = 'running' AND id <= $2)`, lo, newTop, ids)
	if err != nil {
		return nil, nil, fmt.Errorf("read syncrun: %w", err)
	}
	now := time.Now()
	out := map[int64]time.Time{}
	seen := map[int64]bool{}
	syncs := map[string]bool{}
	var id int64
	var name string
	var running bool
	if _, err := pgx.ForEachRow(rows, []any{&id, &name, &running}, func() error {
		seen[id] = true
		if running {
			syncs[name] = true
			since, ok := pending[id]
			if !ok {
				since = now
			}
			out[id] = since
		}
		return nil
	}); err != nil {
		return nil, nil, fmt.Errorf("read syncrun: %w", err)
	}
	for id := lo + 1; id <= newTop; id++ {
		if !seen[id] {
			out[id] = now
		}
	}
	for id, since := range pending {
		if !seen[id] && now.Sub(since) < gapGrace {
			out[id] = since
		}
	}
	names := make([]string, 0, len(syncs))
	for s := range syncs {
		names = append(names, s)
	}
	return out, names, nil
}

// syncState is a sync's current state in the catalog.
type syncState struct {
	name           string
	active, paused bool
	checktime      float64
	parked         float64
}

func readSyncs(ctx context.Context, tx pgx.Tx) ([]syncState, error) {
	rows, err := tx.Query(ctx, `SELECT s.name, s.status = 'active', coalesce(st.paused, false),
			coalesce(extract(epoch FROM s.checktime)::float8, 0),
			coalesce((SELECT count(*) FROM gobucardo.parked p WHERE p.sync_name = s.name), 0)::float8
		FROM gobucardo.sync s LEFT JOIN gobucardo.sync_state st ON st.sync = s.name`)
	if err != nil {
		return nil, fmt.Errorf("read the syncs: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (syncState, error) {
		var s syncState
		err := r.Scan(&s.name, &s.active, &s.paused, &s.checktime, &s.parked)
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("read the syncs: %w", err)
	}
	return out, nil
}
