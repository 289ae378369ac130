package mcp

import (
	"context"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gobucardo/gobucardo/pkg/catalog"
)

// The MCP's settings (catalog.Settings) are read when it starts and again on
// every reload (mcp reload, SIGHUP, and mcp set, which sends a reload): the
// purge and ps intervals change its tickers, stop grace applies to the next
// stop of a controller, and the log level changes its logger at once. The
// controllers read the settings themselves when they reload. What Options
// sets wins over the catalog (effectiveSettings).

// effectiveSettings returns the settings s with what o pins: a positive
// PurgeInterval or StopGrace, a negative PurgeInterval (no purge), a
// LogLevel, and MetricsAddr unless it follows the setting.
func effectiveSettings(o Options, s catalog.Settings) catalog.Settings {
	if !o.MetricsFollowSetting {
		s.MetricsAddr = o.MetricsAddr
	}
	switch {
	case o.PurgeInterval > 0:
		s.PurgeInterval = o.PurgeInterval
	case o.PurgeInterval < 0:
		s.PurgeInterval = 0
	}
	if o.StopGrace > 0 {
		s.StopGrace = o.StopGrace
	}
	if o.LogLevel != "" {
		s.LogLevel = o.LogLevel
	}
	return s
}

// ticker is a time.Ticker whose period can change; a period of 0 or less
// stops it, and its channel is then nil (never ready).
type ticker struct {
	t     *time.Ticker
	every time.Duration
}

// set makes the ticker tick every d from now (unchanged if d is its period).
func (k *ticker) set(d time.Duration) {
	switch {
	case d == k.every:
	case d <= 0:
		k.stop()
	case k.t == nil:
		k.t = time.NewTicker(d)
	default:
		k.t.Reset(d)
	}
	k.every = max(d, 0)
}

// C is the ticker's channel, nil while it is stopped.
func (k *ticker) C() <-chan time.Time {
	if k.t == nil {
		return nil
	}
	return k.t.C
}

func (k *ticker) stop() {
	if k.t != nil {
		k.t.Stop()
		k.t = nil
	}
}

// tickers are the main loop's timers that follow the settings.
type tickers struct {
	publish, purge ticker
}

func (t *tickers) stop() {
	t.publish.stop()
	t.purge.stop()
}

// stopGrace is how long a controller may take to stop, as last read.
func (d *daemon) stopGrace() time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.settings.StopGrace
}

// loadSettings reads the settings and applies them; when the catalog
// cannot be read, those in effect stay.
func (d *daemon) loadSettings(ctx context.Context, cc *catalog.Conn, t *tickers) {
	conn, err := cc.Get(ctx)
	if err != nil {
		d.log.Warn("cannot read the settings; keeping those in effect", zap.Error(err))
		return
	}
	s, err := catalog.LoadSettings(ctx, conn)
	if err != nil {
		cc.Failed(err)
		d.log.Warn("cannot read the settings; keeping those in effect", zap.Error(err))
		return
	}
	for _, ig := range s.Ignored {
		d.log.Warn("setting not understood by this build: its default applies", zap.String("setting", ig))
	}
	d.applySettings(effectiveSettings(d.o, s), t)
}

// applySettings puts s in effect; a metrics address that cannot be bound
// leaves the one in effect.
func (d *daemon) applySettings(s catalog.Settings, t *tickers) {
	d.mu.Lock()
	old := d.settings
	d.mu.Unlock()
	s.MetricsAddr = d.rebindMetrics(old.MetricsAddr, s.MetricsAddr)
	d.mu.Lock()
	d.settings = s
	d.mu.Unlock()
	if d.o.Level != nil {
		if l, err := zapcore.ParseLevel(s.LogLevel); err == nil {
			d.o.Level.SetLevel(l)
		}
	}
	t.publish.set(s.PSInterval)
	t.purge.set(s.PurgeInterval)
	var fields []zap.Field
	add := func(name, was, now string) {
		if was != now {
			fields = append(fields, zap.String(name, now))
		}
	}
	dur := catalog.FormatDuration
	add(catalog.SettingPurgeInterval, dur(old.PurgeInterval), dur(s.PurgeInterval))
	add(catalog.SettingPSInterval, dur(old.PSInterval), dur(s.PSInterval))
	add(catalog.SettingStopGrace, dur(old.StopGrace), dur(s.StopGrace))
	add(catalog.SettingLogLevel, old.LogLevel, s.LogLevel)
	add(catalog.SettingMetricsAddr, old.MetricsAddr, s.MetricsAddr)
	if len(fields) > 0 {
		d.log.Info("settings in effect", fields...)
	}
}
