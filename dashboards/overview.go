package dashboards

// Overview is the dashboard of one or more experiments: progress,
// outcomes, latency quantiles, cost, tokens and the sidecar's health.
func Overview() Dashboard {
	exp := `experiment_id=~"$experiment", condition=~"$condition"`
	events := "crucible_events_total" + sel(exp)
	success := "crucible_events_total" + sel(exp, `outcome="success"`)
	judged := "crucible_events_total" + sel(exp, `outcome=~"success|failure"`)
	latency := "crucible_latency_seconds" + sel(exp)
	byArm := "experiment_id, condition"
	ratio := "sum by (" + byArm + ") (rate(" + success + "[$__rate_interval]))\n/\nsum by (" + byArm + ") (rate(" + judged + "[$__rate_interval]))"
	quantile := func(q, by string) string {
		return "histogram_quantile(" + q + ", sum by (" + by + ") (rate(" + latency + "[$__rate_interval])))"
	}
	arm := "{{experiment_id}} {{condition}}"

	var l layout
	l.row("Progress")
	l.add(6, 5, stat("Events stored", "Events stored per experiment.", "short",
		Target{Expr: `sum by (experiment_id) (crucible_experiment_events{experiment_id=~"$experiment"})`, LegendFormat: "{{experiment_id}}"}))
	progress := stat("Progress toward sample_size", "Stored events over the experiment's sample_size (experiments with one).", "percentunit",
		Target{Expr: `crucible_experiment_events{experiment_id=~"$experiment"}` + "\n/\n" + `crucible_experiment_target_events{experiment_id=~"$experiment"}`, LegendFormat: "{{experiment_id}}"})
	progress.Type = "gauge"
	progress.Options = map[string]any{"reduceOptions": map[string]any{"calcs": []string{"lastNotNull"}, "fields": "", "values": false}, "showThresholdMarkers": false}
	progress.FieldConfig.Defaults.Min, progress.FieldConfig.Defaults.Max = ptr(0.0), ptr(1.0)
	l.add(6, 5, progress)
	sr := stat("Success ratio", "Successful over judged events, against the 99% SLA.", "percentunit",
		Target{Expr: ratio, LegendFormat: arm})
	sr.FieldConfig.Defaults.Thresholds = slaSteps(SLA)
	sr.FieldConfig.Defaults.Decimals = ptr(2)
	l.add(6, 5, sr)
	l.add(6, 5, stat("Cost in the time range", "USD spent in the dashboard's time range.", "currencyUSD",
		Target{Expr: "sum by (" + byArm + ") (increase(crucible_cost_usd_total" + sel(exp) + "[$__range]))", LegendFormat: arm, Instant: true}))

	l.row("Traffic and outcomes")
	l.add(12, 8, timeseries("Events per second by outcome", "Stored events by outcome: success, failure, or unknown when the event does not say.", "ops",
		Target{Expr: "sum by (" + byArm + ", outcome) (rate(" + events + "[$__rate_interval]))", LegendFormat: arm + " {{outcome}}"}))
	slaPanel := timeseries("Success ratio against the SLA", "The red line is the 99% SLA.", "percentunit", Target{Expr: ratio, LegendFormat: arm})
	slaPanel.FieldConfig.Defaults.Max = ptr(1.0)
	slaPanel.FieldConfig.Defaults.Thresholds = slaSteps(SLA)
	slaPanel.FieldConfig.Defaults.Custom["thresholdsStyle"] = map[string]any{"mode": "line"}
	l.add(12, 8, slaPanel)

	l.row("Latency")
	l.add(12, 8, timeseries("Latency p50, p95, p99", "Quantiles from the native histogram (exponential buckets, about 5% error). GET /api/v1/experiments/{id}/metrics gives exact ones.", "s",
		Target{Expr: quantile("0.5", byArm), LegendFormat: "p50 " + arm},
		Target{Expr: quantile("0.95", byArm), LegendFormat: "p95 " + arm},
		Target{Expr: quantile("0.99", byArm), LegendFormat: "p99 " + arm}))
	l.add(12, 8, timeseries("Latency p95 by model", "", "s",
		Target{Expr: quantile("0.95", "experiment_id, model, provider"), LegendFormat: "{{experiment_id}} {{provider}}/{{model}}"}))
	l.add(24, 7, timeseries("Streaming mean, standard deviation and maximum", "Welford statistics since the start or the last POST .../stream/reset.", "s",
		Target{Expr: "crucible_stream_latency_mean_seconds" + sel(exp), LegendFormat: "mean " + arm},
		Target{Expr: "crucible_stream_latency_stddev_seconds" + sel(exp), LegendFormat: "sd " + arm},
		Target{Expr: "crucible_stream_latency_max_seconds" + sel(exp), LegendFormat: "max " + arm}))

	l.row("Cost and tokens")
	l.add(8, 8, timeseries("Cost per minute", "", "currencyUSD",
		Target{Expr: "sum by (" + byArm + ") (rate(crucible_cost_usd_total" + sel(exp) + "[$__rate_interval])) * 60", LegendFormat: arm}))
	l.add(8, 8, timeseries("Cumulative cost", "USD since the experiment started.", "currencyUSD",
		Target{Expr: "sum by (" + byArm + ") (crucible_cost_usd_total" + sel(exp) + ")", LegendFormat: arm}))
	l.add(8, 8, timeseries("Tokens per second", "", "short",
		Target{Expr: "sum by (" + byArm + ", type) (rate(crucible_tokens_total" + sel(exp) + "[$__rate_interval]))", LegendFormat: arm + " {{type}}"}))

	l.row("Sidecar health")
	l.add(8, 8, timeseries("Ingest results", "Events received by result: accepted, rejected (invalid), duplicate, dropped while paused or by sampling, unpriced.", "ops",
		Target{Expr: "sum by (instance, result) (rate(crucible_ingest_events_total[$__rate_interval]))", LegendFormat: "{{instance}} {{result}}"}))
	l.add(8, 8, timeseries("HTTP p99 by handler", "", "s",
		Target{Expr: "histogram_quantile(0.99, sum by (instance, handler) (rate(crucible_http_request_duration_seconds[$__rate_interval])))", LegendFormat: "{{instance}} {{handler}}"}))
	l.add(8, 8, timeseries("Storage", "Bytes under --storage.path and free on its filesystem.", "bytes",
		Target{Expr: "crucible_storage_used_bytes", LegendFormat: "used {{instance}}"},
		Target{Expr: "crucible_storage_filesystem_avail_bytes", LegendFormat: "free {{instance}}"}))

	return dashboard("crucible-overview", "Experiment overview",
		"Live view of experiments: progress, outcomes, latency, cost, tokens and the sidecar's health.",
		"Experiment", l.panels, queryVar("condition", "Condition", conditionsQuery, true))
}
