// Command mcp is gobucardo's user-facing binary: the catalog commands and,
// later, the daemon. See pkg/admin and ../shared/CLI.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/gobucardo/gobucardo/pkg/admin"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := admin.Run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
