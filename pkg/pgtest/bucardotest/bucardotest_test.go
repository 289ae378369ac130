package bucardotest

import (
	"context"
	"testing"

	"github.com/gobucardo/gobucardo/pkg/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestScenarios builds the scenarios with Bucardo's CLI and checks that
// Bucardo's catalog holds them: the fixture other tests rely on.
func TestScenarios(t *testing.T) {
	c := pgtest.New(t)
	b := Install(t, c)
	Scenarios(t, b)
	conn := c.Connect(t, b.DB)
	var got string
	err := conn.QueryRow(context.Background(), `SELECT string_agg(s.name || ':' || s.herd || ':' || s.dbs || ':' ||
		(SELECT string_agg(m.db || '=' || m.role, ',' ORDER BY m.db) FROM bucardo.dbmap m WHERE m.dbgroup = s.dbs) || ':' ||
		(SELECT count(*) FROM bucardo.herdmap h WHERE h.herd = s.herd), ' ' ORDER BY s.name) FROM bucardo.sync s`).Scan(&got)
	if err != nil {
		t.Fatal(err)
	}
	want := "fanout:fanout_rg:fanout_g:A=source,B=target,C=target:2 full:full_rg:full_g:A=source,D=fullcopy:1 " +
		"multi:multi_rg:multi_g:A=source,B=source,C=target:2"
	if got != want {
		t.Errorf("Bucardo's syncs:\n got %s\nwant %s", got, want)
	}
}
