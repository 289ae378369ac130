package admin

import (
	"cmp"
	"sort"
	"strings"
	"time"

	"github.com/gobucardo/gobucardo/pkg/catalog"
)

// statusSorts are the orders mcp status --sort knows, by the column they
// sort on. Each sorts by the value the column shows, smallest first: the
// ages of the last good and bad runs (so the most recent first), the time
// the last good run took; a sync without such a run sorts last, as if its
// value were endless. Ties go by name.
var statusSorts = map[string]func(a, b syncStatus) int{
	"name":     func(a, b syncStatus) int { return strings.Compare(a.Name, b.Name) },
	"state":    func(a, b syncStatus) int { return strings.Compare(a.State, b.State) },
	"lastgood": func(a, b syncStatus) int { return compareAges(a.LastGood, b.LastGood) },
	"lastbad":  func(a, b syncStatus) int { return compareAges(a.LastBad, b.LastBad) },
	"time":     func(a, b syncStatus) int { return compareTook(a.LastGood, b.LastGood) },
	"lag":      compareLags,
}

// statusSortAliases are other names of the sort keys.
var statusSortAliases = map[string]string{"good": "lastgood", "bad": "lastbad", "duration": "time"}

// statusSortKeys lists the keys for messages and help.
func statusSortKeys() string {
	keys := make([]string, 0, len(statusSorts))
	for k := range statusSorts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return strings.Join(keys, ", ")
}

// statusOrder parses a --sort value: a column name (case, spaces, _ and -
// within it do not matter: "Last good", last_good), reversed when it
// begins with -.
func statusOrder(key string) (func(a, b syncStatus) int, error) {
	k := strings.TrimSpace(key)
	reverse := strings.HasPrefix(k, "-")
	k = strings.Map(func(r rune) rune {
		if r == ' ' || r == '_' || r == '-' {
			return -1
		}
		return r
	}, strings.ToLower(k))
	if a, ok := statusSortAliases[k]; ok {
		k = a
	}
	by, ok := statusSorts[k]
	if !ok {
		return nil, usagef("--sort %q: sort by %s (-KEY reverses)", key, statusSortKeys())
	}
	return func(a, b syncStatus) int {
		c := by(a, b)
		if reverse {
			c = -c
		}
		if c == 0 {
			c = strings.Compare(a.Name, b.Name)
		}
		return c
	}, nil
}

// compareLags compares the lags: the smallest first, an unknown one (a
// source could not be read) last.
func compareLags(a, b syncStatus) int {
	if c := compareMissing(!a.Unknown, !b.Unknown); c != 0 || a.Unknown {
		return c
	}
	return cmp.Compare(a.LagSeconds, b.LagSeconds)
}

// compareAges compares how long ago two runs ended: the later end first,
// a run missing or not ended last.
func compareAges(a, b *catalog.RunSummary) int {
	ended := func(r *catalog.RunSummary) (time.Time, bool) {
		if r == nil || r.Ended == nil {
			return time.Time{}, false
		}
		return *r.Ended, true
	}
	ta, oka := ended(a)
	tb, okb := ended(b)
	if c := compareMissing(oka, okb); c != 0 || !oka {
		return c
	}
	return tb.Compare(ta)
}

// compareTook compares how long two runs took, a missing run last.
func compareTook(a, b *catalog.RunSummary) int {
	if c := compareMissing(a != nil, b != nil); c != 0 || a == nil {
		return c
	}
	return cmp.Compare(a.Duration, b.Duration)
}

// compareMissing puts what is there before what is not.
func compareMissing(aThere, bThere bool) int {
	switch {
	case aThere == bThere:
		return 0
	case aThere:
		return -1
	}
	return 1
}
