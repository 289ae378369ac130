package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gobucardo/gobucardo/pkg/sdk"
	"github.com/gobucardo/gobucardo/pkg/sdk/sdktest"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func conflict(sources ...sdk.SourceRow) sdk.Conflict {
	return sdk.Conflict{Sync: "s1", Table: "public.item", Key: sdktest.Row("id", int64(1)), Sources: sources}
}

func src(db string, at time.Duration, row sdk.Row) sdk.SourceRow {
	return sdk.SourceRow{DB: db, Row: row, ChangedAt: t0.Add(at)}
}

func deleted(db string, at time.Duration) sdk.SourceRow {
	return sdk.SourceRow{DB: db, Deleted: true, ChangedAt: t0.Add(at)}
}

func configured(t *testing.T, column string) *highest {
	t.Helper()
	h := &highest{}
	if err := sdktest.Configure(t, h, map[string]string{"column": column}); err != nil {
		t.Fatal(err)
	}
	return h
}

func TestResolve(t *testing.T) {
	row := func(v any) sdk.Row { return sdktest.Row("id", int64(1), "version", v) }
	tests := []struct {
		name    string
		c       sdk.Conflict
		winner  string
		abortIs string // substring of the abort message, when the answer is Abort
	}{
		{"higher int wins", conflict(src("A", 0, row(int64(3))), src("B", -time.Hour, row(int64(7)))), "B", ""},
		{"numeric compares by value", conflict(src("A", 0, row(sdk.Numeric("10.5"))), src("B", 0, row(sdk.Numeric("9.75")))), "A", ""},
		{"int against numeric", conflict(src("A", 0, row(int64(10))), src("B", 0, row(sdk.Numeric("10.01")))), "B", ""},
		{"later timestamp wins", conflict(src("A", 0, row(t0.Add(time.Minute))), src("B", time.Hour, row(t0))), "A", ""},
		{"tie: latest change wins", conflict(src("A", 0, row(int64(5))), src("B", time.Second, row(int64(5)))), "B", ""},
		{"tie at the same moment: first db name", conflict(src("B", 0, row(int64(5))), src("A", 0, row(int64(5)))), "A", ""},
		{"NULL loses", conflict(src("A", time.Hour, row(nil)), src("B", 0, row(int64(1)))), "B", ""},
		{"delete loses to a value", conflict(deleted("A", time.Hour), src("B", 0, row(int64(1)))), "B", ""},
		{"three sources", conflict(src("A", 0, row(int64(1))), src("B", 0, row(int64(9))), src("C", 0, row(int64(4)))), "B", ""},
		{"all deleted: the latest delete", conflict(deleted("A", 0), deleted("B", time.Second)), "B", ""},
		{"missing column aborts", conflict(src("A", 0, sdktest.Row("id", int64(1))), src("B", 0, row(int64(1)))), "", `no column "version"`},
		{"incomparable values abort", conflict(src("A", 0, row("x")), src("B", 0, row(int64(1)))), "", "cannot compare"},
	}
	h := configured(t, "version")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := sdktest.Resolve(t, h, tt.c)
			if tt.abortIs != "" {
				if got.Action != sdk.ActionAbort || !strings.Contains(got.Message, tt.abortIs) {
					t.Fatalf("got %v %q, want abort with %q", got.Action, got.Message, tt.abortIs)
				}
				return
			}
			if got.Action != sdk.ActionWinner || got.DB != tt.winner {
				t.Fatalf("got %v %q %q, want winner %s", got.Action, got.DB, got.Message, tt.winner)
			}
		})
	}
}

func TestUnconfiguredAborts(t *testing.T) {
	got := sdktest.Resolve(t, &highest{}, conflict(src("A", 0, nil), src("B", 0, nil)))
	if got.Action != sdk.ActionAbort || !strings.Contains(got.Message, "column=NAME") {
		t.Fatalf("got %v %q, want an abort asking for column=NAME", got.Action, got.Message)
	}
}

func TestConfigure(t *testing.T) {
	tests := []struct {
		name     string
		settings map[string]string
		wantErr  string
	}{
		{"column", map[string]string{"column": "updated_at"}, ""},
		{"none", map[string]string{}, "needs column=NAME"},
		{"unknown key", map[string]string{"column": "v", "colum": "v"}, `unknown setting "colum"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := sdktest.Configure(t, &highest{}, tt.settings)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var he *sdk.HandlerError
			if !errors.As(err, &he) || !strings.Contains(he.Message, tt.wantErr) {
				t.Fatalf("got %v, want a handler error with %q", err, tt.wantErr)
			}
		})
	}
}
