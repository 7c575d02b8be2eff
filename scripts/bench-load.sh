#!/usr/bin/env bash
# Starts a fresh sidecar on a temporary data directory, drives it with the
# load generator, and prints the load generator's report plus the sidecar's
# stored event count and disk use.
set -euo pipefail
duration=${1:-60s}
bin=./crucible-telemetry
data=$(mktemp -d)
addr=127.0.0.1:19477
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$data"' EXIT

"$bin" serve --storage.path="$data" --web.listen-address="$addr" --log.level=warn &
pid=$!
for _ in $(seq 100); do
  curl -fs "http://$addr/-/ready" >/dev/null 2>&1 && break
  sleep 0.1
done
"$bin" loadgen --target="http://$addr" --duration="$duration" --connections=4 --batch=1000
stored=$(curl -fs "http://$addr/api/v1/experiments/loadgen" | sed -n 's/.*"events_stored":\([0-9]*\).*/\1/p')
echo "events_stored=$stored"
kill -TERM "$pid"; wait "$pid" || true
du -sh "$data"/experiments/loadgen/events "$data"/experiments/loadgen/tsdb
