package sdk

import (
	"context"
	"net"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/gobucardo/gobucardo/pkg/sdk/internal/handlerpb"
)

// ServeInProcess serves p in this process, over an in-memory gRPC
// connection with the plugin's server options (without TLS), and returns
// the host's Client for it, as Dispense gives it, and a function that stops
// both. The plugin's log lines go to log (nil: nowhere). It is for tests:
// package sdktest is built on it. A plugin binary calls Serve; a host
// starts the plugin with go-plugin and calls Dispense.
func ServeInProcess(ctx context.Context, p Plugin, log hclog.Logger) (*Client, func(), error) {
	lis := bufconn.Listen(1 << 20)
	srv := newGRPCServer(nil)
	handlerpb.RegisterHandlerServer(srv, newServer(p, log))
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
	var conn *grpc.ClientConn
	stop := func() {
		if conn != nil {
			_ = conn.Close()
		}
		srv.Stop()
		<-served
	}
	conn, err := grpc.NewClient("passthrough:///sdk-in-process",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		stop()
		return nil, nil, errorf("dial in process: %w", err)
	}
	c, err := newClient(ctx, conn)
	if err != nil {
		stop()
		return nil, nil, err
	}
	return c, stop, nil
}
