package mcp

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gobucardo/gobucardo/pkg/capture"
	"github.com/gobucardo/gobucardo/pkg/catalog"
	"github.com/gobucardo/gobucardo/pkg/pgtest"
	"github.com/gobucardo/gobucardo/pkg/testbin"
)

func TestMain(m *testing.M) {
	pgtest.Main(m)
	testbin.Cleanup()
}

func TestPurgeSources(t *testing.T) {
	db := func(name, status string) catalog.DB {
		return catalog.DB{Name: name, DSN: "dbname=" + name, Status: status}
	}
	sync := func(name, status string, members ...string) catalog.SyncDetail {
		d := catalog.SyncDetail{Sync: catalog.Sync{Name: name, Status: status}, DBs: map[string]catalog.DB{}}
		for i := 0; i < len(members); i += 2 {
			dbStatus := catalog.StatusActive
			if members[i] == "Z" {
				dbStatus = catalog.StatusInactive
			}
			d.Members = append(d.Members, catalog.Member{DB: members[i], Role: members[i+1]})
			d.DBs[members[i]] = db(members[i], dbStatus)
		}
		return d
	}
	active := catalog.StatusActive
	cases := []struct {
		name  string
		syncs []catalog.SyncDetail
		want  string
	}{
		{"none", nil, "map[]"},
		{"source and target", []catalog.SyncDetail{sync("s", active, "A", "source", "B", "target")}, "map[A:dbname=A]"},
		{"two sources, one target", []catalog.SyncDetail{sync("s", active, "A", "source", "B", "source", "C", "target")},
			"map[A:dbname=A B:dbname=B]"},
		{"two sources, no target", []catalog.SyncDetail{sync("s", active, "A", "source", "B", "source")},
			"map[A:dbname=A B:dbname=B]"},
		{"fullcopy only: no capture", []catalog.SyncDetail{sync("f", active, "A", "source", "B", "fullcopy")}, "map[]"},
		{"inactive sync", []catalog.SyncDetail{sync("s", catalog.StatusInactive, "A", "source", "B", "target")}, "map[]"},
		{"inactive db", []catalog.SyncDetail{sync("s", active, "Z", "source", "A", "source", "B", "target")}, "map[A:dbname=A]"},
		{"a db in two syncs, target of one", []catalog.SyncDetail{
			sync("s1", active, "A", "source", "B", "target"), sync("s2", active, "B", "source", "C", "target")},
			"map[A:dbname=A B:dbname=B]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			syncs := map[string]catalog.SyncDetail{}
			for _, s := range tc.syncs {
				syncs[s.Name] = s
			}
			if got := fmt.Sprint(purgeSources(syncs)); got != tc.want {
				t.Errorf("purgeSources = %s, want %s", got, tc.want)
			}
		})
	}
}

// TestPurgerPasses: one pass per db, each on its own; a db that is down is
// logged and does not stop the purge of the others; the password of its
// connection string is never logged.
func TestPurgerPasses(t *testing.T) {
	c := pgtest.Shared(t)
	ctx := context.Background()
	db := c.NewDB(t)
	c.Exec(t, db, "CREATE TABLE public.t (id int PRIMARY KEY, v text)")
	conn := c.Connect(t, db)
	tbl := capture.Table{Schema: "public", Name: "t", KeyColumns: []string{"id"}, KeyTypes: []string{"integer"}}
	if err := capture.Install(ctx, conn, capture.Sync{Name: "s", Tables: []capture.Table{tbl}}); err != nil {
		t.Fatal(err)
	}
	c.Exec(t, db, "INSERT INTO public.t SELECT g, 'x' FROM generate_series(1, 25000) g")
	c.Exec(t, db, "UPDATE gobucardo.watermark SET snap = pg_current_snapshot()")
	c.Exec(t, db, "INSERT INTO public.t VALUES (0, 'pending')")

	// A port nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	downPort := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()

	core, logs := observer.New(zapcore.DebugLevel)
	p := newPurger(ctx, zap.New(core))
	p.start(map[string]string{
		"A":    c.DSN(db),
		"Down": fmt.Sprintf("host=127.0.0.1 port=%d dbname=x user=u password=s3cret-pw connect_timeout=2", downPort),
	})
	p.wait()

	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM gobucardo.`+
		`"`+capture.DeltaName("public", "t")+`"`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("%d delta rows left on A, want the pending one", n)
	}
	purged := logs.FilterMessage("purged consumed deltas").FilterField(zap.String("db", "A")).All()
	if len(purged) != 1 || purged[0].ContextMap()["rows"] != int64(25000) {
		t.Errorf("log of A's pass = %v", purged)
	}
	down := logs.FilterField(zap.String("db", "Down")).All()
	if len(down) != 1 || down[0].Level != zapcore.WarnLevel {
		t.Errorf("log of the down db = %v, want one warning", down)
	}
	for _, e := range logs.All() {
		if strings.Contains(fmt.Sprint(e.Message, e.ContextMap()), "s3cret-pw") {
			t.Errorf("the password is in the log: %v", e)
		}
	}

	// Once cancelled, nothing starts.
	p.cancelPasses()
	p.start(map[string]string{"A": c.DSN(db)})
	p.wait()
	if got := logs.FilterMessage("purged consumed deltas").Len(); got != 1 {
		t.Errorf("%d passes logged after cancelPasses", got)
	}
}
