package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gobucardo/gobucardo/pkg/pgtest"
)

// Defaults of the latency benchmark's sizes.
const (
	defaultLagCommits = 200
	defaultLagSeconds = 20
)

// BenchmarkLatency measures the daemon's lag from a commit on the source to
// the row visible on the target, through autokick alone: over single-row
// commits on an idle system, then while pgbench (4 clients) loads the
// source's replicated pgbench tables. BENCH_LAG_COMMITS and
// BENCH_LAG_SECONDS size it.
func BenchmarkLatency(b *testing.B) {
	commits, err := envInt("BENCH_LAG_COMMITS", defaultLagCommits)
	if err != nil {
		b.Fatal(err)
	}
	secs, err := envInt("BENCH_LAG_SECONDS", defaultLagSeconds)
	if err != nil {
		b.Fatal(err)
	}
	ps := newPgbenchSync(b, "CREATE TABLE public.probe (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())",
		"public.probe")
	pgb, dstC, dstDB, src, dst := ps.pgb, ps.dstC, ps.dstDB, ps.pgb.conn, ps.dst
	srcC, srcDB := pgb.c, pgb.db
	stop, _ := ps.m.startDaemon(b)
	defer stop()
	time.Sleep(time.Second) // the startup runs are over

	b.ResetTimer()
	progressf(b, "idle: %d single-row commits, one at a time", commits)
	var idle []time.Duration
	for i := 1; i <= commits; i++ {
		idle = append(idle, probe(b, src, dst, i))
		time.Sleep(20 * time.Millisecond)
	}

	progressf(b, "under load: pgbench -c %d -T %d on the source, a probe every 100ms", pgbenchClients, secs)
	loadDone := make(chan []byte, 1)
	go func() {
		loadDone <- pgb.exec(b, "-c", strconv.Itoa(pgbenchClients), "-j", strconv.Itoa(pgbenchThreads), "-T", strconv.Itoa(secs))
	}()
	var loaded []time.Duration
	var mu sync.Mutex
	var wg sync.WaitGroup
	probeSrc := srcC.Connect(b, srcDB)
	var out []byte
	for id := commits + 1; ; id++ {
		select {
		case out = <-loadDone:
		case <-time.After(100 * time.Millisecond):
		}
		if out != nil {
			break
		}
		at := time.Now()
		mustExec(b, probeSrc, "INSERT INTO public.probe (id) VALUES ($1)", id)
		committed := time.Since(at)
		wg.Add(1)
		go func(id int, at time.Time) {
			defer wg.Done()
			lag := waitVisible(b, dstC, dstDB, id, at.Add(committed))
			mu.Lock()
			loaded = append(loaded, lag)
			mu.Unlock()
		}(id, at)
	}
	wg.Wait()
	m1 := tpsLine.FindSubmatch(out)
	caughtUp := time.Now()
	for !sameAccounts(b, src, dst) {
		if time.Since(caughtUp) > 2*time.Minute {
			b.Fatal("the target did not catch up with pgbench within 2 minutes")
		}
		time.Sleep(50 * time.Millisecond)
	}
	catchUp := time.Since(caughtUp)
	b.StopTimer()
	tps := "?"
	if m1 != nil {
		tps = string(m1[1])
	}
	res := lagResult{idle: idle, loaded: loaded, tps: tps, catchUp: catchUp, clients: pgbenchClients, seconds: secs}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(pct(idle, 50).Seconds()*1000, "idle-p50-ms")
	b.ReportMetric(pct(idle, 99).Seconds()*1000, "idle-p99-ms")
	b.ReportMetric(pct(loaded, 99).Seconds()*1000, "load-p99-ms")
	results.setLag(res)
}

// pgbenchSync is a pgbench database (scale pgbenchScale) on a source
// cluster and another on a target cluster, replicated by sync s
// (A:source, B:target) over pgbench_accounts, _branches and _tellers and the
// extra tables, configured with the real mcp over a main database on the
// source's cluster.
type pgbenchSync struct {
	pgb   *pgbench // on the source
	dstC  *pgtest.Cluster
	dstDB string
	dst   *pgx.Conn
	m     mcp
}

// newPgbenchSync starts the clusters and configures the sync; extraDDL
// creates the extra tables on both databases.
func newPgbenchSync(b *testing.B, extraDDL string, extraTables ...string) *pgbenchSync {
	b.Helper()
	dir, err := pgtest.BinDir()
	if err != nil {
		b.Fatal(err)
	}
	p := newServerPair(b, "source and target clusters")
	pgb := &pgbench{bin: filepath.Join(dir, "pgbench"), c: p.aC, db: p.aDB, conn: p.a}
	progressf(b, "pgbench -i -s %d on the source and the target", pgbenchScale)
	pgb.exec(b, "-i", "-q", "-s", strconv.Itoa(pgbenchScale))
	(&pgbench{bin: pgb.bin, c: p.bC, db: p.bDB}).exec(b, "-i", "-q", "-s", strconv.Itoa(pgbenchScale))
	ps := &pgbenchSync{pgb: pgb, dstC: p.bC, dstDB: p.bDB, dst: p.b}
	if extraDDL != "" {
		for _, c := range []*pgx.Conn{pgb.conn, ps.dst} {
			mustExec(b, c, extraDDL)
		}
	}
	ps.m = p.newMCP(b)
	m := ps.m
	m.run(b, append(append([]string{"add", "table"}, extraTables...), "public.pgbench_accounts", "public.pgbench_branches",
		"public.pgbench_tellers", "db=A", "relgroup=r")...)
	m.run(b, "add", "sync", "s", "relgroup=r", "dbs=A:source,B:target")
	return ps
}

// probe commits row id on the source and waits until the target has it.
func probe(b *testing.B, src, dst *pgx.Conn, id int) time.Duration {
	b.Helper()
	mustExec(b, src, "INSERT INTO public.probe (id) VALUES ($1)", id)
	committed := time.Now()
	for {
		var n int
		if err := dst.QueryRow(context.Background(), "SELECT count(*) FROM public.probe WHERE id = $1", id).Scan(&n); err != nil {
			b.Fatal(err)
		}
		if n == 1 {
			return time.Since(committed)
		}
		if time.Since(committed) > time.Minute {
			b.Fatalf("probe %d not on the target after a minute", id)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitVisible polls the target on a connection of its own until row id is
// there, and returns the time since committed.
func waitVisible(b *testing.B, c *pgtest.Cluster, db string, id int, committed time.Time) time.Duration {
	conn, err := pgx.Connect(context.Background(), c.DSN(db))
	if err != nil {
		b.Error(err)
		return 0
	}
	defer conn.Close(context.Background())
	for {
		var n int
		if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM public.probe WHERE id = $1", id).Scan(&n); err != nil {
			b.Error(err)
			return 0
		}
		if n == 1 {
			return time.Since(committed)
		}
		if time.Since(committed) > 2*time.Minute {
			b.Errorf("probe %d not on the target after 2 minutes", id)
			return 0
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func sameAccounts(b *testing.B, src, dst *pgx.Conn) bool {
	q := "SELECT sum(abalance)::text || '/' || (SELECT sum(bbalance) FROM pgbench_branches)::text FROM pgbench_accounts"
	var a, c string
	if err := src.QueryRow(context.Background(), q).Scan(&a); err != nil {
		b.Fatal(err)
	}
	if err := dst.QueryRow(context.Background(), q).Scan(&c); err != nil {
		b.Fatal(err)
	}
	return a == c
}

// pct is the p-th percentile of ds.
func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p + 99) / 100
	return s[max(0, min(len(s)-1, i-1))]
}

type lagResult struct {
	idle, loaded     []time.Duration
	tps              string
	catchUp          time.Duration
	clients, seconds int
}

func (r lagResult) print(w io.Writer) {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", d.Seconds()*1000) }
	fmt.Fprintf(w, "\nlag, commit on the source to visible on the target, autokick (mcp run)\n")
	fmt.Fprintf(w, "  idle, %d single-row commits:  p50 %s  p99 %s  max %s   (targets: p50 < 100 ms, p99 < 300 ms)\n",
		len(r.idle), ms(pct(r.idle, 50)), ms(pct(r.idle, 99)), ms(pct(r.idle, 100)))
	fmt.Fprintf(w, "  pgbench -c %d -T %d (%s TPS), %d probes:  p50 %s  p99 %s  max %s   (target: p99 < 1 s); caught up %s after pgbench ended\n",
		r.clients, r.seconds, r.tps, len(r.loaded), ms(pct(r.loaded, 50)), ms(pct(r.loaded, 99)), ms(pct(r.loaded, 100)),
		ms(r.catchUp))
}

// lockedBuffer collects the daemon's output from two writers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// all is everything written.
func (l *lockedBuffer) all() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// String is the last 4000 bytes or so, from a line's start.
func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.buf.String()
	if i := strings.LastIndex(s[:max(0, len(s)-4000)], "\n"); i > 0 {
		s = s[i+1:]
	}
	return s
}
