package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
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

// probeDDL creates the table of the lag probes, replicated with the
// pgbench tables.
const probeDDL = "CREATE TABLE public.probe (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())"

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
	commits := mustEnvInt(b, "BENCH_LAG_COMMITS", defaultLagCommits)
	secs := mustEnvInt(b, "BENCH_LAG_SECONDS", defaultLagSeconds)
	ps := newPgbenchSync(b, probeDDL, "public.probe")
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
	var out []byte
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		out = pgb.exec(b, "-c", strconv.Itoa(pgbenchClients), "-j", strconv.Itoa(pgbenchThreads), "-T", strconv.Itoa(secs))
	}()
	var loaded []time.Duration
	for _, p := range lagProbes(b, srcC.Connect(b, srcDB), []probeTarget{{dstC, dstDB}}, commits+1, 100*time.Millisecond, loadDone) {
		loaded = append(loaded, p.lag)
	}
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
// cluster and another on each target's cluster, replicated by sync s
// (A:source, B:target, C:target...) over pgbench_accounts, _branches and
// _tellers and the extra tables, configured with the real mcp over a main
// database on the source's cluster.
type pgbenchSync struct {
	pgb     *pgbench // on the source
	dstC    *pgtest.Cluster
	dstDB   string
	dst     *pgx.Conn
	targets []syncTarget // every target, B first (dstC, dstDB and dst are B's)
	m       mcp
	server  string // serverInfo of the source's
}

// syncTarget is a target database of a pgbenchSync on a cluster of its own.
type syncTarget struct {
	name string // B, C...
	c    *pgtest.Cluster
	db   string
	conn *pgx.Conn
}

// newPgbenchSync starts a source and a target cluster and configures the
// sync; extraDDL creates the extra tables on both databases.
func newPgbenchSync(b *testing.B, extraDDL string, extraTables ...string) *pgbenchSync {
	b.Helper()
	return newPgbenchSyncTo(b, 1, extraDDL, extraTables...)
}

// newPgbenchSyncTo is newPgbenchSync with n targets, B, C and on.
func newPgbenchSyncTo(b *testing.B, n int, extraDDL string, extraTables ...string) *pgbenchSync {
	b.Helper()
	dir, err := pgtest.BinDir()
	if err != nil {
		b.Fatal(err)
	}
	p := newServerPair(b, "source and target clusters")
	pgb := &pgbench{bin: filepath.Join(dir, "pgbench"), c: p.aC, db: p.aDB, conn: p.a}
	ps := &pgbenchSync{pgb: pgb, dstC: p.bC, dstDB: p.bDB, dst: p.b, server: p.server}
	ps.targets = []syncTarget{{name: "B", c: p.bC, db: p.bDB, conn: p.b}}
	for i := 1; i < n; i++ {
		t := syncTarget{name: string(rune('B' + i)), c: newServer(b)}
		progressf(b, "started target cluster %s", t.name)
		t.db = t.c.NewDB(b)
		t.conn = t.c.Connect(b, t.db)
		ps.targets = append(ps.targets, t)
	}
	progressf(b, "pgbench -i -s %d on the source and the %d targets", pgbenchScale, n)
	pgb.exec(b, "-i", "-q", "-s", strconv.Itoa(pgbenchScale))
	for _, t := range ps.targets {
		(&pgbench{bin: pgb.bin, c: t.c, db: t.db}).exec(b, "-i", "-q", "-s", strconv.Itoa(pgbenchScale))
	}
	if extraDDL != "" {
		mustExec(b, pgb.conn, extraDDL)
		for _, t := range ps.targets {
			mustExec(b, t.conn, extraDDL)
		}
	}
	ps.m = p.newMCP(b)
	m := ps.m
	dbs := "dbs=A:source"
	for _, t := range ps.targets {
		if t.name != "B" { // newMCP added A and B
			m.run(b, append([]string{"add", "db", t.name}, dbArgs(t.c, t.db)...)...)
		}
		dbs += "," + t.name + ":target"
	}
	m.run(b, append(append([]string{"add", "table"}, extraTables...), "public.pgbench_accounts", "public.pgbench_branches",
		"public.pgbench_tellers", "db=A", "relgroup=r")...)
	m.run(b, "add", "sync", "s", "relgroup=r", dbs)
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

// probeTarget is a database where lagProbes waits for the probes.
type probeTarget struct {
	c  *pgtest.Cluster
	db string
}

// probeLag is one probe seen on one target: lag after the commit at at.
type probeLag struct {
	at     time.Time // when the probe's INSERT was sent
	target int       // index in lagProbes's targets
	lag    time.Duration
}

// sentProbe is a probe committed on the source, for the watchers.
type sentProbe struct {
	id            int
	at, committed time.Time
}

// lagProbes commits a probe row (ids from firstID on) on src every `every`
// until stop is closed and measures the time from each commit until each
// target has the row: a watcher per target polls, on one connection of its
// own, for the probes it has not seen yet (every 2ms), so that a long lag
// costs no more connections or queries than a short one. It returns once
// every probe was seen (or given up on). It may run in a goroutine of its
// own: a failure is reported with b.Error, and ends the probing.
func lagProbes(b *testing.B, src *pgx.Conn, targets []probeTarget, firstID int, every time.Duration, stop <-chan struct{}) (lags []probeLag) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	feeds := make([]chan sentProbe, len(targets))
	for i, t := range targets {
		feeds[i] = make(chan sentProbe, 1024)
		wg.Add(1)
		go func() {
			defer wg.Done()
			seen := watchProbes(b, t, feeds[i])
			mu.Lock()
			for _, l := range seen {
				l.target = i
				lags = append(lags, l)
			}
			mu.Unlock()
		}()
	}
	defer func() {
		for _, f := range feeds {
			close(f)
		}
		wg.Wait()
	}()
	for id := firstID; ; id++ {
		select {
		case <-stop:
			return lags // the watchers add theirs before it returns
		case <-time.After(every):
		}
		at := time.Now()
		if _, err := src.Exec(context.Background(), "INSERT INTO public.probe (id) VALUES ($1)", id); err != nil {
			b.Errorf("probe %d: %v", id, err)
			return lags
		}
		p := sentProbe{id: id, at: at, committed: time.Now()}
		for _, f := range feeds {
			f <- p
		}
	}
}

// watchProbes polls t for the probes fed to it until feed is closed and
// every probe was seen, and returns their lags; one unseen after 2 minutes
// is an error.
func watchProbes(b *testing.B, t probeTarget, feed <-chan sentProbe) []probeLag {
	defer func() {
		for range feed { // given up early: let the prober go on
		}
	}()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, t.c.DSN(t.db))
	if err != nil {
		b.Error(err)
		return nil
	}
	defer conn.Close(ctx)
	var seen []probeLag
	pending := map[int]sentProbe{}
	open := true
	for open || len(pending) > 0 {
		if len(pending) == 0 { // nothing to look for: wait for a probe
			p, ok := <-feed
			if !ok {
				break
			}
			pending[p.id] = p
		}
	more:
		for open {
			select {
			case p, ok := <-feed:
				if !ok {
					open = false
					break more
				}
				pending[p.id] = p
			default:
				break more
			}
		}
		lo, hi := math.MaxInt, 0
		for id := range pending {
			lo, hi = min(lo, id), max(hi, id)
		}
		rows, err := conn.Query(ctx, "SELECT id FROM public.probe WHERE id BETWEEN $1 AND $2", lo, hi)
		if err != nil {
			b.Error(err)
			return seen
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
		if err != nil {
			b.Error(err)
			return seen
		}
		now := time.Now()
		for _, id := range ids {
			if p, ok := pending[int(id)]; ok {
				seen = append(seen, probeLag{at: p.at, lag: now.Sub(p.committed)})
				delete(pending, int(id))
			}
		}
		for id, p := range pending {
			if now.Sub(p.committed) > 2*time.Minute {
				b.Errorf("probe %d not on the target after 2 minutes", id)
				delete(pending, id)
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	return seen
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
