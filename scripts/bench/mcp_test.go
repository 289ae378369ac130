package bench

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobucardo/gobucardo/pkg/testbin"
)

// mcpBinary builds the binaries of this module's cmd/ once per test binary
// and returns the path of mcp; controller and kid are beside it.
func mcpBinary(b *testing.B) string {
	b.Helper()
	return filepath.Join(testbin.Build(b, "github.com/gobucardo/gobucardo/cmd/..."), "mcp")
}

// pluginBinary builds the example plugins once and returns the path of the
// one named name.
func pluginBinary(b *testing.B, name string) string {
	b.Helper()
	return filepath.Join(testbin.Build(b, "github.com/gobucardo/gobucardo/plugins/..."), name)
}

// mcp runs the mcp binary against one main database.
type mcp struct {
	bin string
	dsn string // of the main database
}

// procRun is what one mcp process did and cost.
type procRun struct {
	stdout  string
	elapsed time.Duration // wall time from start to exit
	maxRSS  int64         // bytes
	cpu     time.Duration // user + system
}

// run runs mcp with args and fails b unless it exits 0.
func (m mcp) run(b *testing.B, args ...string) procRun {
	b.Helper()
	return m.runWithStderr(b, nil, args...)
}

// runWithStderr is run, copying the child's stderr to w as well when w is
// not nil.
func (m mcp) runWithStderr(b *testing.B, w io.Writer, args ...string) procRun {
	b.Helper()
	cmd := exec.Command(m.bin, append([]string{"--dsn", m.dsn}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if w != nil {
		cmd.Stderr = io.MultiWriter(&stderr, w)
	}
	start := time.Now()
	err := cmd.Run()
	elapsed := time.Since(start)
	if err != nil {
		b.Fatalf("mcp %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	r := procRun{stdout: stdout.String(), elapsed: elapsed}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.maxRSS = ru.Maxrss * 1024 // KiB on Linux
		r.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return r
}

// syncRun runs sync once: quietly, or with its progress stamped on stderr
// under BENCH_PHASES=1.
func (m mcp) syncRun(b *testing.B, sync string) procRun {
	b.Helper()
	if os.Getenv("BENCH_PHASES") != "1" {
		return m.run(b, "sync", "run", sync, "--quiet")
	}
	return m.runWithStderr(b, &stampedLines{start: time.Now()}, "sync", "run", sync)
}

// startDaemon starts `mcp run` with args, its output into log, and waits
// until it answers mcp ping; stop stops it with mcp stop and waits for it.
func (m mcp) startDaemon(b *testing.B, args ...string) (stop func(), log *lockedBuffer) {
	b.Helper()
	stop, log, _ = m.startDaemonPID(b, args...)
	return stop, log
}

// startDaemonPID is startDaemon, also returning the daemon's pid.
func (m mcp) startDaemonPID(b *testing.B, args ...string) (stop func(), log *lockedBuffer, pid int) {
	b.Helper()
	daemon := exec.Command(m.bin, append([]string{"--dsn", m.dsn, "run"}, args...)...)
	log = &lockedBuffer{}
	daemon.Stdout, daemon.Stderr = log, log
	if err := daemon.Start(); err != nil {
		b.Fatal(err)
	}
	stop = func() {
		m.run(b, "stop")
		_ = daemon.Wait()
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := exec.Command(m.bin, "--dsn", m.dsn, "ping").Run(); err == nil {
			return stop, log, daemon.Process.Pid
		}
		if time.Now().After(deadline) {
			_ = daemon.Process.Kill()
			_ = daemon.Wait()
			b.Fatalf("the MCP is not up after 30s:\n%s", log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stampedLines is a writer that prints each line written to it on stderr,
// prefixed with the time since start: the phases of a run as they happen.
type stampedLines struct {
	start time.Time
	buf   bytes.Buffer
}

func (s *stampedLines) Write(p []byte) (int, error) {
	s.buf.Write(p)
	for {
		line, err := s.buf.ReadString('\n')
		if err != nil { // no full line yet: keep it for the next write
			s.buf.Reset()
			s.buf.WriteString(line)
			return len(p), nil
		}
		fmt.Fprintf(os.Stderr, "    %7.3fs  %s", time.Since(s.start).Seconds(), line)
	}
}
