// Package admin is the command line of mcp, the one binary a user runs:
// the catalog commands (install, add, list, update, remove) of
// ../shared/CLI.md, with Bucardo's key=value syntax.
//
// Run parses arguments and runs one command; every command that writes runs
// in one transaction on the main database, so a refused command changes
// nothing. Errors are one sentence on stderr naming the object and the fix;
// the exit status is 1, or 2 for a usage error. Passwords are never
// printed. Flags may be given before or after the positional arguments.
//
// The files go by concern: settings.go reads key=value arguments and what
// they mean for each kind of object (pure, table-tested); db.go, dbgroup.go,
// relation.go (tables, sequences, relgroups), sync.go and customcode.go add
// and change one kind each, while add.go and update.go only declare those
// commands; daemon.go runs, starts and stops the MCP (pid and log files);
// control.go asks the running MCP for something (kick, reload, pause,
// message, ping) with a catalog.AdminRequest. The SQL is pkg/catalog's.
package admin
