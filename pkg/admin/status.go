package admin

import (
	"context"
	"fmt"
	"slices"
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

// syncStatus is what mcp status shows of a sync.
type syncStatus struct {
	Name        string              `json:"name"`
	State       string              `json:"state"`
	Status      string              `json:"status"` // active or inactive
	Paused      bool                `json:"paused"`
	PauseReason string              `json:"pause_reason,omitempty"`
	LastGood    *runInfo            `json:"last_good,omitempty"`
	LastBad     *runInfo            `json:"last_bad,omitempty"`
	Current     *runInfo            `json:"current,omitempty"`
	Parked      int64               `json:"parked"`            // rows an exception handler set aside
	Backlog     []sourceBacklog     `json:"backlog,omitempty"` // per source, in the detail view
	Targets     []targetState       `json:"targets,omitempty"` // per target, in the detail view
	Processes   []catalog.Process   `json:"processes,omitempty"`
	Sync        *catalog.SyncDetail `json:"-"`
}

// backlogLimit caps the count of a sync's pending deltas on one source, so
// that status stays cheap over a large backlog: the count is exact up to it
// (an index range on txid from the watermark), "over" it beyond.
const backlogLimit = 100000

// sourceBacklog is what a sync has not consumed yet on one of its sources.
type sourceBacklog struct {
	DB       string     `json:"db"`
	Pending  int64      `json:"pending"`                  // delta rows not consumed yet, counted up to backlogLimit
	Capped   bool       `json:"pending_capped"`           // there are more than pending
	Oldest   *time.Time `json:"oldest_pending,omitempty"` // changed_at of the oldest of them
	Consumed *time.Time `json:"consumed,omitempty"`       // when the sync's watermark last advanced there
	Error    string     `json:"error,omitempty"`          // why the backlog is unknown
	// Partitions says, for each partition attached or detached there since
	// the table was last copied whole, what to run (see capture.PartitionNote).
	Partitions []string `json:"partition_notes,omitempty"`
	behind     []capture.TargetBehind
}

// targetState is where a target of the sync stands.
type targetState struct {
	DB      string     `json:"db"`
	Role    string     `json:"role"`
	State   string     `json:"state"`            // in step, behind, inactive
	Since   *time.Time `json:"since,omitempty"`  // behind since
	Reason  string     `json:"reason,omitempty"` // why it was left out last
	Pending int64      `json:"pending"`          // changes to catch up, summed over the sources (each capped)
	Capped  bool       `json:"pending_capped"`
}

// targetStates says where each target of d stands, from what the sources
// said of the targets that are behind.
func targetStates(d catalog.SyncDetail, backlog []sourceBacklog) []targetState {
	var out []targetState
	for _, m := range d.Members {
		if m.Role == catalog.RoleSource {
			continue
		}
		ts := targetState{DB: m.DB, Role: m.Role, State: "in step"}
		for _, b := range backlog {
			for _, tb := range b.behind {
				if tb.Target != m.DB {
					continue
				}
				ts.State = "behind"
				if ts.Since == nil || tb.Since.Before(*ts.Since) {
					since := tb.Since
					ts.Since = &since
				}
				ts.Reason = tb.Reason
				ts.Pending += tb.Pending
				ts.Capped = ts.Capped || tb.Capped
			}
		}
		if d.DBs[m.DB].Status == catalog.StatusInactive {
			ts.State, ts.Reason = "inactive", "status=inactive: runs leave it out; mcp update db "+m.DB+" status=active brings it back"
		}
		out = append(out, ts)
	}
	return out
}

// describe is the target's state in words, for the detail view.
func (t targetState) describe() string {
	switch t.State {
	case "in step":
		return "in step"
	case "inactive":
		if t.Since == nil {
			return t.Reason
		}
	}
	more := ""
	if t.Capped {
		more = "over "
	}
	s := fmt.Sprintf("%s since %s (%s ago), %s%s to catch up", t.State, t.Since.Local().Format("2006-01-02 15:04:05"),
		short(time.Since(*t.Since)), more, plural(int(t.Pending), "change"))
	if t.Reason != "" {
		s += "; " + t.Reason
	}
	return s
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "state of every sync (or the detail of the named ones)",
		ArgsUsage: "[SYNC|PATTERN|all...]",
		Description: "Without arguments: one line per sync with its state, its last good run (how long ago, how\n" +
			"long it took, rows inserted/deleted and conflicts) and its last failed run. With sync names:\n" +
			"everything about each, including its current run, its processes, and per source db how many\n" +
			"changes it has not consumed yet (counted up to 100000) and since when. A PATTERN ('web%',\n" +
			"% or * for any characters) or all names every sync it matches. --sort orders the syncs.",
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
			rows = append(rows, []string{s.Name, s.State, ago(s.LastGood), took(s.LastGood), counts(s.LastGood), ago(s.LastBad), took(s.LastBad)})
		}
		if len(rows) == 0 {
			e.printf("No syncs: mcp add sync NAME ... adds one.\n")
			return nil
		}
		e.table([]string{"Name", "State", "Last good", "Time", "Last I/D/C", "Last bad", "Time"}, rows)
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
	d := s.Sync
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
	for _, b := range s.Backlog {
		line("Pending on "+b.DB, b.describe())
		for _, n := range b.Partitions {
			line("Partitions", n)
		}
	}
	for _, t := range s.Targets {
		line(strings.ToUpper(t.Role[:1])+t.Role[1:]+" "+t.DB, t.describe())
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

// describe is the backlog in words, for the detail view.
func (b sourceBacklog) describe() string {
	if b.Error != "" {
		return "unknown: " + b.Error
	}
	when := func(t time.Time) string {
		return fmt.Sprintf("%s (%s ago)", t.Local().Format("2006-01-02 15:04:05"), short(time.Since(t)))
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

// loadStatus reads the state of the named syncs (all when none) and whether
// an MCP is running.
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
		if len(names) > 0 {
			d, err := catalog.LoadSync(ctx, conn, s.Name)
			if err != nil {
				return nil, false, err
			}
			st.Sync = &d
			if d.HasDeltaRole() {
				for _, src := range d.Sources() {
					st.Backlog = append(st.Backlog, backlogOn(ctx, src, capture.SyncFrom(d)))
				}
				st.Targets = targetStates(d, st.Backlog)
			}
		}
		st.State = stateOf(st, running)
		out = append(out, st)
	}
	return out, running, nil
}

// backlogOn reads what sync has not consumed yet on the source db, and the
// partitions attached or detached there; a db that cannot be reached
// within a few seconds is reported, not waited for.
func backlogOn(ctx context.Context, db catalog.DB, cs capture.Sync) sourceBacklog {
	sync := cs.Name
	b := sourceBacklog{DB: db.Name}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := connectDB(ctx, db)
	if err != nil {
		b.Error = message(err)
		return b
	}
	defer closeConn(ctx, conn)
	got, err := capture.BacklogOf(ctx, conn, sync, backlogLimit)
	switch {
	case err != nil:
		b.Error = fmt.Sprintf("db %s: %v", db.Name, pg.RedactError(err, db.Password))
	case !got.HasWatermark:
		b.Error = fmt.Sprintf("sync %s has no capture on db %s: mcp validate %s installs it", sync, db.Name, sync)
	default:
		b.Pending, b.Capped, b.Consumed = got.Pending, got.Capped, &got.Consumed
		if !got.Oldest.IsZero() {
			b.Oldest = &got.Oldest
		}
		notes, err := capture.PartitionNotes(ctx, conn, cs)
		if err == nil {
			b.behind, err = capture.TargetsBehind(ctx, conn, sync, backlogLimit)
		}
		if err != nil {
			b.Error = fmt.Sprintf("db %s: %v", db.Name, pg.RedactError(err, db.Password))
		}
		for _, n := range notes {
			b.Partitions = append(b.Partitions, n.Problem(db.Name, sync))
		}
	}
	return b
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
