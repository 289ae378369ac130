package mcp

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/gobucardo/gobucardo/pkg/catalog"
)

// syncOf is an active sync; members are db:role pairs, and each db's
// connection string is "dbname=<db>".
func syncOf(name string, autokick bool, members ...string) catalog.SyncDetail {
	s := catalog.SyncDetail{Sync: catalog.Sync{Name: name, Status: catalog.StatusActive, Autokick: autokick},
		DBs: map[string]catalog.DB{}}
	for _, m := range members {
		db, role, _ := strings.Cut(m, ":")
		s.Members = append(s.Members, catalog.Member{DB: db, Role: role})
		s.DBs[db] = catalog.DB{Name: db, DSN: "dbname=" + db}
	}
	return s
}

// listenersString shows listen targets as "A=dbname=A[s1 s2] ...".
func listenersString(ls map[string]listenTarget) string {
	var out []string
	for db, t := range ls {
		var syncs []string
		for s := range t.syncs {
			syncs = append(syncs, s)
		}
		sort.Strings(syncs)
		out = append(out, fmt.Sprintf("%s=%s%v", db, t.connString, syncs))
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

func TestPlan(t *testing.T) {
	type want struct {
		start, stop, reload, await []string
		listeners                  string
		listenStart, listenStop    []string
	}
	ab := syncOf("s1", true, "A:source", "B:target")
	up := func(names ...string) map[string]ctlState {
		m := map[string]ctlState{}
		for _, n := range names {
			m[n] = ctlUp
		}
		return m
	}
	cases := []struct {
		name   string
		syncs  []catalog.SyncDetail
		reload string
		run    running
		want   want
	}{
		{name: "nothing", want: want{}},
		{name: "new sync starts, its source is listened on",
			syncs: []catalog.SyncDetail{ab},
			want:  want{start: []string{"s1"}, listeners: "A=dbname=A[s1]", listenStart: []string{"A"}}},
		{name: "running sync left alone",
			syncs: []catalog.SyncDetail{ab},
			run:   running{ctls: up("s1"), listeners: map[string]string{"A": "dbname=A"}},
			want:  want{listeners: "A=dbname=A[s1]"}},
		{name: "reload all: the running ones, not those starting",
			syncs:  []catalog.SyncDetail{ab, syncOf("s2", false, "C:source", "D:target")},
			reload: "*",
			run:    running{ctls: up("s1"), listeners: map[string]string{"A": "dbname=A"}},
			want:   want{start: []string{"s2"}, reload: []string{"s1"}, listeners: "A=dbname=A[s1]"}},
		{name: "reload by name",
			syncs:  []catalog.SyncDetail{ab, syncOf("s2", false, "C:source", "D:target")},
			reload: "s2 gone",
			run:    running{ctls: up("s1", "s2"), listeners: map[string]string{"A": "dbname=A"}},
			want:   want{reload: []string{"s2"}, listeners: "A=dbname=A[s1]"}},
		{name: "sync no longer active stops, its listener too",
			run:  running{ctls: up("s1"), listeners: map[string]string{"A": "dbname=A"}},
			want: want{stop: []string{"s1"}, listenStop: []string{"A"}}},
		{name: "active again while its controller is stopping: awaited",
			syncs: []catalog.SyncDetail{ab},
			run:   running{ctls: map[string]ctlState{"s1": ctlStopping}},
			want:  want{await: []string{"s1"}, listeners: "A=dbname=A[s1]", listenStart: []string{"A"}}},
		{name: "reload of a controller still stopping: awaited, not reloaded",
			syncs:  []catalog.SyncDetail{ab},
			reload: "*",
			run:    running{ctls: map[string]ctlState{"s1": ctlStopping}, listeners: map[string]string{"A": "dbname=A"}},
			want:   want{await: []string{"s1"}, listeners: "A=dbname=A[s1]"}},
		{name: "stopping and still inactive: nothing more",
			run:  running{ctls: map[string]ctlState{"s1": ctlStopping}},
			want: want{}},
		{name: "one stops while another starts",
			syncs: []catalog.SyncDetail{syncOf("s2", false, "A:source", "B:target")},
			run:   running{ctls: up("s1"), listeners: map[string]string{"A": "dbname=A"}},
			want:  want{start: []string{"s2"}, stop: []string{"s1"}, listenStop: []string{"A"}}},
		{name: "no autokick: no listener",
			syncs: []catalog.SyncDetail{syncOf("s1", false, "A:source", "B:target")},
			want:  want{start: []string{"s1"}}},
		{name: "fullcopy only: no capture to listen for",
			syncs: []catalog.SyncDetail{syncOf("f", true, "A:source", "B:fullcopy")},
			want:  want{start: []string{"f"}}},
		{name: "two sources, no target: both listened on",
			syncs: []catalog.SyncDetail{syncOf("mm", true, "A:source", "B:source")},
			want:  want{start: []string{"mm"}, listeners: "A=dbname=A[mm] B=dbname=B[mm]", listenStart: []string{"A", "B"}}},
		{name: "a source shared by two syncs: one session kicking both",
			syncs: []catalog.SyncDetail{ab, syncOf("s2", true, "A:source", "C:target")},
			run:   running{ctls: up("s1", "s2"), listeners: map[string]string{"A": "dbname=A"}},
			want:  want{listeners: "A=dbname=A[s1 s2]"}},
		{name: "connection string changed: session restarts",
			syncs: []catalog.SyncDetail{ab},
			run:   running{ctls: up("s1"), listeners: map[string]string{"A": "dbname=old"}},
			want:  want{listeners: "A=dbname=A[s1]", listenStart: []string{"A"}, listenStop: []string{"A"}}},
		{name: "source becomes a target: its session ends, the new source's starts",
			syncs: []catalog.SyncDetail{syncOf("s1", true, "B:source", "A:target")},
			run:   running{ctls: up("s1"), listeners: map[string]string{"A": "dbname=A"}},
			want:  want{listeners: "B=dbname=B[s1]", listenStart: []string{"B"}, listenStop: []string{"A"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := desired{syncs: map[string]catalog.SyncDetail{}, reload: map[string]bool{}}
			for _, s := range tc.syncs {
				d.syncs[s.Name] = s
			}
			for _, s := range strings.Fields(tc.reload) {
				d.reload[s] = true
			}
			a := plan(d, tc.run)
			got := want{start: a.start, stop: a.stop, reload: a.reload, await: a.await,
				listeners: listenersString(a.listeners), listenStart: a.listenStart, listenStop: a.listenStop}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("plan =\n  %+v\nwant\n  %+v", got, tc.want)
			}
		})
	}
}
