package main

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gobucardo/gobucardo/pkg/pgtest"
)

// TestDaemonLag: a sync paused under writes falls behind: mcp status shows
// its lag rising, per source, table and target, and mcp ping goes from OK
// to WARNING to CRITICAL with Nagios' exit statuses; once resumed it
// catches up, the lag falls to about 0, the sync is in step and ping is OK
// again. Without --warning and --critical, ping checks the sync's own
// overdue and expired; either flag replaces both. Bad arguments to ping are
// UNKNOWN.
func TestDaemonLag(t *testing.T) {
	c := pgtest.Shared(t)
	d := newDaemon(t, c)
	src, dst := d.twoDBs(c, c, c, "overdue=2s", "expired=6s")
	d.start()
	ping := []string{"ping", "--sync", "s", "--warning", "2s", "--critical", "6s"}

	id := 0
	write := func() {
		id++
		c.Exec(t, src, "INSERT INTO public.t VALUES ($1, 'v')", id)
	}
	write()
	d.eventually(15*time.Second, "the first row replicated and s in step", func() bool {
		return d.count(dst, "public.t") == 1 && d.status("s").InStep
	})
	if l := d.status("s"); l.LagSeconds != 0 || l.Pending != 0 || l.Rate.Runs < 1 || l.Rate.RowsPerSecond <= 0 || l.Rate.LastGood == nil {
		t.Errorf("in step: %+v", l)
	}
	if out := d.run(0, ping...); !strings.HasPrefix(out, "OK: sync s in step, last good run ") || !strings.Contains(out, "| 's lag'=0.000s;2;6;0 's pending'=0;;;0") {
		t.Errorf("ping in step: %q", out)
	}

	d.run(0, "pause", "s")
	var first syncJSON
	d.eventually(15*time.Second, "a lag over 0 while paused", func() bool {
		write()
		first = d.status("s")
		return first.LagSeconds > 0 && first.Pending > 0
	})
	warned := false
	d.eventually(20*time.Second, "ping CRITICAL", func() bool {
		write()
		out, code := d.try(ping...)
		switch {
		case code == 1 && strings.HasPrefix(out, "WARNING: sync s lag ") && strings.Contains(out, "(warning at 2s)") && strings.Contains(out, "; paused: "):
			if !warned {
				t.Logf("mcp %s: exit 1:\n%s", strings.Join(ping, " "), out)
			}
			warned = true
		case code == 2 && strings.HasPrefix(out, "CRITICAL: sync s lag ") && strings.Contains(out, "(critical at 6s)"):
			t.Logf("mcp %s: exit 2:\n%s", strings.Join(ping, " "), out)
			return true
		case code != 0:
			t.Fatalf("ping while paused: exit %d: %q", code, out)
		}
		return false
	})
	if !warned {
		t.Error("ping went from OK to CRITICAL without a WARNING")
	}
	l := d.status("s")
	if l.LagSeconds < 6 || l.LagSeconds <= first.LagSeconds || l.Pending <= first.Pending || l.InStep ||
		len(l.Backlog) != 1 || l.Backlog[0].LagSeconds != l.LagSeconds ||
		len(l.Backlog[0].Tables) != 1 || l.Backlog[0].Tables[0].Table != "t" || l.Backlog[0].Tables[0].Pending != l.Pending ||
		len(l.Targets) != 1 || l.Targets[0].DB != "B" || l.Targets[0].LagSeconds != l.LagSeconds {
		t.Errorf("lag while paused: first %+v, then %+v", first, l)
	}
	// All syncs (there is one) with the thresholds: the same verdict, one
	// line per sync after the first.
	out, code := d.try("ping", "--warning", "2s", "--critical", "6s")
	t.Logf("mcp ping --warning 2s --critical 6s: exit %d:\n%s", code, out)
	if lines := strings.Split(strings.TrimSpace(out), "\n"); code != 2 || len(lines) != 2 ||
		!strings.HasPrefix(lines[0], "CRITICAL: sync s lag ") || !strings.Contains(lines[0], "; 1 of 1 active sync not OK; MCP pid ") ||
		!strings.HasPrefix(lines[1], "CRITICAL: sync s lag ") {
		t.Errorf("ping of every sync: exit %d: %q", code, out)
	}
	// The sync's own thresholds, without the flags; a flag replaces both.
	out, code = d.try("ping", "--sync", "s")
	t.Logf("mcp ping --sync s (overdue=2s expired=6s): exit %d:\n%s", code, out)
	if code != 2 || !strings.HasPrefix(out, "CRITICAL: sync s lag ") || !strings.Contains(out, "(critical at 6s)") ||
		!regexp.MustCompile(`\| 's lag'=[\d.]+s;2;6;0 `).MatchString(out) {
		t.Errorf("ping --sync s with its own thresholds: exit %d: %q", code, out)
	}
	out, code = d.try("ping", "--sync", "s", "--warning", "1h")
	if code != 0 || !strings.HasPrefix(out, "OK: sync s lag ") || !regexp.MustCompile(`\| 's lag'=[\d.]+s;3600;;0 `).MatchString(out) {
		t.Errorf("ping --sync s --warning 1h (the flag wins): exit %d: %q", code, out)
	}
	table := d.run(0, "status")
	t.Logf("mcp status while paused:\n%s", table)
	if !regexp.MustCompile(`(?m)^Name +State +Lag +Pending +Rows/s +Last good +Time +Last I/D/C +Last bad +Time$`).MatchString(table) ||
		!regexp.MustCompile(`(?m)^s +paused +[\d.]+s +\d+ +[\d.]+k? +\d+s ago +`).MatchString(table) {
		t.Errorf("status while paused:\n%s", table)
	}
	detail := d.run(0, "status", "s")
	t.Logf("mcp status s while paused:\n%s", detail)
	for _, want := range []string{"\nLag:           ", ": the oldest change not applied everywhere yet is that old\n",
		"\n  public.t:    ", "\nTarget B:      in step with the sync; ", "\nRun rate:      ", " overdue=2s expired=6s\n"} {
		if !strings.Contains(detail, want) {
			t.Errorf("status s while paused lacks %q:\n%s", want, detail)
		}
	}

	d.run(0, "resume", "s")
	d.eventually(30*time.Second, "the lag back under a second under writes", func() bool {
		write()
		l := d.status("s")
		return l.LagSeconds < 1
	})
	d.eventually(30*time.Second, "s in step once the writes stop", func() bool { return d.status("s").InStep })
	if d.count(dst, "public.t") != id {
		t.Errorf("%d rows on the target, want %d", d.count(dst, "public.t"), id)
	}
	out = d.run(0, ping...)
	t.Logf("mcp %s once resumed:\n%s", strings.Join(ping, " "), out)
	if !strings.HasPrefix(out, "OK: sync s in step, last good run ") {
		t.Errorf("ping once resumed: %q", out)
	}
	if out := d.run(0, "ping", "--warning", "2s"); !strings.HasPrefix(out, "OK: MCP pid ") || !strings.Contains(out, "; 1 active sync checked | 's lag'=0.000s;2;;0") {
		t.Errorf("ping of every sync once resumed: %q", out)
	}
	if out := d.run(0, "ping"); !strings.Contains(out, "; 1 active sync checked | 's lag'=0.000s;2;6;0") {
		t.Errorf("ping of every sync once resumed, with their own thresholds: %q", out)
	}

	// Bad arguments are UNKNOWN (3), in one sentence.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"ping", "--sync", "nope"}, "UNKNOWN: there is no sync nope: mcp list syncs lists them\n"},
		{[]string{"ping", "--warning", "10m", "--critical", "5m"}, "UNKNOWN: --warning 10m0s is above --critical 5m0s: a lag would be critical before it warns\n"},
		{[]string{"ping", "--critical", "soon"}, `UNKNOWN: --critical "soon": use a duration such as 30s, 5m or 1h, or 0 for none` + "\n"},
	} {
		if out, code := d.try(tc.args...); code != 3 || out != tc.want {
			t.Errorf("mcp %s: exit %d, %q; want 3, %q", strings.Join(tc.args, " "), code, out, tc.want)
		}
	}
}
