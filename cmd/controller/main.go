// Command controller schedules the runs of one sync. The MCP starts it
// (`controller --sync NAME`) and drives it with gRPC over its stdin/stdout; it
// is not meant to be run by hand.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"
	"go.uber.org/zap"

	"github.com/gobucardo/gobucardo/pkg/controller"
	"github.com/gobucardo/gobucardo/pkg/ipc"
	"github.com/gobucardo/gobucardo/pkg/logging"
	"github.com/gobucardo/gobucardo/pkg/version"
)

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "--version" || os.Args[1] == "version" || os.Args[1] == "-v") {
		fmt.Println("controller version " + version.Version)
		return
	}
	// First of all: fd 0 and 1 become the RPC transport, stdout goes to stderr.
	conn, err := ipc.Claim()
	if err != nil {
		fmt.Fprintln(os.Stderr, "controller:", err)
		os.Exit(1)
	}
	app := &cli.App{
		Name:      "controller",
		Usage:     "scheduler of one sync, started by the MCP",
		Writer:    os.Stderr,
		ErrWriter: os.Stderr,
		Flags:     []cli.Flag{&cli.StringFlag{Name: "sync", Required: true, Usage: "the sync this controller runs"}},
		Action: func(c *cli.Context) error {
			sync := c.String("sync")
			level := zap.NewAtomicLevelAt(zap.InfoLevel)
			log := logging.New(logging.Stderr, level, "controller").With(zap.String(logging.FieldSync, sync),
				zap.Int(logging.FieldPID, os.Getpid()))
			kidLog := logging.New(logging.Stderr, level, "kid").With(zap.String(logging.FieldSync, sync))
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			err := controller.Serve(ctx, conn, log, level, sync, logging.Forward(logging.Stderr, kidLog))
			if err != nil && !controller.IsPlannedExit(err) {
				log.Error("controller stopped", zap.Error(err))
				return err
			}
			return nil
		},
	}
	if err := app.Run(os.Args); err != nil {
		os.Exit(1)
	}
}
