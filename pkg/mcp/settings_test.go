package mcp

import (
	"testing"
	"time"

	"github.com/gobucardo/gobucardo/pkg/catalog"
)

// TestEffectiveSettings: what Options pins (mcp run's flags) wins over the
// catalog's settings; the rest comes from the catalog.
func TestEffectiveSettings(t *testing.T) {
	cat := catalog.DefaultSettings()
	cat.PurgeInterval, cat.StopGrace, cat.LogLevel = 5*time.Minute, time.Minute, "debug"
	tests := []struct {
		name string
		o    Options
		want func(s *catalog.Settings)
	}{
		{"nothing pinned", Options{}, func(*catalog.Settings) {}},
		{"purge interval pinned", Options{PurgeInterval: time.Second}, func(s *catalog.Settings) { s.PurgeInterval = time.Second }},
		{"purge off", Options{PurgeInterval: -1}, func(s *catalog.Settings) { s.PurgeInterval = 0 }},
		{"stop grace pinned", Options{StopGrace: 3 * time.Second}, func(s *catalog.Settings) { s.StopGrace = 3 * time.Second }},
		{"log level pinned", Options{LogLevel: "warn"}, func(s *catalog.Settings) { s.LogLevel = "warn" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := cat
			tt.want(&want)
			got := effectiveSettings(tt.o, cat)
			if got.PurgeInterval != want.PurgeInterval || got.StopGrace != want.StopGrace || got.LogLevel != want.LogLevel ||
				got.PSInterval != want.PSInterval || got.KidAttempts != want.KidAttempts {
				t.Errorf("effectiveSettings = %+v, want %+v", got, want)
			}
		})
	}
}

// TestTicker: a ticker's period changes, and 0 stops it.
func TestTicker(t *testing.T) {
	var k ticker
	if k.C() != nil {
		t.Fatal("a new ticker ticks")
	}
	k.set(time.Millisecond)
	if k.C() == nil {
		t.Fatal("no channel after set")
	}
	select {
	case <-k.C():
	case <-time.After(5 * time.Second):
		t.Fatal("no tick in 5s at 1ms")
	}
	k.set(time.Hour)
	for len(k.C()) > 0 { // a tick of the old period may be in
		<-k.C()
	}
	select {
	case <-k.C():
		t.Fatal("a tick at 1h after 50ms")
	case <-time.After(50 * time.Millisecond):
	}
	k.set(0)
	if k.C() != nil || k.every != 0 {
		t.Fatal("still ticking after set(0)")
	}
	k.set(time.Millisecond)
	select {
	case <-k.C():
	case <-time.After(5 * time.Second):
		t.Fatal("no tick after a restart")
	}
	k.stop()
}
