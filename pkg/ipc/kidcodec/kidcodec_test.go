package kidcodec

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gobucardo/gobucardo/pkg/catalog"
	"github.com/gobucardo/gobucardo/pkg/ipc/kidpb"
	"github.com/gobucardo/gobucardo/pkg/replicate"
	"github.com/gobucardo/gobucardo/pkg/runs"
)

// allSet fails the test for every field of v (recursively, through
// structs, pointers, the first element of slices and maps) left at its
// zero value: a round trip of such a value tests every field, and a field
// added later fails here until it is carried and set.
func allSet(t *testing.T, path string, v reflect.Value) {
	t.Helper()
	if v.IsZero() {
		t.Errorf("%s is not set in the test value", path)
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		allSet(t, path, v.Elem())
	case reflect.Struct:
		for i := range v.NumField() {
			allSet(t, path+"."+v.Type().Field(i).Name, v.Field(i))
		}
	case reflect.Slice:
		allSet(t, path+"[0]", v.Index(0))
	}
}

func fullSync() replicate.Sync {
	yes := true
	return replicate.Sync{Name: "s1", OneTimeCopy: 2, CommitEvery: 1000, IsolationLevel: "serializable",
		DeleteMethod: "truncate", ConflictStrategy: "bucardo_source",
		DBs: []replicate.DB{{Name: "A", Role: "source", ConnString: "host=/tmp port=5432 dbname=a password=pw", MakeDelta: true,
			Inactive: true, Hold: "not reached lately"}},
		Relations: []replicate.Relation{{Schema: "public", Name: "t", Sequence: true, KeyColumns: []string{"id"},
			ConflictStrategy: "bucardo_latest", MakeDelta: &yes, Lenient: true}},
		CustomCode: []replicate.CustomCode{{Name: "c1", Plugin: "/bin/p", SHA256: "abc", WhenRun: "conflict", Priority: 3,
			Settings: map[string]string{"k": "v"}, Timeout: 1500 * time.Millisecond, Schema: "public", Table: "t"}},
	}
}

func fullResult() replicate.Result {
	return replicate.Result{Deletes: 1, Inserts: 2, Truncates: 3, Conflicts: 4,
		Tables:   []replicate.TableResult{{Table: "public.t", Mode: "delta", Keys: 5, Deletes: 1, Inserts: 2, Truncated: true, Conflicts: 4}},
		Duration: 1234567 * time.Microsecond, OneTimeCopyDone: true, Parked: 6,
		Skipped: []replicate.Skipped{{DB: "C", Reason: "inactive"}}, CaughtUp: []string{"B"},
		OmittedColumns: []string{"column note of public.t (not on B)"}}
}

// TestSyncRoundTrip: every field of the run's specification reaches the kid.
func TestSyncRoundTrip(t *testing.T) {
	s := fullSync()
	allSet(t, "Sync", reflect.ValueOf(s))
	if got := DecodeSync(EncodeSync(s)); !reflect.DeepEqual(got, s) {
		t.Errorf("round trip\n got %+v\nwant %+v", got, s)
	}
	if got := DecodeSync(EncodeSync(replicate.Sync{Name: "s1"})); !reflect.DeepEqual(got, replicate.Sync{Name: "s1"}) {
		t.Errorf("round trip of an empty sync: %+v", got)
	}
}

// TestOutcomeRoundTrip: a run's result (per table too) and its error reach
// the controller: the message (secrets removed) and the outcome the
// controller acts on.
func TestOutcomeRoundTrip(t *testing.T) {
	allSet(t, "Result", reflect.ValueOf(fullResult()))
	abort := fmt.Errorf("table t: 2 keys changed on several sources: %w", replicate.ErrConflictAbort)
	cases := []struct {
		name string
		err  error
		want runs.Outcome
		msg  string
	}{
		{"ok", nil, runs.Outcome{Kind: runs.OK}, ""},
		{"failed", errors.New("db B: relation t is missing"), runs.Outcome{Kind: runs.Failed}, "db B: relation t is missing"},
		{"secrets removed", errors.New("connect password=s3cret failed"), runs.Outcome{Kind: runs.Failed}, "connect password=*** failed"},
		{"cancelled", &replicate.CancelledError{Code: "h", Point: "before_sync", Reason: "no"}, runs.Outcome{Kind: runs.Cancelled},
			"customcode h cancelled the run at before_sync: no"},
		{"conflict abort", abort, runs.Outcome{Kind: runs.ConflictAbort}, abort.Error()},
		{"targets lost", &replicate.TargetsLostError{DBs: []string{"B", "C"}, Err: errors.New("conn closed")},
			runs.Outcome{Kind: runs.TargetsLost, Lost: []string{"B", "C"}}, "conn closed"},
		{"targets lost in an abort", &replicate.TargetsLostError{DBs: []string{"B"}, Err: abort},
			runs.Outcome{Kind: runs.ConflictAbort, Lost: []string{"B"}}, abort.Error()},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := runs.Classify(c.err); !reflect.DeepEqual(got, c.want) {
				t.Fatalf("in the kid: %+v, want %+v", got, c.want)
			}
			res, ok, err := DecodeOutcome(EncodeOutcome(fullResult(), c.err, "s3cret"))
			if !ok {
				t.Fatal("not an outcome")
			}
			if !reflect.DeepEqual(res, fullResult()) {
				t.Errorf("result\n got %+v\nwant %+v", res, fullResult())
			}
			if got := runs.Classify(err); !reflect.DeepEqual(got, c.want) {
				t.Errorf("in the controller: %+v, want %+v", got, c.want)
			}
			switch {
			case c.err == nil && err != nil:
				t.Errorf("error %v, want none", err)
			case c.err != nil && (err == nil || err.Error() != c.msg):
				t.Errorf("message %v, want %q", err, c.msg)
			}
			if err != nil && strings.Contains(err.Error(), "s3cret") {
				t.Errorf("a secret reached the controller: %v", err)
			}
		})
	}
	if _, ok, _ := DecodeOutcome(nil); ok {
		t.Error("no event read as an outcome")
	}
}

// TestProgressRoundTrip: a progress event reaches the controller whole.
func TestProgressRoundTrip(t *testing.T) {
	p := replicate.Progress{Table: "public.t", Phase: "copy", Rows: 41200, Total: 100000}
	allSet(t, "Progress", reflect.ValueOf(p))
	if got, ok := DecodeProgress(EncodeProgress(p)); !ok || got != p {
		t.Errorf("round trip: %+v, %v", got, ok)
	}
	if _, ok := DecodeProgress(EncodeOutcome(replicate.Result{}, nil)); ok {
		t.Error("an outcome read as progress")
	}
}

// TestPluginCallsRoundTrip: the plugin calls a kid counted reach the
// controller whole, with the running plugins.
func TestPluginCallsRoundTrip(t *testing.T) {
	c := catalog.PluginCalls{Code: "merge", Outcome: catalog.PluginCallTimeout, Calls: 3, Seconds: 1.5}
	allSet(t, "PluginCalls", reflect.ValueOf(c))
	ev := EncodePlugins([]*kidpb.Plugin{{Code: "merge", Pid: 42}}, []catalog.PluginCalls{c})
	if got := DecodePluginCalls(ev); len(got) != 1 || got[0] != c {
		t.Errorf("round trip: %+v", got)
	}
	if ps := ev.GetPlugins().GetPlugins(); len(ps) != 1 || ps[0].GetPid() != 42 {
		t.Errorf("the running plugins were lost: %v", ps)
	}
	if got := DecodePluginCalls(EncodeProgress(replicate.Progress{})); got != nil {
		t.Errorf("a progress event read as plugin calls: %+v", got)
	}
}
