package ipc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gobucardo/gobucardo/pkg/proc"
)

// Child is a child process with a gRPC client connection to the server on its stdin and stdout.
type Child struct {
	*proc.Process
	Conn *grpc.ClientConn

	pipe *Conn
}

// errRedial is returned when gRPC tries to connect a second time.
var errRedial = errors.New("ipc: connection to child is gone; no redial")

// Start starts spec with proc.Start and returns a client connection over the child's stdin and stdout.
// The connection never redials: once the child is gone, calls fail with codes.Unavailable.
func Start(spec proc.Spec) (*Child, error) {
	p, err := proc.Start(spec)
	if err != nil {
		return nil, fmt.Errorf("ipc: %w", err)
	}
	pipe := NewConn(p.Stdout(), p.Stdin())
	var dialed atomic.Bool
	cc, err := grpc.NewClient("passthrough:///child",
		grpc.WithTransportCredentials(insecure.NewCredentials()), // private pipes
		grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) {
			if dialed.Swap(true) {
				return nil, errRedial
			}
			return pipe, nil
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMsgSize), grpc.MaxCallSendMsgSize(MaxMsgSize)),
		grpc.WithDisableRetry(),
	)
	if err != nil {
		_ = pipe.Close()
		p.Stop(nil, 0)
		return nil, fmt.Errorf("ipc: client for %s: %w", spec.Path, err)
	}
	cc.Connect()
	return &Child{Process: p, Conn: cc, pipe: pipe}, nil
}

// Close closes the client connection and the child's stdin and stdout; the child sees EOF and should
// exit. Close does not wait for it: use Done, or Stop.
func (c *Child) Close() error {
	err := errors.Join(c.Conn.Close(), c.pipe.Close())
	if err != nil {
		return fmt.Errorf("ipc: close child pid %d: %w", c.Pid(), err)
	}
	return nil
}
