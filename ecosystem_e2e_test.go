package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"

	"github.com/crucible-telemetry/crucible-telemetry/dashboards"
)

const rulesFile = "deploy/prometheus/crucible.rules.yml"

// TestRulesWithPromtool: the plain rule file and the operator's
// PrometheusRule pass promtool check rules, and the rules' unit tests pass.
func TestRulesWithPromtool(t *testing.T) {
	if testing.Short() {
		t.Skip("runs promtool: slow; runs without -short")
	}
	promtool := needTool(t, "promtool", installPrometheus)
	var pr struct {
		Spec yaml.Node `yaml:"spec"`
	}
	b, err := os.ReadFile("deploy/kubernetes/components/rules/prometheusrule.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &pr); err != nil {
		t.Fatal(err)
	}
	spec, err := yaml.Marshal(&pr.Spec)
	if err != nil {
		t.Fatal(err)
	}
	operator := filepath.Join(t.TempDir(), "prometheusrule-spec.yml")
	os.WriteFile(operator, spec, 0o644)
	for _, args := range [][]string{
		{"check", "rules", rulesFile},
		{"check", "rules", operator},
		{"test", "rules", "deploy/prometheus/crucible.rules_test.yml"},
	} {
		if out, err := exec.Command(promtool, args...).CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	if out, err := exec.Command(promtool, "check", "config", "deploy/prometheus/prometheus.yml").CombinedOutput(); err != nil {
		t.Errorf("promtool check config: %v\n%s", err, out)
	}
}

// ruleExprs reads every rule's expression from the rule file.
func ruleExprs(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []struct {
				Record, Alert, Expr string
			}
		}
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			out["rule "+r.Record+r.Alert] = r.Expr
		}
	}
	return out
}

// withBoolComparisons turns filtering comparisons against a number into
// comparisons returning 0 or 1, so that an alert's expression has data
// whenever its input has, firing or not.
func withBoolComparisons(t *testing.T, expr string) string {
	t.Helper()
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		t.Fatalf("%v\n%s", err, expr)
	}
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if b, ok := n.(*parser.BinaryExpr); ok && b.Op.IsComparisonOperator() {
			_, lnum := b.LHS.(*parser.NumberLiteral)
			_, rnum := b.RHS.(*parser.NumberLiteral)
			if lnum || rnum {
				b.ReturnBool = true
			}
		}
		return nil
	})
	return e.String()
}

// TestDashboardsAndRulesAgainstPrometheus runs the demo into the built
// sidecar, scraped by Debian's Prometheus with the rule file loaded, and
// runs every dashboard query and every rule expression against it: each
// must be accepted and return data.
func TestDashboardsAndRulesAgainstPrometheus(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the built sidecar, the demo and Prometheus: slow; runs without -short")
	}
	prom := needTool(t, "prometheus", installPrometheus)
	dir := t.TempDir()
	s := startSidecar(t, filepath.Join(dir, "data"))
	defer s.stop(syscall.SIGTERM)

	demoLogs := startProcess(t, binary, "demo", "--target="+s.url, "--rate=50", "--duration=5m")

	rules, err := filepath.Abs(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	addr := freePort(t)
	cfg := filepath.Join(dir, "prometheus.yml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: crucible
    static_configs:
      - targets: [%q]
`, rules, strings.TrimPrefix(s.url, "http://"))), 0o644)
	logs := startProcess(t, prom, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "prom"),
		"--web.listen-address="+addr, "--enable-feature=native-histograms")

	values := map[string]string{
		"datasource": "", "experiment": "demo-control|demo-treatment", "condition": "control|treatment",
		"control": "control", "treatment": "treatment",
	}
	queries := map[string]string{}
	for file, d := range dashboards.All() {
		for _, q := range dashboards.Queries(d) {
			expr, missing := dashboards.Expand(q.Expr, values)
			if len(missing) > 0 {
				t.Fatalf("%s: %s: no value for %v", file, q.Panel, missing)
			}
			queries[file+": "+q.Panel+": "+q.Expr] = expr
		}
	}
	for name, expr := range ruleExprs(t) {
		queries[name] = withBoolComparisons(t, expr)
	}

	// Recording rules run every 30 s and rates need two scrapes: retry
	// until each query has data.
	type outcome struct {
		status, err string
		series      int
	}
	run := func(expr string) outcome {
		resp, err := http.Get("http://" + addr + "/api/v1/query?query=" + url.QueryEscape(expr))
		if err != nil {
			return outcome{err: err.Error()}
		}
		defer resp.Body.Close()
		var r struct {
			Status string `json:"status"`
			Error  string `json:"error"`
			Data   struct {
				Result []json.RawMessage `json:"result"`
			} `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			return outcome{err: err.Error()}
		}
		return outcome{status: r.Status, err: r.Error, series: len(r.Data.Result)}
	}
	pending := map[string]outcome{}
	for name := range queries {
		pending[name] = outcome{}
	}
	deadline := time.Now().Add(3 * time.Minute)
	for len(pending) > 0 && time.Now().Before(deadline) {
		for name := range pending {
			o := run(queries[name])
			if o.status == "error" && o.err != "" && !strings.Contains(o.err, "connection refused") {
				t.Fatalf("%s: Prometheus refused the query: %s\n%s", name, o.err, queries[name])
			}
			if o.status == "success" && o.series > 0 {
				delete(pending, name)
				continue
			}
			pending[name] = o
		}
		time.Sleep(time.Second)
	}
	var names []string
	for name := range pending {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		t.Errorf("no data: %s (%+v)\n%s", name, pending[name], queries[name])
	}
	if t.Failed() {
		t.Logf("demo:\n%s\nprometheus:\n%s", demoLogs, logs)
	}
	t.Logf("%d queries of dashboards and rules returned data", len(queries))
}
