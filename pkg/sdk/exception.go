package sdk

import (
	"context"
	"strconv"
)

// Exception is a database error met by a run while applying rows to a db.
type Exception struct {
	Sync  string // the sync's name
	Table string // the table as schema.name
	DB    string // the db the error came from
	// SQLState is the error's five-character SQLSTATE, such as "23505"
	// (unique_violation); empty when the error did not come from PostgreSQL.
	SQLState   string
	Message    string // the error's primary message
	Detail     string // PostgreSQL's DETAIL, such as "Key (id)=(7) already exists."; may be empty
	Constraint string // the violated constraint's name, when PostgreSQL names one
	// Keys are the primary keys of the rows involved, when the host can tell;
	// empty when the error is not tied to rows.
	Keys []Row
	// Attempt counts the tries of this run: 1 the first time, 2 after one
	// Retry, and so on.
	Attempt int
}

// ExceptionHandler decides what a run does about an Exception. Handle may be
// called from several goroutines at once; ctx is cancelled when the host
// gives up waiting. A non-nil error fails the run, as Fail does.
type ExceptionHandler interface {
	Handle(ctx context.Context, e Exception) (ExceptionDecision, error)
}

// ExceptionFunc adapts a function to an ExceptionHandler.
type ExceptionFunc func(ctx context.Context, e Exception) (ExceptionDecision, error)

// Handle calls f(ctx, e).
func (f ExceptionFunc) Handle(ctx context.Context, e Exception) (ExceptionDecision, error) {
	return f(ctx, e)
}

// ExceptionAction is what an ExceptionDecision asks the host to do.
type ExceptionAction uint8

// The actions of an ExceptionDecision. The zero ExceptionAction is no answer:
// the host rejects it.
const (
	// ActionRetry: the run is rolled back and tried again, with Attempt one
	// higher; the host caps the number of attempts.
	ActionRetry ExceptionAction = iota + 1
	// ActionSkipRows: the rows of Exception.Keys are parked (recorded, left
	// out of this run) and the run goes on without them. Only valid when
	// Keys is not empty.
	ActionSkipRows
	// ActionFail: the run fails with the decision's Message.
	ActionFail
)

var exceptionNames = [...]string{"none", "retry", "skip_rows", "fail"}

// String returns "retry", "skip_rows" or "fail".
func (a ExceptionAction) String() string {
	if int(a) < len(exceptionNames) {
		return exceptionNames[a]
	}
	return "action(" + strconv.Itoa(int(a)) + ")"
}

// ExceptionDecision is an ExceptionHandler's answer. Build it with Retry,
// SkipRows or Fail; the zero ExceptionDecision, or SkipRows for an Exception
// without Keys, fails the run with an error saying so.
type ExceptionDecision struct {
	Action  ExceptionAction
	Message string // why, for the run's log and error
}

// Retry asks for the run to be tried again.
func Retry(message string) ExceptionDecision {
	return ExceptionDecision{Action: ActionRetry, Message: message}
}

// SkipRows parks the rows of the exception's Keys and lets the run go on.
func SkipRows(message string) ExceptionDecision {
	return ExceptionDecision{Action: ActionSkipRows, Message: message}
}

// Fail fails the run with message.
func Fail(message string) ExceptionDecision {
	return ExceptionDecision{Action: ActionFail, Message: message}
}
