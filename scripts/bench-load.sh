#!/usr/bin/env bash
# Starts a fresh sidecar on a temporary data directory, drives it with the
# load generator, and prints the load generator's report, the sidecar's
# resident memory every 10 s, its stored event count and its disk use.
# BIN and PORT choose another binary (to compare builds) and port; SCORES
# the quality scores per event (0 to 4); PROTOCOL=otlp sends OTLP/HTTP
# protobuf exports of GenAI spans instead of NDJSON; REMOTE_WRITE=URL sends
# every raw sample to that remote-write receiver and reports, after the
# load, how long the queue took to catch up; REMOTE_WRITE=sink sends them
# to a receiver that reads each request and keeps nothing (python3), to
# measure the sidecar's side alone.
set -euo pipefail
duration=${1:-60s}
rate=${2:-0}  # events/s; 0 = as fast as the sidecar answers
bin=${BIN:-./crucible-telemetry}
data=$(mktemp -d)
addr=127.0.0.1:${PORT:-19477}
trap 'kill "$pid" "$sampler" $sink 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$data"' EXIT

rw=()
sink=
if [[ "${REMOTE_WRITE:-}" == sink ]]; then
  sinkaddr=127.0.0.1:${SINK_PORT:-19478}
  python3 -c '
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(204); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
host, port = sys.argv[1].split(":")
http.server.ThreadingHTTPServer((host, int(port)), H).serve_forever()
' "$sinkaddr" &
  sink=$!
  REMOTE_WRITE=http://$sinkaddr/api/v1/write
fi
if [[ -n "${REMOTE_WRITE:-}" ]]; then
  printf 'remote_write:\n- url: %s\n' "$REMOTE_WRITE" >"$data/remote-write.yml"
  rw=(--remote-write.config-file="$data/remote-write.yml" --remote-write.external-label=pod=bench)
fi
"$bin" serve --storage.path="$data" --web.listen-address="$addr" --log.level=warn "${rw[@]}" &
pid=$!
for _ in $(seq 100); do
  curl -fs "http://$addr/-/ready" >/dev/null 2>&1 && break
  sleep 0.1
done

rss() {
  curl -fs "http://$addr/metrics" | awk '/^process_resident_memory_bytes /{printf "%.0f", $2/1048576}'
}
(
  while sleep 10; do
    echo "rss_mib=$(rss) events_stored=$(curl -fs "http://$addr/api/v1/experiments/loadgen" | sed -n 's/.*"events_stored":\([0-9]*\).*/\1/p')"
  done
) &
sampler=$!

"$bin" loadgen --target="http://$addr" --duration="$duration" --connections=4 --batch=1000 --rate="$rate" --scores="${SCORES:-0}" --protocol="${PROTOCOL:-json}"
kill "$sampler" 2>/dev/null || true
stored=$(curl -fs "http://$addr/api/v1/experiments/loadgen" | sed -n 's/.*"events_stored":\([0-9]*\).*/\1/p')
cpu() { curl -fs "http://$addr/metrics" | awk '/^process_cpu_seconds_total /{print $2}'; }
echo "events_stored=$stored rss_mib=$(rss) sidecar_cpu_s=$(cpu)"
if [[ -n "${REMOTE_WRITE:-}" ]]; then
  metric() { curl -fs "http://$addr/metrics" | awk -v m="$1" '$1 ~ "^"m {s+=$2} END {printf "%.0f", s}'; }
  start=$(date +%s.%N)
  echo "remote_write_pending_samples=$(metric crucible_remote_write_pending_samples) when the load stopped"
  for _ in $(seq 1200); do
    [[ "$(metric crucible_remote_write_pending_samples)" == 0 ]] && break
    sleep 0.1
  done
  echo "remote_write_caught_up_after_s=$(echo "$(date +%s.%N) - $start" | bc) sent=$(metric 'crucible_remote_write_samples_total{.*result="sent"') rejected=$(metric 'crucible_remote_write_samples_total{.*result="rejected"') pending=$(metric crucible_remote_write_pending_samples) sidecar_cpu_s=$(cpu)"
fi
kill -TERM "$pid"; wait "$pid" || true
du -sh "$data"/experiments/loadgen/events "$data"/experiments/loadgen/tsdb
