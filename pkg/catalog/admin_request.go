package catalog

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// AdminVerb is what an AdminRequest asks of the running MCP.
type AdminVerb string

// The requests admin commands send the running MCP on AdminChannel.
const (
	// AdminReload makes the MCP reread the catalog and reload the named
	// syncs: none, or "*", reloads every sync.
	AdminReload AdminVerb = "reload"
	// AdminKick asks for a run of the named syncs now.
	AdminKick AdminVerb = "kick"
	// AdminStop stops the MCP; Text is the reason it logs.
	AdminStop AdminVerb = "stop"
	// AdminMessage writes Text into the MCP's log.
	AdminMessage AdminVerb = "message"
)

// ReloadEverySync, as the one sync of an AdminReload, reloads every sync.
const ReloadEverySync = "*"

// AdminRequest is one request of an admin command to the running MCP: the
// payload of a NOTIFY on AdminChannel, made by Format and read by
// ParseAdminRequest.
type AdminRequest struct {
	Verb AdminVerb
	// Syncs are the syncs of AdminReload and AdminKick.
	Syncs []string
	// Text is the reason of AdminStop and the line of AdminMessage, kept as
	// given (spaces too).
	Text string
}

// ErrBadAdminRequest is the error of ParseAdminRequest for a payload that is
// not an AdminRequest; use errors.Is.
var ErrBadAdminRequest = errors.New("not an admin request")

// Format returns the NOTIFY payload of r: the verb, then the syncs separated
// by single spaces (reload, kick) or a space and the text (stop, message).
func (r AdminRequest) Format() string {
	arg := r.Text
	if r.Verb == AdminReload || r.Verb == AdminKick {
		arg = strings.Join(r.Syncs, " ")
	}
	if arg == "" {
		return string(r.Verb)
	}
	return string(r.Verb) + " " + arg
}

// ParseAdminRequest reads a NOTIFY payload of AdminChannel. The verb is
// the payload's first word, as Format writes it; the syncs of reload and
// kick are the words after it, the text of stop and message everything after
// the first space. An unknown verb is ErrBadAdminRequest.
func ParseAdminRequest(payload string) (AdminRequest, error) {
	verb, arg, _ := strings.Cut(payload, " ")
	r := AdminRequest{Verb: AdminVerb(verb)}
	switch r.Verb {
	case AdminReload, AdminKick:
		if syncs := strings.Fields(arg); len(syncs) > 0 {
			r.Syncs = syncs
		}
	case AdminStop, AdminMessage:
		r.Text = arg
	default:
		return AdminRequest{}, fmt.Errorf("%w: unknown verb %q in %q", ErrBadAdminRequest, verb, payload)
	}
	return r, nil
}

// NotifyMCP sends r to the running MCP, if any, on AdminChannel; in a
// transaction, it is delivered when the transaction commits.
func NotifyMCP(ctx context.Context, q Querier, r AdminRequest) error {
	_, err := q.Exec(ctx, "SELECT pg_notify($1, $2)", AdminChannel, r.Format())
	return err
}
