package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/gobucardo/gobucardo/pkg/catalog"
)

func TestCallOutcome(t *testing.T) {
	refused := errors.New("rpc error: code = Unknown desc = no")
	timedOut := fmt.Errorf("resolve: %w", context.DeadlineExceeded)
	for _, tc := range []struct {
		name            string
		err             error
		runDone, exited bool
		want            string
	}{
		{"answered", nil, false, false, catalog.PluginCallOK},
		{"answered as the run ended", nil, true, false, catalog.PluginCallOK},
		{"answered an error", refused, false, false, catalog.PluginCallError},
		{"no answer in time", timedOut, false, false, catalog.PluginCallTimeout},
		{"no answer in time, and then died", timedOut, false, true, catalog.PluginCallTimeout},
		{"died during the call", refused, false, true, catalog.PluginCallCrash},
		{"cancelled with its run", refused, true, false, ""},
		{"cancelled with its run by a deadline", timedOut, true, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := callOutcome(tc.err, tc.runDone, tc.exited); got != tc.want {
				t.Errorf("callOutcome = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestCallCounts(t *testing.T) {
	var c callCounts
	done := make(chan struct{})
	for range 4 { // from several goroutines, as conflict handlers call
		go func() {
			defer func() { done <- struct{}{} }()
			for range 100 {
				c.add("b", catalog.PluginCallOK, time.Millisecond)
			}
		}()
	}
	for range 4 {
		<-done
	}
	c.add("a", catalog.PluginCallTimeout, 2*time.Second)
	c.add("b", catalog.PluginCallError, time.Second)
	got := c.take()
	want := []catalog.PluginCalls{
		{Code: "a", Outcome: catalog.PluginCallTimeout, Calls: 1, Seconds: 2},
		{Code: "b", Outcome: catalog.PluginCallError, Calls: 1, Seconds: 1},
		{Code: "b", Outcome: catalog.PluginCallOK, Calls: 400, Seconds: 0.4},
	}
	if len(got) != len(want) {
		t.Fatalf("take = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].Code != want[i].Code || got[i].Outcome != want[i].Outcome || got[i].Calls != want[i].Calls ||
			got[i].Seconds < want[i].Seconds-1e-9 || got[i].Seconds > want[i].Seconds+1e-9 {
			t.Errorf("take[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
	if again := c.take(); len(again) != 0 {
		t.Errorf("a second take = %+v, want nothing: take resets", again)
	}
	var none *callCounts
	none.add("a", catalog.PluginCallOK, time.Second) // a plugin started outside a Host is not counted
	if got := none.take(); got != nil {
		t.Errorf("nil take = %+v", got)
	}
}
