package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gobucardo/gobucardo/pkg/pgtest"
)

// accountsDDL creates a pgbench_accounts-shaped table; %s is its name.
const accountsDDL = `CREATE TABLE %s (aid int PRIMARY KEY, bid int NOT NULL, abalance int NOT NULL, filler char(84))`

// fillAccounts fills table %s with $1 rows, as pgbench -i would.
const fillAccounts = `INSERT INTO %s (aid, bid, abalance, filler)
	SELECT g, (g - 1) / 100000 + 1, 0, '' FROM generate_series(1, $1) g`

// The statements timed by the bulk benchmark.
const (
	updateCaptured = `UPDATE accounts SET abalance = abalance + 1`
	updatePlain    = `UPDATE accounts_plain SET abalance = abalance + 1`
	rawCopyOut     = `COPY (SELECT aid, bid, abalance, filler FROM accounts) TO STDOUT (FORMAT binary)`
	rawCopyIn      = `COPY accounts_raw (aid, bid, abalance, filler) FROM STDIN (FORMAT binary)`
)

// fingerprintSQL sums up every row of table %s, which has an abalance
// column: two tables of the same columns with the same fingerprint hold
// the same rows (up to a hash collision).
const fingerprintSQL = `SELECT count(*), coalesce(sum(abalance), 0), coalesce(sum(hashtext(t::text)), 0) FROM %s t`

// bulkSetup is the sync of the bulk benchmark: a source and a target on
// clusters of their own, and mcp over a main database on the source's.
type bulkSetup struct {
	rows     int
	src, dst *pgx.Conn // the replicated databases
	mcp      mcp
	server   string // description of the servers
}

// fingerprint is what fingerprintSQL returns.
type fingerprint struct{ count, sumBalance, sumHash int64 }

// benchBulkUpdate is BenchmarkBulkUpdate for a table of n rows.
func benchBulkUpdate(b *testing.B, n int) {
	s := newBulkSetup(b, n)
	res := bulkResult{rows: n}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		settle(b, s.src, s.dst)
		progressf(b, "UPDATE of %d rows without capture", n)
		res.updatePlain = timedExec(b, s.src, updatePlain)
		settle(b, s.src)
		progressf(b, "UPDATE of %d rows with capture", n)
		res.updateCaptured = timedExec(b, s.src, updateCaptured)
		settle(b, s.src)
		progressf(b, "mcp sync run")
		b.StartTimer()
		run := s.mcp.syncRun(b, "s")
		b.StopTimer()
		res.sync, res.maxRSS, res.cpu = run.elapsed, run.maxRSS, run.cpu
		checkRunReplaced(b, run.stdout, s.rows)
		s.checkInStep(b, int64(n)*int64(i+1))
		settle(b, s.src, s.dst)
		progressf(b, "raw COPY of %d rows", n)
		res.raw = rawCopy{}.run(b, s)
		progressf(b, "raw COPY of %d rows, 64 KiB writes", n)
		res.rawBuffered = rawCopy{buffered: true}.run(b, s)
		progressf(b, "raw DELETE+COPY of %d rows, 64 KiB writes", n)
		res.rawDelete = rawCopy{buffered: true, deleteFirst: true}.run(b, s)
	}
	b.ReportMetric(res.sync.Seconds(), "sync-s")
	b.ReportMetric(res.raw.Seconds(), "raw-s")
	b.ReportMetric(res.rawBuffered.Seconds(), "raw64k-s")
	b.ReportMetric(res.rawDelete.Seconds(), "rawdelete-s")
	b.ReportMetric(res.ratio(), "ratio")
	b.ReportMetric(float64(n)/res.sync.Seconds(), "rows/s")
	b.ReportMetric(float64(res.maxRSS)/(1<<20), "MB-RSS")
	results.addBulk(s.server, res)
	progressf(b, "done: sync run %.2fs, raw COPY %.2fs (%.2fx), with 64 KiB writes %.2fs, DELETE+COPY %.2fs",
		res.sync.Seconds(), res.raw.Seconds(), res.ratio(), res.rawBuffered.Seconds(), res.rawDelete.Seconds())
}

// newBulkSetup makes the two clusters, fills the tables and configures the
// sync with mcp, which installs the capture on the source.
func newBulkSetup(b *testing.B, n int) *bulkSetup {
	b.Helper()
	p := newServerPair(b, "source and target clusters")
	s := &bulkSetup{rows: n, src: p.a, dst: p.b, server: p.server}

	progressf(b, "filling accounts with %d rows on the source and the target", n)
	createAccounts(b, s.src, n, "accounts", "accounts_plain")
	createAccounts(b, s.dst, n, "accounts")
	createAccounts(b, s.dst, 0, "accounts_raw")

	s.mcp = p.newMCP(b)
	s.mcp.run(b, "add", "table", "public.accounts", "db=A", "relgroup=r")
	s.mcp.run(b, "add", "sync", "s", "relgroup=r", "dbs=A:source,B:target")
	return s
}

// dbArgs are the connection arguments of `mcp add db` for database db.
func dbArgs(c *pgtest.Cluster, db string) []string {
	return []string{"host=" + c.Host(), "port=" + strconv.Itoa(c.Port()), "user=postgres", "dbname=" + db}
}

// createAccounts creates the tables on conn, fills each with n rows and
// vacuums them (freezing, so that no later statement sets hint bits), so
// that each starts in the same state.
func createAccounts(b *testing.B, conn *pgx.Conn, n int, tables ...string) {
	b.Helper()
	for _, t := range tables {
		mustExec(b, conn, fmt.Sprintf(accountsDDL, t))
		if n > 0 {
			mustExec(b, conn, fmt.Sprintf(fillAccounts, t), n)
		}
		mustExec(b, conn, "VACUUM (FREEZE, ANALYZE) "+t)
	}
}

// runSummary is the summary line of `mcp sync run`.
var runSummary = regexp.MustCompile(`(\d+) deleted, (\d+) inserted, (\d+) truncated`)

// checkRunReplaced checks that the run, which printed stdout, replaced
// each of rows rows once.
func checkRunReplaced(b *testing.B, stdout string, rows int) {
	b.Helper()
	m := runSummary.FindStringSubmatch(stdout)
	if m == nil {
		b.Fatalf("mcp sync run printed no summary:\n%s", stdout)
	}
	want := strconv.Itoa(rows)
	if m[1] != want || m[2] != want || m[3] != "0" {
		b.Fatalf("mcp sync run: %s, want %s deleted, %s inserted, 0 truncated", m[0], want, want)
	}
}

// checkInStep fails b unless the target's accounts hold what the source's
// do, and the source's balances add up to balance.
func (s *bulkSetup) checkInStep(b *testing.B, balance int64) {
	b.Helper()
	src := readFingerprint(b, s.src, "accounts")
	dst := readFingerprint(b, s.dst, "accounts")
	if src.count != int64(s.rows) || src.sumBalance != balance {
		b.Fatalf("source accounts: %d rows, balances %d; want %d rows, balances %d", src.count, src.sumBalance, s.rows, balance)
	}
	if src != dst {
		b.Fatalf("target not in step after the run: source %+v, target %+v", src, dst)
	}
}

func readFingerprint(b *testing.B, conn *pgx.Conn, table string) fingerprint {
	b.Helper()
	var f fingerprint
	if err := conn.QueryRow(context.Background(), fmt.Sprintf(fingerprintSQL, table)).Scan(&f.count, &f.sumBalance, &f.sumHash); err != nil {
		b.Fatalf("fingerprint of %s: %v", table, err)
	}
	return f
}

// rawCopy is one raw reference: how the copy streams and what empties
// the target table first.
type rawCopy struct {
	// buffered: 64 KiB per write into the pipe. Unbuffered, every row
	// crosses the pipe and goes to the target's socket on its own, as
	// pgconn's CopyTo writes one row at a time (gobucardo's run streams the
	// same way).
	buffered bool
	// deleteFirst: DELETE every row of the filled table in the COPY's
	// transaction, timed, as a delta run does; else TRUNCATE it before,
	// untimed.
	deleteFirst bool
}

// run times one binary COPY of the source's accounts into the target's
// accounts_raw, both ends streaming at once through an io.Pipe, and checks
// that the copy holds what the source does.
func (rc rawCopy) run(b *testing.B, s *bulkSetup) time.Duration {
	b.Helper()
	if rc.deleteFirst {
		// The state of the sync's target table: filled, frozen, analyzed.
		if got := readFingerprint(b, s.dst, "accounts_raw"); got.count != int64(s.rows) {
			b.Fatalf("raw DELETE+COPY: accounts_raw has %d rows, want %d", got.count, s.rows)
		}
		mustExec(b, s.dst, "VACUUM (FREEZE, ANALYZE) accounts_raw")
	} else {
		mustExec(b, s.dst, "TRUNCATE accounts_raw")
	}
	settle(b, s.dst)
	start := time.Now()
	if rc.deleteFirst {
		mustExec(b, s.dst, "BEGIN")
		mustExec(b, s.dst, "DELETE FROM accounts_raw")
	}
	if err := rc.stream(s.src.PgConn(), s.dst.PgConn()); err != nil {
		b.Fatalf("raw COPY: %v", err)
	}
	if rc.deleteFirst {
		mustExec(b, s.dst, "COMMIT")
	}
	elapsed := time.Since(start)
	if src, dst := readFingerprint(b, s.src, "accounts"), readFingerprint(b, s.dst, "accounts_raw"); src != dst {
		b.Fatalf("raw COPY: source %+v, copy %+v", src, dst)
	}
	return elapsed
}

// stream copies rawCopyOut on src into rawCopyIn on dst.
func (rc rawCopy) stream(src, dst *pgconn.PgConn) error {
	return copyStream(src, dst, rawCopyOut, rawCopyIn, rc.buffered)
}

// copyStream runs COPY ... TO STDOUT statement out on src and COPY ...
// FROM STDIN statement in on dst at once, through an io.Pipe: a row per
// write into the pipe, as pgconn's CopyTo gives them, or 64 KiB per write
// when buffered.
func copyStream(src, dst *pgconn.PgConn, out, in string, buffered bool) error {
	ctx := context.Background()
	pr, pw := io.Pipe()
	var w io.Writer = pw
	bw := bufio.NewWriterSize(pw, 64<<10)
	if buffered {
		w = bw
	}
	done := make(chan error, 1)
	go func() {
		_, err := dst.CopyFrom(ctx, pr, in)
		pr.CloseWithError(errors.New("target stopped reading"))
		done <- err
	}()
	_, outErr := src.CopyTo(ctx, w, out)
	if outErr == nil && buffered {
		outErr = bw.Flush()
	}
	pw.CloseWithError(outErr) // nil: EOF, the end of the copy
	return errors.Join(<-done, outErr)
}
