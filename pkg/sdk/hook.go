package sdk

import (
	"context"
	"strconv"
)

// HookPoint is the moment of a run at which a RunHook is called. Its values
// are the whenrun names of customcode.
type HookPoint string

// The hook points, in the order a run meets them.
const (
	// BeforeSync: before the run opens its transactions. Cancel skips the
	// run: nothing is read or written.
	BeforeSync HookPoint = "before_sync"
	// BeforeTxn: the transactions on every db are open, nothing is applied
	// yet. Cancel rolls them back.
	BeforeTxn HookPoint = "before_txn"
	// AfterTxn: every row is applied, nothing is committed yet. Cancel rolls
	// the run back.
	AfterTxn HookPoint = "after_txn"
	// AfterSync: the run has ended, committed or failed (HookEvent.Result
	// says which). Cancel cannot undo it; the host records the reason.
	AfterSync HookPoint = "after_sync"
)

// Valid reports whether p is one of the four hook points.
func (p HookPoint) Valid() bool {
	switch p {
	case BeforeSync, BeforeTxn, AfterTxn, AfterSync:
		return true
	}
	return false
}

// HookEvent tells a RunHook where a run is.
type HookEvent struct {
	Sync    string    // the sync's name
	Hook    HookPoint // where the run is
	Attempt int       // 1 for a run's first try, 2 after one retry, ...
	// Result is what the run did so far: set at AfterTxn and AfterSync, nil
	// at BeforeSync and BeforeTxn.
	Result *RunSummary
}

// RunSummary counts what a run did.
type RunSummary struct {
	Deletes   int64  // rows deleted on targets (before being copied again)
	Inserts   int64  // rows copied to targets
	Conflicts int64  // conflicts resolved
	Error     string // why the run failed; empty when it succeeded
}

// RunHook is called at the hook points of a run. Run may be called from
// several goroutines at once; ctx is cancelled when the host gives up
// waiting. A non-nil error fails the run.
type RunHook interface {
	Run(ctx context.Context, e HookEvent) (HookDecision, error)
}

// HookFunc adapts a function to a RunHook.
type HookFunc func(ctx context.Context, e HookEvent) (HookDecision, error)

// Run calls f(ctx, e).
func (f HookFunc) Run(ctx context.Context, e HookEvent) (HookDecision, error) { return f(ctx, e) }

// HookAction is what a HookDecision asks the host to do.
type HookAction uint8

// The actions of a HookDecision. The zero HookAction is no answer: the host
// rejects it.
const (
	ActionContinue HookAction = iota + 1 // the run goes on
	ActionCancel                         // the run stops, see the HookPoint constants
)

var hookNames = [...]string{"none", "continue", "cancel"}

// String returns "continue" or "cancel".
func (a HookAction) String() string {
	if int(a) < len(hookNames) {
		return hookNames[a]
	}
	return "action(" + strconv.Itoa(int(a)) + ")"
}

// HookDecision is a RunHook's answer. Build it with Continue or Cancel; the
// zero HookDecision fails the run with an error saying so.
type HookDecision struct {
	Action HookAction
	Reason string // ActionCancel: why, recorded with the run
}

// Continue lets the run go on.
func Continue() HookDecision { return HookDecision{Action: ActionContinue} }

// Cancel stops the run, recording reason.
func Cancel(reason string) HookDecision { return HookDecision{Action: ActionCancel, Reason: reason} }
