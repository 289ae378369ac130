package main

import (
	"testing"
	"time"

	"github.com/gobucardo/gobucardo/pkg/pgtest"
)

// TestDaemonStayaliveOff: a sync with stayalive=false has no controller
// once its run is over, and a write on its source (autokick) or mcp kick
// starts one again, each time.
func TestDaemonStayaliveOff(t *testing.T) {
	c := pgtest.Shared(t)
	d := newDaemon(t, c)
	src, dst := d.twoDBs(c, c, c, "stayalive=false")
	d.start()
	for i := 1; i <= 3; i++ {
		d.eventually(20*time.Second, "no controller once idle", func() bool { return d.pidOf("controller", "s") == 0 })
		c.Exec(t, src, "INSERT INTO public.t VALUES ($1, 'autokick')", i)
		d.eventually(20*time.Second, "the row through autokick", func() bool { return d.count(dst, "public.t") == i })
	}
	// Without autokick, only mcp kick can bring the row.
	d.run(0, "update", "sync", "s", "autokick=false")
	d.eventually(20*time.Second, "no controller once idle", func() bool { return d.pidOf("controller", "s") == 0 })
	c.Exec(t, src, "INSERT INTO public.t VALUES (100, 'kicked')")
	time.Sleep(time.Second)
	if n := d.count(dst, "public.t"); n != 3 {
		t.Fatalf("without autokick and before mcp kick: %d rows on the target, want 3", n)
	}
	d.run(0, "kick", "s", "--timeout", "20s")
	if n := d.count(dst, "public.t"); n != 4 {
		t.Errorf("after mcp kick --timeout: %d rows on the target, want 4", n)
	}
}
