package admin

import (
	"slices"
	"testing"
	"time"

	"github.com/gobucardo/gobucardo/pkg/catalog"
)

func TestStatusOrder(t *testing.T) {
	now := time.Now()
	run := func(endedAgo, took time.Duration) *runInfo {
		ended := now.Add(-endedAgo)
		return &runInfo{Ended: &ended, Duration: took}
	}
	running := &runInfo{Started: now} // not ended: no age
	sts := []syncStatus{
		{Name: "c", State: "good", LastGood: run(time.Minute, 3*time.Second), LastBad: run(time.Hour, time.Second)},
		{Name: "a", State: "paused", LastGood: run(time.Hour, time.Second)},
		{Name: "d", State: "bad", LastGood: nil, LastBad: run(time.Second, time.Second)},
		{Name: "b", State: "good", LastGood: run(time.Second, 2*time.Second), LastBad: running},
		{Name: "e", State: "bad", LastGood: run(time.Second, 2*time.Second)},
	}
	lags := map[string]catalog.SyncLag{"a": {LagSeconds: 120}, "b": {LagSeconds: 0.5}, "c": {}, "d": {Unknown: true}, "e": {LagSeconds: 3}}
	for i := range sts {
		sts[i].SyncLag = lags[sts[i].Name]
	}
	for _, tc := range []struct {
		name, key string
		want      []string
	}{
		{name: "name", key: "name", want: []string{"a", "b", "c", "d", "e"}},
		{name: "name reversed", key: "-name", want: []string{"e", "d", "c", "b", "a"}},
		{name: "state, ties by name", key: "state", want: []string{"d", "e", "b", "c", "a"}},
		{name: "state reversed, ties still by name", key: "-state", want: []string{"a", "b", "c", "d", "e"}},
		{name: "last good: the most recent first, none last", key: "lastgood", want: []string{"b", "e", "c", "a", "d"}},
		{name: "last good reversed: none first, the oldest next", key: "-lastgood", want: []string{"d", "a", "c", "b", "e"}},
		{name: "column title as shown", key: "Last good", want: []string{"b", "e", "c", "a", "d"}},
		{name: "with an underscore", key: "last_good", want: []string{"b", "e", "c", "a", "d"}},
		{name: "alias", key: "GOOD", want: []string{"b", "e", "c", "a", "d"}},
		{name: "last bad: a run not ended counts as none", key: "lastbad", want: []string{"d", "c", "a", "b", "e"}},
		{name: "time of the last good run", key: "time", want: []string{"a", "b", "e", "c", "d"}},
		{name: "time reversed", key: "-duration", want: []string{"d", "c", "b", "e", "a"}},
		{name: "lag: in step first, unknown last", key: "lag", want: []string{"c", "b", "e", "a", "d"}},
		{name: "lag reversed: unknown first", key: "-lag", want: []string{"d", "a", "e", "b", "c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			order, err := statusOrder(tc.key)
			if err != nil {
				t.Fatal(err)
			}
			got := slices.Clone(sts)
			slices.SortStableFunc(got, order)
			var names []string
			for _, s := range got {
				names = append(names, s.Name)
			}
			if !slices.Equal(names, tc.want) {
				t.Errorf("--sort %s: %q, want %q", tc.key, names, tc.want)
			}
		})
	}
	for _, bad := range []string{"", "lags", "-", "nam"} {
		if _, err := statusOrder(bad); err == nil {
			t.Errorf("--sort %q accepted", bad)
		}
	}
}
