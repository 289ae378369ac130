package bench

import (
	"fmt"
	"io"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
)

// Defaults of the partitioned-table benchmark's sizes.
const (
	defaultPartRows   = 1000000
	defaultPartRounds = 2
	partMonths        = 12
)

// eventsDDL creates the events table %s with the columns and the key of
// both cases; %s after it is "" for a plain table or its PARTITION BY.
const eventsDDL = `CREATE TABLE %s (id int, month date, abalance int NOT NULL, filler char(84), PRIMARY KEY (id, month))%s`

// fillEvents fills table %s with $1 rows, ids 1..$1 in twelve even runs,
// one a month of 2024.
const fillEvents = `INSERT INTO %s (id, month, abalance, filler)
	SELECT g, make_date(2024, 1 + ((g - 1)::bigint * 12 / $1)::int, 1), 0, '' FROM generate_series(1, $1) g`

// partCase is one of the two tables the partitioned benchmark compares,
// replicated by a sync of its own.
type partCase struct {
	name  string // "part" or "plain": the sync's name, and the report's
	table string
}

// The two cases: the same rows in a partitioned table and in a plain one.
var (
	partPartitioned = partCase{name: "part", table: "events_part"}
	partPlain       = partCase{name: "plain", table: "events_plain"}
)

// update is the bulk UPDATE timed on the source.
func (c partCase) update() string {
	return "UPDATE " + c.table + " SET abalance = abalance + 1"
}

// BenchmarkPartitioned compares a partitioned table (12 monthly
// partitions, captured row by row through its root) with a plain table
// (statement capture) holding the same BENCH_PART_ROWS rows (default
// 1000000): one bulk UPDATE on the source and the `mcp sync run` that
// brings the target in step, for each, in BENCH_PART_ROUNDS rounds
// (default 2) that alternate which table goes first. The target:
// the partitioned table's run takes at most 1.1x the plain table's.
func BenchmarkPartitioned(b *testing.B) {
	n, err := envInt("BENCH_PART_ROWS", defaultPartRows)
	if err != nil {
		b.Fatal(err)
	}
	if n < partMonths {
		b.Fatalf("BENCH_PART_ROWS=%d: want at least %d rows", n, partMonths)
	}
	rounds, err := envInt("BENCH_PART_ROUNDS", defaultPartRounds)
	if err != nil {
		b.Fatal(err)
	}
	s := newPartSetup(b, n)
	res := partResult{rows: n}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		res.rounds = res.rounds[:0]
		for r := 0; r < rounds; r++ {
			cases := []partCase{partPartitioned, partPlain}
			if r%2 == 1 {
				cases[0], cases[1] = cases[1], cases[0]
			}
			round := partRound{first: cases[0].name}
			for _, c := range cases {
				// Every UPDATE adds 1 to each of the n balances.
				m := s.runCase(b, c, int64(n)*int64(i*rounds+r+1))
				if c == partPartitioned {
					round.part = m
				} else {
					round.plain = m
				}
			}
			progressf(b, "round %d: sync partitioned %.2fs, plain %.2fs (%.2fx); UPDATE row capture %.2fs, statement capture %.2fs (%.2fx)",
				r+1, round.part.sync.Seconds(), round.plain.sync.Seconds(), round.syncRatio(),
				round.part.update.Seconds(), round.plain.update.Seconds(), round.updateRatio())
			res.rounds = append(res.rounds, round)
		}
	}
	mean := res.mean()
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(mean.part.sync.Seconds(), "part-sync-s")
	b.ReportMetric(mean.plain.sync.Seconds(), "plain-sync-s")
	b.ReportMetric(mean.syncRatio(), "sync-ratio")
	b.ReportMetric(mean.updateRatio(), "update-ratio")
	results.setPart(s.server, res)
}

// partSetup is the two syncs of the partitioned benchmark: a source and a
// target on clusters of their own, and mcp over a main database on the
// source's.
type partSetup struct {
	rows     int
	src, dst *pgx.Conn
	mcp      mcp
	server   string
}

// newPartSetup makes the two clusters, creates and fills both tables on
// both, and configures a sync for each with mcp, which installs the
// capture on the source: row-level on the partitioned one.
func newPartSetup(b *testing.B, n int) *partSetup {
	b.Helper()
	p := newServerPair(b, "source and target clusters")
	s := &partSetup{rows: n, src: p.a, dst: p.b, server: p.server}

	progressf(b, "filling events_part (%d partitions) and events_plain with %d rows each on the source and the target", partMonths, n)
	for _, conn := range []*pgx.Conn{s.src, s.dst} {
		createEvents(b, conn, n)
	}

	s.mcp = p.newMCP(b)
	for _, c := range []partCase{partPartitioned, partPlain} {
		s.mcp.run(b, "add", "table", "public."+c.table, "db=A", "relgroup=r_"+c.name)
		s.mcp.run(b, "add", "sync", c.name, "relgroup=r_"+c.name, "dbs=A:source,B:target")
	}
	for _, c := range []partCase{partPartitioned, partPlain} {
		s.checkInStep(b, c, 0)
	}
	return s
}

// createEvents creates events_part with a partition a month of 2024 and
// events_plain on conn, fills both with the same n rows and vacuums them
// (VACUUM of the root does every partition), so that both start in the
// same state.
func createEvents(b *testing.B, conn *pgx.Conn, n int) {
	b.Helper()
	mustExec(b, conn, fmt.Sprintf(eventsDDL, partPartitioned.table, " PARTITION BY RANGE (month)"))
	for m := 1; m <= partMonths; m++ {
		from := time.Date(2024, time.Month(m), 1, 0, 0, 0, 0, time.UTC)
		mustExec(b, conn, fmt.Sprintf("CREATE TABLE %s_%s PARTITION OF %s FOR VALUES FROM ('%s') TO ('%s')",
			partPartitioned.table, from.Format("2006_01"), partPartitioned.table,
			from.Format(time.DateOnly), from.AddDate(0, 1, 0).Format(time.DateOnly)))
	}
	mustExec(b, conn, fmt.Sprintf(eventsDDL, partPlain.table, ""))
	for _, c := range []partCase{partPartitioned, partPlain} {
		mustExec(b, conn, fmt.Sprintf(fillEvents, c.table), n)
		mustExec(b, conn, "VACUUM (FREEZE, ANALYZE) "+c.table)
	}
}

// partMeasure is what one case of one round measured.
type partMeasure struct {
	update time.Duration // the UPDATE on the source, commit included
	sync   time.Duration // wall time of `mcp sync run`
	maxRSS int64         // of the mcp process, bytes
	cpu    time.Duration // of the mcp process, user + system
}

// runCase times c's UPDATE on the source and the run of its sync, and
// checks that the run replaced every row once and that the target then
// holds the source's rows, whose balances add up to balance.
func (s *partSetup) runCase(b *testing.B, c partCase, balance int64) partMeasure {
	b.Helper()
	var m partMeasure
	quiesce(b, s.src, s.dst)
	progressf(b, "UPDATE %s (%d rows)", c.table, s.rows)
	m.update = timedExec(b, s.src, c.update())
	settle(b, s.src)
	progressf(b, "mcp sync run %s", c.name)
	b.StartTimer()
	run := s.mcp.syncRun(b, c.name)
	b.StopTimer()
	m.sync, m.maxRSS, m.cpu = run.elapsed, run.maxRSS, run.cpu
	checkRunReplaced(b, run.stdout, s.rows)
	s.checkInStep(b, c, balance)
	return m
}

// quiesce vacuums and analyzes every table of each connection's database
// (the delta tables on the source too), then checkpoints, all untimed: so
// that no autovacuum of the dead rows the previous case left (n on the
// source after its UPDATE, n on the target after its run) lands in the
// next case's timed steps, which would favour whichever case goes first.
func quiesce(b *testing.B, conns ...*pgx.Conn) {
	b.Helper()
	for _, c := range conns {
		mustExec(b, c, "VACUUM (ANALYZE)")
	}
	settle(b, conns...)
}

// checkInStep fails b unless the target's table of c holds what the
// source's does, n rows whose balances add up to balance.
func (s *partSetup) checkInStep(b *testing.B, c partCase, balance int64) {
	b.Helper()
	src, dst := readFingerprint(b, s.src, c.table), readFingerprint(b, s.dst, c.table)
	if src.count != int64(s.rows) || src.sumBalance != balance {
		b.Fatalf("source %s: %d rows, balances %d; want %d rows, balances %d", c.table, src.count, src.sumBalance, s.rows, balance)
	}
	if src != dst {
		b.Fatalf("target's %s not in step: source %+v, target %+v", c.table, src, dst)
	}
}

// partRound is one round of the partitioned benchmark: both cases, first
// (its name) before the other.
type partRound struct {
	first       string
	part, plain partMeasure
}

// syncRatio is the partitioned table's run time over the plain table's.
func (r partRound) syncRatio() float64 { return r.part.sync.Seconds() / r.plain.sync.Seconds() }

// updateRatio is the UPDATE's time with row capture over its time with
// statement capture.
func (r partRound) updateRatio() float64 { return r.part.update.Seconds() / r.plain.update.Seconds() }

// partResult is what the partitioned benchmark measured.
type partResult struct {
	rows   int
	rounds []partRound
}

// mean is the mean of the rounds' figures (RSS: the largest).
func (r partResult) mean() partRound {
	var m partRound
	if len(r.rounds) == 0 {
		return m
	}
	k := time.Duration(len(r.rounds))
	for _, rd := range r.rounds {
		for _, p := range []struct{ sum, one *partMeasure }{{&m.part, &rd.part}, {&m.plain, &rd.plain}} {
			p.sum.update += p.one.update / k
			p.sum.sync += p.one.sync / k
			p.sum.cpu += p.one.cpu / k
			p.sum.maxRSS = max(p.sum.maxRSS, p.one.maxRSS)
		}
	}
	return m
}

func (r partResult) print(w io.Writer) {
	fmt.Fprintf(w, "\npartitioned table (%d monthly partitions, row capture) vs plain table (statement capture), %d rows each, bulk UPDATE\n",
		partMonths, r.rows)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "round\tfirst\tsync partitioned\tsync plain\tratio\tUPDATE row capture\tUPDATE statement capture\tratio\tmcp RSS part/plain\tmcp CPU part/plain")
	row := func(label, first string, rd partRound) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.2fx\t%s\t%s\t%.2fx\t%s / %s\t%s / %s\n", label, first,
			seconds(rd.part.sync), seconds(rd.plain.sync), rd.syncRatio(),
			seconds(rd.part.update), seconds(rd.plain.update), rd.updateRatio(),
			megabytes(rd.part.maxRSS), megabytes(rd.plain.maxRSS), seconds(rd.part.cpu), seconds(rd.plain.cpu))
	}
	for i, rd := range r.rounds {
		row(fmt.Sprint(i+1), rd.first, rd)
	}
	mean := r.mean()
	row("mean", "", mean)
	_ = tw.Flush()
	verdict := "met"
	if mean.syncRatio() > 1.1 {
		verdict = "NOT met"
	}
	fmt.Fprintf(w, "  target: sync partitioned <= 1.1x plain: %s (%.2fx)\n", verdict, mean.syncRatio())
	fmt.Fprintln(w, "  sync: wall time of `mcp sync run part|plain --quiet` (a sync each, A:source, B:target), from the source's commit")
	fmt.Fprintln(w, "    until the target is in step (checked: count, sums, a hash of every row; N deleted, N inserted);")
	fmt.Fprintln(w, "  UPDATE: `UPDATE <table> SET abalance = abalance + 1` on the source, commit included; row capture: the")
	fmt.Fprintln(w, "    root's row trigger, cloned into every partition; statement capture: the transition-table triggers")
	fmt.Fprintln(w, "  before each table's UPDATE, both databases are vacuumed and analyzed (untimed), so that no autovacuum of")
	fmt.Fprintln(w, "    the other table's dead rows lands in its timed steps; rounds alternate which table goes first;")
	fmt.Fprintln(w, "    the mean's RSS is the largest")
}
