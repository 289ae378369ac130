package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/gobucardo/gobucardo/pkg/catalog"
)

// parked returns the catalog's parked rows, oldest first.
func (f *fixture) parked() []catalog.ParkedRow {
	f.t.Helper()
	ps, err := catalog.ListParked(context.Background(), f.c.Connect(f.t, f.main), "")
	if err != nil {
		f.t.Fatal(err)
	}
	return ps
}

// parkedIDs maps "sync table key" to the parked row's id.
func parkedIDs(ps []catalog.ParkedRow) map[string]int64 {
	m := map[string]int64{}
	for _, p := range ps {
		m[p.Sync+" "+p.Name+" "+string(p.Key)] = p.ID
	}
	return m
}

// compact is raw JSON without spaces; --json indents it.
func compact(raw json.RawMessage) string {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return err.Error()
	}
	return b.String()
}

// TestParked lists parked rows and re-applies them with mcp: rows that
// apply are forgotten, rows that fail again keep their record with the new
// error, and the exit status says whether any still fails.
func TestParked(t *testing.T) {
	f := newFixture(t, true)
	f.addDBs()
	// C has a unique index the source does not: rows of A with the filler
	// of rows C has of its own cannot go there.
	f.c.Exec(t, f.db["C"], "CREATE UNIQUE INDEX accounts_filler ON public.accounts (filler)")
	f.ok("add", "sync", "s1", "tables=public.accounts", "dbs=A:source,C:target")
	f.ok("add", "sync", "s2", "tables=public.branches", "dbs=A:source,B:target")

	if out := f.ok("parked"); out != "(no parked rows)\n" {
		t.Errorf("parked with none: %q", out)
	}
	if out := f.ok("parked", "--json"); strings.Join(strings.Fields(out), "") != `{"parked":[]}` {
		t.Errorf("parked --json with none: %q", out)
	}
	if out := f.ok("parked", "retry"); out != "(no parked rows)\n" {
		t.Errorf("parked retry with none: %q", out)
	}
	f.fail(1, []string{`unknown sync "nosuch"`}, "parked", "nosuch")
	f.fail(1, []string{`unknown sync "nosuch"`}, "parked", "retry", "nosuch")
	f.fail(2, []string{"usage: mcp parked [SYNC]"}, "parked", "s1", "s2")

	f.c.Exec(t, f.db["A"], `INSERT INTO accounts VALUES (1, 1, 100, 'one'), (2, 1, 200, 'two'), (3, 1, 300, 'three');
		INSERT INTO branches VALUES (1, 10)`)
	f.c.Exec(t, f.db["C"], `INSERT INTO accounts VALUES (10, 1, 0, 'one'), (11, 1, 0, 'three'), (4, 1, 0, 'four')`)
	long := `duplicate key value violates unique constraint "accounts_filler" (Key (filler)=(one) already exists.) ` +
		strings.Repeat("and more ", 20) + "[SQLSTATE 23505]"
	var rows []catalog.ParkedRow
	for _, aid := range []int{1, 2, 3, 4} {
		rows = append(rows, catalog.ParkedRow{Sync: "s1", Schema: "public", Name: "accounts", SourceDB: "A", TargetDB: "C",
			Key: json.RawMessage(fmt.Sprintf(`{"aid": %d}`, aid)), Row: json.RawMessage(fmt.Sprintf(`{"aid": %d, "filler": "old"}`, aid)),
			SQLState: "23505", Error: long, CustomCode: "exc"})
	}
	rows = append(rows, catalog.ParkedRow{Sync: "s2", Schema: "public", Name: "branches", SourceDB: "A", TargetDB: "B",
		Key: json.RawMessage(`{"bid": 1}`), Row: json.RawMessage(`{"bid": 1, "bbalance": 5}`), SQLState: "XX000", Error: "first error"})
	if err := catalog.Park(context.Background(), f.c.Connect(t, f.main), 0, rows); err != nil {
		t.Fatal(err)
	}
	ids := parkedIDs(f.parked())

	out := f.ok("parked")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 7 || lines[0] != "5 parked rows (mcp parked retry re-applies them):" ||
		!strings.Contains(lines[1], "SOURCE → TARGET") || !strings.Contains(lines[1], "SQLSTATE") {
		t.Fatalf("parked said:\n%s", out)
	}
	first := strings.Fields(lines[2])
	if first[0] != fmt.Sprint(ids[`s1 accounts {"aid": 1}`]) || !strings.Contains(lines[2], "s1  ") ||
		!strings.Contains(lines[2], "public.accounts") || !strings.Contains(lines[2], "A → C") ||
		!strings.Contains(lines[2], `{"aid": 1}`) || !strings.Contains(lines[2], "23505") ||
		!strings.Contains(lines[2], `duplicate key value violates unique constraint "accounts_filler"`) ||
		strings.Contains(lines[2], "[SQLSTATE") || !strings.HasSuffix(lines[2], "…") || len([]rune(lines[2])) > 200 {
		t.Errorf("first row: %q", lines[2])
	}
	if !strings.Contains(lines[6], "s2") || !strings.Contains(lines[6], "A → B") || !strings.HasSuffix(lines[6], "XX000     first error") {
		t.Errorf("last row: %q", lines[6])
	}
	if out := f.ok("parked", "s2"); !strings.HasPrefix(out, "1 parked row of sync s2 (mcp parked retry s2 re-applies them):\n") ||
		strings.Count(out, "\n") != 3 {
		t.Errorf("parked s2 said:\n%s", out)
	}
	var doc struct {
		Parked []catalog.ParkedRow `json:"parked"`
	}
	if err := json.Unmarshal([]byte(f.ok("parked", "s1", "--json")), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Parked) != 4 || doc.Parked[0].Error != long || compact(doc.Parked[0].Row) != `{"aid":1,"filler":"old"}` ||
		doc.Parked[0].CustomCode != "exc" || doc.Parked[3].SourceDB != "A" || doc.Parked[3].TargetDB != "C" {
		t.Errorf("parked s1 --json: %+v", doc.Parked)
	}

	// One row by id.
	out = f.ok("parked", "retry", "s1", "--id", fmt.Sprint(ids[`s1 accounts {"aid": 2}`]))
	want := fmt.Sprintf("Re-applied parked row %d: public.accounts {\"aid\": 2} from A to C\n1 row re-applied, 0 still failing\n",
		ids[`s1 accounts {"aid": 2}`])
	if out != want {
		t.Errorf("retry --id said %q, want %q", out, want)
	}
	if got := f.query(f.db["C"], contentsSQL); got != "(2,1,200,two);(4,1,0,four);(10,1,0,one);(11,1,0,three)" {
		t.Errorf("C after retry --id: %s", got)
	}
	if ps := f.parked(); len(ps) != 4 {
		t.Errorf("parked after retry --id: %+v", ps)
	}
	f.fail(1, []string{fmt.Sprintf("there is no parked row %d of sync s2", ids[`s1 accounts {"aid": 1}`])},
		"parked", "retry", "s2", "--id", fmt.Sprint(ids[`s1 accounts {"aid": 1}`]))

	// The rest of s1: 4 is gone from the source, 1 and 3 still collide.
	r := f.run("parked", "retry", "s1")
	if r.code != 1 || strings.TrimSpace(r.err) != "mcp: 2 parked rows still failing: mcp parked shows why" {
		t.Fatalf("retry s1: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.out, r.err)
	}
	for _, w := range []string{
		fmt.Sprintf(`Still failing: parked row %d: public.accounts {"aid": 1} from A to C: duplicate key value violates unique constraint "accounts_filler"`, ids[`s1 accounts {"aid": 1}`]),
		fmt.Sprintf(`Still failing: parked row %d: public.accounts {"aid": 3} from A to C:`, ids[`s1 accounts {"aid": 3}`]),
		fmt.Sprintf(`Re-applied parked row %d: public.accounts {"aid": 4}: deleted on C, as A no longer has it`, ids[`s1 accounts {"aid": 4}`]),
		"1 row re-applied, 2 still failing\n",
	} {
		if !strings.Contains(r.out, w) {
			t.Errorf("retry s1 did not say %q:\n%s", w, r.out)
		}
	}
	if got := f.query(f.db["C"], contentsSQL); got != "(2,1,200,two);(10,1,0,one);(11,1,0,three)" {
		t.Errorf("C after retry s1: %s", got)
	}
	ps := f.parked()
	if len(ps) != 3 || ps[0].Sync != "s1" || ps[1].Sync != "s1" || ps[2].Sync != "s2" {
		t.Fatalf("parked after retry s1: %+v", ps)
	}
	if ps[0].Error == long || !strings.Contains(ps[0].Error, "Key (filler)=(one) already exists") || ps[0].SQLState != "23505" ||
		!strings.Contains(ps[1].Error, "Key (filler)=(three) already exists") || ps[2].Error != "first error" {
		t.Errorf("errors after retry s1: %q, %q, %q", ps[0].Error, ps[1].Error, ps[2].Error)
	}

	// 1 fixed on C, and changed on A since it was parked; 3 still collides.
	f.c.Exec(t, f.db["C"], "UPDATE accounts SET filler = 'one on C' WHERE aid = 10")
	f.c.Exec(t, f.db["A"], "UPDATE accounts SET abalance = 111 WHERE aid = 1")
	r = f.run("parked", "retry", "s1", "--json")
	var res struct {
		Results   []retryResult `json:"results"`
		Reapplied int           `json:"reapplied"`
		Failing   int           `json:"failing"`
	}
	if err := json.Unmarshal([]byte(r.out), &res); err != nil {
		t.Fatalf("retry --json: %v\n%s", err, r.out)
	}
	if r.code != 1 || res.Reapplied != 1 || res.Failing != 1 || len(res.Results) != 2 ||
		res.Results[0].Result != retryApplied || res.Results[0].Error != "" || compact(res.Results[0].Key) != `{"aid":1}` ||
		res.Results[1].Result != retryFailed || res.Results[1].SQLState != "23505" {
		t.Errorf("retry s1 --json: exit %d %+v", r.code, res)
	}

	// Everything left, of every sync.
	f.c.Exec(t, f.db["C"], "DELETE FROM accounts WHERE aid = 11")
	out = f.ok("parked", "retry")
	if !strings.HasSuffix(out, "\n2 rows re-applied, 0 still failing\n") || strings.Count(out, "Re-applied") != 2 {
		t.Errorf("retry said:\n%s", out)
	}
	if got := f.query(f.db["C"], contentsSQL); got != "(1,1,111,one);(2,1,200,two);(3,1,300,three);(10,1,0,\"one on C\")" {
		t.Errorf("C at the end: %s", got)
	}
	if got := f.query(f.db["B"], "SELECT string_agg(b::text, ';') FROM branches b"); got != "(1,10)" {
		t.Errorf("B at the end: %s", got)
	}
	if out := f.ok("parked"); out != "(no parked rows)\n" {
		t.Errorf("parked at the end: %q", out)
	}

	// A db the catalog no longer has: the row is not tried and its record
	// stays as it was.
	gone := catalog.ParkedRow{Sync: "s1", Schema: "public", Name: "accounts", SourceDB: "A", TargetDB: "Z",
		Key: json.RawMessage(`{"aid": 1}`), Error: "first error"}
	if err := catalog.Park(context.Background(), f.c.Connect(t, f.main), 0, []catalog.ParkedRow{gone}); err != nil {
		t.Fatal(err)
	}
	r = f.run("parked", "retry")
	if r.code != 1 || !strings.Contains(r.out, `Not tried: parked row`) || !strings.Contains(r.out, "db Z is no longer in the catalog") ||
		!strings.Contains(r.out, "0 rows re-applied, 1 still failing") {
		t.Errorf("retry with db Z gone: exit %d\n%s%s", r.code, r.out, r.err)
	}
	if ps := f.parked(); len(ps) != 1 || ps[0].Error != "first error" {
		t.Errorf("parked after db Z: %+v", ps)
	}
}
