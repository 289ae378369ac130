package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gobucardo/gobucardo/pkg/pg"
)

// Defaults of the purge benchmark's sizes.
const (
	defaultPurgeSeconds  = 60
	defaultPurgeInterval = 10 * time.Second
	purgeSampleEvery     = 3 * time.Second
)

// BenchmarkPurge measures the daemon's automatic purge under load: mcp run
// (--purge-interval BENCH_PURGE_INTERVAL, default 10s) replicates the
// source's pgbench tables while pgbench -c 4 runs on the source for
// BENCH_PURGE_SECONDS (default 60; 1800 for the long version). Every few
// seconds it samples the delta rows kept and the delta tables' size; it
// reports their maximum and the source's TPS over the first and the last
// fifth of the run, which would differ if the deltas (or their bloat) grew
// without bound.
func BenchmarkPurge(b *testing.B) {
	secs, err := envInt("BENCH_PURGE_SECONDS", defaultPurgeSeconds)
	if err != nil {
		b.Fatal(err)
	}
	interval := defaultPurgeInterval
	if v := os.Getenv("BENCH_PURGE_INTERVAL"); v != "" {
		if interval, err = time.ParseDuration(v); err != nil || interval <= 0 {
			b.Fatalf("BENCH_PURGE_INTERVAL=%q: want a positive duration such as 10s or 1m", v)
		}
	}
	ps := newPgbenchSync(b, "")
	stop, log := ps.m.startDaemon(b, "--purge-interval", interval.String())
	defer stop()
	src := ps.pgb.conn
	res := purgeResult{seconds: secs, interval: interval, clients: pgbenchClients}

	b.ResetTimer()
	progressf(b, "pgbench -c %d -T %d on the source, mcp run --purge-interval %s", pgbenchClients, secs, interval)
	every := max(1, secs/30) // pgbench's progress interval, seconds
	done := make(chan pgbenchProgress, 1)
	go func() { done <- ps.pgb.runProgress(b, secs, every) }()
	var out pgbenchProgress
	start := time.Now()
	tick := time.NewTicker(purgeSampleEvery)
	defer tick.Stop()
sampling:
	for {
		s := sampleDeltas(b, src)
		s.at = time.Since(start)
		res.samples = append(res.samples, s)
		select {
		case out = <-done:
			break sampling
		case <-tick.C:
		}
	}
	if out.err != "" {
		b.Fatal(out.err)
	}
	res.tps = out.tps
	res.intervalTPS = out.intervals

	// The target catches up; every delta it consumed is purged at the next
	// pass, so that what is left at the end is at most what came after it.
	caughtUp := time.Now()
	for !sameAccounts(b, src, ps.dst) {
		if time.Since(caughtUp) > 2*time.Minute {
			b.Fatal("the target did not catch up with pgbench within 2 minutes")
		}
		time.Sleep(100 * time.Millisecond)
	}
	res.catchUp = time.Since(caughtUp)
	wait := time.Now()
	res.end = sampleDeltas(b, src)
	for res.end.rows > 0 && time.Since(wait) < interval+30*time.Second {
		time.Sleep(500 * time.Millisecond)
		res.end = sampleDeltas(b, src)
	}
	b.StopTimer()
	res.passes, res.purged, res.longest = purgeLog(log.all())
	if res.passes == 0 {
		b.Fatalf("the MCP logged no purge in %ds", secs)
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(res.maxRows()), "max-kept-rows")
	b.ReportMetric(float64(res.maxBytes())/(1<<20), "max-delta-MB")
	first, last := res.fifths()
	b.ReportMetric(first, "tps-first-fifth")
	b.ReportMetric(last, "tps-last-fifth")
	results.setPurge(res)
}

// deltaSample is the delta rows kept on the source and the size of the
// delta tables (with their indexes and TOAST) at one moment.
type deltaSample struct {
	at    time.Duration
	rows  int64
	bytes int64
}

// sampleDeltas counts the delta rows kept and sizes every delta table.
func sampleDeltas(b *testing.B, conn *pgx.Conn) deltaSample {
	b.Helper()
	ctx := context.Background()
	rows, err := conn.Query(ctx, "SELECT delta_table FROM gobucardo.captured ORDER BY 1")
	if err != nil {
		b.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		b.Fatal(err)
	}
	var s deltaSample
	for _, t := range tables {
		var n, size int64
		delta := pg.Ident("gobucardo", t)
		if err := conn.QueryRow(ctx, "SELECT count(*), pg_total_relation_size($1::regclass) FROM "+delta, delta).Scan(&n, &size); err != nil {
			b.Fatal(err)
		}
		s.rows += n
		s.bytes += size
	}
	return s
}

// pgbenchProgress is a pgbench run with per-interval progress.
type pgbenchProgress struct {
	tps       float64
	intervals []intervalTPS // from pgbench -P
	err       string        // why the run failed
}

// intervalTPS is one pgbench -P line: the TPS of the interval ending at.
type intervalTPS struct {
	at  float64 // seconds since pgbench started
	tps float64
}

// progressLine is pgbench -P's line on stderr.
var progressLine = regexp.MustCompile(`^progress: ([0-9.]+) s, ([0-9.]+) tps`)

// runProgress runs the default script (or what extra, more pgbench
// arguments, says) for secs seconds with a progress line every `every`
// seconds. It runs in a goroutine of its own, so it reports a failure in
// its result instead of failing b.
func (p *pgbench) runProgress(b *testing.B, secs, every int, extra ...string) pgbenchProgress {
	args := []string{"-h", p.c.Host(), "-p", strconv.Itoa(p.c.Port()), "-U", "postgres", "-c", strconv.Itoa(pgbenchClients),
		"-j", strconv.Itoa(pgbenchThreads), "-T", strconv.Itoa(secs), "-P", strconv.Itoa(every)}
	args = append(append(args, extra...), p.db)
	cmd := exec.Command(p.bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return pgbenchProgress{err: fmt.Sprintf("pgbench %v: %v\n%s%s", args, err, stdout.Bytes(), stderr.Bytes())}
	}
	var r pgbenchProgress
	m := tpsLine.FindSubmatch(stdout.Bytes())
	if m == nil {
		return pgbenchProgress{err: fmt.Sprintf("pgbench printed no TPS:\n%s", stdout.Bytes())}
	}
	r.tps, _ = strconv.ParseFloat(string(m[1]), 64)
	sc := bufio.NewScanner(&stderr)
	for sc.Scan() {
		if m := progressLine.FindStringSubmatch(sc.Text()); m != nil {
			at, _ := strconv.ParseFloat(m[1], 64)
			tps, _ := strconv.ParseFloat(m[2], 64)
			r.intervals = append(r.intervals, intervalTPS{at: at, tps: tps})
		}
	}
	return r
}

// purgeLog reads the MCP's log for its purge passes: how many deleted
// something, how many rows in all, and the longest.
func purgeLog(log string) (passes int, rows int64, longest time.Duration) {
	for _, line := range strings.Split(log, "\n") {
		var e struct {
			Msg      string  `json:"msg"`
			Rows     int64   `json:"rows"`
			Duration float64 `json:"duration"` // seconds
		}
		if json.Unmarshal([]byte(line), &e) != nil || e.Msg != "purged consumed deltas" {
			continue
		}
		passes++
		rows += e.Rows
		longest = max(longest, time.Duration(e.Duration*float64(time.Second)))
	}
	return passes, rows, longest
}

// purgeResult is what the purge benchmark measured.
type purgeResult struct {
	seconds, clients int
	interval         time.Duration
	samples          []deltaSample
	end              deltaSample // once the target caught up and a pass ran
	tps              float64
	intervalTPS      []intervalTPS
	catchUp          time.Duration
	passes           int
	purged           int64
	longest          time.Duration
}

func (r purgeResult) maxRows() int64 {
	var m int64
	for _, s := range r.samples {
		m = max(m, s.rows)
	}
	return m
}

func (r purgeResult) maxBytes() int64 {
	var m int64
	for _, s := range r.samples {
		m = max(m, s.bytes)
	}
	return m
}

// fifths is the mean TPS of pgbench's intervals in the first and the last
// fifth of the run.
func (r purgeResult) fifths() (first, last float64) {
	span := float64(r.seconds) / 5
	var fs, ls float64
	var fn, ln int
	for _, iv := range r.intervalTPS {
		switch {
		case iv.at <= span:
			fs += iv.tps
			fn++
		case iv.at > float64(r.seconds)-span:
			ls += iv.tps
			ln++
		}
	}
	if fn > 0 {
		first = fs / float64(fn)
	}
	if ln > 0 {
		last = ls / float64(ln)
	}
	return first, last
}

func (r purgeResult) print(w io.Writer) {
	first, last := r.fifths()
	fmt.Fprintf(w, "\nautomatic purge under pgbench -c %d -T %d on the source (%.0f TPS), mcp run --purge-interval %s\n",
		r.clients, r.seconds, r.tps, r.interval)
	fmt.Fprintf(w, "  delta rows kept: max %d over %d samples (every %s), %d at the end; delta tables' size: max %s, %s at the end\n",
		r.maxRows(), len(r.samples), purgeSampleEvery, r.end.rows, megabytes(r.maxBytes()), megabytes(r.end.bytes))
	fmt.Fprintf(w, "  source TPS, first fifth %.0f, last fifth %.0f (%.2fx); %d purge passes deleted %d rows, the longest took %s;\n",
		first, last, last/first, r.passes, r.purged, seconds(r.longest))
	fmt.Fprintf(w, "    the target caught up %s after pgbench ended\n", seconds(r.catchUp))
	var trace []string
	step := max(1, len(r.samples)/20)
	for i := 0; i < len(r.samples); i += step {
		s := r.samples[i]
		trace = append(trace, fmt.Sprintf("%.0fs %d", s.at.Seconds(), s.rows))
	}
	fmt.Fprintf(w, "  kept rows over time: %s\n", strings.Join(trace, ", "))
}
