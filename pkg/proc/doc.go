// Package proc starts and stops the daemon's child processes.
//
// Start runs a child with its stdin and stdout as pipes (for pkg/ipc) and hands each line it writes on
// stderr to a callback. The child runs in a process group of its own and gets SIGKILL if its parent dies
// (Pdeathsig). Pdeathsig fires when the OS thread that forked the child exits, not the process, so every
// child is started from one goroutine locked to an OS thread that never exits (StartLocked). One
// goroutine per child owns cmd.Wait, so no child is left a zombie.
//
// Stop asks a child to exit (usually a Stop RPC), then sends SIGTERM, then SIGKILL, each step after a
// grace period, and always waits for the child to be reaped.
//
// How long a supervisor waits before it starts a failed child again is pkg/backoff's to say.
//
// Usage reads the CPU time and resident memory of a process from /proc. The package is Linux only.
package proc
