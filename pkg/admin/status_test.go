package admin

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestStatusShowsBacklog: mcp status SYNC says, per source, how many
// changes the sync has not consumed yet and since when; a run consumes
// them; a source that cannot be reached is reported, not waited for.
func TestStatusShowsBacklog(t *testing.T) {
	f := newFixture(t, true)
	f.addDBs()
	f.ok("add", "table", "accounts", "db=A", "relgroup=r")
	f.ok("add", "sync", "s", "relgroup=r", "dbs=A:source,B:target")
	f.c.Exec(t, f.db["A"], "INSERT INTO accounts SELECT g, 1, 0, 'x' FROM generate_series(1, 40) g")
	backlog := func() []sourceBacklog {
		t.Helper()
		var doc struct {
			Syncs []syncStatus `json:"syncs"`
		}
		if err := json.Unmarshal([]byte(f.ok("status", "s", "--json")), &doc); err != nil || len(doc.Syncs) != 1 {
			t.Fatalf("status --json: %v %+v", err, doc)
		}
		return doc.Syncs[0].Backlog
	}
	b := backlog()
	if len(b) != 1 || b[0].DB != "A" || b[0].Pending != 40 || b[0].Capped || b[0].Oldest == nil || b[0].Consumed == nil || b[0].Error != "" {
		t.Fatalf("backlog before the run = %+v", b)
	}
	if out := f.ok("status", "s"); !strings.Contains(out, "Pending on A:  40 changes, the oldest from ") {
		t.Errorf("status s printed %q", out)
	}
	f.ok("sync", "run", "s", "--quiet")
	if b := backlog(); len(b) != 1 || b[0].Pending != 0 || b[0].Oldest != nil {
		t.Errorf("backlog after the run = %+v", b)
	}
	if out := f.ok("status", "s"); !strings.Contains(out, "Pending on A:  none; last consumed ") {
		t.Errorf("status s printed %q", out)
	}
	// The summary view reads no source.
	if out := f.ok("status"); strings.Contains(out, "Pending") {
		t.Errorf("status printed %q", out)
	}
	f.ok("update", "db", "A", "port=1", "host=127.0.0.1", "pass=hush-hush", "--force")
	out := f.ok("status", "s")
	if !strings.Contains(out, "Pending on A:  unknown: cannot connect to db A") || strings.Contains(out, "hush-hush") {
		t.Errorf("status s with A unreachable printed %q", out)
	}
}
