package catalog

import (
	"context"
	"reflect"
	"testing"
	"time"
)

// TestComputeLag: the lag of each source, table and target and of the
// sync, from what the sources said.
func TestComputeLag(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	at := func(s int) *time.Time { v := t0.Add(time.Duration(s) * time.Second); return &v }
	oneToOne := SyncDetail{Sync: Sync{Name: "s"},
		Members: []Member{{DB: "A", Role: RoleSource}, {DB: "B", Role: RoleTarget}},
		DBs:     map[string]DB{"A": {Name: "A"}, "B": {Name: "B"}}}
	oneToTwo := SyncDetail{Sync: Sync{Name: "s"},
		Members: []Member{{DB: "A", Role: RoleSource}, {DB: "B", Role: RoleTarget}, {DB: "C", Role: RoleTarget}},
		DBs:     map[string]DB{"A": {Name: "A"}, "B": {Name: "B"}, "C": {Name: "C", Status: StatusInactive}}}
	twoSources := SyncDetail{Sync: Sync{Name: "s"},
		Members: []Member{{DB: "A", Role: RoleSource}, {DB: "B", Role: RoleSource}},
		DBs:     map[string]DB{"A": {Name: "A"}, "B": {Name: "B"}}}
	fullcopy := SyncDetail{Sync: Sync{Name: "s"},
		Members: []Member{{DB: "A", Role: RoleSource}, {DB: "B", Role: RoleFullcopy}},
		DBs:     map[string]DB{"A": {Name: "A"}, "B": {Name: "B"}}}
	idle := SourceLag{DB: "A", ReadAt: *at(100), Consumed: at(90)}
	rate := RunRate{Runs: 2, Rows: 10, Busy: time.Second, RowsPerSecond: 10}

	type want struct {
		inStep, unknown, capped bool
		lag                     float64
		pending                 int64
		sourceLags              []float64
		tableLags               []float64 // of the first source
		targets                 []TargetLag
	}
	cases := []struct {
		name    string
		d       SyncDetail
		sources []SourceLag
		want    want
	}{
		{"idle and in step", oneToOne, []SourceLag{idle},
			want{inStep: true, sourceLags: []float64{0},
				targets: []TargetLag{{DB: "B", Role: RoleTarget, State: TargetInStep}}}},
		{"changes pending: the lag is the age of the oldest on the source's clock", oneToOne,
			[]SourceLag{{DB: "A", ReadAt: *at(100), Pending: 7, Oldest: at(40), Tables: []TableLag{
				{Schema: "public", Table: "t", Pending: 5, Oldest: at(40)}, {Schema: "public", Table: "u", Pending: 2, Oldest: at(95)}}}},
			want{lag: 60, pending: 7, sourceLags: []float64{60}, tableLags: []float64{60, 5},
				targets: []TargetLag{{DB: "B", Role: RoleTarget, State: TargetInStep, Pending: 7, LagSeconds: 60}}}},
		{"a change stamped after the source's clock is no lag", oneToOne,
			[]SourceLag{{DB: "A", ReadAt: *at(100), Pending: 1, Oldest: at(101)}},
			want{pending: 1, sourceLags: []float64{0}, targets: []TargetLag{{DB: "B", Role: RoleTarget, State: TargetInStep, Pending: 1}}}},
		{"a capped count says so", oneToOne,
			[]SourceLag{{DB: "A", ReadAt: *at(100), Pending: 100000, Capped: true, Oldest: at(0)}},
			want{lag: 100, pending: 100000, capped: true, sourceLags: []float64{100},
				targets: []TargetLag{{DB: "B", Role: RoleTarget, State: TargetInStep, Pending: 100000, Capped: true, LagSeconds: 100}}}},
		{"a target behind lags by its own backlog; an inactive one is said so", oneToTwo,
			[]SourceLag{{DB: "A", ReadAt: *at(100), Behind: []TargetBacklog{
				{Target: "B", Since: *at(10), Reason: "down", Pending: 3, Oldest: at(20)},
				{Target: "C", Since: *at(30), Reason: "inactive", Pending: 4, Capped: true, Oldest: at(50)}}}},
			want{lag: 80, sourceLags: []float64{0},
				targets: []TargetLag{
					{DB: "B", Role: RoleTarget, State: TargetBehind, Since: at(10), Reason: "down", Pending: 3, LagSeconds: 80},
					{DB: "C", Role: RoleTarget, State: TargetInactive, Since: at(30),
						Reason: "status=inactive: runs leave it out; mcp update db C status=active brings it back", Pending: 4, Capped: true, LagSeconds: 50}}}},
		{"an inactive target not behind yet", oneToTwo, []SourceLag{idle},
			want{sourceLags: []float64{0}, targets: []TargetLag{
				{DB: "B", Role: RoleTarget, State: TargetInStep},
				{DB: "C", Role: RoleTarget, State: TargetInactive, Reason: "status=inactive: runs leave it out; mcp update db C status=active brings it back"}}}},
		{"two sources: the worse one", twoSources,
			[]SourceLag{{DB: "A", ReadAt: *at(100), Pending: 1, Oldest: at(90)}, {DB: "B", ReadAt: *at(200), Pending: 2, Oldest: at(170)}},
			want{lag: 30, pending: 3, sourceLags: []float64{10, 30}}},
		{"a source that cannot be read: unknown, the others count", twoSources,
			[]SourceLag{{DB: "A", Error: "cannot connect to db A"}, {DB: "B", ReadAt: *at(200), Pending: 2, Oldest: at(170)}},
			want{unknown: true, lag: 30, pending: 2, sourceLags: []float64{0, 30}}},
		{"unreadable and nothing else", oneToOne, []SourceLag{{DB: "A", Error: "boom"}},
			want{unknown: true, sourceLags: []float64{0}, targets: []TargetLag{{DB: "B", Role: RoleTarget, State: TargetInStep}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := ComputeLag(tc.d, tc.sources, rate)
			if !got.Delta || got.Sync != "s" || got.Rate != rate {
				t.Errorf("sync, delta, rate = %q %t %+v", got.Sync, got.Delta, got.Rate)
			}
			if got.InStep != tc.want.inStep || got.Unknown != tc.want.unknown || got.LagSeconds != tc.want.lag ||
				got.Pending != tc.want.pending || got.Capped != tc.want.capped || got.Lag() != time.Duration(tc.want.lag)*time.Second {
				t.Errorf("in step %t, unknown %t, lag %v, pending %d capped %t; want %+v",
					got.InStep, got.Unknown, got.LagSeconds, got.Pending, got.Capped, tc.want)
			}
			var lags []float64
			for _, s := range got.Sources {
				lags = append(lags, s.LagSeconds)
			}
			if !reflect.DeepEqual(lags, tc.want.sourceLags) {
				t.Errorf("source lags = %v, want %v", lags, tc.want.sourceLags)
			}
			if tc.want.tableLags != nil {
				lags = nil
				for _, tl := range got.Sources[0].Tables {
					lags = append(lags, tl.LagSeconds)
				}
				if !reflect.DeepEqual(lags, tc.want.tableLags) {
					t.Errorf("table lags = %v, want %v", lags, tc.want.tableLags)
				}
			}
			if !reflect.DeepEqual(got.Targets, tc.want.targets) {
				t.Errorf("targets = %+v\nwant      %+v", got.Targets, tc.want.targets)
			}
		})
	}
	t.Run("fullcopy has no backlog", func(t *testing.T) {
		got := ComputeLag(fullcopy, nil, rate)
		if got.Delta || got.InStep || got.Sources != nil || got.Targets != nil || got.Rate != rate {
			t.Errorf("fullcopy = %+v", got)
		}
	})
	t.Run("the caller's sources are not changed", func(t *testing.T) {
		in := []SourceLag{{DB: "A", ReadAt: *at(100), Pending: 1, Oldest: at(90), Tables: []TableLag{{Pending: 1, Oldest: at(90)}}}}
		ComputeLag(oneToOne, in, rate)
		if in[0].LagSeconds != 0 || in[0].Tables[0].LagSeconds != 0 {
			t.Errorf("ComputeLag wrote into its input: %+v", in[0])
		}
	})
}

// TestRecentRunRate: rows over duration of the last good runs that applied
// rows, and when the last good or empty run ended.
func TestRecentRunRate(t *testing.T) {
	_, conn := installed(t)
	ctx := context.Background()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	if r, err := RecentRunRate(ctx, conn, "s", 3); err != nil || r != (RunRate{}) {
		t.Fatalf("RecentRunRate with no runs = %+v, %v", r, err)
	}
	runs := []struct {
		started, ended   int
		state            string
		inserts, deletes int
	}{
		{0, 10, RunGood, 1000, 1000}, // left out: older than the 3 latest
		{20, 22, RunGood, 30, 10},
		{30, 31, RunBad, 500, 0},
		{40, 41, RunGood, 10, 0},
		{50, 51, RunGood, 0, 0}, // applied no row
		{60, 62, RunGood, 50, 0},
		{70, 75, RunEmpty, 0, 0},
		{80, -1, RunRunning, 0, 0},
	}
	for _, r := range runs {
		var ended any
		if r.ended >= 0 {
			ended = at(r.ended)
		}
		if _, err := conn.Exec(ctx, `INSERT INTO gobucardo.syncrun (sync_name, started, ended, state, inserts, deletes)
			VALUES ('s', $1, $2, $3, $4, $5)`, at(r.started), ended, r.state, r.inserts, r.deletes); err != nil {
			t.Fatal(err)
		}
	}
	r, err := RecentRunRate(ctx, conn, "s", 3)
	if err != nil {
		t.Fatal(err)
	}
	if r.Runs != 3 || r.Rows != 100 || r.Busy != 5*time.Second || r.RowsPerSecond != 20 || r.LastGood == nil || !r.LastGood.Equal(at(75)) {
		t.Errorf("RecentRunRate = %+v, want 3 runs, 100 rows in 5s, 20 rows/s, last good at 75s", r)
	}
}
