package admin

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gobucardo/gobucardo/pkg/pgtest/bucardotest"
)

// cutoverTables are the replicated tables of the syncs taken over, with
// the ORDER BY of their contents.
var cutoverTables = map[string]string{"public.items": "id", "public.orders": "region, code", "public.countries": "iso"}

// writer writes on one source until stopped: new rows, updates of its own
// rows (and of preloaded rows above the untouched ones) and deletes, each
// in its own transaction. Its keys are its own, so no two writers conflict.
type writer struct {
	db, what string
	conn     *pgx.Conn
	rnd      *rand.Rand
	n        int
}

func (w *writer) step(ctx context.Context) error {
	w.n++
	var sql string
	var args []any
	switch w.what {
	case "items": // fan-out: ids 100000+ are the writer's; 1001-2000 preloaded and updated
		switch w.rnd.IntN(4) {
		case 0, 1:
			sql, args = "INSERT INTO public.items VALUES ($1, 'w', $2)", []any{100000 + w.n, w.n}
		case 2:
			sql, args = "UPDATE public.items SET qty = qty + 1, name = 'upd' WHERE id = $1", []any{1001 + w.rnd.IntN(1000)}
		default:
			sql, args = "DELETE FROM public.items WHERE id = $1", []any{100000 + w.rnd.IntN(w.n)}
		}
	default: // two sources: region = the writer's, orders and countries
		region := map[string]int{"A": 1, "B": 2}[w.db]
		switch w.rnd.IntN(5) {
		case 0, 1:
			sql, args = "INSERT INTO public.orders VALUES ($1, $2, $3)", []any{region, "w" + strconv.Itoa(w.n), w.n}
		case 2:
			sql, args = "UPDATE public.orders SET amount = amount + 1 WHERE region = $1 AND code = $2", []any{region, "w" + strconv.Itoa(1+w.rnd.IntN(w.n))}
		case 3:
			sql, args = "INSERT INTO public.countries VALUES ($1, 'l') ON CONFLICT (iso) DO UPDATE SET label = excluded.label || '+'", []any{fmt.Sprintf("%s%d", w.db, w.rnd.IntN(200))}
		default:
			sql, args = "DELETE FROM public.orders WHERE region = $1 AND code = $2", []any{region, "w" + strconv.Itoa(1+w.rnd.IntN(w.n))}
		}
	}
	_, err := w.conn.Exec(ctx, sql, args...)
	return err
}

// startWriters runs a writer on A for the fan-out and one on each source
// of the two-source sync until the returned stop is called; stop returns
// the number of writes.
func startWriters(t *testing.T, f *fixture, dbs map[string]string) (stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := 0
	for i, spec := range [][2]string{{"A", "items"}, {"A", "orders"}, {"B", "orders"}} {
		w := &writer{db: spec[0], what: spec[1], conn: f.c.Connect(t, dbs[spec[0]]), rnd: rand.New(rand.NewPCG(uint64(i), 16))}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if err := w.step(ctx); err != nil && ctx.Err() == nil {
					t.Errorf("writer %s %s: %v", w.db, w.what, err)
					return
				}
				time.Sleep(3 * time.Millisecond)
			}
			mu.Lock()
			total += w.n
			mu.Unlock()
		}()
	}
	return func() int {
		cancel()
		wg.Wait()
		return total
	}
}

// startDaemon runs mcp run on the fixture's catalog until the test ends.
func startDaemon(t *testing.T, f *fixture) {
	t.Helper()
	cmd := exec.Command(f.bin, "--dsn", f.dsn, "run", "--log-level", "debug")
	var log strings.Builder
	var mu sync.Mutex
	cmd.Stdout = writerFunc(func(p []byte) { mu.Lock(); log.Write(p); mu.Unlock() })
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }() // SIGTERM's exit status is not checked here
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			mu.Lock()
			t.Logf("mcp run's log:\n%s", log.String())
			mu.Unlock()
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for f.run("ping").code != 0 {
		if time.Now().After(deadline) {
			t.Fatal("mcp run did not answer mcp ping within 20s")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

type writerFunc func(p []byte)

func (w writerFunc) Write(p []byte) (int, error) { w(p); return len(p), nil }

// watcher queries the replicated dbs on connections of its own.
type watcher struct {
	t     *testing.T
	conns map[string]*pgx.Conn
}

func (w *watcher) q(db, sql string, args ...any) string {
	w.t.Helper()
	var s string
	if err := w.conns[db].QueryRow(context.Background(), sql, args...).Scan(&s); err != nil {
		w.t.Fatalf("db %s: %s: %v", db, sql, err)
	}
	return s
}

// contents is table's rows on db in key order, as text.
func (w *watcher) contents(db, table string) string {
	return w.q(db, fmt.Sprintf("SELECT coalesce(string_agg(t::text, ';' ORDER BY %s), '') FROM %s t", cutoverTables[table], table))
}

// differences lists the tables whose contents differ between A and B or C.
func (w *watcher) differences() []string {
	var out []string
	for table := range cutoverTables {
		a := w.contents("A", table)
		for _, db := range []string{"B", "C"} {
			if w.contents(db, table) != a {
				out = append(out, table+" on "+db)
			}
		}
	}
	return out
}

// bucardoTriggers counts Bucardo's triggers on the replicated tables of db.
func (w *watcher) bucardoTriggers(db string) string {
	return w.q(db, `SELECT count(*)::text FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
		WHERE p.pronamespace::regnamespace::text = 'bucardo' AND t.tgrelid IN ('public.items'::regclass, 'public.orders'::regclass, 'public.countries'::regclass)`)
}

// untouched is the row versions (xmin) of the preloaded rows no writer
// touches on db: a table copied again would rewrite them.
func (w *watcher) untouched(db string) string {
	return w.q(db, `SELECT string_agg(id || ':' || xmin::text, ',' ORDER BY id) FROM public.items WHERE id <= 1000`) + "|" +
		w.q(db, `SELECT string_agg(code || ':' || xmin::text, ',' ORDER BY code) FROM public.orders WHERE region = 0`)
}

// TestImportBucardoCutOver imports a running Bucardo and takes over its
// fan-out and its two-source sync while writers keep writing on every
// source, with gobucardo's daemon running: after the cut-over, once the
// writers stopped and the daemon settled, every db is identical, no row
// is lost or duplicated (primary keys, and contents compared in order),
// Bucardo's triggers are gone from the replicated tables and its syncs
// inactive, no table was copied again (the preloaded rows no writer
// touched keep their row versions on every target, and gobucardo's runs
// applied far fewer rows than the tables hold), and gobucardo replicates a
// new write. Then --rollback gives both syncs back: Bucardo replicates a
// new write again, gobucardo does not run them.
func TestImportBucardoCutOver(t *testing.T) {
	f, b, sc := importFixture(t, false)
	from := b.DSN()
	w := &watcher{t: t, conns: map[string]*pgx.Conn{}}
	for _, n := range []string{"A", "B", "C"} {
		w.conns[n] = f.c.Connect(t, sc.DBs[n])
	}
	// Preloaded: Bucardo's first runs deliver them (onetimecopy=2 of the
	// fan-out copies them to the empty targets).
	f.c.Exec(t, sc.DBs["A"], `INSERT INTO public.items SELECT g, 'pre', g FROM generate_series(1, 2000) g;
		INSERT INTO public.orders SELECT 0, 'p' || g, g FROM generate_series(1, 500) g;
		INSERT INTO public.countries SELECT 'P' || g, 'pre' FROM generate_series(1, 100) g`)
	// Bucardo itself cannot run the scenario's makedelta=on for orders (it
	// writes deltas on the pure target C, which has no bucardo schema).
	f.c.Exec(t, b.DB, "UPDATE bucardo.goat SET makedelta = NULL WHERE tablename = 'orders'")
	b.Start(t)
	b.Run(t, "kick", bucardotest.SyncFanout, bucardotest.SyncMulti)
	settle := func(limit time.Duration, what string) {
		t.Helper()
		deadline := time.Now().Add(limit)
		for {
			diff := w.differences()
			if len(diff) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the dbs still differ after %s: %s", what, limit, strings.Join(diff, ", "))
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	settle(60*time.Second, "Bucardo's first runs")
	// Bucardo's onetimecopy does not mark the deltas of the rows it copied
	// as delivered: its next run delivers them again. Two runs of each
	// (waited for) and its deltas are all delivered.
	for range 2 {
		b.Run(t, "kick", bucardotest.SyncFanout, bucardotest.SyncMulti, "0")
	}
	before := map[string]string{}
	for _, n := range []string{"B", "C"} {
		before[n] = w.untouched(n)
	}

	stop := startWriters(t, f, sc.DBs)
	time.Sleep(500 * time.Millisecond)
	f.ok("import", "bucardo", "--from", from)
	startDaemon(t, f)
	time.Sleep(500 * time.Millisecond)
	out := f.ok("import", "bucardo", "--from", from, "--takeover", bucardotest.SyncFanout, bucardotest.SyncMulti, "--timeout", "90s")
	for _, want := range []string{
		`Installed capture of sync "multi" on db "B"`,
		`Drained Bucardo's sync "fanout"`, `Drained Bucardo's sync "multi"`,
		`Stopped Bucardo's sync "fanout"`, `Stopped Bucardo's sync "multi"`,
		`Dropped Bucardo's triggers of sync "fanout" on db "A": bucardo_delta on public.items, bucardo_kick_fanout on public.items, bucardo_note_trunc_fanout on public.items`,
		`Dropped Bucardo's triggers of sync "multi" on db "B"`,
		`Activated sync "fanout" in gobucardo`, `Activated sync "multi" in gobucardo`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("--takeover does not say %q:\n%s", want, out)
		}
	}
	time.Sleep(2 * time.Second) // gobucardo replicates while the writers still write
	writes := stop()
	t.Logf("%d writes during the import and the cut-over", writes)
	settle(90*time.Second, "gobucardo after the cut-over")

	for _, n := range []string{"A", "B", "C"} {
		if got := w.bucardoTriggers(n); got != "0" {
			t.Errorf("db %s keeps %s of Bucardo's triggers on the replicated tables", n, got)
		}
	}
	if got := f.query(b.DB, "SELECT string_agg(name || '=' || status, ' ' ORDER BY name) FROM bucardo.sync"); got != "fanout=inactive full=active multi=inactive" {
		t.Errorf("Bucardo's syncs after the takeover: %s", got)
	}
	for _, n := range []string{"B", "C"} {
		if got := w.untouched(n); got != before[n] {
			t.Errorf("the preloaded rows no writer touched were rewritten on db %s: a table was copied again:\n%s\nbefore:\n%s", n, got, before[n])
		}
	}
	if got := w.q("C", "SELECT count(*)::text FROM public.items"); got == "0" {
		t.Fatal("nothing on C")
	}
	applied := f.query(f.main, "SELECT coalesce(sum(inserts), 0)::text FROM gobucardo.syncrun WHERE sync IN ('fanout', 'multi')")
	if n, _ := strconv.Atoi(applied); n > 2*writes {
		t.Errorf("gobucardo's runs inserted %d rows for %d writes on 2 targets at most: a table was copied", n, writes)
	}
	// Keys are primary keys on every db: nothing duplicated; same contents: nothing lost.
	f.c.Exec(t, sc.DBs["A"], "INSERT INTO public.items VALUES (999999, 'after', 1)")
	f.c.Exec(t, sc.DBs["B"], "INSERT INTO public.orders VALUES (9, 'after', 1)")
	settle(30*time.Second, "gobucardo replicating a new write")
	if got := w.q("C", "SELECT count(*)::text FROM public.items WHERE id = 999999") + w.q("A", "SELECT count(*)::text FROM public.orders WHERE region = 9"); got != "11" {
		t.Errorf("new writes not replicated by gobucardo: %s", got)
	}
	again := f.ok("import", "bucardo", "--from", from, "--takeover", bucardotest.SyncFanout, "--timeout", "30s")
	if !strings.Contains(again, `Sync "fanout" is taken over already`) {
		t.Errorf("a second --takeover said:\n%s", again)
	}

	// The way back.
	back := f.ok("import", "bucardo", "--from", from, "--rollback", bucardotest.SyncFanout, bucardotest.SyncMulti, "--timeout", "90s")
	for _, want := range []string{`Re-created Bucardo's triggers of sync "fanout"`, `Drained gobucardo's sync "multi"`,
		`Deactivated sync "fanout" in gobucardo`, `Activated Bucardo's sync "fanout"`, `Activated Bucardo's sync "multi"`} {
		if !strings.Contains(back, want) {
			t.Errorf("--rollback does not say %q:\n%s", want, back)
		}
	}
	if got := f.query(b.DB, "SELECT string_agg(name || '=' || status, ' ' ORDER BY name) FROM bucardo.sync"); got != "fanout=active full=active multi=active" {
		t.Errorf("Bucardo's syncs after the rollback: %s", got)
	}
	if got := f.query(f.main, "SELECT string_agg(name || '=' || status, ' ' ORDER BY name) FROM gobucardo.sync"); got != "fanout=inactive full=inactive multi=inactive" {
		t.Errorf("gobucardo's syncs after the rollback: %s", got)
	}
	for _, n := range []string{"A", "B"} {
		if got := w.bucardoTriggers(n); got == "0" {
			t.Errorf("Bucardo's triggers are not back on db %s", n)
		}
	}
	runs := f.query(f.main, "SELECT count(*)::text FROM gobucardo.syncrun")
	f.c.Exec(t, sc.DBs["A"], "UPDATE public.items SET name = 'bucardo again' WHERE id = 999999")
	f.c.Exec(t, sc.DBs["B"], "INSERT INTO public.orders VALUES (9, 'bucardo again', 1)")
	settle(60*time.Second, "Bucardo replicating a new write after the rollback")
	if got := f.query(f.main, "SELECT count(*)::text FROM gobucardo.syncrun"); got != runs {
		t.Errorf("gobucardo ran after the rollback: %s runs, %s before", got, runs)
	}
	back = f.ok("import", "bucardo", "--from", from, "--rollback", bucardotest.SyncFanout, "--timeout", "30s")
	if !strings.Contains(back, `Sync "fanout" is Bucardo's already`) {
		t.Errorf("a second --rollback said:\n%s", back)
	}
}
