package admin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gobucardo/gobucardo/pkg/catalog"
	"github.com/gobucardo/gobucardo/pkg/pg"
)

// rollbackStart is where the way back of one sync begins.
type rollbackStart int

const (
	// rollbackAll: gobucardo replicates the sync, Bucardo's is inactive.
	rollbackAll rollbackStart = iota
	// rolledBack: Bucardo replicates it, gobucardo's is inactive.
	rolledBack
)

// rollbackStartOf decides, from the sync's status in gobucardo and in
// Bucardo ("" when Bucardo has no such sync), whether the way back is to
// do.
func rollbackStartOf(name, gobucardo, bucardo string) (rollbackStart, error) {
	switch {
	case bucardo == "":
		return 0, catalog.Invalidf("sync %s is not in Bucardo's catalog: --rollback gives a sync back to the Bucardo it was taken over from", name)
	case gobucardo == catalog.StatusActive && bucardo != "active":
		return rollbackAll, nil
	case gobucardo != catalog.StatusActive && bucardo == "active":
		return rolledBack, nil
	case gobucardo == catalog.StatusActive:
		return 0, catalog.Invalidf("sync %s is active in gobucardo and in Bucardo: deactivate it in one of them (bucardo deactivate %s, or mcp deactivate %s)", name, name, name)
	default:
		return 0, catalog.Invalidf("sync %s is inactive in gobucardo and in Bucardo: finish the takeover (mcp import bucardo --takeover %s, it resumes), or mcp activate %s and run --rollback again", name, name, name)
	}
}

// rollbackBucardo gives taken-over syncs back to Bucardo, the mirror of
// the takeover, so that no write is lost: (1) Bucardo's triggers are
// re-created with its own validate_sync (what bucardo validate runs), so
// Bucardo records every write from then on; (2) mcp waits for the
// transactions open at that moment; (3) gobucardo's sync is kicked and a
// run that started after that is waited for: it delivers everything only
// gobucardo captured; (4) gobucardo's sync is deactivated and its run in
// progress waited out; (5) Bucardo's sync is activated through its MCP,
// which delivers the writes made since (1) as their current rows.
func rollbackBucardo(e *env, from string) error {
	ctx := e.ctx()
	c, err := startCutOver(e, from, "name the syncs to give back to Bucardo: mcp import bucardo --from DSN --rollback SYNC...|all")
	if err != nil {
		return err
	}
	defer closeConn(ctx, c.conn)
	conn, names, bc, where, timeout := c.conn, c.names, c.bc, c.where, c.timeout
	var todo []catalog.SyncDetail
	for _, n := range names {
		d, err := catalog.LoadSync(ctx, conn, n)
		if err != nil {
			return err
		}
		st, err := rollbackStartOf(n, d.Status, bucardoStatus(bc, n))
		if err != nil {
			return fmt.Errorf("%w (Bucardo at %s)", err, where)
		}
		if st == rolledBack {
			e.printf("Sync %q is Bucardo's already: active there, inactive in gobucardo\n", n)
			continue
		}
		todo = append(todo, d)
	}
	if len(todo) == 0 {
		return nil
	}
	if err := requireMCP(ctx, conn); err != nil {
		return fmt.Errorf("%w: it delivers what gobucardo captured before giving the syncs back; nothing is changed", err)
	}
	deadline := time.Now().Add(timeout)
	bconn, err := pg.Connect(ctx, from)
	if err != nil {
		return catalog.Invalidf("cannot connect to Bucardo's main database, %s: %v: check --from", where, pg.RedactError(err, ""))
	}
	defer closeConn(ctx, bconn)
	for _, d := range todo {
		if _, err := bconn.Exec(ctx, "SELECT bucardo.validate_sync($1)", d.Name); err != nil {
			return fmt.Errorf("bucardo validate %s: %w; gobucardo still replicates: fix it and retry --rollback", d.Name, err)
		}
		e.printf("Re-created Bucardo's triggers of sync %q (bucardo validate): Bucardo records every write from now on\n", d.Name)
	}
	if err := waitSourcesQuiet(ctx, todo, deadline, timeout); err != nil {
		return err
	}
	for _, d := range todo {
		if err := drainGobucardo(ctx, conn, d.Name, deadline, timeout); err != nil {
			return err
		}
		e.printf("Drained gobucardo's sync %q: every write it captured before Bucardo's triggers were back is delivered\n", d.Name)
	}
	for _, d := range todo {
		if err := deactivateGivenBack(e, conn, d.Name, deadline, timeout); err != nil {
			return err
		}
		_, err := awaitBucardo(ctx, bconn, "bucardo_activate_sync_"+d.Name, []string{"activated_sync_" + d.Name}, deadline)
		switch {
		case errors.Is(err, errBucardoSilent):
			return catalog.Invalidf("Bucardo did not activate sync %s within --timeout %s: is Bucardo running (bucardo status; its log says why)? Its triggers record every write, so bucardo activate %s later loses nothing",
				d.Name, timeout, d.Name)
		case err != nil:
			return fmt.Errorf("activate Bucardo's sync %s: %w; its triggers record every write: bucardo activate %s", d.Name, err, d.Name)
		}
		e.printf("Activated Bucardo's sync %q: its first run delivers the writes made since its triggers were re-created (rows gobucardo delivered too are applied again as their current version); gobucardo's capture stays installed, inactive, until mcp remove sync %s\n", d.Name, d.Name)
	}
	return nil
}

// drainGobucardo kicks gobucardo's sync through the running MCP and waits
// for a good run that started after the kick.
func drainGobucardo(ctx context.Context, conn *pgx.Conn, sync string, deadline time.Time, timeout time.Duration) error {
	t0, err := catalog.ClockTimestamp(ctx, conn)
	if err != nil {
		return err
	}
	if err := catalog.NotifyMCP(ctx, conn, catalog.AdminRequest{Verb: catalog.AdminKick, Syncs: []string{sync}}); err != nil {
		return err
	}
	state, status, err := waitForRun(ctx, conn, sync, t0, deadline)
	switch {
	case err != nil:
		return err
	case state == "":
		return catalog.Invalidf("gobucardo did not finish a run of sync %s within --timeout %s (mcp status %s): gobucardo still replicates and Bucardo's triggers are back; retry --rollback with a longer --timeout", sync, timeout, sync)
	case state == catalog.RunBad:
		return catalog.Invalidf("gobucardo's run of sync %s failed (%s): gobucardo still replicates and Bucardo's triggers are back; fix it and retry --rollback", sync, status)
	}
	return nil
}

// deactivateGivenBack deactivates gobucardo's sync as mcp deactivate does
// and waits for its run in progress, if any, to end.
func deactivateGivenBack(e *env, conn *pgx.Conn, name string, deadline time.Time, timeout time.Duration) error {
	err := e.changeCatalog(func(ctx context.Context, tx pgx.Tx) error {
		s, err := catalog.GetSync(ctx, tx, name)
		if err != nil {
			return err
		}
		s.Status = catalog.StatusInactive
		return catalog.UpdateSync(ctx, tx, s)
	})
	if err != nil {
		return err
	}
	wctx, cancel := context.WithDeadline(e.ctx(), deadline)
	defer cancel()
	if err := catalog.WaitForRuns(wctx, conn, name); err != nil {
		if wctx.Err() != nil {
			return catalog.Invalidf("gobucardo's sync %s is inactive but its run in progress did not end within --timeout %s: retry --rollback (it resumes with mcp activate %s first)", name, timeout, name)
		}
		return err
	}
	e.printf("Deactivated sync %q in gobucardo\n", name)
	return nil
}
