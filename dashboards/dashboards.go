// Package dashboards defines the Grafana dashboards of CrucibleTelemetry.
// The JSON files beside it are generated from these definitions
// (go test ./dashboards -update) and provisioned into Grafana as they are.
package dashboards

import (
	"encoding/json"
	"strings"
)

// Dashboard is the part of Grafana's dashboard model the dashboards use.
type Dashboard struct {
	UID           string     `json:"uid"`
	Title         string     `json:"title"`
	Description   string     `json:"description"`
	Tags          []string   `json:"tags"`
	Editable      bool       `json:"editable"`
	GraphTooltip  int        `json:"graphTooltip"`
	SchemaVersion int        `json:"schemaVersion"`
	Refresh       string     `json:"refresh"`
	Time          TimeRange  `json:"time"`
	Templating    Templating `json:"templating"`
	Panels        []Panel    `json:"panels"`
}

type TimeRange struct {
	From string `json:"from"`
	To   string `json:"to"`
}

type Templating struct {
	List []Variable `json:"list"`
}

// Ref names a data source; every query uses the dashboard's datasource
// variable, so the dashboards work with any Prometheus data source.
type Ref struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

var prometheus = &Ref{Type: "prometheus", UID: "${datasource}"}

type Variable struct {
	Name       string  `json:"name"`
	Label      string  `json:"label"`
	Type       string  `json:"type"`
	Query      any     `json:"query"`
	Definition string  `json:"definition,omitempty"`
	Datasource *Ref    `json:"datasource,omitempty"`
	Refresh    int     `json:"refresh"`
	Multi      bool    `json:"multi"`
	IncludeAll bool    `json:"includeAll"`
	Sort       int     `json:"sort"`
	Current    *Option `json:"current,omitempty"`
}

// Option is a variable's value; Current picks one before Grafana has
// asked the data source.
type Option struct {
	Text  string `json:"text"`
	Value string `json:"value"`
}

type GridPos struct {
	H int `json:"h"`
	W int `json:"w"`
	X int `json:"x"`
	Y int `json:"y"`
}

type Target struct {
	RefID        string `json:"refId"`
	Datasource   *Ref   `json:"datasource"`
	Expr         string `json:"expr"`
	LegendFormat string `json:"legendFormat,omitempty"`
	Instant      bool   `json:"instant,omitempty"`
	Range        bool   `json:"range"`
}

type Threshold struct {
	Color string   `json:"color"`
	Value *float64 `json:"value"`
}

type Thresholds struct {
	Mode  string      `json:"mode"`
	Steps []Threshold `json:"steps"`
}

type FieldDefaults struct {
	Unit       string         `json:"unit,omitempty"`
	Min        *float64       `json:"min,omitempty"`
	Max        *float64       `json:"max,omitempty"`
	Decimals   *int           `json:"decimals,omitempty"`
	Thresholds *Thresholds    `json:"thresholds,omitempty"`
	Custom     map[string]any `json:"custom,omitempty"`
}

type FieldConfig struct {
	Defaults  FieldDefaults `json:"defaults"`
	Overrides []any         `json:"overrides"`
}

type Panel struct {
	ID          int            `json:"id"`
	Type        string         `json:"type"`
	Title       string         `json:"title"`
	Description string         `json:"description,omitempty"`
	GridPos     GridPos        `json:"gridPos"`
	Datasource  *Ref           `json:"datasource,omitempty"`
	Targets     []Target       `json:"targets,omitempty"`
	FieldConfig *FieldConfig   `json:"fieldConfig,omitempty"`
	Options     map[string]any `json:"options,omitempty"`
}

// All returns every dashboard by file name.
func All() map[string]Dashboard {
	return map[string]Dashboard{
		"experiment-overview.json": Overview(),
		"ab-comparison.json":       Comparison(),
	}
}

// JSON is a dashboard as provisioned: indented, with a final newline.
func JSON(d Dashboard) ([]byte, error) {
	b, err := json.MarshalIndent(d, "", "  ")
	return append(b, '\n'), err
}

func ptr[T any](v T) *T { return &v }

// dashboard has the settings both dashboards share; its variables are the
// data source, the experiments (label) and vars.
func dashboard(uid, title, description, experimentLabel string, panels []Panel, vars ...Variable) Dashboard {
	return Dashboard{
		UID: uid, Title: "CrucibleTelemetry / " + title, Description: description,
		Tags: []string{"crucible-telemetry"}, Editable: true, GraphTooltip: 1, SchemaVersion: 39,
		Refresh: "30s", Time: TimeRange{From: "now-1h", To: "now"},
		Templating: Templating{List: append([]Variable{
			{Name: "datasource", Label: "Data source", Type: "datasource", Query: "prometheus"},
			queryVar("experiment", experimentLabel, "label_values(crucible_experiment_info, experiment_id)", true),
		}, vars...)},
		Panels: panels,
	}
}

// conditionsQuery lists the conditions of the chosen experiments.
const conditionsQuery = `label_values(crucible_experiment_info{experiment_id=~"$experiment"}, condition)`

// queryVar is a variable whose values come from label_values(query).
func queryVar(name, label, query string, multi bool) Variable {
	return Variable{
		Name: name, Label: label, Type: "query", Datasource: prometheus,
		Query:      map[string]any{"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery", "qryType": 1},
		Definition: query, Refresh: 2, Multi: multi, IncludeAll: multi, Sort: 1,
	}
}

// layout places panels left to right in Grafana's 24-column grid, wrapping
// to a new row when a panel does not fit, and numbers them.
type layout struct {
	panels   []Panel
	x, y, rh int
}

func (l *layout) add(w, h int, p Panel) {
	if l.x+w > 24 {
		l.x, l.y, l.rh = 0, l.y+l.rh, 0
	}
	p.ID = len(l.panels) + 1
	p.GridPos = GridPos{H: h, W: w, X: l.x, Y: l.y}
	if len(p.Targets) > 0 {
		p.Datasource = prometheus
	}
	for i := range p.Targets {
		p.Targets[i].RefID = string(rune('A' + i))
		p.Targets[i].Datasource = prometheus
		p.Targets[i].Range = !p.Targets[i].Instant
	}
	l.panels = append(l.panels, p)
	l.x += w
	l.rh = max(l.rh, h)
}

func (l *layout) row(title string) {
	if l.x > 0 {
		l.x, l.y, l.rh = 0, l.y+l.rh, 0
	}
	l.add(24, 1, Panel{Type: "row", Title: title})
	l.x, l.y, l.rh = 0, l.y+1, 0
}

func timeseries(title, desc, unit string, targets ...Target) Panel {
	return Panel{
		Type: "timeseries", Title: title, Description: desc, Targets: targets,
		FieldConfig: &FieldConfig{Defaults: FieldDefaults{Unit: unit, Custom: map[string]any{"lineWidth": 1, "fillOpacity": 10}}, Overrides: []any{}},
		Options:     map[string]any{"legend": map[string]any{"displayMode": "table", "placement": "bottom", "calcs": []string{"lastNotNull", "max"}}, "tooltip": map[string]any{"mode": "multi", "sort": "desc"}},
	}
}

func stat(title, desc, unit string, targets ...Target) Panel {
	return Panel{
		Type: "stat", Title: title, Description: desc, Targets: targets,
		FieldConfig: &FieldConfig{Defaults: FieldDefaults{Unit: unit}, Overrides: []any{}},
		Options:     map[string]any{"reduceOptions": map[string]any{"calcs": []string{"lastNotNull"}, "fields": "", "values": false}, "colorMode": "value", "graphMode": "area", "textMode": "auto"},
	}
}

// slaSteps colours a ratio red below the SLA.
func slaSteps(sla float64) *Thresholds {
	return &Thresholds{Mode: "absolute", Steps: []Threshold{{Color: "red"}, {Color: "green", Value: ptr(sla)}}}
}

// sel is a label selector with the dashboard's variables; the extra
// matchers are appended.
func sel(base string, extra ...string) string {
	return "{" + strings.Join(append([]string{base}, extra...), ", ") + "}"
}

// SLA is the success ratio the dashboards and alerts hold experiments to.
const SLA = 0.99

// Query is one PromQL expression of a dashboard.
type Query struct {
	Dashboard, Panel, Expr string
}

// Queries lists every panel's and variable's PromQL expressions; the
// label_values() of query variables become plain selectors.
func Queries(d Dashboard) []Query {
	var qs []Query
	for _, v := range d.Templating.List {
		if v.Type == "query" {
			qs = append(qs, Query{d.UID, "variable " + v.Name, LabelValuesSelector(v.Definition)})
		}
	}
	for _, p := range d.Panels {
		for _, t := range p.Targets {
			qs = append(qs, Query{d.UID, p.Title, t.Expr})
		}
	}
	return qs
}

// LabelValuesSelector turns Grafana's label_values(selector, label) into
// the selector it queries.
func LabelValuesSelector(def string) string {
	inner, ok := strings.CutPrefix(def, "label_values(")
	if !ok {
		return def
	}
	inner = strings.TrimSuffix(inner, ")")
	if i := strings.LastIndex(inner, ","); i >= 0 {
		inner = inner[:i]
	}
	return strings.TrimSpace(inner)
}

// Builtins are Grafana's own variables with the values Expand gives them.
var Builtins = map[string]string{"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}

// Expand substitutes $name, ${name} and ${name:format} as Grafana does,
// with values for the dashboard's variables and Builtins; it reports the
// names it found no value for.
func Expand(expr string, values map[string]string) (string, []string) {
	var out strings.Builder
	var missing []string
	for i := 0; i < len(expr); {
		if expr[i] != '$' {
			out.WriteByte(expr[i])
			i++
			continue
		}
		name, width := "", 0
		if strings.HasPrefix(expr[i:], "${") {
			end := strings.IndexByte(expr[i:], '}')
			if end < 0 {
				out.WriteString(expr[i:])
				break
			}
			name, width = expr[i+2:i+end], end+1
			if j := strings.IndexByte(name, ':'); j >= 0 {
				name = name[:j]
			}
		} else {
			j := i + 1
			for j < len(expr) && (expr[j] == '_' || expr[j] >= 'a' && expr[j] <= 'z' || expr[j] >= 'A' && expr[j] <= 'Z' || expr[j] >= '0' && expr[j] <= '9') {
				j++
			}
			name, width = expr[i+1:j], j-i
		}
		v, ok := values[name]
		if !ok {
			v, ok = Builtins[name]
		}
		if !ok {
			missing = append(missing, name)
		}
		out.WriteString(v)
		i += width
	}
	return out.String(), missing
}
