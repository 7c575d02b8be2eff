#!/usr/bin/env bash
# Fleet analysis against a loopback Prometheus: a fresh sidecar remote-writes
# two experiments of EVENTS events each (loadgen: 5 samples an event) to
# Debian's prometheus, then `compare --prometheus.url` is timed ROUNDS times
# with each --prometheus.read mode, beside the sidecar's own compare.
# Needs prometheus (apt-get install -y prometheus) and /usr/bin/time.
set -euo pipefail
events=${EVENTS:-1000000}
rounds=${ROUNDS:-3}
bin=${BIN:-./crucible-telemetry}
dir=$(mktemp -d)
addr=127.0.0.1:${PORT:-19479}
paddr=127.0.0.1:${PROM_PORT:-19091}
trap 'kill "$pid" "$ppid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"' EXIT

printf 'storage:\n  tsdb:\n    out_of_order_time_window: 1d\n' >"$dir/prometheus.yml"
prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/prom" --web.listen-address="$paddr" \
  --web.enable-remote-write-receiver --log.level=warn 2>"$dir/prometheus.log" &
ppid=$!
printf 'remote_write:\n- url: http://%s/api/v1/write\n' "$paddr" >"$dir/remote-write.yml"
"$bin" serve --storage.path="$dir/data" --web.listen-address="$addr" --log.level=warn \
  --remote-write.config-file="$dir/remote-write.yml" --remote-write.external-label=pod=bench &
pid=$!
for _ in $(seq 100); do
  curl -fs "http://$addr/-/ready" >/dev/null 2>&1 && curl -fs "http://$paddr/-/ready" >/dev/null 2>&1 && break
  sleep 0.1
done
for x in ctl trt; do
  "$bin" loadgen --target="http://$addr" --experiment="$x" --events="$events" --duration=0 --connections=4 --batch=1000 >/dev/null
done
pending() { curl -fs "http://$addr/metrics" | awk '/^crucible_remote_write_pending_samples/ {s+=$2} END {printf "%.0f", s}'; }
for _ in $(seq 1200); do
  [[ "$(pending)" == 0 ]] && break
  sleep 0.5
done
echo "remote-written: pending=$(pending) sent=$(curl -fs "http://$addr/metrics" | awk '/^crucible_remote_write_samples_total.*result="sent"/ {s+=$2} END {printf "%.0f", s}')"
start=$(date +%s.%N)
curl -fs "http://$addr/api/v1/compare?experiments=ctl,trt" >/dev/null
echo "sidecar /api/v1/compare: $(echo "$(date +%s.%N) - $start" | bc) s"
for r in $(seq "$rounds"); do
  for mode in remote-read query; do
    /usr/bin/time -f "compare --prometheus.read=$mode round $r: %e s wall, %U+%S s CPU, %M KiB peak RSS" \
      "$bin" compare --prometheus.url="http://$paddr" --prometheus.read="$mode" --format=json ctl trt >"$dir/$mode.json"
  done
done
# The two reads give the same numbers (only the notes differ).
python3 - "$dir/remote-read.json" "$dir/query.json" <<'PY'
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:])
a.pop("notes", None); b.pop("notes", None)
print("remote-read and query answers", "equal" if a == b else "DIFFER")
PY
