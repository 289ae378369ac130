package proc_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gobucardo/gobucardo/pkg/proc"
)

// helperEnv selects a helper mode when the test binary is run as a child by the tests.
const helperEnv = "GOBUCARDO_PROC_TEST_HELPER"

// longLine is written on stderr by the "stderr" helper, longer than a line is delivered in one piece.
var longLine = strings.Repeat("x", 100_000)

// init keeps the main goroutine on the main thread, so no test goroutine runs there: the runtime never
// lets the main thread exit, which TestStartSurvivesThreadExit relies on.
func init() { runtime.LockOSThread() }

// noRaceSleep spares a child built with -race the race detector's one-second sleep at exit.
const noRaceSleep = "GORACE=atexit_sleep_ms=0"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		helper(mode)
		return
	}
	m.Run()
}

// helper is the child side of the tests. Every mode that stays up prints "ready" (or a pid) on stdout
// once it is set up.
func helper(mode string) {
	switch mode {
	case "sleep":
		fmt.Println("ready")
	case "ignoreterm":
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ready")
	case "askexit": // exits with status 0 when it reads a line on stdin
		fmt.Println("ready")
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		return
	case "stderr":
		fmt.Fprint(os.Stderr, "one\n\ntwo\n"+longLine+"\nlast")
		os.Exit(3)
	case "middle": // starts a sleeping grandchild and prints its pid
		p, err := proc.Start(helperSpec("sleep"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println(p.Pid())
	default:
		fmt.Fprintln(os.Stderr, "unknown helper mode", mode)
		os.Exit(2)
	}
	time.Sleep(time.Hour)
}

// helperSpec runs the test binary in helper mode.
func helperSpec(mode string) proc.Spec {
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	return proc.Spec{Path: exe, Env: append(os.Environ(), noRaceSleep, helperEnv+"="+mode)}
}

// start starts a helper that is stopped when the test ends.
func start(t *testing.T, spec proc.Spec) *proc.Process {
	t.Helper()
	p, err := proc.Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop(nil, time.Second)
		_ = p.Stdin().Close()
		_ = p.Stdout().Close()
	})
	return p
}

// readLine reads one line from the child's stdout, failing the test after 10s.
func readLine(t *testing.T, p *proc.Process) string {
	t.Helper()
	out := p.Stdout().(*os.File)
	if err := out.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("read child stdout: %v", err)
	}
	return strings.TrimSuffix(line, "\n")
}

// waitDone waits up to 10s for p to be done.
func waitDone(t *testing.T, p *proc.Process) {
	t.Helper()
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("pid %d not done after 10s", p.Pid())
	}
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}

func TestStop(t *testing.T) {
	fail := func() error { return errors.New("no stop rpc") }
	tests := []struct {
		name  string
		mode  string
		ask   func(p *proc.Process) func() error
		grace time.Duration
		want  string
	}{
		{"exits when asked", "askexit", func(p *proc.Process) func() error {
			return func() error { _, err := p.Stdin().Write([]byte("stop\n")); return err }
		}, 10 * time.Second, proc.Exited},
		{"no ask", "sleep", nil, 10 * time.Second, proc.Terminated},
		{"ask fails", "sleep", func(*proc.Process) func() error { return fail }, 10 * time.Second, proc.Terminated},
		{"ask ignored", "sleep", func(p *proc.Process) func() error {
			return func() error { _, err := p.Stdin().Write([]byte("stop\n")); return err }
		}, 100 * time.Millisecond, proc.Terminated},
		{"SIGTERM ignored", "ignoreterm", nil, 200 * time.Millisecond, proc.Killed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := start(t, helperSpec(tt.mode))
			if got := readLine(t, p); got != "ready" {
				t.Fatalf("child said %q, want ready", got)
			}
			var ask func() error
			if tt.ask != nil {
				ask = tt.ask(p)
			}
			begin := time.Now()
			if got := p.Stop(ask, tt.grace); got != tt.want {
				t.Errorf("Stop = %q, want %q", got, tt.want)
			}
			if tt.want != proc.Killed && time.Since(begin) > 5*time.Second {
				t.Errorf("Stop took %v", time.Since(begin))
			}
			select {
			case <-p.Done():
			default:
				t.Fatal("Stop returned before Done")
			}
			wantCode := -1 // ended by a signal
			if tt.want == proc.Exited {
				wantCode = 0
			}
			if p.ExitCode() != wantCode || (p.Err() == nil) != (wantCode == 0) {
				t.Errorf("ExitCode = %d, Err = %v; want code %d", p.ExitCode(), p.Err(), wantCode)
			}
		})
	}
}

func TestStopAfterExit(t *testing.T) {
	p := start(t, helperSpec("stderr"))
	waitDone(t, p)
	if got := p.Stop(nil, time.Second); got != proc.Exited {
		t.Errorf("Stop = %q, want %q", got, proc.Exited)
	}
}

func TestExit(t *testing.T) {
	var lines []string // appended by one goroutine; read after Done
	spec := helperSpec("stderr")
	spec.Stderr = func(line []byte) { lines = append(lines, string(line)) }
	p := start(t, spec)
	waitDone(t, p)

	if len(lines) < 4 || !slices.Equal(lines[:3], []string{"one", "", "two"}) || lines[len(lines)-1] != "last" {
		t.Fatalf("stderr lines %.40q", lines)
	}
	long := lines[3 : len(lines)-1]
	if len(long) < 2 || strings.Join(long, "") != longLine {
		t.Errorf("long line arrived as %d pieces, joined length %d", len(long), len(strings.Join(long, "")))
	}
	for _, piece := range long {
		if len(piece) > 64<<10 {
			t.Errorf("piece of %d bytes", len(piece))
		}
	}

	var exitErr *exec.ExitError
	if p.ExitCode() != 3 || !errors.As(p.Err(), &exitErr) {
		t.Errorf("ExitCode = %d, Err = %v; want 3 and an *exec.ExitError", p.ExitCode(), p.Err())
	}
	if err := p.Signal(syscall.SIGTERM); !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("Signal after Done = %v, want os.ErrProcessDone", err)
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(p.Pid())); !os.IsNotExist(err) {
		t.Errorf("pid %d still in /proc after Done (zombie?): %v", p.Pid(), err)
	}
}

func TestStartError(t *testing.T) {
	if p, err := proc.Start(proc.Spec{Path: "/nonexistent/binary"}); err == nil {
		p.Stop(nil, time.Second)
		t.Fatal("Start of a missing binary succeeded")
	}
}

// TestPdeathsig kills a middle process and checks that its child dies with it.
func TestPdeathsig(t *testing.T) {
	middle := start(t, helperSpec("middle"))
	pid, err := strconv.Atoi(readLine(t, middle))
	if err != nil {
		t.Fatal(err)
	}
	if !alive(pid) {
		t.Fatalf("grandchild %d not running", pid)
	}
	if err := syscall.Kill(middle.Pid(), syscall.SIGKILL); err != nil { // the middle only, not its group
		t.Fatal(err)
	}
	waitDone(t, middle)
	for deadline := time.Now().Add(10 * time.Second); alive(pid); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("grandchild %d still running 10s after its parent was killed", pid)
		}
	}
}

// TestStartSurvivesThreadExit starts a child from a goroutine whose OS thread then exits: the child
// must not get its parent-death signal, since the process lives on.
func TestStartSurvivesThreadExit(t *testing.T) {
	var p *proc.Process
	var err error
	var wg sync.WaitGroup
	wg.Go(func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		p, err = proc.Start(helperSpec("sleep"))
	})
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(nil, time.Second) })
	if got := readLine(t, p); got != "ready" {
		t.Fatalf("child said %q, want ready", got)
	}
	// A negative check: a Pdeathsig bound to the exited thread would arrive within this time. This
	// sleep can only make the test pass wrongly, never fail wrongly.
	time.Sleep(200 * time.Millisecond)
	select {
	case <-p.Done():
		t.Fatalf("child died when the starting thread exited: %v", p.Err())
	default:
	}
}
