package admin

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/gobucardo/gobucardo/pkg/catalog"
)

// TestShowSet: mcp set stores canonical values and mcp show shows them,
// set or default; bad input changes nothing and says so in one sentence.
func TestShowSet(t *testing.T) {
	f := newFixture(t, true)
	out := f.ok("show")
	for _, d := range catalog.SettingDefs() {
		if !strings.Contains(out, d.Name) || !strings.Contains(out, d.Description) {
			t.Errorf("mcp show does not list %s:\n%s", d.Name, out)
		}
	}
	if got := f.ok("show", "all"); got != out {
		t.Errorf("mcp show all differs from mcp show:\n%s\n%s", got, out)
	}

	out = f.ok("set", "purge_interval=90", "log_level=DEBUG")
	for _, w := range []string{"purge_interval = 1m30s, was 1m", "log_level = debug, was info", "No MCP is running: they apply when it starts"} {
		if !strings.Contains(out, w) {
			t.Errorf("mcp set says %q, not %q", out, w)
		}
	}
	out = f.ok("show", "purge_interval")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], "1m30s") || !strings.Contains(lines[1], "set ") {
		t.Errorf("mcp show purge_interval:\n%s", out)
	}
	var vals []catalog.SettingValue
	if err := json.Unmarshal([]byte(f.ok("show", "--json")), &vals); err != nil {
		t.Fatal(err)
	}
	got := map[string]catalog.SettingValue{}
	for _, v := range vals {
		got[v.Name] = v
	}
	if v := got["log_level"]; v.Value != "debug" || !v.Set || v.Default != "info" || v.Kind != catalog.SettingKindLogLevel {
		t.Errorf("show --json log_level = %+v", v)
	}
	if v := got["kid_attempts"]; v.Value != "5" || v.Set {
		t.Errorf("show --json kid_attempts = %+v", v)
	}

	// Bad input: exit 1 (2 for a syntax error), one sentence, nothing changed.
	f.fail(1, []string{`unknown setting "nosuch"`, "purge_interval"}, "set", "nosuch=1")
	f.fail(1, []string{`purge_interval takes a duration such as 30s, 5m or 1h (0: never), not "abc"`}, "set", "purge_interval=abc")
	f.fail(1, []string{"kid_attempts must be from 1 to 100, not 0"}, "set", "log_level=warn", "kid_attempts=0")
	f.fail(1, []string{"metrics_addr takes an address as host:port"}, "set", "metrics_addr=localhost")
	f.fail(1, []string{"setting stop_grace is given twice"}, "set", "stop_grace=5s", "stop_grace=6s")
	f.fail(1, []string{`unknown setting "nosuch"`}, "show", "nosuch")
	f.fail(2, []string{`"purge_interval" is not NAME=VALUE`}, "set", "purge_interval")
	f.fail(2, []string{"set what?"}, "set")

	out = f.ok("set", "log_level=default", "metrics_addr=127.0.0.1:9187")
	if !strings.Contains(out, "log_level = info (the default), was debug") || !strings.Contains(out, "metrics_addr = 127.0.0.1:9187, was (none)") {
		t.Errorf("mcp set back to the default says:\n%s", out)
	}
}
