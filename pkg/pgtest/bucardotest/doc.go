// Package bucardotest sets up a real Bucardo 5 for tests, with Bucardo's own
// command line, on a pkg/pgtest cluster: its main database ("bucardo", with
// PL/PerlU) and the replicated databases live on that cluster.
//
//	c := pgtest.New(t)
//	b := bucardotest.Install(t, c)      // bucardo install --batch
//	b.Run(t, "add", "db", "A", "dbname="+db, "host="+c.Host(), ...)
//	conn := c.Connect(t, b.DB)          // Bucardo's catalog, schema bucardo
//
// Bucardo is a Debian package (bucardo, with postgresql-plperl-15 and
// libdbd-pg-perl); where it or PL/Perl is missing, Install skips the test
// and names the package to install. Bucardo's daemon is not started: the
// fixture only builds its catalog (and Bucardo installs its triggers on the
// source databases when a sync is added, as it always does). Test code only.
package bucardotest
