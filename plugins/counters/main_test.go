package main

import (
	"strings"
	"testing"
	"time"

	"github.com/gobucardo/gobucardo/pkg/sdk"
	"github.com/gobucardo/gobucardo/pkg/sdk/sdktest"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func stock(onHand, reserved any, note string) sdk.Row {
	return sdktest.Row("id", int64(1), "on_hand", onHand, "reserved", reserved, "note", note)
}

func configured(t *testing.T, settings map[string]string) *counters {
	t.Helper()
	h := &counters{}
	if err := sdktest.Configure(t, h, settings); err != nil {
		t.Fatal(err)
	}
	return h
}

func TestResolve(t *testing.T) {
	a := func(row, before sdk.Row) sdk.SourceRow {
		return sdk.SourceRow{DB: "A", Row: row, Before: before, ChangedAt: t0}
	}
	b := func(row, before sdk.Row) sdk.SourceRow {
		return sdk.SourceRow{DB: "B", Row: row, Before: before, ChangedAt: t0.Add(time.Second)}
	}
	tests := []struct {
		name     string
		settings map[string]string
		previous sdk.Row
		sources  []sdk.SourceRow
		want     sdk.Row // merged row; nil when want is not a merge
		winner   string
		abortIs  string
	}{
		{
			name:     "previous as the common base",
			previous: stock(int64(10), int64(0), "old"),
			sources:  []sdk.SourceRow{a(stock(int64(7), int64(1), "a"), nil), b(stock(int64(15), int64(0), "b"), nil)},
			// on_hand 10 + (7-10) + (15-10) = 12; reserved 0 + 1 + 0; note from B, the latest
			want: stock(int64(12), int64(1), "b"),
		},
		{
			name:    "each source's before row, no previous",
			sources: []sdk.SourceRow{a(stock(int64(7), int64(2), "a"), stock(int64(10), int64(2), "x")), b(stock(int64(4), int64(5), "b"), stock(int64(10), int64(2), "x"))},
			want:    stock(int64(1), int64(5), "b"),
		},
		{
			name:     "before row preferred to previous",
			previous: stock(int64(100), int64(0), "old"),
			sources:  []sdk.SourceRow{a(stock(int64(12), int64(0), "a"), stock(int64(10), int64(0), "x")), b(stock(int64(99), int64(0), "b"), nil)},
			// base 100 + (12-10) + (99-100) = 101
			want: stock(int64(101), int64(0), "b"),
		},
		{
			name:     "numeric keeps its scale",
			settings: map[string]string{"columns": "on_hand"},
			previous: stock(sdk.Numeric("10.50"), int64(0), "old"),
			sources:  []sdk.SourceRow{a(stock(sdk.Numeric("10.75"), int64(0), "a"), nil), b(stock(sdk.Numeric("9.5"), int64(0), "b"), nil)},
			want:     stock(sdk.Numeric("9.75"), int64(0), "b"),
		},
		{
			name:     "NULL counts as zero",
			previous: stock(nil, int64(0), "old"),
			sources:  []sdk.SourceRow{a(stock(int64(2), int64(0), "a"), nil), b(stock(int64(3), int64(0), "b"), nil)},
			want:     stock(int64(5), int64(0), "b"),
		},
		{
			name:    "no base aborts by default",
			sources: []sdk.SourceRow{a(stock(int64(2), int64(0), "a"), nil), b(stock(int64(3), int64(0), "b"), nil)},
			abortIs: "no base value known",
		},
		{
			name:     "no base, nobase=latest",
			settings: map[string]string{"columns": "on_hand", "nobase": "latest"},
			sources:  []sdk.SourceRow{a(stock(int64(2), int64(0), "a"), nil), b(stock(int64(3), int64(0), "b"), nil)},
			winner:   "B",
		},
		{
			name:     "a delete: the latest change wins",
			previous: stock(int64(10), int64(0), "old"),
			sources:  []sdk.SourceRow{a(stock(int64(2), int64(0), "a"), nil), {DB: "B", Deleted: true, ChangedAt: t0.Add(time.Hour)}},
			winner:   "B",
		},
		{
			name:     "not a number",
			settings: map[string]string{"columns": "note"},
			previous: stock(int64(1), int64(0), "old"),
			sources:  []sdk.SourceRow{a(stock(int64(2), int64(0), "a"), nil), b(stock(int64(3), int64(0), "b"), nil)},
			abortIs:  "not a number",
		},
		{
			name:     "bigint overflow",
			settings: map[string]string{"columns": "on_hand"},
			previous: stock(int64(0), int64(0), "old"),
			sources:  []sdk.SourceRow{a(stock(int64(1<<62), int64(0), "a"), nil), b(stock(int64(1<<62), int64(0), "b"), nil)},
			abortIs:  "does not fit a bigint",
		},
		{
			name:     "a key column",
			settings: map[string]string{"columns": "id"},
			previous: stock(int64(0), int64(0), "old"),
			sources:  []sdk.SourceRow{a(stock(int64(1), int64(0), "a"), nil), b(stock(int64(1), int64(0), "b"), nil)},
			abortIs:  "is a key column",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			settings := tt.settings
			if settings == nil {
				settings = map[string]string{"columns": "on_hand, reserved"}
			}
			c := sdk.Conflict{Sync: "s1", Table: "public.stock", Key: sdktest.Row("id", int64(1)), Sources: tt.sources, Previous: tt.previous}
			got := sdktest.Resolve(t, configured(t, settings), c)
			switch {
			case tt.abortIs != "":
				if got.Action != sdk.ActionAbort || !strings.Contains(got.Message, tt.abortIs) {
					t.Fatalf("got %v %q, want abort with %q", got.Action, got.Message, tt.abortIs)
				}
			case tt.winner != "":
				if got.Action != sdk.ActionWinner || got.DB != tt.winner {
					t.Fatalf("got %v %q %q, want winner %s", got.Action, got.DB, got.Message, tt.winner)
				}
			default:
				if got.Action != sdk.ActionMerge {
					t.Fatalf("got %v %q, want a merge", got.Action, got.Message)
				}
				if len(got.Row) != len(tt.want) {
					t.Fatalf("merged row %v, want %v", got.Row, tt.want)
				}
				for _, col := range tt.want {
					v, _ := got.Row.Get(col.Name)
					if !v.Equal(col.Value) || v.Kind() != col.Value.Kind() {
						t.Errorf("%s = %s (%s), want %s (%s)", col.Name, v, v.Kind(), col.Value, col.Value.Kind())
					}
				}
			}
		})
	}
}

func TestConfigure(t *testing.T) {
	tests := []struct {
		name     string
		settings map[string]string
		wantErr  string
	}{
		{"columns", map[string]string{"columns": "a,b"}, ""},
		{"nobase", map[string]string{"columns": "a", "nobase": "latest"}, ""},
		{"no columns", map[string]string{"columns": " , "}, "needs columns="},
		{"bad nobase", map[string]string{"columns": "a", "nobase": "first"}, `nobase="first"`},
		{"unknown key", map[string]string{"column": "a"}, `unknown setting "column"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := sdktest.Configure(t, &counters{}, tt.settings)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatal(err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("got %v, want an error with %q", err, tt.wantErr)
			}
		})
	}
}

func TestUnconfiguredAborts(t *testing.T) {
	row := stock(int64(1), int64(0), "")
	c := sdk.Conflict{Table: "public.stock", Key: sdktest.Row("id", int64(1)), Sources: []sdk.SourceRow{{DB: "A", Row: row}, {DB: "B", Row: row}}}
	if got := sdktest.Resolve(t, &counters{}, c); got.Action != sdk.ActionAbort {
		t.Fatalf("got %v, want abort", got.Action)
	}
}
