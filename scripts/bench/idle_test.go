package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gobucardo/gobucardo/pkg/pg"
)

// Defaults of the idle benchmark.
const (
	defaultIdleSeconds = 30
	idleRate           = 5 // single-row commits per second
	// clockTicks is the unit of /proc/<pid>/stat's times (USER_HZ, 100
	// on Linux).
	clockTicks = 100
)

// BenchmarkIdleCPU measures what the replicator costs beside a trickle of
// single-row commits (5 a second, for BENCH_IDLE_SECONDS) with the daemon
// running, as issue 13 asks: the CPU of its processes (mcp, controllers,
// kids, plugins) and of every postgres backend they use, short-lived ones
// included, as % of one core; the backends forked; and the lag from each
// commit to the row visible on the target. BENCH_IDLE_BEFORE, a directory
// holding other builds of mcp, controller and kid (main's: go build -o DIR
// ./cmd/...), measures those first on the same clusters and sync: a before
// and after in one run.
func BenchmarkIdleCPU(b *testing.B) {
	secs := mustEnvInt(b, "BENCH_IDLE_SECONDS", defaultIdleSeconds)
	p := newServerPair(b, "source and target clusters")
	mustExec(b, p.a, probeDDL)
	mustExec(b, p.b, probeDDL)
	m := p.newMCP(b)
	m.run(b, "add", "table", "public.probe", "db=A", "relgroup=r")
	m.run(b, "add", "sync", "s", "relgroup=r", "dbs=A:source,B:target")
	next := 1
	var res []idleResult
	b.ResetTimer()
	if dir := os.Getenv("BENCH_IDLE_BEFORE"); dir != "" {
		res = append(res, measureIdle(b, "BENCH_IDLE_BEFORE", mcp{bin: filepath.Join(dir, "mcp"), dsn: m.dsn}, p, secs, &next))
	}
	res = append(res, measureIdle(b, "this build", m, p, secs, &next))
	b.StopTimer()
	last := res[len(res)-1]
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(last.pct(last.goCPU+last.pgCPU), "cpu-%")
	b.ReportMetric(pct(last.lags, 50).Seconds()*1000, "idle-p50-ms")
	b.ReportMetric(pct(last.lags, 99).Seconds()*1000, "idle-p99-ms")
	results.setIdle(p.server, res)
}

// idleResult is one build's figures of BenchmarkIdleCPU.
type idleResult struct {
	build      string
	elapsed    time.Duration
	lags       []time.Duration          // one per commit
	goCPU      time.Duration            // mcp and its descendants, exited ones included
	byName     map[string]time.Duration // goCPU by command name (mcp, controller, kid...)
	pgCPU      time.Duration            // the postgres processes of both clusters but the bench's and the background ones
	background time.Duration            // checkpointer, walwriter...: not counted
	forks      int64                    // sessions established on both clusters
}

// pct is cpu as % of one core over the measure.
func (r idleResult) pct(cpu time.Duration) float64 { return cpu.Seconds() / r.elapsed.Seconds() * 100 }

// measureIdle starts m's daemon, makes a commit on the source every
// 1/idleRate s and waits for each on the target, and measures what the
// daemon's processes and the clusters' did meanwhile.
func measureIdle(b *testing.B, build string, m mcp, p serverPair, secs int, next *int) idleResult {
	b.Helper()
	progressf(b, "%s: %d single-row commits a second for %d s, the daemon running", build, idleRate, secs)
	stop, _, pid := m.startDaemonPID(b)
	defer stop()
	time.Sleep(2 * time.Second)     // the startup runs are over
	for i := 0; i < idleRate; i++ { // the kid is up, its sessions open
		probe(b, p.a, p.b, *next)
		*next++
	}
	before := takeCPU(b, pid, p)
	res := idleResult{build: build}
	tick := time.NewTicker(time.Second / idleRate)
	defer tick.Stop()
	for start := time.Now(); time.Since(start) < time.Duration(secs)*time.Second; {
		<-tick.C
		res.lags = append(res.lags, probe(b, p.a, p.b, *next))
		*next++
	}
	after := takeCPU(b, pid, p)
	res.elapsed = after.at.Sub(before.at)
	res.goCPU = after.daemon - before.daemon
	res.byName = map[string]time.Duration{}
	for name, d := range after.byName {
		res.byName[name] = d - before.byName[name]
	}
	for i := range after.clusters {
		bench, background := after.clusters[i].since(before.clusters[i])
		res.background += background
		res.pgCPU += after.clusters[i].all - before.clusters[i].all - bench - background
		res.forks += after.clusters[i].sessions - before.clusters[i].sessions
	}
	return res
}

// cpuTaken is the CPU used so far by the daemon and the clusters.
type cpuTaken struct {
	at       time.Time
	daemon   time.Duration
	byName   map[string]time.Duration // daemon, by command name
	clusters []clusterCPU
}

// clusterCPU is the CPU used so far by one cluster's processes.
type clusterCPU struct {
	all      time.Duration         // the postmaster and its children, exited ones included
	live     map[int]time.Duration // per live process that is the bench's or a background one
	kinds    map[int]string        // of those: "bench" or "background"
	sessions int64                 // pg_stat_database.sessions, summed
}

// since is the CPU the bench's own backends and the background processes
// used since c0.
func (c clusterCPU) since(c0 clusterCPU) (bench, background time.Duration) {
	for pid, cpu := range c.live {
		d := cpu - c0.live[pid] // a process new since c0 has none there
		if c.kinds[pid] == "bench" {
			bench += d
		} else {
			background += d
		}
	}
	return bench, background
}

// takeCPU reads the CPU used so far by the daemon pid (and every process
// under it) and by the clusters of p, through the bench's connections.
func takeCPU(b *testing.B, pid int, p serverPair) cpuTaken {
	b.Helper()
	procs, err := readProcs()
	if err != nil {
		b.Fatal(err)
	}
	t := cpuTaken{at: time.Now(), daemon: procs.tree(pid), byName: procs.treeByName(pid)}
	for _, conn := range []*pgx.Conn{p.a, p.b} {
		t.clusters = append(t.clusters, clusterTaken(b, conn, procs))
	}
	return t
}

// clusterTaken reads conn's cluster's CPU from procs.
func clusterTaken(b *testing.B, conn *pgx.Conn, procs procTable) clusterCPU {
	b.Helper()
	ctx := context.Background()
	if _, err := conn.Exec(ctx, "SELECT pg_stat_clear_snapshot()"); err != nil {
		b.Fatal(err)
	}
	var self int
	c := clusterCPU{live: map[int]time.Duration{}, kinds: map[int]string{}}
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid(), (SELECT sum(sessions)::bigint FROM pg_stat_database)").Scan(&self, &c.sessions); err != nil {
		b.Fatal(err)
	}
	c.all = procs.tree(procs[self].ppid)
	rows, err := conn.Query(ctx, "SELECT pid, backend_type, coalesce(application_name, '') FROM pg_stat_activity WHERE pid IS NOT NULL")
	if err != nil {
		b.Fatal(err)
	}
	type backend struct { // exported fields, for RowToStructByPos
		PID       int
		Typ, Name string
	}
	backends, err := pgx.CollectRows(rows, pgx.RowToStructByPos[backend])
	if err != nil {
		b.Fatal(err)
	}
	for _, be := range backends {
		if kind := backendKind(be.Typ, be.Name); kind != "" {
			c.live[be.PID], c.kinds[be.PID] = procs[be.PID].self, kind
		}
	}
	return c
}

// backendKind tells the bench's own backends ("bench") and the cluster's
// background processes ("background") from the replicator's ("": its
// sessions carry gobucardo's application_name; autovacuum workers come and
// go with the writes, and count with it).
func backendKind(backendType, applicationName string) string {
	switch {
	case backendType == "client backend" && applicationName == pg.ApplicationName:
		return ""
	case backendType == "client backend":
		return "bench"
	case backendType == "autovacuum worker":
		return ""
	default:
		return "background"
	}
}

// procStat is what /proc/<pid>/stat says of a process's CPU.
type procStat struct {
	comm     string // the command's name
	ppid     int
	self     time.Duration // utime + stime
	children time.Duration // cutime + cstime: of its children it waited for
}

// parseProcStat parses a /proc/<pid>/stat line.
func parseProcStat(line string) (procStat, error) {
	// comm, in parentheses, may hold spaces and parentheses: the fields
	// follow the last ')'.
	i := strings.LastIndexByte(line, ')')
	open := strings.IndexByte(line, '(')
	if i < 0 || open < 0 || open > i {
		return procStat{}, fmt.Errorf("no command in %q", line)
	}
	f := strings.Fields(line[i+1:]) // f[0] is field 3, state
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("%d fields after the command in %q", len(f), line)
	}
	var n [5]int64
	for j, k := range []int{1, 11, 12, 13, 14} { // ppid, utime, stime, cutime, cstime
		v, err := strconv.ParseInt(f[k], 10, 64)
		if err != nil {
			return procStat{}, fmt.Errorf("field %d of %q: %w", k+3, line, err)
		}
		n[j] = v
	}
	tick := time.Second / clockTicks
	return procStat{comm: line[open+1 : i], ppid: int(n[0]), self: time.Duration(n[1]+n[2]) * tick, children: time.Duration(n[3]+n[4]) * tick}, nil
}

// procTable is every process's stat, by pid.
type procTable map[int]procStat

func readProcs() (procTable, error) {
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	procs := procTable{}
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		st, err := parseProcStat(string(data))
		if err != nil {
			return nil, err
		}
		procs[pid] = st
	}
	return procs, nil
}

// tree is the CPU used by root and every live process under it, with that
// of the children each waited for (exited ones).
func (p procTable) tree(root int) time.Duration {
	var sum time.Duration
	for _, d := range p.treeByName(root) {
		sum += d
	}
	return sum
}

// treeByName is tree per command name (a process's own and that of the
// children it waited for).
func (p procTable) treeByName(root int) map[string]time.Duration {
	kids := map[int][]int{}
	for pid, st := range p {
		kids[st.ppid] = append(kids[st.ppid], pid)
	}
	out := map[string]time.Duration{}
	todo := []int{root}
	for len(todo) > 0 {
		pid := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if st, ok := p[pid]; ok {
			out[st.comm] += st.self + st.children
		}
		todo = append(todo, kids[pid]...)
	}
	return out
}

func (r *report) setIdle(server string, res []idleResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.noteServer(server)
	r.idle = res
}

func printIdle(w io.Writer, res []idleResult) {
	fmt.Fprintf(w, "\nreplicator CPU at idle: %d single-row commits/s, the daemon running (targets: <= 3 %% of one core; lag p50 <= 30 ms, p99 <= 150 ms)\n", idleRate)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "build\tseconds\tcommits\tGo processes\ttheir backends\ttotal\tbackends forked\tlag p50\tlag p99\tpostgres background")
	for _, r := range res {
		fmt.Fprintf(tw, "%s\t%.1f\t%d\t%.2f %%\t%.2f %%\t%.2f %%\t%d\t%.1f ms\t%.1f ms\t%.2f %%\n", r.build, r.elapsed.Seconds(), len(r.lags),
			r.pct(r.goCPU), r.pct(r.pgCPU), r.pct(r.goCPU+r.pgCPU), r.forks,
			pct(r.lags, 50).Seconds()*1000, pct(r.lags, 99).Seconds()*1000, r.pct(r.background))
	}
	_ = tw.Flush()
	for _, r := range res {
		var names []string
		for name := range r.byName {
			names = append(names, name)
		}
		sort.Strings(names)
		var parts []string
		for _, name := range names {
			parts = append(parts, fmt.Sprintf("%s %.2f %%", name, r.pct(r.byName[name])))
		}
		fmt.Fprintf(w, "  %s, Go processes by name: %s\n", r.build, strings.Join(parts, ", "))
	}
	fmt.Fprintln(w, "  % of one core over the measure, from /proc/<pid>/stat (user + system, 10 ms ticks): Go processes: mcp and")
	fmt.Fprintln(w, "    everything under it (controllers, kids, plugins), exited ones included; their backends: every process of")
	fmt.Fprintln(w, "    the source's and the target's clusters (exited ones included, through the postmaster's children's times)")
	fmt.Fprintln(w, "    but the bench's own sessions and the background processes (shown apart, not counted); autovacuum counts")
	fmt.Fprintln(w, "  backends forked: pg_stat_database.sessions on both clusters over the measure")
	fmt.Fprintln(w, "  lag: from each commit on the source to the row visible on the target (polled every millisecond)")
}

func TestParseProcStat(t *testing.T) {
	for _, tc := range []struct {
		line string
		want procStat
		bad  bool
	}{
		{line: "1234 (postgres) S 1200 1234 1234 0 -1 4194560 100 0 0 0 250 50 7 3 20 0 1 0 100 0 0",
			want: procStat{comm: "postgres", ppid: 1200, self: 3 * time.Second, children: 100 * time.Millisecond}},
		// A command with spaces and parentheses.
		{line: "77 (kid (s) x) R 76 77 77 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 5 0 0",
			want: procStat{comm: "kid (s) x", ppid: 76, self: 30 * time.Millisecond}},
		{line: "77 kid R 76", bad: true},
		{line: "77 (kid) R 76 1 2", bad: true},
		{line: "77 (kid) R 76 77 77 0 -1 0 0 0 0 0 x 2 0 0 20", bad: true},
	} {
		got, err := parseProcStat(tc.line)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("parseProcStat(%q) = %+v, %v; want %+v (error: %v)", tc.line, got, err, tc.want, tc.bad)
		}
	}
}

func TestProcTree(t *testing.T) {
	s := time.Second
	procs := procTable{
		1:  {ppid: 0, self: 100 * s},
		10: {ppid: 1, self: s, children: 2 * s}, // the daemon, a reaped child
		11: {ppid: 10, self: 3 * s},
		12: {ppid: 11, self: 4 * s, children: 5 * s},
		20: {ppid: 1, self: 50 * s},
	}
	if got := procs.tree(10); got != 15*s {
		t.Errorf("tree(10) = %v, want 15s", got)
	}
	if got := procs.tree(99); got != 0 {
		t.Errorf("tree of a process gone = %v", got)
	}
}

func TestBackendKind(t *testing.T) {
	for _, tc := range []struct{ typ, name, want string }{
		{"client backend", pg.ApplicationName, ""},
		{"client backend", "", "bench"},
		{"client backend", "psql", "bench"},
		{"autovacuum worker", "", ""},
		{"checkpointer", "", "background"},
		{"walwriter", "", "background"},
	} {
		if got := backendKind(tc.typ, tc.name); got != tc.want {
			t.Errorf("backendKind(%q, %q) = %q, want %q", tc.typ, tc.name, got, tc.want)
		}
	}
}
