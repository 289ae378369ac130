package catalog

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestRunReads: the runs and parked rows mcp status and mcp kick read.
func TestRunReads(t *testing.T) {
	_, conn := installed(t)
	ctx := context.Background()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	// sync, started, ended (-1: running), state, status
	runs := []struct {
		sync           string
		started, ended int
		state, status  string
	}{
		{"s", 0, 1, RunGood, "one"},
		{"s", 2, 3, RunEmpty, "two"},
		{"s", 4, 10, RunBad, "three"},
		{"s", 5, 6, RunBad, "four"}, // started later, ended sooner than three
		{"s", 20, -1, RunRunning, "five"},
		{"s", 21, -1, RunRunning, "six"},
		{"other", 30, 40, RunGood, "other's"},
		{"other", 31, 41, RunBad, "other's bad"},
	}
	for i, r := range runs {
		var ended any
		if r.ended >= 0 {
			ended = at(r.ended)
		}
		if _, err := conn.Exec(ctx, `INSERT INTO gobucardo.syncrun (sync_name, started, ended, state, status, inserts, deletes, conflicts)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, r.sync, at(r.started), ended, r.state, r.status, i, 10*i, 100*i); err != nil {
			t.Fatal(err)
		}
	}
	for i, p := range []string{"s", "s", "other"} {
		if _, err := conn.Exec(ctx, `INSERT INTO gobucardo.parked (sync_name, schema_name, rel_name, source_db, target_db, key, error)
			VALUES ($1, 'public', 't', 'A', 'B', jsonb_build_object('id', $2::int), 'boom')`, p, i); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("LastRun", func(t *testing.T) {
		cases := []struct {
			name  string
			sync  string
			which RunFilter
			want  string // the run's status; "" for none
			n     int64  // its position in runs
		}{
			{"the good or empty run that ended last", "s", LastGoodRun, "two", 1},
			{"the failed run that ended last, not the one started last", "s", LastBadRun, "three", 2},
			{"the run in progress started last", "s", CurrentRun, "six", 5},
			{"of its own sync only", "other", LastBadRun, "other's bad", 7},
			{"no run in progress", "other", CurrentRun, "", 0},
			{"a sync without runs", "nope", LastGoodRun, "", 0},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				r, err := LastRun(ctx, conn, tc.sync, tc.which)
				if err != nil {
					t.Fatal(err)
				}
				if tc.want == "" {
					if r != nil {
						t.Errorf("LastRun = %+v, want none", r)
					}
					return
				}
				if r == nil {
					t.Fatalf("LastRun = nil, want the run %q", tc.want)
				}
				if r.Status != tc.want || r.Inserts != tc.n || r.Deletes != 10*tc.n || r.Conflicts != 100*tc.n {
					t.Errorf("LastRun = %+v, want the run %q (%d/%d/%d)", r, tc.want, tc.n, 10*tc.n, 100*tc.n)
				}
				run := runs[tc.n]
				if !r.Started.Equal(at(run.started)) || r.State != run.state {
					t.Errorf("LastRun = %+v, want started %s, state %s", r, at(run.started), run.state)
				}
				if run.ended >= 0 && (r.Ended == nil || !r.Ended.Equal(at(run.ended)) || r.Duration != at(run.ended).Sub(at(run.started))) {
					t.Errorf("LastRun = %+v, want ended %s", r, at(run.ended))
				}
				if run.ended < 0 && (r.Ended != nil || r.Duration < time.Since(at(run.started))-time.Hour) {
					t.Errorf("LastRun of a run in progress = %+v, want no end and the time so far", r)
				}
			})
		}
		if _, err := LastRun(ctx, conn, "s", RunFilter(99)); err == nil {
			t.Error("LastRun with an unknown RunFilter: no error")
		}
	})

	t.Run("FirstRunEndedSince", func(t *testing.T) {
		cases := []struct {
			name          string
			sync          string
			since         int
			state, status string
		}{
			{"the first run started since, ended", "s", 0, RunGood, "one"},
			{"started at the instant counts", "s", 2, RunEmpty, "two"},
			{"by start, not by end", "s", 3, RunBad, "three"},
			{"runs in progress do not count", "s", 6, "", ""},
			{"of its own sync only", "other", 0, RunGood, "other's"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				state, status, ended, err := FirstRunEndedSince(ctx, conn, tc.sync, at(tc.since))
				if err != nil {
					t.Fatal(err)
				}
				if state != tc.state || status != tc.status || ended != (tc.state != "") {
					t.Errorf("FirstRunEndedSince = %q, %q, %t; want %q, %q", state, status, ended, tc.state, tc.status)
				}
			})
		}
	})

	t.Run("CountParked", func(t *testing.T) {
		for sync, want := range map[string]int64{"s": 2, "other": 1, "nope": 0} {
			if n, err := CountParked(ctx, conn, sync); err != nil || n != want {
				t.Errorf("CountParked(%s) = %d, %v; want %d", sync, n, err, want)
			}
		}
	})

	t.Run("ClockTimestamp moves within a transaction", func(t *testing.T) {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			a, err := ClockTimestamp(ctx, tx)
			if err != nil {
				return err
			}
			b, err := ClockTimestamp(ctx, tx)
			if err != nil {
				return err
			}
			if !b.After(a) || time.Since(a).Abs() > time.Hour {
				t.Errorf("ClockTimestamp = %s, then %s (local clock %s)", a, b, time.Now())
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}
