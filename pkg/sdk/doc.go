// Package sdk is the public SDK for gobucardo plugins: custom conflict
// handlers, exception handlers and run hooks, each a separate program that
// the kid of a sync starts, talks to over gRPC (hashicorp/go-plugin) and
// kills when it exits. A plugin runs in its own process: if it crashes,
// hangs or answers nonsense, the run fails cleanly and no data is touched.
//
// This package imports only the standard library, go-plugin, hclog, gRPC and
// protobuf, and a plugin should import only it (and package sdktest in its
// tests).
//
// # Writing a plugin
//
// A plugin is a package main that implements one or more of
//
//   - ConflictHandler: given a row changed on two or more source dbs since
//     the last run (a Conflict), say which source wins (Winner), or give the
//     row to write everywhere (Merge), or leave the row alone (Skip), or fail
//     the run (Abort);
//   - ExceptionHandler: given a database error met while applying rows (an
//     Exception, with its SQLSTATE and the keys involved), say Retry, SkipRows
//     (park those rows and go on) or Fail;
//   - RunHook: called at before_sync, before_txn, after_txn and after_sync
//     (a HookEvent), say Continue or Cancel;
//
// and calls Serve from main. This whole plugin resolves every conflict in
// favour of the source that changed the row last:
//
//	// Command newest is a gobucardo conflict handler: the most recent change wins.
//	package main
//
//	import (
//		"context"
//
//		"github.com/gobucardo/gobucardo/pkg/sdk"
//	)
//
//	type newest struct{}
//
//	func (newest) Resolve(ctx context.Context, c sdk.Conflict) (sdk.Resolution, error) {
//		win := c.Sources[0]
//		for _, s := range c.Sources[1:] {
//			if s.ChangedAt.After(win.ChangedAt) {
//				win = s
//			}
//		}
//		return sdk.Winner(win.DB), nil
//	}
//
//	func main() {
//		sdk.Serve(sdk.Plugin{Name: "newest", Conflict: newest{}})
//	}
//
// Build it and register it with the MCP, which pins the binary's sha256 (a
// rebuilt binary must be registered again):
//
//	go build -o /usr/local/lib/gobucardo/newest .
//	mcp add customcode newest plugin=/usr/local/lib/gobucardo/newest whenrun=conflict sync=s1
//
// The binary cannot be run from a shell: it says so and exits.
//
// # Rows and values
//
// A Row is a slice of Columns, each a name, its PostgreSQL type and a Value;
// Row.Get, Row.Int, Row.Text, Row.Time and friends find a column by name.
// Values are typed: NULL, bool, int64, float64, numeric (exact, as decimal
// text), text, bytes, time.Time, raw JSON, and any other type as its
// PostgreSQL text with the type's name (see Kind). Value.Compare orders
// values, numbers across kinds and NULL first.
//
// In a Conflict every source's Row is the whole current row on that db (nil
// when the db deleted it). Conflict.Previous, the row as it was before any of
// them changed it, and SourceRow.Before, the row before that source's own
// change, are there only when the host knows them: handlers must work, or
// fail with a clear Abort, without them.
//
// # Answers are checked
//
// The host checks every answer before acting on it. A winner that is not a
// source of the conflict, a merged row that lacks or changes the key, lacks a
// column or names one the table does not have, SkipRows for an error tied to
// no rows, or the zero Resolution, ExceptionDecision or HookDecision, fail
// the run with an error naming the plugin and the fault (see ErrMalformed).
// The simplest correct merge starts from one source's row:
//
//	merged := c.Sources[0].Row.With("qty", sdk.Int(total))
//	return sdk.Merge(merged), nil
//
// A handler's error, or panic, fails the run too, with its message; prefer
// Abort or Fail, whose message is recorded as the reason.
//
// # Settings
//
// A handler that implements Configurable receives, once, before any other
// call, the settings recorded with the customcode (key=value pairs given to
// mcp add customcode beyond its own keys, such as column=updated_at). Reject
// keys you do not know: the error reaches the operator.
//
// # Context, concurrency, logging
//
// Every call takes a context first. Its deadline is the host's: when the host
// stops waiting the call fails on the host side with context.DeadlineExceeded
// whatever the handler does, and ctx is cancelled in the plugin, so a handler
// doing I/O should pass ctx on and return when it is done. Handlers may be
// called from several goroutines at once.
//
// Standard output belongs to go-plugin. Log with Logger, whose JSON lines on
// stderr the host reads and logs at their level under the plugin's name.
//
// # Testing
//
// Package sdktest runs a handler in-process through the real encoding and the
// host's checks: sdktest.Resolve(t, handler, conflict) returns the checked
// Resolution, and sdktest.Row builds rows.
//
// # For the host
//
// The kid starts a plugin with go-plugin using Handshake and PluginMap, gRPC
// only, AutoMTLS and the pinned checksum, then Dispense gives a *Client that
// implements the three handler interfaces and checks each answer. Handshake's
// ProtocolVersion and the version Capabilities returns are ProtocolVersion; a
// plugin speaking another version is refused at Dispense.
package sdk
