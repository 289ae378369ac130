// Package sdktest tests gobucardo plugin handlers in-process, through the
// same gRPC encoding and the same checks of the answer as the real host, so
// that what passes here behaves the same when the kid runs the plugin binary.
//
// A test of the conflict handler of the package documentation of sdk (the
// most recent change wins):
//
//	func TestNewestWins(t *testing.T) {
//		now := time.Now()
//		c := sdk.Conflict{
//			Sync: "s1", Table: "public.item",
//			Key: sdktest.Row("id", int64(7)),
//			Sources: []sdk.SourceRow{
//				{DB: "A", Row: sdktest.Row("id", int64(7), "qty", int64(5)), ChangedAt: now},
//				{DB: "B", Row: sdktest.Row("id", int64(7), "qty", int64(9)), ChangedAt: now.Add(time.Second)},
//			},
//		}
//		got := sdktest.Resolve(t, newest{}, c)
//		if got.Action != sdk.ActionWinner || got.DB != "B" {
//			t.Fatalf("got %v %s, want winner B", got.Action, got.DB)
//		}
//	}
//
// Resolve, Handle and Hook fail the test on any error, a malformed answer
// included. To test errors, or to make several calls to one plugin, use
// Start and the methods of the *sdk.Client it returns; Configure passes
// settings as the host does.
package sdktest

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/gobucardo/gobucardo/pkg/sdk"
)

// callTimeout bounds each call the helpers make.
const callTimeout = 30 * time.Second

// Start serves p in-process over gRPC and returns the host's client for it,
// as sdk.Dispense gives it to the kid. Everything is stopped when the test
// ends. The plugin's log lines go to t.Log.
func Start(t testing.TB, p sdk.Plugin) *sdk.Client {
	t.Helper()
	log := hclog.New(&hclog.LoggerOptions{Name: "plugin", Output: newTestWriter(t), Level: hclog.Debug})
	c, stop, err := sdk.ServeInProcess(Context(t), p, log)
	if err != nil {
		t.Fatalf("sdktest: %v", err)
	}
	t.Cleanup(stop)
	return c
}

// Context returns a context for one call of a test: cancelled when the test
// ends or after 30 seconds.
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	t.Cleanup(cancel)
	return ctx
}

// Resolve asks h to resolve c, through the wire, and returns its checked
// answer. Any error fails the test.
func Resolve(t testing.TB, h sdk.ConflictHandler, c sdk.Conflict) sdk.Resolution {
	t.Helper()
	res, err := Start(t, sdk.Plugin{Conflict: h}).Resolve(Context(t), c)
	if err != nil {
		t.Fatalf("sdktest: %v", err)
	}
	return res
}

// Handle asks h what to do about e, through the wire, and returns its
// checked answer. Any error fails the test.
func Handle(t testing.TB, h sdk.ExceptionHandler, e sdk.Exception) sdk.ExceptionDecision {
	t.Helper()
	d, err := Start(t, sdk.Plugin{Exception: h}).Handle(Context(t), e)
	if err != nil {
		t.Fatalf("sdktest: %v", err)
	}
	return d
}

// Hook calls h at e.Hook, through the wire, and returns its checked answer.
// Any error fails the test.
func Hook(t testing.TB, h sdk.RunHook, e sdk.HookEvent) sdk.HookDecision {
	t.Helper()
	d, err := Start(t, sdk.Plugin{Hook: h}).Run(Context(t), e)
	if err != nil {
		t.Fatalf("sdktest: %v", err)
	}
	return d
}

// Configure passes settings to h through the wire, as the host does before
// any other call, and returns h's error (a *sdk.HandlerError). h must also be
// a ConflictHandler, ExceptionHandler or RunHook.
func Configure(t testing.TB, h sdk.Configurable, settings map[string]string) error {
	t.Helper()
	var p sdk.Plugin
	p.Conflict, _ = h.(sdk.ConflictHandler)
	p.Exception, _ = h.(sdk.ExceptionHandler)
	p.Hook, _ = h.(sdk.RunHook)
	if p.Conflict == nil && p.Exception == nil && p.Hook == nil {
		t.Fatalf("sdktest: Configure: %T is not a ConflictHandler, ExceptionHandler or RunHook", h)
	}
	return Start(t, p).Configure(Context(t), settings)
}

// Row builds a row from name, value pairs, typing each column as the host
// would: nil is NULL; bool is boolean; int, int64 bigint; int32 integer;
// int16 smallint; float64 double precision; float32 real; string text;
// []byte bytea; time.Time timestamp with time zone; json.RawMessage jsonb;
// an sdk.Value is taken as is (numeric, or Other with its type name). Row
// panics on anything else, or on an odd number of arguments.
//
//	sdktest.Row("id", int64(1), "qty", int64(5), "price", sdk.Numeric("9.90"))
func Row(pairs ...any) sdk.Row {
	if len(pairs)%2 != 0 {
		panic(fmt.Sprintf("sdktest.Row: %d arguments, want name, value pairs", len(pairs)))
	}
	row := make(sdk.Row, 0, len(pairs)/2)
	for i := 0; i < len(pairs); i += 2 {
		name, ok := pairs[i].(string)
		if !ok {
			panic(fmt.Sprintf("sdktest.Row: argument %d is %T, want a column name", i+1, pairs[i]))
		}
		typ, v := valueOf(name, pairs[i+1])
		row = append(row, sdk.Column{Name: name, Type: typ, Value: v})
	}
	return row
}

func valueOf(name string, x any) (string, sdk.Value) {
	switch x := x.(type) {
	case nil:
		return "", sdk.Null()
	case sdk.Value:
		switch x.Kind() {
		case sdk.KindNull:
			return "", x
		case sdk.KindOther:
			typ, _, _ := x.Other()
			return typ, x
		default:
			return kindTypes[x.Kind()], x
		}
	case bool:
		return "boolean", sdk.Bool(x)
	case int:
		return "bigint", sdk.Int(int64(x))
	case int64:
		return "bigint", sdk.Int(x)
	case int32:
		return "integer", sdk.Int(int64(x))
	case int16:
		return "smallint", sdk.Int(int64(x))
	case float64:
		return "double precision", sdk.Float(x)
	case float32:
		return "real", sdk.Float(float64(x))
	case string:
		return "text", sdk.Text(x)
	case json.RawMessage:
		return "jsonb", sdk.JSON(x)
	case []byte:
		return "bytea", sdk.Bytes(x)
	case time.Time:
		return "timestamp with time zone", sdk.Time(x)
	}
	panic(fmt.Sprintf("sdktest.Row: column %q: %T is not a column value (use an sdk.Value)", name, x))
}

var kindTypes = map[sdk.Kind]string{
	sdk.KindBool:    "boolean",
	sdk.KindInt:     "bigint",
	sdk.KindFloat:   "double precision",
	sdk.KindNumeric: "numeric",
	sdk.KindText:    "text",
	sdk.KindBytes:   "bytea",
	sdk.KindTime:    "timestamp with time zone",
	sdk.KindJSON:    "jsonb",
}

// testWriter sends log lines to t.Log until the test ends (logging after
// that would panic: a handler may outlive its test).
type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func newTestWriter(t testing.TB) *testWriter {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return w
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}
