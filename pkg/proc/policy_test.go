package proc_test

import (
	"math"
	"testing"
	"time"

	"github.com/gobucardo/gobucardo/pkg/proc"
)

func TestDelay(t *testing.T) {
	const ms = time.Millisecond
	def := proc.DefaultPolicy()
	tests := []struct {
		name     string
		policy   proc.Policy
		failures int
		want     time.Duration
	}{
		{"default first", def, 1, 500 * ms},
		{"default second", def, 2, time.Second},
		{"default third", def, 3, 2 * time.Second},
		{"default sixth", def, 6, 16 * time.Second},
		{"default capped", def, 7, 30 * time.Second},
		{"default huge count", def, 1 << 30, 30 * time.Second},
		{"zero failures count as one", def, 0, 500 * ms},
		{"negative failures count as one", def, -5, 500 * ms},
		{"fractional multiplier", proc.Policy{Initial: 100 * ms, Multiplier: 1.5, Max: time.Second}, 3, 225 * ms},
		{"multiplier below one is constant", proc.Policy{Initial: 100 * ms, Multiplier: 0.5}, 4, 100 * ms},
		{"no max", proc.Policy{Initial: time.Second, Multiplier: 10}, 4, 1000 * time.Second},
		{"no max overflows to max duration", proc.Policy{Initial: time.Second, Multiplier: 10}, 100, math.MaxInt64},
		{"negative initial", proc.Policy{Initial: -time.Second, Multiplier: 2, Max: time.Minute}, 3, 0},
		{"zero policy", proc.Policy{}, 3, 0},
		{"zero initial infinite multiplier", proc.Policy{Multiplier: math.Inf(1), Max: time.Second}, 2, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.policy.Delay(tt.failures); got != tt.want {
				t.Errorf("Delay(%d) = %v, want %v", tt.failures, got, tt.want)
			}
		})
	}
}

func TestNext(t *testing.T) {
	def := proc.DefaultPolicy()
	tests := []struct {
		name      string
		policy    proc.Policy
		failures  int
		ran       time.Duration
		wantCount int
		wantDelay time.Duration
	}{
		{"first failure", def, 0, time.Second, 1, 500 * time.Millisecond},
		{"crash loop", def, 3, time.Second, 4, 4 * time.Second},
		{"crash loop capped", def, 10, 0, 11, 30 * time.Second},
		{"ran long enough resets", def, 10, time.Minute, 1, 500 * time.Millisecond},
		{"ran longer resets", def, 10, time.Hour, 1, 500 * time.Millisecond},
		{"just short of reset", def, 2, time.Minute - 1, 3, 2 * time.Second},
		{"no reset", proc.Policy{Initial: time.Second, Multiplier: 2, Max: time.Minute}, 2, time.Hour, 3, 4 * time.Second},
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
