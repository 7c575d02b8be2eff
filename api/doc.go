// Package api serves CrucibleTelemetry's HTTP API: routes, the Prometheus
// style response envelope, error mapping, body limits and decompression.
//
// The routes, all under --web.route-prefix:
//
//	GET    /-/healthy, /-/ready; POST, PUT /-/reload
//	GET    /api/v1/experiments?status=&tag=
//	POST   /api/v1/experiments
//	GET    /api/v1/experiments/{id}
//	POST   /api/v1/experiments/{id}/pause, resume, stop, archive
//	DELETE /api/v1/experiments/{id}                      (--web.enable-admin-api)
//	POST   /api/v1/events, /api/v1/experiments/{id}/events
//	GET    /api/v1/experiments/{id}/events               the stored events
//	GET    /api/v1/experiments/{id}/metrics              the exact analysis (SPEC §7)
//	       [?cluster=session_id|user_id|cohort|sample_id|metadata.<key>]
//	                                                     with clustered standard errors (SPEC §14)
//	GET    /api/v1/experiments/{id}/windows?size=&step=
//	GET    /api/v1/experiments/{id}/power?metric=&mde=   a sample size (SPEC §14)
//	GET    /api/v1/experiments/{id}/stream; POST .../stream/reset
//	GET    /api/v1/experiments/{id}/export?format=csv|jsonl|json
//	GET    /api/v1/compare?experiments=A,B[,C...]        each treatment against the baseline A (SPEC §8)
//	       [&cluster=<key>]                              with clustered intervals, as for metrics
//	GET    /api/v1/compare/pairs?experiments=A,B&metric=success|latency|cost|score:<name>&limit=100
//	                                                     per-sample differences of B − A (SPEC §13)
//	GET    /api/v1/event-types, /api/v1/pricing
//
// The read routes take the filters event, condition, model, provider,
// success, from, to and last; any other query parameter is refused.
// cluster (metrics and compare only) names the key whose values group
// events into clusters: every mean then also gets a clustered standard
// error and interval, and every unpaired difference a clustered interval.
package api
