package sdk

import (
	"context"
	"strconv"
	"time"
)

// Conflict is one row whose key changed on two or more source dbs since the
// sync's previous run. The host asks a ConflictHandler about each such row,
// one at a time.
type Conflict struct {
	Sync  string // the sync's name
	Table string // the table as schema.name
	// Key is the primary key of the conflicting row: its key columns, in key
	// order.
	Key Row
	// Sources holds one entry per source db that changed the row, at least
	// two. Their order is not significant.
	Sources []SourceRow
	// Previous is the row as it was after the previous run, before any of the
	// sources changed it: the common base of every source's change. It is nil
	// when the host does not know it (a host need not keep history), and also
	// when the row did not exist then.
	Previous Row
}

// Source returns the source of c that is db, and whether there is one.
func (c Conflict) Source(db string) (SourceRow, bool) {
	for _, s := range c.Sources {
		if s.DB == db {
			return s, true
		}
	}
	return SourceRow{}, false
}

// SourceRow is the state of the conflicting row on one source db.
type SourceRow struct {
	DB string // the db's name, as in the catalog
	// Row is the row as it is now on DB, every column; nil when Deleted.
	Row Row
	// Deleted is true when DB deleted the row; Row is nil then.
	Deleted bool
	// ChangedAt is when DB last changed the row (the newest changed_at of the
	// key's deltas there, from DB's clock).
	ChangedAt time.Time
	// Before is the row as it was on DB before this change, when the host
	// knows it; nil otherwise. Most hosts do not know it: prefer
	// Conflict.Previous and treat Before as an optional refinement.
	Before Row
}

// ConflictHandler decides conflicts. Resolve is called once per conflicting
// row and may be called from several goroutines at once. ctx is cancelled
// when the host gives up waiting (its deadline) or the run ends; a handler
// that blocks should return when it is done. A non-nil error fails the run,
// as Abort does; prefer Abort, whose message is recorded as the reason.
type ConflictHandler interface {
	Resolve(ctx context.Context, c Conflict) (Resolution, error)
}

// ConflictFunc adapts a function to a ConflictHandler.
type ConflictFunc func(ctx context.Context, c Conflict) (Resolution, error)

// Resolve calls f(ctx, c).
func (f ConflictFunc) Resolve(ctx context.Context, c Conflict) (Resolution, error) {
	return f(ctx, c)
}

// ResolutionAction is what a Resolution asks the host to do.
type ResolutionAction uint8

// The actions of a Resolution. The zero ResolutionAction is no answer: the
// host rejects it.
const (
	// ActionWinner: the row of one source db, Resolution.DB, is copied to
	// every other db (if that source deleted the row, the delete wins).
	ActionWinner ResolutionAction = iota + 1
	// ActionMerge: Resolution.Row is written to every db, sources included.
	ActionMerge
	// ActionSkip: nothing is written for this row on any db, so the dbs stay
	// different; the conflict is recorded with Resolution.Message and the
	// row is not looked at again until it changes again.
	ActionSkip
	// ActionAbort: the run fails with Resolution.Message and nothing of it is
	// applied; the controller retries it later, which meets the same
	// conflict again unless something changed.
	ActionAbort
)

var resolutionNames = [...]string{"none", "winner", "merge", "skip", "abort"}

// String returns "winner", "merge", "skip" or "abort".
func (a ResolutionAction) String() string {
	if int(a) < len(resolutionNames) {
		return resolutionNames[a]
	}
	return "action(" + strconv.Itoa(int(a)) + ")"
}

// Resolution is a ConflictHandler's answer. Build it with Winner, Merge, Skip
// or Abort. The host checks it against the conflict: a winner that is not one
// of the conflict's sources, a merged row without the key columns (or with
// them changed), missing a column or naming a column the table does not
// have, or the zero Resolution, fail the run with an error saying so.
type Resolution struct {
	Action  ResolutionAction
	DB      string // ActionWinner: the winning source db
	Row     Row    // ActionMerge: the whole row to write, key columns included
	Message string // ActionSkip, ActionAbort: why, for the conflict log or the run's error
}

// Winner resolves the conflict in favour of the source db named db.
func Winner(db string) Resolution { return Resolution{Action: ActionWinner, DB: db} }

// Merge resolves the conflict by writing row on every db. row must hold every
// column of the table, the key columns unchanged: start from a source's row
// and change it with Row.With.
func Merge(row Row) Resolution { return Resolution{Action: ActionMerge, Row: row} }

// Skip leaves the row as it is on every db, recording reason.
func Skip(reason string) Resolution { return Resolution{Action: ActionSkip, Message: reason} }

// Abort fails the run with message.
func Abort(message string) Resolution { return Resolution{Action: ActionAbort, Message: message} }
