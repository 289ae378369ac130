package proc

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// How Stop ended a child.
const (
	Exited     = "exited"     // by itself, or when asked
	Terminated = "terminated" // after SIGTERM
	Killed     = "killed"     // by SIGKILL
)

// stderrDelay bounds how long a reaped child's stderr is still read: a grandchild that inherited the
// pipe may keep it open.
const stderrDelay = time.Second

// maxLine is the longest stderr line handed to Spec.Stderr in one piece; longer lines are split.
const maxLine = 64 << 10

// Spec says which child to start.
type Spec struct {
	Path string   // the binary; looked up in PATH if it has no slash; also argv[0]
	Args []string // argv after argv[0], e.g. {"--sync", "s1"}
	Env  []string // the environment; nil: inherit this process's

	// Stderr is called for each line the child writes on stderr, without the trailing newline, from
	// one goroutine. The line is valid only during the call. Lines longer than 64 KiB arrive in
	// pieces. Nil: discard.
	Stderr func(line []byte)
}

// Process is a started child.
type Process struct {
	cmd    *exec.Cmd
	stdin  *os.File
	stdout *os.File
	done   chan struct{} // closed when reaped and stderr is drained
	err    error         // result of cmd.Wait, set before done is closed
}

// Start starts the child described by spec, with its stdin and stdout as pipes and stderr read line by
// line into spec.Stderr, in a process group of its own and with Pdeathsig SIGKILL. The caller closes
// Stdin and Stdout when done with them; the child's exit does not.
func Start(spec Spec) (*Process, error) {
	cmd := exec.Command(spec.Path, spec.Args...)
	cmd.Env = spec.Env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}

	var files []*os.File // every pipe end, for closing on error
	closeAll := func() {
		for _, f := range files {
			_ = f.Close()
		}
	}
	pipe := func() (r, w *os.File, err error) {
		r, w, err = os.Pipe()
		files = append(files, r, w)
		return r, w, err
	}
	inR, inW, err := pipe()
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("start %s: stdin: %w", spec.Path, err)
	}
	outR, outW, err := pipe()
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("start %s: stdout: %w", spec.Path, err)
	}
	errR, errW, err := pipe()
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("start %s: stderr: %w", spec.Path, err)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	if err := StartLocked(cmd); err != nil {
		closeAll()
		return nil, fmt.Errorf("start %s: %w", spec.Path, err)
	}
	// The child has its own copies of its ends.
	_, _, _ = inR.Close(), outW.Close(), errW.Close()

	p := &Process{cmd: cmd, stdin: inW, stdout: outR, done: make(chan struct{})}
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		readLines(errR, spec.Stderr)
	}()
	go func() {
		err := cmd.Wait()
		select {
		case <-drained:
		case <-time.After(stderrDelay):
		}
		_ = errR.Close() // unblocks readLines if a grandchild holds the pipe open
		<-drained
		p.err = err
		close(p.done)
	}()
	return p, nil
}

// readLines calls fn for each line read from r until r fails (EOF or closed).
func readLines(r io.Reader, fn func(line []byte)) {
	if fn == nil {
		_, _ = io.Copy(io.Discard, r)
		return
	}
	br := bufio.NewReaderSize(r, maxLine)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			fn(bytes.TrimSuffix(line, []byte("\n")))
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// Pid returns the child's process id, which is also its process group id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Stdin returns the write end of the child's fd 0.
func (p *Process) Stdin() io.WriteCloser { return p.stdin }

// Stdout returns the read end of the child's fd 1. It reaches EOF once the child (and any process that
// inherited the pipe) has exited.
func (p *Process) Stdout() io.ReadCloser { return p.stdout }

// Done is closed once the child has exited, has been reaped, and its stderr has been read to the end
// (or for up to a second after, if a grandchild keeps it open).
func (p *Process) Done() <-chan struct{} { return p.done }

// exited reports whether Done is closed.
func (p *Process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err returns how the child ended once Done is closed: nil if it exited with status 0, else an
// *exec.ExitError. Before Done it returns nil.
func (p *Process) Err() error {
	if !p.exited() {
		return nil
	}
	return p.err
}

// ExitCode returns the child's exit status once Done is closed; -1 before, or if a signal ended it.
func (p *Process) ExitCode() int {
	if !p.exited() {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// Signal sends sig to the child's process group. It returns os.ErrProcessDone once Done is closed.
func (p *Process) Signal(sig syscall.Signal) error {
	if p.exited() {
		return os.ErrProcessDone
	}
	if err := syscall.Kill(-p.Pid(), sig); err != nil {
		return fmt.Errorf("signal %v to pid %d: %w", sig, p.Pid(), err)
	}
	return nil
}

// wait waits up to d for Done.
func (p *Process) wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.done:
		return true
	case <-t.C:
		return false
	}
}

// Stop ends the child and waits for Done. If ask is not nil it is called first (for example a Stop RPC;
// it should not block for long) and, unless it fails, the child gets grace to exit. Then the group gets
// SIGTERM and grace again, then SIGKILL. Stop returns Exited, Terminated or Killed.
func (p *Process) Stop(ask func() error, grace time.Duration) string {
	if p.exited() {
		return Exited
	}
	if ask != nil && ask() == nil && p.wait(grace) {
		return Exited
	}
	if err := p.Signal(syscall.SIGTERM); errors.Is(err, os.ErrProcessDone) || errors.Is(err, syscall.ESRCH) {
		<-p.done // it exited by itself meanwhile
		return Exited
	}
	if p.wait(grace) {
		return Terminated
	}
	_ = p.Signal(syscall.SIGKILL) // fails only if it has just exited
	<-p.done
	return Killed
}
