package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap/zaptest"

	"github.com/gobucardo/gobucardo/pkg/catalog"
	"github.com/gobucardo/gobucardo/pkg/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// twoSyncs is a catalog with syncs s (checktime 30s) and t, both A -> B.
const twoSyncs = `
	INSERT INTO gobucardo.db (name, dbname) VALUES ('A', 'a'), ('B', 'b');
	INSERT INTO gobucardo.dbgroup (name) VALUES ('g');
	INSERT INTO gobucardo.dbgroup_member (dbgroup, db, role, position) VALUES ('g', 'A', 'source', 0), ('g', 'B', 'target', 1);
	INSERT INTO gobucardo.relation (db, schema_name, rel_name, kind, key_columns, key_types, key_kind, key_index)
		VALUES ('A', 'public', 't', 'table', '{id}', '{integer}', 'primary key', 't_pkey');
	INSERT INTO gobucardo.relgroup (name, db) VALUES ('r', 'A');
	INSERT INTO gobucardo.relgroup_member (relgroup, relation_id, db, position)
		SELECT 'r', id, 'A', 0 FROM gobucardo.relation;
	INSERT INTO gobucardo.sync (name, relgroup, dbgroup, checktime) VALUES ('s', 'r', 'g', '30 seconds');
	INSERT INTO gobucardo.sync (name, relgroup, dbgroup) VALUES ('t', 'r', 'g');`

// mainDB returns the name of a fresh main database with the catalog and
// twoSyncs, and a connection to it.
func mainDB(t *testing.T, c *pgtest.Cluster) (string, *pgx.Conn) {
	t.Helper()
	db := c.NewDB(t)
	conn := c.Connect(t, db)
	ctx := context.Background()
	if _, err := catalog.Install(ctx, conn); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, twoSyncs); err != nil {
		t.Fatal(err)
	}
	return db, conn
}

// run records one run of sync from start to end, as a controller does,
// logging conflicts under strategy before it ends.
func run(t *testing.T, conn *pgx.Conn, sync string, end catalog.RunEnd, conflicts int, strategy string) int64 {
	t.Helper()
	ctx := context.Background()
	id, err := catalog.StartRun(ctx, conn, sync, 1, "test", "running")
	if err != nil {
		t.Fatal(err)
	}
	var cs []catalog.ConflictRecord
	for i := range conflicts {
		key, _ := json.Marshal(map[string]int{"id": i})
		cs = append(cs, catalog.ConflictRecord{Schema: "public", Name: "t", Key: key, Strategy: strategy, Winner: "A"})
	}
	if err := catalog.LogConflicts(ctx, conn, id, sync, cs); err != nil {
		t.Fatal(err)
	}
	if end.State != "" {
		if err := catalog.FinishRun(ctx, conn, sync, id, end); err != nil {
			t.Fatal(err)
		}
	}
	return id
}

// scrape collects c once and returns its metrics by name.
func scrape(t *testing.T, c prometheus.Collector) map[string]*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// value returns the value of the series of name whose labels include
// labels (name=value pairs), and whether there is one.
func value(mfs map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	mf := mfs[name]
	if mf == nil {
		return 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue next
			}
		}
		switch {
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue(), true
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue(), true
		case m.GetHistogram() != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

func want(t *testing.T, mfs map[string]*dto.MetricFamily, v float64, name string, labels ...string) {
	t.Helper()
	got, ok := value(mfs, name, labels...)
	if !ok {
		t.Errorf("%s%v: no such series", name, labels)
		return
	}
	if got != v {
		t.Errorf("%s%v = %v, want %v", name, labels, got, v)
	}
}

func good(deletes, inserts, conflicts int64) catalog.RunEnd {
	return catalog.RunEnd{State: catalog.RunGood, Status: "Complete", Counts: catalog.RunCounts{Deletes: deletes, Inserts: inserts, Conflicts: conflicts}}
}

// TestCatalogCollector: the collector's figures are the catalog's totals,
// first read whole, then moved by the runs recorded or ended since.
func TestCatalogCollector(t *testing.T) {
	c := pgtest.New(t)
	db, conn := mainDB(t, c)
	ctx := context.Background()

	// History before the MCP started: read whole at the first scrape.
	run(t, conn, "s", good(2, 3, 2), 2, "bucardo_latest")
	run(t, conn, "s", catalog.RunEnd{State: catalog.RunEmpty, Status: "Complete"}, 0, "")
	coll := &Catalog{DSN: c.DSN(db), Log: zaptest.NewLogger(t)}
	t.Cleanup(coll.Close)
	expected := `
# HELP gobucardo_sync_runs_total Runs of the sync that ended, by outcome (good, empty, bad, cancelled), as gobucardo.syncrun records them.
# TYPE gobucardo_sync_runs_total counter
gobucardo_sync_runs_total{outcome="bad",sync="s"} 0
gobucardo_sync_runs_total{outcome="cancelled",sync="s"} 0
gobucardo_sync_runs_total{outcome="empty",sync="s"} 1
gobucardo_sync_runs_total{outcome="good",sync="s"} 1
gobucardo_sync_runs_total{outcome="bad",sync="t"} 0
gobucardo_sync_runs_total{outcome="cancelled",sync="t"} 0
gobucardo_sync_runs_total{outcome="empty",sync="t"} 0
gobucardo_sync_runs_total{outcome="good",sync="t"} 0
`
	if err := testutil.CollectAndCompare(coll, strings.NewReader(expected), "gobucardo_sync_runs_total"); err != nil {
		t.Fatal(err)
	}
	m := scrape(t, coll)
	want(t, m, 1, "gobucardo_catalog_up")
	want(t, m, 2, "gobucardo_sync_rows_deleted_total", "sync", "s")
	want(t, m, 3, "gobucardo_sync_rows_inserted_total", "sync", "s")
	want(t, m, 2, "gobucardo_sync_conflicts_total", "sync", "s", "strategy", "bucardo_latest")
	want(t, m, 2, "gobucardo_sync_run_duration_seconds", "sync", "s")
	want(t, m, 30, "gobucardo_sync_checktime_seconds", "sync", "s")
	want(t, m, 1, "gobucardo_sync_active", "sync", "t")
	want(t, m, 0, "gobucardo_sync_running", "sync", "s")
	if _, ok := value(m, "gobucardo_sync_checktime_seconds", "sync", "t"); ok {
		t.Error("sync t has no checktime, but the metric has one")
	}
	if _, ok := value(m, "gobucardo_sync_last_good_run_timestamp_seconds", "sync", "s"); !ok {
		t.Error("no last good run of s")
	}
	if _, ok := value(m, "gobucardo_sync_lag_seconds"); ok {
		t.Error("lag exposed without a Lag hook")
	}

	// A run in progress is not counted until it ends; a failed run counts
	// as bad and its conflicts, deleted with it, do not count.
	id := run(t, conn, "s", catalog.RunEnd{}, 5, "bucardo_source")
	m = scrape(t, coll)
	want(t, m, 1, "gobucardo_sync_running", "sync", "s")
	want(t, m, 1, "gobucardo_sync_runs_total", "sync", "s", "outcome", "good")
	if err := catalog.FinishRun(ctx, conn, "s", id, catalog.RunEnd{State: catalog.RunBad, Status: "Failed: x",
		Counts: catalog.RunCounts{Conflicts: 5}}); err != nil {
		t.Fatal(err)
	}
	// A forgotten run is not counted.
	run(t, conn, "t", catalog.RunEnd{State: catalog.RunEmpty, Forget: true}, 0, "")
	m = scrape(t, coll)
	want(t, m, 0, "gobucardo_sync_running", "sync", "s")
	want(t, m, 1, "gobucardo_sync_runs_total", "sync", "s", "outcome", "bad")
	want(t, m, 0, "gobucardo_sync_runs_total", "sync", "t", "outcome", "empty")
	if _, ok := value(m, "gobucardo_sync_conflicts_total", "strategy", "bucardo_source"); ok {
		t.Error("conflicts of a failed run counted")
	}
	want(t, m, 3, "gobucardo_sync_run_duration_seconds", "sync", "s")
	for _, mm := range m["gobucardo_sync_run_duration_seconds"].GetMetric() {
		h := mm.GetHistogram()
		if h.GetSampleCount() == 0 {
			continue // sync t
		}
		last := h.GetBucket()[len(h.GetBucket())-1]
		if last.GetUpperBound() != 3600 || last.GetCumulativeCount() != h.GetSampleCount() || h.GetSampleSum() <= 0 {
			t.Errorf("run durations of a test run: %v", h)
		}
	}

	// A run whose record was not yet committed when a later one was read
	// is counted once it ends.
	late, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var lateID int64
	if err := late.QueryRow(ctx, "INSERT INTO gobucardo.syncrun (sync, sync_name) VALUES ('t', 't') RETURNING id").Scan(&lateID); err != nil {
		t.Fatal(err)
	}
	other := c.Connect(t, db)
	run(t, other, "s", good(1, 1, 0), 0, "")
	m = scrape(t, coll)
	want(t, m, 2, "gobucardo_sync_runs_total", "sync", "s", "outcome", "good")
	if err := late.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := catalog.EndRun(ctx, conn, lateID, catalog.RunGood, "Complete", catalog.RunCounts{Inserts: 7}); err != nil {
		t.Fatal(err)
	}
	m = scrape(t, coll)
	want(t, m, 1, "gobucardo_sync_runs_total", "sync", "t", "outcome", "good")
	want(t, m, 7, "gobucardo_sync_rows_inserted_total", "sync", "t")
	want(t, m, 2, "gobucardo_sync_runs_total", "sync", "s", "outcome", "good") // nothing counted twice

	// Parked rows and pause are the catalog's state now.
	if _, err := conn.Exec(ctx, `INSERT INTO gobucardo.parked (sync_name, schema_name, rel_name, source_db, target_db, key, error)
		VALUES ('s', 'public', 't', 'A', 'B', '{"id": 1}', 'x'), ('s', 'public', 't', 'A', 'B', '{"id": 2}', 'x')`); err != nil {
		t.Fatal(err)
	}
	if err := catalog.Pause(ctx, conn, "t", "test"); err != nil {
		t.Fatal(err)
	}
	m = scrape(t, coll)
	want(t, m, 2, "gobucardo_sync_parked_rows", "sync", "s")
	want(t, m, 0, "gobucardo_sync_parked_rows", "sync", "t")
	want(t, m, 1, "gobucardo_sync_paused", "sync", "t")
	want(t, m, 0, "gobucardo_sync_paused", "sync", "s")

	// The Lag hook's figures are exposed as they are; its error leaves
	// the rest alone.
	coll.Lag = func(context.Context, catalog.Querier) (Lags, error) {
		return Lags{Targets: []SyncLag{{Sync: "s", DB: "B", LagSeconds: 4.5, PendingRows: 12}},
			Sources: []SourceUp{{Sync: "s", DB: "A", Up: true}, {Sync: "t", DB: "A"}}}, nil
	}
	m = scrape(t, coll)
	want(t, m, 4.5, "gobucardo_sync_lag_seconds", "sync", "s", "db", "B")
	want(t, m, 12, "gobucardo_sync_pending_rows", "sync", "s", "db", "B")
	want(t, m, 1, "gobucardo_sync_source_up", "sync", "s", "db", "A")
	want(t, m, 0, "gobucardo_sync_source_up", "sync", "t", "db", "A")
	coll.Lag = func(context.Context, catalog.Querier) (Lags, error) { return Lags{}, errors.New("no lag today") }
	m = scrape(t, coll)
	want(t, m, 1, "gobucardo_catalog_up")
	want(t, m, 2, "gobucardo_sync_runs_total", "sync", "s", "outcome", "good")

	// Plugin calls: every run's end adds its calls to the sync's totals,
	// whatever its outcome, also a forgotten run's; seconds are summed over
	// the outcomes of a customcode.
	run(t, conn, "s", catalog.RunEnd{State: catalog.RunGood, Status: "Complete", PluginCalls: []catalog.PluginCalls{
		{Code: "merge", Outcome: catalog.PluginCallOK, Calls: 3, Seconds: 0.5},
		{Code: "merge", Outcome: catalog.PluginCallTimeout, Calls: 1, Seconds: 2},
	}}, 0, "")
	run(t, conn, "s", catalog.RunEnd{State: catalog.RunBad, Status: "Failed: plugin", PluginCalls: []catalog.PluginCalls{
		{Code: "merge", Outcome: catalog.PluginCallCrash, Calls: 1, Seconds: 0.25},
		{Code: "audit", Outcome: catalog.PluginCallStartFailed, Calls: 1, Seconds: 0.125},
	}}, 0, "")
	if err := catalog.Resume(ctx, conn, "t"); err != nil {
		t.Fatal(err)
	}
	run(t, conn, "t", catalog.RunEnd{State: catalog.RunEmpty, Forget: true, PluginCalls: []catalog.PluginCalls{
		{Code: "merge", Outcome: catalog.PluginCallOK, Calls: 2, Seconds: 1},
	}}, 0, "")
	m = scrape(t, coll)
	want(t, m, 3, "gobucardo_plugin_calls_total", "sync", "s", "code", "merge", "outcome", "ok")
	want(t, m, 1, "gobucardo_plugin_calls_total", "sync", "s", "code", "merge", "outcome", "timeout")
	want(t, m, 1, "gobucardo_plugin_calls_total", "sync", "s", "code", "merge", "outcome", "crash")
	want(t, m, 1, "gobucardo_plugin_calls_total", "sync", "s", "code", "audit", "outcome", "start_failed")
	want(t, m, 2, "gobucardo_plugin_calls_total", "sync", "t", "code", "merge", "outcome", "ok")
	want(t, m, 2.75, "gobucardo_plugin_call_seconds_total", "sync", "s", "code", "merge")
	want(t, m, 0.125, "gobucardo_plugin_call_seconds_total", "sync", "s", "code", "audit")
	want(t, m, 1, "gobucardo_plugin_call_seconds_total", "sync", "t", "code", "merge")
	run(t, conn, "s", catalog.RunEnd{State: catalog.RunGood, Status: "Complete", PluginCalls: []catalog.PluginCalls{
		{Code: "merge", Outcome: catalog.PluginCallOK, Calls: 4, Seconds: 0.25},
	}}, 0, "")
	m = scrape(t, coll)
	want(t, m, 7, "gobucardo_plugin_calls_total", "sync", "s", "code", "merge", "outcome", "ok")
	want(t, m, 3, "gobucardo_plugin_call_seconds_total", "sync", "s", "code", "merge")

	// The main database gone: the last figures stay, up says 0.
	c.Stop(t)
	m = scrape(t, coll)
	want(t, m, 0, "gobucardo_catalog_up")
	want(t, m, 4, "gobucardo_sync_runs_total", "sync", "s", "outcome", "good")
	want(t, m, 7, "gobucardo_plugin_calls_total", "sync", "s", "code", "merge", "outcome", "ok")
	c.Start(t)
	m = scrape(t, coll)
	want(t, m, 1, "gobucardo_catalog_up")
	want(t, m, 4, "gobucardo_sync_runs_total", "sync", "s", "outcome", "good")
	want(t, m, 7, "gobucardo_plugin_calls_total", "sync", "s", "code", "merge", "outcome", "ok")
}
