package admin

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gobucardo/gobucardo/pkg/bucardoimport"
	"github.com/gobucardo/gobucardo/pkg/capture"
	"github.com/gobucardo/gobucardo/pkg/catalog"
	"github.com/gobucardo/gobucardo/pkg/pg"
)

// cutOver is what --takeover and --rollback both start from: the catalog,
// the syncs named, Bucardo's catalog and --timeout.
type cutOver struct {
	conn    *pgx.Conn
	names   []string
	bc      bucardoimport.Catalog
	where   string
	timeout time.Duration
}

// startCutOver checks the arguments (noSyncs is the usage error without
// any), connects to the catalog and reads Bucardo's; the caller closes conn.
func startCutOver(e *env, from, noSyncs string) (cutOver, error) {
	ctx := e.ctx()
	args := e.c.Args().Slice()
	if len(args) == 0 {
		return cutOver{}, usagef("%s", noSyncs)
	}
	c := cutOver{timeout: e.c.Duration("timeout")}
	if c.timeout <= 0 {
		return cutOver{}, usagef("--timeout must be positive, e.g. --timeout 5m")
	}
	conn, err := e.connectCatalog()
	if err != nil {
		return cutOver{}, err
	}
	c.conn = conn
	if c.names, err = syncNames(ctx, conn, args); err == nil {
		c.bc, c.where, err = readBucardo(ctx, from)
	}
	if err != nil {
		closeConn(ctx, conn)
		return cutOver{}, err
	}
	return c, nil
}

// takeoverBucardo cuts imported syncs over from a running Bucardo: (1)
// gobucardo's capture is installed on their sources, so every commit from
// then on is recorded (the syncs stay inactive); (2) mcp waits until every
// transaction open at that moment has ended, since its earlier writes are
// only in Bucardo's deltas; (3) each Bucardo sync is kicked and a run that
// started after the kick is waited for, so Bucardo has delivered everything
// it captured that gobucardo's capture may lack; (4) Bucardo's sync is
// deactivated through its MCP and its kid waited out; (5) Bucardo's
// triggers of the sync are dropped from the sources; (6) gobucardo's sync
// is activated. Every step can be repeated: a retry after a failure resumes
// where it stopped (see takeoverStartOf).
func takeoverBucardo(e *env, from string) error {
	ctx := e.ctx()
	c, err := startCutOver(e, from, "name the syncs to take over: mcp import bucardo --from DSN --takeover SYNC...|all")
	if err != nil {
		return err
	}
	defer closeConn(ctx, c.conn)
	conn, names, bc, where, timeout := c.conn, c.names, c.bc, c.where, c.timeout
	details, starts, err := takeoverSyncs(ctx, conn, bc, where, names)
	if err != nil {
		return err
	}
	var whole, stopped []catalog.SyncDetail
	for i, d := range details {
		switch starts[i] {
		case takenOver:
			e.printf("Sync %q is taken over already: gobucardo replicates it and Bucardo's is inactive\n", d.Name)
		case fromCapture:
			whole = append(whole, d)
		case fromTriggers:
			stopped = append(stopped, d)
		}
	}
	deadline := time.Now().Add(timeout)
	bconn, err := pg.Connect(ctx, from)
	if err != nil {
		return catalog.Invalidf("cannot connect to Bucardo's main database, %s: %v: check --from", where, pg.RedactError(err, ""))
	}
	defer closeConn(ctx, bconn)
	// A sync whose Bucardo sync an earlier try stopped: Bucardo must have
	// delivered everything it captured.
	for _, d := range stopped {
		if err := checkBucardoDelivered(ctx, d, bc); err != nil {
			return err
		}
	}
	if err := captureAndDrain(ctx, e, bconn, whole, deadline, timeout); err != nil {
		return err
	}
	for _, d := range whole {
		if err := stopBucardoSync(ctx, bconn, d.Name, deadline, timeout); err != nil {
			return err
		}
		e.printf("Stopped Bucardo's sync %q: deactivated by Bucardo's MCP (status inactive in its catalog), its kid gone\n", d.Name)
	}
	keep := bucardoDeltaKept(bc, names)
	for _, d := range append(whole, stopped...) {
		if err := dropBucardoTriggers(ctx, e, d, keep, deadline, timeout); err != nil {
			return err
		}
	}
	for _, d := range append(whole, stopped...) {
		if err := activateTakenOver(e, d.Name); err != nil {
			return fmt.Errorf("%w; Bucardo's sync %s is stopped: retry mcp import bucardo --takeover %s", err, d.Name, d.Name)
		}
	}
	return nil
}

// captureAndDrain installs gobucardo's capture of the syncs, waits for
// the transactions open then, and drains Bucardo's syncs.
func captureAndDrain(ctx context.Context, e *env, bconn *pgx.Conn, details []catalog.SyncDetail, deadline time.Time, timeout time.Duration) error {
	// 1. gobucardo's capture, on every source.
	// Creating its triggers waits for every transaction that wrote to a
	// table before; --timeout bounds that wait.
	// A deadlock with Bucardo's kid, which writes to the same tables in
	// another order, rolls the install back: it is tried again.
	for _, d := range details {
		ictx, cancel := context.WithDeadline(ctx, deadline)
		err := installCapture(ictx, e, d, false)
		for pg.IsRetryable(err) && ictx.Err() == nil {
			select {
			case <-ictx.Done():
			case <-time.After(200 * time.Millisecond):
				err = installCapture(ictx, e, d, false)
			}
		}
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
	if err := waitSourcesQuiet(ctx, details, deadline, timeout); err != nil {
		return err
	}
	// 3. Bucardo delivers what it captured.
	for _, d := range details {
		if err := drainBucardoSync(ctx, bconn, d.Name, deadline, timeout); err != nil {
			return err
		}
		e.printf("Drained Bucardo's sync %q: every change it captured before gobucardo's capture of sync %q was installed is delivered\n", d.Name, d.Name)
	}
	return nil
}

// waitSourcesQuiet waits, on every source of the syncs, until the
// transactions open now have ended.
func waitSourcesQuiet(ctx context.Context, details []catalog.SyncDetail, deadline time.Time, timeout time.Duration) error {
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
	return nil
}

// activateTakenOver activates sync as mcp activate does (the running MCP
// is told to reload) with onetimecopy off: Bucardo left its targets in
// step, so nothing is copied again.
func activateTakenOver(e *env, name string) error {
	return e.changeCatalog(func(ctx context.Context, tx pgx.Tx) error {
		s, err := catalog.GetSync(ctx, tx, name)
		if err != nil {
			return err
		}
		otc := s.OneTimeCopy
		s.Status, s.OneTimeCopy = catalog.StatusActive, 0
		if err := catalog.UpdateSync(ctx, tx, s); err != nil {
			return err
		}
		e.printf("Activated sync %q in gobucardo: its first run delivers every write since its capture was installed (rows Bucardo delivered too are applied again as their current version, never twice)", name)
		if otc != 0 {
			e.printf("; its onetimecopy=%d is cleared, the targets are in step", otc)
		}
		e.printf("\n")
		return nil
	})
}

// takeoverStart is where the takeover of one sync begins.
type takeoverStart int

const (
	// fromCapture: Bucardo replicates the sync; every step is to do.
	fromCapture takeoverStart = iota
	// fromTriggers: an earlier try stopped Bucardo's sync after installing
	// gobucardo's capture; dropping Bucardo's triggers and activating
	// gobucardo's sync are left.
	fromTriggers
	// takenOver: gobucardo replicates it, Bucardo's sync is inactive.
	takenOver
)

// takeoverStartOf decides where the takeover of sync name begins, from its
// status in gobucardo and in Bucardo (bucardo "" when Bucardo has no such
// sync) and whether gobucardo's capture of it is installed on every source.
func takeoverStartOf(name, gobucardo, bucardo string, captured bool) (takeoverStart, error) {
	active := bucardo == "active"
	switch {
	case bucardo == "":
		return 0, catalog.Invalidf("sync %s is not in Bucardo's catalog: name a sync that Bucardo replicates and mcp import bucardo imported", name)
	case gobucardo == catalog.StatusActive && !active:
		return takenOver, nil
	case gobucardo == catalog.StatusActive:
		return 0, catalog.Invalidf("sync %s is active in gobucardo and in Bucardo: deactivate one of them (mcp deactivate %s, then --takeover again; or --rollback %s)", name, name, name)
	case active:
		return fromCapture, nil
	case captured:
		return fromTriggers, nil
	default:
		return 0, catalog.Invalidf("Bucardo's sync %s is %s, so it cannot be drained: activate it in Bucardo (bucardo activate %s) or cut over by hand (README, Coming from Bucardo)", name, bucardo, name)
	}
}

// takeoverSyncs loads the named gobucardo syncs and where the takeover of
// each begins.
func takeoverSyncs(ctx context.Context, q catalog.Querier, bc bucardoimport.Catalog, where string, names []string) ([]catalog.SyncDetail, []takeoverStart, error) {
	var out []catalog.SyncDetail
	var starts []takeoverStart
	for _, n := range names {
		d, err := catalog.LoadSync(ctx, q, n)
		if err != nil {
			return nil, nil, err
		}
		captured := false
		if bucardoStatus(bc, n) != "active" && bucardoStatus(bc, n) != "" && d.Status == catalog.StatusInactive {
			if captured, err = captureInstalled(ctx, d); err != nil {
				return nil, nil, err
			}
		}
		st, err := takeoverStartOf(n, d.Status, bucardoStatus(bc, n), captured)
		if err != nil {
			return nil, nil, fmt.Errorf("%w (Bucardo at %s)", err, where)
		}
		out, starts = append(out, d), append(starts, st)
	}
	return out, starts, nil
}

// bucardoStatus is the status of Bucardo's sync name, "" if it has none.
func bucardoStatus(bc bucardoimport.Catalog, name string) string {
	for _, s := range bc.Syncs {
		if s.Name == name {
			return s.Status
		}
	}
	return ""
}

// captureInstalled reports whether gobucardo's capture of d is complete
// on every source.
func captureInstalled(ctx context.Context, d catalog.SyncDetail) (bool, error) {
	spec := capture.SyncFrom(d)
	for _, src := range d.Sources() {
		conn, err := connectDB(ctx, src)
		if err != nil {
			return false, err
		}
		problems, err := capture.Check(ctx, conn, spec)
		closeConn(ctx, conn)
		if err != nil || len(problems) > 0 {
			return false, err
		}
	}
	return true, nil
}

// checkBucardoDelivered refuses a sync whose Bucardo deltas hold changes
// not delivered to its dbgroup: stopped without a drain, they would be lost.
func checkBucardoDelivered(ctx context.Context, d catalog.SyncDetail, bc bucardoimport.Catalog) error {
	group := ""
	for _, s := range bc.Syncs {
		if s.Name == d.Name {
			group = s.DBGroup
		}
	}
	for _, src := range d.Sources() {
		conn, err := connectDB(ctx, src)
		if err != nil {
			return err
		}
		var pending []string
		err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			var ok bool
			if err := tx.QueryRow(ctx, "SELECT to_regprocedure('bucardo.bucardo_delta_check(text,text)') IS NOT NULL").Scan(&ok); err != nil || !ok {
				return err
			}
			rows, err := tx.Query(ctx, "SELECT split_part(c, ',', 2) FROM bucardo.bucardo_delta_check($1, $2) c WHERE c LIKE '1,%'", d.Name, "dbgroup "+group)
			if err != nil {
				return err
			}
			pending, err = pgx.CollectRows(rows, pgx.RowTo[string])
			return err
		})
		closeConn(ctx, conn)
		if err != nil {
			return fmt.Errorf("read the deltas of Bucardo's sync %s on db %s: %w", d.Name, src.Name, err)
		}
		if len(pending) > 0 {
			return catalog.Invalidf("Bucardo's sync %s is inactive with changes it has not delivered on db %s (%s): activate it in Bucardo (bucardo activate %s) and run --takeover again, which drains it first",
				d.Name, src.Name, strings.Join(pending, ", "), d.Name)
		}
	}
	return nil
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

// errBucardoSilent is awaitBucardo's error when the deadline passed first.
var errBucardoSilent = errors.New("no answer from Bucardo")

// awaitBucardo sends NOTIFY channel on Bucardo's main database and waits
// for one of the notices named (such as syncdone_S), which Bucardo's MCP
// sends either on channel bucardo_NAME or on channel bucardo with NAME as
// payload (Bucardo 5 uses both); it returns the notice heard.
func awaitBucardo(ctx context.Context, conn *pgx.Conn, channel string, notices []string, deadline time.Time) (string, error) {
	listen := []string{"bucardo"}
	for _, n := range notices {
		listen = append(listen, "bucardo_"+n)
	}
	for _, ch := range listen {
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
			return "", fmt.Errorf("listen on Bucardo's main database: %w", err)
		}
	}
	defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), "UNLISTEN *") }()
	if _, err := conn.Exec(ctx, "NOTIFY "+pgx.Identifier{channel}.Sanitize()); err != nil {
		return "", fmt.Errorf("notify Bucardo (%s): %w", channel, err)
	}
	for {
		wctx, cancel := context.WithDeadline(ctx, deadline)
		n, err := conn.WaitForNotification(wctx)
		expired := err != nil && wctx.Err() != nil && ctx.Err() == nil
		cancel()
		switch {
		case expired:
			return "", errBucardoSilent
		case err != nil:
			return "", fmt.Errorf("wait for Bucardo: %w", err)
		}
		if heard := bucardoNotice(n.Channel, n.Payload, notices); heard != "" {
			return heard, nil
		}
	}
}

// bucardoNotice returns which of notices a notification on channel with
// payload is, or "".
func bucardoNotice(channel, payload string, notices []string) string {
	for _, want := range notices {
		if channel == "bucardo_"+want || channel == "bucardo" && payload == want {
			return want
		}
	}
	return ""
}

// drainBucardoSync kicks Bucardo's sync and waits for a run that started
// after the kick. Bucardo answers a kick with syncdone_SYNC when a run
// ends, but the first may be of a run already going at the kick; the kick
// also makes Bucardo run again after it, so the second done is of a run
// that started after the first kick.
func drainBucardoSync(ctx context.Context, conn *pgx.Conn, sync string, deadline time.Time, timeout time.Duration) error {
	done, failed := "syncdone_"+sync, "syncerror_"+sync
	for range 2 {
		heard, err := awaitBucardo(ctx, conn, "bucardo_kick_sync_"+sync, []string{done, failed}, deadline)
		switch {
		case errors.Is(err, errBucardoSilent):
			return catalog.Invalidf("Bucardo did not finish a run of sync %s within --timeout %s: is Bucardo running (bucardo status %s)? Bucardo still replicates and gobucardo's capture stays installed: retry with a longer --timeout",
				sync, timeout, sync)
		case err != nil:
			return fmt.Errorf("drain Bucardo's sync %s: %w", sync, err)
		case heard == failed:
			return catalog.Invalidf("Bucardo refused to run sync %s (inactive, paused or unknown to its daemon: see Bucardo's log); Bucardo's state is unchanged and gobucardo's capture stays installed: fix it in Bucardo and retry", sync)
		}
	}
	return nil
}

// stopBucardoSync deactivates Bucardo's sync through its MCP (what bucardo
// deactivate SYNC asks: it stops the sync's controller and kid and marks
// it inactive in Bucardo's catalog, so a restarted Bucardo leaves it
// stopped), then waits until its status is inactive and its kid has left
// (no backend of Bucardo's main database is named "bucardo KID (SYNC)").
func stopBucardoSync(ctx context.Context, conn *pgx.Conn, sync string, deadline time.Time, timeout time.Duration) error {
	_, err := awaitBucardo(ctx, conn, "bucardo_deactivate_sync_"+sync, []string{"deactivated_sync_" + sync}, deadline)
	switch {
	case errors.Is(err, errBucardoSilent):
		return catalog.Invalidf("Bucardo did not deactivate sync %s within --timeout %s: is Bucardo running (bucardo status %s)? Bucardo still replicates (drained) and gobucardo's capture stays installed: retry --takeover",
			sync, timeout, sync)
	case err != nil:
		return fmt.Errorf("stop Bucardo's sync %s: %w", sync, err)
	}
	for {
		var status string
		var kids int
		err := conn.QueryRow(ctx, `SELECT (SELECT status FROM bucardo.sync WHERE name = $1),
			(SELECT count(*)::int FROM pg_stat_activity WHERE starts_with(application_name, 'bucardo KID (' || $1 || ') (PID '))`, sync).Scan(&status, &kids)
		if err != nil {
			return fmt.Errorf("read the state of Bucardo's sync %s: %w", sync, err)
		}
		if status == "inactive" && kids == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return catalog.Invalidf("Bucardo's sync %s is deactivated but still %s, with %s connected, after --timeout %s: see Bucardo's log, and retry --takeover once its kid is gone",
				sync, status, plural(kids, "kid backend"), timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// bucardoKickName is the name of the kick trigger (and its function)
// Bucardo's validate_sync gives sync; "" when it is a random one.
func bucardoKickName(sync string) string {
	switch {
	case len(sync) <= 48:
		return "bucardo_kick_" + sync
	case len(sync) <= 62:
		return "bkick_" + sync
	}
	return ""
}

// bucardoDeltaKept returns the tables (schema.name) whose bucardo_delta
// trigger stays: those of Bucardo's active syncs not named.
func bucardoDeltaKept(bc bucardoimport.Catalog, names []string) map[string]bool {
	goats := map[int]string{}
	for _, g := range bc.Goats {
		goats[g.ID] = g.Schema + "." + g.Name
	}
	herds := map[string][]int{}
	for _, h := range bc.Herds {
		herds[h.Name] = h.Goats
	}
	keep := map[string]bool{}
	for _, s := range bc.Syncs {
		if s.Status != "active" || slices.Contains(names, s.Name) {
			continue
		}
		for _, id := range herds[s.Herd] {
			keep[goats[id]] = true
		}
	}
	return keep
}

// bucardoTriggersSQL lists, on a replicated db, Bucardo's triggers of
// sync $1 on the tables ($2 schemas, $3 names): its kick trigger ($4), its
// truncate trigger, and bucardo_delta unless the table is in $5.
const bucardoTriggersSQL = `SELECT n.nspname, c.relname, t.tgname
FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_proc p ON p.oid = t.tgfoid
JOIN pg_namespace pn ON pn.oid = p.pronamespace
JOIN unnest($2::text[], $3::text[]) AS r(sch, rel) ON (r.sch, r.rel) = (n.nspname, c.relname)
WHERE NOT t.tgisinternal AND pn.nspname = 'bucardo'
AND ((t.tgname = $4 AND p.proname = $4)
  OR (p.proname = 'bucardo_note_truncation' AND t.tgnargs = 1 AND t.tgargs = convert_to($1, 'UTF8') || '\x00'::bytea)
  OR (t.tgname = 'bucardo_delta' AND NOT (n.nspname || '.' || c.relname) = ANY($5::text[])))
ORDER BY 1, 2, 3`

// dropBucardoTriggers drops Bucardo's triggers of sync d from the tables
// of its sources, in one transaction per db. Bucardo's schema, functions
// and delta tables stay: bucardo validate re-creates the triggers.
func dropBucardoTriggers(ctx context.Context, e *env, d catalog.SyncDetail, keep map[string]bool, deadline time.Time, timeout time.Duration) error {
	var schemas, rels []string
	for _, r := range d.Relations {
		if r.Kind == catalog.KindTable {
			schemas, rels = append(schemas, r.Schema), append(rels, r.Name)
		}
	}
	var kept []string
	for t := range keep {
		kept = append(kept, t)
	}
	for _, src := range d.Sources() {
		conn, err := connectDB(ctx, src)
		if err != nil {
			return fmt.Errorf("%w; Bucardo's sync %s is stopped and gobucardo's is not active yet: retry mcp import bucardo --takeover %s", err, d.Name, d.Name)
		}
		dctx, cancel := context.WithDeadline(ctx, deadline)
		var dropped []string
		err = pgx.BeginFunc(dctx, conn, func(tx pgx.Tx) error {
			rows, err := tx.Query(dctx, bucardoTriggersSQL, d.Name, schemas, rels, bucardoKickName(d.Name), kept)
			if err != nil {
				return err
			}
			type trig struct{ schema, table, name string }
			found, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (trig, error) {
				var t trig
				return t, r.Scan(&t.schema, &t.table, &t.name)
			})
			if err != nil {
				return err
			}
			for _, t := range found {
				if _, err := tx.Exec(dctx, "DROP TRIGGER IF EXISTS "+pgx.Identifier{t.name}.Sanitize()+" ON "+pgx.Identifier{t.schema, t.table}.Sanitize()); err != nil {
					return err
				}
				dropped = append(dropped, t.name+" on "+t.schema+"."+t.table)
			}
			return nil
		})
		expired := dctx.Err() != nil && ctx.Err() == nil
		cancel()
		closeConn(ctx, conn)
		switch {
		case expired:
			return catalog.Invalidf("Bucardo's triggers of sync %s on db %s could not be dropped within --timeout %s (a transaction holds a lock on a table: pg_locks); Bucardo's sync is stopped and gobucardo's is not active yet: retry mcp import bucardo --takeover %s",
				d.Name, src.Name, timeout, d.Name)
		case err != nil:
			return fmt.Errorf("drop Bucardo's triggers of sync %s on db %s: %w; Bucardo's sync is stopped and gobucardo's is not active yet: retry mcp import bucardo --takeover %s", d.Name, src.Name, err, d.Name)
		}
		if len(dropped) == 0 {
			e.printf("Bucardo's triggers of sync %q on db %q: none left\n", d.Name, src.Name)
			continue
		}
		e.printf("Dropped Bucardo's triggers of sync %q on db %q: %s (schema bucardo stays, for --rollback)\n", d.Name, src.Name, strings.Join(dropped, ", "))
	}
	return nil
}
