package catalog

import (
	"context"
	"testing"

	"github.com/gobucardo/gobucardo/pkg/pgtest"
)

// TestMCPLockHolder: the holder of the MCP lock is seen from another
// session, by its backend pid, and no longer once it lets go.
func TestMCPLockHolder(t *testing.T) {
	ctx := context.Background()
	c := pgtest.Shared(t)
	db := c.NewDB(t)
	holder, other := c.Connect(t, db), c.Connect(t, db)
	check := func(wantPID int32) {
		t.Helper()
		pid, err := MCPLockHolder(ctx, other)
		if err != nil {
			t.Fatal(err)
		}
		running, err := MCPRunning(ctx, other)
		if err != nil {
			t.Fatal(err)
		}
		if pid != wantPID || running != (wantPID != 0) {
			t.Errorf("MCPLockHolder = %d, MCPRunning = %v; want %d", pid, running, wantPID)
		}
	}
	check(0)
	var pid int32
	if err := holder.QueryRow(ctx, "SELECT pg_backend_pid() FROM pg_advisory_lock($1)", MCPLockKey).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	check(pid)
	// Another advisory lock of that session is not the MCP's.
	if _, err := holder.Exec(ctx, "SELECT pg_advisory_unlock($1), pg_advisory_lock($1 + 1)", MCPLockKey); err != nil {
		t.Fatal(err)
	}
	check(0)
}
