// Command window is a gobucardo run hook that lets a sync run only within a
// daily time window, for example at night: at before_sync, outside the
// window, it cancels the run (the controller tries again at its next kick or
// checktime). At other hook points it lets the run go on.
//
// Settings:
//
//	window=22:00-06:00   the window, HH:MM-HH:MM, start included, end
//	                     excluded; it may wrap past midnight (required)
//	zone=Europe/Paris    the time zone of the window (default UTC)
//
// Register it:
//
//	go build -o /usr/local/lib/gobucardo/window ./plugins/window
//	mcp add customcode nightly plugin=/usr/local/lib/gobucardo/window whenrun=before_sync sync=s1 window=22:00-06:00
package main

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"
	_ "time/tzdata" // zone= works on hosts without a time zone database

	"github.com/gobucardo/gobucardo/pkg/sdk"
)

func main() {
	sdk.Serve(sdk.Plugin{Name: "window", Hook: &window{now: time.Now}})
}

// span is a daily window in minutes since midnight in loc: [start, end),
// wrapping past midnight when end < start.
type span struct {
	start, end int
	loc        *time.Location
	text       string
}

// window cancels runs outside a daily time window.
type window struct {
	now  func() time.Time // the clock; tests set it
	span atomic.Pointer[span]
}

// Configure takes window=HH:MM-HH:MM and zone=NAME.
func (w *window) Configure(_ context.Context, settings map[string]string) error {
	text, zone := "", "UTC"
	for k, v := range settings {
		switch k {
		case "window":
			text = v
		case "zone":
			zone = v
		default:
			return fmt.Errorf("unknown setting %q: window takes window=HH:MM-HH:MM and zone=NAME", k)
		}
	}
	if text == "" {
		return fmt.Errorf("window needs window=HH:MM-HH:MM, the daily time window runs are allowed in")
	}
	loc, err := time.LoadLocation(zone)
	if err != nil {
		return fmt.Errorf("zone=%q: %w", zone, err)
	}
	s, err := parseSpan(text)
	if err != nil {
		return err
	}
	s.loc = loc
	w.span.Store(&s)
	return nil
}

func parseSpan(text string) (span, error) {
	from, to, ok := strings.Cut(text, "-")
	if !ok {
		return span{}, fmt.Errorf("window=%q: want HH:MM-HH:MM, such as 22:00-06:00", text)
	}
	start, err := parseClock(from)
	if err != nil {
		return span{}, fmt.Errorf("window=%q: %w", text, err)
	}
	end, err := parseClock(to)
	if err != nil {
		return span{}, fmt.Errorf("window=%q: %w", text, err)
	}
	if start == end {
		return span{}, fmt.Errorf("window=%q is empty: start and end are the same", text)
	}
	return span{start: start, end: end, text: text}, nil
}

// parseClock parses HH:MM into minutes since midnight.
func parseClock(s string) (int, error) {
	t, err := time.Parse("15:04", strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%q is not a time of day HH:MM", s)
	}
	return t.Hour()*60 + t.Minute(), nil
}

// contains reports whether t falls in the window.
func (s span) contains(t time.Time) bool {
	t = t.In(s.loc)
	m := t.Hour()*60 + t.Minute()
	if s.start < s.end {
		return s.start <= m && m < s.end
	}
	return m >= s.start || m < s.end
}

// Run cancels before_sync outside the window.
func (w *window) Run(_ context.Context, e sdk.HookEvent) (sdk.HookDecision, error) {
	if e.Hook != sdk.BeforeSync {
		return sdk.Continue(), nil
	}
	s := w.span.Load()
	if s == nil {
		return sdk.Cancel("window: no window configured (register the customcode with window=HH:MM-HH:MM)"), nil
	}
	now := w.now()
	if !s.contains(now) {
		return sdk.Cancel(fmt.Sprintf("outside the window %s %s (now %s)", s.text, s.loc, now.In(s.loc).Format("15:04"))), nil
	}
	return sdk.Continue(), nil
}
