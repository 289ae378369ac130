package admin

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/gobucardo/gobucardo/pkg/bucardoimport"
	"github.com/gobucardo/gobucardo/pkg/catalog"
)

// TestTakeoverStartOf: where a takeover begins for each pair of statuses,
// so that a retry resumes and never stops Bucardo twice or skips a drain.
func TestTakeoverStartOf(t *testing.T) {
	const act, ina = catalog.StatusActive, catalog.StatusInactive
	for _, c := range []struct {
		gob, buc string
		captured bool
		want     takeoverStart
		err      string
	}{
		{ina, "active", false, fromCapture, ""},
		{ina, "active", true, fromCapture, ""}, // a try that failed before stopping Bucardo: drain again
		{ina, "inactive", true, fromTriggers, ""},
		{ina, "inactive", false, 0, "bucardo activate s"},
		{ina, "stalled", false, 0, "is stalled, so it cannot be drained"},
		{act, "inactive", true, takenOver, ""},
		{act, "active", true, 0, "active in gobucardo and in Bucardo"},
		{ina, "", false, 0, "not in Bucardo's catalog"},
	} {
		got, err := takeoverStartOf("s", c.gob, c.buc, c.captured)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s/%s captured=%v: error %v, want %q", c.gob, c.buc, c.captured, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s/%s captured=%v: %v, %v; want %v", c.gob, c.buc, c.captured, got, err, c.want)
		}
	}
}

// TestRollbackStartOf: the way back is done only from a taken-over sync.
func TestRollbackStartOf(t *testing.T) {
	const act, ina = catalog.StatusActive, catalog.StatusInactive
	for _, c := range []struct {
		gob, buc string
		want     rollbackStart
		err      string
	}{
		{act, "inactive", rollbackAll, ""},
		{ina, "active", rolledBack, ""},
		{act, "active", 0, "active in gobucardo and in Bucardo"},
		{ina, "inactive", 0, "--takeover s, it resumes"},
		{act, "", 0, "not in Bucardo's catalog"},
	} {
		got, err := rollbackStartOf("s", c.gob, c.buc)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s/%s: error %v, want %q", c.gob, c.buc, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s/%s: %v, %v; want %v", c.gob, c.buc, got, err, c.want)
		}
	}
}

func TestBucardoNotice(t *testing.T) {
	notices := []string{"syncdone_s", "syncerror_s"}
	for _, c := range []struct{ channel, payload, want string }{
		{"bucardo_syncdone_s", "", "syncdone_s"},
		{"bucardo", "syncerror_s", "syncerror_s"},
		{"bucardo", "syncdone_s2", ""},
		{"bucardo_syncdone_s2", "", ""},
		{"bucardo_ctl", "syncdone_s", ""},
	} {
		if got := bucardoNotice(c.channel, c.payload, notices); got != c.want {
			t.Errorf("%s %q: %q, want %q", c.channel, c.payload, got, c.want)
		}
	}
}

func TestBucardoKickName(t *testing.T) {
	for _, c := range []struct{ sync, want string }{
		{"fanout", "bucardo_kick_fanout"},
		{strings.Repeat("x", 48), "bucardo_kick_" + strings.Repeat("x", 48)},
		{strings.Repeat("x", 49), "bkick_" + strings.Repeat("x", 49)},
		{strings.Repeat("x", 63), ""},
	} {
		if got := bucardoKickName(c.sync); got != c.want {
			t.Errorf("%d chars: %q, want %q", len(c.sync), got, c.want)
		}
	}
}

// TestBucardoDeltaKept: a table's bucardo_delta trigger stays when an
// active Bucardo sync not taken over reads it.
func TestBucardoDeltaKept(t *testing.T) {
	bc := bucardoimport.Catalog{
		Goats: []bucardoimport.Goat{{ID: 1, Schema: "public", Name: "a"}, {ID: 2, Schema: "public", Name: "b"}, {ID: 3, Schema: "s", Name: "c"}},
		Herds: []bucardoimport.Herd{{Name: "h1", Goats: []int{1, 2}}, {Name: "h2", Goats: []int{2}}, {Name: "h3", Goats: []int{3}}},
		Syncs: []bucardoimport.Sync{
			{Name: "one", Herd: "h1", Status: "active"},
			{Name: "two", Herd: "h2", Status: "active"},
			{Name: "off", Herd: "h3", Status: "inactive"},
		},
	}
	for _, c := range []struct {
		names []string
		want  []string
	}{
		{[]string{"one"}, []string{"public.b"}},
		{[]string{"two"}, []string{"public.a", "public.b"}},
		{[]string{"one", "two", "off"}, nil},
	} {
		got := slices.Sorted(maps.Keys(bucardoDeltaKept(bc, c.names)))
		if !slices.Equal(got, c.want) {
			t.Errorf("taking over %v keeps %v, want %v", c.names, got, c.want)
		}
	}
}
