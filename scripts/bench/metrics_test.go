package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gobucardo/gobucardo/pkg/catalog"
	"github.com/gobucardo/gobucardo/pkg/metrics"
	"github.com/gobucardo/gobucardo/pkg/pgtest"
)

// Sizes of the metrics benchmark.
const (
	metricsSyncs        = 50
	metricsTables       = 500
	defaultMetricsRuns  = 200000
	metricsScrapes      = 20
	metricsParkedPerRun = 20 // parked rows per sync
)

// metricsResult is what BenchmarkMetricsScrape measured.
type metricsResult struct {
	syncs, tables, runs, conflicts int
	first                          time.Duration   // the first scrape, which reads the whole history
	steady                         []time.Duration // later scrapes, each after one more run of every sync
	fullAggregate                  time.Duration   // one GROUP BY over all of syncrun, for reference
	bytes                          int
}

// BenchmarkMetricsScrape measures GET /metrics of the MCP's handler
// (pkg/metrics: the catalog collector, the MCP's own counters, the process
// and Go collectors) over a catalog of 50 syncs and 500 tables with
// BENCH_METRICS_RUNS (default 200000) runs in gobucardo.syncrun, a tenth of
// them with 5 conflicts, parked rows, and the plugin call totals of two
// customcodes per sync: the first scrape, which reads the
// whole history, and 20 later ones, each after one more run of every sync.
// The figures exposed must match the catalog.
func BenchmarkMetricsScrape(b *testing.B) {
	runs := mustEnvInt(b, "BENCH_METRICS_RUNS", defaultMetricsRuns)
	c := pgtest.New(b)
	db := c.NewDB(b)
	conn := c.Connect(b, db)
	ctx := context.Background()
	if _, err := catalog.Install(ctx, conn); err != nil {
		b.Fatal(err)
	}
	progressf(b, "catalog of %d syncs, %d tables, %d runs", metricsSyncs, metricsTables, runs)
	setup := fmt.Sprintf(`
		INSERT INTO gobucardo.db (name, dbname) VALUES ('A', 'a'), ('B', 'b');
		INSERT INTO gobucardo.dbgroup (name) VALUES ('g');
		INSERT INTO gobucardo.dbgroup_member (dbgroup, db, role, position) VALUES ('g', 'A', 'source', 0), ('g', 'B', 'target', 1);
		INSERT INTO gobucardo.relation (db, schema_name, rel_name, kind, key_columns, key_types, key_kind, key_index)
			SELECT 'A', 'public', 't' || g, 'table', '{id}', '{integer}', 'primary key', 't' || g || '_pkey'
			FROM generate_series(1, %[2]d) g;
		INSERT INTO gobucardo.relgroup (name, db) SELECT 'r' || g, 'A' FROM generate_series(1, %[1]d) g;
		INSERT INTO gobucardo.relgroup_member (relgroup, relation_id, db, position)
			SELECT 'r' || ((n - 1) %% %[1]d + 1), id, 'A', (n - 1) / %[1]d
			FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM gobucardo.relation) r;
		INSERT INTO gobucardo.sync (name, relgroup, dbgroup, checktime)
			SELECT 's' || g, 'r' || g, 'g', '1 minute' FROM generate_series(1, %[1]d) g;
		INSERT INTO gobucardo.syncrun (sync, sync_name, started, ended, state, deletes, inserts, conflicts)
			SELECT 's' || (g %% %[1]d + 1), 's' || (g %% %[1]d + 1), now() - (%[3]d - g) * interval '1 second',
				now() - (%[3]d - g) * interval '1 second' + interval '50 ms',
				CASE WHEN g %% 20 = 0 THEN 'bad' WHEN g %% 3 = 0 THEN 'empty' ELSE 'good' END,
				g %% 7, g %% 11, CASE WHEN g %% 10 = 1 THEN 5 ELSE 0 END
			FROM generate_series(1, %[3]d) g;
		INSERT INTO gobucardo.conflict_log (syncrun_id, sync_name, schema_name, rel_name, key, strategy, winner, resolved_at)
			SELECT r.id, r.sync_name, 'public', 't1', jsonb_build_object('id', k), 'bucardo_latest', 'A', r.started + interval '10 ms'
			FROM gobucardo.syncrun r, generate_series(1, 5) k WHERE r.conflicts > 0;
		INSERT INTO gobucardo.parked (sync_name, schema_name, rel_name, source_db, target_db, key, error)
			SELECT 's' || s, 'public', 't1', 'A', 'B', jsonb_build_object('id', k), 'x'
			FROM generate_series(1, %[1]d) s, generate_series(1, %[4]d) k;
		INSERT INTO gobucardo.plugin_calls (sync_name, code, outcome, calls, seconds)
			SELECT 's' || s, 'code' || c, o, 1000, 1.5
			FROM generate_series(1, %[1]d) s, generate_series(1, 2) c,
				unnest('{ok,error,timeout,crash,start_failed}'::text[]) o;
		ANALYZE;`, metricsSyncs, metricsTables, runs, metricsParkedPerRun)
	if _, err := conn.Exec(ctx, setup); err != nil {
		b.Fatal(err)
	}
	res := metricsResult{syncs: metricsSyncs, tables: metricsTables, runs: runs}
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM gobucardo.conflict_log").Scan(&res.conflicts); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if _, err := conn.Exec(ctx, `SELECT sync_name, state, count(*), sum(deletes), sum(inserts), max(ended)
		FROM gobucardo.syncrun GROUP BY 1, 2`); err != nil {
		b.Fatal(err)
	}
	res.fullAggregate = time.Since(start)

	coll := &metrics.Catalog{DSN: c.DSN(db), Timeout: time.Minute}
	defer coll.Close()
	srv := httptest.NewServer(metrics.Handler(metrics.NewRegistry(append(metrics.NewDaemon().Collectors(), coll)...),
		func(context.Context) error { return nil }))
	defer srv.Close()
	scrape := func() (time.Duration, string) {
		start := time.Now()
		resp, err := http.Get(srv.URL + "/metrics")
		if err != nil {
			b.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
		}
		return time.Since(start), string(body)
	}
	b.ResetTimer()
	var body string
	res.first, body = scrape()
	res.bytes = len(body)
	for range metricsScrapes {
		if _, err := conn.Exec(ctx, fmt.Sprintf(`INSERT INTO gobucardo.syncrun (sync, sync_name, started, ended, state, inserts)
			SELECT 's' || g, 's' || g, now(), now(), 'good', 1 FROM generate_series(1, %d) g`, metricsSyncs)); err != nil {
			b.Fatal(err)
		}
		d, text := scrape()
		res.steady = append(res.steady, d)
		body = text
	}
	b.StopTimer()
	// The last scrape counts every run: the history plus one per sync and scrape.
	var good int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM gobucardo.syncrun WHERE sync_name = 's1' AND state = 'good'").Scan(&good); err != nil {
		b.Fatal(err)
	}
	line := fmt.Sprintf(`gobucardo_sync_runs_total{outcome="good",sync="s1"} %d`, good)
	if !strings.Contains(body, line+"\n") {
		b.Fatalf("the last scrape lacks %q", line)
	}
	if !strings.Contains(body, `gobucardo_plugin_calls_total{code="code1",outcome="timeout",sync="s1"} 1000`+"\n") {
		b.Fatal("the last scrape lacks the plugin calls of s1")
	}
	if !strings.Contains(body, "gobucardo_catalog_up 1\n") {
		b.Fatal("the last scrape did not read the catalog")
	}
	progressf(b, "first scrape %s, later ones p50 %s", res.first, pct(res.steady, 50))
	results.setMetrics(res)
}

func (r metricsResult) print(w io.Writer) {
	fmt.Fprintln(w)
	fmt.Fprintf(w, "GET /metrics of the MCP, %d syncs, %d tables, %d runs and %d conflicts in the catalog (%d KiB of text):\n",
		r.syncs, r.tables, r.runs, r.conflicts, r.bytes/1024)
	fmt.Fprintf(w, "  first scrape (reads the whole history once): %s\n", millis(r.first))
	fmt.Fprintf(w, "  later scrapes (one more run per sync each): p50 %s, max %s (target: under 50 ms)\n",
		millis(pct(r.steady, 50)), millis(pct(r.steady, 100)))
	fmt.Fprintf(w, "  for reference, one GROUP BY over all of syncrun: %s\n", millis(r.fullAggregate))
}

func millis(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
