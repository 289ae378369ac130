package admin

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gobucardo/gobucardo/pkg/bucardoimport"
	"github.com/gobucardo/gobucardo/pkg/catalog"
	"github.com/gobucardo/gobucardo/pkg/pg"
)

// takeoverBucardo carries out the first steps of the cut-over from a
// running Bucardo for imported syncs: (1) gobucardo's capture is installed
// on their sources, so every commit from then on is recorded (the syncs
// stay inactive); (2) mcp waits until every transaction open at that
// moment has ended, since its earlier writes are only in Bucardo's deltas;
// (3) each Bucardo sync is kicked and a run that started after the kick is
// waited for, so Bucardo has delivered everything it captured that
// gobucardo's capture may lack. Stopping Bucardo's syncs and activating
// gobucardo's is left to the operator (printed at the end).
func takeoverBucardo(e *env, from string) error {
	ctx := e.ctx()
	args := e.c.Args().Slice()
	if len(args) == 0 {
		return usagef("name the syncs to take over: mcp import bucardo --from DSN --takeover SYNC...|all")
	}
	timeout := e.c.Duration("timeout")
	if timeout <= 0 {
		return usagef("--timeout must be positive, e.g. --timeout 5m")
	}
	conn, err := e.connectCatalog()
	if err != nil {
		return err
	}
	defer closeConn(ctx, conn)
	names, err := syncNames(ctx, conn, args)
	if err != nil {
		return err
	}
	bc, where, err := readBucardo(ctx, from)
	if err != nil {
		return err
	}
	details, err := takeoverSyncs(ctx, conn, bc, where, names)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	// 1. gobucardo's capture, on every source.
	// Creating its triggers waits for every transaction that wrote to a
	// table before; --timeout bounds that wait.
	for _, d := range details {
		ictx, cancel := context.WithDeadline(ctx, deadline)
		err := installCapture(ictx, e, d, false)
		expired := ictx.Err() != nil && ctx.Err() == nil
		cancel()
		switch {
		case expired:
			return catalog.Invalidf("gobucardo's capture of sync %s could not be installed within --timeout %s: a transaction holding a lock on one of its tables did not end (pg_locks); end it, or retry with a longer --timeout; Bucardo still replicates",
				d.Name, timeout)
		case err != nil:
			return fmt.Errorf("%w; Bucardo still replicates: retry once it is fixed", err)
		}
	}
	// 2. The transactions open when it was installed end.
	seen := map[string]bool{}
	for _, d := range details {
		for _, src := range d.Sources() {
			if seen[src.Name] {
				continue
			}
			seen[src.Name] = true
			if err := waitOpenTransactions(ctx, src, deadline, timeout); err != nil {
				return err
			}
		}
	}
	// 3. Bucardo delivers what it captured.
	bconn, err := pg.Connect(ctx, from)
	if err != nil {
		return catalog.Invalidf("cannot connect to Bucardo's main database, %s: %v: check --from", where, pg.RedactError(err, ""))
	}
	defer closeConn(ctx, bconn)
	for _, d := range details {
		if err := drainBucardoSync(ctx, bconn, d.Name, deadline, timeout); err != nil {
			return err
		}
		e.printf("Drained Bucardo's sync %q: every change it captured before gobucardo's capture of sync %q was installed is delivered\n", d.Name, d.Name)
	}
	e.printf("Next (the rest of the takeover is not built yet): stop Bucardo's syncs (bucardo deactivate SYNC, or bucardo stop), then mcp activate %s and mcp start; until then Bucardo replicates and gobucardo records every change\n",
		strings.Join(names, " "))
	return nil
}

// takeoverSyncs loads the named gobucardo syncs and checks that each is
// inactive in gobucardo and active in Bucardo.
func takeoverSyncs(ctx context.Context, q catalog.Querier, bc bucardoimport.Catalog, where string, names []string) ([]catalog.SyncDetail, error) {
	bySync := map[string]bucardoimport.Sync{}
	for _, s := range bc.Syncs {
		bySync[s.Name] = s
	}
	var out []catalog.SyncDetail
	for _, n := range names {
		d, err := catalog.LoadSync(ctx, q, n)
		if err != nil {
			return nil, err
		}
		b, ok := bySync[n]
		switch {
		case d.Status != catalog.StatusInactive:
			return nil, catalog.Invalidf("sync %s is active in gobucardo already: the takeover starts from an imported, inactive sync (mcp deactivate %s first if Bucardo still replicates it)", n, n)
		case !ok:
			return nil, catalog.Invalidf("sync %s is not in Bucardo's catalog at %s: name a sync that Bucardo replicates and mcp import bucardo imported", n, where)
		case b.Status != "active":
			return nil, catalog.Invalidf("Bucardo's sync %s is %s, so it cannot be drained: activate it in Bucardo (bucardo activate %s) or cut over by hand (README, Coming from Bucardo)", n, b.Status, n)
		}
		out = append(out, d)
	}
	return out, nil
}

// waitOpenTransactions waits until every transaction in progress on db now
// has ended.
func waitOpenTransactions(ctx context.Context, d catalog.DB, deadline time.Time, timeout time.Duration) error {
	conn, err := connectDB(ctx, d)
	if err != nil {
		return err
	}
	defer closeConn(ctx, conn)
	var snap string
	if err := conn.QueryRow(ctx, "SELECT pg_current_snapshot()::text").Scan(&snap); err != nil {
		return fmt.Errorf("snapshot of db %s: %w", d.Name, err)
	}
	for {
		var open int
		err := conn.QueryRow(ctx, `SELECT count(*)::int FROM pg_snapshot_xip($1::pg_snapshot) x
			WHERE pg_xact_status(x) = 'in progress'`, snap).Scan(&open)
		if err != nil {
			return fmt.Errorf("open transactions of db %s: %w", d.Name, err)
		}
		if open == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return catalog.Invalidf("%s open on db %s since before gobucardo's capture was installed did not end within --timeout %s: end them (pg_stat_activity), or retry with a longer --timeout; Bucardo still replicates, and gobucardo's capture stays installed (harmless: its syncs are inactive)",
				plural(open, "transaction"), d.Name, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// drainBucardoSync kicks Bucardo's sync and waits for a run that started
// after the kick. Bucardo answers a kick with bucardo_syncdone_SYNC when a
// run ends, but the first may be of a run already going at the kick; the
// kick also makes Bucardo run again after it, so the second done is of a
// run that started after the first kick.
func drainBucardoSync(ctx context.Context, conn *pgx.Conn, sync string, deadline time.Time, timeout time.Duration) error {
	done, failed := "bucardo_syncdone_"+sync, "bucardo_syncerror_"+sync
	for _, ch := range []string{done, failed} {
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
			return fmt.Errorf("listen for Bucardo's sync %s: %w", sync, err)
		}
	}
	defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), "UNLISTEN *") }()
	for range 2 {
		if _, err := conn.Exec(ctx, "NOTIFY "+pgx.Identifier{"bucardo_kick_sync_" + sync}.Sanitize()); err != nil {
			return fmt.Errorf("kick Bucardo's sync %s: %w", sync, err)
		}
		wctx, cancel := context.WithDeadline(ctx, deadline)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case errors.Is(err, context.DeadlineExceeded) || (err != nil && wctx.Err() != nil && ctx.Err() == nil):
			return catalog.Invalidf("Bucardo did not finish a run of sync %s within --timeout %s: is Bucardo running (bucardo status %s)? Bucardo still replicates and gobucardo's capture stays installed: retry with a longer --timeout",
				sync, timeout, sync)
		case err != nil:
			return fmt.Errorf("wait for Bucardo's sync %s: %w", sync, err)
		case n.Channel == failed:
			return catalog.Invalidf("Bucardo refused to run sync %s (inactive, paused or unknown to its daemon: see Bucardo's log); Bucardo's state is unchanged and gobucardo's capture stays installed: fix it in Bucardo and retry", sync)
		}
	}
	return nil
}
