package catalog

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gobucardo/gobucardo/pkg/pgtest"
	"github.com/gobucardo/gobucardo/schema"
)

func TestParseSetting(t *testing.T) {
	tests := []struct {
		name, setting, value string
		want                 string
		err                  string // part of the error; "" for none
	}{
		{"duration canonical", SettingPurgeInterval, "5m", "5m", ""},
		{"duration mixed", SettingPurgeInterval, "1h30m", "1h30m", ""},
		{"duration in seconds", SettingPurgeInterval, "90", "1m30s", ""},
		{"duration spaces", SettingStopGrace, " 20s ", "20s", ""},
		{"duration zero turns purge off", SettingPurgeInterval, "0", "0", ""},
		{"duration off turns purge off", SettingPurgeInterval, "off", "0", ""},
		{"duration zero where it cannot be off", SettingStopGrace, "0", "", "stop_grace must be between 1s and 1h, not 0"},
		{"duration not a duration", SettingPurgeInterval, "abc", "", `purge_interval takes a duration such as 30s, 5m or 1h (0: never), not "abc"`},
		{"duration empty", SettingPSInterval, "", "", "ps_interval takes a duration"},
		{"duration negative", SettingRunRetryMax, "-5s", "", "run_retry_max takes a duration"},
		{"duration below the minimum", SettingPSInterval, "10ms", "", "ps_interval must be between 100ms and 10s, not 10ms"},
		{"duration above the maximum", SettingTargetRetryMax, "2h", "", "target_retry_max must be between 500ms and 1h, not 2h"},
		{"duration at the maximum", SettingRunRetryMax, "24h", "24h", ""},
		{"duration sub-second", SettingRunRetryMax, "750ms", "750ms", ""},
		{"integer", SettingKidAttempts, "3", "3", ""},
		{"integer leading zero", SettingKidAttempts, "007", "7", ""},
		{"integer not a number", SettingKidAttempts, "five", "", `kid_attempts takes a whole number from 1 to 100, not "five"`},
		{"integer fraction", SettingKidAttempts, "2.5", "", "kid_attempts takes a whole number"},
		{"integer zero", SettingKidAttempts, "0", "", "kid_attempts must be from 1 to 100, not 0"},
		{"integer too big", SettingKidAttempts, "1000", "", "kid_attempts must be from 1 to 100, not 1000"},
		{"address", SettingMetricsAddr, "127.0.0.1:9187", "127.0.0.1:9187", ""},
		{"address any host", SettingMetricsAddr, ":9187", ":9187", ""},
		{"address ipv6", SettingMetricsAddr, "[::1]:9187", "[::1]:9187", ""},
		{"address empty turns metrics off", SettingMetricsAddr, "", "", ""},
		{"address without port", SettingMetricsAddr, "localhost", "", `metrics_addr takes an address as host:port such as 127.0.0.1:9187, or nothing for none, not "localhost"`},
		{"address bad port", SettingMetricsAddr, "localhost:http", "", "metrics_addr takes an address"},
		{"address port too big", SettingMetricsAddr, "localhost:70000", "", "metrics_addr takes an address"},
		{"log level", SettingLogLevel, "debug", "debug", ""},
		{"log level upper case", SettingLogLevel, "WARN", "warn", ""},
		{"log level warning", SettingLogLevel, "warning", "warn", ""},
		{"log level unknown", SettingLogLevel, "verbose", "", `log_level takes a log level: debug, info, warn, error, not "verbose"`},
		{"unknown setting", "nosuch", "1", "", `unknown setting "nosuch": the settings are kid_attempts, log_level, metrics_addr, ps_interval, purge_interval, run_retry_max, stop_grace, target_retry_max`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSetting(tt.setting, tt.value)
			if tt.err == "" {
				if err != nil || got != tt.want {
					t.Fatalf("ParseSetting(%s, %q) = %q, %v; want %q", tt.setting, tt.value, got, err, tt.want)
				}
				return
			}
			var inv *InvalidError
			if err == nil || !strings.Contains(err.Error(), tt.err) || !errors.As(err, &inv) {
				t.Fatalf("ParseSetting(%s, %q) = %q, %v; want an InvalidError with %q", tt.setting, tt.value, got, err, tt.err)
			}
			if strings.Count(err.Error(), ". ") > 0 || strings.Contains(err.Error(), "\n") {
				t.Errorf("error is more than one sentence: %q", err)
			}
		})
	}
}

// TestSettingDefaultsParse: every default is a valid value in canonical
// form, and DefaultSettings has them all.
func TestSettingDefaultsParse(t *testing.T) {
	for _, d := range SettingDefs() {
		got, err := ParseSetting(d.Name, d.Default)
		if err != nil || got != d.Default {
			t.Errorf("default of %s: ParseSetting(%q) = %q, %v", d.Name, d.Default, got, err)
		}
		if d.Description == "" {
			t.Errorf("%s has no description", d.Name)
		}
	}
	if !slices.IsSortedFunc(SettingDefs(), func(a, b SettingDef) int { return strings.Compare(a.Name, b.Name) }) {
		t.Error("settings are not sorted by name")
	}
	want := Settings{PurgeInterval: time.Minute, PSInterval: time.Second, StopGrace: 15 * time.Second,
		RunRetryMax: 30 * time.Second, TargetRetryMax: 5 * time.Second, KidAttempts: 5, MetricsAddr: "", LogLevel: "info"}
	if got := DefaultSettings(); !settingsEqual(got, want) {
		t.Errorf("DefaultSettings() = %+v, want %+v", got, want)
	}
}

func settingsEqual(a, b Settings) bool {
	return a.PurgeInterval == b.PurgeInterval && a.PSInterval == b.PSInterval && a.StopGrace == b.StopGrace &&
		a.RunRetryMax == b.RunRetryMax && a.TargetRetryMax == b.TargetRetryMax && a.KidAttempts == b.KidAttempts &&
		a.MetricsAddr == b.MetricsAddr && a.LogLevel == b.LogLevel && slices.Equal(a.Ignored, b.Ignored)
}

func TestSettingsFrom(t *testing.T) {
	def := DefaultSettings()
	with := func(f func(*Settings)) Settings { s := def; f(&s); return s }
	tests := []struct {
		name    string
		vals    map[string]string
		want    Settings
		wantErr bool
	}{
		{"none", nil, def, false},
		{"every one", map[string]string{SettingPurgeInterval: "0", SettingPSInterval: "2s", SettingStopGrace: "1m",
			SettingRunRetryMax: "1h", SettingTargetRetryMax: "10s", SettingKidAttempts: "2", SettingMetricsAddr: ":9187", SettingLogLevel: "debug"},
			Settings{PSInterval: 2 * time.Second, StopGrace: time.Minute, RunRetryMax: time.Hour, TargetRetryMax: 10 * time.Second,
				KidAttempts: 2, MetricsAddr: ":9187", LogLevel: "debug"}, false},
		{"bad and unknown values keep their default", map[string]string{SettingKidAttempts: "x", "future": "1", SettingStopGrace: "3s"},
			with(func(s *Settings) {
				s.StopGrace = 3 * time.Second
				s.Ignored = []string{`future=1: unknown setting "future": the settings are kid_attempts, log_level, metrics_addr, ps_interval, purge_interval, run_retry_max, stop_grace, target_retry_max`,
					`kid_attempts=x: kid_attempts takes a whole number from 1 to 100, not "x"`}
			}), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SettingsFrom(tt.vals)
			if (err != nil) != tt.wantErr || !settingsEqual(got, tt.want) {
				t.Errorf("SettingsFrom = %+v, %v; want %+v (error: %v)", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseAssignments(t *testing.T) {
	tests := []struct {
		name string
		in   []SettingAssignment
		want []SettingAssignment
		err  string
	}{
		{"canonical values", []SettingAssignment{{"purge_interval", "120"}, {"LOG_LEVEL", "Debug"}},
			[]SettingAssignment{{"purge_interval", "2m"}, {"log_level", "debug"}}, ""},
		{"back to the default", []SettingAssignment{{"stop_grace", "DEFAULT"}}, []SettingAssignment{{"stop_grace", "default"}}, ""},
		{"one bad value refuses all", []SettingAssignment{{"kid_attempts", "3"}, {"purge_interval", "abc"}}, nil, "purge_interval takes a duration"},
		{"unknown name refuses all", []SettingAssignment{{"kid_attempts", "3"}, {"nosuch", "1"}}, nil, `unknown setting "nosuch"`},
		{"twice", []SettingAssignment{{"kid_attempts", "3"}, {"kid_attempts", "4"}}, nil, "setting kid_attempts is given twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseAssignments(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || got != nil {
					t.Fatalf("ParseAssignments = %v, %v; want error %q", got, err, tt.err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("ParseAssignments = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0", 500 * time.Millisecond: "500ms", 30 * time.Second: "30s", time.Minute: "1m", 90 * time.Second: "1m30s",
		time.Hour: "1h", 90 * time.Minute: "1h30m", time.Hour + time.Second: "1h0m1s", 24 * time.Hour: "24h",
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

// TestSettingsRoundTrip: what mcp set stores, mcp show and the daemons read
// back; a refused set changes nothing; default removes a setting.
func TestSettingsRoundTrip(t *testing.T) {
	_, conn := installed(t)
	ctx := context.Background()
	if s, err := LoadSettings(ctx, conn); err != nil || !settingsEqual(s, DefaultSettings()) {
		t.Fatalf("LoadSettings of a new catalog = %+v, %v", s, err)
	}
	set := func(as ...SettingAssignment) error {
		return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			_, err := SetSettings(ctx, tx, as)
			return err
		})
	}
	if err := set(SettingAssignment{"purge_interval", "90"}, SettingAssignment{"log_level", "DEBUG"}); err != nil {
		t.Fatal(err)
	}
	s, err := LoadSettings(ctx, conn)
	if err != nil || s.PurgeInterval != 90*time.Second || s.LogLevel != "debug" || s.KidAttempts != 5 {
		t.Fatalf("LoadSettings after set = %+v, %v", s, err)
	}
	// A bad value among good ones: nothing changes.
	err = set(SettingAssignment{"kid_attempts", "2"}, SettingAssignment{"stop_grace", "forever"})
	if err == nil || !strings.Contains(err.Error(), "stop_grace takes a duration") {
		t.Fatalf("set with a bad value = %v", err)
	}
	shown, err := ShowSettings(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]SettingValue{}
	for _, v := range shown {
		byName[v.Name] = v
	}
	if len(shown) != len(SettingDefs()) {
		t.Errorf("ShowSettings shows %d settings, want %d", len(shown), len(SettingDefs()))
	}
	if v := byName["purge_interval"]; v.Value != "1m30s" || !v.Set || v.Changed == nil || v.Default != "1m" {
		t.Errorf("purge_interval shown as %+v", v)
	}
	if v := byName["kid_attempts"]; v.Value != "5" || v.Set || v.Changed != nil {
		t.Errorf("kid_attempts (refused) shown as %+v", v)
	}
	// Set again moves changed; default removes it.
	before := *byName["purge_interval"].Changed
	if err := set(SettingAssignment{"purge_interval", "2m"}, SettingAssignment{"log_level", "default"}); err != nil {
		t.Fatal(err)
	}
	shown, _ = ShowSettings(ctx, conn)
	for _, v := range shown {
		switch v.Name {
		case "purge_interval":
			if v.Value != "2m" || !v.Changed.After(before) {
				t.Errorf("purge_interval after a second set: %+v (first set at %v)", v, before)
			}
		case "log_level":
			if v.Set || v.Value != "info" {
				t.Errorf("log_level after default: %+v", v)
			}
		}
	}
	// A value written by hand that this build does not take is ignored.
	if _, err := conn.Exec(ctx, "INSERT INTO gobucardo.setting (name, value) VALUES ('kid_attempts', 'lots')"); err != nil {
		t.Fatal(err)
	}
	s, err = LoadSettings(ctx, conn)
	if err != nil || s.KidAttempts != 5 || len(s.Ignored) != 1 || s.PurgeInterval != 2*time.Minute {
		t.Errorf("LoadSettings with a bad stored value = %+v, %v", s, err)
	}
}

// TestUpgradeFromVersion3: a catalog installed by the migrations up to 3
// (the release before settings) is upgraded by Install, keeps its data, and
// takes settings afterwards; before the upgrade CheckVersion asks for it.
func TestUpgradeFromVersion3(t *testing.T) {
	conn := catalogOfVersion(t, 3, "settings")
	ctx := context.Background()
	if _, err := conn.Exec(ctx, "INSERT INTO gobucardo.db (name, dbname) VALUES ('A', 'a')"); err != nil {
		t.Fatal(err)
	}
	if err := CheckVersion(ctx, conn); err == nil || !strings.Contains(err.Error(), "run mcp install to upgrade it") {
		t.Fatalf("CheckVersion of a version 3 catalog = %v", err)
	}
	res, err := Install(ctx, conn)
	if err != nil || res.From != 3 || res.To != schema.Latest() {
		t.Fatalf("Install over version 3 = %+v, %v", res, err)
	}
	if err := CheckVersion(ctx, conn); err != nil {
		t.Fatalf("CheckVersion after the upgrade = %v", err)
	}
	var dbs int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM gobucardo.db WHERE name = 'A'").Scan(&dbs); err != nil || dbs != 1 {
		t.Fatalf("db A after the upgrade: %d, %v", dbs, err)
	}
	if _, err := SetSettings(ctx, conn, []SettingAssignment{{"kid_attempts", "3"}}); err != nil {
		t.Fatal(err)
	}
	if s, err := LoadSettings(ctx, conn); err != nil || s.KidAttempts != 3 {
		t.Fatalf("LoadSettings after the upgrade = %+v, %v", s, err)
	}
}

// catalogOfVersion returns a connection to a fresh main database with the
// catalog as the release of version n installed it: the migrations up to
// n, recorded as Install records them. The next migration must be next.
func catalogOfVersion(t *testing.T, n int, next string) *pgx.Conn {
	t.Helper()
	c := pgtest.Shared(t)
	conn := c.Connect(t, c.NewDB(t))
	ctx := context.Background()
	ms, err := schema.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) <= n || ms[n].Name != next {
		t.Fatalf("migration %d is not %s (%d migrations)", n+1, next, len(ms))
	}
	old := `CREATE SCHEMA gobucardo;
		CREATE TABLE gobucardo.schema_migration (version integer PRIMARY KEY, name text NOT NULL, applied timestamptz NOT NULL DEFAULT now())`
	if _, err := conn.Exec(ctx, old); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms[:n] {
		if _, err := conn.Exec(ctx, m.SQL); err != nil {
			t.Fatalf("migration %d: %v", m.Version, err)
		}
		if _, err := conn.Exec(ctx, "INSERT INTO gobucardo.schema_migration (version, name) VALUES ($1, $2)", m.Version, m.Name); err != nil {
			t.Fatal(err)
		}
	}
	return conn
}
