package admin

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gobucardo/gobucardo/pkg/catalog"
)

// TestParseThresholds: ping's --warning and --critical.
func TestParseThresholds(t *testing.T) {
	cases := []struct {
		name, warning, critical string
		want                    lagThresholds
		err                     string
	}{
		{"none", "", "", lagThresholds{}, ""},
		{"both", "5m", "15m", lagThresholds{5 * time.Minute, 15 * time.Minute}, ""},
		{"seconds", "30", "0", lagThresholds{warning: 30 * time.Second}, ""},
		{"equal", "1m", "60s", lagThresholds{time.Minute, time.Minute}, ""},
		{"warning above critical", "20m", "15m", lagThresholds{}, "--warning 20m0s is above --critical 15m0s"},
		{"not a duration", "soon", "", lagThresholds{}, `--warning "soon": use a duration`},
		{"negative", "", "-5m", lagThresholds{}, `--critical "-5m": use a duration`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseThresholds(tc.warning, tc.critical)
			switch {
			case tc.err != "":
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("error = %v, want %q", err, tc.err)
				}
			case err != nil || got != tc.want:
				t.Errorf("= %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

// TestSyncThresholds: ping checks a sync against its own overdue and
// expired, unless --warning or --critical is given: then the flags, both.
func TestSyncThresholds(t *testing.T) {
	own := func(overdue, expired time.Duration) syncStatus {
		d := catalog.SyncDetail{Sync: catalog.NewSync("s")}
		d.Overdue, d.Expired = overdue, expired
		return syncStatus{Name: "s", Detail: &d}
	}
	cases := []struct {
		name  string
		s     syncStatus
		flags lagThresholds
		given bool
		want  lagThresholds
	}{
		{"the sync's own", own(5*time.Minute, 15*time.Minute), lagThresholds{}, false, lagThresholds{5 * time.Minute, 15 * time.Minute}},
		{"the sync's own, expired only", own(0, time.Hour), lagThresholds{}, false, lagThresholds{critical: time.Hour}},
		{"none stored, none given", own(0, 0), lagThresholds{}, false, lagThresholds{}},
		{"the flags win", own(5*time.Minute, 15*time.Minute), lagThresholds{2 * time.Second, 6 * time.Second}, true,
			lagThresholds{2 * time.Second, 6 * time.Second}},
		{"one flag replaces both", own(5*time.Minute, 15*time.Minute), lagThresholds{warning: time.Hour}, true,
			lagThresholds{warning: time.Hour}},
		{"flags given as 0 turn them off", own(5*time.Minute, 15*time.Minute), lagThresholds{}, true, lagThresholds{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := syncThresholds(tc.s, tc.flags, tc.given); got != tc.want {
				t.Errorf("= %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestSyncVerdict: the Nagios state of a sync from its lag and the
// thresholds, and what ping says of it.
func TestSyncVerdict(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	ended := now.Add(-90 * time.Second)
	good := &runInfo{Ended: &ended}
	th := lagThresholds{warning: 5 * time.Minute, critical: 15 * time.Minute}
	active := func(l catalog.SyncLag) syncStatus {
		l.Delta = true
		return syncStatus{Name: "s", Status: catalog.StatusActive, State: "good", LastGood: good, SyncLag: l}
	}
	behind := func(lag time.Duration) syncStatus {
		return active(catalog.SyncLag{LagSeconds: lag.Seconds(), Pending: 250})
	}
	cases := []struct {
		name  string
		s     syncStatus
		th    lagThresholds
		state int
		text  string
	}{
		{"in step", active(catalog.SyncLag{InStep: true}), th, nagiosOK,
			"sync s in step, last good run 1m30s ago"},
		{"under the warning", behind(4 * time.Minute), th, nagiosOK,
			"sync s lag 4m0s, 250 changes pending, last good run 1m30s ago"},
		{"at the warning", behind(5 * time.Minute), th, nagiosWarning,
			"sync s lag 5m0s (warning at 5m0s), 250 changes pending"},
		{"over the critical", behind(20 * time.Minute), th, nagiosCritical,
			"sync s lag 20m0s (critical at 15m0s), 250 changes pending"},
		{"no thresholds: never alerts on lag", behind(24 * time.Hour), lagThresholds{}, nagiosOK, "sync s lag 24h0m"},
		{"critical only", behind(20 * time.Minute), lagThresholds{critical: 15 * time.Minute}, nagiosCritical, "(critical at 15m0s)"},
		{"capped count", active(catalog.SyncLag{LagSeconds: 1, Pending: 100000, Capped: true}), th, nagiosOK,
			"sync s lag 1s, over 100000 changes pending"},
		{"a source that cannot be read warns", active(catalog.SyncLag{Unknown: true,
			Sources: []catalog.SourceLag{{DB: "A", Error: "cannot connect to db A"}}}), th, nagiosWarning,
			"sync s lag unknown, last good run 1m30s ago; cannot measure the lag on A: cannot connect to db A"},
		{"unreadable but critical elsewhere", active(catalog.SyncLag{Unknown: true, LagSeconds: 1000,
			Sources: []catalog.SourceLag{{DB: "A", Error: "boom"}, {DB: "B"}}}), th, nagiosCritical,
			"sync s lag 16m40s or more (critical at 15m0s)"},
		{"paused says why", func() syncStatus {
			s := behind(6 * time.Minute)
			s.Paused, s.PauseReason = true, "maintenance"
			return s
		}(), th, nagiosWarning, "; paused: maintenance"},
		{"inactive warns", func() syncStatus {
			s := active(catalog.SyncLag{InStep: true})
			s.Status = catalog.StatusInactive
			return s
		}(), th, nagiosWarning, "sync s in step, last good run 1m30s ago; inactive: mcp activate s runs it"},
		{"failing in step is said", func() syncStatus {
			s := active(catalog.SyncLag{InStep: true})
			s.State = "bad (backoff)"
			return s
		}(), th, nagiosOK, "; bad (backoff)"},
		{"no good run yet", func() syncStatus {
			s := behind(time.Second)
			s.LastGood = nil
			return s
		}(), th, nagiosOK, "sync s lag 1s, 250 changes pending, no good run yet"},
		{"fullcopy has no lag", syncStatus{Name: "s", Status: catalog.StatusActive, LastGood: good}, th, nagiosOK,
			"sync s copies whole tables (no lag), last good run 1m30s ago"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			state, text := syncVerdict(tc.s, tc.th, now)
			if state != tc.state || !strings.Contains(text, tc.text) {
				t.Errorf("= %s %q; want %s containing %q", nagiosWords[state], text, nagiosWords[tc.state], tc.text)
			}
		})
	}
}

// TestPerfData: Nagios performance data, thresholds in seconds.
func TestPerfData(t *testing.T) {
	s := syncStatus{Name: "s", SyncLag: catalog.SyncLag{Delta: true, LagSeconds: 372.25, Pending: 250}}
	if got, want := perfData(s, lagThresholds{5 * time.Minute, 15 * time.Minute}), "'s lag'=372.250s;300;900;0 's pending'=250;;;0"; got != want {
		t.Errorf("perfData = %q, want %q", got, want)
	}
	if got, want := perfData(s, lagThresholds{}), "'s lag'=372.250s;;;0 's pending'=250;;;0"; got != want {
		t.Errorf("perfData without thresholds = %q, want %q", got, want)
	}
	if got := perfData(syncStatus{Name: "f"}, lagThresholds{}); got != "" {
		t.Errorf("perfData of a fullcopy sync = %q", got)
	}
}

// TestStatusColumns: the summary's Lag, Pending and Rows/s columns.
func TestStatusColumns(t *testing.T) {
	cases := []struct {
		name                string
		l                   catalog.SyncLag
		lag, pending, rowsS string
	}{
		{"fullcopy", catalog.SyncLag{}, "-", "-", "-"},
		{"in step", catalog.SyncLag{Delta: true, InStep: true, Rate: catalog.RunRate{Runs: 5, RowsPerSecond: 1234.4}}, "in step", "0", "1234"},
		{"behind", catalog.SyncLag{Delta: true, LagSeconds: 192, Pending: 250, Rate: catalog.RunRate{Runs: 1, RowsPerSecond: 0.25}}, "3m12s", "250", "0.2"},
		{"capped", catalog.SyncLag{Delta: true, LagSeconds: 0.042, Pending: 100000, Capped: true,
			Rate: catalog.RunRate{Runs: 1, RowsPerSecond: 45678}}, "42ms", ">100000", "45.7k"},
		{"unknown", catalog.SyncLag{Delta: true, Unknown: true}, "?", "?", "-"},
		{"partly unknown", catalog.SyncLag{Delta: true, Unknown: true, LagSeconds: 12, Pending: 3,
			Rate: catalog.RunRate{Runs: 1, RowsPerSecond: 2.5e6}}, ">12s", ">3", "2.5M"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := lagColumn(tc.l); got != tc.lag {
				t.Errorf("lag = %q, want %q", got, tc.lag)
			}
			if got := pendingColumn(tc.l); got != tc.pending {
				t.Errorf("pending = %q, want %q", got, tc.pending)
			}
			if got := rateColumn(tc.l.Rate); got != tc.rowsS {
				t.Errorf("rows/s = %q, want %q", got, tc.rowsS)
			}
		})
	}
}

// TestPingCatalogUnreachable: a main database that cannot be reached is
// CRITICAL (an error outside the plugin, not UNKNOWN), said on one line of
// stdout, as Nagios reads it.
func TestPingCatalogUnreachable(t *testing.T) {
	var out, errOut bytes.Buffer
	code := Run(context.Background(), []string{"mcp", "--dsn", "host=127.0.0.1 port=1 dbname=x connect_timeout=2", "ping", "--sync", "s"}, &out, &errOut)
	if code != nagiosCritical || !strings.HasPrefix(out.String(), "CRITICAL: cannot connect to the main database") ||
		strings.Count(out.String(), "\n") != 1 || errOut.Len() != 0 {
		t.Errorf("ping with the catalog unreachable: exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
}
