package ipc

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"

	"google.golang.org/grpc"
)

// MaxMsgSize is the largest message either side sends or receives.
const MaxMsgSize = 64 << 20

// Claim takes the child's stdin and stdout for the transport and must be the child's first action.
// It moves them to new close-on-exec descriptors, then points fd 1 (and so os.Stdout) at stderr and
// fd 0 (os.Stdin) at /dev/null. It returns a Conn reading from the original stdin and writing to the
// original stdout.
func Claim() (net.Conn, error) {
	null, err := os.Open(os.DevNull)
	if err != nil {
		return nil, fmt.Errorf("ipc: claim: %w", err)
	}
	defer null.Close()

	syscall.ForkLock.RLock() // no fork may inherit the new descriptors before they are close-on-exec
	in, errIn := dupCloexec(0)
	out, errOut := dupCloexec(1)
	syscall.ForkLock.RUnlock()
	if err := errors.Join(errIn, errOut); err != nil {
		closeFDs(in, out)
		return nil, fmt.Errorf("ipc: claim: %w", err)
	}
	// Non-blocking descriptors go to the runtime poller, so deadlines work and Close interrupts a
	// pending Read.
	for _, fd := range []int{in, out} {
		if err := syscall.SetNonblock(fd, true); err != nil {
			closeFDs(in, out)
			return nil, fmt.Errorf("ipc: claim: %w", err)
		}
	}
	if err := syscall.Dup3(2, 1, 0); err != nil {
		closeFDs(in, out)
		return nil, fmt.Errorf("ipc: claim: stdout to stderr: %w", err)
	}
	if err := syscall.Dup3(int(null.Fd()), 0, 0); err != nil {
		closeFDs(in, out)
		return nil, fmt.Errorf("ipc: claim: stdin to %s: %w", os.DevNull, err)
	}
	return NewConn(os.NewFile(uintptr(in), "ipc-stdin"), os.NewFile(uintptr(out), "ipc-stdout")), nil
}

// dupCloexec returns a close-on-exec copy of fd; the caller holds syscall.ForkLock.
func dupCloexec(fd int) (int, error) {
	nfd, err := syscall.Dup(fd)
	if err != nil {
		return -1, fmt.Errorf("dup fd %d: %w", fd, err)
	}
	syscall.CloseOnExec(nfd)
	return nfd, nil
}

// closeFDs closes the descriptors that are not -1.
func closeFDs(fds ...int) {
	for _, fd := range fds {
		if fd >= 0 {
			_ = syscall.Close(fd)
		}
	}
}

// NewServer returns a gRPC server for Serve: messages of up to MaxMsgSize both ways, and Stop waits
// for running handlers. opt are applied after these.
func NewServer(opt ...grpc.ServerOption) *grpc.Server {
	return grpc.NewServer(append([]grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxMsgSize),
		grpc.MaxSendMsgSize(MaxMsgSize),
		grpc.WaitForHandlers(true),
	}, opt...)...)
}

// Serve serves srv over conn, the one connection to the parent. It returns nil when the parent goes
// away (EOF on conn: the parent closed it or died) or after srv.GracefulStop or srv.Stop, and an error
// if the connection fails otherwise. Once conn is gone Serve stops srv (a server made by NewServer
// waits for its handlers, whose contexts are cancelled).
func Serve(conn net.Conn, srv *grpc.Server) error {
	c := &watchedConn{Conn: conn, closed: make(chan struct{})}
	lis := &oneListener{conns: make(chan net.Conn, 1), connClosed: c.closed, closed: make(chan struct{})}
	lis.conns <- c
	err := srv.Serve(lis)
	srv.Stop() // no-op after GracefulStop or Stop
	if !errors.Is(err, errConnClosed) {
		if err != nil {
			return fmt.Errorf("ipc: serve: %w", err)
		}
		return nil
	}
	if err := c.failure(); err != nil {
		return fmt.Errorf("ipc: serve: connection to parent: %w", err)
	}
	return nil
}

// errConnClosed is returned by oneListener.Accept once its connection is closed.
var errConnClosed = errors.New("connection closed")

// watchedConn records how a connection ended.
type watchedConn struct {
	net.Conn
	once   sync.Once
	closed chan struct{} // closed by Close

	mu       sync.Mutex
	readErr  error // first Read error
	writeErr error // first Write error
}

func (c *watchedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil {
		c.mu.Lock()
		if c.readErr == nil {
			c.readErr = err
		}
		c.mu.Unlock()
	}
	return n, err
}

func (c *watchedConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if err != nil {
		c.mu.Lock()
		if c.writeErr == nil {
			c.writeErr = err
		}
		c.mu.Unlock()
	}
	return n, err
}

func (c *watchedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { close(c.closed) })
	return err
}

// failure returns why the connection ended, or nil if the parent went away: EOF on read, or a broken
// pipe on write.
func (c *watchedConn) failure() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case errors.Is(c.readErr, io.EOF), errors.Is(c.writeErr, syscall.EPIPE):
		return nil
	case c.readErr != nil && !errors.Is(c.readErr, os.ErrClosed):
		return c.readErr
	case c.writeErr != nil && !errors.Is(c.writeErr, os.ErrClosed):
		return c.writeErr
	default:
		return errors.New("closed by the gRPC transport")
	}
}

// oneListener accepts one connection, then blocks until it or the listener is closed.
type oneListener struct {
	conns      chan net.Conn   // holds the connection until accepted
	connClosed <-chan struct{} // closed with the connection
	once       sync.Once
	closed     chan struct{} // closed by Close
}

func (l *oneListener) Accept() (net.Conn, error) {
	select {
	case <-l.closed:
		return nil, net.ErrClosed
	default:
	}
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	case <-l.connClosed:
		return nil, errConnClosed
	}
}

func (l *oneListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *oneListener) Addr() net.Addr { return pipeAddr{} }
