package proc

import (
	"os/exec"
	"runtime"
	"sync"
)

// startRequest asks the starter thread to start cmd.
type startRequest struct {
	cmd  *exec.Cmd
	done chan<- error
}

var startRequests = sync.OnceValue(func() chan<- startRequest {
	reqs := make(chan startRequest)
	go starter(reqs)
	return reqs
})

// starter starts every child of StartLocked. It locks itself to its OS thread and never returns (the
// channel is never closed), so the thread lives as long as the process. It is the one goroutine of the
// package nobody waits for.
func starter(reqs <-chan startRequest) {
	runtime.LockOSThread() // never unlocked, see above
	for r := range reqs {
		r.done <- r.cmd.Start()
	}
}

// StartLocked calls cmd.Start on an OS thread that never exits, so that a parent-death signal set in
// cmd.SysProcAttr (Pdeathsig) is sent when this process dies and not when the thread of the calling
// goroutine happens to exit. The caller sets SysProcAttr and waits for cmd as usual.
func StartLocked(cmd *exec.Cmd) error {
	done := make(chan error, 1)
	startRequests() <- startRequest{cmd: cmd, done: done}
	return <-done
}
