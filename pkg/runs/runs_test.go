package runs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gobucardo/gobucardo/pkg/catalog"
	"github.com/gobucardo/gobucardo/pkg/pgtest"
	"github.com/gobucardo/gobucardo/pkg/replicate"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestEnd: the record of a run's end, from its result and error.
func TestEnd(t *testing.T) {
	abort := fmt.Errorf("table t: %w", replicate.ErrConflictAbort)
	cases := []struct {
		name string
		res  replicate.Result
		err  error
		want catalog.RunEnd
	}{
		{"good", replicate.Result{Inserts: 2, Deletes: 1, OneTimeCopyDone: true}, nil,
			catalog.RunEnd{State: catalog.RunGood, Status: "Complete: 1 deleted, 2 inserted", Counts: catalog.RunCounts{Deletes: 1, Inserts: 2},
				OneTimeCopyDone: true}},
		{"empty", replicate.Result{Conflicts: 0}, nil, catalog.RunEnd{State: catalog.RunEmpty, Status: "Complete: 0 deleted, 0 inserted"}},
		{"failed, secrets removed", replicate.Result{Deletes: 3}, errors.New("db B: password=pw refused"),
			catalog.RunEnd{State: catalog.RunBad, Status: "Failed: db B: password=*** refused", Counts: catalog.RunCounts{Deletes: 3}}},
		{"targets lost", replicate.Result{}, &replicate.TargetsLostError{DBs: []string{"B"}, Err: errors.New("conn closed")},
			catalog.RunEnd{State: catalog.RunBad, Status: "Failed: conn closed"}},
		{"conflict abort pauses", replicate.Result{Conflicts: 2}, abort,
			catalog.RunEnd{State: catalog.RunBad, Status: "Failed: " + abort.Error(), Pause: "Failed: " + abort.Error(),
				Counts: catalog.RunCounts{Conflicts: 2}}},
		{"cancelled", replicate.Result{}, &replicate.CancelledError{Code: "h", Point: "before_sync", Reason: "no"},
			catalog.RunEnd{State: catalog.RunCancelled, Status: "Cancelled: customcode h cancelled the run at before_sync: no"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := End(c.res, c.err, "pw")
			if !strings.HasPrefix(got.Status, "Complete: ") || c.err != nil {
				if !reflect.DeepEqual(got, c.want) {
					t.Errorf("End = %+v\nwant %+v", got, c.want)
				}
				return
			}
			// The summary's wording is replicate's: compare the rest.
			got.Status, c.want.Status = "", ""
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("End = %+v\nwant %+v", got, c.want)
			}
		})
	}
}

// TestFinishRun: one run of each outcome, recorded as mcp sync run and the
// controller record it: its conflicts and parked rows (through Sink) kept
// only when it committed, the sync paused by an abort, onetimecopy cleared
// once done, an empty bookkeeping run forgotten, and the run lock released
// every time.
func TestFinishRun(t *testing.T) {
	c := pgtest.Shared(t)
	dbname := c.NewDB(t)
	admin := c.Connect(t, dbname)
	ctx := context.Background()
	if _, err := catalog.Install(ctx, admin); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, `
		INSERT INTO gobucardo.db (name, dbname) VALUES ('A', 'a'), ('B', 'b');
		INSERT INTO gobucardo.dbgroup (name) VALUES ('g');
		INSERT INTO gobucardo.dbgroup_member (dbgroup, db, role, position) VALUES ('g', 'A', 'source', 0), ('g', 'B', 'target', 1);
		INSERT INTO gobucardo.relgroup (name, db) VALUES ('r', 'A');
		INSERT INTO gobucardo.sync (name, relgroup, dbgroup) VALUES ('s', 'r', 'g');`); err != nil {
		t.Fatalf("setup: %v", err)
	}
	ctl := c.Connect(t, dbname) // the runner's session
	cases := []struct {
		name       string
		res        replicate.Result
		err        error
		forget     bool
		wantState  string // "" for no record
		wantStatus string
		wantKept   bool // the conflicts and parked rows
		wantPaused string
		wantOTC    int // onetimecopy after, from 1
	}{
		{name: "good", res: replicate.Result{Inserts: 1, Conflicts: 1, OneTimeCopyDone: true}, wantState: catalog.RunGood,
			wantStatus: "Complete: ", wantKept: true, wantOTC: 0},
		{name: "empty", wantState: catalog.RunEmpty, wantStatus: "Complete: ", wantKept: true, wantOTC: 1},
		{name: "empty, forgotten", forget: true, wantOTC: 1},
		{name: "failed", res: replicate.Result{Inserts: 1}, err: errors.New("db B: gone"), wantState: catalog.RunBad,
			wantStatus: "Failed: db B: gone", wantOTC: 1},
		{name: "targets lost", err: &replicate.TargetsLostError{DBs: []string{"B"}, Err: errors.New("conn closed")},
			wantState: catalog.RunBad, wantStatus: "Failed: conn closed", wantOTC: 1},
		{name: "cancelled", err: &replicate.CancelledError{Code: "h", Point: "before_sync", Reason: "no"}, wantState: catalog.RunCancelled,
			wantStatus: "Cancelled: customcode h", wantOTC: 1},
		{name: "conflict abort", err: fmt.Errorf("table t: %w", replicate.ErrConflictAbort), wantState: catalog.RunBad,
			wantStatus: "Failed: table t", wantPaused: "Failed: table t: conflict under bucardo_abort", wantOTC: 1},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := admin.Exec(ctx, "UPDATE gobucardo.sync SET onetimecopy = 1 WHERE name = 's'"); err != nil {
				t.Fatal(err)
			}
			id, err := catalog.StartRun(ctx, ctl, "s", 1, "h", "Started (test)")
			if err != nil {
				t.Fatal(err)
			}
			var opts replicate.Options
			Sink(ctx, func() (*pgx.Conn, error) { return ctl, nil }, "s", id, &opts)
			if !tc.forget {
				key := json.RawMessage(fmt.Sprintf(`{"id": %d}`, i))
				if err := opts.Conflicts([]replicate.Conflict{{Schema: "public", Name: "t", Key: key, Strategy: "bucardo_latest", Winner: "A",
					Losers: []replicate.Loser{{DB: "B", ChangedAt: time.Now(), Row: json.RawMessage(`{"id": 1}`)}}}}); err != nil {
					t.Fatal(err)
				}
				if err := opts.Parked([]replicate.Parked{{Sync: "s", Schema: "public", Name: "t", SourceDB: "A", TargetDB: "B", Key: key,
					Row: json.RawMessage(`{"id": 1}`), Error: "duplicate", Code: "c"}}); err != nil {
					t.Fatal(err)
				}
			}
			end := End(tc.res, tc.err)
			end.Forget = tc.forget
			if err := catalog.FinishRun(ctx, ctl, "s", id, end); err != nil {
				t.Fatal(err)
			}

			var state, status string
			err = admin.QueryRow(ctx, "SELECT state, status FROM gobucardo.syncrun WHERE id = $1", id).Scan(&state, &status)
			switch {
			case tc.wantState == "" && !errors.Is(err, pgx.ErrNoRows):
				t.Errorf("the run is recorded (%s, %v), want forgotten", state, err)
			case tc.wantState != "" && (err != nil || state != tc.wantState || !strings.HasPrefix(status, tc.wantStatus)):
				t.Errorf("the run is %s %q (%v), want %s %q...", state, status, err, tc.wantState, tc.wantStatus)
			}
			var conflicts, parked int
			if err := admin.QueryRow(ctx, `SELECT (SELECT count(*) FROM gobucardo.conflict_log WHERE syncrun_id = $1),
				(SELECT count(*) FROM gobucardo.parked WHERE syncrun_id = $1)`, id).Scan(&conflicts, &parked); err != nil {
				t.Fatal(err)
			}
			if kept := conflicts == 1 && parked == 1; kept != tc.wantKept || (!kept && conflicts+parked != 0) {
				t.Errorf("%d conflicts and %d parked rows kept, want them kept: %v", conflicts, parked, tc.wantKept)
			}
			paused, reason, err := catalog.Paused(ctx, admin, "s")
			if err != nil || paused != (tc.wantPaused != "") || reason != tc.wantPaused {
				t.Errorf("paused %v %q (%v), want %q", paused, reason, err, tc.wantPaused)
			}
			var otc int
			if err := admin.QueryRow(ctx, "SELECT onetimecopy FROM gobucardo.sync WHERE name = 's'").Scan(&otc); err != nil || otc != tc.wantOTC {
				t.Errorf("onetimecopy %d (%v), want %d", otc, err, tc.wantOTC)
			}
			// The run lock is free: another session can wait for runs.
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if err := catalog.WaitForRuns(wctx, admin, "s"); err != nil {
				t.Errorf("the run lock is still held: %v", err)
			}
			if err := catalog.Resume(ctx, admin, "s"); err != nil {
				t.Fatal(err)
			}
		})
	}
}
