package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"
	"golang.org/x/sys/unix"

	"github.com/gobucardo/gobucardo/pkg/proc"
)

// waitDelay bounds how long a plugin's stdout and stderr are still read
// once its process group is gone: a process that left the group (setsid)
// may hold them open.
const waitDelay = time.Second

var _ runner.Runner = (*process)(nil)

// process runs a plugin for go-plugin (plugin.ClientConfig.RunnerFunc) the
// way pkg/proc runs the daemon's children: in a process group of its own,
// started from a thread that never exits with Pdeathsig SIGKILL (so it dies
// with the kid, even a kid killed with SIGKILL), and killed as a group. The
// group is killed too as soon as the plugin exits, so nothing a plugin
// forked outlives it or holds the pipes go-plugin reads; whatever escaped
// the group is cut off after waitDelay. One goroutine owns cmd.Wait.
//
// go-plugin's own runner kills only the plugin and reads its pipes to EOF
// before it waits for it: a plugin that forked a child hung the host until
// the child ended, and left it behind.
type process struct {
	cmd        *exec.Cmd
	sum        *plugin.SecureConfig
	socketDir  string // go-plugin's, for the plugin's socket
	outR, errR *io.PipeReader
	outW, errW *io.PipeWriter

	mu   sync.Mutex
	pid  int  // also the process group; 0 before Start
	gone bool // the plugin has exited: its group is not signalled again

	done chan struct{} // closed when reaped and the pipes are closed
	err  error         // from cmd.Wait, set before done is closed
}

// newProcess returns the process of the plugin binary at path, checked
// against sum before it starts; tmpl is the command go-plugin prepared (its
// environment carries the handshake), socketDir the directory it made for
// the plugin's socket.
func newProcess(path string, sum *plugin.SecureConfig, tmpl *exec.Cmd, socketDir string) *process {
	cmd := exec.Command(path)
	cmd.Env, cmd.Stdin = tmpl.Env, tmpl.Stdin
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = waitDelay
	p := &process{cmd: cmd, sum: sum, socketDir: socketDir, done: make(chan struct{})}
	p.outR, p.outW = io.Pipe()
	p.errR, p.errW = io.Pipe()
	cmd.Stdout, cmd.Stderr = p.outW, p.errW
	return p
}

// Start checks the binary's checksum and starts it. When it fails it
// removes the socket directory, which go-plugin removes only for a plugin
// that started.
func (p *process) Start(context.Context) (err error) {
	defer func() {
		if err != nil {
			_ = os.RemoveAll(p.socketDir)
		}
	}()
	if ok, err := p.sum.Check(p.cmd.Path); err != nil {
		return fmt.Errorf("verify the checksum: %w", err)
	} else if !ok {
		return plugin.ErrChecksumsDoNotMatch
	}
	if err := proc.StartLocked(p.cmd); err != nil {
		return err
	}
	p.mu.Lock()
	p.pid = p.cmd.Process.Pid
	p.mu.Unlock()
	go p.wait()
	return nil
}

// wait reaps the plugin. Once it has exited, and before it is reaped (so
// that its pid, the group's id, cannot be reused meanwhile), what is left
// of its group is killed.
func (p *process) wait() {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, p.pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	p.mu.Lock()
	_ = syscall.Kill(-p.pid, syscall.SIGKILL)
	p.gone = true
	p.mu.Unlock()
	err := p.cmd.Wait() // the pipes: at most waitDelay more
	_, _ = p.outW.Close(), p.errW.Close()
	p.err = err
	close(p.done)
}

// Wait waits until the plugin is reaped and its pipes are closed.
func (p *process) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Kill kills the plugin's process group.
func (p *process) Kill(context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pid == 0 || p.gone {
		return nil
	}
	if err := syscall.Kill(-p.pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill plugin %s (pid %d): %w", p.cmd.Path, p.pid, err)
	}
	return nil
}

// Pid returns the plugin's process id, 0 before Start.
func (p *process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pid
}

// ID returns the pid as text, "" before Start (go-plugin then has nothing
// to kill).
func (p *process) ID() string {
	if pid := p.Pid(); pid != 0 {
		return strconv.Itoa(pid)
	}
	return ""
}

func (p *process) Stdout() io.ReadCloser           { return p.outR }
func (p *process) Stderr() io.ReadCloser           { return p.errR }
func (p *process) Name() string                    { return p.cmd.Path }
func (p *process) Diagnose(context.Context) string { return "" }

// PluginToHost and HostToPlugin leave addresses as they are: the plugin
// runs on this host.
func (p *process) PluginToHost(network, addr string) (string, string, error) {
	return network, addr, nil
}

func (p *process) HostToPlugin(network, addr string) (string, string, error) {
	return network, addr, nil
}
