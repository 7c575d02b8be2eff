#!/usr/bin/env bash
# Compares builds by events stored per CPU-second of the sidecar: for each
# round, each binary in turn on a fresh temporary data directory, driven at
# full speed by the first binary's load generator (4 connections, batches
# of 1000) for SECS seconds; the sidecar's CPU is read from /proc. SCORES
# sets the quality scores per event (0 to 4). Interleaving the builds
# round by round keeps this shared machine's drift out of the comparison:
# quote the medians.
#
#   go build -o /tmp/old . (at the old commit); go build -o /tmp/new .
#   scripts/bench-ab.sh 5 8 /tmp/old /tmp/new
set -euo pipefail
rounds=${1:?rounds}
secs=${2:?seconds per run}
shift 2
[[ $# -ge 1 ]] || { echo "usage: $0 ROUNDS SECS BIN..." >&2; exit 2; }
addr=127.0.0.1:${PORT:-19491}
hz=$(getconf CLK_TCK)
for r in $(seq "$rounds"); do
  for bin in "$@"; do
    data=$(mktemp -d)
    "$bin" serve --storage.path="$data" --web.listen-address="$addr" --log.level=warn &
    pid=$!
    for _ in $(seq 100); do curl -fs "http://$addr/-/ready" >/dev/null 2>&1 && break; sleep 0.1; done
    before=$(awk '{print $14+$15}' "/proc/$pid/stat")
    out=$("$1" loadgen --target="http://$addr" --duration="${secs}s" --connections=4 --batch=1000 --rate=0 --scores="${SCORES:-0}" 2>&1 | tail -1)
    after=$(awk '{print $14+$15}' "/proc/$pid/stat")
    kill "$pid"; wait "$pid" 2>/dev/null || true; rm -rf "$data"
    events=$(sed -n 's/.*events=\([0-9]*\).*/\1/p' <<<"$out")
    p99=$(sed -n 's/.*batch_p99=\([^ ]*\).*/\1/p' <<<"$out")
    awk -v r="$r" -v b="$bin" -v e="$events" -v t=$((after - before)) -v hz="$hz" -v p="$p99" \
      'BEGIN { printf "round=%s bin=%s events=%d cpu_s=%.2f events_per_cpu_s=%.0f batch_p99=%s\n", r, b, e, t/hz, e/(t/hz), p }'
  done
done
