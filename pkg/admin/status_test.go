package admin

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestStatusShowsBacklog: mcp status SYNC says, per source and table, how
// many changes the sync has not consumed yet and since when, and the
// sync's lag; a run consumes them and the sync is in step; a source that
// cannot be reached is reported, not waited for, in the detail and the
// summary.
func TestStatusShowsBacklog(t *testing.T) {
	f := newFixture(t, true)
	f.addDBs()
	f.ok("add", "table", "accounts", "db=A", "relgroup=r")
	f.ok("add", "sync", "s", "relgroup=r", "dbs=A:source,B:target")
	f.c.Exec(t, f.db["A"], "INSERT INTO accounts SELECT g, 1, 0, 'x' FROM generate_series(1, 40) g")
	status := func(args ...string) syncStatus {
		t.Helper()
		var doc struct {
			Syncs []syncStatus `json:"syncs"`
		}
		if err := json.Unmarshal([]byte(f.ok(append([]string{"status", "--json"}, args...)...)), &doc); err != nil || len(doc.Syncs) != 1 {
			t.Fatalf("status --json: %v %+v", err, doc)
		}
		return doc.Syncs[0]
	}
	time.Sleep(20 * time.Millisecond) // so that the lag is measurably above 0
	st := status("s")
	b := st.Sources
	if len(b) != 1 || b[0].DB != "A" || b[0].Pending != 40 || b[0].Capped || b[0].Oldest == nil || b[0].Consumed == nil || b[0].Error != "" ||
		len(b[0].Tables) != 1 || b[0].Tables[0].Table != "accounts" || b[0].Tables[0].Pending != 40 || b[0].LagSeconds < 0.02 {
		t.Fatalf("backlog before the run = %+v", b)
	}
	if st.InStep || st.Pending != 40 || st.LagSeconds != b[0].LagSeconds || len(st.Targets) != 1 || st.Targets[0].Pending != 40 ||
		st.Targets[0].LagSeconds != st.LagSeconds || st.Rate.Runs != 0 {
		t.Errorf("status before the run = %+v", st.SyncLag)
	}
	if out := f.ok("status", "s"); !strings.Contains(out, "Pending on A:  40 changes, the oldest from ") ||
		!strings.Contains(out, "  public.accounts: 40 changes, the oldest ") || !strings.Contains(out, "Target B:      in step with the sync; 40 changes not applied yet") ||
		!strings.Contains(out, "Run rate:      no run has applied rows yet") {
		t.Errorf("status s printed %q", out)
	}
	if out := f.ok("status"); !regexp.MustCompile(`(?m)^s +good +\d+ms +40 +- +`).MatchString(out) && !regexp.MustCompile(`(?m)^s +unknown +[\d.]+m?s +40 +- +`).MatchString(out) {
		t.Errorf("status printed %q", out)
	}
	f.ok("sync", "run", "s", "--quiet")
	st = status("s")
	if b := st.Sources; len(b) != 1 || b[0].Pending != 0 || b[0].Oldest != nil || len(b[0].Tables) != 0 {
		t.Errorf("backlog after the run = %+v", b)
	}
	if !st.InStep || st.LagSeconds != 0 || st.Rate.Runs != 1 || st.Rate.Rows != 40 || st.Rate.RowsPerSecond <= 0 || st.Rate.LastGood == nil {
		t.Errorf("status after the run = %+v", st.SyncLag)
	}
	if out := f.ok("status", "s"); !strings.Contains(out, "Pending on A:  none; last consumed ") || !strings.Contains(out, "Lag:           0 (in step") ||
		!strings.Contains(out, "Run rate:      ") || !strings.Contains(out, "rows/s over the last 1 run that applied rows (40 rows in ") {
		t.Errorf("status s printed %q", out)
	}
	if out := f.ok("status"); !regexp.MustCompile(`(?m)^s +good +in step +0 +[\d.]+k? +`).MatchString(out) {
		t.Errorf("status printed %q", out)
	}
	f.ok("update", "db", "A", "port=1", "host=127.0.0.1", "pass=hush-hush", "--force")
	out := f.ok("status", "s")
	if !strings.Contains(out, "Pending on A:  unknown: cannot connect to db A") || !strings.Contains(out, "Lag:           unknown") || strings.Contains(out, "hush-hush") {
		t.Errorf("status s with A unreachable printed %q", out)
	}
	if st := status(); !st.Unknown || st.InStep || len(st.Sources) != 1 || !strings.Contains(st.Sources[0].Error, "cannot connect to db A") {
		t.Errorf("status with A unreachable = %+v", st.SyncLag)
	}
	if out := f.ok("status"); !regexp.MustCompile(`(?m)^s +good +\? +\? +`).MatchString(out) || strings.Contains(out, "hush-hush") {
		t.Errorf("status with A unreachable printed %q", out)
	}
}
