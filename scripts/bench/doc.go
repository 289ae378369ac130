// Package bench is `make bench`: it measures gobucardo against references
// taken in the same run, on the same machine, and prints a table of the
// figures and their ratios. It is a set of Go benchmarks, not a timed test:
// nothing here asserts a speed, but a figure whose result is wrong (a target
// that is not in step with its source afterwards) fails the benchmark.
//
// Every figure uses throw-away local PostgreSQL clusters from pkg/pgtest,
// tuned to PostgreSQL's default shared_buffers (128MB); the source and the
// target are separate clusters, as they are separate servers in production,
// and the main database lives on the source's cluster.
//
//  1. Bulk UPDATE propagation. A pgbench_accounts-shaped table of N rows,
//     identical on the source and the target, replicated by a sync
//     (A:source, B:target) configured with the real mcp binary. One
//     `UPDATE accounts SET abalance = abalance + 1` on the source is timed
//     with and without capture triggers (the latter on a twin table that is
//     not captured), then `mcp sync run s --quiet` is timed: from the
//     source's commit until the target is in step. The target is then checked
//     against the source (row count, sums and a checksum of every row).
//  2. The raw reference for the same rows: a binary COPY of the whole table
//     from the source piped (io.Pipe) straight into an empty table with its
//     primary key on the target (the TRUNCATE before it is not timed). The
//     ratio is gobucardo's time over this one. pgconn's CopyTo hands over a
//     row per write, which the pipe passes on to the target's socket as is;
//     the same copy with 64 KiB writes (a bufio.Writer before the pipe) is
//     reported beside it, with its ratio, and so is the same buffered copy
//     into the target table still full, after a DELETE of every row in the
//     same transaction (the inherent cost of a delta run's delete-and-copy
//     apply, without gobucardo's key staging).
//  3. pgbench TPS on the source (scale 10, the default TPC-B-like script)
//     without gobucardo's capture and with it (autokick on) on
//     pgbench_accounts, pgbench_tellers and pgbench_branches, in the order
//     without, with, with, without so that a drift over time does not favour
//     either side; every run is reported.
//  4. The max RSS (and CPU time) of the `mcp sync run` process for each
//     backlog, the largest one repeated at the end.
//  5. Two sources. The same table of N rows, identical on two sources A and
//     B (clusters of their own, the main database on A's), loaded before a
//     sync (A:source, B:source) is configured with the real mcp, so that
//     nothing of the load is captured. Two scenarios, each with one UPDATE
//     on A and one on B run concurrently (a goroutine and a connection
//     each), then `mcp sync run s2 --quiet` timed until it exits: disjoint
//     (+1 on aid <= N/2 on A, on aid > N/2 on B) and overlapping (+10 on
//     aid <= 3N/4 on A, +100 on aid > N/4 on B: N/2 keys conflict). After
//     each, A and B must be identical (count, sum and an md5 of every row in
//     key order), every row must hold the change of the UPDATE that touched
//     it (for a conflict, one of the two), the run must report the keys and
//     the conflicts expected, gobucardo.conflict_log must have grown by the
//     conflicts, and a second run must find nothing to do (no echo).
//  6. The automatic purge (BenchmarkPurge). pgbench -c 4 on the source for
//     BENCH_PURGE_SECONDS while `mcp run --purge-interval
//     BENCH_PURGE_INTERVAL` replicates the pgbench tables to a target
//     cluster. Every 3 s the delta rows kept on the source and the delta
//     tables' total size (pg_total_relation_size) are sampled; the report
//     gives their maximum and their values once the target has caught up,
//     the purge passes the MCP logged, and the source's TPS over the first
//     and the last fifth of the run (pgbench -P), which would part if the
//     deltas or their bloat grew without bound. The target must end equal to
//     the source.
//  7. One target of three down under load (BenchmarkTargetOutage). A sync
//     A -> B, C, D over the pgbench tables, each db on a cluster of its own,
//     under `mcp run` (autokick), while pgbench -c 4 -R BENCH_OUTAGE_TPS
//     runs single-row UPDATEs of pgbench_accounts on A (a steady rate that
//     the sync keeps up with: unthrottled, pgbench on a small machine
//     outruns the runs and the lag only grows). A probe row committed on A
//     every 100ms, the time until B and C have it, over three phases:
//     before D's cluster is stopped (BENCH_OUTAGE_BASELINE), while it is down
//     (BENCH_OUTAGE_SECONDS) and after it is started again
//     (BENCH_OUTAGE_AFTER). Reported: B's and C's p50/p99 lag in each phase
//     (target: p99 while D is down at most 1.5x p99 before), D's backlog
//     at its restart (changes and distinct rows, from the source's deltas
//     since D's place in gobucardo.target_watermark), the time from the
//     restart until D's place is gone (mcp status: "in step"), split from
//     the MCP's log into the wait for a run that takes D and that run, with
//     a raw COPY of as many rows for reference (target: within 10 s plus
//     the time to copy the backlog). Once the load ends, B, C and D must
//     hold A's rows.
//  8. The Prometheus endpoint (BenchmarkMetricsScrape). GET /metrics of the
//     MCP's handler (pkg/metrics) over a catalog of 50 syncs and 500 tables
//     with BENCH_METRICS_RUNS runs in gobucardo.syncrun (a tenth with 5
//     conflicts each) and parked rows: the first scrape, which reads the
//     whole history once, and 20 later ones, each after one more run of every
//     sync (target: under 50 ms), with one GROUP BY over all of syncrun for
//     reference. The last scrape must count every run of the catalog.
//  9. mcp status over a big backlog (BenchmarkStatusPending). A sync
//     (A:source, B:target) whose source holds BENCH_STATUS_PENDING delta
//     rows it has not consumed, written straight into the delta table in
//     transactions of a million rows once the capture is installed: one
//     `mcp status` right after the load (before an explicit vacuum), then the
//     real `mcp status`, `mcp status s` and `mcp --json status`,
//     BENCH_STATUS_RUNS times each (median and worst), and
//     capture.LagReader.Read alone; then the same once target B is
//     recorded as behind since the sync's place (its backlog is counted
//     too). Target: under 1 s. Every answer must give the capped count.
//  10. The replicator's CPU at idle (BenchmarkIdleCPU, issue 13). A sync
//     (A:source, B:target) of one table and `mcp run`; for
//     BENCH_IDLE_SECONDS a row is committed on the source every 200 ms and
//     waited for on the target (the lag, p50 and p99). The CPU of the Go
//     processes (mcp and everything under it, exited ones included) and of
//     every postgres process of both clusters but the bench's own sessions
//     and the background ones (exited backends included, through the
//     postmaster's children's times in /proc/<pid>/stat) is reported as %
//     of one core, with the backends forked (pg_stat_database.sessions).
//     Targets: 3 % of one core, lag p50 30 ms, p99 150 ms. With
//     BENCH_IDLE_BEFORE=DIR (another build of mcp, controller and kid, such
//     as main's: go build -o DIR ./cmd/...) that build is measured first on
//     the same clusters: before and after in one run.
//
// Run it with
//
//	make bench
//	BENCH_ROWS=100000 BENCH_PGBENCH_SECONDS=10 BENCH_TWO_ROWS=50000 make bench   # shorter
//
// or directly with `go test -run '^$' -bench . -benchtime 1x -timeout 60m
// ./scripts/bench/` (-bench BulkUpdate, -bench Pgbench, -bench TwoSource,
// -bench Purge, -bench TargetOutage, -bench MetricsScrape, -bench
// StatusPending or -bench IdleCPU for one figure).
// Environment:
//
//	BENCH_ROWS             comma-separated table sizes of figures 1, 2 and 4 (default 100000,1000000)
//	BENCH_PGBENCH_SECONDS  length of each pgbench run (default 30)
//	BENCH_TWO_ROWS         table size N of figure 5 (default 200000)
//	BENCH_PURGE_SECONDS    length of the purge benchmark's pgbench run (default 60; 1800 for the long version)
//	BENCH_PURGE_INTERVAL   the MCP's --purge-interval in it (default 10s)
//	BENCH_PART_ROWS        rows of BenchmarkPartitioned, 12 monthly partitions vs a plain table (default 1000000; BENCH_PART_ROUNDS=2)
//	BENCH_OUTAGE_SECONDS   how long BenchmarkTargetOutage keeps target D's cluster down (default 60);
//	                       BENCH_OUTAGE_BASELINE=20 and BENCH_OUTAGE_AFTER=40 seconds of load before and after,
//	                       at BENCH_OUTAGE_TPS=1000 (pgbench -R);
//	                       BENCH_OUTAGE_LOG=FILE keeps the MCP's log of it
//	BENCH_METRICS_RUNS     runs in the catalog of BenchmarkMetricsScrape (default 200000)
//	BENCH_STATUS_PENDING   pending delta rows of BenchmarkStatusPending (default 10000000; BENCH_STATUS_RUNS=5)
//	BENCH_IDLE_SECONDS     length of BenchmarkIdleCPU's measure (default 30); BENCH_IDLE_BEFORE=DIR measures
//	                       the build in DIR first
//	BENCH_PHASES           when 1, `mcp sync run` runs without --quiet and its progress lines are
//	                       printed to stderr with the time since the run started, to see where the
//	                       time goes
//
// Progress goes to stderr as the benchmarks run; the table is printed to
// stdout once every benchmark has finished. Without -bench (as in `make
// test`) the package runs nothing and starts no server.
package bench
