package sdk_test

import (
	"context"
	"errors"
	"math"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobucardo/gobucardo/pkg/sdk"
	"github.com/gobucardo/gobucardo/pkg/sdk/sdktest"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 123456000, time.UTC)

// item is a conflict on public.item (id, qty, note) between A and B.
func item() sdk.Conflict {
	return sdk.Conflict{
		Sync:  "s1",
		Table: "public.item",
		Key:   sdktest.Row("id", int64(1)),
		Sources: []sdk.SourceRow{
			{DB: "A", Row: sdktest.Row("id", int64(1), "qty", int64(5), "note", "a"), ChangedAt: t0},
			{DB: "B", Row: sdktest.Row("id", int64(1), "qty", int64(7), "note", "b"), ChangedAt: t0.Add(time.Second)},
		},
	}
}

func answer(r sdk.Resolution, err error) sdk.ConflictHandler {
	return sdk.ConflictFunc(func(context.Context, sdk.Conflict) (sdk.Resolution, error) { return r, err })
}

func TestResolveChecksTheAnswer(t *testing.T) {
	a := item().Sources[0].Row
	tests := []struct {
		name    string
		answer  sdk.Resolution
		wantErr string // "" for a valid answer
	}{
		{"winner", sdk.Winner("B"), ""},
		{"winner not a source", sdk.Winner("C"), `winner "C" is not a source of the conflict (sources: A, B)`},
		{"winner empty", sdk.Winner(""), `winner "" is not a source`},
		{"merge", sdk.Merge(a.With("qty", sdk.Int(12))), ""},
		{"merge in another column order", sdk.Merge(sdk.Row{a[2], a[1], a[0]}), ""},
		{"merge unknown column", sdk.Merge(a.With("colour", sdk.Text("red"))), `names column "colour", which public.item does not have (columns: id, qty, note)`},
		{"merge without the key", sdk.Merge(a[1:]), `lacks key column "id"`},
		{"merge changing the key", sdk.Merge(a.With("id", sdk.Int(2))), `changes key column "id" from 1 to 2`},
		{"merge retyping the key", sdk.Merge(a.With("id", sdk.Numeric("1"))), `changes key column "id" from int 1 to numeric 1`},
		{"merge missing a column", sdk.Merge(a[:2]), `lacks column "note"`},
		{"merge with a column twice", sdk.Merge(append(a.Clone(), a[1])), `has column "qty" twice`},
		{"merge of nothing", sdk.Merge(nil), "merged row is empty"},
		{"skip", sdk.Skip("not now"), ""},
		{"abort", sdk.Abort("stop"), ""},
		{"abort quoting a value", sdk.Abort("bad value caf\uFFFD"), ""},
		{"zero resolution", sdk.Resolution{}, "no resolution (winner, merge, skip or abort)"},
		{"unknown action", sdk.Resolution{Action: 99}, "no resolution"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := sdktest.Start(t, sdk.Plugin{Name: "p", Conflict: answer(tt.answer, nil)}).Resolve(sdktest.Context(t), item())
			if tt.wantErr != "" {
				if !errors.Is(err, sdk.ErrMalformed) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want ErrMalformed with %q", err, tt.wantErr)
				}
				if !strings.HasPrefix(err.Error(), `plugin "p" resolve public.item: malformed answer: `) {
					t.Fatalf("error %q does not name the plugin and the call", err)
				}
				if got.Action != 0 {
					t.Fatalf("an answer (%v) came with the error", got.Action)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Action != tt.answer.Action || got.DB != tt.answer.DB || got.Message != tt.answer.Message || len(got.Row) != len(tt.answer.Row) {
				t.Fatalf("got %+v, want %+v", got, tt.answer)
			}
		})
	}
}

func TestMergeFillsTypes(t *testing.T) {
	merged := sdk.Row{{Name: "id", Value: sdk.Int(1)}, {Name: "qty", Value: sdk.Int(12)}, {Name: "note", Type: "varchar", Value: sdk.Text("m")}}
	got := sdktest.Resolve(t, answer(sdk.Merge(merged), nil), item())
	want := []string{"bigint", "bigint", "varchar"}
	for i, col := range got.Row {
		if col.Type != want[i] {
			t.Errorf("column %s type %q, want %q", col.Name, col.Type, want[i])
		}
	}
}

func TestMergeWhenASourceDeleted(t *testing.T) {
	c := item()
	c.Sources[1] = sdk.SourceRow{DB: "B", Deleted: true, ChangedAt: t0}
	got := sdktest.Resolve(t, answer(sdk.Merge(c.Sources[0].Row.With("qty", sdk.Int(0))), nil), c)
	if got.Action != sdk.ActionMerge {
		t.Fatalf("got %v", got.Action)
	}
}

func TestHandlerErrors(t *testing.T) {
	tests := []struct {
		name string
		h    sdk.ConflictHandler
		want string
	}{
		{"error", answer(sdk.Resolution{}, errors.New("no idea")), "no idea"},
		{"error with an answer", answer(sdk.Winner("A"), errors.New("both")), "both"},
		{"panic", sdk.ConflictFunc(func(context.Context, sdk.Conflict) (sdk.Resolution, error) { panic("boom") }), "resolve panicked: boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := sdktest.Start(t, sdk.Plugin{Conflict: tt.h})
			_, err := c.Resolve(sdktest.Context(t), item())
			var he *sdk.HandlerError
			if !errors.As(err, &he) || he.Message != tt.want {
				t.Fatalf("got %v, want a HandlerError %q", err, tt.want)
			}
			if errors.Is(err, sdk.ErrMalformed) {
				t.Fatal("a handler error reported as malformed")
			}
			// The plugin survives a panic.
			if _, err := c.Resolve(sdktest.Context(t), item()); !errors.As(err, &he) {
				t.Fatalf("second call: %v", err)
			}
		})
	}
}

func TestDeadline(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	sawCancel := make(chan struct{}, 1)
	hang := sdk.ConflictFunc(func(ctx context.Context, _ sdk.Conflict) (sdk.Resolution, error) {
		<-ctx.Done() // the plugin side sees the host give up...
		sawCancel <- struct{}{}
		<-release // ...but this handler keeps hanging regardless
		return sdk.Skip("late"), nil
	})
	c := sdktest.Start(t, sdk.Plugin{Conflict: hang})
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Resolve(ctx, item())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("returned after %v", d)
	}
	select {
	case <-sawCancel:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler's ctx was not cancelled")
	}
}

func TestCanceled(t *testing.T) {
	c := sdktest.Start(t, sdk.Plugin{Conflict: answer(sdk.Winner("A"), nil)})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := c.Resolve(ctx, item()); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

func TestUnsupported(t *testing.T) {
	c := sdktest.Start(t, sdk.Plugin{Conflict: answer(sdk.Winner("A"), nil)})
	if conflict, exception, hook := c.Capabilities(); !conflict || exception || hook {
		t.Fatalf("capabilities %v %v %v", conflict, exception, hook)
	}
	ctx := sdktest.Context(t)
	if _, err := c.Handle(ctx, sdk.Exception{}); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Handle: %v", err)
	}
	if _, err := c.Run(ctx, sdk.HookEvent{Hook: sdk.BeforeSync}); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Run: %v", err)
	}
	if err := c.Configure(ctx, map[string]string{"a": "1"}); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Configure: %v", err)
	}
}

// recorder remembers what it was given.
type recorder struct {
	mu        sync.Mutex
	conflict  sdk.Conflict
	exception sdk.Exception
	event     sdk.HookEvent
	settings  map[string]string
	configure int
}

func (r *recorder) Resolve(_ context.Context, c sdk.Conflict) (sdk.Resolution, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.conflict = c
	return sdk.Winner(c.Sources[0].DB), nil
}

func (r *recorder) Handle(_ context.Context, e sdk.Exception) (sdk.ExceptionDecision, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.exception = e
	return sdk.SkipRows("parked"), nil
}

func (r *recorder) Run(_ context.Context, e sdk.HookEvent) (sdk.HookDecision, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.event = e
	return sdk.Cancel("not now"), nil
}

func (r *recorder) Configure(_ context.Context, settings map[string]string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.settings = settings
	r.configure++
	return nil
}

func TestRoundTrip(t *testing.T) {
	every := sdktest.Row(
		"id", int64(math.MinInt64),
		"null", nil,
		"flag", true,
		"f", 2.5,
		"nan", math.NaN(),
		"n", sdk.Numeric("-12345678901234567890.000001"),
		"t", "héllo\x00",
		"b", []byte{0, 1, 255},
		"ts", t0,
		"j", sdk.JSON([]byte(`{"a": [1, null]}`)),
		"u", sdk.Other("uuid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
		"empty", "",
		"latin1", "caf\xe9", // not UTF-8, as a SQL_ASCII database may hold
	)
	sent := sdk.Conflict{
		Sync:  "s1",
		Table: "public.every",
		Key:   every[:1],
		Sources: []sdk.SourceRow{
			{DB: "A", Row: every, ChangedAt: t0, Before: every.With("flag", sdk.Bool(false))},
			{DB: "B", Deleted: true, ChangedAt: t0.Add(time.Hour)},
			{DB: "C", Row: sdk.Row{}, ChangedAt: t0},
		},
		Previous: every,
	}
	r := &recorder{}
	c := sdktest.Start(t, sdk.Plugin{Name: "rec", Conflict: r, Exception: r, Hook: r})
	ctx := sdktest.Context(t)

	if conflict, exception, hook := c.Capabilities(); !conflict || !exception || !hook || c.Name() != "rec" {
		t.Fatalf("capabilities %v %v %v, name %q", conflict, exception, hook, c.Name())
	}
	if err := c.Configure(ctx, map[string]string{"k": "v", "e": ""}); err != nil {
		t.Fatal(err)
	}
	if r.configure != 1 || !reflect.DeepEqual(r.settings, map[string]string{"k": "v", "e": ""}) {
		t.Fatalf("configured %d times with %v (one value, three handlers: once)", r.configure, r.settings)
	}

	if _, err := c.Resolve(ctx, sent); err != nil {
		t.Fatal(err)
	}
	got := r.conflict
	if got.Sync != sent.Sync || got.Table != sent.Table || len(got.Sources) != 3 {
		t.Fatalf("got %+v", got)
	}
	sameRow(t, "key", got.Key, sent.Key)
	sameRow(t, "previous", got.Previous, sent.Previous)
	sameRow(t, "A", got.Sources[0].Row, every)
	sameRow(t, "A before", got.Sources[0].Before, sent.Sources[0].Before)
	if !got.Sources[0].ChangedAt.Equal(t0) || got.Sources[0].Deleted {
		t.Errorf("A: %v %v", got.Sources[0].ChangedAt, got.Sources[0].Deleted)
	}
	if b := got.Sources[1]; !b.Deleted || b.Row != nil || b.Before != nil || !b.ChangedAt.Equal(t0.Add(time.Hour)) {
		t.Errorf("B: %+v", b)
	}
	if c := got.Sources[2]; c.Row == nil || len(c.Row) != 0 {
		t.Errorf("C: an empty row became %#v", c.Row)
	}

	e := sdk.Exception{Sync: "s1", Table: "public.every", DB: "B", SQLState: "23505", Message: "dup", Detail: "Key (id)=(1) already exists.",
		Constraint: "every_pkey", Keys: []sdk.Row{every[:1], every[:2]}, Attempt: 3}
	d, err := c.Handle(ctx, e)
	if err != nil || d.Action != sdk.ActionSkipRows || d.Message != "parked" {
		t.Fatalf("Handle = %+v, %v", d, err)
	}
	ge := r.exception
	if ge.Sync != e.Sync || ge.Table != e.Table || ge.DB != e.DB || ge.SQLState != e.SQLState || ge.Message != e.Message ||
		ge.Detail != e.Detail || ge.Constraint != e.Constraint || ge.Attempt != 3 || len(ge.Keys) != 2 {
		t.Fatalf("exception %+v", ge)
	}
	sameRow(t, "exception key", ge.Keys[1], e.Keys[1])

	ev := sdk.HookEvent{Sync: "s1", Hook: sdk.AfterSync, Attempt: 2, Result: &sdk.RunSummary{Deletes: 1, Inserts: 2, Conflicts: 3, Error: "x"}}
	hd, err := c.Run(ctx, ev)
	if err != nil || hd.Action != sdk.ActionCancel || hd.Reason != "not now" {
		t.Fatalf("Run = %+v, %v", hd, err)
	}
	if r.event.Sync != "s1" || r.event.Hook != sdk.AfterSync || r.event.Attempt != 2 || r.event.Result == nil || *r.event.Result != *ev.Result {
		t.Fatalf("event %+v", r.event)
	}
	if _, err := c.Run(ctx, sdk.HookEvent{Hook: sdk.BeforeSync}); err != nil {
		t.Fatal(err)
	}
	if r.event.Result != nil {
		t.Fatal("no result became a result")
	}
}

func sameRow(t *testing.T, what string, got, want sdk.Row) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d columns, want %d", what, len(got), len(want))
		return
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Name != w.Name || g.Type != w.Type || g.Value.Kind() != w.Value.Kind() || !g.Value.Equal(w.Value) {
			t.Errorf("%s: column %d is %s %s %s (%s), want %s %s %s (%s)", what, i,
				g.Name, g.Type, g.Value, g.Value.Kind(), w.Name, w.Type, w.Value, w.Value.Kind())
		}
	}
}

func TestExceptionChecks(t *testing.T) {
	decide := func(d sdk.ExceptionDecision) sdk.ExceptionHandler {
		return sdk.ExceptionFunc(func(context.Context, sdk.Exception) (sdk.ExceptionDecision, error) { return d, nil })
	}
	withKeys := sdk.Exception{Table: "public.t", SQLState: "23505", Keys: []sdk.Row{sdktest.Row("id", 1)}}
	noKeys := sdk.Exception{Table: "public.t", SQLState: "40001"}
	tests := []struct {
		name    string
		d       sdk.ExceptionDecision
		e       sdk.Exception
		wantErr string
	}{
		{"retry", sdk.Retry("again"), noKeys, ""},
		{"fail", sdk.Fail("no"), noKeys, ""},
		{"skip rows", sdk.SkipRows("parked"), withKeys, ""},
		{"skip rows without rows", sdk.SkipRows("parked"), noKeys, "names no rows to park"},
		{"zero decision", sdk.ExceptionDecision{}, withKeys, "no decision (retry, skip_rows or fail)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := sdktest.Start(t, sdk.Plugin{Exception: decide(tt.d)}).Handle(sdktest.Context(t), tt.e)
			if tt.wantErr == "" {
				if err != nil || got != tt.d {
					t.Fatalf("got %+v, %v; want %+v", got, err, tt.d)
				}
				return
			}
			if !errors.Is(err, sdk.ErrMalformed) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want ErrMalformed with %q", err, tt.wantErr)
			}
		})
	}
}

func TestHookChecks(t *testing.T) {
	decide := func(d sdk.HookDecision) sdk.RunHook {
		return sdk.HookFunc(func(context.Context, sdk.HookEvent) (sdk.HookDecision, error) { return d, nil })
	}
	ctx := sdktest.Context(t)
	c := sdktest.Start(t, sdk.Plugin{Hook: decide(sdk.HookDecision{})})
	if _, err := c.Run(ctx, sdk.HookEvent{Hook: sdk.BeforeSync}); !errors.Is(err, sdk.ErrMalformed) || !strings.Contains(err.Error(), "no decision (continue or cancel)") {
		t.Fatalf("zero decision: %v", err)
	}
	c = sdktest.Start(t, sdk.Plugin{Hook: decide(sdk.Continue())})
	if _, err := c.Run(ctx, sdk.HookEvent{Hook: "before_lunch"}); err == nil || !strings.Contains(err.Error(), "not a hook point") {
		t.Fatalf("bad hook point: %v", err)
	}
	if d := sdktest.Hook(t, decide(sdk.Continue()), sdk.HookEvent{Hook: sdk.BeforeTxn}); d.Action != sdk.ActionContinue {
		t.Fatalf("got %v", d.Action)
	}
}

func TestConfigureError(t *testing.T) {
	r := &refuser{}
	err := sdktest.Configure(t, r, map[string]string{"x": "1"})
	var he *sdk.HandlerError
	if !errors.As(err, &he) || he.Message != `unknown setting "x"` {
		t.Fatalf("got %v", err)
	}
}

type refuser struct{ recorder }

func (*refuser) Configure(_ context.Context, settings map[string]string) error {
	for k := range settings {
		return errors.New(`unknown setting "` + k + `"`)
	}
	return nil
}

func TestLargeRow(t *testing.T) {
	big := strings.Repeat("x", 8<<20) // above gRPC's default 4 MiB, both ways
	c := item()
	c.Sources[0].Row = c.Sources[0].Row.With("note", sdk.Text(big))
	echo := sdk.ConflictFunc(func(_ context.Context, c sdk.Conflict) (sdk.Resolution, error) {
		return sdk.Merge(c.Sources[0].Row), nil
	})
	got := sdktest.Resolve(t, echo, c)
	if note, _ := got.Row.Text("note"); note != big {
		t.Fatalf("note of %d bytes came back as %d", len(big), len(note))
	}
}
