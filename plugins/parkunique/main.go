// Command parkunique is a gobucardo exception handler: when applying rows
// to a db fails on a unique violation (SQLSTATE 23505: another row on the
// target already has the value of a unique column), the rows involved are
// parked (left out of the run and recorded, for an operator to settle) and
// the run goes on with the others. Any other error fails the run, as it
// would without the plugin. It takes no settings.
//
// Register it:
//
//	go build -o /usr/local/lib/gobucardo/parkunique ./plugins/parkunique
//	mcp add customcode park_dupes plugin=/usr/local/lib/gobucardo/parkunique whenrun=exception sync=s1
package main

import (
	"context"
	"fmt"

	"github.com/gobucardo/gobucardo/pkg/sdk"
)

func main() {
	sdk.Serve(sdk.Plugin{Name: "parkunique", Exception: parkUnique{}})
}

// uniqueViolation is PostgreSQL's SQLSTATE for unique_violation.
const uniqueViolation = "23505"

// parkUnique parks the rows of unique violations.
type parkUnique struct{}

// Handle parks unique violations and fails on anything else.
func (parkUnique) Handle(_ context.Context, e sdk.Exception) (sdk.ExceptionDecision, error) {
	if e.SQLState != uniqueViolation {
		return sdk.Fail(fmt.Sprintf("parkunique: not a unique violation (SQLSTATE %s): %s", e.SQLState, e.Message)), nil
	}
	if len(e.Keys) == 0 {
		return sdk.Fail("parkunique: unique violation with no rows to park: " + e.Message), nil
	}
	msg := fmt.Sprintf("parked %d row(s) of %s on %s: %s", len(e.Keys), e.Table, e.DB, e.Message)
	if e.Constraint != "" {
		msg += " (constraint " + e.Constraint + ")"
	}
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return sdk.SkipRows(msg), nil
}
