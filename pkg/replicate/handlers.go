package replicate

import (
	"context"
	"time"
)

// What a run asks of custom code, and what it takes as an answer. A plugin
// host (the kid's pkg/pluginhost) adapts the plugin SDK's handlers to these
// interfaces; replicate knows nothing of plugins, processes or RPC.

// Column is one column of a Row: its name, its PostgreSQL type as
// format_type writes it, and its value as PostgreSQL's text output in the
// run's session (TimeZone UTC, DateStyle ISO, bytea_output hex), nil for
// NULL. A handler's merged row gives values in any form the type's input
// function takes.
type Column struct {
	Name  string
	Type  string
	Value *string
}

// Row is a table row, or a key, as ordered columns; nil means no row.
// Columns are matched by name, never by position.
type Row []Column

// Get returns the named column, and whether r has it.
func (r Row) Get(name string) (Column, bool) {
	for _, c := range r {
		if c.Name == name {
			return c, true
		}
	}
	return Column{}, false
}

// ConflictRow is one row changed on two or more source dbs since the sync's
// previous run, as a ConflictHandler is asked about it.
type ConflictRow struct {
	Sync  string
	Table string // schema.name
	Key   Row    // the key columns, in key order
	// Sources holds one entry per source db that changed the row.
	Sources []SourceRow
	// Previous is the row as the previous run left it (read from a delta
	// target); nil when the sync has none, or the row did not exist then.
	Previous Row
}

// SourceRow is the state of a conflicting row on one source db.
type SourceRow struct {
	DB        string
	Row       Row       // every column; nil when Deleted
	Deleted   bool      // DB deleted the row
	ChangedAt time.Time // DB's newest change of the row
}

// ResolutionAction is what a Resolution asks the run to do.
type ResolutionAction uint8

// The actions of a Resolution.
const (
	ResolveWinner ResolutionAction = iota + 1 // copy the row of source DB everywhere
	ResolveMerge                              // write Row on every db
	ResolveSkip                               // write nothing; the dbs stay different
	ResolveAbort                              // fail the run with Message
)

// Resolution is a ConflictHandler's answer, already checked by the host
// against its ConflictRow (a winner among the sources, a merged row with
// the key).
type Resolution struct {
	Action  ResolutionAction
	DB      string // ResolveWinner
	Row     Row    // ResolveMerge: the whole row
	Message string // ResolveSkip, ResolveAbort: why
}

// ConflictHandler decides conflicting rows, possibly from several
// goroutines at once. An error fails the run.
type ConflictHandler interface {
	Resolve(ctx context.Context, c ConflictRow) (Resolution, error)
}

// ConflictFunc adapts a function to a ConflictHandler.
type ConflictFunc func(ctx context.Context, c ConflictRow) (Resolution, error)

// Resolve calls f(ctx, c).
func (f ConflictFunc) Resolve(ctx context.Context, c ConflictRow) (Resolution, error) {
	return f(ctx, c)
}

// Exception is a database error met while inserting rows on a db.
type Exception struct {
	Sync, Table, DB string
	SQLState        string
	Message         string
	Detail          string
	Constraint      string
	Keys            []Row // the keys of the rows at fault
	Attempt         int   // 1 for a run's first try
}

// ExceptionAction is what an ExceptionDecision asks the run to do.
type ExceptionAction uint8

// The actions of an ExceptionDecision.
const (
	ExceptionRetry    ExceptionAction = iota + 1 // roll back, run again
	ExceptionSkipRows                            // park the rows of Keys, go on
	ExceptionFail                                // fail the run with Message
)

// ExceptionDecision is an ExceptionHandler's answer.
type ExceptionDecision struct {
	Action  ExceptionAction
	Message string
}

// ExceptionHandler decides what a run does about an Exception. An error
// fails the run.
type ExceptionHandler interface {
	Handle(ctx context.Context, e Exception) (ExceptionDecision, error)
}

// ExceptionFunc adapts a function to an ExceptionHandler.
type ExceptionFunc func(ctx context.Context, e Exception) (ExceptionDecision, error)

// Handle calls f(ctx, e).
func (f ExceptionFunc) Handle(ctx context.Context, e Exception) (ExceptionDecision, error) {
	return f(ctx, e)
}

// HookPoint is a moment of a run at which RunHooks are called; its values
// are customcode's whenrun names.
type HookPoint string

// The hook points, in the order a run meets them.
const (
	BeforeSync HookPoint = "before_sync" // nothing is open yet
	BeforeTxn  HookPoint = "before_txn"  // every transaction is open, nothing applied
	AfterTxn   HookPoint = "after_txn"   // everything applied, nothing committed
	AfterSync  HookPoint = "after_sync"  // the run has ended; a cancel is only logged
)

// HookEvent tells a RunHook where a run is.
type HookEvent struct {
	Sync    string
	Hook    HookPoint
	Attempt int
	Result  *RunSummary // at AfterTxn and AfterSync; nil before
}

// RunSummary counts what a run did.
type RunSummary struct {
	Deletes, Inserts, Conflicts int64
	Error                       string // empty when the run succeeded
}

// HookDecision is a RunHook's answer: go on, or stop the run for Reason.
type HookDecision struct {
	Cancel bool
	Reason string
}

// RunHook is called at the hook points of a run. An error fails the run.
type RunHook interface {
	Run(ctx context.Context, e HookEvent) (HookDecision, error)
}

// HookFunc adapts a function to a RunHook.
type HookFunc func(ctx context.Context, e HookEvent) (HookDecision, error)

// Run calls f(ctx, e).
func (f HookFunc) Run(ctx context.Context, e HookEvent) (HookDecision, error) { return f(ctx, e) }
