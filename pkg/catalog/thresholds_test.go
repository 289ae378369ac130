package catalog

import (
	"context"
	"testing"
	"time"

	"github.com/gobucardo/gobucardo/schema"
)

// thresholdsFixture adds dbs A and B, a dbgroup g (A source, B target) and a
// relgroup r of one keyed table, for a sync to use.
const thresholdsFixture = `
	INSERT INTO gobucardo.db (name, dbname) VALUES ('A', 'a'), ('B', 'b');
	INSERT INTO gobucardo.dbgroup (name) VALUES ('g');
	INSERT INTO gobucardo.dbgroup_member (dbgroup, db, role, position) VALUES ('g', 'A', 'source', 0), ('g', 'B', 'target', 1);
	INSERT INTO gobucardo.relation (db, schema_name, rel_name, kind, key_columns, key_types, key_kind, key_index)
		VALUES ('A', 'public', 't', 'table', '{id}', '{integer}', 'primary key', 't_pkey');
	INSERT INTO gobucardo.relgroup (name, db) VALUES ('r', 'A');
	INSERT INTO gobucardo.relgroup_member (relgroup, relation_id, db, position)
		SELECT 'r', id, 'A', 0 FROM gobucardo.relation WHERE rel_name = 't';`

// TestSyncThresholdsRoundTrip: overdue and expired are stored by AddSync and
// UpdateSync and read back by GetSync, ListSyncs and LoadSync; 0 is stored
// as off (NULL) and read back as 0.
func TestSyncThresholdsRoundTrip(t *testing.T) {
	_, conn := installed(t)
	ctx := context.Background()
	if _, err := conn.Exec(ctx, thresholdsFixture); err != nil {
		t.Fatal(err)
	}
	s := NewSync("s")
	s.RelGroup, s.DBGroup = "r", "g"
	s.Overdue, s.Expired = 90*time.Second, 15*time.Minute+500*time.Millisecond
	if err := AddSync(ctx, conn, s); err != nil {
		t.Fatal(err)
	}
	got, err := GetSync(ctx, conn, "s")
	if err != nil || got.Overdue != s.Overdue || got.Expired != s.Expired {
		t.Fatalf("GetSync = overdue %s expired %s, %v; want %s, %s", got.Overdue, got.Expired, err, s.Overdue, s.Expired)
	}
	s.Overdue = 0
	if err := UpdateSync(ctx, conn, s); err != nil {
		t.Fatal(err)
	}
	var overdueNull bool
	if err := conn.QueryRow(ctx, "SELECT overdue IS NULL FROM gobucardo.sync WHERE name = 's'").Scan(&overdueNull); err != nil || !overdueNull {
		t.Errorf("overdue=0 stored as NULL: %t, %v", overdueNull, err)
	}
	ss, err := ListSyncs(ctx, conn)
	if err != nil || len(ss) != 1 || ss[0].Overdue != 0 || ss[0].Expired != s.Expired {
		t.Errorf("ListSyncs = %+v, %v", ss, err)
	}
	d, err := LoadSync(ctx, conn, "s")
	if err != nil || d.Overdue != 0 || d.Expired != s.Expired {
		t.Errorf("LoadSync = overdue %s expired %s, %v", d.Overdue, d.Expired, err)
	}
	s.Overdue, s.Expired = time.Hour, time.Minute
	if err := UpdateSync(ctx, conn, s); err == nil {
		t.Error("UpdateSync with expired below overdue: accepted")
	}
}

// TestUpgradeFromVersion4: a catalog of version 4 (before the thresholds)
// is upgraded by Install; its syncs keep their options, have no thresholds,
// and take them afterwards.
func TestUpgradeFromVersion4(t *testing.T) {
	conn := catalogOfVersion(t, 4, "sync_thresholds")
	ctx := context.Background()
	if _, err := conn.Exec(ctx, thresholdsFixture+`
		INSERT INTO gobucardo.sync (name, relgroup, dbgroup, checktime) VALUES ('s', 'r', 'g', '30 seconds')`); err != nil {
		t.Fatal(err)
	}
	if err := CheckVersion(ctx, conn); err == nil {
		t.Fatal("CheckVersion of a version 4 catalog: no error")
	}
	res, err := Install(ctx, conn)
	if err != nil || res.From != 4 || res.To != schema.Latest() {
		t.Fatalf("Install over version 4 = %+v, %v", res, err)
	}
	s, err := GetSync(ctx, conn, "s")
	if err != nil || s.Checktime != 30*time.Second || s.Overdue != 0 || s.Expired != 0 {
		t.Fatalf("sync s after the upgrade = %+v, %v", s, err)
	}
	if err := s.Set("overdue", "5m"); err != nil {
		t.Fatal(err)
	}
	if err := UpdateSync(ctx, conn, s); err != nil {
		t.Fatal(err)
	}
	if s, err = GetSync(ctx, conn, "s"); err != nil || s.Overdue != 5*time.Minute {
		t.Errorf("overdue after the upgrade = %s, %v", s.Overdue, err)
	}
}
