package main

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gobucardo/gobucardo/pkg/pgtest"
)

// datagram is one sd_notify message, and when it arrived.
type datagram struct {
	text string
	at   time.Time
}

// notifySocket listens on a unixgram socket as systemd does for a
// Type=notify service; what arrives goes to the channel.
func notifySocket(t *testing.T, path string) <-chan datagram {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan datagram, 1000)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return // closed
			}
			ch <- datagram{string(buf[:n]), time.Now()}
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	return ch
}

// next returns the next datagram, or fails after limit.
func next(t *testing.T, ch <-chan datagram, limit time.Duration, what string) datagram {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(limit):
		t.Fatalf("no sd_notify message after %s: want %s", limit, what)
	}
	return datagram{}
}

// TestSystemdNotify runs mcp run as systemd runs a Type=notify service with
// WatchdogSec=1s: READY=1 once it holds the lock (a second MCP, refused,
// never says it), WATCHDOG=1 every half second, STOPPING=1 at mcp stop;
// the controllers it starts do not inherit NOTIFY_SOCKET or GOBUCARDO_DSN.
func TestSystemdNotify(t *testing.T) {
	c := pgtest.Shared(t)
	d := newDaemon(t, c)
	d.twoDBs(c, c, c)
	dir := t.TempDir()
	msgs := notifySocket(t, filepath.Join(dir, "notify"))
	base := d.env
	d.env = append(slices.Clip(base), "NOTIFY_SOCKET="+filepath.Join(dir, "notify"), "WATCHDOG_USEC=1000000")
	d.start()
	d.env = base

	ready := next(t, msgs, 15*time.Second, "READY=1")
	if !strings.HasPrefix(ready.text, "READY=1\n") || !strings.Contains(ready.text, "STATUS=holding the catalog's lock") {
		t.Fatalf("first message %q, want READY=1 and a STATUS", ready.text)
	}
	if out := d.run(0, "status", "--json"); !strings.Contains(out, `"mcp_running": true`) {
		t.Errorf("READY=1 but the lock is not held: %s", out)
	}

	// WATCHDOG=1 every WATCHDOG_USEC/2, well within WATCHDOG_USEC.
	last := ready.at
	for i := 0; i < 4; i++ {
		m := next(t, msgs, 3*time.Second, "WATCHDOG=1")
		if m.text != "WATCHDOG=1" {
			t.Fatalf("message %q, want WATCHDOG=1", m.text)
		}
		if gap := m.at.Sub(last); gap > time.Second || gap < 250*time.Millisecond {
			t.Errorf("WATCHDOG=1 %s after the previous message, want about 500ms (WATCHDOG_USEC=1000000)", gap)
		}
		last = m.at
	}

	// The controller inherits neither systemd's variables (it is not the
	// main pid systemd listens to) nor GOBUCARDO_DSN (it gets the DSN over
	// its pipe).
	var ctl int
	d.eventually(15*time.Second, "a controller", func() bool { ctl = d.pidOf("controller", "s"); return ctl != 0 })
	environ, err := os.ReadFile("/proc/" + strconv.Itoa(ctl) + "/environ")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"NOTIFY_SOCKET=", "WATCHDOG_USEC=", "GOBUCARDO_DSN="} {
		if strings.Contains("\x00"+string(environ), "\x00"+v) {
			t.Errorf("the controller inherited %s", v)
		}
	}

	// A second MCP, refused the lock, is never ready.
	second := notifySocket(t, filepath.Join(dir, "second"))
	cmd := exec.Command(filepath.Join(d.bin, "mcp"), "run")
	cmd.Env = append(slices.Clip(base), "NOTIFY_SOCKET="+filepath.Join(dir, "second"))
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "another MCP is running") {
		t.Errorf("second mcp run: %v, %s", err, out)
	}
	select {
	case m := <-second:
		t.Errorf("the refused MCP sent %q", m.text)
	case <-time.After(300 * time.Millisecond):
	}

	// mcp stop: STOPPING=1, then nothing more.
	d.stop()
	var got []string
	for drained := false; !drained; {
		select {
		case m := <-msgs:
			got = append(got, m.text)
		case <-time.After(300 * time.Millisecond):
			drained = true
		}
	}
	if len(got) == 0 || !strings.HasPrefix(got[len(got)-1], "STOPPING=1\n") || slices.ContainsFunc(got[:len(got)-1], func(s string) bool {
		return s != "WATCHDOG=1"
	}) {
		t.Errorf("after mcp stop: %q, want WATCHDOG=1 messages, then STOPPING=1 last", got)
	}
}

// unitFile is a systemd unit as section -> key -> values.
type unitFile map[string]map[string][]string

func parseUnit(t *testing.T, path string) unitFile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unitFile{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not KEY=VALUE in a section: %q", path, n, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

// one returns the single value of key in section, failing when there is
// not exactly one.
func (u unitFile) one(t *testing.T, section, key string) string {
	t.Helper()
	v := u[section][key]
	if len(v) != 1 {
		t.Fatalf("[%s] %s: %q, want one value", section, key, v)
	}
	return v[0]
}

// TestSystemdUnit checks contrib/systemd/gobucardo.service against what
// mcp run does, and with systemd-analyze verify where systemd is installed.
func TestSystemdUnit(t *testing.T) {
	path := filepath.Join("..", "..", "contrib", "systemd", "gobucardo.service")
	u := parseUnit(t, path)
	if got := u.one(t, "Service", "Type"); got != "notify" {
		t.Errorf("Type=%s: mcp run sends READY=1 (Type=notify)", got)
	}
	execStart := strings.Fields(u.one(t, "Service", "ExecStart"))
	if len(execStart) < 2 || !filepath.IsAbs(execStart[0]) || filepath.Base(execStart[0]) != "mcp" || execStart[1] != "run" {
		t.Fatalf("ExecStart=%q: want /ABSOLUTE/PATH/mcp run (mcp start would fork away from systemd)", execStart)
	}
	if user := u.one(t, "Service", "User"); user == "" || user == "root" {
		t.Errorf("User=%q: run as an unprivileged user", user)
	}
	if r := u.one(t, "Service", "Restart"); r != "on-failure" && r != "always" {
		t.Errorf("Restart=%s: restart an MCP that failed", r)
	}
	watchdog, err := time.ParseDuration(u.one(t, "Service", "WatchdogSec"))
	if err != nil || watchdog < 2*time.Second {
		t.Errorf("WatchdogSec: %v %s; want a duration of 2s or more (the main loop may be busy a moment)", err, watchdog)
	}
	stop, err := time.ParseDuration(u.one(t, "Service", "TimeoutStopSec"))
	if err != nil || stop < 30*time.Second {
		t.Errorf("TimeoutStopSec: %v %s; the MCP lets each controller stop for 15s, then stops itself", err, stop)
	}
	if km := u.one(t, "Service", "KillMode"); km != "mixed" {
		t.Errorf("KillMode=%s: SIGTERM to the MCP alone (mixed), which stops its children in order", km)
	}
	if ef := u.one(t, "Service", "EnvironmentFile"); !filepath.IsAbs(strings.TrimPrefix(ef, "-")) {
		t.Errorf("EnvironmentFile=%s: want an absolute path (GOBUCARDO_DSN)", ef)
	}
	if r := u.one(t, "Service", "ExecReload"); !strings.Contains(r, "-HUP $MAINPID") {
		t.Errorf("ExecReload=%s: mcp run reloads on SIGHUP", r)
	}
	if w := u.one(t, "Install", "WantedBy"); w != "multi-user.target" {
		t.Errorf("WantedBy=%s", w)
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Logf("systemd-analyze is not installed (apt-get install systemd): the unit was only parsed")
		return
	}
	// verify wants ExecStart's binary: the one just built.
	unit, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(t.TempDir(), "gobucardo.service")
	text := strings.Replace(string(unit), execStart[0], filepath.Join(binaries(t), "mcp"), 1)
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, analyze, "verify", tmp).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
