// Package testbin builds the module's programs for tests that run them as
// processes: each set of packages is built once per test binary, into a
// temporary directory of its own, and later calls get the same directory.
//
//	dir := testbin.Build(t, "github.com/gobucardo/gobucardo/plugins/highest")
//	bin := filepath.Join(dir, "highest")
//
// A failed build fails the calling test (and every later caller) with the
// compiler's output. Call Cleanup from TestMain, after m.Run, to remove the
// directories; those of a test binary that did not are removed by the next
// one that builds. Test code only.
package testbin
