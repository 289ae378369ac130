// Package bridge lets package sdktest reach what package sdk keeps
// unexported, without widening sdk's public surface. Package sdk sets the
// variables when it is initialised; any importer of sdktest imports sdk.
package bridge

import (
	"context"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
)

var (
	// NewServer returns a gRPC server, configured as in a plugin process,
	// serving p (an sdk.Plugin) and logging to log.
	NewServer func(p any, log hclog.Logger) *grpc.Server
	// NewClient returns the host side (an *sdk.Client) on conn, as
	// dispensing from go-plugin does.
	NewClient func(ctx context.Context, conn *grpc.ClientConn) (any, error)
)
