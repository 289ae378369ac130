package replicate

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

const randomSchema = `
CREATE TABLE public.t_int (id int PRIMARY KEY, v int, s text, gen int GENERATED ALWAYS AS (v * 2) STORED);
CREATE TABLE public.t_comp (a text, b bigint, v numeric, j jsonb, PRIMARY KEY (a, b));
CREATE SCHEMA "Other Schema";
CREATE TABLE "Other Schema"."Mixed Case" ("Kéy" text PRIMARY KEY, "Val ue" bytea, arr int[], ts timestamptz);
CREATE SEQUENCE public.s1;
`

var randomRels = []Relation{
	{Schema: "public", Name: "t_int", KeyColumns: []string{"id"}},
	{Schema: "public", Name: "t_comp", KeyColumns: []string{"a", "b"}},
	{Schema: "Other Schema", Name: "Mixed Case", KeyColumns: []string{"Kéy"}},
	{Schema: "public", Name: "s1", Sequence: true},
}

// writer makes random changes on the source.
type writer struct {
	mu   sync.Mutex
	rnd  *rand.Rand
	next int // next unused integer key
}

func (w *writer) op(ctx context.Context, tx pgx.Tx) error {
	w.mu.Lock()
	r := w.rnd.Intn(100)
	id := w.rnd.Intn(w.next + 1)
	w.next++
	fresh := w.next
	a := fmt.Sprintf("k %d ü", w.rnd.Intn(40))
	w.mu.Unlock()
	var sql string
	var args []any
	switch {
	case r < 25:
		sql, args = "INSERT INTO t_int (id, v, s) VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET v = excluded.v", []any{fresh, r, "s" + strconv.Itoa(r)}
	case r < 40:
		sql, args = "UPDATE t_int SET v = v + 1, s = NULL WHERE id % 17 = $1 % 17", []any{id}
	case r < 48:
		sql, args = "DELETE FROM t_int WHERE id = $1", []any{id}
	case r < 55:
		sql, args = "UPDATE t_int SET id = $2 WHERE id = $1", []any{id, fresh} // key change
	case r < 70:
		sql, args = "INSERT INTO t_comp VALUES ($1, $2, $3, $4) ON CONFLICT (a, b) DO UPDATE SET v = excluded.v + t_comp.v", []any{a, id % 5, r, fmt.Sprintf(`{"r": %d}`, r)}
	case r < 76:
		sql, args = `UPDATE t_comp SET b = b + 100 WHERE a = $1 AND b < 100
			AND NOT EXISTS (SELECT 1 FROM t_comp x WHERE x.a = t_comp.a AND x.b = t_comp.b + 100)`, []any{a} // composite key change
	case r < 80:
		sql, args = "DELETE FROM t_comp WHERE a = $1", []any{a}
	case r < 90:
		sql, args = `INSERT INTO "Other Schema"."Mixed Case" VALUES ($1, $2, $3, now()) ON CONFLICT ("Kéy") DO UPDATE SET "Val ue" = excluded."Val ue"`,
			[]any{a, []byte{byte(r), 0, 255}, []int32{int32(r), int32(id)}}
	case r < 94:
		sql, args = `DELETE FROM "Other Schema"."Mixed Case" WHERE "Kéy" = $1`, []any{a}
	case r < 97:
		sql = "SELECT nextval('s1')"
	case r < 98:
		sql = "TRUNCATE t_comp"
	default:
		sql = `TRUNCATE "Other Schema"."Mixed Case"; INSERT INTO "Other Schema"."Mixed Case" VALUES ('after truncate', NULL, NULL, NULL)`
	}
	_, err := tx.Exec(ctx, sql, args...)
	return err
}

// TestRandomized: random inserts, updates, deletes, key changes and
// truncates on the source, runs in between and during writes, a long
// transaction that commits after a run began; in the end every target
// holds exactly what the source holds.
func TestRandomized(t *testing.T) {
	seed := time.Now().UnixNano()
	if s := os.Getenv("GOBUCARDO_SEED"); s != "" {
		seed, _ = strconv.ParseInt(s, 10, 64)
	}
	t.Logf("seed %d (GOBUCARDO_SEED=%d reproduces)", seed, seed)
	e := newEnv(t, randomSchema, []string{"A:source", "B:target", "C:target", "F:fullcopy"}, randomRels)
	// C has the columns in another order and an extra column.
	e.exec("C", `DROP TABLE public.t_int; CREATE TABLE public.t_int (s text, extra int DEFAULT 7, gen int GENERATED ALWAYS AS (v * 2) STORED, v int, id int PRIMARY KEY)`)
	w := &writer{rnd: rand.New(rand.NewSource(seed)), next: 1}
	ctx := context.Background()
	// Runs keep their sessions, as a kid does; now and then one dies
	// between runs.
	e.opts.Sessions = NewSessions()
	defer e.opts.Sessions.Close(ctx)
	src := e.c.Connect(t, e.dbs["A"])
	txn := func(conn *pgx.Conn, ops int) {
		t.Helper()
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			for i := 0; i < ops; i++ {
				if err := w.op(ctx, tx); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("source transaction: %v", err)
		}
	}
	long := e.c.Connect(t, e.dbs["A"])
	var longTx pgx.Tx
	concurrent := e.c.Connect(t, e.dbs["A"])
	rounds := 40
	if testing.Short() {
		rounds = 10
	}
	for round := 0; round < rounds; round++ {
		for i := 0; i < 1+w.rnd.Intn(8); i++ {
			txn(src, 1+w.rnd.Intn(4))
		}
		switch round {
		case 3: // a long transaction begins and writes...
			var err error
			if longTx, err = long.Begin(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := longTx.Exec(ctx, "INSERT INTO t_int (id, v, s) VALUES (-1, 1, 'long transaction')"); err != nil {
				t.Fatal(err)
			}
		case 9: // ...and commits after several runs began and ended.
			if _, err := longTx.Exec(ctx, "UPDATE t_int SET s = 'long transaction, late' WHERE id = -1"); err != nil {
				t.Fatal(err)
			}
			if err := longTx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if w.rnd.Intn(4) == 0 {
			e.killKept(w.rnd.Intn(2) == 0)
		}
		if round%3 == 0 {
			// A run while another connection keeps writing.
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				for {
					select {
					case <-stop:
						return
					default:
					}
					if err := pgx.BeginFunc(ctx, concurrent, func(tx pgx.Tx) error { return w.op(ctx, tx) }); err != nil {
						t.Errorf("concurrent writer: %v", err)
						return
					}
				}
			}()
			e.run()
			close(stop)
			<-done
		} else if w.rnd.Intn(2) == 0 {
			e.run()
		}
	}
	e.run()
	e.assertSame()
	// A quiet run finds no changed key (sequences and fullcopy targets are
	// copied again, which is not a change of the data).
	for _, tr := range e.run().Tables {
		if tr.Mode != "sequence" && tr.Keys > 0 {
			t.Errorf("a quiet run found changed keys: %+v", tr)
		}
	}
}

// TestConnectionCut: a target's or the source's connection dies at the
// worst moments; the next run converges.
func TestConnectionCut(t *testing.T) {
	for _, point := range []string{"before-commit", "targets-committed"} {
		t.Run(point, func(t *testing.T) {
			e := newEnv(t, basicSchema, []string{"A:source", "B:target"}, []Relation{accounts})
			e.exec("A", "INSERT INTO accounts SELECT g, 1, 0, 'x' FROM generate_series(1, 2000) g")
			e.run()
			e.exec("A", "UPDATE accounts SET abalance = 5 WHERE aid % 2 = 0; DELETE FROM accounts WHERE aid % 3 = 0")
			victim := "B"
			if point == "targets-committed" {
				victim = "A"
			}
			_, err := Run(context.Background(), e.sync, Options{Hook: func(p string) {
				if p == point {
					e.c.Exec(t, "postgres", `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
						WHERE datname = $1 AND application_name = 'gobucardo'`, e.dbs[victim])
				}
			}})
			if err == nil {
				t.Fatal("the run survived a cut connection")
			}
			e.run()
			e.assertSame()
		})
	}
}

// TestKilledRun: the process running a large run is killed with SIGKILL in
// the middle of the copy; the next run loses and duplicates nothing.
func TestKilledRun(t *testing.T) {
	if os.Getenv("GOBUCARDO_KILL_CHILD") != "" {
		return // the child's work is done in killChild, via TestMain-less re-exec below
	}
	e := newEnv(t, basicSchema, []string{"A:source", "B:target", "C:target"}, []Relation{accounts})
	e.exec("A", "INSERT INTO accounts SELECT g, 1, 0, repeat('x', 80) FROM generate_series(1, 200000) g")
	cfg, _ := json.Marshal(e.sync)
	cmd := exec.Command(os.Args[0], "-test.run=^TestKillChild$", "-test.v")
	cmd.Env = append(os.Environ(), "GOBUCARDO_KILL_CHILD="+string(cfg))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	var seen strings.Builder
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(seen.String(), "COPYING") {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("child never started copying: %s", seen.String())
		}
		n, err := out.Read(buf)
		seen.Write(buf[:n])
		if err != nil {
			break
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if !strings.Contains(seen.String(), "COPYING") {
		t.Fatalf("child ended before copying: %s", seen.String())
	}
	// Its half-done work is rolled back by the servers; the watermark did not move.
	res := e.rerun()
	if res.Inserts != 400000 {
		t.Errorf("rerun inserted %d rows, want all 400000", res.Inserts)
	}
	e.assertSame()
}

// TestKillChild is the child of TestKilledRun: it runs the sync and says
// COPYING once the copy is under way, then waits to be killed.
func TestKillChild(t *testing.T) {
	cfg := os.Getenv("GOBUCARDO_KILL_CHILD")
	if cfg == "" {
		t.Skip("only run as the child of TestKilledRun")
	}
	var s Sync
	if err := json.Unmarshal([]byte(cfg), &s); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	_, err := Run(context.Background(), s, Options{ProgressEvery: 10 * time.Millisecond, Progress: func(p Progress) {
		if p.Phase == "copy" && p.Rows > 1000 {
			once.Do(func() {
				fmt.Println("COPYING")
				time.Sleep(time.Minute) // the parent kills us here, mid-copy
			})
		}
	}})
	t.Fatalf("the child's run ended (%v) instead of being killed", err)
}
