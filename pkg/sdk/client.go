package sdk

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/gobucardo/gobucardo/pkg/sdk/internal/handlerpb"
)

// capabilitiesTimeout bounds the first call, made while dispensing.
const capabilitiesTimeout = 30 * time.Second

// callOptions lift gRPC's default 4 MiB limit on a message, as the plugin's
// server does (see maxMessage).
var callOptions = []grpc.CallOption{grpc.MaxCallRecvMsgSize(maxMessage), grpc.MaxCallSendMsgSize(maxMessage)}

var (
	_ ConflictHandler  = (*Client)(nil)
	_ ExceptionHandler = (*Client)(nil)
	_ RunHook          = (*Client)(nil)
)

// Client is the host's side of a running plugin: it implements
// ConflictHandler, ExceptionHandler and RunHook by calling the plugin, and
// checks every answer before returning it. Get one with Dispense. A Client
// is safe for concurrent use; it does not own the plugin process (the
// go-plugin client that started it does).
//
// Errors, each wrapped with the plugin's name and the call:
//   - the handler's own error: a *HandlerError;
//   - an answer the host cannot act on: ErrMalformed;
//   - a handler the plugin does not have: errors.ErrUnsupported;
//   - ctx done before the answer: ctx.Err() (context.DeadlineExceeded or
//     context.Canceled), whatever the plugin does meanwhile;
//   - anything else (the plugin crashed, the connection broke): the gRPC
//     error.
//
// Every error means the answer is not to be used.
type Client struct {
	rpc  pb.HandlerClient
	caps *pb.CapabilitiesReply
}

// newClient asks the plugin for its capabilities and checks its protocol
// version.
func newClient(ctx context.Context, conn grpc.ClientConnInterface) (*Client, error) {
	rpc := pb.NewHandlerClient(conn)
	ctx, cancel := context.WithTimeout(ctx, capabilitiesTimeout)
	defer cancel()
	caps, err := rpc.Capabilities(ctx, &pb.CapabilitiesRequest{HostVersion: ProtocolVersion})
	if err != nil {
		return nil, errorf("plugin capabilities: %w", err)
	}
	if caps.GetVersion() != ProtocolVersion {
		return nil, errorf("plugin %q speaks protocol version %d, this host %d: rebuild it against this gobucardo's pkg/sdk",
			caps.GetName(), caps.GetVersion(), ProtocolVersion)
	}
	if !caps.GetConflict() && !caps.GetException() && !caps.GetHook() {
		return nil, errorf("plugin %q has no handler", caps.GetName())
	}
	return &Client{rpc: rpc, caps: caps}, nil
}

// Name returns the name the plugin gives itself (Plugin.Name), possibly
// empty.
func (c *Client) Name() string { return c.caps.GetName() }

// Capabilities reports which handlers the plugin has.
func (c *Client) Capabilities() (conflict, exception, hook bool) {
	return c.caps.GetConflict(), c.caps.GetException(), c.caps.GetHook()
}

// Configure passes the customcode's settings to the plugin. Call it once,
// after Dispense and before any other call, even with no settings. Settings
// given to a plugin that takes none are an error, as are settings the plugin
// refuses (a *HandlerError with its reason).
func (c *Client) Configure(ctx context.Context, settings map[string]string) error {
	if !c.caps.GetConfigurable() {
		if len(settings) == 0 {
			return nil
		}
		keys := make([]string, 0, len(settings))
		for k := range settings {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		return c.errorf("configure", "%w: it takes no settings, got %s", errors.ErrUnsupported, strings.Join(keys, ", "))
	}
	reply, err := c.rpc.Configure(ctx, &pb.ConfigureRequest{Settings: settings}, callOptions...)
	if err != nil {
		return c.callError(ctx, "configure", err)
	}
	if e := reply.GetError(); e != nil {
		return c.errorf("configure", "%w", &HandlerError{Message: e.GetMessage()})
	}
	return nil
}

// Resolve asks the plugin to resolve conflict k and checks the answer
// against k (see Resolution). The returned Resolution is valid: its winner is
// one of k's sources, or its merged row has every column (Type filled in from
// k where the plugin left it empty) and k's key.
func (c *Client) Resolve(ctx context.Context, k Conflict) (Resolution, error) {
	op := "resolve " + k.Table
	if !c.caps.GetConflict() {
		return Resolution{}, c.errorf(op, "%w: the plugin has no conflict handler", errors.ErrUnsupported)
	}
	reply, err := c.rpc.Resolve(ctx, &pb.ResolveRequest{Conflict: conflictToPB(k)}, callOptions...)
	if err != nil {
		return Resolution{}, c.callError(ctx, op, err)
	}
	switch o := reply.GetOutcome().(type) {
	case *pb.ResolveReply_Error:
		return Resolution{}, c.errorf(op, "%w", &HandlerError{Message: o.Error.GetMessage()})
	case *pb.ResolveReply_Winner_:
		db := o.Winner.GetDb()
		if _, ok := k.Source(db); !ok {
			return Resolution{}, c.errorf(op, "%w: winner %q is not a source of the conflict (sources: %s)",
				ErrMalformed, db, strings.Join(sourceNames(k), ", "))
		}
		return Winner(db), nil
	case *pb.ResolveReply_Merge_:
		row, err := rowFromPB(o.Merge.GetRow())
		if err != nil {
			return Resolution{}, c.errorf(op, "%w: merged row: %v", ErrMalformed, err)
		}
		if err := checkMerge(k, row); err != nil {
			return Resolution{}, c.errorf(op, "%w: merged row %v", ErrMalformed, err)
		}
		return Merge(row), nil
	case *pb.ResolveReply_Skip_:
		return Skip(o.Skip.GetReason()), nil
	case *pb.ResolveReply_Abort_:
		return Abort(o.Abort.GetMessage()), nil
	default:
		return Resolution{}, c.errorf(op, "%w: no resolution (winner, merge, skip or abort)", ErrMalformed)
	}
}

// Handle asks the plugin what to do about exception e. SkipRows is only
// accepted when e has Keys.
func (c *Client) Handle(ctx context.Context, e Exception) (ExceptionDecision, error) {
	op := "handle exception on " + e.Table
	if !c.caps.GetException() {
		return ExceptionDecision{}, c.errorf(op, "%w: the plugin has no exception handler", errors.ErrUnsupported)
	}
	reply, err := c.rpc.Handle(ctx, &pb.HandleRequest{Exception: exceptionToPB(e)}, callOptions...)
	if err != nil {
		return ExceptionDecision{}, c.callError(ctx, op, err)
	}
	switch o := reply.GetOutcome().(type) {
	case *pb.HandleReply_Error:
		return ExceptionDecision{}, c.errorf(op, "%w", &HandlerError{Message: o.Error.GetMessage()})
	case *pb.HandleReply_Retry_:
		return Retry(o.Retry.GetMessage()), nil
	case *pb.HandleReply_SkipRows_:
		if len(e.Keys) == 0 {
			return ExceptionDecision{}, c.errorf(op, "%w: skip_rows, but the exception names no rows to park", ErrMalformed)
		}
		return SkipRows(o.SkipRows.GetMessage()), nil
	case *pb.HandleReply_Fail_:
		return Fail(o.Fail.GetMessage()), nil
	default:
		return ExceptionDecision{}, c.errorf(op, "%w: no decision (retry, skip_rows or fail)", ErrMalformed)
	}
}

// Run calls the plugin's run hook at e.Hook.
func (c *Client) Run(ctx context.Context, e HookEvent) (HookDecision, error) {
	op := "hook " + string(e.Hook)
	if !c.caps.GetHook() {
		return HookDecision{}, c.errorf(op, "%w: the plugin has no run hook", errors.ErrUnsupported)
	}
	if !e.Hook.Valid() {
		return HookDecision{}, c.errorf(op, "%q is not a hook point", e.Hook)
	}
	reply, err := c.rpc.Hook(ctx, &pb.HookRequest{Event: hookEventToPB(e)}, callOptions...)
	if err != nil {
		return HookDecision{}, c.callError(ctx, op, err)
	}
	switch o := reply.GetOutcome().(type) {
	case *pb.HookReply_Error:
		return HookDecision{}, c.errorf(op, "%w", &HandlerError{Message: o.Error.GetMessage()})
	case *pb.HookReply_ContinueRun:
		return Continue(), nil
	case *pb.HookReply_Cancel_:
		return Cancel(o.Cancel.GetReason()), nil
	default:
		return HookDecision{}, c.errorf(op, "%w: no decision (continue or cancel)", ErrMalformed)
	}
}

func (c *Client) errorf(op, format string, args ...any) error {
	return fmt.Errorf("plugin %q %s: "+format, append([]any{c.Name(), op}, args...)...)
}

// callError turns a failed call into an error: ctx's own error when ctx is
// done, so that errors.Is(err, context.DeadlineExceeded) holds.
func (c *Client) callError(ctx context.Context, op string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return c.errorf(op, "%w", ctxErr)
	}
	switch status.Code(err) {
	case codes.DeadlineExceeded:
		return c.errorf(op, "%w", context.DeadlineExceeded)
	case codes.Canceled:
		return c.errorf(op, "%w", context.Canceled)
	case codes.Unimplemented:
		return c.errorf(op, "%w: %s", errors.ErrUnsupported, status.Convert(err).Message())
	}
	return c.errorf(op, "%w", err)
}

func sourceNames(k Conflict) []string {
	names := make([]string, len(k.Sources))
	for i, s := range k.Sources {
		names[i] = s.DB
	}
	return names
}

// checkMerge checks a merged row against its conflict: no column twice, only
// columns the conflict's rows have, every column of every source's row, the
// key unchanged. It fills in the Type of columns that left it empty.
func checkMerge(k Conflict, row Row) error {
	if len(row) == 0 {
		return fmt.Errorf("is empty")
	}
	types := map[string]string{}
	var all []string // every column, in the order first met
	learn := func(r Row) {
		for _, col := range r {
			if _, ok := types[col.Name]; !ok {
				all = append(all, col.Name)
				types[col.Name] = col.Type
			} else if types[col.Name] == "" {
				types[col.Name] = col.Type
			}
		}
	}
	learn(k.Key)
	for _, s := range k.Sources {
		learn(s.Row)
		learn(s.Before)
	}
	learn(k.Previous)

	seen := map[string]bool{}
	for i, col := range row {
		if seen[col.Name] {
			return fmt.Errorf("has column %q twice", col.Name)
		}
		seen[col.Name] = true
		t, ok := types[col.Name]
		if !ok {
			return fmt.Errorf("names column %q, which %s does not have (columns: %s)", col.Name, k.Table, strings.Join(all, ", "))
		}
		if col.Type == "" {
			row[i].Type = t
		}
	}
	for _, kc := range k.Key {
		v, ok := row.Get(kc.Name)
		if !ok {
			return fmt.Errorf("lacks key column %q", kc.Name)
		}
		if !v.Equal(kc.Value) {
			if v.Kind() != kc.Value.Kind() {
				return fmt.Errorf("changes key column %q from %s %s to %s %s", kc.Name, kc.Value.Kind(), kc.Value, v.Kind(), v)
			}
			return fmt.Errorf("changes key column %q from %s to %s", kc.Name, kc.Value, v)
		}
	}
	for _, s := range k.Sources {
		for _, col := range s.Row {
			if !seen[col.Name] {
				return fmt.Errorf("lacks column %q (a merged row is written whole: start from a source's row)", col.Name)
			}
		}
	}
	return nil
}
