// Package api serves CrucibleTelemetry's HTTP API: routes, the Prometheus
// style response envelope, error mapping, body limits and decompression.
package api
