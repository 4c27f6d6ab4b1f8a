#!/usr/bin/env bash
# Latency, broker receipt → occupancy update (`tellijn_processing_latency_seconds`: from the
# publish hook to the room's new occupancy), at campus load (370 sensors × 1 message/s) and at
# 100× that (370 × 100/s), read from the histogram's buckets over the run (so p50/p99/max are
# bucket upper bounds). Also the publisher's send → PUBACK times (exact, client side), against
# Mosquitto at the same load as the peer.
source "$(dirname "$0")/common.sh"
SENSORS=${SENSORS:-370}
tmp=$(mktemp -d); trap 'stop_server; rm -rf "$tmp"' EXIT
mkdir -p "$tmp/data"
# All bench sensors connect from 127.0.0.1 at once; real cameras have an address each, so the
# per-address limit on connections still logging in is lifted here.
campus "$tmp/campus.toml" "$tmp/data" "$SENSORS" "$SENSORS" "$(printf '[limits]\npublish_rate = 1000\npublish_burst = 1000\nmax_pending_per_ip = 4096\n')"
start_tellijn "$tmp/campus.toml"
hist() { curl -fs "http://127.0.0.1:$METRICS_PORT/metrics" | grep '^tellijn_processing_latency_seconds_bucket'; }
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
run() {  # run RATE MESSAGES: sets LINE_<RATE> (Tellijn figures) and P99_<RATE>, PUBACK99_<RATE>
  local before after out
  before=$(hist)
  out=$("$LOAD" publish --port "$MQTT_PORT" --clients "$SENSORS" --messages "$2" --rate "$1")
  after=$(hist)
  read -r p50 p99 max n <<<"$(quantiles "$before" "$after")"
  printf -v "LINE_$1" '%s' "receipt → occupancy p50 ≤ $p50 ms, p99 ≤ $p99 ms, max ≤ $max ms ($n messages); send → PUBACK p50 $(json "$out" puback_ms_p50) ms, p99 $(json "$out" puback_ms_p99) ms, max $(json "$out" puback_ms_max) ms"
  printf -v "P99_$1" '%s' "$p99"
  printf -v "PUBACK99_$1" '%s' "$(json "$out" puback_ms_p99)"
}
# Peer: the same publisher at the same rate against Mosquitto, whose PUBACK means only "received
# and queued for forwarding" (Tellijn's means validated and handed to the processors).
peer() {  # peer RATE MESSAGES: prints "p50 p99 max" of send → PUBACK in ms
  local out
  out=$("$LOAD" publish --port "$MQTT_PORT" --clients "$SENSORS" --messages "$2" --rate "$1")
  echo "$(json "$out" puback_ms_p50) $(json "$out" puback_ms_p99) $(json "$out" puback_ms_max)"
}
# The 100× run gets a fresh server and data: its sensors start again from seq 1.
run 1 20
stop_server
rm -rf "$tmp/data"; mkdir -p "$tmp/data"
start_tellijn "$tmp/campus.toml"
run 100 1000
stop_server
start_mosquitto "$tmp"
read -r m50_1 m99_1 mmax_1 <<<"$(peer 1 20)"
read -r m50_100 m99_100 mmax_100 <<<"$(peer 100 1000)"
echo "| latency at 1 msg/s × $SENSORS sensors | $LINE_1 | Mosquitto send → PUBACK p50 $m50_1 ms, p99 $m99_1 ms, max $mmax_1 ms | PUBACK p99 $(ratio "$PUBACK99_1" "$m99_1") | receipt → occupancy p99 < 5 ms |"
echo "| latency at 100 msg/s × $SENSORS sensors | $LINE_100 | Mosquitto send → PUBACK p50 $m50_100 ms, p99 $m99_100 ms, max $mmax_100 ms | PUBACK p99 $(ratio "$PUBACK99_100" "$m99_100") | receipt → occupancy p99 < 50 ms |"
