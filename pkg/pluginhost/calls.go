package pluginhost

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/gobucardo/gobucardo/pkg/catalog"
)

// callCounts counts the plugin calls of a kid, by customcode and outcome,
// from any goroutine, until take. A nil *callCounts counts nothing.
type callCounts struct {
	mu sync.Mutex
	by map[callKey]*catalog.PluginCalls
}

type callKey struct{ code, outcome string }

func (c *callCounts) add(code, outcome string, took time.Duration) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.by == nil {
		c.by = map[callKey]*catalog.PluginCalls{}
	}
	k := callKey{code, outcome}
	n := c.by[k]
	if n == nil {
		n = &catalog.PluginCalls{Code: code, Outcome: outcome}
		c.by[k] = n
	}
	n.Calls++
	n.Seconds += took.Seconds()
}

// take returns what was counted, by customcode then outcome, and resets.
func (c *callCounts) take() []catalog.PluginCalls {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	by := c.by
	c.by = nil
	c.mu.Unlock()
	out := make([]catalog.PluginCalls, 0, len(by))
	for _, n := range by {
		out = append(out, *n)
	}
	slices.SortFunc(out, func(a, b catalog.PluginCalls) int {
		return cmp.Or(cmp.Compare(a.Code, b.Code), cmp.Compare(a.Outcome, b.Outcome))
	})
	return out
}

// callOutcome is how a plugin call that returned err ended, for its count:
// "" when the run it belongs to was over first (runDone: the call was
// cancelled, not the plugin's doing, and is not counted); a timeout, a
// process that died (exited), an error the plugin answered, or ok.
func callOutcome(err error, runDone, exited bool) string {
	switch {
	case err == nil:
		return catalog.PluginCallOK
	case runDone:
		return ""
	case errors.Is(err, context.DeadlineExceeded):
		return catalog.PluginCallTimeout
	case exited:
		return catalog.PluginCallCrash
	default:
		return catalog.PluginCallError
	}
}
