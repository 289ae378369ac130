package bucardotest

import (
	"testing"
)

// Schema is created on every database of Scenarios: a table with an
// integer key, one with a composite key, one with a text key, one without
// a key (for the fullcopy sync) and a sequence.
const Schema = `
CREATE TABLE public.items (id integer PRIMARY KEY, name text, qty integer NOT NULL DEFAULT 0);
CREATE SEQUENCE public.item_seq;
CREATE TABLE public.orders (region integer, code text, amount numeric NOT NULL, PRIMARY KEY (region, code));
CREATE TABLE public.countries (iso text PRIMARY KEY, label text NOT NULL);
CREATE TABLE public.audit (at timestamptz NOT NULL DEFAULT now(), what text);
`

// Scenario names what Scenarios built, for the tests that check it.
type Scenario struct {
	// DBs maps Bucardo's db names (A, B, C, D) to database names.
	DBs map[string]string
	// Password is db A's password in Bucardo's catalog (trust auth ignores it).
	Password string
}

// Syncs of Scenarios, with their dbgroups and relgroups:
//
//	fanout  relgroup fanout_rg (items, item_seq)      dbs A:source B:target C:target   one-way fan-out
//	multi   relgroup multi_rg (orders, countries)     dbs A:source B:source C:target   two sources and a target
//	full    relgroup full_rg (audit: no key)          dbs A:source D:fullcopy          fullcopy
const (
	SyncFanout = "fanout"
	SyncMulti  = "multi"
	SyncFull   = "full"
)

// Scenarios creates four databases (Schema on each) on b's cluster, adds
// them to Bucardo as A, B, C and D (A with a password), and adds with
// Bucardo's CLI the tables, the sequence, relgroups, dbgroups and the
// three syncs above, with non-default options and per-table settings.
func Scenarios(tb testing.TB, b *Bucardo) Scenario {
	tb.Helper()
	s := Scenario{DBs: map[string]string{}, Password: "s3cret-pw"}
	for _, n := range []string{"A", "B", "C", "D"} {
		s.DBs[n] = b.C.NewDB(tb)
		b.C.Exec(tb, s.DBs[n], Schema)
	}
	b.AddDB(tb, "A", s.DBs["A"], "pass="+s.Password)
	b.AddDB(tb, "B", s.DBs["B"])
	b.AddDB(tb, "C", s.DBs["C"])
	b.AddDB(tb, "D", s.DBs["D"], "status=inactive")
	b.Run(tb, "add", "table", "public.items", "db=A", "relgroup=fanout_rg")
	b.Run(tb, "add", "sequence", "public.item_seq", "db=A", "relgroup=fanout_rg")
	b.Run(tb, "add", "table", "public.orders", "public.countries", "db=A", "relgroup=multi_rg")
	b.Run(tb, "add", "table", "public.audit", "db=A", "relgroup=full_rg")
	b.Run(tb, "update", "table", "public.countries", "db=A", "conflict_strategy=bucardo_latest_all_tables")
	b.Run(tb, "update", "table", "public.orders", "db=A", "makedelta=on")
	b.Run(tb, "add", "dbgroup", "fanout_g", "A:source", "B:target", "C:target")
	b.Run(tb, "add", "dbgroup", "multi_g", "A:source", "B:source", "C:target")
	b.Run(tb, "add", "dbgroup", "full_g", "A:source", "D:fullcopy")
	b.Run(tb, "add", "sync", SyncFanout, "relgroup=fanout_rg", "dbs=fanout_g", "checktime=45", "onetimecopy=2", "autokick=1")
	b.Run(tb, "add", "sync", SyncMulti, "relgroup=multi_rg", "dbs=multi_g", "conflict_strategy=bucardo_source",
		"isolation_level=serializable", "stayalive=0", "kidsalive=0", "lifetime=1h", "maxkicks=50")
	b.Run(tb, "add", "sync", SyncFull, "relgroup=full_rg", "dbs=full_g", "autokick=0", "checktime=10m", "rebuild_index=1")
	return s
}
