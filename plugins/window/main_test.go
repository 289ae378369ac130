package main

import (
	"strings"
	"testing"
	"time"

	"github.com/gobucardo/gobucardo/pkg/sdk"
	"github.com/gobucardo/gobucardo/pkg/sdk/sdktest"
)

// at returns a window hook whose clock says hh:mm UTC on a fixed day.
func at(t *testing.T, hhmm string, settings map[string]string) *window {
	t.Helper()
	now, err := time.Parse("2006-01-02 15:04", "2025-06-01 "+hhmm)
	if err != nil {
		t.Fatal(err)
	}
	w := &window{now: func() time.Time { return now }}
	if err := sdktest.Configure(t, w, settings); err != nil {
		t.Fatal(err)
	}
	return w
}

func TestRun(t *testing.T) {
	night := map[string]string{"window": "22:00-06:00"}
	day := map[string]string{"window": "09:00-17:30"}
	paris := map[string]string{"window": "22:00-23:00", "zone": "Europe/Paris"} // UTC+2 in June
	tests := []struct {
		name     string
		settings map[string]string
		now      string
		hook     sdk.HookPoint
		want     sdk.HookAction
	}{
		{"night window, at night", night, "23:15", sdk.BeforeSync, sdk.ActionContinue},
		{"night window, after midnight", night, "02:00", sdk.BeforeSync, sdk.ActionContinue},
		{"night window, start included", night, "22:00", sdk.BeforeSync, sdk.ActionContinue},
		{"night window, end excluded", night, "06:00", sdk.BeforeSync, sdk.ActionCancel},
		{"night window, at noon", night, "12:00", sdk.BeforeSync, sdk.ActionCancel},
		{"day window, inside", day, "17:29", sdk.BeforeSync, sdk.ActionContinue},
		{"day window, before", day, "08:59", sdk.BeforeSync, sdk.ActionCancel},
		{"day window, after", day, "17:30", sdk.BeforeSync, sdk.ActionCancel},
		{"other hooks go on", night, "12:00", sdk.AfterSync, sdk.ActionContinue},
		{"before_txn goes on", night, "12:00", sdk.BeforeTxn, sdk.ActionContinue},
		{"zone: 20:30 UTC is 22:30 in Paris", paris, "20:30", sdk.BeforeSync, sdk.ActionContinue},
		{"zone: 22:30 UTC is 00:30 in Paris", paris, "22:30", sdk.BeforeSync, sdk.ActionCancel},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := at(t, tt.now, tt.settings)
			got := sdktest.Hook(t, w, sdk.HookEvent{Sync: "s1", Hook: tt.hook, Attempt: 1})
			if got.Action != tt.want {
				t.Fatalf("got %v %q, want %v", got.Action, got.Reason, tt.want)
			}
			if got.Action == sdk.ActionCancel && !strings.Contains(got.Reason, "outside the window") {
				t.Fatalf("reason %q does not say why", got.Reason)
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
		{"window", map[string]string{"window": "22:00-06:00"}, ""},
		{"missing", map[string]string{}, "needs window="},
		{"no dash", map[string]string{"window": "22:00"}, "want HH:MM-HH:MM"},
		{"bad hour", map[string]string{"window": "25:00-06:00"}, "not a time of day"},
		{"empty", map[string]string{"window": "06:00-06:00"}, "is empty"},
		{"bad zone", map[string]string{"window": "22:00-06:00", "zone": "Mars/Olympus"}, `zone="Mars/Olympus"`},
		{"unknown key", map[string]string{"window": "22:00-06:00", "tz": "UTC"}, `unknown setting "tz"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := sdktest.Configure(t, &window{now: time.Now}, tt.settings)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatal(err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("got %v, want an error with %q", err, tt.wantErr)
			}
		})
	}
}

func TestUnconfiguredCancels(t *testing.T) {
	got := sdktest.Hook(t, &window{now: time.Now}, sdk.HookEvent{Sync: "s1", Hook: sdk.BeforeSync, Attempt: 1})
	if got.Action != sdk.ActionCancel {
		t.Fatalf("got %v, want cancel", got.Action)
	}
}
