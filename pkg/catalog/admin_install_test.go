package catalog

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gobucardo/gobucardo/pkg/pgtest"
)

// TestCreateDatabase: a name that needs quoting is created as it is.
func TestCreateDatabase(t *testing.T) {
	c := pgtest.Shared(t)
	ctx := context.Background()
	conn, err := pgconn.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	name := fmt.Sprintf(`gb "Created" %d`, time.Now().UnixNano())
	t.Cleanup(func() {
		_, _ = conn.Exec(context.Background(), `DROP DATABASE IF EXISTS "`+strings.ReplaceAll(name, `"`, `""`)+`" WITH (FORCE)`).ReadAll()
	})
	if ok, err := DatabaseExists(ctx, conn, name); err != nil || ok {
		t.Fatalf("DatabaseExists before CreateDatabase = %t, %v", ok, err)
	}
	if err := CreateDatabase(ctx, conn, name); err != nil {
		t.Fatal(err)
	}
	if ok, err := DatabaseExists(ctx, conn, name); err != nil || !ok {
		t.Fatalf("DatabaseExists after CreateDatabase = %t, %v", ok, err)
	}
	if err := CreateDatabase(ctx, conn, name); err == nil {
		t.Error("CreateDatabase of a database that exists: no error")
	}
}
