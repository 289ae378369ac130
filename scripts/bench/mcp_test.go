package bench

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// build is the mcp binary built once per test binary, in a directory that
// TestMain removes.
var build struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// mcpBinary builds the binaries of this module (found with go env GOMOD)
// once and returns the path of mcp; controller and kid are beside it, the
// example plugins in plugins/.
func mcpBinary(b *testing.B) string {
	b.Helper()
	build.once.Do(func() {
		gomod, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			build.err = fmt.Errorf("go env GOMOD: %w", err)
			return
		}
		root := filepath.Dir(strings.TrimSpace(string(gomod)))
		if build.dir, build.err = os.MkdirTemp("", "gobucardo-bench-"); build.err != nil {
			return
		}
		build.bin = filepath.Join(build.dir, "mcp")
		// mcp with its controller and kid beside it, for mcp run.
		cmd := exec.Command("go", "build", "-o", build.dir+"/", "./cmd/...")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build ./cmd/... in %s: %w\n%s", root, err, out)
			return
		}
		// The example plugins, in plugins/ beside it.
		cmd = exec.Command("go", "build", "-o", filepath.Join(build.dir, "plugins")+"/", "./plugins/...")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build ./plugins/... in %s: %w\n%s", root, err, out)
		}
	})
	if build.err != nil {
		b.Fatal(build.err)
	}
	return build.bin
}

// removeBuildDir removes the directory of the mcp binary, if one was built.
func removeBuildDir() {
	if build.dir != "" {
		_ = os.RemoveAll(build.dir)
	}
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
			return stop, log
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
