package catalog

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The settings an operator changes without a rebuild, with `mcp set
// NAME=VALUE` (Bucardo's set and show). They live in gobucardo.setting;
// a setting without a row has its default.
const (
	SettingPurgeInterval  = "purge_interval"
	SettingPSInterval     = "ps_interval"
	SettingStopGrace      = "stop_grace"
	SettingRunRetryMax    = "run_retry_max"
	SettingTargetRetryMax = "target_retry_max"
	SettingKidAttempts    = "kid_attempts"
	SettingMetricsAddr    = "metrics_addr"
	SettingLogLevel       = "log_level"
	// settingResetToDefault, as the value of mcp set, removes the setting.
	settingResetToDefault = "default"
)

// SettingKind is the type of a setting's value.
type SettingKind string

// The kinds of settings.
const (
	SettingKindDuration SettingKind = "duration"
	SettingKindInteger  SettingKind = "integer"
	SettingKindAddress  SettingKind = "address"
	SettingKindLogLevel SettingKind = "log level"
)

// SettingDef describes one setting: its name, kind, default (in canonical
// form) and what it does; min and max bound durations and integers.
type SettingDef struct {
	Name        string      `json:"name"`
	Kind        SettingKind `json:"kind"`
	Default     string      `json:"default"`
	Description string      `json:"description"`
	min, max    int64       // nanoseconds for durations
	zeroOff     bool        // a duration of 0 is allowed and turns the thing off
}

// logLevels are the levels log_level takes, from the most verbose.
var logLevels = []string{"debug", "info", "warn", "error"}

// settingDefs are the settings, by name.
var settingDefs = []SettingDef{
	{Name: SettingKidAttempts, Kind: SettingKindInteger, Default: "5", min: 1, max: 100,
		Description: "tries of one run in the kid after a serialization failure or deadlock, before the run fails"},
	{Name: SettingLogLevel, Kind: SettingKindLogLevel, Default: "info",
		Description: "level of the logs of the MCP, controllers and kids (mcp run --log-level wins)"},
	{Name: SettingMetricsAddr, Kind: SettingKindAddress, Default: "",
		Description: "host:port where mcp run serves Prometheus metrics; empty: none; a running MCP moves to a new address at reload, and keeps the old one if the new cannot be bound (mcp run --metrics-addr wins)"},
	{Name: SettingPSInterval, Kind: SettingKindDuration, Default: "1s", min: int64(100 * time.Millisecond), max: int64(10 * time.Second),
		Description: "how often the MCP publishes its process tree for mcp ps, also its heartbeat for mcp ping"},
	{Name: SettingPurgeInterval, Kind: SettingKindDuration, Default: "1m", min: int64(time.Second), max: int64(24 * time.Hour), zeroOff: true,
		Description: "how often the MCP deletes consumed deltas on the sources; 0: never (mcp run --purge-interval wins)"},
	{Name: SettingRunRetryMax, Kind: SettingKindDuration, Default: "30s", min: int64(500 * time.Millisecond), max: int64(24 * time.Hour),
		Description: "longest wait before a failed run is retried (the wait doubles from 500ms)"},
	{Name: SettingStopGrace, Kind: SettingKindDuration, Default: "15s", min: int64(time.Second), max: int64(time.Hour),
		Description: "how long a controller may take to finish its run and stop before it is killed"},
	{Name: SettingTargetRetryMax, Kind: SettingKindDuration, Default: "5s", min: int64(500 * time.Millisecond), max: int64(time.Hour),
		Description: "longest wait between two tries to reach a target left out of the runs (the wait doubles from 500ms)"},
}

// SettingDefs returns every setting, by name.
func SettingDefs() []SettingDef { return slices.Clone(settingDefs) }

// LookupSetting returns the setting called name.
func LookupSetting(name string) (SettingDef, bool) {
	i := slices.IndexFunc(settingDefs, func(d SettingDef) bool { return d.Name == name })
	if i < 0 {
		return SettingDef{}, false
	}
	return settingDefs[i], true
}

func settingNames() string {
	names := make([]string, len(settingDefs))
	for i, d := range settingDefs {
		names[i] = d.Name
	}
	return strings.Join(names, ", ")
}

// unknownSetting is the error for a name that is not a setting.
func unknownSetting(name string) error {
	return Invalidf("unknown setting %q: the settings are %s", name, settingNames())
}

// ParseSetting checks value for the setting called name and returns it in
// canonical form (durations as 30s, 1m30s; levels in lower case). Its
// errors are *InvalidError sentences naming the setting and the kind of
// value it takes.
func ParseSetting(name, value string) (string, error) {
	def, ok := LookupSetting(name)
	if !ok {
		return "", unknownSetting(name)
	}
	return def.parse(strings.TrimSpace(value))
}

func (d SettingDef) parse(v string) (string, error) {
	switch d.Kind {
	case SettingKindDuration:
		dur, err := ParseDuration(v)
		off := ""
		if d.zeroOff {
			off = " (0: never)"
		}
		if err != nil || v == "" {
			return "", Invalidf("%s takes a duration such as 30s, 5m or 1h%s, not %q", d.Name, off, v)
		}
		if (dur != 0 || !d.zeroOff) && (int64(dur) < d.min || int64(dur) > d.max) {
			return "", Invalidf("%s must be between %s and %s%s, not %s", d.Name, FormatDuration(time.Duration(d.min)),
				FormatDuration(time.Duration(d.max)), off, v)
		}
		return FormatDuration(dur), nil
	case SettingKindInteger:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return "", Invalidf("%s takes a whole number from %d to %d, not %q", d.Name, d.min, d.max, v)
		}
		if n < d.min || n > d.max {
			return "", Invalidf("%s must be from %d to %d, not %d", d.Name, d.min, d.max, n)
		}
		return strconv.FormatInt(n, 10), nil
	case SettingKindAddress:
		if v == "" {
			return "", nil
		}
		_, port, err := net.SplitHostPort(v)
		if p, perr := strconv.ParseUint(port, 10, 16); err != nil || perr != nil || (p == 0 && port != "0") {
			return "", Invalidf("%s takes an address as host:port such as 127.0.0.1:9187, or nothing for none, not %q", d.Name, v)
		}
		return v, nil
	case SettingKindLogLevel:
		l := strings.ToLower(v)
		if l == "warning" {
			l = "warn"
		}
		if !slices.Contains(logLevels, l) {
			return "", Invalidf("%s takes a log level: %s, not %q", d.Name, strings.Join(logLevels, ", "), v)
		}
		return l, nil
	}
	return "", fmt.Errorf("setting %s: unknown kind %q", d.Name, d.Kind)
}

// FormatDuration writes d as a user types it: 30s, 1m, 1h30m, 500ms, 0.
func FormatDuration(d time.Duration) string {
	if d == 0 {
		return "0"
	}
	s := d.String()
	if d%time.Minute == 0 {
		s = strings.TrimSuffix(s, "0s") // 1m0s
		if d%time.Hour == 0 {
			s = strings.TrimSuffix(s, "0m") // 1h0m0s
		}
	}
	return s
}

// Settings are the values in effect of every setting, typed.
type Settings struct {
	PurgeInterval  time.Duration // 0: no automatic purge
	PSInterval     time.Duration
	StopGrace      time.Duration
	RunRetryMax    time.Duration
	TargetRetryMax time.Duration
	KidAttempts    int
	MetricsAddr    string // empty: no metrics
	LogLevel       string // debug, info, warn or error
	// Ignored are the values stored in the catalog that this build does
	// not take (an unknown name or a bad value, as "name=value: why"):
	// their default applies.
	Ignored []string
}

// DefaultSettings returns the default of every setting.
func DefaultSettings() Settings {
	s, _ := SettingsFrom(nil)
	return s
}

// SettingsFrom returns the settings with the values of vals (name to value)
// and the defaults of the others. A value that does not parse, or an
// unknown name, is left in Ignored, and the error is the first of them.
func SettingsFrom(vals map[string]string) (Settings, error) {
	var s Settings
	var first error
	eff := map[string]string{}
	for _, d := range settingDefs {
		eff[d.Name] = d.Default
	}
	names := make([]string, 0, len(vals))
	for name := range vals {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		v, err := ParseSetting(name, vals[name])
		if err != nil {
			s.Ignored = append(s.Ignored, fmt.Sprintf("%s=%s: %v", name, vals[name], err))
			first = cmp.Or(first, err)
			continue
		}
		eff[name] = v
	}
	dur := func(name string) time.Duration {
		d, _ := ParseDuration(eff[name]) // canonical: it parses
		return d
	}
	s.PurgeInterval = dur(SettingPurgeInterval)
	s.PSInterval = dur(SettingPSInterval)
	s.StopGrace = dur(SettingStopGrace)
	s.RunRetryMax = dur(SettingRunRetryMax)
	s.TargetRetryMax = dur(SettingTargetRetryMax)
	s.KidAttempts, _ = strconv.Atoi(eff[SettingKidAttempts])
	s.MetricsAddr = eff[SettingMetricsAddr]
	s.LogLevel = eff[SettingLogLevel]
	return s, first
}

// LoadSettings reads the settings in one query; a stored value this build
// does not take is in Settings.Ignored and its default applies.
func LoadSettings(ctx context.Context, q Querier) (Settings, error) {
	vals, err := storedSettings(ctx, q)
	if err != nil {
		return Settings{}, err
	}
	s, _ := SettingsFrom(settingValues(vals))
	return s, nil
}

// SettingValue is one setting as the catalog has it, for mcp show.
type SettingValue struct {
	SettingDef
	Value   string     `json:"value"`
	Set     bool       `json:"set"`               // false: the default applies
	Changed *time.Time `json:"changed,omitempty"` // when it was set
}

type storedSetting struct {
	value   string
	changed time.Time
}

func storedSettings(ctx context.Context, q Querier) (map[string]storedSetting, error) {
	rows, err := q.Query(ctx, "SELECT name, value, changed FROM gobucardo.setting")
	if err != nil {
		return nil, fmt.Errorf("read settings: %w", err)
	}
	defer rows.Close()
	out := map[string]storedSetting{}
	for rows.Next() {
		var name string
		var s storedSetting
		if err := rows.Scan(&name, &s.value, &s.changed); err != nil {
			return nil, fmt.Errorf("read settings: %w", err)
		}
		out[name] = s
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read settings: %w", err)
	}
	return out, nil
}

func settingValues(stored map[string]storedSetting) map[string]string {
	vals := make(map[string]string, len(stored))
	for name, s := range stored {
		vals[name] = s.value
	}
	return vals
}

// ShowSettings returns every setting with its value, by name; a stored
// value this build does not take shows as it is stored.
func ShowSettings(ctx context.Context, q Querier) ([]SettingValue, error) {
	stored, err := storedSettings(ctx, q)
	if err != nil {
		return nil, err
	}
	out := make([]SettingValue, 0, len(settingDefs))
	for _, d := range settingDefs {
		v := SettingValue{SettingDef: d, Value: d.Default}
		if s, ok := stored[d.Name]; ok {
			changed := s.changed
			v.Value, v.Set, v.Changed = s.value, true, &changed
		}
		out = append(out, v)
	}
	return out, nil
}

// SettingAssignment is one NAME=VALUE of mcp set; the value "default"
// removes the setting, so that its default applies.
type SettingAssignment struct {
	Name, Value string
}

// ParseAssignments checks every assignment and returns them with their
// values in canonical form; the first bad one is the error (a sentence
// naming the setting and what it takes) and nothing is returned. A name
// given twice is an error too.
func ParseAssignments(as []SettingAssignment) ([]SettingAssignment, error) {
	out := make([]SettingAssignment, 0, len(as))
	seen := map[string]bool{}
	for _, a := range as {
		name := strings.ToLower(strings.TrimSpace(a.Name))
		if _, ok := LookupSetting(name); !ok {
			return nil, unknownSetting(a.Name)
		}
		if seen[name] {
			return nil, Invalidf("setting %s is given twice: give each once", name)
		}
		seen[name] = true
		v := strings.TrimSpace(a.Value)
		if !strings.EqualFold(v, settingResetToDefault) {
			var err error
			if v, err = ParseSetting(name, v); err != nil {
				return nil, err
			}
		} else {
			v = settingResetToDefault
		}
		out = append(out, SettingAssignment{Name: name, Value: v})
	}
	return out, nil
}

// SetSettings checks every assignment first (ParseAssignments) and, if all
// are good, stores them; on an error nothing is changed. Run it in a
// transaction to store them all or none.
func SetSettings(ctx context.Context, q Querier, as []SettingAssignment) ([]SettingAssignment, error) {
	parsed, err := ParseAssignments(as)
	if err != nil {
		return nil, err
	}
	for _, a := range parsed {
		if a.Value == settingResetToDefault {
			_, err = q.Exec(ctx, "DELETE FROM gobucardo.setting WHERE name = $1", a.Name)
		} else {
			_, err = q.Exec(ctx, `INSERT INTO gobucardo.setting (name, value) VALUES ($1, $2)
				ON CONFLICT (name) DO UPDATE SET value = excluded.value, changed = now()`, a.Name, a.Value)
		}
		if err != nil {
			return nil, fmt.Errorf("set %s: %w", a.Name, err)
		}
	}
	return parsed, nil
}
