package pluginhost

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/gobucardo/gobucardo/pkg/catalog"
	"github.com/gobucardo/gobucardo/pkg/replicate"
	"github.com/gobucardo/gobucardo/pkg/testbin"
)

func TestMain(m *testing.M) {
	m.Run()
	testbin.Cleanup()
}

// These tests start real plugin processes: the example plugin highest, and
// shell scripts that fork a child (sleep) that holds the plugin's stdout
// and stderr.

// highestBin returns the path of the example plugin highest.
func highestBin(t *testing.T) string {
	t.Helper()
	return filepath.Join(testbin.Build(t, "github.com/gobucardo/gobucardo/plugins/highest"), "highest")
}

// script writes an executable shell script that starts `sleep 150` in the
// background, writes its pid to the returned file, and then runs tail.
func script(t *testing.T, tail string) (path, pidFile string) {
	t.Helper()
	dir := t.TempDir()
	path, pidFile = filepath.Join(dir, "plugin.sh"), filepath.Join(dir, "child.pid")
	body := fmt.Sprintf("#!/bin/sh\nsleep 150 &\necho $! > %s\n%s\n", pidFile, tail)
	if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path, pidFile
}

// code is a conflict customcode running path, pinned to its checksum.
func code(t *testing.T, name, path string, settings map[string]string) replicate.CustomCode {
	t.Helper()
	abs, sum, err := catalog.PluginChecksum(path)
	if err != nil {
		t.Fatal(err)
	}
	return replicate.CustomCode{Name: name, Plugin: abs, SHA256: sum, WhenRun: "conflict", Settings: settings}
}

// childPid reads the pid the script wrote, waiting for it a little.
func childPid(t *testing.T, pidFile string) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		data, err := os.ReadFile(pidFile)
		if pid, perr := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && perr == nil {
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("the script wrote no pid to %s: %v", pidFile, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive reports whether pid runs (a zombie waiting for a reaper does not).
func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state ...: comm may hold spaces, the state follows the last ')'.
	rest := data[bytes.LastIndexByte(data, ')')+1:]
	return !bytes.HasPrefix(bytes.TrimSpace(rest), []byte("Z"))
}

// waitGone fails t unless pid stops running within d.
func waitGone(t *testing.T, pid int, d time.Duration, what string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for alive(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("%s: pid %d still runs after %s", what, pid, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStartTimeoutForkingScript: a plugin that never hands-shake while its
// forked child holds the pipes fails at the start timeout (not when the
// child ends), and the child dies with it.
func TestStartTimeoutForkingScript(t *testing.T) {
	path, pidFile := script(t, "wait")
	const startTimeout = 2 * time.Second
	began := time.Now()
	_, err := start(context.Background(), zaptest.NewLogger(t), code(t, "forker", path, nil), startTimeout)
	took := time.Since(began)
	if err == nil || !strings.Contains(err.Error(), "timeout while waiting for plugin to start") {
		t.Fatalf("start: %v", err)
	}
	if limit := startTimeout + waitDelay + 2*time.Second; took > limit {
		t.Errorf("start failed after %s, want at most %s", took, limit)
	}
	waitGone(t, childPid(t, pidFile), 2*time.Second, "the forked child of a plugin that timed out")
}

// TestPluginExitsLeavingChild: a plugin that exits at once fails the start
// at once, even though its child still holds the pipes, and the child is
// killed.
func TestPluginExitsLeavingChild(t *testing.T) {
	path, pidFile := script(t, "exit 3")
	began := time.Now()
	_, err := start(context.Background(), zaptest.NewLogger(t), code(t, "quitter", path, nil), 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "cannot start it") {
		t.Fatalf("start: %v", err)
	}
	if took := time.Since(began); took > waitDelay+3*time.Second {
		t.Errorf("start failed after %s", took)
	}
	waitGone(t, childPid(t, pidFile), 2*time.Second, "the child of a plugin that exited")
}

// TestCloseKillsGroup: a working plugin (highest, exec'd by a script that
// forked a child first) answers through the host; closing the host kills
// its whole process group at once.
func TestCloseKillsGroup(t *testing.T) {
	path, pidFile := script(t, "exec "+highestBin(t))
	h := New(zaptest.NewLogger(t))
	hs, err := h.Load(context.Background(), []replicate.CustomCode{code(t, "newest", path, map[string]string{"column": "version"})})
	if err != nil {
		t.Fatal(err)
	}
	ps := h.Processes()
	if len(ps) != 1 || ps[0].Code != "newest" || ps[0].PID == 0 {
		t.Fatalf("processes %+v", ps)
	}
	res, err := hs.Conflict[""].Handler.Resolve(context.Background(), versions("3", "5"))
	if err != nil || res.Action != replicate.ResolveWinner || res.DB != "B" {
		t.Fatalf("resolve: %+v %v", res, err)
	}
	child := childPid(t, pidFile)
	began := time.Now()
	h.Close()
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("Close took %s", took)
	}
	waitGone(t, ps[0].PID, 2*time.Second, "the plugin after Close")
	waitGone(t, child, 2*time.Second, "the plugin's child after Close")
}

// TestKillWhileCalling: a plugin killed with SIGKILL from outside while its
// child runs is seen as dead, its group is gone, and the next Load starts
// it again.
func TestKillWhileCalling(t *testing.T) {
	path, pidFile := script(t, "exec "+highestBin(t))
	h := New(zap.NewNop())
	t.Cleanup(h.Close)
	c := code(t, "newest", path, map[string]string{"column": "version"})
	hs, err := h.Load(context.Background(), []replicate.CustomCode{c})
	if err != nil {
		t.Fatal(err)
	}
	pid, child := h.Processes()[0].PID, childPid(t, pidFile)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, child, 5*time.Second, "the child of a killed plugin")
	_, err = hs.Conflict[""].Handler.Resolve(context.Background(), versions("3", "5"))
	if err == nil || !strings.Contains(err.Error(), "died during the call") {
		t.Errorf("a call to a dead plugin: %v", err)
	}
	hs, err = h.Load(context.Background(), []replicate.CustomCode{c})
	if err != nil {
		t.Fatal(err)
	}
	if again := h.Processes(); len(again) != 1 || again[0].PID == pid {
		t.Errorf("after the kill: %+v (was pid %d)", again, pid)
	}
	if res, err := hs.Conflict[""].Handler.Resolve(context.Background(), versions("7", "2")); err != nil || res.DB != "A" {
		t.Errorf("resolve after the restart: %+v %v", res, err)
	}
}

// TestChecksumChanged: a binary that is not the one registered does not
// run.
func TestChecksumChanged(t *testing.T) {
	path, pidFile := script(t, "exit 0")
	c := code(t, "changed", path, nil)
	if err := os.WriteFile(path, []byte("#!/bin/sh\necho changed > "+pidFile+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := start(context.Background(), zap.NewNop(), c, 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "the file has changed since it was registered") {
		t.Fatalf("start: %v", err)
	}
	if _, err := os.Stat(pidFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the changed file ran: %v", err)
	}
}

// versions is a conflict on public.item id 1 between A and B, whose rows
// have the given version.
func versions(a, b string) replicate.ConflictRow {
	row := func(v string) replicate.Row {
		id := "1"
		return replicate.Row{{Name: "id", Type: "integer", Value: &id}, {Name: "version", Type: "bigint", Value: &v}}
	}
	now := time.Now()
	return replicate.ConflictRow{Sync: "s1", Table: "public.item", Key: row(a)[:1],
		Sources: []replicate.SourceRow{{DB: "A", Row: row(a), ChangedAt: now}, {DB: "B", Row: row(b), ChangedAt: now}}}
}
