package replicate

import (
	"context"
	"strings"
	"testing"
)

const basicSchema = `
CREATE TABLE public.accounts (aid int PRIMARY KEY, bid int NOT NULL, abalance int NOT NULL, filler text);
CREATE TABLE public.history (id int, note text);
CREATE SEQUENCE public.seq1;
`

var (
	accounts = Relation{Schema: "public", Name: "accounts", KeyColumns: []string{"aid"}}
	history  = Relation{Schema: "public", Name: "history"}
	seq1     = Relation{Schema: "public", Name: "seq1", Sequence: true}
)

func TestDeltaRun(t *testing.T) {
	e := newEnv(t, basicSchema, []string{"A:source", "B:target", "C:target"}, []Relation{accounts, seq1})
	if res := e.run(); !res.Empty() {
		t.Errorf("first run with no changes: %+v", res)
	}
	e.exec("A", "INSERT INTO accounts SELECT g, g % 10, 0, 'x' FROM generate_series(1, 1000) g")
	e.exec("A", "SELECT nextval('seq1') FROM generate_series(1, 5)")
	res := e.run()
	if res.Inserts != 2000 || res.Deletes != 0 {
		t.Errorf("insert run: %+v", res)
	}
	e.assertSame()
	e.exec("A", "UPDATE accounts SET abalance = abalance + 1 WHERE aid <= 100")
	e.exec("A", "DELETE FROM accounts WHERE aid > 900")
	e.exec("A", "UPDATE accounts SET aid = aid + 10000 WHERE aid BETWEEN 201 AND 210") // key change
	res = e.run()
	// 100 updated, 100 deleted, 10 moved (20 keys): per target 200+20 keys,
	// 210 rows deleted (the new keys did not exist), 110 inserted.
	if res.Deletes != 2*210 || res.Inserts != 2*110 || res.Tables[0].Keys != 220 {
		t.Errorf("change run: %+v", res)
	}
	e.assertSame()
	if res := e.run(); !res.Empty() {
		t.Errorf("a run with nothing new changed something: %+v", res)
	}
}

func TestTargetsIgnoreTheirTriggersAndColumnOrder(t *testing.T) {
	e := newEnv(t, `CREATE TABLE public.t (id int PRIMARY KEY, a text, b int)`, []string{"A:source", "B:target"},
		[]Relation{{Schema: "public", Name: "t", KeyColumns: []string{"id"}}})
	// B: other column order, an extra column, a trigger and a rule that would break things.
	e.exec("B", `DROP TABLE public.t; CREATE TABLE public.t (b int, extra text DEFAULT 'd', a text, id int PRIMARY KEY);
		CREATE TABLE public.log (x text);
		CREATE FUNCTION public.boom() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'trigger fired'; END$$;
		CREATE TRIGGER boom BEFORE INSERT OR DELETE ON public.t FOR EACH ROW EXECUTE FUNCTION public.boom();
		CREATE RULE r AS ON INSERT TO public.t DO ALSO INSERT INTO public.log VALUES ('rule fired');`)
	e.exec("A", "INSERT INTO t VALUES (1, 'one', 1), (2, 'two', 2)")
	e.run()
	e.exec("A", "UPDATE t SET a = 'uno' WHERE id = 1")
	e.run()
	e.assertSame()
	var n int
	if err := e.c.Connect(t, e.dbs["B"]).QueryRow(context.Background(), "SELECT count(*) FROM public.log").Scan(&n); err != nil || n != 0 {
		t.Errorf("rule fired on the target: %d %v", n, err)
	}
}

func TestFullcopyAndTruncate(t *testing.T) {
	e := newEnv(t, basicSchema, []string{"A:source", "B:target", "F:fullcopy"}, []Relation{accounts})
	e.exec("A", "INSERT INTO accounts SELECT g, 1, 0, 'x' FROM generate_series(1, 100) g")
	res := e.run()
	if res.Tables[0].Mode != "delta+fullcopy" || res.Inserts != 200 {
		t.Errorf("first run: %+v", res)
	}
	e.exec("F", "INSERT INTO accounts VALUES (5000, 1, 1, 'only on F')") // overwritten by the next full copy
	e.exec("A", "TRUNCATE accounts")
	e.exec("A", "INSERT INTO accounts VALUES (7, 7, 7, 'after truncate')")
	res = e.run()
	if res.Truncates != 1 || !res.Tables[0].Truncated {
		t.Errorf("truncate run: %+v", res)
	}
	e.assertSame()
	// A table without a key goes to fullcopy targets only.
	e2 := newEnv(t, basicSchema, []string{"A:source", "F:fullcopy"}, []Relation{history, seq1})
	e2.exec("A", "INSERT INTO history VALUES (1, 'a'), (1, 'a'), (NULL, NULL); SELECT setval('seq1', 42)")
	e2.run()
	e2.assertSame()
	e3 := newEnv(t, basicSchema, []string{"A:source", "B:target"}, []Relation{history})
	if _, err := Run(context.Background(), e3.sync, Options{}); err == nil || !strings.Contains(err.Error(), "has no key") {
		t.Errorf("keyless table to a delta target: %v", err)
	}
}

func TestOneTimeCopy(t *testing.T) {
	e := newEnv(t, basicSchema, []string{"A:source", "B:target", "C:target"}, []Relation{accounts})
	e.exec("A", "INSERT INTO accounts SELECT g, 1, 0, 'before capture' FROM generate_series(1, 50) g")
	// Rows from before the capture are not deltas: onetimecopy=2 fills only the empty target.
	e.c.Exec(t, e.dbs["A"], "DELETE FROM gobucardo.watermark") // as if installed now
	e.install()
	e.exec("C", "INSERT INTO accounts VALUES (1, 1, 0, 'C has data')")
	e.sync.OneTimeCopy = 2
	res := e.run()
	if !res.OneTimeCopyDone {
		t.Error("onetimecopy not reported done")
	}
	b := e.contents("B", accounts, []string{"aid"})
	c := e.contents("C", accounts, []string{"filler"})
	if len(b) != 50 || len(c) != 1 {
		t.Errorf("onetimecopy=2: B %d rows (want 50), C %d rows (want 1, left alone)", len(b), len(c))
	}
	e.sync.OneTimeCopy = 1
	e.run()
	e.assertSame()
}

func TestCommitEvery(t *testing.T) {
	e := newEnv(t, basicSchema, []string{"A:source", "B:target"}, []Relation{accounts})
	e.exec("A", "INSERT INTO accounts SELECT g, 1, 0, 'x' FROM generate_series(1, 5000) g")
	e.sync.CommitEvery = 1000
	e.run()
	e.assertSame()
	// A run that dies after some pieces committed is run again: nothing lost or doubled.
	e.exec("A", "UPDATE accounts SET abalance = 1; DELETE FROM accounts WHERE aid % 7 = 0")
	ctx, cancel := context.WithCancel(context.Background())
	pieces := 0
	_, err := Run(ctx, e.sync, Options{Progress: func(p Progress) {
		if p.Phase == "delete" {
			pieces++
			if pieces == 3 {
				cancel()
			}
		}
	}})
	cancel()
	if err == nil {
		t.Fatal("cancelled run succeeded")
	}
	var partial int
	if err := e.c.Connect(t, e.dbs["B"]).QueryRow(context.Background(), "SELECT count(*) FROM accounts WHERE abalance = 1").Scan(&partial); err != nil {
		t.Fatal(err)
	}
	if partial == 0 {
		t.Error("no piece was committed before the run died: commit_every did not commit")
	}
	e.run()
	e.assertSame()
}

// TestRetryAfterSerializationFailure: a target fails twice with SQLSTATE
// 40001 (a trigger enabled ALWAYS fires even under replica mode); the run
// is retried and succeeds.
func TestRetryAfterSerializationFailure(t *testing.T) {
	e := newEnv(t, basicSchema, []string{"A:source", "B:target"}, []Relation{accounts})
	e.exec("B", `CREATE SEQUENCE fails;
		CREATE FUNCTION flaky() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF nextval('fails') <= 2 THEN
				RAISE EXCEPTION 'mock serialization failure' USING ERRCODE = '40001';
			END IF;
			RETURN NULL;
		END $$;
		CREATE TRIGGER flaky AFTER INSERT ON accounts FOR EACH STATEMENT EXECUTE FUNCTION flaky();
		ALTER TABLE accounts ENABLE ALWAYS TRIGGER flaky;`)
	e.exec("A", "INSERT INTO accounts SELECT g, 1, 0, 'x' FROM generate_series(1, 10) g")
	if _, err := RunRetrying(context.Background(), e.sync, Options{}, 2); err == nil {
		t.Fatal("two attempts survived two serialization failures")
	}
	if _, err := RunRetrying(context.Background(), e.sync, Options{}, 5); err != nil {
		t.Fatalf("retrying run: %v", err)
	}
	e.assertSame()
	var n int64
	if err := e.conn("B").QueryRow(context.Background(), "SELECT last_value FROM fails").Scan(&n); err != nil || n != 3 {
		t.Errorf("the target was written %d times, want 3 (two failures, one success): %v", n, err)
	}
}
