package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gobucardo/gobucardo/pkg/capture"
	"github.com/gobucardo/gobucardo/pkg/pg"
)

// Defaults of the target-outage benchmark's sizes, and its targets.
const (
	defaultOutageBaseline = 20 // seconds of load before the outage
	defaultOutageSeconds  = 60 // seconds D's cluster is down
	defaultOutageAfter    = 40 // seconds of load after D's restart
	// defaultOutageTPS is the load's rate (pgbench -R): a steady load that
	// the sync keeps up with, so that B's and C's lag has a usual value; an
	// unthrottled pgbench on a small machine outruns the runs and the lag
	// only grows.
	defaultOutageTPS = 1000
	outageProbeEvery = 100 * time.Millisecond
	// outageLagTolerance: "the others keep their usual lag" when the p99 lag
	// of each during the outage is at most this many times its p99 before.
	outageLagTolerance = 1.5
	// outageBackWithin: D is to be in step this long after its restart, plus
	// the time to copy its backlog.
	outageBackWithin = 10 * time.Second
	outageTarget     = "D" // the target stopped
)

// outageScript is the load: single-row UPDATEs of pgbench_accounts.
var outageScript = fmt.Sprintf(`\set aid random(1, %d)
\set delta random(-5000, 5000)
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
`, 100000*pgbenchScale)

// The phases of the outage benchmark, by the time a probe was committed.
const (
	phaseBefore = iota
	phaseDuring
	phaseAfter
	phases
)

var phaseNames = [phases]string{"before", "D stopped", "D restarted"}

// BenchmarkTargetOutage stops one target of three for a while under load:
// a sync A -> B, C, D over the pgbench tables (each db on a cluster of its
// own) and `mcp run` with autokick, while pgbench -c 4 -R BENCH_OUTAGE_TPS
// (default 1000) runs single-row UPDATEs of pgbench_accounts on A. Lag probes (a row committed on A, the
// time until it is visible) on B and C every 100ms, over three phases:
// BENCH_OUTAGE_BASELINE seconds (default 20) before D's cluster is stopped,
// BENCH_OUTAGE_SECONDS (default 60) while it is down, and
// BENCH_OUTAGE_AFTER (default 40) after it is started again. The issue's
// targets: B's and C's lag stays as it was (p99 during the outage at most
// 1.5x p99 before), and D is back in step within 10 s of its restart plus
// the time to copy its backlog.
func BenchmarkTargetOutage(b *testing.B) {
	base := mustEnvInt(b, "BENCH_OUTAGE_BASELINE", defaultOutageBaseline)
	outage := mustEnvInt(b, "BENCH_OUTAGE_SECONDS", defaultOutageSeconds)
	after := mustEnvInt(b, "BENCH_OUTAGE_AFTER", defaultOutageAfter)
	rate := mustEnvInt(b, "BENCH_OUTAGE_TPS", defaultOutageTPS)
	ps := newPgbenchSyncTo(b, 3, probeDDL, "public.probe")
	script := filepath.Join(b.TempDir(), "update.sql")
	if err := os.WriteFile(script, []byte(outageScript), 0o644); err != nil {
		b.Fatal(err)
	}
	src, d := ps.pgb.conn, ps.targets[2]
	stopDaemon, log := ps.m.startDaemon(b)
	defer stopDaemon()
	time.Sleep(time.Second) // the startup runs are over
	res := outageResult{clients: pgbenchClients, rate: rate, seconds: [phases]int{base, outage, after}}

	b.ResetTimer()
	progressf(b, "pgbench -c %d -R %d -T %d (single-row UPDATEs) on the source, a probe every %s on B and C; D stopped after %ds for %ds",
		pgbenchClients, rate, base+outage+after, outageProbeEvery, base, outage)
	loadDone, probed := make(chan struct{}), make(chan struct{})
	var load pgbenchProgress
	var lags []probeLag
	res.t0 = time.Now()
	go func() {
		defer close(loadDone)
		load = ps.pgb.runProgress(b, base+outage+after, 1, "-n", "-R", strconv.Itoa(rate), "-f", script)
		res.end = time.Now()
	}()
	go func() {
		defer close(probed)
		targets := []probeTarget{{ps.targets[0].c, ps.targets[0].db}, {ps.targets[1].c, ps.targets[1].db}}
		lags = lagProbes(b, ps.pgb.c.Connect(b, ps.pgb.db), targets, 1, outageProbeEvery, loadDone)
	}()

	time.Sleep(time.Until(res.t0.Add(time.Duration(base) * time.Second)))
	res.stopAt = time.Now()
	progressf(b, "stopping D's cluster")
	d.c.Stop(b)
	res.stopTook = time.Since(res.stopAt)
	time.Sleep(time.Until(res.stopAt.Add(time.Duration(outage) * time.Second)))
	res.backlogChanges, res.backlogRows = targetBacklog(b, src, outageTarget)
	if !behind(b, src, outageTarget) {
		b.Errorf("no run left D out in its %ds down: its place is not kept on the source", outage)
	}
	if st := syncTargets(b, ps.m, "s")[outageTarget]; st.State != "behind" {
		b.Errorf("mcp status s: D is %q after %ds down, want behind", st.State, outage)
	} else {
		res.statusPending, res.statusCapped = st.Pending, st.Capped
	}
	progressf(b, "starting D's cluster again; its backlog: %d changes to %d rows", res.backlogChanges, res.backlogRows)
	res.startAt = time.Now()
	d.c.Start(b)
	res.started = time.Now()
	for behind(b, src, outageTarget) {
		if time.Since(res.started) > 3*time.Minute {
			b.Fatalf("D not in step 3 minutes after its restart:\n%s", log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	res.inStep = time.Since(res.started)
	select {
	case <-loadDone:
		res.afterLoad = true
	default:
	}
	progressf(b, "D in step %.2fs after its restart", res.inStep.Seconds())
	if st := syncTargets(b, ps.m, "s")[outageTarget]; st.State != "in step" {
		b.Errorf("mcp status s: D is %q once its place is gone, want in step", st.State)
	}
	<-probed
	if load.err != "" {
		b.Fatal(load.err)
	}

	// With the load over, every target ends with the source's rows.
	dConn := d.c.Connect(b, d.db)
	conns := []*pgx.Conn{ps.targets[0].conn, ps.targets[1].conn, dConn}
	wait := time.Now()
	for !sameRows(b, src, conns...) {
		if time.Since(wait) > 2*time.Minute {
			b.Fatalf("the targets not in step 2 minutes after the load ended:\n%s", log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	res.settled = time.Since(wait)
	b.StopTimer()
	res.rawCopy = rawCopyRows(b, src, dConn, res.backlogRows)

	res.tps = load.tps
	for _, iv := range load.intervals {
		p := res.phaseOf(res.t0.Add(time.Duration(iv.at * float64(time.Second))))
		res.phaseTPS[p] += iv.tps
		res.phaseTPSn[p]++
	}
	for _, l := range lags {
		p := res.phaseOf(l.at)
		res.lags[p][l.target] = append(res.lags[p][l.target], l.lag)
	}
	res.readLog(log.all())
	if path := os.Getenv("BENCH_OUTAGE_LOG"); path != "" {
		if err := os.WriteFile(path, []byte(log.all()), 0o644); err != nil {
			b.Error(err)
		}
	}
	b.ReportMetric(0, "ns/op")
	for t, name := range []string{"B", "C"} {
		b.ReportMetric(pct(res.lags[phaseBefore][t], 99).Seconds()*1000, name+"-before-p99-ms")
		b.ReportMetric(pct(res.lags[phaseDuring][t], 99).Seconds()*1000, name+"-during-p99-ms")
	}
	b.ReportMetric(res.inStep.Seconds(), "D-in-step-s")
	b.ReportMetric(float64(res.backlogRows), "D-backlog-rows")
	results.setOutage(ps.server, res)
}

// targetBacklog counts, on the source, the changes to pgbench_accounts and
// probe since target's place was kept (gobucardo.target_watermark), and the
// distinct rows they changed: what target misses.
func targetBacklog(b *testing.B, src *pgx.Conn, target string) (changes, rows int64) {
	b.Helper()
	for _, t := range []struct{ table, key string }{{"pgbench_accounts", "aid"}, {"probe", "id"}} {
		var c, r int64
		err := src.QueryRow(context.Background(), fmt.Sprintf(`SELECT count(*), count(DISTINCT d.%s)
			FROM %s d JOIN gobucardo.target_watermark w ON w.sync = 's' AND w.target = $1
			WHERE d.txid >= pg_snapshot_xmin(w.snap) AND NOT pg_visible_in_snapshot(d.txid, w.snap)`,
			t.key, pg.Ident("gobucardo", capture.DeltaName("public", t.table))), target).Scan(&c, &r)
		if err != nil {
			b.Fatalf("backlog of %s on %s: %v", target, t.table, err)
		}
		changes += c
		rows += r
	}
	return changes, rows
}

// behind reports whether the source keeps a place for target (runs left it
// out and it has not caught up since): what mcp status calls behind.
func behind(b *testing.B, src *pgx.Conn, target string) bool {
	b.Helper()
	var yes bool
	err := src.QueryRow(context.Background(),
		"SELECT EXISTS (SELECT 1 FROM gobucardo.target_watermark WHERE sync = 's' AND target = $1)", target).Scan(&yes)
	if err != nil {
		b.Fatal(err)
	}
	return yes
}

// targetStatus is a target as `mcp status SYNC --json` shows it.
type targetStatus struct {
	DB      string `json:"db"`
	State   string `json:"state"`
	Pending int64  `json:"pending"`
	Capped  bool   `json:"pending_capped"`
}

// syncTargets is `mcp status sync --json`'s targets, by db.
func syncTargets(b *testing.B, m mcp, sync string) map[string]targetStatus {
	b.Helper()
	var doc struct {
		Syncs []struct {
			Targets []targetStatus `json:"targets"`
		} `json:"syncs"`
	}
	out := m.run(b, "status", sync, "--json").stdout
	if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Syncs) != 1 {
		b.Fatalf("mcp status %s --json: %v\n%s", sync, err, out)
	}
	ts := map[string]targetStatus{}
	for _, t := range doc.Syncs[0].Targets {
		ts[t.DB] = t
	}
	return ts
}

// sameRows reports whether every target holds the source's pgbench_accounts
// (fingerprint) and probe rows (count).
func sameRows(b *testing.B, src *pgx.Conn, targets ...*pgx.Conn) bool {
	b.Helper()
	read := func(c *pgx.Conn) (fingerprint, int64) {
		var n int64
		if err := c.QueryRow(context.Background(), "SELECT count(*) FROM public.probe").Scan(&n); err != nil {
			b.Fatal(err)
		}
		return readFingerprint(b, c, "pgbench_accounts"), n
	}
	f, n := read(src)
	for _, t := range targets {
		if tf, tn := read(t); tf != f || tn != n {
			return false
		}
	}
	return true
}

// rawCopyRows times, for reference, a binary COPY of n rows of the
// source's pgbench_accounts into an empty table with its primary key on
// dst, a row per write as gobucardo streams them, and drops the table.
func rawCopyRows(b *testing.B, src, dst *pgx.Conn, n int64) time.Duration {
	b.Helper()
	mustExec(b, dst, "CREATE TABLE accounts_raw (LIKE pgbench_accounts INCLUDING ALL)")
	defer mustExec(b, dst, "DROP TABLE accounts_raw")
	settle(b, src, dst)
	start := time.Now()
	err := copyStream(src.PgConn(), dst.PgConn(),
		fmt.Sprintf("COPY (SELECT aid, bid, abalance, filler FROM pgbench_accounts WHERE aid <= %d) TO STDOUT (FORMAT binary)", n),
		"COPY accounts_raw (aid, bid, abalance, filler) FROM STDIN (FORMAT binary)", false)
	elapsed := time.Since(start)
	if err != nil {
		b.Fatalf("raw COPY of %d rows: %v", n, err)
	}
	return elapsed
}

// outageResult is what the target-outage benchmark measured.
type outageResult struct {
	clients  int
	rate     int         // pgbench -R
	seconds  [phases]int // as asked
	t0       time.Time   // the load started
	stopAt   time.Time   // D's cluster asked to stop
	stopTook time.Duration
	startAt  time.Time // D's cluster asked to start
	started  time.Time // D's cluster accepting connections again
	end      time.Time // the load ended

	tps       float64
	phaseTPS  [phases]float64 // sums of pgbench -P 1 intervals
	phaseTPSn [phases]int
	lags      [phases][2][]time.Duration // per phase, on B and C

	backlogChanges, backlogRows int64 // just before the restart, on the source
	statusPending               int64 // what mcp status said then
	statusCapped                bool
	inStep                      time.Duration // from started until D's place was gone
	afterLoad                   bool          // D was in step only once the load was over
	settled                     time.Duration // from the load's end until every target held the source's rows
	rawCopy                     time.Duration // a raw COPY of backlogRows rows

	// From the MCP's log.
	catchUpRun   time.Duration // the run that caught D up, as it reported
	catchUpEnd   time.Time     // when it ended
	reachable    time.Time     // "target reachable again"
	heldFor      time.Duration // the last hold of D before its restart: "next try in"
	unreachable  int           // "target unreachable" lines
	failed       int           // "run failed" lines
	runs         [phases]int   // runs done while the load ran
	catchUpFound bool
}

// phaseOf is the phase at t.
func (r *outageResult) phaseOf(t time.Time) int {
	switch {
	case t.Before(r.stopAt):
		return phaseBefore
	case t.Before(r.startAt):
		return phaseDuring
	}
	return phaseAfter
}

// phaseSeconds is how long phase p lasted.
func (r *outageResult) phaseSeconds(p int) float64 {
	switch p {
	case phaseBefore:
		return r.stopAt.Sub(r.t0).Seconds()
	case phaseDuring:
		return r.startAt.Sub(r.stopAt).Seconds()
	}
	return r.end.Sub(r.startAt).Seconds()
}

// runDuration is the duration at the end of a run's summary.
var runDuration = regexp.MustCompile(` in ([0-9.]+)s`)

// nextTry is when a run that left a target out will try it again.
var nextTry = regexp.MustCompile(`^not reached lately, next try in ([0-9a-z.]+):`)

// readLog reads the MCP's JSON log lines for the runs, the hold of D and
// the run that caught it up.
func (r *outageResult) readLog(log string) {
	for _, line := range strings.Split(log, "\n") {
		var e struct {
			TS     string `json:"ts"`
			Msg    string `json:"msg"`
			DB     string `json:"db"`
			Result string `json:"result"`
			Reason string `json:"reason"`
		}
		if json.Unmarshal([]byte(line), &e) != nil {
			continue
		}
		ts, err := time.Parse("2006-01-02T15:04:05.000Z0700", e.TS)
		if err != nil || ts.Before(r.t0) {
			continue
		}
		switch e.Msg {
		case "run done":
			if !ts.After(r.end) {
				r.runs[r.phaseOf(ts)]++
			}
			if !r.catchUpFound && strings.Contains(e.Result, "caught up: "+outageTarget) {
				r.catchUpFound, r.catchUpEnd = true, ts
				if m := runDuration.FindStringSubmatch(e.Result); m != nil {
					secs, _ := strconv.ParseFloat(m[1], 64)
					r.catchUpRun = time.Duration(secs * float64(time.Second))
				}
			}
		case "target left out of the run; it catches up later":
			if m := nextTry.FindStringSubmatch(e.Reason); m != nil && e.DB == outageTarget && ts.Before(r.started) {
				r.heldFor, _ = time.ParseDuration(m[1])
			}
		case "run failed":
			r.failed++
		case "target unreachable: runs leave it out, and it catches up once back":
			r.unreachable++
		case "target reachable again":
			if e.DB == outageTarget && r.reachable.IsZero() {
				r.reachable = ts
			}
		}
	}
}

// lagRatio is target t's p99 lag during the outage over its p99 before.
func (r *outageResult) lagRatio(t int) float64 {
	return pct(r.lags[phaseDuring][t], 99).Seconds() / pct(r.lags[phaseBefore][t], 99).Seconds()
}

func (r *outageResult) print(w io.Writer) {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.0f ms", d.Seconds()*1000) }
	fmt.Fprintf(w, "\none target of three stopped under load: sync A -> B, C, D (a cluster each), mcp run with autokick;\n")
	fmt.Fprintf(w, "  pgbench -c %d -R %d single-row UPDATEs of pgbench_accounts on A (%.0f TPS); D's cluster stopped %ds in, for %ds\n",
		r.clients, r.rate, r.tps, r.seconds[phaseBefore], r.seconds[phaseDuring])
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "phase\tseconds\tTPS\truns\tB p50\tB p99\tB max\tC p50\tC p99\tC max\tprobes")
	for p := 0; p < phases; p++ {
		tps := 0.0
		if r.phaseTPSn[p] > 0 {
			tps = r.phaseTPS[p] / float64(r.phaseTPSn[p])
		}
		b, c := r.lags[p][0], r.lags[p][1]
		fmt.Fprintf(tw, "%s\t%.1f\t%.0f\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", phaseNames[p], r.phaseSeconds(p), tps, r.runs[p],
			ms(pct(b, 50)), ms(pct(b, 99)), ms(pct(b, 100)), ms(pct(c, 50)), ms(pct(c, 99)), ms(pct(c, 100)), len(b))
	}
	_ = tw.Flush()
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	rb, rc := r.lagRatio(0), r.lagRatio(1)
	fmt.Fprintf(w, "  target: B and C keep their usual lag, p99 while D is down <= %.1fx p99 before: %s (B %.2fx, C %.2fx)\n",
		outageLagTolerance, verdict(rb <= outageLagTolerance && rc <= outageLagTolerance), rb, rc)
	capped := ""
	if r.statusCapped {
		capped = ", capped"
	}
	fmt.Fprintf(w, "  D's backlog at its restart: %d changes to %d rows (mcp status: %d pending%s); the cluster stopped in %s, started in %s\n",
		r.backlogChanges, r.backlogRows, r.statusPending, capped, seconds(r.stopTook), seconds(r.started.Sub(r.startAt)))
	when := "while the load ran"
	if r.afterLoad {
		when = "only after the load ended"
	}
	fmt.Fprintf(w, "  D in step (its place gone, mcp status \"in step\") %s after its restart (server accepting connections), %s\n",
		seconds(r.inStep), when)
	if r.catchUpFound {
		wait := r.catchUpEnd.Add(-r.catchUpRun).Sub(r.started)
		fmt.Fprintf(w, "    = %s until the run that caught it up started", seconds(wait))
		if !r.reachable.IsZero() {
			fmt.Fprintf(w, " (MCP: \"target reachable again\" at +%s)", seconds(r.reachable.Sub(r.started)))
		}
		fmt.Fprintf(w, " + %s for that run: %s backlog rows/s;\n", seconds(r.catchUpRun),
			thousands(float64(r.backlogRows)/r.catchUpRun.Seconds()))
		fmt.Fprintf(w, "    the last run that left D out before its restart said \"next try in %s\"\n", r.heldFor)
		fmt.Fprintf(w, "  target: in step within %s + the time to copy its backlog (that run's %s): %s (%s <= %s);\n",
			seconds(outageBackWithin), seconds(r.catchUpRun), verdict(r.inStep <= outageBackWithin+r.catchUpRun),
			seconds(r.inStep), seconds(outageBackWithin+r.catchUpRun))
	} else {
		fmt.Fprintf(w, "  target: in step within %s + the time to copy its backlog: unknown (no run reported catching D up)\n",
			seconds(outageBackWithin))
	}
	fmt.Fprintf(w, "    against %s + a raw COPY of %d rows (%s): %s\n", seconds(outageBackWithin), r.backlogRows, seconds(r.rawCopy),
		verdict(r.inStep <= outageBackWithin+r.rawCopy))
	fmt.Fprintf(w, "  MCP log: %d \"target unreachable\", %d \"run failed\"; every target held A's rows %s after the load ended (checked)\n",
		r.unreachable, r.failed, seconds(r.settled))
	fmt.Fprintln(w, "  lag: a probe row committed on A every 100ms, the time until B (C) has it; phases by the probe's commit")
	fmt.Fprintln(w, "  raw COPY: binary COPY of the first N rows of A's pgbench_accounts into an empty table with its key on D, a row per write")
}
