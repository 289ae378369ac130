package pgtest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/gobucardo/gobucardo/pkg/proc"
)

// process is a started child; its one goroutine owns cmd.Wait.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // result of cmd.Wait, set before done is closed
}

// spawn starts cmd as a child that gets SIGQUIT when the test binary exits, in a process group of its
// own, as the given user (nil: the current one).
func spawn(cmd *exec.Cmd, cred *syscall.Credential) (*process, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:    true,
		Pdeathsig:  syscall.SIGQUIT,
		Credential: cred,
	}
	if err := proc.StartLocked(cmd); err != nil { // so that Pdeathsig follows the test binary, not a thread
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// run runs cmd through spawn and returns its combined output in the error if it fails.
func run(cmd *exec.Cmd, cred *syscall.Credential) error {
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	p, err := spawn(cmd, cred)
	if err != nil {
		return err
	}
	<-p.done
	if p.err != nil {
		return fmt.Errorf("%s: %w\n%s", cmd.Path, p.err, out.Bytes())
	}
	return nil
}

// signal sends sig to the process, if it has not exited.
func (p *process) signal(sig syscall.Signal) {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Signal(sig) // fails only if it has just exited
	}
}

// wait waits up to d for the process to exit.
func (p *process) wait(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

// shutdown asks the process to exit with sig and escalates to SIGQUIT, then SIGKILL, if it does not.
func (p *process) shutdown(sig syscall.Signal, grace time.Duration) error {
	p.signal(sig)
	if p.wait(grace) {
		return nil
	}
	p.signal(syscall.SIGQUIT)
	if p.wait(10 * time.Second) {
		return fmt.Errorf("pid %d ignored %v for %v: sent SIGQUIT", p.cmd.Process.Pid, sig, grace)
	}
	p.signal(syscall.SIGKILL)
	<-p.done
	return fmt.Errorf("pid %d ignored %v and SIGQUIT: killed", p.cmd.Process.Pid, sig)
}

// exited returns the process's end as an error, if it has exited.
func (p *process) exited() error {
	select {
	case <-p.done:
		if p.err == nil {
			return errors.New("exited with status 0")
		}
		return p.err
	default:
		return nil
	}
}

// pidAlive reports whether a process pid exists (and is not a zombie).
func pidAlive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return !os.IsNotExist(err)
	}
	// pid (comm) state ...: comm may contain spaces and parentheses, the state follows the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}
