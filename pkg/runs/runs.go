package runs

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/gobucardo/gobucardo/pkg/catalog"
	"github.com/gobucardo/gobucardo/pkg/pg"
	"github.com/gobucardo/gobucardo/pkg/replicate"
)

// Kind is how a run ended.
type Kind int

const (
	// OK: the run committed.
	OK Kind = iota
	// Failed: the run failed and changed nothing; it is tried again later.
	Failed
	// TargetsLost: the run failed because the connection to targets broke
	// (Outcome.Lost names them); a controller leaves them out for a while.
	TargetsLost
	// ConflictAbort: a conflict met bucardo_abort; the run changed nothing
	// and the sync is paused.
	ConflictAbort
	// Cancelled: a run hook cancelled the run, which changed nothing; not a
	// failure: the next kick runs it again.
	Cancelled
)

func (k Kind) String() string {
	switch k {
	case OK:
		return "ok"
	case Failed:
		return "failed"
	case TargetsLost:
		return "targets lost"
	case ConflictAbort:
		return "conflict abort"
	case Cancelled:
		return "cancelled"
	}
	return "unknown"
}

// Outcome is how a run ended, read from its error.
type Outcome struct {
	Kind Kind
	// Lost are the targets whose connection broke during the run (it
	// failed), whatever its Kind.
	Lost []string
}

// Classify reads the outcome of a run from its error (nil: OK). A
// cancellation wins over a conflict abort, which wins over lost targets.
func Classify(err error) Outcome {
	if err == nil {
		return Outcome{Kind: OK}
	}
	var o Outcome
	var lost *replicate.TargetsLostError
	if errors.As(err, &lost) {
		o.Lost = lost.DBs
	}
	switch {
	case errors.Is(err, replicate.ErrCancelled):
		o.Kind = Cancelled
	case errors.Is(err, replicate.ErrConflictAbort):
		o.Kind = ConflictAbort
	case len(o.Lost) > 0:
		o.Kind = TargetsLost
	default:
		o.Kind = Failed
	}
	return o
}

// End is the record of a run that ended with res and err, for
// catalog.FinishRun; secrets are removed from its text. A conflict abort
// pauses the sync; a failed or cancelled run keeps its partial counts.
func End(res replicate.Result, err error, secrets ...string) catalog.RunEnd {
	end := catalog.RunEnd{Counts: catalog.RunCounts{Deletes: res.Deletes, Inserts: res.Inserts,
		Truncates: res.Truncates, Conflicts: res.Conflicts}}
	msg := ""
	if err != nil {
		msg = pg.RedactError(err, secrets...).Error()
	}
	switch Classify(err).Kind {
	case OK:
		end.State, end.Status, end.OneTimeCopyDone = catalog.RunGood, "Complete: "+res.Summary(), res.OneTimeCopyDone
		if res.Empty() {
			end.State = catalog.RunEmpty
		}
	case Cancelled:
		end.State, end.Status = catalog.RunCancelled, "Cancelled: "+msg
	case ConflictAbort:
		end.State, end.Status = catalog.RunBad, "Failed: "+msg
		end.Pause = end.Status
	default:
		end.State, end.Status = catalog.RunBad, "Failed: "+msg
	}
	return end
}

// Sink makes a run record its conflicts and parked rows in the main
// database as it meets them: it sets opts.Conflicts and opts.Parked for run
// id of sync. main gives the connection when first needed, so that a run
// with neither never reaches the main database. A run that does not commit
// has them removed again by catalog.FinishRun.
func Sink(ctx context.Context, main func() (*pgx.Conn, error), sync string, id int64, opts *replicate.Options) {
	opts.Conflicts = func(cs []replicate.Conflict) error {
		conn, err := main()
		if err != nil {
			return err
		}
		return catalog.LogConflicts(ctx, conn, id, sync, replicate.ConflictRecords(cs))
	}
	opts.Parked = func(ps []replicate.Parked) error {
		conn, err := main()
		if err != nil {
			return err
		}
		return catalog.Park(ctx, conn, id, replicate.ParkedRecords(ps))
	}
}
