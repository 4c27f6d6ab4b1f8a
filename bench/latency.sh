#!/usr/bin/env bash
# Latency, broker receipt → occupancy update (`tellijn_processing_latency_seconds`: from the
# publish hook to the room's new occupancy), at campus load (370 sensors × 1 message/s) and at
# 100× that (370 × 100/s), read from the histogram's buckets over the run (so p50/p99/max are
# bucket upper bounds). Also the publisher's send → PUBACK times (exact, client side).
source "$(dirname "$0")/common.sh"
SENSORS=${SENSORS:-370}
tmp=$(mktemp -d); trap 'stop_server; rm -rf "$tmp"' EXIT
mkdir -p "$tmp/data"
campus "$tmp/campus.toml" "$tmp/data" "$SENSORS" "$SENSORS" "$(printf '[limits]\npublish_rate = 1000\npublish_burst = 1000\n')"
start_tellijn "$tmp/campus.toml"
hist() { curl -fs "http://127.0.0.1:$HTTP_PORT/metrics" | grep '^tellijn_processing_latency_seconds_bucket'; }
quantiles() {  # quantiles BEFORE AFTER: "p50 p99 max" in ms from bucket deltas
  python3 - "$1" "$2" <<'PY'
import re, sys
def parse(t):
    return {float(m.group(1)) if m.group(1) != "+Inf" else float("inf"): float(m.group(2))
            for m in re.finditer(r'le="([^"]+)"\} (\S+)', t)}
a, b = parse(sys.argv[1]), parse(sys.argv[2])
d = sorted((le, b[le] - a.get(le, 0)) for le in b)
n = d[-1][1]
q = lambda p: next(le for le, c in d if c >= p * n) * 1000
print(f"{q(0.5):g} {q(0.99):g} {q(1.0):g} {int(n)}")
PY
}
run() {  # run RATE MESSAGES TARGET
  local before after
  before=$(hist)
  out=$("$LOAD" publish --port "$MQTT_PORT" --clients "$SENSORS" --messages "$2" --rate "$1")
  after=$(hist)
  read -r p50 p99 max n <<<"$(quantiles "$before" "$after")"
  echo "| latency at $1 msg/s × $SENSORS sensors ($n messages) | receipt → occupancy p50 ≤ $p50 ms, p99 ≤ $p99 ms, max ≤ $max ms | send → PUBACK p50 $(json "$out" puback_ms_p50) ms, p99 $(json "$out" puback_ms_p99) ms, max $(json "$out" puback_ms_max) ms | $3 |"
}
# The 100× run gets a fresh server and data: its sensors start again from seq 1.
run 1 20 "p99 < 5 ms"
stop_server
rm -rf "$tmp/data"; mkdir -p "$tmp/data"
start_tellijn "$tmp/campus.toml"
run 100 1000 "p99 < 50 ms"
