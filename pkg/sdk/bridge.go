package sdk

import (
	"context"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"

	"github.com/gobucardo/gobucardo/pkg/sdk/internal/bridge"
	"github.com/gobucardo/gobucardo/pkg/sdk/internal/handlerpb"
)

func init() {
	bridge.NewServer = func(p any, log hclog.Logger) *grpc.Server {
		s := newGRPCServer(nil)
		handlerpb.RegisterHandlerServer(s, newServer(p.(Plugin), log))
		return s
	}
	bridge.NewClient = func(ctx context.Context, conn *grpc.ClientConn) (any, error) {
		return newClient(ctx, conn)
	}
}
