// Command misbehave is a plugin for the tests of package sdk: its conflict
// handler does what the conflict's table name says, mostly wrong.
package main

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/gobucardo/gobucardo/pkg/sdk"
)

func resolve(ctx context.Context, c sdk.Conflict) (sdk.Resolution, error) {
	switch c.Table {
	case "public.unknown_winner":
		return sdk.Winner("Z"), nil
	case "public.bad_merge":
		return sdk.Merge(c.Sources[0].Row.With("no_such_column", sdk.Int(1))), nil
	case "public.no_answer":
		return sdk.Resolution{}, nil
	case "public.error":
		return sdk.Resolution{}, errors.New("the handler gives up")
	case "public.panic":
		panic("the handler panics")
	case "public.sleep":
		time.Sleep(time.Hour) // ignores ctx, as a hung handler would
		return sdk.Skip("woke up"), nil
	case "public.exit":
		os.Exit(3)
	}
	return sdk.Winner(c.Sources[0].DB), nil
}

func main() {
	sdk.Logger().Info("misbehave starting")
	sdk.Serve(sdk.Plugin{Name: "misbehave", Conflict: sdk.ConflictFunc(resolve)})
}
