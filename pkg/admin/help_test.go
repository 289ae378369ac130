package admin

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// TestEveryCommandHasHelp runs `--help` on every command and subcommand.
func TestEveryCommandHasHelp(t *testing.T) {
	var paths [][]string
	var walk func(prefix []string, cmds []*cli.Command)
	walk = func(prefix []string, cmds []*cli.Command) {
		for _, c := range cmds {
			p := append(append([]string{}, prefix...), c.Name)
			paths = append(paths, p)
			walk(p, c.Subcommands)
		}
	}
	walk(nil, newApp(nil, nil).Commands)
	if len(paths) < 25 {
		t.Fatalf("only %d commands found", len(paths))
	}
	for _, p := range paths {
		var out, errb bytes.Buffer
		code := Run(context.Background(), append(append([]string{"mcp"}, p...), "--help"), &out, &errb)
		if code != 0 || !strings.Contains(out.String(), "USAGE") || errb.Len() > 0 {
			t.Errorf("mcp %s --help: exit %d, stdout %q, stderr %q", strings.Join(p, " "), code, out.String(), errb.String())
		}
	}
}

func TestReorder(t *testing.T) {
	app := newApp(nil, nil)
	cases := []struct{ in, want string }{
		{"mcp list dbs --json", "mcp --json list dbs"},
		{"mcp --dsn x list dbs", "mcp --dsn x list dbs"},
		{"mcp list dbs --dsn x --json", "mcp --dsn x --json list dbs"},
		{"mcp add all tables db=A -n public -T tmp* --json", "mcp --json add all tables -n public -T tmp* db=A"},
		{"mcp add db A dbname=x --force", "mcp add db --force A dbname=x"},
		{"mcp remove table --force -- -odd", "mcp remove table --force -- -odd"},
		{"mcp list dbs --colour", "mcp list --colour dbs"},
		{"mcp", "mcp"},
		{"mcp nosuch --json", "mcp nosuch --json"},
	}
	for _, tc := range cases {
		if got := strings.Join(reorder(app, strings.Fields(tc.in)), " "); got != tc.want {
			t.Errorf("reorder(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
