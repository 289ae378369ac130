package mcp

import (
	"context"
	"fmt"
	"os"
	"sort"
	"time"

	"go.uber.org/zap"

	"github.com/gobucardo/gobucardo/pkg/catalog"
	"github.com/gobucardo/gobucardo/pkg/proc"
)

// publish writes the process tree into gobucardo.process, for `mcp ps` from
// any host. It also serves as the MCP's heartbeat.
func (d *daemon) publish(ctx context.Context, cc *catalog.Conn) {
	conn, err := cc.Get(ctx)
	if err != nil {
		return // the main listener reports the outage
	}
	procs := d.processes()
	if err := catalog.SetProcesses(ctx, conn, d.host, procs); err != nil {
		cc.Failed(err)
		d.log.Debug("cannot publish the process tree", zap.Error(err))
	}
}

// processes lists the MCP and every controller's subtree with their usage.
func (d *daemon) processes() []catalog.Process {
	now := time.Now()
	d.mu.Lock()
	names := make([]string, 0, len(d.ctls))
	for name := range d.ctls {
		names = append(names, name)
	}
	ctls := d.ctls
	d.mu.Unlock()
	sort.Strings(names)
	me := catalog.Process{PID: os.Getpid(), PPID: os.Getppid(), Role: catalog.ProcessRoleMCP, State: catalog.ProcessRunning,
		Detail: fmt.Sprintf("%d active syncs", len(names)), Started: d.started, StateSince: d.started}
	out := []catalog.Process{me}
	alive := map[int]bool{me.PID: true}
	for _, name := range names {
		c := ctls[name]
		if c == nil {
			continue
		}
		procs, state := c.Processes()
		if len(procs) == 0 {
			// Shown on the MCP's line: the controller is down.
			out[0].Detail += fmt.Sprintf("; %s: %s", name, state)
			continue
		}
		for _, p := range procs {
			pid := int(p.GetPid())
			first, ok := d.seen[pid]
			if !ok {
				first = now
				d.seen[pid] = now
			}
			alive[pid] = true
			out = append(out, catalog.Process{PID: pid, PPID: int(p.GetPpid()), Role: p.GetRole(), Sync: name,
				State: p.GetState(), Detail: p.GetDetail(), Started: first, StateSince: time.UnixMilli(p.GetSinceUnixMs())})
		}
	}
	for pid := range d.seen {
		if !alive[pid] {
			delete(d.seen, pid)
		}
	}
	for i := range out {
		if cpu, rss, err := proc.Usage(out[i].PID); err == nil {
			out[i].CPU, out[i].RSS = cpu, rss
		}
		out[i].Host = d.host
	}
	return out
}
