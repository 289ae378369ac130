package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/gobucardo/gobucardo/pkg/pgtest"
)

// logged reports whether the MCP's log has a line at level from role
// whose message is msg.
func (d *daemon) logged(level, role, msg string) bool {
	for _, line := range strings.Split(d.logText(), "\n") {
		var e struct{ Level, Role, Msg string }
		if json.Unmarshal([]byte(line), &e) == nil && e.Level == level && e.Role == role && e.Msg == msg {
			return true
		}
	}
	return false
}

// TestDaemonSettings: mcp set reaches the running MCP, its controller and
// the kid without a restart of the MCP or the controller: log_level=debug
// makes the debug lines of all three appear; bad input changes nothing.
func TestDaemonSettings(t *testing.T) {
	c := pgtest.Shared(t)
	d := newDaemon(t, c)
	src, dst := d.twoDBs(c, c, c)
	d.startRun() // no --log-level: the log_level setting (info) applies
	c.Exec(t, src, "INSERT INTO public.t VALUES (1, 'at info')")
	d.eventually(15*time.Second, "row 1", func() bool { return d.count(dst, "public.t") == 1 })
	mcpPID, ctlPID := d.mcp.Process.Pid, d.pidOf("controller", "s")
	if d.logged("debug", "controller", "run") || d.logged("debug", "kid", "run done") {
		t.Fatal("debug lines at log level info")
	}

	// Bad input: one sentence, exit 1, nothing changed.
	for _, bad := range []struct{ arg, want string }{
		{"nosuch=1", `mcp: unknown setting "nosuch": the settings are kid_attempts, log_level,`},
		{"purge_interval=abc", `mcp: purge_interval takes a duration such as 30s, 5m or 1h (0: never), not "abc"`},
	} {
		out, code := d.try("set", "log_level=debug", bad.arg)
		if code != 1 || !strings.HasPrefix(out, bad.want) || strings.Count(strings.TrimSpace(out), "\n") > 0 {
			t.Errorf("mcp set log_level=debug %s: exit %d, %q; want exit 1 and %q", bad.arg, code, out, bad.want)
		}
	}
	if out := d.run(0, "show", "log_level", "purge_interval"); strings.Contains(out, "debug") || strings.Count(out, " default ") != 2 {
		t.Errorf("refused sets changed the settings:\n%s", out)
	}

	out := d.run(0, "set", "log_level=debug", "kid_attempts=3")
	if !strings.Contains(out, "log_level = debug, was info") || !strings.Contains(out, "The running MCP applies them now") {
		t.Errorf("mcp set printed %q", out)
	}
	d.eventually(15*time.Second, "the MCP's settings in effect", func() bool { return strings.Contains(d.logText(), `"log_level":"debug"`) })
	c.Exec(t, src, "INSERT INTO public.t VALUES (2, 'at debug')")
	d.eventually(15*time.Second, "row 2", func() bool { return d.count(dst, "public.t") == 2 })
	d.eventually(15*time.Second, "debug lines of the controller and the kid", func() bool {
		return d.logged("debug", "controller", "run") && d.logged("debug", "kid", "run done")
	})
	if got := d.pidOf("controller", "s"); got != ctlPID || d.mcp == nil || d.mcp.Process.Pid != mcpPID {
		t.Errorf("controller %d -> %d: a restart, where a reload was enough", ctlPID, got)
	}
	select {
	case err := <-d.exited:
		t.Fatalf("mcp run exited: %v", err)
	default:
	}

	// Back to the default: the debug lines stop (a line after the reload
	// would be at debug).
	d.run(0, "set", "log_level=default")
	d.eventually(15*time.Second, "log_level back to info", func() bool { return strings.Contains(d.logText(), `"log_level":"info"`) })
	d.eventually(15*time.Second, "the controller back at info", func() bool {
		return d.logged("info", "controller", "log level changed by the log_level setting") &&
			strings.Count(d.logText(), `"msg":"log level changed by the log_level setting"`) >= 2
	})
	before := strings.Count(d.logText(), `"level":"debug"`)
	runs := strings.Count(d.logText(), `"msg":"run done"`)
	c.Exec(t, src, "INSERT INTO public.t VALUES (3, 'at info again')")
	d.eventually(15*time.Second, "row 3", func() bool { return d.count(dst, "public.t") == 3 })
	// The controller logs the run once the kid has answered: the kid's
	// lines of that run are in by then.
	d.eventually(15*time.Second, "the run of row 3 logged", func() bool { return strings.Count(d.logText(), `"msg":"run done"`) > runs })
	if after := strings.Count(d.logText(), `"level":"debug"`); after != before {
		t.Errorf("%d debug lines after log_level went back to info", after-before)
	}
}
