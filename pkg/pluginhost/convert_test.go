package pluginhost

import (
	"math"
	"testing"
	"time"

	"github.com/gobucardo/gobucardo/pkg/replicate"
	"github.com/gobucardo/gobucardo/pkg/sdk"
)

// TestValues: a column's text output, as a run reads it (TimeZone UTC,
// DateStyle ISO, bytea_output hex), becomes an sdk.Value of its kind, and
// the value back becomes text the type's input function reads as the same
// value.
func TestValues(t *testing.T) {
	tm := time.Date(2024, 1, 1, 7, 0, 0, 123456000, time.UTC)
	cases := []struct {
		name, typ, text string
		want            sdk.Value
		back            string // "" when the same as text
	}{
		{"integer", "integer", "-42", sdk.Int(-42), ""},
		{"bigint min", "bigint", "-9223372036854775808", sdk.Int(-9223372036854775808), ""},
		{"numeric keeps its digits", "numeric(20,5)", "1.50000", sdk.Numeric("1.50000"), ""},
		{"double", "double precision", "0.1", sdk.Float(0.1), ""},
		{"infinity", "real", "Infinity", sdk.Float(math.Inf(1)), ""},
		{"text", "character varying(10)", `ü " ' \ tab`, sdk.Text(`ü " ' \ tab`), ""},
		{"bytea", "bytea", `\x00ff`, sdk.Bytes([]byte{0, 0xff}), ""},
		{"true", "boolean", "t", sdk.Bool(true), ""},
		{"false", "boolean", "f", sdk.Bool(false), ""},
		{"timestamptz", "timestamp(3) with time zone", "2024-01-01 07:00:00.123456+00", sdk.Time(tm), "2024-01-01 07:00:00.123456Z"},
		{"timestamp", "timestamp without time zone", "2024-01-01 07:00:00.123456", sdk.Time(tm), "2024-01-01 07:00:00.123456Z"},
		{"date", "date", "2024-02-29", sdk.Time(time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC)), "2024-02-29 00:00:00Z"},
		{"date infinity", "date", "infinity", sdk.Other("date", "infinity"), ""},
		{"jsonb", "jsonb", `{"a": [1, 2]}`, sdk.JSON([]byte(`{"a": [1, 2]}`)), ""},
		{"uuid", "uuid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", sdk.Other("uuid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), ""},
		{"enum", "mood", "happy", sdk.Other("mood", "happy"), ""},
		{"array", "integer[]", "{1,2,3}", sdk.Other("integer[]", "{1,2,3}"), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := valueFromText(tc.typ, &tc.text)
			if !got.Equal(tc.want) {
				t.Fatalf("%s %q: %v %s, want %v %s", tc.typ, tc.text, got.Kind(), got, tc.want.Kind(), tc.want)
			}
			want := tc.back
			if want == "" {
				want = tc.text
			}
			if back := valueText(got); back == nil || *back != want {
				t.Errorf("back to text: %v, want %q", back, want)
			}
		})
	}
	if v := valueFromText("integer", nil); !v.IsNull() || valueText(v) != nil {
		t.Errorf("NULL: %v", v)
	}
}

// TestAnswers: each answer of a plugin maps to the run's, and one the run
// does not know to one it refuses.
func TestAnswers(t *testing.T) {
	one := "1"
	merged := sdk.Row{{Name: "id", Type: "integer", Value: sdk.Int(1)}}
	resolutions := []struct {
		name string
		in   sdk.Resolution
		want replicate.Resolution
	}{
		{"winner", sdk.Winner("B"), replicate.Resolution{Action: replicate.ResolveWinner, DB: "B"}},
		{"merge", sdk.Merge(merged), replicate.Resolution{Action: replicate.ResolveMerge, Row: replicate.Row{{Name: "id", Type: "integer", Value: &one}}}},
		{"skip", sdk.Skip("later"), replicate.Resolution{Action: replicate.ResolveSkip, Message: "later"}},
		{"abort", sdk.Abort("no"), replicate.Resolution{Action: replicate.ResolveAbort, Message: "no"}},
		{"none", sdk.Resolution{}, replicate.Resolution{}},
	}
	for _, tc := range resolutions {
		t.Run("resolution "+tc.name, func(t *testing.T) {
			got := resolutionFromSDK(tc.in)
			if got.Action != tc.want.Action || got.DB != tc.want.DB || got.Message != tc.want.Message || len(got.Row) != len(tc.want.Row) {
				t.Fatalf("%+v, want %+v", got, tc.want)
			}
			for i, c := range got.Row {
				if w := tc.want.Row[i]; c.Name != w.Name || c.Type != w.Type || *c.Value != *w.Value {
					t.Errorf("column %d: %+v, want %+v", i, c, w)
				}
			}
		})
	}
	decisions := []struct {
		name string
		in   sdk.ExceptionDecision
		want replicate.ExceptionAction
	}{
		{"retry", sdk.Retry("again"), replicate.ExceptionRetry},
		{"skip rows", sdk.SkipRows("park"), replicate.ExceptionSkipRows},
		{"fail", sdk.Fail("no"), replicate.ExceptionFail},
		{"none fails", sdk.ExceptionDecision{}, replicate.ExceptionFail},
	}
	for _, tc := range decisions {
		t.Run("exception "+tc.name, func(t *testing.T) {
			if got := exceptionDecisionFromSDK(tc.in); got.Action != tc.want || got.Message != tc.in.Message {
				t.Errorf("%+v, want %v", got, tc.want)
			}
		})
	}
	if d := hookDecisionFromSDK(sdk.Cancel("not now")); !d.Cancel || d.Reason != "not now" {
		t.Errorf("cancel: %+v", d)
	}
	if d := hookDecisionFromSDK(sdk.Continue()); d.Cancel {
		t.Errorf("continue: %+v", d)
	}
	e := hookEventToSDK(replicate.HookEvent{Sync: "s1", Hook: replicate.AfterTxn, Attempt: 2, Result: &replicate.RunSummary{Inserts: 3}})
	if e.Hook != sdk.AfterTxn || !e.Hook.Valid() || e.Attempt != 2 || e.Result == nil || e.Result.Inserts != 3 {
		t.Errorf("hook event %+v", e)
	}
}
