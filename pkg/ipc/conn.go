package ipc

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// Conn is a net.Conn over a pipe pair: it reads from one stream and writes to another. Deadlines are
// passed on to the streams that support them (an *os.File of a pipe does); on others they fail.
type Conn struct {
	r    io.Reader
	w    io.Writer
	once sync.Once
	err  error // of the first Close
}

// NewConn returns a Conn reading from r and writing to w. Close closes each of them that is an
// io.Closer.
func NewConn(r io.Reader, w io.Writer) *Conn {
	return &Conn{r: r, w: w}
}

// Read reads from the read stream.
func (c *Conn) Read(b []byte) (int, error) { return c.r.Read(b) }

// Write writes to the write stream.
func (c *Conn) Write(b []byte) (int, error) { return c.w.Write(b) }

// Close closes both streams; it is safe to call more than once.
func (c *Conn) Close() error {
	c.once.Do(func() {
		for _, s := range []any{c.r, c.w} {
			if cl, ok := s.(io.Closer); ok {
				c.err = errors.Join(c.err, cl.Close())
			}
		}
	})
	return c.err
}

// pipeAddr is the address of both ends of a Conn.
type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// LocalAddr returns a dummy address.
func (c *Conn) LocalAddr() net.Addr { return pipeAddr{} }

// RemoteAddr returns a dummy address.
func (c *Conn) RemoteAddr() net.Addr { return pipeAddr{} }

// errNoDeadline is returned for a deadline on a stream that does not support one.
var errNoDeadline = errors.New("ipc: stream does not support deadlines")

// SetDeadline sets the read and write deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	return errors.Join(c.SetReadDeadline(t), c.SetWriteDeadline(t))
}

// SetReadDeadline sets the deadline of the read stream.
func (c *Conn) SetReadDeadline(t time.Time) error {
	if d, ok := c.r.(interface{ SetReadDeadline(time.Time) error }); ok {
		return d.SetReadDeadline(t)
	}
	return errNoDeadline
}

// SetWriteDeadline sets the deadline of the write stream.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	if d, ok := c.w.(interface{ SetWriteDeadline(time.Time) error }); ok {
		return d.SetWriteDeadline(t)
	}
	return errNoDeadline
}
