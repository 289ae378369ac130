package sdk

import (
	"errors"
	"fmt"
)

// ErrMalformed is wrapped by the errors of Client when a plugin's answer is
// not one the host can act on: no decision, a winner that is not a source of
// the conflict, a merged row that changes or lacks the key, lacks a column
// or names a column the table does not have, SkipRows without rows. Use
// errors.Is.
var ErrMalformed = errors.New("malformed answer")

// HandlerError is the error a plugin's handler returned (or its panic), as
// the host receives it. A failure to reach the plugin is not a HandlerError.
// Use errors.As.
type HandlerError struct {
	Message string
}

func (e *HandlerError) Error() string { return "handler failed: " + e.Message }

func errorf(format string, args ...any) error {
	return fmt.Errorf("sdk: "+format, args...)
}
