// Package deploy holds the files that deploy CrucibleTelemetry: Kubernetes
// manifests and kustomize components (kubernetes/), Prometheus rules
// (prometheus/) and an example web configuration. Its tests check them
// against the Kubernetes and Prometheus Operator API types.
package deploy
