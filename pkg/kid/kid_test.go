package kid

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/gobucardo/gobucardo/pkg/capture"
	"github.com/gobucardo/gobucardo/pkg/catalog"
	"github.com/gobucardo/gobucardo/pkg/ipc"
	"github.com/gobucardo/gobucardo/pkg/ipc/kidcodec"
	"github.com/gobucardo/gobucardo/pkg/ipc/kidpb"
	"github.com/gobucardo/gobucardo/pkg/pgtest"
	"github.com/gobucardo/gobucardo/pkg/replicate"
	"github.com/gobucardo/gobucardo/pkg/runs"
	"github.com/gobucardo/gobucardo/pkg/testbin"
)

func TestMain(m *testing.M) {
	pgtest.Main(m)
	testbin.Cleanup()
}

// serve serves a kid over a pair of pipes, as its controller reaches it,
// and returns the controller's client; the kid stops with the test.
func serve(t *testing.T) kidpb.KidClient {
	t.Helper()
	r1, w1, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r2, w2, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	parent, child := ipc.NewConn(r1, w2), ipc.NewConn(r2, w1)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, child, zap.NewNop(), zap.NewAtomicLevel()) }()
	cc, err := grpc.NewClient("passthrough:///kid", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) { return parent, nil }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cc.Close()
		cancel()
		_ = parent.Close()
		select {
		case err := <-served:
			if err != nil {
				t.Logf("kid.Serve after the controller went away: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("the kid did not stop")
		}
	})
	return kidpb.NewKidClient(cc)
}

// run asks the kid for run id of spec and returns its last event, and the
// plugins it reported.
func run(t *testing.T, k kidpb.KidClient, spec replicate.Sync, id int64) (*kidpb.RunEvent, []*kidpb.Plugin) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := k.Run(ctx, &kidpb.RunRequest{Sync: kidcodec.EncodeSync(spec), RunId: id, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	var plugins []*kidpb.Plugin
	for {
		ev, err := st.Recv()
		if err != nil {
			t.Fatalf("the stream ended without an outcome: %v", err)
		}
		if p := ev.GetPlugins(); p != nil && len(p.GetPlugins()) > 0 {
			plugins = p.GetPlugins()
		}
		if _, ok, _ := kidcodec.DecodeOutcome(ev); ok {
			return ev, plugins
		}
	}
}

// fixture is a main database with sync s from sources A and C to target
// B in its catalog, each db with table t, captured on the sources, as mcp
// add sets them up.
type fixture struct {
	c    *pgtest.Cluster
	main string
	conn *pgx.Conn // to the main database
	dbs  map[string]string
	spec replicate.Sync // as the controller sends it
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{c: pgtest.Shared(t), dbs: map[string]string{}}
	f.main = f.c.NewDB(t)
	f.conn = f.c.Connect(t, f.main)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := catalog.Install(ctx, f.conn)
	must(err)
	var members []catalog.Member
	for _, db := range []string{"A:source", "C:source", "B:target"} {
		name, role, _ := strings.Cut(db, ":")
		f.dbs[name] = f.c.NewDB(t)
		f.c.Exec(t, f.dbs[name], "CREATE TABLE t (id int PRIMARY KEY, v text)")
		must(catalog.AddDB(ctx, f.conn, catalog.DB{Name: name, DSN: f.c.DSN(f.dbs[name])}))
		members = append(members, catalog.Member{DB: name, Role: role})
	}
	must(catalog.AddDBGroup(ctx, f.conn, "g", members))
	rel, err := catalog.AddRelation(ctx, f.conn, catalog.Relation{DB: "A", Schema: "public", Name: "t", Kind: catalog.KindTable,
		KeyColumns: []string{"id"}, KeyTypes: []string{"integer"}, KeyKind: "primary key", KeyIndex: "t_pkey"})
	must(err)
	must(catalog.AddRelGroup(ctx, f.conn, "r"))
	must(catalog.AddToRelGroup(ctx, f.conn, "r", rel))
	s := catalog.NewSync("s")
	s.RelGroup, s.DBGroup, s.ConflictStrategy = "r", "g", "bucardo_abort"
	must(catalog.AddSync(ctx, f.conn, s))
	d, err := catalog.LoadSync(ctx, f.conn, "s")
	must(err)
	for _, src := range d.Sources() {
		must(capture.Install(ctx, f.c.Connect(t, f.dbs[src.Name]), capture.SyncFrom(d)))
	}
	f.spec = replicate.SyncFrom(d)
	return f
}

// startRun records the start of a run, as the controller does before it
// asks its kid.
func (f *fixture) startRun(t *testing.T) int64 {
	t.Helper()
	id, err := catalog.StartRun(context.Background(), f.conn, "s", 1, "h", "Started (test)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = catalog.EndRunLock(context.Background(), f.conn, "s") })
	return id
}

func (f *fixture) count(t *testing.T, db, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := f.c.Connect(t, db).QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// buildWindow builds the example plugin window (a run hook that cancels
// runs outside a daily time window) and returns its path and checksum.
func buildWindow(t *testing.T) (string, string) {
	t.Helper()
	bin := filepath.Join(testbin.Build(t, "github.com/gobucardo/gobucardo/plugins/window"), "window")
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return bin, hex.EncodeToString(sum[:])
}

// TestKid serves a kid over a real connection and runs a sync through it
// against real databases: the result event (per table too), and each kind
// of failure as the controller reads it.
func TestKid(t *testing.T) {
	f := newFixture(t)
	k := serve(t)
	ctx := context.Background()

	st, err := k.Run(ctx, &kidpb.RunRequest{Sync: kidcodec.EncodeSync(f.spec)})
	if err == nil {
		_, err = st.Recv() // a server's refusal comes with the stream's first message
	}
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("a run before Configure = %v, want FailedPrecondition", err)
	}
	if _, err := k.Configure(ctx, &kidpb.Config{Sync: "s", MainDsn: f.c.DSN(f.main), LogLevel: "debug"}); err != nil {
		t.Fatal(err)
	}

	t.Run("result", func(t *testing.T) {
		f.c.Exec(t, f.dbs["A"], "INSERT INTO t SELECT g, 'a' FROM generate_series(1, 3) g")
		ev, _ := run(t, k, f.spec, f.startRun(t))
		res, _, err := kidcodec.DecodeOutcome(ev)
		if err != nil {
			t.Fatalf("run failed: %v", err)
		}
		// A's rows go to B and to C, the other source.
		if res.Inserts != 6 || len(res.Tables) != 1 || res.Tables[0].Table != "public.t" || res.Tables[0].Keys != 3 {
			t.Errorf("result %+v", res)
		}
		for _, db := range []string{"B", "C"} {
			if n := f.count(t, f.dbs[db], "SELECT count(*) FROM t"); n != 3 {
				t.Errorf("%d rows on %s, want 3", n, db)
			}
		}
	})
	t.Run("conflict abort", func(t *testing.T) {
		f.c.Exec(t, f.dbs["A"], "UPDATE t SET v = 'from A' WHERE id = 1")
		f.c.Exec(t, f.dbs["C"], "UPDATE t SET v = 'from C' WHERE id = 1")
		id := f.startRun(t)
		ev, _ := run(t, k, f.spec, id)
		if kind := ev.GetFailure().GetKind(); kind != kidpb.Failure_KIND_CONFLICT_ABORT {
			t.Fatalf("failure kind %v (%v), want a conflict abort", kind, ev)
		}
		_, _, err := kidcodec.DecodeOutcome(ev)
		if o := runs.Classify(err); o.Kind != runs.ConflictAbort || !strings.Contains(err.Error(), "bucardo_abort") {
			t.Errorf("the controller reads %v: %v", o.Kind, err)
		}
	})
	t.Run("conflicts logged", func(t *testing.T) {
		spec := f.spec
		spec.ConflictStrategy = "bucardo_latest"
		id := f.startRun(t)
		ev, _ := run(t, k, spec, id)
		res, _, err := kidcodec.DecodeOutcome(ev)
		if err != nil || res.Conflicts != 1 {
			t.Fatalf("result %+v, %v; want one conflict", res, err)
		}
		if n := f.count(t, f.main, "SELECT count(*) FROM gobucardo.conflict_log WHERE syncrun_id = $1", id); n != 1 {
			t.Errorf("%d conflicts logged for run %d, want 1", n, id)
		}
	})
	t.Run("failed", func(t *testing.T) {
		spec := f.spec
		spec.Relations = append(spec.Relations, replicate.Relation{Schema: "public", Name: "missing", KeyColumns: []string{"id"}})
		ev, _ := run(t, k, spec, f.startRun(t))
		if kind := ev.GetFailure().GetKind(); kind != kidpb.Failure_KIND_ERROR || !strings.Contains(ev.GetFailure().GetMessage(), "missing") {
			t.Fatalf("failure %v, want an error about the missing table", ev)
		}
		_, _, err := kidcodec.DecodeOutcome(ev)
		if o := runs.Classify(err); o.Kind != runs.Failed {
			t.Errorf("the controller reads %v: %v", o.Kind, err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		bin, sum := buildWindow(t)
		// A window of one minute, twelve hours from now: never now.
		from := time.Now().UTC().Add(12 * time.Hour)
		window := fmt.Sprintf("%s-%s", from.Format("15:04"), from.Add(time.Minute).Format("15:04"))
		spec := f.spec
		spec.CustomCode = []replicate.CustomCode{{Name: "nightly", Plugin: bin, SHA256: sum, WhenRun: "before_sync",
			Settings: map[string]string{"window": window}, Timeout: 10 * time.Second}}
		f.c.Exec(t, f.dbs["A"], "UPDATE t SET v = 'later' WHERE id = 2")
		ev, plugins := run(t, k, spec, f.startRun(t))
		if kind := ev.GetFailure().GetKind(); kind != kidpb.Failure_KIND_CANCELLED {
			t.Fatalf("failure kind %v (%v), want cancelled", kind, ev)
		}
		_, _, err := kidcodec.DecodeOutcome(ev)
		if o := runs.Classify(err); o.Kind != runs.Cancelled || !strings.Contains(err.Error(), "nightly") {
			t.Errorf("the controller reads %v: %v", o.Kind, err)
		}
		if len(plugins) != 1 || plugins[0].GetCode() != "nightly" || plugins[0].GetPid() == 0 {
			t.Errorf("plugins reported: %v", plugins)
		}
		if n := f.count(t, f.dbs["B"], "SELECT count(*) FROM t WHERE v = 'later'"); n != 0 {
			t.Errorf("a cancelled run changed the target")
		}
	})
}
