package bench

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/gobucardo/gobucardo/pkg/capture"
	"github.com/gobucardo/gobucardo/pkg/pgtest"
)

// The pgbench workload: the default TPC-B-like script, which updates
// pgbench_accounts, pgbench_tellers and pgbench_branches and inserts into
// pgbench_history in every transaction.
const (
	pgbenchScale   = 10
	pgbenchClients = 4
	pgbenchThreads = 2
)

// pgbenchCapture is the capture installed for the runs with capture: the
// three updated tables (pgbench_history has no key), for a sync with
// autokick, as `mcp add sync` would install it.
var pgbenchCapture = capture.Sync{Name: "pgbench", Autokick: true, Tables: []capture.Table{
	{Schema: "public", Name: "pgbench_accounts", KeyColumns: []string{"aid"}, KeyTypes: []string{"integer"}},
	{Schema: "public", Name: "pgbench_tellers", KeyColumns: []string{"tid"}, KeyTypes: []string{"integer"}},
	{Schema: "public", Name: "pgbench_branches", KeyColumns: []string{"bid"}, KeyTypes: []string{"integer"}},
}}

// pgbench runs the pgbench client of the servers' version against one
// database.
type pgbench struct {
	bin  string
	c    *pgtest.Cluster
	db   string
	conn *pgx.Conn
}

// benchPgbench is BenchmarkPgbench with runs of secs seconds: without
// capture, with it, with it again, and without it once it is uninstalled.
func benchPgbench(b *testing.B, secs int) {
	p := newPgbench(b)
	res := pgbenchResult{scale: pgbenchScale, clients: pgbenchClients, threads: pgbenchThreads, seconds: secs}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res.runs = res.runs[:0]
		for _, withCapture := range []bool{false, true, true, false} {
			p.setCapture(b, withCapture)
			settle(b, p.conn)
			progressf(b, "pgbench -c %d -j %d -T %d, capture %v", pgbenchClients, pgbenchThreads, secs, withCapture)
			tps := p.run(b, secs)
			progressf(b, "%.0f TPS", tps)
			res.runs = append(res.runs, pgbenchRun{capture: withCapture, tps: tps})
		}
	}
	without, with := res.mean(false), res.mean(true)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(without, "tps-without")
	b.ReportMetric(with, "tps-with")
	b.ReportMetric(with/without, "ratio")
	results.setPgbench(res)
}

// newPgbench starts a cluster and initialises a pgbench database on it.
func newPgbench(b *testing.B) *pgbench {
	b.Helper()
	dir, err := pgtest.BinDir()
	if err != nil {
		b.Fatal(err)
	}
	c := newServer(b)
	db := c.NewDB(b)
	p := &pgbench{bin: filepath.Join(dir, "pgbench"), c: c, db: db, conn: c.Connect(b, db)}
	progressf(b, "pgbench -i -s %d", pgbenchScale)
	p.exec(b, "-i", "-q", "-s", strconv.Itoa(pgbenchScale))
	return p
}

// setCapture installs or uninstalls gobucardo's capture of the pgbench
// tables; it is idempotent.
func (p *pgbench) setCapture(b *testing.B, on bool) {
	b.Helper()
	ctx := context.Background()
	var err error
	if on {
		err = capture.Install(ctx, p.conn, pgbenchCapture)
	} else {
		err = capture.Uninstall(ctx, p.conn)
	}
	if err != nil {
		b.Fatalf("capture on=%v: %v", on, err)
	}
}

// tpsLine is pgbench's result line.
var tpsLine = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)

// run runs the default script for secs seconds and returns the TPS.
func (p *pgbench) run(b *testing.B, secs int) float64 {
	b.Helper()
	out := p.exec(b, "-c", strconv.Itoa(pgbenchClients), "-j", strconv.Itoa(pgbenchThreads), "-T", strconv.Itoa(secs))
	m := tpsLine.FindSubmatch(out)
	if m == nil {
		b.Fatalf("pgbench printed no TPS:\n%s", out)
	}
	tps, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		b.Fatal(err)
	}
	return tps
}

// exec runs pgbench with args against the database and returns its
// stdout; it fails b unless pgbench exits 0 without failed transactions.
func (p *pgbench) exec(b *testing.B, args ...string) []byte {
	b.Helper()
	args = append([]string{"-h", p.c.Host(), "-p", strconv.Itoa(p.c.Port()), "-U", "postgres"}, args...)
	cmd := exec.Command(p.bin, append(args, p.db)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		b.Fatalf("pgbench %v: %v\n%s%s", args, err, stdout.Bytes(), stderr.Bytes())
	}
	if m := failedLine.FindSubmatch(stdout.Bytes()); m != nil && string(m[1]) != "0" {
		b.Fatalf("pgbench %v: %s failed transactions\n%s", args, m[1], stdout.Bytes())
	}
	return stdout.Bytes()
}

// failedLine is pgbench's count of failed transactions.
var failedLine = regexp.MustCompile(`number of failed transactions: (\d+)`)
