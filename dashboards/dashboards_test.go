package dashboards

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"
)

// promql parses as Prometheus does by default.
var promql = parser.NewParser(parser.Options{})

var update = flag.Bool("update", false, "rewrite the dashboards' JSON files from their definitions")

// TestFilesAreGenerated: the JSON files are what the definitions produce.
func TestFilesAreGenerated(t *testing.T) {
	for name, d := range All() {
		t.Run(name, func(t *testing.T) {
			want, err := JSON(d)
			if err != nil {
				t.Fatal(err)
			}
			if *update {
				if err := os.WriteFile(name, want, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			got, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from its definition; run go test ./dashboards -update", name)
			}
		})
	}
}

// grafanaDashboard is read from the files with no knowledge of the Go
// definitions, as Grafana reads them.
type grafanaDashboard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Definition string          `json:"definition"`
			Datasource *Ref            `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		ID         int      `json:"id"`
		Type       string   `json:"type"`
		Title      string   `json:"title"`
		GridPos    *GridPos `json:"gridPos"`
		Datasource *Ref     `json:"datasource"`
		Targets    []struct {
			RefID      string `json:"refId"`
			Expr       string `json:"expr"`
			Datasource *Ref   `json:"datasource"`
		} `json:"targets"`
	} `json:"panels"`
}

func readDashboards(t *testing.T) map[string]grafanaDashboard {
	t.Helper()
	files, err := filepath.Glob("*.json")
	if err != nil || len(files) != len(All()) {
		t.Fatalf("dashboard files %v (%v), want %d", files, err, len(All()))
	}
	out := map[string]grafanaDashboard{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d grafanaDashboard
		dec := json.NewDecoder(bytes.NewReader(b))
		if err := dec.Decode(&d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[f] = d
	}
	return out
}

func TestDashboards(t *testing.T) {
	uids := map[string]string{}
	for file, d := range readDashboards(t) {
		t.Run(file, func(t *testing.T) {
			if d.UID == "" || d.Title == "" {
				t.Errorf("%s: uid %q, title %q", file, d.UID, d.Title)
			}
			if other, dup := uids[d.UID]; dup {
				t.Errorf("%s and %s share the uid %q", file, other, d.UID)
			}
			uids[d.UID] = file

			vars := map[string]string{}
			for _, v := range d.Templating.List {
				switch v.Type {
				case "datasource":
					if v.Name != "datasource" || string(v.Query) != `"prometheus"` {
						t.Errorf("%s: datasource variable %s of %s", file, v.Name, v.Query)
					}
				case "query":
					if v.Datasource == nil || v.Datasource.UID != "${datasource}" {
						t.Errorf("%s: variable %s does not query ${datasource}", file, v.Name)
					}
					if !strings.HasPrefix(v.Definition, "label_values(") {
						t.Errorf("%s: variable %s is not a label_values() query: %s", file, v.Name, v.Definition)
					}
				}
				vars[v.Name] = "x"
			}
			for _, want := range []string{"datasource", "experiment"} {
				if _, ok := vars[want]; !ok {
					t.Errorf("%s: no %s variable", file, want)
				}
			}
			conditionVar := false
			for _, v := range d.Templating.List {
				conditionVar = conditionVar || strings.HasSuffix(v.Definition, ", condition)")
			}
			if !conditionVar {
				t.Errorf("%s: no variable of the conditions", file)
			}

			ids := map[int]bool{}
			for _, p := range d.Panels {
				if p.ID <= 0 || ids[p.ID] {
					t.Errorf("%s: panel %q has id %d, not unique and positive", file, p.Title, p.ID)
				}
				ids[p.ID] = true
				if p.GridPos == nil || p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 {
					t.Errorf("%s: panel %q placed at %+v", file, p.Title, p.GridPos)
				}
				if len(p.Targets) == 0 {
					if p.Type != "row" && p.Type != "text" {
						t.Errorf("%s: panel %q (%s) has no query", file, p.Title, p.Type)
					}
					continue
				}
				if p.Datasource == nil || p.Datasource.UID != "${datasource}" || p.Datasource.Type != "prometheus" {
					t.Errorf("%s: panel %q data source %+v", file, p.Title, p.Datasource)
				}
				refs := map[string]bool{}
				for _, tg := range p.Targets {
					if tg.Datasource == nil || tg.Datasource.UID != "${datasource}" {
						t.Errorf("%s: panel %q query %s data source %+v", file, p.Title, tg.RefID, tg.Datasource)
					}
					if refs[tg.RefID] || tg.RefID == "" {
						t.Errorf("%s: panel %q refId %q", file, p.Title, tg.RefID)
					}
					refs[tg.RefID] = true
					expr, missing := Expand(tg.Expr, vars)
					if len(missing) > 0 {
						t.Errorf("%s: panel %q uses undefined variables %v", file, p.Title, missing)
					}
					if _, err := promql.ParseExpr(expr); err != nil {
						t.Errorf("%s: panel %q: %v\n%s", file, p.Title, err, expr)
					}
					if !strings.Contains(tg.Expr, "crucible_") {
						t.Errorf("%s: panel %q queries no CrucibleTelemetry metric: %s", file, p.Title, tg.Expr)
					}
				}
			}
			for _, v := range d.Templating.List {
				if v.Type != "query" {
					continue
				}
				expr, missing := Expand(LabelValuesSelector(v.Definition), vars)
				if _, err := promql.ParseExpr(expr); err != nil || len(missing) > 0 {
					t.Errorf("%s: variable %s: %v %v", file, v.Name, err, missing)
				}
			}
		})
	}
}

func TestExpand(t *testing.T) {
	vars := map[string]string{"experiment": "a|b", "control": "c"}
	for _, tc := range []struct {
		name, in, want string
		missing        []string
	}{
		{"plain variable and interval", `x{e=~"$experiment"}[$__rate_interval]`, `x{e=~"a|b"}[1m]`, nil},
		{"braced, with a format", `x{e="${control}", f="${experiment:regex}"}`, `x{e="c", f="a|b"}`, nil},
		{"undefined variable and range", `x{e="$nope"} offset $__range`, `x{e=""} offset 1h`, []string{"nope"}},
		{"no variables", `no variables`, `no variables`, nil},
		{"unclosed brace", `trailing ${`, `trailing ${`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, missing := Expand(tc.in, vars)
			if got != tc.want || !slices.Equal(missing, tc.missing) {
				t.Errorf("Expand(%q) = %q %v, want %q %v", tc.in, got, missing, tc.want, tc.missing)
			}
		})
	}
}

// TestProvisioning: the provisioning files point Grafana at the dashboards
// and at a Prometheus data source.
func TestProvisioning(t *testing.T) {
	var dash struct {
		APIVersion int `yaml:"apiVersion"`
		Providers  []struct {
			Name                  string `yaml:"name"`
			OrgID                 int    `yaml:"orgId"`
			Type                  string `yaml:"type"`
			Folder                string `yaml:"folder"`
			DisableDeletion       bool   `yaml:"disableDeletion"`
			AllowUIUpdates        bool   `yaml:"allowUiUpdates"`
			UpdateIntervalSeconds int    `yaml:"updateIntervalSeconds"`
			Options               struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	var ds struct {
		APIVersion  int `yaml:"apiVersion"`
		Datasources []struct {
			Name, UID, Type, Access, URL string
			IsDefault                    bool              `yaml:"isDefault"`
			JSONData                     map[string]string `yaml:"jsonData"`
		} `yaml:"datasources"`
	}
	for file, into := range map[string]any{
		"provisioning/dashboards/crucible-telemetry.yml": &dash,
		"provisioning/datasources/prometheus.yml":        &ds,
	} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(into); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
	}
	if dash.APIVersion != 1 || len(dash.Providers) != 1 || dash.Providers[0].Type != "file" || dash.Providers[0].Options.Path == "" {
		t.Errorf("dashboard provider: %+v", dash)
	}
	if ds.APIVersion != 1 || len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" || ds.Datasources[0].URL == "" {
		t.Errorf("data source: %+v", ds)
	}
}
