// Command highest is a gobucardo conflict handler: of the sources that
// changed a row, the one whose row has the highest value in a named column
// wins, as a whole row. Typically the column is a version number or a last
// modified timestamp maintained by the application.
//
// Settings:
//
//	column=NAME   the column to compare (required)
//
// Values compare as sdk.Value.Compare orders them: numbers by value, times by
// instant, text byte by byte. A deleted row, or a NULL in the column, ranks
// below every value. On a tie the source that changed the row last wins, then
// the first db name in alphabetical order, so every run decides the same.
// A column the table lacks, or values that cannot be compared (JSON, say),
// abort the run with a message saying so.
//
// Register it, for a sync or for one table:
//
//	go build -o /usr/local/lib/gobucardo/highest ./plugins/highest
//	mcp add customcode newest_version plugin=/usr/local/lib/gobucardo/highest whenrun=conflict sync=s1 column=version
//	mcp add customcode newest_item plugin=/usr/local/lib/gobucardo/highest whenrun=conflict table=public.item column=updated_at
package main

import (
	"context"
	"fmt"
	"sort"
	"sync/atomic"

	"github.com/gobucardo/gobucardo/pkg/sdk"
)

func main() {
	sdk.Serve(sdk.Plugin{Name: "highest", Conflict: &highest{}})
}

// highest keeps the row with the highest value of column.
type highest struct {
	column atomic.Pointer[string]
}

// Configure takes column=NAME.
func (h *highest) Configure(_ context.Context, settings map[string]string) error {
	col := ""
	for k, v := range settings {
		switch k {
		case "column":
			col = v
		default:
			return fmt.Errorf("unknown setting %q: highest takes column=NAME", k)
		}
	}
	if col == "" {
		return fmt.Errorf("highest needs column=NAME, the column whose highest value wins")
	}
	h.column.Store(&col)
	return nil
}

// Resolve picks the winner.
func (h *highest) Resolve(_ context.Context, c sdk.Conflict) (sdk.Resolution, error) {
	col := h.column.Load()
	if col == nil {
		return sdk.Abort("highest: no column configured (register the customcode with column=NAME)"), nil
	}
	return pick(c, *col), nil
}

// pick returns the source whose row has the highest value of column.
func pick(c sdk.Conflict, column string) sdk.Resolution {
	sources := append([]sdk.SourceRow(nil), c.Sources...)
	// Candidates in tie-break order: latest change first, then db name.
	sort.SliceStable(sources, func(i, j int) bool {
		if !sources[i].ChangedAt.Equal(sources[j].ChangedAt) {
			return sources[i].ChangedAt.After(sources[j].ChangedAt)
		}
		return sources[i].DB < sources[j].DB
	})
	best := -1
	var bestVal sdk.Value
	for i, s := range sources {
		if s.Deleted {
			continue // ranks below every value, NULL included
		}
		v, ok := s.Row.Get(column)
		if !ok {
			return sdk.Abort(fmt.Sprintf("highest: %s has no column %q (on %s)", c.Table, column, s.DB))
		}
		if best < 0 {
			best, bestVal = i, v
			continue
		}
		n, ok := v.Compare(bestVal)
		if !ok {
			return sdk.Abort(fmt.Sprintf("highest: %s.%s: cannot compare %s value %s (on %s) with %s value %s (on %s)",
				c.Table, column, v.Kind(), v, s.DB, bestVal.Kind(), bestVal, sources[best].DB))
		}
		if n > 0 {
			best, bestVal = i, v
		}
	}
	if best < 0 { // every source deleted the row
		return sdk.Winner(sources[0].DB)
	}
	return sdk.Winner(sources[best].DB)
}
