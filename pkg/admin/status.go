package admin

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/urfave/cli/v2"

	"github.com/gobucardo/gobucardo/pkg/capture"
	"github.com/gobucardo/gobucardo/pkg/catalog"
	"github.com/gobucardo/gobucardo/pkg/pg"
)

// runInfo is one recorded run, for status.
type runInfo = catalog.RunSummary

// syncStatus is what mcp status shows of a sync: its state and runs, and
// how far behind it is (catalog.SyncLag, whose fields it shows at the top
// level: lag_seconds, in_step, pending, rate, backlog, targets, ...).
type syncStatus struct {
	Name        string   `json:"name"`
	State       string   `json:"state"`
	Status      string   `json:"status"` // active or inactive
	Paused      bool     `json:"paused"`
	PauseReason string   `json:"pause_reason,omitempty"`
	LastGood    *runInfo `json:"last_good,omitempty"`
	LastBad     *runInfo `json:"last_bad,omitempty"`
	Current     *runInfo `json:"current,omitempty"`
	Parked      int64    `json:"parked"` // rows an exception handler set aside
	catalog.SyncLag
	// Partitions says, for each partition attached or detached on a source
	// since the table was last copied whole, what to run (see
	// capture.PartitionNote); in the detail view.
	Partitions map[string][]string `json:"partition_notes,omitempty"`
	Processes  []catalog.Process   `json:"processes,omitempty"`
	Detail     *catalog.SyncDetail `json:"-"`
}

// describeTarget is where target t stands, in words, for the detail view.
func describeTarget(t catalog.TargetLag) string {
	more := ""
	if t.Capped {
		more = "over "
	}
	lag := short(seconds(t.LagSeconds))
	switch {
	case t.State == catalog.TargetInStep && t.Pending == 0:
		return "in step"
	case t.State == catalog.TargetInStep:
		return fmt.Sprintf("in step with the sync; %s%s not applied yet, the oldest %s old", more, plural(int(t.Pending), "change"), lag)
	case t.State == catalog.TargetInactive && t.Since == nil:
		return t.Reason
	}
	s := fmt.Sprintf("%s since %s (%s ago), %s%s to catch up, the oldest %s old", t.State, t.Since.Local().Format("2006-01-02 15:04:05"),
		short(time.Since(*t.Since)), more, plural(int(t.Pending), "change"), lag)
	if t.Reason != "" {
		s += "; " + t.Reason
	}
	return s
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "state of every sync (or the detail of the named ones)",
		ArgsUsage: "[SYNC|PATTERN|all...]",
		Description: "Without arguments: one line per sync with its state; its lag (the age of the oldest change\n" +
			"not applied to every db yet, \"in step\" when there is none); the changes pending on its sources\n" +
			"(counted up to 100000 per source, \">N\" beyond); the rows per second of its last 5 runs that\n" +
			"applied rows; its last good run (how long ago, how long it took, rows inserted/deleted and\n" +
			"conflicts) and its last failed run. With sync names: everything about each, including its\n" +
			"current run, its processes, per source db and table the changes it has not consumed yet and\n" +
			"since when, and per target how far behind it is. A PATTERN ('web%', % or * for any characters)\n" +
			"or all names every sync it matches. --sort orders the syncs. --json gives the same (lag in seconds).",
		Flags: []cli.Flag{&cli.StringFlag{Name: "sort", Value: "name",
			Usage: "order the syncs by `COLUMN`: " + statusSortKeys() + " (-COLUMN reverses)"}},
		Action: func(c *cli.Context) error { return status(newEnv(c)) },
	}
}

func status(e *env) error {
	ctx := e.ctx()
	order, err := statusOrder(e.c.String("sort"))
	if err != nil {
		return err
	}
	conn, err := e.connectCatalog()
	if err != nil {
		return err
	}
	defer closeConn(ctx, conn)
	var names []string
	if e.c.NArg() > 0 {
		if names, err = syncArgs(ctx, conn, e.c.Args().Slice()); err != nil {
			return err
		}
	}
	sts, running, err := loadStatus(ctx, conn, names)
	if err != nil {
		return err
	}
	slices.SortStableFunc(sts, order)
	if e.json() {
		return e.printJSON(map[string]any{"mcp_running": running, "syncs": sts})
	}
	if !running {
		e.printf("No MCP is running on this catalog (mcp start): nothing runs by itself.\n")
	}
	if len(names) == 0 {
		var rows [][]string
		for _, s := range sts {
			rows = append(rows, []string{s.Name, s.State, lagColumn(s.SyncLag), pendingColumn(s.SyncLag), rateColumn(s.Rate),
				ago(s.LastGood), took(s.LastGood), counts(s.LastGood), ago(s.LastBad), took(s.LastBad)})
		}
		if len(rows) == 0 {
			e.printf("No syncs: mcp add sync NAME ... adds one.\n")
			return nil
		}
		e.table([]string{"Name", "State", "Lag", "Pending", "Rows/s", "Last good", "Time", "Last I/D/C", "Last bad", "Time"}, rows)
		return nil
	}
	for i, s := range sts {
		if i > 0 {
			e.printf("\n")
		}
		e.statusDetail(s)
	}
	return nil
}

func (e *env) statusDetail(s syncStatus) {
	d := s.Detail
	line := func(k, v string) { e.printf("%-14s %s\n", k+":", v) }
	line("Sync", s.Name)
	line("State", s.State)
	if s.Paused {
		line("Paused", s.PauseReason)
	}
	var members []string
	for _, m := range d.Members {
		members = append(members, m.DB+":"+m.Role)
	}
	line("Dbgroup", d.DBGroup+" ("+strings.Join(members, " ")+")")
	line("Relgroup", fmt.Sprintf("%s (%d relations)", d.RelGroup, len(d.Relations)))
	opts := fmt.Sprintf("status=%s autokick=%t conflict_strategy=%q onetimecopy=%d stayalive=%t kidsalive=%t",
		d.Status, d.Autokick, d.ConflictStrategy, d.OneTimeCopy, d.Stayalive, d.Kidsalive)
	if d.Checktime > 0 {
		opts += " checktime=" + d.Checktime.String()
	}
	if d.Overdue > 0 {
		opts += " overdue=" + d.Overdue.String()
	}
	if d.Expired > 0 {
		opts += " expired=" + d.Expired.String()
	}
	if !d.StrictChecking {
		opts += " strict_checking=false"
	}
	line("Options", opts)
	run := func(k string, r *runInfo) {
		if r == nil {
			line(k, "none")
			return
		}
		end := "running for " + time.Since(r.Started).Round(time.Millisecond).String()
		if r.Ended != nil {
			end = fmt.Sprintf("%s (%s ago), took %s", r.Ended.Local().Format("2006-01-02 15:04:05"),
				time.Since(*r.Ended).Round(time.Second), r.Duration.Round(time.Millisecond))
		}
		line(k, end+": "+r.Status)
	}
	var codes []string
	for _, c := range d.CustomCode {
		at := "sync"
		if c.Table != "" {
			at = c.Scope()
		}
		codes = append(codes, fmt.Sprintf("%s (%s, %s)", c.Name, c.WhenRun, at))
	}
	if len(codes) > 0 {
		line("Customcode", strings.Join(codes, ", "))
	}
	run("Last good", s.LastGood)
	run("Last bad", s.LastBad)
	if s.Parked > 0 {
		line("Parked", fmt.Sprintf("%d rows: mcp parked %s lists them, mcp parked retry %s re-applies them", s.Parked, s.Name, s.Name))
	}
	if s.Current != nil {
		run("Current run", s.Current)
	}
	if s.Delta {
		line("Lag", describeLag(s.SyncLag))
	}
	line("Run rate", describeRate(s.Rate))
	for _, b := range s.Sources {
		line("Pending on "+b.DB, describeSource(b))
		for _, t := range b.Tables {
			line("  "+pg.Display(t.Schema, t.Table), describeTable(t))
		}
		for _, n := range s.Partitions[b.DB] {
			line("Partitions", n)
		}
	}
	for _, t := range s.Targets {
		line(strings.ToUpper(t.Role[:1])+t.Role[1:]+" "+t.DB, describeTarget(t))
	}
	for _, p := range s.Processes {
		detail := p.State
		if p.Detail != "" {
			detail += ": " + p.Detail
		}
		line(strings.ToUpper(p.Role[:1])+p.Role[1:], fmt.Sprintf("pid %d on %s, %s for %s", p.PID, p.Host, detail,
			time.Since(p.StateSince).Round(time.Second)))
	}
}

// describeSource is the backlog on one source in words, for the detail
// view.
func describeSource(b catalog.SourceLag) string {
	if b.Error != "" {
		return "unknown: " + b.Error
	}
	when := func(t time.Time) string {
		return fmt.Sprintf("%s (%s ago)", t.Local().Format("2006-01-02 15:04:05"), short(b.ReadAt.Sub(t)))
	}
	consumed := "never consumed"
	if b.Consumed != nil {
		consumed = "last consumed " + when(*b.Consumed)
	}
	switch {
	case b.Pending == 0:
		return "none; " + consumed
	case b.Capped:
		return fmt.Sprintf("over %d changes, the oldest from %s; %s", b.Pending, when(*b.Oldest), consumed)
	}
	return fmt.Sprintf("%s, the oldest from %s; %s", plural(int(b.Pending), "change"), when(*b.Oldest), consumed)
}

// describeTable is the backlog of one table on a source, for the detail
// view.
func describeTable(t catalog.TableLag) string {
	more := ""
	if t.Capped {
		more = "over "
	}
	return fmt.Sprintf("%s%s, the oldest %s old", more, plural(int(t.Pending), "change"), short(seconds(t.LagSeconds)))
}

// describeLag is the sync's lag in words, for the detail view.
func describeLag(l catalog.SyncLag) string {
	var s string
	switch {
	case l.InStep:
		return "0 (in step: every change is applied everywhere)"
	case l.Unknown && l.LagSeconds == 0:
		return "unknown: a source cannot be read"
	case l.LagSeconds == 0 && l.Pending == 0:
		s = "0"
	default:
		s = short(seconds(l.LagSeconds)) + ": the oldest change not applied everywhere yet is that old"
	}
	if l.Unknown {
		s += " (on the sources that could be read)"
	}
	return s
}

// describeRate is the rate of the last runs in words, for the detail view.
func describeRate(r catalog.RunRate) string {
	if r.Runs == 0 {
		return "no run has applied rows yet"
	}
	return fmt.Sprintf("%s rows/s over the last %s that applied rows (%s in %s)", rowsPerSecond(r.RowsPerSecond),
		plural(r.Runs, "run"), plural(int(r.Rows), "row"), short(r.Busy))
}

// lagColumn is the summary's Lag column: "in step", a duration, "-" for a
// sync without a backlog (fullcopy), "?" when unknown.
func lagColumn(l catalog.SyncLag) string {
	switch {
	case !l.Delta:
		return "-"
	case l.InStep:
		return "in step"
	case l.Unknown && l.LagSeconds == 0:
		return "?"
	case l.Unknown:
		return ">" + short(seconds(l.LagSeconds))
	}
	return short(seconds(l.LagSeconds))
}

// pendingColumn is the summary's Pending column.
func pendingColumn(l catalog.SyncLag) string {
	switch {
	case !l.Delta:
		return "-"
	case l.Capped || (l.Unknown && l.Pending > 0):
		return fmt.Sprintf(">%d", l.Pending)
	case l.Unknown:
		return "?"
	}
	return fmt.Sprint(l.Pending)
}

// rateColumn is the summary's Rows/s column.
func rateColumn(r catalog.RunRate) string {
	if r.Runs == 0 {
		return "-"
	}
	return rowsPerSecond(r.RowsPerSecond)
}

// rowsPerSecond formats a rate: 0.4, 12, 3456, 12.3k, 1.2M.
func rowsPerSecond(v float64) string {
	switch {
	case v < 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case v < 10000:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v < 1e6:
		return strconv.FormatFloat(v/1e3, 'f', 1, 64) + "k"
	}
	return strconv.FormatFloat(v/1e6, 'f', 1, 64) + "M"
}

func ago(r *runInfo) string {
	if r == nil || r.Ended == nil {
		return "none"
	}
	return short(time.Since(*r.Ended)) + " ago"
}

func took(r *runInfo) string {
	if r == nil {
		return ""
	}
	return short(r.Duration)
}

func counts(r *runInfo) string {
	if r == nil {
		return ""
	}
	return fmt.Sprintf("%d/%d/%d", r.Inserts, r.Deletes, r.Conflicts)
}

// short formats a duration for a table column: 850ms, 12s, 3m12s, 2h5m, 3d4h.
func short(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < 10*time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	case d < 48*time.Hour:
		return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
	}
	days := int(d / (24 * time.Hour))
	return fmt.Sprintf("%dd%dh", days, int((d-time.Duration(days)*24*time.Hour)/time.Hour))
}

// loadStatus reads the state of the named syncs (all when none), how far
// behind each is, and whether an MCP is running.
func loadStatus(ctx context.Context, conn *pgx.Conn, names []string) ([]syncStatus, bool, error) {
	syncs, err := catalog.ListSyncs(ctx, conn)
	if err != nil {
		return nil, false, err
	}
	procs, err := catalog.ListProcesses(ctx, conn)
	if err != nil {
		return nil, false, err
	}
	running, err := catalog.MCPRunning(ctx, conn)
	if err != nil {
		return nil, false, err
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	var lags capture.LagReader
	defer lags.Close(ctx)
	var out []syncStatus
	for _, s := range syncs {
		if len(names) > 0 && !want[s.Name] {
			continue
		}
		st := syncStatus{Name: s.Name, Status: s.Status}
		if st.Paused, st.PauseReason, err = catalog.Paused(ctx, conn, s.Name); err != nil {
			return nil, false, err
		}
		if st.LastGood, err = catalog.LastRun(ctx, conn, s.Name, catalog.LastGoodRun); err != nil {
			return nil, false, err
		}
		if st.LastBad, err = catalog.LastRun(ctx, conn, s.Name, catalog.LastBadRun); err != nil {
			return nil, false, err
		}
		if st.Parked, err = catalog.CountParked(ctx, conn, s.Name); err != nil {
			return nil, false, fmt.Errorf("count parked rows of sync %s: %w", s.Name, err)
		}
		if running {
			if st.Current, err = catalog.LastRun(ctx, conn, s.Name, catalog.CurrentRun); err != nil {
				return nil, false, err
			}
			for _, p := range procs {
				if p.Sync == s.Name {
					st.Processes = append(st.Processes, p)
				}
			}
		}
		d, err := catalog.LoadSync(ctx, conn, s.Name)
		if err != nil {
			return nil, false, err
		}
		st.Detail = &d
		if st.SyncLag, err = lags.Read(ctx, conn, d); err != nil {
			return nil, false, err
		}
		if len(names) > 0 && d.HasDeltaRole() {
			st.Partitions = partitionNotes(ctx, &lags, d)
		}
		st.State = stateOf(st, running)
		out = append(out, st)
	}
	return out, running, nil
}

// partitionNotes reads, on each source of d that lags could reach, the
// partitions attached or detached there.
func partitionNotes(ctx context.Context, lags *capture.LagReader, d catalog.SyncDetail) map[string][]string {
	out := map[string][]string{}
	for _, db := range d.Sources() {
		ctx, cancel := context.WithTimeout(ctx, capture.DefaultLagTimeout)
		conn, err := lags.Conn(ctx, db)
		if err != nil { // the backlog on db says why
			cancel()
			continue
		}
		notes, err := capture.PartitionNotes(ctx, conn, capture.SyncFrom(d))
		cancel()
		if err != nil {
			out[db.Name] = append(out[db.Name], fmt.Sprintf("unknown: db %s: %v", db.Name, pg.RedactError(err, db.Password)))
			continue
		}
		for _, n := range notes {
			out[db.Name] = append(out[db.Name], n.Problem(db.Name, d.Name))
		}
	}
	return out
}

// stateOf is the one word of the summary's State column.
func stateOf(s syncStatus, mcpRunning bool) string {
	switch {
	case s.Status != catalog.StatusActive:
		return "inactive"
	case s.Paused:
		return "paused"
	case s.Current != nil:
		return "running"
	}
	word := "unknown"
	switch {
	case s.LastBad != nil && (s.LastGood == nil || s.LastBad.Ended.After(*s.LastGood.Ended)):
		word = "bad"
	case s.LastGood != nil:
		word = "good"
	}
	if mcpRunning {
		for _, p := range s.Processes {
			if p.Role == catalog.ProcessRoleController && p.State != catalog.ProcessIdle && p.State != catalog.ProcessRunning {
				return word + " (" + p.State + ")"
			}
		}
	}
	return word
}

func psCommand() *cli.Command {
	return &cli.Command{
		Name:  "ps",
		Usage: "every process of the running daemon: MCP, controllers, kids, plugins",
		Description: "PID PPID ROLE SYNC STATE SINCE CPU RSS DETAIL, as the MCP last published them (every second)\n" +
			"in gobucardo.process, so it works from any host that reaches the main database.",
		Action: func(c *cli.Context) error {
			e := newEnv(c)
			ctx := e.ctx()
			conn, err := e.connectCatalog()
			if err != nil {
				return err
			}
			defer closeConn(ctx, conn)
			running, err := catalog.MCPRunning(ctx, conn)
			if err != nil {
				return err
			}
			var procs []catalog.Process
			if running {
				if procs, err = catalog.ListProcesses(ctx, conn); err != nil {
					return err
				}
			}
			if e.json() {
				if procs == nil {
					procs = []catalog.Process{}
				}
				return e.printJSON(map[string]any{"mcp_running": running, "processes": procs})
			}
			if !running {
				e.printf("No MCP is running on this catalog\n")
				return nil
			}
			var rows [][]string
			for _, p := range procs {
				rows = append(rows, []string{fmt.Sprint(p.PID), fmt.Sprint(p.PPID), p.Role, dash(p.Sync), p.State,
					short(time.Since(p.StateSince)), short(p.CPU), megabytes(p.RSS), p.Detail})
			}
			e.table([]string{"PID", "PPID", "ROLE", "SYNC", "STATE", "SINCE", "CPU", "RSS", "DETAIL"}, rows)
			return nil
		},
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func megabytes(b int64) string { return fmt.Sprintf("%.1fM", float64(b)/(1<<20)) }
