package mcp

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gobucardo/gobucardo/pkg/capture"
	"github.com/gobucardo/gobucardo/pkg/catalog"
	"github.com/gobucardo/gobucardo/pkg/pgtest"
	"github.com/gobucardo/gobucardo/pkg/testbin"
)

// binaries builds the real controller and kid into a directory of the test.
func binaries(t *testing.T) (controller, kid string) {
	t.Helper()
	dir := testbin.BuildRace(t, "github.com/gobucardo/gobucardo/cmd/controller", "github.com/gobucardo/gobucardo/cmd/kid")
	return filepath.Join(dir, "controller"), filepath.Join(dir, "kid")
}

// catalogWithSync installs the catalog in a new main database and adds sync
// s from db A to db B over table t, captured on A; it returns a connection
// to the main database.
func catalogWithSync(t *testing.T, c *pgtest.Cluster) (mainDSN string, conn *pgx.Conn) {
	t.Helper()
	ctx := context.Background()
	mainDB, a, b := c.NewDB(t), c.NewDB(t), c.NewDB(t)
	for _, db := range []string{a, b} {
		c.Exec(t, db, "CREATE TABLE public.t (id int PRIMARY KEY, v text)")
	}
	conn = c.Connect(t, mainDB)
	if _, err := catalog.Install(ctx, conn); err != nil {
		t.Fatal(err)
	}
	aConn := c.Connect(t, a)
	found, err := catalog.FindRelations(ctx, aConn, "A", catalog.KindTable, []string{"public.t"})
	if err != nil || len(found) != 1 {
		t.Fatalf("FindRelations = %v, %v", found, err)
	}
	s := catalog.NewSync("s")
	s.Autokick, s.RelGroup, s.DBGroup = false, "rg", "g"
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		for name, db := range map[string]string{"A": a, "B": b} {
			if err := catalog.AddDB(ctx, tx, catalog.DB{Name: name, DSN: c.DSN(db), Status: catalog.StatusActive}); err != nil {
				return err
			}
		}
		if err := catalog.AddDBGroup(ctx, tx, "g", []catalog.Member{{DB: "A", Role: catalog.RoleSource}, {DB: "B", Role: catalog.RoleTarget}}); err != nil {
			return err
		}
		r, err := catalog.AddRelation(ctx, tx, found[0].Relation("A"))
		if err != nil {
			return err
		}
		if err := catalog.AddRelGroup(ctx, tx, "rg"); err != nil {
			return err
		}
		if err := catalog.AddToRelGroup(ctx, tx, "rg", r); err != nil {
			return err
		}
		return catalog.AddSync(ctx, tx, s)
	})
	if err != nil {
		t.Fatal(err)
	}
	d, err := catalog.LoadSync(ctx, conn, "s")
	if err != nil {
		t.Fatal(err)
	}
	if err := capture.Install(ctx, aConn, capture.SyncFrom(d)); err != nil {
		t.Fatal(err)
	}
	return c.DSN(mainDB), conn
}

// controllers returns the pids of this process's children that are the
// controller of sync, live or not yet reaped.
func controllers(t *testing.T, sync string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	me := strconv.Itoa(os.Getpid())
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(fields) < 2 || fields[1] != me {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		if len(args) == 3 && filepath.Base(args[0]) == "controller" && args[1] == "--sync" && args[2] == sync {
			pids = append(pids, pid)
		}
	}
	return pids
}

// eventually polls cond every 10ms until it holds, for up to limit.
func eventually(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s still not: %s", limit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRemovedControllerAwaited: a sync deactivated and activated again gets
// its new controller only once the old one's process has exited, even when
// the old one takes long to stop (here it is frozen with SIGSTOP, so the MCP
// has to wait out the Stop RPC and the grace, then kill it).
func TestRemovedControllerAwaited(t *testing.T) {
	c := pgtest.Shared(t)
	controllerPath, kidPath := binaries(t)
	mainDSN, conn := catalogWithSync(t, c)
	ctx := context.Background()

	core, logs := observer.New(zapcore.DebugLevel)
	rctx, cancel := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() {
		ran <- Run(rctx, Options{MainDSN: mainDSN, ControllerPath: controllerPath, KidPath: kidPath,
			Log: zap.New(core), LogOut: zapcore.AddSync(&bytes.Buffer{}), StopGrace: time.Second, PurgeInterval: -1})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("Run: %v", err)
		}
		if t.Failed() {
			for _, e := range logs.All() {
				t.Logf("%s %s %v", e.Level, e.Message, e.ContextMap())
			}
		}
	})

	eventually(t, 30*time.Second, "the controller of s runs", func() bool {
		return logs.FilterMessage("controller started").Len() == 1
	})
	old := int(logs.FilterMessage("controller started").All()[0].ContextMap()["controller"].(int64))
	if pids := controllers(t, "s"); len(pids) != 1 || pids[0] != old {
		t.Fatalf("controllers of s: %v, want the one the MCP started (%d)", pids, old)
	}
	if err := syscall.Kill(old, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	setStatus := func(status string) {
		t.Helper()
		if _, err := conn.Exec(ctx, "UPDATE gobucardo.sync SET status = $1 WHERE name = 's'", status); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, "SELECT pg_notify($1, 'reload *')", catalog.AdminChannel); err != nil {
			t.Fatal(err)
		}
	}
	setStatus(catalog.StatusInactive)
	eventually(t, 30*time.Second, "the MCP stops the controller of s", func() bool {
		return logs.FilterMessage("stopping controller: sync no longer active").Len() == 1
	})
	deactivated := time.Now()
	setStatus(catalog.StatusActive)

	var next int
	eventually(t, 30*time.Second, "a new controller of s runs", func() bool {
		pids := controllers(t, "s")
		for _, pid := range pids {
			if pid != old {
				next = pid
			}
		}
		if next != 0 && len(pids) > 1 {
			t.Fatalf("controllers %v of s at once: the new one started before the old one (%d) exited", pids, old)
		}
		return next != 0
	})
	// The old one was asked (5s), then got SIGTERM and the grace (1s).
	if waited := time.Since(deactivated); waited < 5*time.Second {
		t.Errorf("the new controller started %s after the old one was told to stop: it cannot have been awaited", waited)
	}
	if logs.FilterMessage("waiting for the previous controller to exit before starting a new one").Len() == 0 {
		t.Error("the MCP did not say it waits for the previous controller")
	}
	if got := logs.FilterMessage("controller stopped").FilterField(zap.String("how", "killed")).Len(); got != 1 {
		t.Errorf("%d controllers stopped by SIGKILL, want the frozen one", got)
	}
}
