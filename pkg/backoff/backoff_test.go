package backoff_test

import (
	"math"
	"testing"
	"time"

	"github.com/gobucardo/gobucardo/pkg/backoff"
)

const ms = time.Millisecond

// The policies the module uses, for the cases below.
var (
	restart   = backoff.Policy{Initial: 500 * ms, Max: 30 * time.Second, Multiplier: 2, ResetAfter: time.Minute} // mcp: controllers
	runRetry  = backoff.Policy{Initial: 100 * ms, Max: 5 * time.Second, Multiplier: 2}                           // replicate: RunRetrying
	reconnect = backoff.Policy{Initial: 250 * ms, Max: 10 * time.Second, Multiplier: 2}                          // pgnotify: Listener
)

func TestDelay(t *testing.T) {
	tests := []struct {
		name     string
		policy   backoff.Policy
		failures int
		want     time.Duration
	}{
		{"restart first", restart, 1, 500 * ms},
		{"restart second", restart, 2, time.Second},
		{"restart third", restart, 3, 2 * time.Second},
		{"restart sixth", restart, 6, 16 * time.Second},
		{"restart capped", restart, 7, 30 * time.Second},
		{"restart huge count", restart, 1 << 30, 30 * time.Second},
		{"zero failures count as one", restart, 0, 500 * ms},
		{"negative failures count as one", restart, -5, 500 * ms},
		{"run retry fifth", runRetry, 5, 1600 * ms},
		{"run retry capped", runRetry, 7, 5 * time.Second},
		{"reconnect first", reconnect, 1, 250 * ms},
		{"reconnect sixth", reconnect, 6, 8 * time.Second},
		{"reconnect capped", reconnect, 7, 10 * time.Second},
		{"cap below initial", backoff.Policy{Initial: time.Second, Max: 100 * ms, Multiplier: 2}, 1, 100 * ms},
		{"fractional multiplier", backoff.Policy{Initial: 100 * ms, Multiplier: 1.5, Max: time.Second}, 3, 225 * ms},
		{"multiplier below one is constant", backoff.Policy{Initial: 100 * ms, Multiplier: 0.5}, 4, 100 * ms},
		{"no multiplier is constant", backoff.Policy{Initial: 100 * ms, Max: time.Second}, 4, 100 * ms},
		{"no max", backoff.Policy{Initial: time.Second, Multiplier: 10}, 4, 1000 * time.Second},
		{"no max overflows to max duration", backoff.Policy{Initial: time.Second, Multiplier: 10}, 100, math.MaxInt64},
		{"negative initial", backoff.Policy{Initial: -time.Second, Multiplier: 2, Max: time.Minute}, 3, 0},
		{"zero policy", backoff.Policy{}, 3, 0},
		{"zero initial infinite multiplier", backoff.Policy{Multiplier: math.Inf(1), Max: time.Second}, 2, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.policy.Delay(tt.failures); got != tt.want {
				t.Errorf("Delay(%d) = %v, want %v", tt.failures, got, tt.want)
			}
		})
	}
}

// TestDelaySequence: the waits of consecutive failures double up to the cap
// and stay there.
func TestDelaySequence(t *testing.T) {
	p := backoff.Policy{Initial: 100, Max: 1000, Multiplier: 2}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, w := range want {
		if got := p.Delay(i + 1); got != w {
			t.Errorf("Delay(%d) = %v, want %v", i+1, got, w)
		}
	}
}

func TestNext(t *testing.T) {
	tests := []struct {
		name      string
		policy    backoff.Policy
		failures  int
		ran       time.Duration
		wantCount int
		wantDelay time.Duration
	}{
		{"first failure", restart, 0, time.Second, 1, 500 * ms},
		{"negative count", restart, -3, time.Second, 1, 500 * ms},
		{"crash loop", restart, 3, time.Second, 4, 4 * time.Second},
		{"crash loop capped", restart, 10, 0, 11, 30 * time.Second},
		{"ran long enough resets", restart, 10, time.Minute, 1, 500 * ms},
		{"ran longer resets", restart, 10, time.Hour, 1, 500 * ms},
		{"just short of reset", restart, 2, time.Minute - 1, 3, 2 * time.Second},
		{"no reset", backoff.Policy{Initial: time.Second, Multiplier: 2, Max: time.Minute}, 2, time.Hour, 3, 4 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, d := tt.policy.Next(tt.failures, tt.ran)
			if n != tt.wantCount || d != tt.wantDelay {
				t.Errorf("Next(%d, %v) = %d, %v; want %d, %v", tt.failures, tt.ran, n, d, tt.wantCount, tt.wantDelay)
			}
		})
	}
}
