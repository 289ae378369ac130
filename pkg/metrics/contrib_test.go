package metrics

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v2"
)

// contrib is the repository's contrib directory.
const contrib = "../../contrib"

// exposed returns the names of every series the MCP's registry can expose:
// the Catalog and Daemon collectors and the standard process and Go ones,
// with the _bucket, _sum and _count series of histograms.
func exposed(t *testing.T) map[string]bool {
	t.Helper()
	reg := NewRegistry(append(NewDaemon().Collectors(), &Catalog{})...)
	ch := make(chan *prometheus.Desc, 1000)
	go func() {
		// A registry is a collector: Describe lists what was registered.
		reg.Describe(ch)
		close(ch)
	}()
	fq := regexp.MustCompile(`fqName: "([^"]+)"`)
	names := map[string]bool{}
	for d := range ch {
		m := fq.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("no name in %s", d)
		}
		names[m[1]] = true
		for _, s := range []string{"_bucket", "_sum", "_count"} {
			names[m[1]+s] = true
		}
	}
	if !names["gobucardo_sync_runs_total"] || !names["gobucardo_sync_lag_seconds"] || !names["process_cpu_seconds_total"] {
		t.Fatalf("the registry lacks metrics it must have: %v", names)
	}
	return names
}

// metricName matches the names of metrics in a PromQL expression (ours and
// the standard collectors').
var metricName = regexp.MustCompile(`\b(gobucardo_[a-z0-9_]+|process_[a-z0-9_]+|go_[a-z0-9_]+)\b`)

// checkExpr checks that expr names at least one metric and only ones the
// MCP exposes.
func checkExpr(t *testing.T, where, expr string, names map[string]bool) {
	t.Helper()
	found := metricName.FindAllString(expr, -1)
	if len(found) == 0 {
		t.Errorf("%s: %q queries no gobucardo metric", where, expr)
	}
	for _, n := range found {
		if !names[n] {
			t.Errorf("%s: %q queries %s, which the MCP does not expose", where, expr, n)
		}
	}
}

// TestGrafanaDashboard: contrib/grafana/gobucardo.json is a dashboard whose
// every query names only metrics the MCP exposes.
func TestGrafanaDashboard(t *testing.T) {
	names := exposed(t)
	data, err := os.ReadFile(filepath.Join(contrib, "grafana", "gobucardo.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			ID      int    `json:"id"`
			Title   string `json:"title"`
			Targets []struct {
				RefID string `json:"refId"`
				Expr  string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("gobucardo.json: %v", err)
	}
	if dash.Title == "" || dash.UID == "" || len(dash.Panels) == 0 {
		t.Fatalf("gobucardo.json: title %q, uid %q, %d panels", dash.Title, dash.UID, len(dash.Panels))
	}
	ids := map[int]bool{}
	used := map[string]bool{}
	for _, p := range dash.Panels {
		if ids[p.ID] {
			t.Errorf("panel %q: id %d used twice", p.Title, p.ID)
		}
		ids[p.ID] = true
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			if q.RefID == "" {
				t.Errorf("panel %q: a query without refId", p.Title)
			}
			checkExpr(t, "panel "+p.Title, q.Expr, names)
			for _, n := range metricName.FindAllString(q.Expr, -1) {
				used[n] = true
			}
		}
	}
	for _, v := range dash.Templating.List {
		if v.Definition != "" {
			checkExpr(t, "variable "+v.Name, v.Definition, names)
		}
	}
	// Every gobucardo metric is on the dashboard.
	var missing []string
	for n := range names {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count")
		if strings.HasPrefix(n, "gobucardo_") && base == n && !used[n] && !used[n+"_bucket"] {
			missing = append(missing, n)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("metrics the dashboard does not show: %v", missing)
	}
}

// TestPrometheusAlerts: contrib/prometheus/alerts.yml is a rules file whose
// alerts query only metrics the MCP exposes; with promtool installed
// (Debian's prometheus package), promtool checks it and runs its unit tests
// (alerts_test.yml).
func TestPrometheusAlerts(t *testing.T) {
	names := exposed(t)
	path := filepath.Join(contrib, "prometheus", "alerts.yml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.UnmarshalStrict(data, &rules); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	alerts := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || alerts[r.Alert] {
				t.Errorf("group %s: alert name %q empty or used twice", g.Name, r.Alert)
			}
			alerts[r.Alert] = true
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("alert %s: severity %q", r.Alert, s)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("alert %s: a summary and a description are needed", r.Alert)
			}
			checkExpr(t, "alert "+r.Alert, r.Expr, names)
		}
	}
	for _, a := range []string{"GobucardoSyncLagHigh", "GobucardoSyncFailing", "GobucardoSyncNoRun", "GobucardoParkedRowsGrowing"} {
		if !alerts[a] {
			t.Errorf("alerts.yml has no %s", a)
		}
	}

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Log("promtool not installed (Debian: apt-get install prometheus): rules parsed, not checked by promtool")
		return
	}
	for _, args := range [][]string{{"check", "rules", path}, {"test", "rules", filepath.Join(contrib, "prometheus", "alerts_test.yml")}} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
