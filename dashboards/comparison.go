package dashboards

import (
	"fmt"

	"github.com/crucible-telemetry/crucible-telemetry/analysis"
)

// srmCritical is the χ² (df = 1) whose upper tail is analysis.SRMThreshold,
// 0.001: scipy.stats.chi2.isf(0.001, 1).
const srmCritical = 10.827566170662733

// Comparison puts a control and a treatment condition side by side, with
// live differences between them. Exact percentiles, confidence intervals
// and p-values come from GET /api/v1/compare.
func Comparison() Dashboard {
	exp := `experiment_id=~"$experiment"`
	both := sel(exp, `condition=~"$control|$treatment"`)
	arm := func(cond string) string { return sel(exp, `condition="$`+cond+`"`) }
	armOutcome := func(cond, outcome string) string { return sel(exp, `condition="$`+cond+`"`, outcome) }
	successRatio := func(cond string) string {
		return "sum(rate(crucible_events_total" + armOutcome(cond, `outcome="success"`) + "[$__rate_interval]))\n/\n" +
			"sum(rate(crucible_events_total" + armOutcome(cond, `outcome=~"success|failure"`) + "[$__rate_interval]))"
	}
	p95 := func(cond string) string {
		return "histogram_quantile(0.95, sum(rate(crucible_latency_seconds" + arm(cond) + "[$__rate_interval])))"
	}
	costPerRequest := func(cond string) string {
		return "sum(rate(crucible_cost_usd_total" + arm(cond) + "[$__rate_interval]))\n/\nsum(rate(crucible_events_total" + arm(cond) + "[$__rate_interval]))"
	}
	quantile := func(q string) string {
		return "histogram_quantile(" + q + ", sum by (condition) (rate(crucible_latency_seconds" + both + "[$__rate_interval])))"
	}

	var l layout
	l.add(24, 3, Panel{Type: "text", Title: "", Options: map[string]any{"mode": "markdown", "content": "Live estimates from Prometheus. For exact percentiles, " +
		"bootstrap confidence intervals and p-values: `GET /api/v1/compare?experiments=<control>,<treatment>` on the sidecar, or `crucible-telemetry compare`."}})
	l.row("Treatment against control")
	d := stat("Success ratio, treatment − control", "Positive: the treatment succeeds more often.", "percentunit",
		Target{Expr: "(\n" + successRatio("treatment") + "\n)\n-\n(\n" + successRatio("control") + "\n)", LegendFormat: "Δ success ratio"})
	d.FieldConfig.Defaults.Decimals = ptr(2)
	d.FieldConfig.Defaults.Thresholds = &Thresholds{Mode: "absolute", Steps: []Threshold{{Color: "red"}, {Color: "green", Value: ptr(0.0)}}}
	l.add(8, 5, d)
	r := stat("p95 latency, treatment ÷ control", "Below 100%: the treatment is faster at the 95th percentile.", "percentunit",
		Target{Expr: p95("treatment") + "\n/\n" + p95("control"), LegendFormat: "p95 ratio"})
	r.FieldConfig.Defaults.Thresholds = &Thresholds{Mode: "absolute", Steps: []Threshold{{Color: "green"}, {Color: "red", Value: ptr(1.0)}}}
	l.add(8, 5, r)
	c := stat("Cost per request, treatment ÷ control", "Below 100%: the treatment is cheaper per event.", "percentunit",
		Target{Expr: "(\n" + costPerRequest("treatment") + "\n)\n/\n(\n" + costPerRequest("control") + "\n)", LegendFormat: "cost ratio"})
	c.FieldConfig.Defaults.Thresholds = &Thresholds{Mode: "absolute", Steps: []Threshold{{Color: "green"}, {Color: "red", Value: ptr(1.0)}}}
	l.add(8, 5, c)

	// The sample-ratio check of /api/v1/compare (data.srm), live: the
	// counters hold every stored event, so their totals are the counts it
	// tests. PromQL has no χ² distribution, so the panel compares the
	// statistic with its critical value.
	events := func(cond string) string { return "sum(crucible_events_total" + arm(cond) + ")" }
	l.row("Sample ratio (is the split the planned one?)")
	sr := stat("Events, treatment ÷ control", "All events so far. 1 for an equal split; a ratio other than the planned one means events are lost or assigned unevenly, which biases every difference.", "none",
		Target{Expr: events("treatment") + "\n/\n" + events("control"), LegendFormat: "sample ratio"})
	sr.FieldConfig.Defaults.Decimals = ptr(3)
	l.add(8, 5, sr)
	chi := stat("Sample-ratio χ² (equal split)", fmt.Sprintf("Pearson's χ² of the two counts against a 50/50 split, (T − C)² / (T + C). Red above %g, "+
		"where p < %g (df = 1): a sample-ratio mismatch. For another planned split: GET /api/v1/compare?…&allocation=a,b (data.srm).", srmCritical, analysis.SRMThreshold), "none",
		Target{Expr: "(" + events("treatment") + " - " + events("control") + ") ^ 2\n/\n(" + events("treatment") + " + " + events("control") + ")", LegendFormat: "χ²"})
	chi.FieldConfig.Defaults.Decimals = ptr(2)
	chi.FieldConfig.Defaults.Thresholds = &Thresholds{Mode: "absolute", Steps: []Threshold{{Color: "green"}, {Color: "red", Value: ptr(srmCritical)}}}
	l.add(8, 5, chi)
	l.add(8, 5, timeseries("Events per condition, cumulative", "The counts the sample-ratio check tests.", "short",
		Target{Expr: "sum by (condition) (crucible_events_total" + both + ")", LegendFormat: "{{condition}}"}))

	l.row("Side by side")
	l.add(12, 8, timeseries("Latency p50 and p95", "From the native histogram.", "s",
		Target{Expr: quantile("0.5"), LegendFormat: "p50 {{condition}}"},
		Target{Expr: quantile("0.95"), LegendFormat: "p95 {{condition}}"}))
	sla := timeseries("Success ratio", "The red line is the 99% SLA.", "percentunit",
		Target{Expr: "sum by (condition) (rate(crucible_events_total" + sel(exp, `condition=~"$control|$treatment"`, `outcome="success"`) + "[$__rate_interval]))\n/\n" +
			"sum by (condition) (rate(crucible_events_total" + sel(exp, `condition=~"$control|$treatment"`, `outcome=~"success|failure"`) + "[$__rate_interval]))", LegendFormat: "{{condition}}"})
	sla.FieldConfig.Defaults.Thresholds = slaSteps(SLA)
	sla.FieldConfig.Defaults.Custom["thresholdsStyle"] = map[string]any{"mode": "line"}
	l.add(12, 8, sla)
	l.add(8, 8, timeseries("Cost per request", "", "currencyUSD",
		Target{Expr: "sum by (condition) (rate(crucible_cost_usd_total" + both + "[$__rate_interval]))\n/\nsum by (condition) (rate(crucible_events_total" + both + "[$__rate_interval]))", LegendFormat: "{{condition}}"}))
	l.add(8, 8, timeseries("Tokens per request", "", "short",
		Target{Expr: "sum by (condition, type) (rate(crucible_tokens_total" + both + "[$__rate_interval]))\n/ on (condition) group_left ()\nsum by (condition) (rate(crucible_events_total" + both + "[$__rate_interval]))", LegendFormat: "{{condition}} {{type}}"}))
	l.add(8, 8, timeseries("Events per second", "", "ops",
		Target{Expr: "sum by (condition) (rate(crucible_events_total" + both + "[$__rate_interval]))", LegendFormat: "{{condition}}"}))

	condition := func(name, label, def string) Variable {
		v := queryVar(name, label, conditionsQuery, false)
		v.Current = &Option{Text: def, Value: def}
		return v
	}
	return dashboard("crucible-ab-comparison", "A/B comparison",
		"Two conditions side by side: latency, success, cost and tokens, with live differences.",
		"Experiments", l.panels,
		condition("control", "Control condition", "control"), condition("treatment", "Treatment condition", "treatment"))
}
