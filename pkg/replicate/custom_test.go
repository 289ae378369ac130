package replicate

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gobucardo/gobucardo/pkg/catalog"
)

// customRun runs e's sync with handlers, collecting conflicts and parked rows.
func customRun(e *env, hs Handlers, attempts int) (Result, []Conflict, []Parked, error) {
	var cs []Conflict
	var ps []Parked
	var mu sync.Mutex
	res, err := RunRetrying(context.Background(), e.sync, Options{Handlers: hs,
		Conflicts: func(c []Conflict) error { mu.Lock(); cs = append(cs, c...); mu.Unlock(); return nil },
		Parked:    func(p []Parked) error { mu.Lock(); ps = append(ps, p...); mu.Unlock(); return nil },
	}, attempts)
	return res, cs, ps, err
}

func conflictHandler(name string, f ConflictFunc) Handlers {
	return Handlers{Conflict: map[string]ConflictCode{"": {Name: name, Handler: f}}}
}

// TestCustomConflict: a conflict handler sees each source's row, the base
// row of the delta target, and decides per row: a winner (a delete can
// win), a merged row written everywhere, a skip.
func TestCustomConflict(t *testing.T) {
	e := newEnv(t, kvSchema, []string{"A:source", "B:source", "C:target"}, []Relation{kv, other})
	for _, d := range e.sync.DBs {
		e.exec(d.Name, "SET session_replication_role = replica; INSERT INTO kv SELECT g, 'original', 'all' FROM generate_series(1, 5) g")
	}
	e.exec("A", "UPDATE kv SET v = 'A' || k WHERE k <= 4; DELETE FROM kv WHERE k = 4")
	e.exec("B", "UPDATE kv SET v = 'B' || k WHERE k <= 4; INSERT INTO kv VALUES (9, 'only B', 'B')")
	var seen sync.Map
	h := conflictHandler("decider", func(_ context.Context, c ConflictRow) (Resolution, error) {
		k := intCol(c.Key, "k")
		seen.Store(k, c)
		a, b := sourceOf(c, "A"), sourceOf(c, "B")
		switch k {
		case 1:
			return Resolution{Action: ResolveWinner, DB: "A"}, nil
		case 2:
			v := textCol(a.Row, "v") + "+" + textCol(b.Row, "v")
			return Resolution{Action: ResolveMerge, Row: with(with(b.Row, "v", &v), "src", nil)}, nil
		case 3:
			return Resolution{Action: ResolveSkip, Message: "left for a person"}, nil
		}
		return Resolution{Action: ResolveWinner, DB: "A"}, nil // k=4: A deleted it
	})
	res, cs, _, err := customRun(e, h, 1)
	if err != nil {
		t.Fatal(err)
	}
	if res.Conflicts != 4 || len(cs) != 4 {
		t.Fatalf("conflicts %d, logged %+v", res.Conflicts, cs)
	}
	want := map[int]string{1: "A1", 2: "A2+B2", 4: "<absent>", 5: "original", 9: "only B"}
	for k, v := range want {
		for _, db := range []string{"A", "B", "C"} {
			if got := e.value(db, k); got != v {
				t.Errorf("%s k=%d: %q, want %q", db, k, got, v)
			}
		}
	}
	if a, b, c := e.value("A", 3), e.value("B", 3), e.value("C", 3); a != "A3" || b != "B3" || c != "original" {
		t.Errorf("a skipped row was written: A %q B %q C %q", a, b, c)
	}
	raw, _ := seen.Load(2)
	c2 := raw.(ConflictRow)
	if c2.Sync != e.sync.Name || c2.Table != "public.kv" || len(c2.Sources) != 2 {
		t.Errorf("conflict k=2: %+v", c2)
	}
	if v := textCol(c2.Previous, "v"); v != "original" {
		t.Errorf("previous row of k=2 (from target C): %v", c2.Previous)
	}
	if col := c2.Key[0]; col.Name != "k" || col.Type != "integer" {
		t.Errorf("key column %+v", col)
	}
	raw, _ = seen.Load(4)
	if a := sourceOf(raw.(ConflictRow), "A"); !a.Deleted || a.Row != nil || a.ChangedAt.IsZero() {
		t.Errorf("k=4 on A should be a delete: %+v", a)
	}
	notes := map[string]string{}
	for _, c := range cs {
		notes[string(c.Key)] = c.Strategy + " winner=" + c.Winner
	}
	for k, n := range map[string]string{`{"k": 1}`: "customcode decider winner=A", `{"k": 2}`: "customcode decider: merged winner=",
		`{"k": 3}`: "customcode decider: skipped: left for a person winner="} {
		if notes[k] != n {
			t.Errorf("conflict log of %s: %q, want %q", k, notes[k], n)
		}
	}
	// Nothing echoes back; the skipped row stays as it is.
	if res, _, _, err := customRun(e, h, 1); err != nil || res.Inserts+res.Deletes != 0 {
		t.Errorf("second run: %+v %v", res, err)
	}
}

// TestCustomConflictFailures: abort, a handler error and a missing
// handler fail the run and change nothing.
func TestCustomConflictFailures(t *testing.T) {
	cases := []struct {
		name string
		hs   Handlers
		want string
	}{
		{"abort", conflictHandler("strict", func(context.Context, ConflictRow) (Resolution, error) {
			return Resolution{Action: ResolveAbort, Message: "two writers on one row"}, nil
		}), "customcode strict aborted the run at key {\"k\": 1}: two writers on one row"},
		{"error", conflictHandler("broken", func(context.Context, ConflictRow) (Resolution, error) {
			return Resolution{}, errors.New("plugin went away")
		}), "customcode broken: plugin went away"},
		{"no answer", conflictHandler("mute", func(context.Context, ConflictRow) (Resolution, error) {
			return Resolution{}, nil
		}), "customcode mute gave no resolution at key {\"k\": 1}"},
		{"winner not a source", conflictHandler("lost", func(context.Context, ConflictRow) (Resolution, error) {
			return Resolution{Action: ResolveWinner, DB: "C"}, nil
		}), "customcode lost chose \"C\" at key {\"k\": 1}, which is not a source of the conflict"},
		{"none", Handlers{}, "conflict_strategy custom needs a conflict customcode"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, kvSchema, []string{"A:source", "B:source", "C:target"}, []Relation{kv})
			for _, d := range e.sync.DBs {
				e.exec(d.Name, "SET session_replication_role = replica; INSERT INTO kv VALUES (1, 'original', 'all')")
			}
			e.sync.ConflictStrategy = catalog.StrategyCustom
			e.exec("A", "UPDATE kv SET v = 'A' WHERE k = 1; INSERT INTO kv VALUES (2, 'new on A', 'A')")
			e.exec("B", "UPDATE kv SET v = 'B' WHERE k = 1")
			_, _, _, err := customRun(e, tc.hs, 1)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if e.value("C", 2) != "<absent>" || e.value("C", 1) != "original" || e.value("B", 2) != "<absent>" {
				t.Error("a failed run changed a db")
			}
		})
	}
}

// TestCustomMergeTypes: a merged row of every listed type is written back
// exactly (text output in, input functions out), and columns come with
// their types (pkg/pluginhost types the values from them).
func TestCustomMergeTypes(t *testing.T) {
	var cols, valsA, valsB []string
	for i, kt := range keyTypes {
		cols = append(cols, fmt.Sprintf("c%d %s", i, kt.typ))
		valsA = append(valsA, kt.a)
		valsB = append(valsB, kt.b)
	}
	schema := typesPrelude + "CREATE TABLE public.wide (id int PRIMARY KEY, " + strings.Join(cols, ", ") + ");"
	wide := Relation{Schema: "public", Name: "wide", KeyColumns: []string{"id"}}
	e := newEnv(t, schema, []string{"A:source", "B:source", "C:target"}, []Relation{wide})
	for _, d := range e.sync.DBs {
		e.exec(d.Name, "SET session_replication_role = replica; INSERT INTO wide (id) VALUES (1), (2)")
	}
	e.exec("A", "UPDATE wide SET ("+strings.Join(colNames(len(keyTypes)), ", ")+") = ROW("+strings.Join(valsA, ", ")+")")
	e.exec("B", "UPDATE wide SET ("+strings.Join(colNames(len(keyTypes)), ", ")+") = ROW("+strings.Join(valsB, ", ")+")")
	e.exec("B", "UPDATE wide SET c0 = NULL WHERE id = 2")
	types := map[string]bool{}
	var mu sync.Mutex
	h := conflictHandler("merge", func(_ context.Context, c ConflictRow) (Resolution, error) {
		id := intCol(c.Key, "id")
		from := "A"
		if id == 2 {
			from = "B"
		}
		s := sourceOf(c, from)
		if id == 1 { // A's values: no NULL
			mu.Lock()
			for _, col := range s.Row {
				types[col.Type] = col.Value != nil
			}
			mu.Unlock()
		}
		return Resolution{Action: ResolveMerge, Row: slices.Clone(s.Row)}, nil
	})
	if _, _, _, err := customRun(e, h, 1); err != nil {
		t.Fatal(err)
	}
	e.assertSame()
	// Row 1 is A's values, row 2 B's (with B's NULL), on every db.
	for id, vals := range map[int][]string{1: valsA, 2: append([]string{"NULL"}, valsB[1:]...)} {
		var checks []string
		for i, kt := range keyTypes {
			checks = append(checks, fmt.Sprintf("c%d IS NOT DISTINCT FROM (%s)::%s", i, vals[i], kt.typ))
		}
		for _, db := range []string{"A", "B", "C"} {
			var bad []int
			q := fmt.Sprintf("SELECT array_positions(ARRAY[%s], false) FROM wide WHERE id = %d", strings.Join(checks, ", "), id)
			if err := e.conn(db).QueryRow(context.Background(), q).Scan(&bad); err != nil || len(bad) > 0 {
				var row string
				_ = e.conn(db).QueryRow(context.Background(), fmt.Sprintf("SELECT to_jsonb(w)::text FROM wide w WHERE id = %d", id)).Scan(&row)
				t.Errorf("%s id=%d: columns at these positions (1-based) differ from what was merged: %v %v; the row: %s", db, id, bad, err, row)
			}
		}
	}
	for _, typ := range []string{"integer", "bigint", "numeric(20,5)", "text", "bytea", "boolean", "timestamp with time zone",
		"date", "jsonb", "uuid", "mood"} {
		if !types[typ] {
			t.Errorf("no %s value came with its type: %v", typ, types)
		}
	}
}

func colNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("c%d", i)
	}
	return out
}

// TestHooks: before_sync and after_txn cancel (nothing changes, the
// watermark stays), after_sync sees the outcome, before_txn errors fail.
func TestHooks(t *testing.T) {
	e := newEnv(t, kvSchema, []string{"A:source", "C:target"}, []Relation{kv})
	e.exec("A", "INSERT INTO kv VALUES (1, 'one', 'A')")
	var calls []string
	var after []RunSummary
	hook := func(cancelAt HookPoint) Handlers {
		f := HookFunc(func(_ context.Context, ev HookEvent) (HookDecision, error) {
			calls = append(calls, string(ev.Hook))
			if ev.Hook == AfterSync {
				after = append(after, *ev.Result)
			}
			if ev.Hook == cancelAt {
				return HookDecision{Cancel: true, Reason: "not now"}, nil
			}
			return HookDecision{}, nil
		})
		hs := Handlers{Hooks: map[HookPoint][]HookCode{}}
		for _, p := range []HookPoint{BeforeSync, BeforeTxn, AfterTxn, AfterSync} {
			hs.Hooks[p] = []HookCode{{Name: "gate", Handler: f}}
		}
		return hs
	}
	for _, at := range []HookPoint{BeforeSync, AfterTxn} {
		calls, after = nil, nil
		_, _, _, err := customRun(e, hook(at), 1)
		var ce *CancelledError
		if !errors.Is(err, ErrCancelled) || !errors.As(err, &ce) || ce.Point != at || ce.Reason != "not now" || ce.Code != "gate" {
			t.Fatalf("cancel at %s: %v", at, err)
		}
		if e.value("C", 1) != "<absent>" {
			t.Fatalf("a run cancelled at %s changed the target", at)
		}
		// A run cancelled before it began does not end: no after_sync.
		if wantAfter := at != BeforeSync; (len(after) == 1 && after[0].Error != "") != wantAfter || len(after) > 1 {
			t.Errorf("after_sync of a run cancelled at %s: %+v (calls %v)", at, after, calls)
		}
	}
	calls, after = nil, nil
	res, _, _, err := customRun(e, hook(""), 1)
	if err != nil || res.Inserts != 1 || e.value("C", 1) != "one" {
		t.Fatalf("run: %+v %v", res, err)
	}
	if got := strings.Join(calls, " "); got != "before_sync before_txn after_txn after_sync" {
		t.Errorf("hooks called: %s", got)
	}
	if len(after) != 1 || after[0].Inserts != 1 || after[0].Error != "" {
		t.Errorf("after_sync saw %+v", after)
	}
	failing := Handlers{Hooks: map[HookPoint][]HookCode{BeforeTxn: {{Name: "bad", Handler: HookFunc(
		func(context.Context, HookEvent) (HookDecision, error) {
			return HookDecision{}, errors.New("boom")
		})}}}}
	if _, _, _, err := customRun(e, failing, 1); err == nil || errors.Is(err, ErrCancelled) || !strings.Contains(err.Error(), "customcode bad at before_txn: boom") {
		t.Errorf("a failing hook: %v", err)
	}
}

// exceptionEnv: A's new rows collide with a unique value C already has.
func exceptionEnv(t *testing.T) *env {
	e := newEnv(t, kvSchema, []string{"A:source", "C:target"}, []Relation{kv})
	e.exec("C", "CREATE UNIQUE INDEX kv_v ON kv (v); SET session_replication_role = replica; INSERT INTO kv VALUES (100, 'v15', 'C'), (101, 'v17', 'C')")
	e.exec("A", "INSERT INTO kv SELECT g, 'v' || g, 'A' FROM generate_series(10, 29) g")
	return e
}

func exceptionHandler(f ExceptionFunc) Handlers {
	return Handlers{Exception: map[string][]ExceptionCode{"public.kv": {{Name: "exc", Handler: f}}}}
}

// TestExceptionSkipRows: the failing rows are found among many, parked
// with their key, row and error; the others are applied.
func TestExceptionSkipRows(t *testing.T) {
	e := exceptionEnv(t)
	var got []Exception
	h := exceptionHandler(func(_ context.Context, ex Exception) (ExceptionDecision, error) {
		got = append(got, ex)
		return ExceptionDecision{Action: ExceptionSkipRows, Message: "duplicate"}, nil
	})
	res, _, parked, err := customRun(e, h, 1)
	if err != nil {
		t.Fatal(err)
	}
	if res.Inserts != 18 || res.Parked != 2 || len(parked) != 2 {
		t.Fatalf("result %+v, parked %+v", res, parked)
	}
	if len(got) != 1 || got[0].SQLState != "23505" || got[0].Constraint != "kv_v" || got[0].DB != "C" || len(got[0].Keys) != 2 || got[0].Attempt != 1 {
		t.Fatalf("exceptions %+v", got)
	}
	if k := intCol(got[0].Keys[1], "k"); k != 17 {
		t.Errorf("keys %+v", got[0].Keys)
	}
	p := parked[0]
	if string(p.Key) != `{"k": 15}` || !strings.Contains(string(p.Row), `"v": "v15"`) || p.SourceDB != "A" || p.TargetDB != "C" ||
		p.SQLState != "23505" || p.Code != "exc" || !strings.Contains(p.Error, "duplicate key") {
		t.Errorf("parked %+v", p)
	}
	for k, want := range map[int]string{10: "v10", 15: "<absent>", 29: "v29", 100: "v15"} {
		if v := e.value("C", k); v != want {
			t.Errorf("C k=%d: %q, want %q", k, v, want)
		}
	}
	// The keys are consumed: the next run is quiet.
	if res, _, _, err := customRun(e, h, 1); err != nil || res.Inserts != 0 {
		t.Errorf("second run %+v %v", res, err)
	}
}

// TestExceptionRetryAndFail: retry runs again with the attempt counted up
// to the limit; fail and a missing park record fail the run, which changes
// nothing.
func TestExceptionRetryAndFail(t *testing.T) {
	e := exceptionEnv(t)
	var attempts []int
	retry := exceptionHandler(func(_ context.Context, ex Exception) (ExceptionDecision, error) {
		attempts = append(attempts, ex.Attempt)
		if ex.Attempt == 2 {
			// Fix the data, as Bucardo's exception handlers do.
			e.exec("C", "DELETE FROM kv WHERE k >= 100")
		}
		return ExceptionDecision{Action: ExceptionRetry, Message: "fixed it"}, nil
	})
	res, _, _, err := customRun(e, retry, 5)
	if err != nil || res.Inserts != 20 || fmt.Sprint(attempts) != "[1 2]" {
		t.Fatalf("retry: %+v %v attempts %v", res, err, attempts)
	}

	e = exceptionEnv(t)
	attempts = nil
	if _, _, _, err := customRun(e, retry, 1); err == nil || !strings.Contains(err.Error(), "customcode exc asked for a retry (attempt 1): fixed it") {
		t.Errorf("retries exhausted: %v", err)
	}
	fail := exceptionHandler(func(context.Context, Exception) (ExceptionDecision, error) {
		return ExceptionDecision{Action: ExceptionFail, Message: "no way"}, nil
	})
	if _, _, _, err := customRun(e, fail, 3); err == nil || !strings.Contains(err.Error(), "customcode exc failed the run: no way") ||
		!strings.Contains(err.Error(), "SQLSTATE 23505") {
		t.Errorf("fail: %v", err)
	}
	skip := exceptionHandler(func(context.Context, Exception) (ExceptionDecision, error) {
		return ExceptionDecision{Action: ExceptionSkipRows, Message: "x"}, nil
	})
	_, err = Run(context.Background(), e.sync, Options{Handlers: skip})
	if err == nil || !strings.Contains(err.Error(), "nowhere to record them") {
		t.Errorf("park without a record: %v", err)
	}
	if e.value("C", 10) != "<absent>" {
		t.Error("a failed run changed the target")
	}
}

// TestCustomRandomized: two sources write random rows concurrently; a
// handler resolves each conflict at random, by winner or by merge; after
// quiescence, and a last round of writes that conflict for sure, every db
// is the same.
func TestCustomRandomized(t *testing.T) {
	e := newEnv(t, kvSchema, []string{"A:source", "B:source", "T:target"}, []Relation{kv, other})
	seed := rand.Int63()
	t.Logf("seed %d", seed)
	var calls atomic.Int64
	var rmu sync.Mutex
	decide := rand.New(rand.NewSource(seed))
	hs := conflictHandler("random", func(_ context.Context, c ConflictRow) (Resolution, error) {
		calls.Add(1)
		rmu.Lock()
		n := decide.Intn(3)
		rmu.Unlock()
		s := c.Sources[n%len(c.Sources)]
		if n == 2 && !s.Deleted {
			v := textCol(s.Row, "v") + "*"
			return Resolution{Action: ResolveMerge, Row: with(s.Row, "v", &v)}, nil
		}
		return Resolution{Action: ResolveWinner, DB: s.DB}, nil
	})
	stop := startWriters(t, e, []string{"A", "B"}, seed, 40, false)
	for i := 0; i < 10; i++ {
		if _, _, _, err := customRun(e, hs, 3); err != nil {
			t.Fatalf("run %d during writes: %v", i, err)
		}
	}
	stop()
	if _, _, _, err := customRun(e, hs, 3); err != nil {
		t.Fatal(err)
	}
	e.assertSame()
	before := calls.Load()
	for _, db := range []string{"A", "B"} {
		e.exec(db, "INSERT INTO kv SELECT g, $1, $1 FROM generate_series(200, 209) g ON CONFLICT (k) DO UPDATE SET v = excluded.v", db)
	}
	if _, _, _, err := customRun(e, hs, 3); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load() - before; n != 10 {
		t.Errorf("the last run asked about %d conflicts, want 10", n)
	}
	e.assertSame()
	if res, _, _, err := customRun(e, hs, 1); err != nil || res.Inserts+res.Deletes != 0 {
		t.Errorf("a quiet run changed rows: %+v %v", res, err)
	}
	t.Logf("%d conflicts decided by the handler", calls.Load())
}

// sourceOf returns the source of c that is db; the zero SourceRow if none.
func sourceOf(c ConflictRow, db string) SourceRow {
	for _, s := range c.Sources {
		if s.DB == db {
			return s
		}
	}
	return SourceRow{}
}

// textCol is the text of the named column of r; "" when NULL or absent.
func textCol(r Row, name string) string {
	if c, ok := r.Get(name); ok && c.Value != nil {
		return *c.Value
	}
	return ""
}

// intCol is the named column of r as an int; 0 when it is not one.
func intCol(r Row, name string) int {
	n, _ := strconv.Atoi(textCol(r, name))
	return n
}

// with returns a copy of r with the named column's value set to v.
func with(r Row, name string, v *string) Row {
	out := slices.Clone(r)
	for i := range out {
		if out[i].Name == name {
			out[i].Value = v
		}
	}
	return out
}
