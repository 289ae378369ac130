package controller

import (
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/gobucardo/gobucardo/pkg/catalog"
	"github.com/gobucardo/gobucardo/pkg/ipc/ctlpb"
	"github.com/gobucardo/gobucardo/pkg/ipc/kidpb"
)

// board holds what the controller and its kid are doing, for Watch.
type board struct {
	mu      sync.Mutex
	procs   []*ctlpb.Process // [0] the controller, [1] the kid if any, then its plugins
	changed chan struct{}    // closed and replaced at every change
	// kidRestarts counts the kids found dead (State.kid_restarts).
	kidRestarts int64
}

func newBoard(pid, ppid int) *board {
	return &board{
		procs:   []*ctlpb.Process{{Pid: int32(pid), Ppid: int32(ppid), Role: catalog.ProcessRoleController, State: catalog.ProcessStarting, SinceUnixMs: time.Now().UnixMilli()}},
		changed: make(chan struct{}),
	}
}

// snapshot returns the state to report (a copy) and the channel closed at
// the next change.
func (b *board) snapshot() (*ctlpb.State, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]*ctlpb.Process, len(b.procs))
	for i, p := range b.procs {
		out[i] = proto.Clone(p).(*ctlpb.Process)
	}
	return &ctlpb.State{Processes: out, KidRestarts: b.kidRestarts}, b.changed
}

// kidDied counts a kid found dead: the next run starts another.
func (b *board) kidDied() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.kidRestarts++
	b.notify()
}

func (b *board) notify() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// set changes the state of the controller (i = 0) or the kid (i = 1);
// since moves only when the state changes.
func (b *board) set(i int, state, detail string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if i >= len(b.procs) {
		return
	}
	p := b.procs[i]
	if p.State == state && p.Detail == detail {
		return
	}
	if p.State != state {
		p.SinceUnixMs = time.Now().UnixMilli()
	}
	p.State, p.Detail = state, detail
	b.notify()
}

// setPlugins records the kid's running plugins, after the kid.
func (b *board) setPlugins(ps []*kidpb.Plugin) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.procs) < 2 {
		return
	}
	old := map[int32]*ctlpb.Process{}
	for _, p := range b.procs[2:] {
		old[p.Pid] = p
	}
	// The kid reports its plugins before and after every run: the same
	// ones, most of the time, are no news for the Watch streams.
	same := len(ps) == len(old)
	for _, p := range ps {
		same = same && old[p.GetPid()] != nil
	}
	if same {
		return
	}
	b.procs = b.procs[:2]
	for _, p := range ps {
		if o := old[p.GetPid()]; o != nil {
			b.procs = append(b.procs, o)
			continue
		}
		b.procs = append(b.procs, &ctlpb.Process{Pid: p.GetPid(), Ppid: b.procs[1].Pid, Role: catalog.ProcessRolePlugin, State: catalog.ProcessReady,
			Detail: "customcode " + p.GetCode(), SinceUnixMs: time.Now().UnixMilli()})
	}
	b.notify()
}

// setKid records the kid's pid (0: no kid).
func (b *board) setKid(pid int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.procs = b.procs[:1]
	if pid > 0 {
		b.procs = append(b.procs, &ctlpb.Process{Pid: int32(pid), Ppid: b.procs[0].Pid, Role: catalog.ProcessRoleKid, State: catalog.ProcessIdle,
			SinceUnixMs: time.Now().UnixMilli()})
	}
	b.notify()
}
