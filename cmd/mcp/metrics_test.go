package main

import (
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobucardo/gobucardo/pkg/pgtest"
)

// freeAddr returns a TCP address on 127.0.0.1 that nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// get fetches http://addr/path and returns the status and the body; a
// status 0 means no answer.
func get(addr, path string) (int, string) {
	client := http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err.Error()
	}
	return resp.StatusCode, string(body)
}

// sample returns the value of the first series of the exposition text whose
// name is name and whose labels include labels ("k", "v", ...), and
// whether there is one.
func sample(text, name string, labels ...string) (float64, bool) {
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		series, val := line[:i], line[i+1:]
		if series != name && !strings.HasPrefix(series, name+"{") {
			continue
		}
		ok := true
		for j := 0; j+1 < len(labels); j += 2 {
			ok = ok && strings.Contains(series, labels[j]+`="`+labels[j+1]+`"`)
		}
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(val, 64)
		return v, err == nil
	}
	return 0, false
}

// scrape returns the value of one series of the daemon's /metrics; a
// missing series fails the test.
func (d *daemon) scrape(addr, name string, labels ...string) float64 {
	d.t.Helper()
	code, body := get(addr, "/metrics")
	if code != http.StatusOK {
		d.t.Fatalf("GET /metrics: %d %s", code, body)
	}
	v, ok := sample(body, name, labels...)
	if !ok {
		d.t.Fatalf("/metrics has no %s%v", name, labels)
	}
	return v
}

// TestDaemonMetrics scrapes the endpoint of a real MCP: health, readiness
// that follows the main database, counters that move with runs, controller
// restarts and purge passes, and the standard process metrics.
func TestDaemonMetrics(t *testing.T) {
	shared := pgtest.Shared(t)
	mainC := pgtest.New(t) // stopped below
	d := newDaemon(t, mainC)
	src, dst := d.twoDBs(shared, shared, shared)
	addr := freeAddr(t)
	d.start("--metrics-addr", addr, "--purge-interval", "1s")

	if code, body := get(addr, "/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	d.eventually(10*time.Second, "/readyz 200", func() bool {
		code, body := get(addr, "/readyz")
		d.lastTry = body
		return code == http.StatusOK
	})
	for _, m := range []string{"process_resident_memory_bytes", "go_goroutines", "gobucardo_catalog_up"} {
		if v := d.scrape(addr, m); v <= 0 {
			t.Errorf("%s = %v", m, v)
		}
	}

	// runs_total moves with runs.
	runs := func() float64 {
		return d.scrape(addr, "gobucardo_sync_runs_total", "sync", "s", "outcome", "good") +
			d.scrape(addr, "gobucardo_sync_runs_total", "sync", "s", "outcome", "empty")
	}
	before := runs()
	inserted := d.scrape(addr, "gobucardo_sync_rows_inserted_total", "sync", "s")
	shared.Exec(t, src, "INSERT INTO public.t SELECT g, 'x' FROM generate_series(1, 10) g")
	d.eventually(10*time.Second, "10 rows on the target", func() bool {
		return strings.Count(contents(t, shared, dst, "public.t"), "(") == 10
	})
	d.run(0, "kick", "s", "--timeout", "20s")
	d.eventually(10*time.Second, "runs_total and rows_inserted_total moved", func() bool {
		return runs() >= before+1 && d.scrape(addr, "gobucardo_sync_rows_inserted_total", "sync", "s") >= inserted+10
	})
	if v := d.scrape(addr, "gobucardo_sync_run_duration_seconds_count", "sync", "s"); v < before+1 {
		t.Errorf("run duration count %v, want at least %v", v, before+1)
	}
	if v := d.scrape(addr, "gobucardo_sync_last_good_run_timestamp_seconds", "sync", "s"); time.Since(time.Unix(int64(v), 0)) > time.Minute {
		t.Errorf("last good run at %v", time.Unix(int64(v), 0))
	}

	// A controller killed is restarted, and counted.
	if v := d.scrape(addr, "gobucardo_controller_restarts_total", "sync", "s"); v != 0 {
		t.Errorf("controller restarts before any: %v", v)
	}
	ctl := d.pidOf("controller", "s")
	if err := syscall.Kill(ctl, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	d.eventually(15*time.Second, "one controller restart counted", func() bool {
		return d.scrape(addr, "gobucardo_controller_restarts_total", "sync", "s") == 1
	})

	// The lag of target B rises while the sync is paused under writes, and
	// falls back to 0 once it runs again.
	d.eventually(15*time.Second, "B in step", func() bool {
		v, ok := sample(func() string { _, b := get(addr, "/metrics"); return b }(), "gobucardo_sync_lag_seconds", "sync", "s", "db", "B")
		return ok && v == 0
	})
	d.run(0, "pause", "s")
	shared.Exec(t, src, "INSERT INTO public.t SELECT g, 'y' FROM generate_series(11, 15) g")
	d.eventually(15*time.Second, "B behind while paused", func() bool {
		return d.scrape(addr, "gobucardo_sync_lag_seconds", "sync", "s", "db", "B") >= 1 &&
			d.scrape(addr, "gobucardo_sync_pending_rows", "sync", "s", "db", "B") == 5
	})
	d.run(0, "resume", "s")
	d.eventually(15*time.Second, "B in step after resume", func() bool {
		return d.scrape(addr, "gobucardo_sync_lag_seconds", "sync", "s", "db", "B") == 0 &&
			d.scrape(addr, "gobucardo_sync_pending_rows", "sync", "s", "db", "B") == 0
	})

	// A kid killed with SIGKILL between runs is found dead by the next
	// run, which starts another: counted once, and nothing lost.
	if v := d.scrape(addr, "gobucardo_kid_restarts_total", "sync", "s"); v != 0 {
		t.Errorf("kid restarts before any: %v", v)
	}
	var kid int
	d.eventually(10*time.Second, "a kid", func() bool { kid = d.pidOf("kid", "s"); return kid != 0 })
	if err := syscall.Kill(kid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	shared.Exec(t, src, "INSERT INTO public.t SELECT g, 'z' FROM generate_series(16, 20) g")
	d.eventually(15*time.Second, "20 rows on the target after the kid was killed", func() bool {
		return strings.Count(contents(t, shared, dst, "public.t"), "(") == 20
	})
	d.eventually(10*time.Second, "one kid restart counted", func() bool {
		return d.scrape(addr, "gobucardo_kid_restarts_total", "sync", "s") == 1
	})
	// ps is published as processes come and go: look until a new kid shows.
	d.eventually(10*time.Second, "a new kid after the kill of "+strconv.Itoa(kid), func() bool {
		k := d.pidOf("kid", "s")
		return k != 0 && k != kid
	})
	// Every source readable.
	if v := d.scrape(addr, "gobucardo_sync_source_up", "sync", "s", "db", "A"); v != 1 {
		t.Errorf("gobucardo_sync_source_up{db=A} = %v with A up", v)
	}

	// The purge runs every second on the source db A.
	d.eventually(15*time.Second, "a purge pass on A", func() bool {
		v, _ := sample(func() string { _, b := get(addr, "/metrics"); return b }(), "gobucardo_purge_passes_total", "db", "A", "outcome", "ok")
		return v >= 1
	})

	// The main database gone: not ready, with the reason on one line, but
	// healthy; back: ready again.
	mainC.Stop(t)
	d.eventually(20*time.Second, "/readyz 503", func() bool {
		code, body := get(addr, "/readyz")
		d.lastTry = body
		return code == http.StatusServiceUnavailable
	})
	if _, body := get(addr, "/readyz"); strings.Count(strings.TrimSpace(body), "\n") != 0 || !strings.HasPrefix(body, "not ready: ") {
		t.Errorf("/readyz body %q: want one line saying why", body)
	}
	if code, _ := get(addr, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz with the main db down: %d", code)
	}
	if v := d.scrape(addr, "gobucardo_catalog_up"); v != 0 {
		t.Errorf("gobucardo_catalog_up with the main db down: %v", v)
	}
	mainC.Start(t)
	d.eventually(30*time.Second, "/readyz 200 again", func() bool {
		code, body := get(addr, "/readyz")
		d.lastTry = body
		return code == http.StatusOK
	})
	d.stop()
	if code, _ := get(addr, "/healthz"); code != 0 {
		t.Errorf("/healthz answers %d after the MCP stopped", code)
	}
}

// TestDaemonMetricsAddrInUse: a taken metrics address stops mcp run at
// once, with one sentence naming the address and the flag.
func TestDaemonMetricsAddrInUse(t *testing.T) {
	d := newDaemon(t, pgtest.Shared(t))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	out, code := d.try("run", "--metrics-addr", addr)
	if code != 1 || !strings.Contains(out, "address "+addr+" (--metrics-addr or the metrics_addr setting) is already in use") {
		t.Errorf("mcp run --metrics-addr %s (taken): exit %d, %q", addr, code, out)
	}
	t.Logf("mcp run printed: %s", out)
	// Nothing started.
	if out := d.run(0, "ps"); !strings.Contains(out, "No MCP is running") {
		t.Errorf("mcp ps after the refused start: %q", out)
	}
}

// TestDaemonMetricsSetting: the metrics_addr setting serves the metrics of
// an mcp run started without --metrics-addr, and the running MCP follows
// its changes: a new address is served and the old one closed, with the
// counters going on; a taken address is refused in the log and the old
// one kept; an empty one stops the metrics. With --metrics-addr, the
// setting does not move them.
func TestDaemonMetricsSetting(t *testing.T) {
	shared := pgtest.Shared(t)
	d := newDaemon(t, shared)
	d.twoDBs(shared, shared, shared)
	addr := freeAddr(t)
	d.run(0, "set", "metrics_addr="+addr)
	d.start()
	d.eventually(10*time.Second, "/readyz 200 at the metrics_addr setting", func() bool {
		code, body := get(addr, "/readyz")
		d.lastTry = body
		return code == http.StatusOK
	})
	ctl := d.pidOf("controller", "s")
	if err := syscall.Kill(ctl, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	d.eventually(15*time.Second, "one controller restart counted", func() bool {
		return d.scrape(addr, "gobucardo_controller_restarts_total", "sync", "s") == 1
	})

	// A new address: served, the old one closed, the counters kept.
	moved := freeAddr(t)
	d.run(0, "set", "metrics_addr="+moved)
	d.eventually(10*time.Second, "/metrics on the new address", func() bool {
		code, body := get(moved, "/metrics")
		d.lastTry = body
		return code == http.StatusOK
	})
	if code, _ := get(addr, "/healthz"); code != 0 {
		t.Errorf("the old address %s still answers (%d) after the move", addr, code)
	}
	if v := d.scrape(moved, "gobucardo_controller_restarts_total", "sync", "s"); v != 1 {
		t.Errorf("controller restarts on the new address: %v, want the 1 counted before the move", v)
	}

	// A taken address: said in the log, and the metrics stay where they are.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d.run(0, "set", "metrics_addr="+ln.Addr().String())
	d.eventually(10*time.Second, "the refused address in the log", func() bool {
		return strings.Contains(d.logText(), "metrics still served on the old address: the metrics_addr setting's cannot be bound")
	})
	if code, _ := get(moved, "/healthz"); code != http.StatusOK {
		t.Errorf("the metrics left %s for a taken address: %d", moved, code)
	}

	// Empty: no metrics.
	d.run(0, "set", "metrics_addr=")
	d.eventually(10*time.Second, "no metrics once metrics_addr is empty", func() bool {
		code, _ := get(moved, "/healthz")
		return code == 0
	})
	d.stop()

	// --metrics-addr pins the address: the setting does not move it.
	pinned := freeAddr(t)
	d.start("--metrics-addr", pinned)
	d.eventually(10*time.Second, "/healthz on --metrics-addr", func() bool { code, _ := get(pinned, "/healthz"); return code == http.StatusOK })
	other := freeAddr(t)
	d.run(0, "set", "metrics_addr="+other)
	d.run(0, "reload")
	time.Sleep(time.Second) // what must not happen has had its chance
	if code, _ := get(pinned, "/healthz"); code != http.StatusOK {
		t.Errorf("--metrics-addr %s stopped answering after a change of the setting: %d", pinned, code)
	}
	if code, _ := get(other, "/healthz"); code != 0 {
		t.Errorf("the setting's %s answers although --metrics-addr pins the address", other)
	}
	d.stop()
}

// TestDaemonMetricsPlugins: the calls of a run to its plugins reach the
// real /metrics by customcode and outcome, the calls that answered as
// exactly as they were made (one per conflict), and a call that failed
// (the plugin answered an error) counted as one.
func TestDaemonMetricsPlugins(t *testing.T) {
	c := pgtest.Shared(t)
	d := newDaemon(t, c)
	a, b := c.NewDB(t), c.NewDB(t)
	for _, db := range []string{a, b} {
		c.Exec(t, db, `CREATE TABLE public.t (id int PRIMARY KEY, v int); CREATE TABLE public.error (id int PRIMARY KEY, v int)`)
	}
	d.run(0, "add", "db", "A", "dsn="+c.DSN(a))
	d.run(0, "add", "db", "B", "dsn="+c.DSN(b))
	d.run(0, "add", "table", "public.t", "public.error", "db=A", "relgroup=rg")
	d.run(0, "add", "sync", "s", "relgroup=rg", "dbs=A:source,B:source")
	d.run(0, "add", "customcode", "newest", "plugin="+filepath.Join(plugins(t), "highest"), "whenrun=conflict", "table=public.t", "column=v")
	// misbehave answers an error for every conflict of public.error.
	d.run(0, "add", "customcode", "broken", "plugin="+filepath.Join(plugins(t), "misbehave"), "whenrun=conflict", "table=public.error")
	addr := freeAddr(t)
	d.start("--metrics-addr", addr)
	metricsText := func() string { _, body := get(addr, "/metrics"); return body }

	c.Exec(t, a, "INSERT INTO public.t SELECT g, 0 FROM generate_series(1, 3) g; INSERT INTO public.error VALUES (1, 0)")
	d.eventually(30*time.Second, "B has A's rows", func() bool {
		return d.count(b, "public.t") == 3 && d.count(b, "public.error") == 1
	})
	if _, ok := sample(metricsText(), "gobucardo_plugin_calls_total"); ok {
		t.Errorf("plugin calls counted before any conflict:\n%s", metricsText())
	}

	// Three conflicts on public.t: three calls of newest, answered.
	d.pause()
	c.Exec(t, a, "UPDATE public.t SET v = id + 10")
	c.Exec(t, b, "UPDATE public.t SET v = id + 20")
	d.run(0, "resume", "s")
	d.eventually(30*time.Second, "A and B the same", func() bool {
		return contents(t, c, a, "public.t") == contents(t, c, b, "public.t")
	})
	d.eventually(10*time.Second, "three calls of newest counted", func() bool {
		v, ok := sample(metricsText(), "gobucardo_plugin_calls_total", "sync", "s", "code", "newest", "outcome", "ok")
		return ok && v == 3
	})
	if v := d.scrape(addr, "gobucardo_plugin_call_seconds_total", "sync", "s", "code", "newest"); v <= 0 || v > 30 {
		t.Errorf("seconds of newest's three calls: %v", v)
	}
	if got := contents(t, c, b, "public.t"); got != "(1,21),(2,22),(3,23)" {
		t.Errorf("public.t after the conflicts: %s, want B's higher versions", got)
	}

	// One conflict on public.error: broken answers an error, the run fails
	// (and is retried, failing again: at least one failure counted).
	d.pause()
	c.Exec(t, a, "UPDATE public.error SET v = 1")
	c.Exec(t, b, "UPDATE public.error SET v = 2")
	d.run(0, "resume", "s")
	d.eventually(30*time.Second, "broken's error counted", func() bool {
		v, ok := sample(metricsText(), "gobucardo_plugin_calls_total", "sync", "s", "code", "broken", "outcome", "error")
		return ok && v >= 1
	})
	if v, ok := sample(metricsText(), "gobucardo_plugin_calls_total", "sync", "s", "code", "broken", "outcome", "ok"); ok && v != 0 {
		t.Errorf("broken's calls counted as answered: %v", v)
	}
	if v := d.scrape(addr, "gobucardo_sync_runs_total", "sync", "s", "outcome", "bad"); v < 1 {
		t.Errorf("bad runs: %v, want the run the error failed", v)
	}
	if v := d.scrape(addr, "gobucardo_plugin_calls_total", "sync", "s", "code", "newest", "outcome", "ok"); v != 3 {
		t.Errorf("newest's calls moved to %v without conflicts on public.t", v)
	}
	d.stop()
}
