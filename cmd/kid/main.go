// Command kid does the replication work of one sync. Its controller starts it
// (`kid --sync NAME`) and drives it with gRPC over its stdin/stdout; it is not
// meant to be run by hand.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"
	"go.uber.org/zap"

	"github.com/gobucardo/gobucardo/pkg/ipc"
	"github.com/gobucardo/gobucardo/pkg/kid"
	"github.com/gobucardo/gobucardo/pkg/logging"
	"github.com/gobucardo/gobucardo/pkg/version"
)

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "--version" || os.Args[1] == "version" || os.Args[1] == "-v") {
		fmt.Println("kid version " + version.Version)
		return
	}
	// First of all: fd 0 and 1 become the RPC transport, stdout goes to stderr.
	conn, err := ipc.Claim()
	if err != nil {
		fmt.Fprintln(os.Stderr, "kid:", err)
		os.Exit(1)
	}
	app := &cli.App{
		Name:      "kid",
		Usage:     "replication worker of one sync, started by its controller",
		Writer:    os.Stderr,
		ErrWriter: os.Stderr,
		Flags:     []cli.Flag{&cli.StringFlag{Name: "sync", Required: true, Usage: "the sync this kid works for"}},
		Action: func(c *cli.Context) error {
			level := zap.NewAtomicLevelAt(zap.InfoLevel)
			log := logging.New(logging.Stderr, level, "kid").With(zap.String(logging.FieldSync, c.String("sync")),
				zap.Int(logging.FieldPID, os.Getpid()))
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			err := kid.Serve(ctx, conn, log, level)
			if err != nil {
				log.Error("kid stopped", zap.Error(err))
			}
			return err
		},
	}
	if err := app.Run(os.Args); err != nil {
		os.Exit(1)
	}
}
