package bench

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// defaultTwoRows is the default of BENCH_TWO_ROWS, the table size of the
// two-source benchmark.
const defaultTwoRows = 200000

// contentsSQL sums up every row of accounts, down to an md5 of all of them
// in key order: two databases of the same server version with the same
// contents hold the same rows.
const contentsSQL = `SELECT count(*), coalesce(sum(abalance), 0),
	md5(coalesce(string_agg(a::text, ',' ORDER BY aid), '')) FROM accounts a`

// contents is what contentsSQL returns.
type contents struct {
	count, sumBalance int64
	md5               string
}

// twoSetup is the sync of the two-source benchmark: two sources on clusters
// of their own, and mcp over a main database on the first one's.
type twoSetup struct {
	rows   int
	a, b   *pgx.Conn // the two sources
	main   *pgx.Conn // the main database, for gobucardo.conflict_log
	mcp    mcp
	server string
}

// twoScenario is one pair of concurrent UPDATEs, one on each source: A's
// changes the first keysA aids, B's the last keysB.
type twoScenario struct {
	name         string
	sqlA, sqlB   string
	keysA, keysB int // rows each UPDATE changes
	keys         int // distinct keys changed
	conflicts    int // keys changed on both
}

// twoScenarios are the disjoint and the overlapping case for n rows.
func twoScenarios(n int) []twoScenario {
	half, lo, hi := n/2, n/4, 3*n/4
	return []twoScenario{{
		name:  "disjoint",
		sqlA:  fmt.Sprintf("UPDATE accounts SET abalance = abalance + 1 WHERE aid <= %d", half),
		sqlB:  fmt.Sprintf("UPDATE accounts SET abalance = abalance + 1 WHERE aid > %d", half),
		keysA: half, keysB: n - half, keys: n, conflicts: 0,
	}, {
		name:  "overlapping",
		sqlA:  fmt.Sprintf("UPDATE accounts SET abalance = abalance + 10 WHERE aid <= %d", hi),
		sqlB:  fmt.Sprintf("UPDATE accounts SET abalance = abalance + 100 WHERE aid > %d", lo),
		keysA: hi, keysB: n - lo, keys: n, conflicts: hi - lo,
	}}
}

// BenchmarkTwoSource measures a sync of two sources: concurrent bulk
// UPDATEs on both, on disjoint keys and then on overlapping ones, and the
// `mcp sync run` that brings them back in step.
func BenchmarkTwoSource(b *testing.B) {
	n, err := envInt("BENCH_TWO_ROWS", defaultTwoRows)
	if err != nil {
		b.Fatal(err)
	}
	if n < 4 {
		b.Fatalf("BENCH_TWO_ROWS=%d: want at least 4 rows", n)
	}
	s := newTwoSetup(b, n)
	var res []twoResult
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		if i > 0 {
			s.reset(b)
		}
		res = res[:0]
		scs := twoScenarios(n)
		for _, sc := range scs {
			res = append(res, s.runScenario(b, sc))
		}
		// The overlapping case again, the conflicts decided by a plugin
		// (plugins/highest: the higher balance, B's, wins) instead of the
		// built-in strategy.
		s.reset(b)
		s.mcp.run(b, "add", "customcode", "highest", "plugin="+pluginBinary(b, "highest"),
			"whenrun=conflict", "sync=s2", "column=abalance")
		sc := scs[1]
		sc.name += "+plugin"
		r := s.runScenario(b, sc)
		if r.winsB != int64(sc.conflicts) {
			b.Fatalf("%s: the plugin let A win %d conflicts; B's balance is the higher in all", sc.name, r.winsA)
		}
		res = append(res, r)
		s.mcp.run(b, "remove", "customcode", "highest")
	}
	for _, r := range res {
		b.ReportMetric(r.sync.Seconds(), r.name+"-s")
	}
	results.addTwo(s.server, res)
}

// newTwoSetup makes the two clusters, fills accounts identically on both
// before the sync exists (so that nothing is captured), then configures the
// sync with mcp, which installs the capture on both.
func newTwoSetup(b *testing.B, n int) *twoSetup {
	b.Helper()
	p := newServerPair(b, "clusters of sources A and B")
	s := &twoSetup{rows: n, a: p.a, b: p.b, server: p.server}

	progressf(b, "filling accounts with %d rows on A and B", n)
	createAccounts(b, s.a, n, "accounts")
	createAccounts(b, s.b, n, "accounts")

	s.mcp = p.newMCP(b)
	s.mcp.run(b, "add", "table", "public.accounts", "db=A", "relgroup=r2")
	s.mcp.run(b, "add", "sync", "s2", "relgroup=r2", "dbs=A:source,B:source")
	s.main = p.aC.Connect(b, "gobucardo")
	if got := s.checkInStep(b); got.count != int64(n) || got.sumBalance != 0 {
		b.Fatalf("accounts after the load: %d rows, balances %d; want %d rows, balances 0", got.count, got.sumBalance, n)
	}
	return s
}

// reset puts every balance back to 0 on both sources, uncaptured, for
// another iteration.
func (s *twoSetup) reset(b *testing.B) {
	b.Helper()
	for _, c := range []*pgx.Conn{s.a, s.b} {
		mustExec(b, c, "SET session_replication_role = replica")
		mustExec(b, c, "UPDATE accounts SET abalance = 0")
		mustExec(b, c, "RESET session_replication_role")
		mustExec(b, c, "VACUUM (FREEZE, ANALYZE) accounts")
	}
	s.checkInStep(b)
}

// twoResult is what one scenario of the two-source benchmark measured.
type twoResult struct {
	name         string
	rows         int
	keysA, keysB int
	keys         int
	conflicts    int
	update       time.Duration // wall time of the two concurrent UPDATEs
	sync         time.Duration // wall time of `mcp sync run`
	maxRSS       int64
	cpu          time.Duration
	winsA, winsB int64 // conflicts won by A and by B
}

// runScenario runs sc's UPDATEs concurrently, times the run that brings A
// and B back in step, and checks the result.
func (s *twoSetup) runScenario(b *testing.B, sc twoScenario) twoResult {
	b.Helper()
	res := twoResult{name: sc.name, rows: s.rows, keysA: sc.keysA, keysB: sc.keysB, keys: sc.keys, conflicts: sc.conflicts}
	before := s.balances(b)
	logged := s.conflictsLogged(b)
	settle(b, s.a, s.b)

	progressf(b, "%s: concurrent UPDATEs of %d rows on A and %d on B", sc.name, sc.keysA, sc.keysB)
	res.update = s.concurrentUpdates(b, sc)
	settle(b, s.a, s.b)

	progressf(b, "%s: mcp sync run s2", sc.name)
	b.StartTimer()
	run := s.mcp.syncRun(b, "s2")
	b.StopTimer()
	res.sync, res.maxRSS, res.cpu = run.elapsed, run.maxRSS, run.cpu
	s.checkRun(b, sc.name, run.stdout, sc.keysA+sc.keysB, sc.keys, sc.conflicts)
	got := s.checkInStep(b)
	res.winsA, res.winsB = s.checkBalances(b, sc, before, got)
	if grew := s.conflictsLogged(b) - logged; grew != int64(sc.conflicts) {
		b.Fatalf("%s: gobucardo.conflict_log grew by %d rows, want %d", sc.name, grew, sc.conflicts)
	}

	progressf(b, "%s: mcp sync run s2 again (nothing to do)", sc.name)
	again := s.mcp.run(b, "sync", "run", "s2", "--quiet")
	s.checkRun(b, sc.name+", second run", again.stdout, 0, 0, 0)
	progressf(b, "%s: done: converged in %.2fs (UPDATEs %.2fs), %d conflicts (A won %d, B won %d)",
		sc.name, res.sync.Seconds(), res.update.Seconds(), sc.conflicts, res.winsA, res.winsB)
	return res
}

// concurrentUpdates runs sc's UPDATE on A and the one on B at the same time,
// each on its own connection and goroutine, and returns when both have
// committed, with the wall time from their start.
func (s *twoSetup) concurrentUpdates(b *testing.B, sc twoScenario) time.Duration {
	b.Helper()
	type job struct {
		db   string
		conn *pgx.Conn
		sql  string
		want int
	}
	jobs := []job{{"A", s.a, sc.sqlA, sc.keysA}, {"B", s.b, sc.sqlB, sc.keysB}}
	errs := make([]error, len(jobs))
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	for i, j := range jobs {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			ready.Done()
			<-start
			tag, err := j.conn.Exec(context.Background(), j.sql)
			switch {
			case err != nil:
				errs[i] = fmt.Errorf("%s on %s: %w", j.sql, j.db, err)
			case tag.RowsAffected() != int64(j.want):
				errs[i] = fmt.Errorf("%s on %s: %d rows, want %d", j.sql, j.db, tag.RowsAffected(), j.want)
			}
		}()
	}
	ready.Wait()
	t0 := time.Now()
	close(start)
	done.Wait()
	elapsed := time.Since(t0)
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	return elapsed
}

// Lines of `mcp sync run`: the summary, and the line of a table.
var (
	twoRunSummary = regexp.MustCompile(`(\d+) deleted, (\d+) inserted, (\d+) truncated, (\d+) conflicts in`)
	twoRunTable   = regexp.MustCompile(`public\.accounts: (\S+), (\d+) keys, (\d+) deleted, (\d+) inserted`)
)

// checkRun checks the output of a run: staged keys changed on either
// source (the sum of both), distinct keys each deleted and inserted once on
// the other source, and conflicts.
func (s *twoSetup) checkRun(b *testing.B, what, stdout string, staged, keys, conflicts int) {
	b.Helper()
	m := twoRunSummary.FindStringSubmatch(stdout)
	if m == nil {
		b.Fatalf("%s: mcp sync run printed no summary:\n%s", what, stdout)
	}
	k := strconv.Itoa(keys)
	if m[1] != k || m[2] != k || m[3] != "0" || m[4] != strconv.Itoa(conflicts) {
		b.Fatalf("%s: mcp sync run: %s; want %d deleted, %d inserted, 0 truncated, %d conflicts\n%s",
			what, m[0], keys, keys, conflicts, stdout)
	}
	t := twoRunTable.FindStringSubmatch(stdout)
	switch {
	case staged == 0 && t != nil:
		b.Fatalf("%s: mcp sync run reported changes to accounts: %s", what, t[0])
	case staged > 0 && t == nil:
		b.Fatalf("%s: mcp sync run printed no line for accounts:\n%s", what, stdout)
	case staged > 0 && t[2] != strconv.Itoa(staged):
		b.Fatalf("%s: mcp sync run staged %s keys of accounts, want %d (A's and B's)", what, t[2], staged)
	}
}

// checkInStep fails b unless A's and B's accounts hold the same rows, and
// returns what they hold.
func (s *twoSetup) checkInStep(b *testing.B) contents {
	b.Helper()
	a, bb := readContents(b, s.a), readContents(b, s.b)
	if a.count != int64(s.rows) {
		b.Fatalf("accounts on A has %d rows, want %d", a.count, s.rows)
	}
	if a != bb {
		b.Fatalf("sources not in step: A %+v, B %+v", a, bb)
	}
	return a
}

func readContents(b *testing.B, conn *pgx.Conn) contents {
	b.Helper()
	var c contents
	if err := conn.QueryRow(context.Background(), contentsSQL).Scan(&c.count, &c.sumBalance, &c.md5); err != nil {
		b.Fatalf("contents of accounts: %v", err)
	}
	return c
}

// balances returns A's balances by aid (its rows are 1..rows).
func (s *twoSetup) balances(b *testing.B) []int32 {
	b.Helper()
	rows, err := s.a.Query(context.Background(), "SELECT aid, abalance FROM accounts")
	if err != nil {
		b.Fatalf("read balances: %v", err)
	}
	bal := make([]int32, s.rows+1)
	var aid, v int32
	_, err = pgx.ForEachRow(rows, []any{&aid, &v}, func() error {
		if aid < 1 || int(aid) > s.rows {
			return fmt.Errorf("aid %d out of 1..%d", aid, s.rows)
		}
		bal[aid] = v
		return nil
	})
	if err != nil {
		b.Fatalf("read balances: %v", err)
	}
	return bal
}

// checkBalances checks that each row of A (the same as B's) took the change
// of the UPDATE that touched it, or for a conflicting key one of the two,
// and returns how many conflicts each source won.
func (s *twoSetup) checkBalances(b *testing.B, sc twoScenario, before []int32, got contents) (winsA, winsB int64) {
	b.Helper()
	after := s.balances(b)
	deltaA, deltaB := int32(1), int32(1)
	if sc.conflicts > 0 {
		deltaA, deltaB = 10, 100
	}
	var sum int64
	for aid := 1; aid <= s.rows; aid++ {
		d := after[aid] - before[aid]
		sum += int64(after[aid])
		inA, inB := aid <= sc.keysA, aid > s.rows-sc.keysB
		switch {
		case inA && inB && d == deltaA:
			winsA++
		case inA && inB && d == deltaB:
			winsB++
		case inA && !inB && d == deltaA, inB && !inA && d == deltaB, !inA && !inB && d == 0:
		default:
			b.Fatalf("%s: aid %d went from %d to %d (updated on A %v, on B %v)", sc.name, aid, before[aid], after[aid], inA, inB)
		}
	}
	if sum != got.sumBalance {
		b.Fatalf("%s: balances read %d, contents %d", sc.name, sum, got.sumBalance)
	}
	if winsA+winsB != int64(sc.conflicts) {
		b.Fatalf("%s: %d keys changed on both, want %d", sc.name, winsA+winsB, sc.conflicts)
	}
	return winsA, winsB
}

// conflictsLogged counts the rows of gobucardo.conflict_log.
func (s *twoSetup) conflictsLogged(b *testing.B) int64 {
	b.Helper()
	var n int64
	if err := s.main.QueryRow(context.Background(), "SELECT count(*) FROM gobucardo.conflict_log").Scan(&n); err != nil {
		b.Fatalf("count gobucardo.conflict_log: %v", err)
	}
	return n
}
