package controller

import (
	"testing"

	"github.com/gobucardo/gobucardo/pkg/ipc/kidpb"
)

// TestBoardPluginsNews: the kid's report of its plugins, sent before and
// after every run, notifies the Watch streams only when the plugins
// changed.
func TestBoardPluginsNews(t *testing.T) {
	b := newBoard(10, 1)
	b.setKid(11)
	plugin := func(pid int32) *kidpb.Plugin { return &kidpb.Plugin{Code: "c", Pid: pid} }
	steps := []struct {
		name    string
		plugins []*kidpb.Plugin
		news    bool
		procs   int
	}{
		{"no plugins, as before", nil, false, 2},
		{"a plugin starts", []*kidpb.Plugin{plugin(12)}, true, 3},
		{"the same plugin", []*kidpb.Plugin{plugin(12)}, false, 3},
		{"another plugin instead", []*kidpb.Plugin{plugin(13)}, true, 3},
		{"one more", []*kidpb.Plugin{plugin(13), plugin(14)}, true, 4},
		{"none left", nil, true, 2},
	}
	for _, s := range steps {
		_, changed := b.snapshot()
		b.setPlugins(s.plugins)
		news := false
		select {
		case <-changed:
			news = true
		default:
		}
		procs, _ := b.snapshot()
		if news != s.news || len(procs.GetProcesses()) != s.procs {
			t.Errorf("%s: news %v, %d processes; want %v, %d", s.name, news, len(procs.GetProcesses()), s.news, s.procs)
		}
	}
}
