package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/gobucardo/gobucardo/pkg/capture"
	"github.com/gobucardo/gobucardo/pkg/catalog"
	"github.com/gobucardo/gobucardo/pkg/pg"
)

// Sizes of the status benchmark.
const (
	defaultStatusPending = 10000000
	defaultStatusRuns    = 5
	statusBatch          = 1000000 // delta rows per transaction of the load
)

// statusCase is one way of asking how far behind the sync is, timed over
// several calls.
type statusCase struct {
	name  string
	times []time.Duration
}

// statusResult is what BenchmarkStatusPending measured.
type statusResult struct {
	pending, txns int
	load          time.Duration // generating the delta rows
	cold          time.Duration // the first mcp status, right after the load
	vacuum        time.Duration // VACUUM ANALYZE of the delta table after it
	cases         []statusCase  // without, then with target B behind
}

// BenchmarkStatusPending measures mcp status over a sync whose source
// holds BENCH_STATUS_PENDING (default 10000000) delta rows the sync has
// not consumed, written straight into the delta table in transactions of
// a million rows once `mcp add sync` has installed the capture: one mcp
// status right after the load, then, after a VACUUM ANALYZE, the
// summary, the detail of the sync and --json, BENCH_STATUS_RUNS (default
// 5) times each, and capture.LagReader.Read alone (a reader of its own
// per call, as mcp status makes). Then the same again once target B is
// recorded as behind since the sync's own place, so that its backlog is
// counted as well. Every answer must say the count was capped, so
// BENCH_STATUS_PENDING must exceed capture.DefaultBacklogLimit.
func BenchmarkStatusPending(b *testing.B) {
	pending := mustEnvInt(b, "BENCH_STATUS_PENDING", defaultStatusPending)
	runs := mustEnvInt(b, "BENCH_STATUS_RUNS", defaultStatusRuns)
	if pending <= capture.DefaultBacklogLimit {
		b.Fatalf("BENCH_STATUS_PENDING=%d: want more than %d, the count mcp status stops at", pending, capture.DefaultBacklogLimit)
	}
	p := newServerPair(b, "source and target clusters")
	createAccounts(b, p.a, 1000, "accounts")
	createAccounts(b, p.b, 1000, "accounts")
	m := p.newMCP(b)
	m.run(b, "add", "table", "public.accounts", "db=A", "relgroup=r")
	m.run(b, "add", "sync", "s", "relgroup=r", "dbs=A:source,B:target")

	res := statusResult{pending: pending}
	delta := pg.Ident("gobucardo", capture.DeltaName("public", "accounts"))
	progressf(b, "writing %d pending delta rows into %s", pending, delta)
	start := time.Now()
	for lo := 1; lo <= pending; lo += statusBatch {
		hi := min(lo+statusBatch-1, pending)
		mustExec(b, p.a, "INSERT INTO "+delta+" (aid) SELECT g FROM generate_series($1::int, $2::int) g", lo, hi)
		res.txns++
	}
	res.load = time.Since(start)
	progressf(b, "loaded in %s", res.load.Round(time.Millisecond))
	// As a backlog is found before our vacuum (autovacuum may have run on
	// part of it): hint bits and the visibility map not set yet.
	cold := m.run(b, "status")
	checkCappedLine(b, cold.stdout)
	res.cold = cold.elapsed
	res.vacuum = timedExec(b, p.a, "VACUUM ANALYZE "+delta)
	settle(b, p.a)
	progressf(b, "first mcp status %s; VACUUM ANALYZE %s", res.cold.Round(time.Millisecond), res.vacuum.Round(time.Millisecond))

	main := p.aC.Connect(b, "gobucardo")
	b.ResetTimer()
	for _, behind := range []bool{false, true} {
		if behind {
			mustExec(b, p.a, `INSERT INTO gobucardo.target_watermark (sync, target, snap, reason)
				SELECT sync, 'B', snap, 'bench' FROM gobucardo.watermark WHERE sync = 's'`)
		}
		suffix := ""
		if behind {
			suffix = ", B behind"
		}
		summary := statusCase{name: "mcp status" + suffix}
		detail := statusCase{name: "mcp status s" + suffix}
		asJSON := statusCase{name: "mcp status --json" + suffix}
		reader := statusCase{name: "LagReader.Read" + suffix}
		for range runs {
			r := m.run(b, "status")
			checkCappedLine(b, r.stdout)
			summary.times = append(summary.times, r.elapsed)
			r = m.run(b, "status", "s")
			if !strings.Contains(r.stdout, fmt.Sprint(capture.DefaultBacklogLimit)) {
				b.Fatalf("mcp status s does not show the capped backlog:\n%s", r.stdout)
			}
			detail.times = append(detail.times, r.elapsed)
			r = m.run(b, "--json", "status")
			checkCappedJSON(b, r.stdout, behind)
			asJSON.times = append(asJSON.times, r.elapsed)
			reader.times = append(reader.times, timedLagRead(b, main, behind))
		}
		res.cases = append(res.cases, summary, detail, asJSON, reader)
		progressf(b, "%s: p50 %s, max %s", summary.name, pct(summary.times, 50), pct(summary.times, 100))
	}
	b.StopTimer()
	for _, c := range res.cases {
		if c.name == "mcp status" {
			b.ReportMetric(pct(c.times, 50).Seconds(), "status-s")
		}
	}
	results.setStatus(p.server, res)
}

// checkCappedLine fails b unless the summary of mcp status shows sync s
// with more than capture.DefaultBacklogLimit changes pending.
func checkCappedLine(b *testing.B, out string) {
	b.Helper()
	if !strings.Contains(out, fmt.Sprintf(">%d", capture.DefaultBacklogLimit)) {
		b.Fatalf("mcp status does not show >%d pending:\n%s", capture.DefaultBacklogLimit, out)
	}
}

// checkCappedJSON fails b unless mcp status --json says sync s has a
// capped backlog (and target B one too when behind).
func checkCappedJSON(b *testing.B, out string, behind bool) {
	b.Helper()
	var doc struct {
		Syncs []struct {
			Name string `json:"name"`
			catalog.SyncLag
		} `json:"syncs"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		b.Fatalf("mcp status --json: %v\n%s", err, out)
	}
	if len(doc.Syncs) != 1 || !doc.Syncs[0].Capped || doc.Syncs[0].Pending < capture.DefaultBacklogLimit {
		b.Fatalf("mcp status --json does not give a capped backlog of sync s:\n%s", out)
	}
	if behind && !strings.Contains(out, `"B"`) {
		b.Fatalf("mcp status --json does not name target B as behind:\n%s", out)
	}
}

// timedLagRead times capture.LagReader.Read of sync s with a reader of its
// own (connecting to the source included), reading the sync from the main
// database behind main beforehand.
func timedLagRead(b *testing.B, main catalog.Querier, behind bool) time.Duration {
	b.Helper()
	ctx := context.Background()
	d, err := catalog.LoadSync(ctx, main, "s")
	if err != nil {
		b.Fatal(err)
	}
	var r capture.LagReader
	start := time.Now()
	lag, err := r.Read(ctx, main, d)
	elapsed := time.Since(start)
	r.Close(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if !lag.Capped || lag.Unknown || len(lag.Sources) != 1 {
		b.Fatalf("LagReader.Read: want a capped backlog on one source, got %+v", lag)
	}
	if behind && (len(lag.Sources[0].Behind) != 1 || !lag.Sources[0].Behind[0].Capped) {
		b.Fatalf("LagReader.Read: want target B behind with a capped backlog, got %+v", lag.Sources[0].Behind)
	}
	return elapsed
}

func (r statusResult) print(w io.Writer) {
	fmt.Fprintln(w)
	fmt.Fprintf(w, "mcp status over %d pending delta rows on the source (%d transactions, generated in %s):\n",
		r.pending, r.txns, seconds(r.load))
	fmt.Fprintf(w, "  %-30s %s (before VACUUM ANALYZE of the delta table, which took %s)\n", "first mcp status after load:", millis(r.cold), seconds(r.vacuum))
	for _, c := range r.cases {
		fmt.Fprintf(w, "  %-30s p50 %s, max %s (%d calls)\n", c.name+":", millis(pct(c.times, 50)), millis(pct(c.times, 100)), len(c.times))
	}
	fmt.Fprintf(w, "  target: under 1 s; pending is counted up to %d per source (capped); mcp status includes the\n", capture.DefaultBacklogLimit)
	fmt.Fprintln(w, "    process's start and its connections; B behind: target B recorded behind since the sync's own place")
}
