package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/gobucardo/gobucardo/pkg/pgtest"
)

// statusDoc is what mcp status --json says of each sync, in its order.
func (d *daemon) statusDoc(args ...string) (names []string, paused, active map[string]bool) {
	d.t.Helper()
	var doc struct {
		Syncs []struct {
			Name   string `json:"name"`
			Status string `json:"status"`
			Paused bool   `json:"paused"`
		} `json:"syncs"`
	}
	if err := json.Unmarshal([]byte(d.run(0, append([]string{"status", "--json"}, args...)...)), &doc); err != nil {
		d.t.Fatal(err)
	}
	paused, active = map[string]bool{}, map[string]bool{}
	for _, s := range doc.Syncs {
		names = append(names, s.Name)
		paused[s.Name], active[s.Name] = s.Paused, s.Status == "active"
	}
	return names, paused, active
}

// TestDaemonSyncPatterns: Bucardo's conveniences end to end. all and %
// patterns for kick, pause, resume, activate, deactivate and status; a
// pattern that matches nothing changes nothing; kick SYNC 10 waits 10 s.
func TestDaemonSyncPatterns(t *testing.T) {
	c := pgtest.Shared(t)
	d := newDaemon(t, c)
	src, dst := d.twoDBs(c, c, c, "autokick=false") // sync s
	for _, s := range []string{"web1", "web2"} {
		d.run(0, "add", "sync", s, "relgroup=rg", "dbs=A:source,B:target", "autokick=false")
	}
	d.start()
	conn := c.Connect(t, d.main)
	defer conn.Close(context.Background())
	runs := func() int {
		t.Helper()
		var n int
		if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM gobucardo.syncrun").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	// Patterns that match nothing: one error naming them, nothing done.
	d.eventually(20*time.Second, "the first run of each sync, as its controller starts", func() bool {
		var ended, running int
		err := conn.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE ended IS NOT NULL),
			count(*) FILTER (WHERE ended IS NULL) FROM gobucardo.syncrun`).Scan(&ended, &running)
		return err == nil && ended >= 3 && running == 0
	})
	before := runs()
	if out, code := d.try("kick", "all", "x%", "--timeout", "5s"); code != 3 || !strings.Contains(out, `no sync matches "x%"`) {
		t.Errorf("kick all x%%: exit %d, %q", code, out)
	}
	for _, verb := range []string{"pause", "deactivate", "status"} {
		if out, code := d.try(verb, "web%", "nope%"); code != 1 || !strings.Contains(out, `no sync matches "nope%"`) {
			t.Errorf("%s web%% nope%%: exit %d, %q", verb, code, out)
		}
	}
	time.Sleep(300 * time.Millisecond) // a kick that got through would show as a run meanwhile
	if n := runs(); n != before {
		t.Errorf("%d runs after a refused kick", n-before)
	}
	if _, paused, active := d.statusDoc(); paused["web1"] || !active["web1"] {
		t.Errorf("a refused pause or deactivate changed web1: paused %t, active %t", paused["web1"], active["web1"])
	}

	// pause 'web%' pauses web1 and web2 only; status 'web%' shows just them.
	out := d.run(0, "pause", "web%")
	if !strings.Contains(out, "Paused sync web1") || !strings.Contains(out, "Paused sync web2") || strings.Contains(out, "sync s\n") {
		t.Errorf("pause web%% printed %q", out)
	}
	names, paused, _ := d.statusDoc()
	if !paused["web1"] || !paused["web2"] || paused["s"] {
		t.Errorf("after pause web%%: paused %v", paused)
	}
	if strings.Join(names, " ") != "s web1 web2" {
		t.Errorf("status lists %q", names)
	}
	if names, _, _ := d.statusDoc("w*2", "web%"); strings.Join(names, " ") != "web1 web2" {
		t.Errorf("status w*2 web%% lists %q", names)
	}
	if names, _, _ := d.statusDoc("--sort", "-name"); strings.Join(names, " ") != "web2 web1 s" {
		t.Errorf("status --sort -name lists %q", names)
	}
	// Each sync ran once when its controller started: s is good, the
	// others paused.
	above := func(out, a, b string) bool {
		i, j := strings.Index(out, "\n"+a+" "), strings.Index(out, "\n"+b+" ")
		return i >= 0 && j >= 0 && i < j
	}
	if out := d.run(0, "status", "--sort", "state"); !above(out, "s", "web1") {
		t.Errorf("status --sort state: s (good) after web1 (paused):\n%s", out)
	}
	if out := d.run(0, "status", "--sort", "-state"); !above(out, "web2", "s") {
		t.Errorf("status --sort -state: s (good) before web2 (paused):\n%s", out)
	}
	if out, code := d.try("status", "--sort", "colour"); code != 2 || !strings.Contains(out, "lastgood") {
		t.Errorf("status --sort colour: exit %d, %q", code, out)
	}

	// kick all with a bare timeout: the paused syncs are left out, said so;
	// the others run and are waited for. A paused sync named is an error.
	c.Exec(t, src, "INSERT INTO public.t VALUES (1, 'one')")
	out = d.run(0, "kick", "all", "20")
	if !strings.Contains(out, "Skipped: sync web1 is paused") || !strings.Contains(out, "Kick s: Complete") || strings.Contains(out, "Kick web") {
		t.Errorf("kick all 20 printed %q", out)
	}
	if n := d.count(dst, "public.t"); n != 1 {
		t.Errorf("after kick all 20 the target has %d rows", n)
	}
	if out, code := d.try("kick", "web1", "5"); code != 3 || !strings.Contains(out, "paused") {
		t.Errorf("kick web1 5 (paused): exit %d, %q", code, out)
	}
	if out, code := d.try("kick", "web%"); code != 3 || !strings.Contains(out, "no active, unpaused sync matches web%") {
		t.Errorf("kick web%% (all paused): exit %d, %q", code, out)
	}
	if out, code := d.try("kick", "s", "5", "--timeout", "5s"); code != 2 || !strings.Contains(out, "give one") {
		t.Errorf("kick s 5 --timeout 5s: exit %d, %q", code, out)
	}

	// resume all, then deactivate and activate by pattern.
	if out := d.run(0, "resume", "all"); strings.Count(out, "Resumed sync") != 3 {
		t.Errorf("resume all printed %q", out)
	}
	d.run(0, "deactivate", "%2", "s")
	if _, _, active := d.statusDoc(); active["web2"] || active["s"] || !active["web1"] {
		t.Errorf("after deactivate %%2 s: active %v", active)
	}
	if out := d.run(0, "activate", "ALL"); strings.Count(out, "is active") != 3 {
		t.Errorf("activate ALL printed %q", out)
	}
	d.eventually(15*time.Second, "three controllers", func() bool {
		n := 0
		for _, p := range d.ps() {
			if p.Role == "controller" {
				n++
			}
		}
		return n == 3
	})
	if out := d.run(0, "kick", "all", "--timeout", "20s"); strings.Count(out, ": Complete") != 3 {
		t.Errorf("kick all --timeout 20s printed %q", out)
	}

	// kick SYNC 1 times out as --timeout 1s does (exit 1) while its target
	// table is locked; the run ends once the lock goes.
	c.Exec(t, src, "INSERT INTO public.t VALUES (2, 'two')")
	lock := c.Connect(t, dst)
	defer lock.Close(context.Background())
	tx, err := lock.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(context.Background(), "LOCK TABLE public.t IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	out, code := d.try("kick", "s", "1")
	if code != 1 || !strings.Contains(out, "Kick s: timed out after 1s") {
		t.Errorf("kick s 1 with the target locked: exit %d, %q", code, out)
	}
	if took := time.Since(start); took < time.Second || took > 10*time.Second {
		t.Errorf("kick s 1 took %s", took)
	}
	if err := tx.Rollback(context.Background()); err != nil {
		t.Fatal(err)
	}
	d.eventually(20*time.Second, "row 2 once the lock went", func() bool { return d.count(dst, "public.t") == 2 })
	d.stop()
}
