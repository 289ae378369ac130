package bench

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gobucardo/gobucardo/pkg/pgtest"
	"github.com/gobucardo/gobucardo/pkg/testbin"
)

// Defaults of the environment variables that size the benchmarks.
const (
	defaultRows           = "100000,1000000"
	defaultPgbenchSeconds = 30
)

// TestMain runs the benchmarks, stops every cluster, then prints the table
// of what was measured (nothing when no benchmark ran, as under go test
// without -bench) and removes the binaries built for the run.
func TestMain(m *testing.M) {
	pgtest.Main(m)
	results.print(os.Stdout)
	testbin.Cleanup()
}

// BenchmarkBulkUpdate measures figures 1, 2 and 4 for each table size of
// BENCH_ROWS: one bulk UPDATE on the source, the `mcp sync run` that brings
// the target in step, and a raw binary COPY of the same rows for reference.
func BenchmarkBulkUpdate(b *testing.B) {
	sizes, err := benchRows()
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("rows=%d", n), func(b *testing.B) { benchBulkUpdate(b, n) })
	}
}

// BenchmarkPgbench measures figure 3: pgbench TPS on the source without and
// with gobucardo's capture triggers.
func BenchmarkPgbench(b *testing.B) {
	secs, err := envInt("BENCH_PGBENCH_SECONDS", defaultPgbenchSeconds)
	if err != nil {
		b.Fatal(err)
	}
	benchPgbench(b, secs)
}

// benchRows parses BENCH_ROWS.
func benchRows() ([]int, error) {
	v := os.Getenv("BENCH_ROWS")
	if v == "" {
		v = defaultRows
	}
	var sizes []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("BENCH_ROWS=%q: want comma-separated positive row counts", v)
		}
		sizes = append(sizes, n)
	}
	return sizes, nil
}

// envInt reads a positive integer from the environment, def when unset.
func envInt(name string, def int) (int, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%s=%q: want a positive integer", name, v)
	}
	return n, nil
}

// mustEnvInt is envInt, failing b on a bad value.
func mustEnvInt(b *testing.B, name string, def int) int {
	b.Helper()
	n, err := envInt(name, def)
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// started is when the test binary started, for progress lines.
var started = time.Now()

// progressf prints a progress line to stderr, stamped with the time since
// the benchmarks started, so that a long run shows what it is doing.
func progressf(b *testing.B, format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench %6.1fs %s: %s\n", time.Since(started).Seconds(), b.Name(), fmt.Sprintf(format, args...))
}
