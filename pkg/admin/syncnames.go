package admin

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gobucardo/gobucardo/pkg/catalog"
)

// allSyncs is the argument that names every sync, as in Bucardo ("mcp kick
// all"); no sync can be called that (catalog.ValidName).
const allSyncs = "all"

// isSyncPattern reports whether a sync argument names several syncs: all,
// or a name with the wildcards % (Bucardo's, as in SQL LIKE) or * (as mcp
// list takes them).
func isSyncPattern(arg string) bool {
	return strings.EqualFold(arg, allSyncs) || strings.ContainsAny(arg, "%*")
}

// resolveSyncs turns the sync arguments of kick, pause, resume, activate,
// deactivate and status into sync names, from the names of the syncs that
// exist. An argument is a sync's name, all (every sync), or a pattern in
// which % and * stand for any run of characters ("web%"); _ is an ordinary
// character, as in Bucardo, since sync names have many. The names come back
// in the order of the arguments, each pattern's matches in the order of
// existing, and each name once. A name that is not a sync, or a pattern
// (all too) that matches none, is an error naming it, so that nothing is
// done at all.
func resolveSyncs(args, existing []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	add := func(n string) {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	for _, a := range args {
		if !isSyncPattern(a) {
			if !contains(existing, a) {
				return nil, &catalog.NotFoundError{Kind: catalog.KindSync, Name: a}
			}
			add(a)
			continue
		}
		match := func(string) bool { return true }
		if !strings.EqualFold(a, allSyncs) {
			// Sync names have no dots or quotes: a pattern with them
			// matches no sync, nor does one ParseNamePattern refuses.
			np, err := catalog.ParseNamePattern(a)
			match = func(s string) bool { return err == nil && np.Match("", s) }
		}
		matched := false
		for _, s := range existing {
			if match(s) {
				matched = true
				add(s)
			}
		}
		if !matched {
			if strings.EqualFold(a, allSyncs) {
				return nil, catalog.Invalidf("%q names every sync, and there is none: mcp add sync adds one", a)
			}
			return nil, catalog.Invalidf("no sync matches %q: mcp list syncs shows the known ones", a)
		}
	}
	return out, nil
}

// syncArgs resolves the sync arguments of a command against the catalog
// (see resolveSyncs).
func syncArgs(ctx context.Context, q catalog.Querier, args []string) ([]string, error) {
	syncs, err := catalog.ListSyncs(ctx, q)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(syncs))
	for i, s := range syncs {
		names[i] = s.Name
	}
	return resolveSyncs(args, names)
}

// bareSeconds is a timeout as Bucardo's kick reads it: a whole number of
// seconds.
var bareSeconds = regexp.MustCompile(`^[0-9]+$`)

// kickArgs splits mcp kick's arguments into syncs and a timeout: a last
// argument that is a whole number is a timeout in seconds, as Bucardo reads
// "kick SYNC 10" (no sync can be named so: names begin with a letter).
// set says whether the number was there; 0 waits as long as it takes, as
// --timeout 0 does.
func kickArgs(args []string) (syncs []string, timeout time.Duration, set bool, err error) {
	if len(args) == 0 || !bareSeconds.MatchString(args[len(args)-1]) {
		return args, 0, false, nil
	}
	last := args[len(args)-1]
	secs, err := strconv.ParseInt(last, 10, 32)
	if err != nil {
		return nil, 0, false, usagef("kick: timeout %s seconds is too long", last)
	}
	return args[:len(args)-1], time.Duration(secs) * time.Second, true, nil
}
