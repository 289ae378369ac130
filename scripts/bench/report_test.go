package bench

import (
	"fmt"
	"io"
	"runtime"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// bulkResult is what one size of the bulk benchmark measured.
type bulkResult struct {
	rows           int
	updatePlain    time.Duration // the UPDATE on the twin table without capture
	updateCaptured time.Duration // the UPDATE on the captured table
	sync           time.Duration // wall time of `mcp sync run`
	raw            time.Duration // the raw binary COPY of the same rows, a row per write
	rawBuffered    time.Duration // the same, 64 KiB per write
	rawDelete      time.Duration // DELETE of every row of a filled table, then the buffered COPY
	maxRSS         int64         // of the mcp process, bytes
	cpu            time.Duration // of the mcp process, user + system
}

// ratio is gobucardo's time over the raw COPY's.
func (r bulkResult) ratio() float64 { return r.over(r.raw) }

// over is gobucardo's time over a reference's.
func (r bulkResult) over(ref time.Duration) float64 { return r.sync.Seconds() / ref.Seconds() }

// triggerCost is the captured UPDATE's time over the plain one's.
func (r bulkResult) triggerCost() float64 {
	return r.updateCaptured.Seconds() / r.updatePlain.Seconds()
}

// pgbenchRun is one pgbench run.
type pgbenchRun struct {
	capture bool
	tps     float64
}

// pgbenchResult is what the pgbench benchmark measured.
type pgbenchResult struct {
	scale, clients, threads, seconds int
	runs                             []pgbenchRun // in the order run
}

// mean is the mean TPS of the runs with (or without) capture.
func (r pgbenchResult) mean(withCapture bool) float64 {
	var sum float64
	n := 0
	for _, run := range r.runs {
		if run.capture == withCapture {
			sum += run.tps
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}

// report collects the results of every benchmark for the table printed at
// the end.
type report struct {
	mu      sync.Mutex
	server  string
	bulk    []bulkResult
	two     []twoResult
	pgbench *pgbenchResult
	lag     *lagResult
	purge   *purgeResult
	part    *partResult
	outage  *outageResult
	metrics *metricsResult
	status  *statusResult
	idle    []idleResult
}

var results report

func (r *report) addBulk(server string, res bulkResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.server = server
	r.bulk = append(r.bulk, res)
}

func (r *report) addTwo(server string, res []twoResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.noteServer(server)
	r.two = append(r.two, res...)
}

// noteServer keeps server as the description of the servers unless a
// benchmark gave one already; r.mu is held.
func (r *report) noteServer(server string) {
	if r.server == "" {
		r.server = server
	}
}

func (r *report) setPgbench(res pgbenchResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pgbench = &res
}

func (r *report) setPurge(res purgeResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.purge = &res
}

func (r *report) setPart(server string, res partResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.noteServer(server)
	r.part = &res
}

func (r *report) setOutage(server string, res outageResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.noteServer(server)
	r.outage = &res
}

func (r *report) setMetrics(res metricsResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.metrics = &res
}

func (r *report) setStatus(server string, res statusResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.noteServer(server)
	r.status = &res
}

func (r *report) setLag(res lagResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lag = &res
}

// print writes the table of results to w; nothing when nothing was
// measured.
func (r *report) print(w io.Writer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.bulk) == 0 && len(r.two) == 0 && r.pgbench == nil && r.lag == nil && r.purge == nil && r.part == nil && r.outage == nil && r.metrics == nil && r.status == nil && len(r.idle) == 0 {
		return
	}
	fmt.Fprintf(w, "\ngobucardo bench (%d cores, %s/%s)\n", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH)
	if r.server != "" {
		fmt.Fprintf(w, "servers: %s; source and target on separate local clusters, main db on the source's\n", r.server)
	}
	if len(r.bulk) > 0 {
		r.printBulk(w)
	}
	if len(r.two) > 0 {
		r.printTwo(w)
	}
	if r.pgbench != nil {
		r.printPgbench(w)
	}
	if r.lag != nil {
		r.lag.print(w)
	}
	if r.purge != nil {
		r.purge.print(w)
	}
	if r.part != nil {
		r.part.print(w)
	}
	if r.outage != nil {
		r.outage.print(w)
	}
	if r.metrics != nil {
		r.metrics.print(w)
	}
	if r.status != nil {
		r.status.print(w)
	}
	if len(r.idle) > 0 {
		printIdle(w, r.idle)
	}
	if len(r.bulk) > 0 {
		big := r.bulk[len(r.bulk)-1]
		fmt.Fprintf(w, "max RSS of `mcp sync run` over the %d-row backlog: %s (CPU %.2f s)\n", big.rows, megabytes(big.maxRSS), big.cpu.Seconds())
	}
}

func (r *report) printBulk(w io.Writer) {
	sort.Slice(r.bulk, func(i, j int) bool { return r.bulk[i].rows < r.bulk[j].rows })
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "case\trows\tgobucardo\traw COPY\tratio\traw COPY 64k\tratio\traw DELETE+COPY 64k\tratio\trows/s\tmcp RSS\tmcp CPU")
	for _, res := range r.bulk {
		fmt.Fprintf(tw, "bulk UPDATE\t%d\t%s\t%s\t%.2fx\t%s\t%.2fx\t%s\t%.2fx\t%s\t%s\t%s\n", res.rows,
			seconds(res.sync), seconds(res.raw), res.ratio(), seconds(res.rawBuffered), res.over(res.rawBuffered),
			seconds(res.rawDelete), res.over(res.rawDelete),
			thousands(float64(res.rows)/res.sync.Seconds()), megabytes(res.maxRSS), seconds(res.cpu))
	}
	_ = tw.Flush()
	fmt.Fprintln(w, "  gobucardo: wall time of `mcp sync run s --quiet`, from the source's commit until the target is in step (checked);")
	fmt.Fprintln(w, "    rows/s, RSS and CPU (user + system) are its")
	fmt.Fprintln(w, "  raw COPY: binary COPY of the same rows from the source, through an io.Pipe, into an emptied table with its")
	fmt.Fprintln(w, "    primary key on the target, a row per write (as pgconn's CopyTo gives them); 64k: 64 KiB per write;")
	fmt.Fprintln(w, "    DELETE+COPY: DELETE of every row of the filled table, then the COPY, in one transaction")
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "source statement\trows\twithout capture\twith capture\ttrigger cost")
	for _, res := range r.bulk {
		fmt.Fprintf(tw, "UPDATE accounts SET abalance = abalance + 1\t%d\t%s\t%s\t%.2fx\n", res.rows,
			seconds(res.updatePlain), seconds(res.updateCaptured), res.triggerCost())
	}
	_ = tw.Flush()
	fmt.Fprintln(w, "  without capture: on a twin table in the same state that no sync captures")
	fmt.Fprintln(w)
}

func (r *report) printTwo(w io.Writer) {
	if len(r.bulk) == 0 { // printBulk ends with a blank line
		fmt.Fprintln(w)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "two sources\trows\tkeys changed (A + B)\tconflicts (A won, B won)\tconvergence\trows/s\tmcp RSS\tmcp CPU")
	for _, res := range r.two {
		fmt.Fprintf(tw, "%s\t%d\t%d (%d + %d)\t%d (%d, %d)\t%s\t%s\t%s\t%s\n", res.name, res.rows,
			res.keys, res.keysA, res.keysB, res.conflicts, res.winsA, res.winsB, seconds(res.sync),
			thousands(float64(res.keys)/res.sync.Seconds()), megabytes(res.maxRSS), seconds(res.cpu))
	}
	_ = tw.Flush()
	if base, plug := r.twoByName("overlapping"), r.twoByName("overlapping+plugin"); base != nil && plug != nil {
		fmt.Fprintf(w, "  conflicts decided by the plugin: convergence %.2fx of the built-in strategy's; %s conflicts/s\n",
			plug.sync.Seconds()/base.sync.Seconds(), thousands(float64(plug.conflicts)/plug.sync.Seconds()))
	}
	fmt.Fprintln(w, "  a sync dbs=A:source,B:source (default conflict strategy) on two local clusters, main db on A's; the UPDATEs")
	fmt.Fprintln(w, "    run concurrently, one connection each: disjoint: +1 WHERE aid <= N/2 on A, aid > N/2 on B; overlapping:")
	fmt.Fprintln(w, "    +10 WHERE aid <= 3N/4 on A, +100 WHERE aid > N/4 on B; \"+plugin\": the same, each conflict decided by")
	fmt.Fprintln(w, "    the plugins/highest binary (column=abalance) through go-plugin instead of bucardo_latest")
	fmt.Fprintln(w, "  convergence: wall time of `mcp sync run s2 --quiet` after both commit, until A and B are identical (checked:")
	fmt.Fprintln(w, "    count, sum, md5 of every row; conflict_log grew by the conflicts; a second run changes nothing);")
	fmt.Fprintln(w, "    rows/s is distinct keys changed over it, RSS and CPU (user + system) are the mcp process's")
	fmt.Fprintln(w)
}

func (r *report) twoByName(name string) *twoResult {
	for i := range r.two {
		if r.two[i].name == name {
			return &r.two[i]
		}
	}
	return nil
}

func (r *report) printPgbench(w io.Writer) {
	p := r.pgbench
	var runs []string
	for _, run := range p.runs {
		label := "without"
		if run.capture {
			label = "with"
		}
		runs = append(runs, fmt.Sprintf("%s %.0f", label, run.tps))
	}
	without, with := p.mean(false), p.mean(true)
	fmt.Fprintf(w, "pgbench TPS (scale %d, %d clients, %d threads, %ds each, TPC-B-like) in the order run: %s\n",
		p.scale, p.clients, p.threads, p.seconds, strings.Join(runs, ", "))
	fmt.Fprintf(w, "  mean without capture %.0f, with capture %.0f: %.2fx\n", without, with, with/without)
	fmt.Fprintln(w, "  with capture: gobucardo's triggers on pgbench_accounts, _tellers and _branches for a sync with autokick")
	fmt.Fprintln(w, "    (no sync consumes the deltas meanwhile); pgbench_history has no key and is not captured")
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func megabytes(n int64) string { return fmt.Sprintf("%.0f MB", float64(n)/(1<<20)) }

// thousands formats a rate as 110k.
func thousands(v float64) string {
	if v >= 10000 {
		return fmt.Sprintf("%.0fk", v/1000)
	}
	return fmt.Sprintf("%.0f", v)
}
