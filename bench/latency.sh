#!/usr/bin/env bash
# Latency under rising load, 370 sensors (SENSORS) each publishing R messages/s for SECS
# seconds, for each R in RATES, RUNS runs per rate, Tellijn and Mosquitto interleaved (a fresh
# Tellijn with an empty data directory each run, so every message is new to it).
# - send → PUBACK (client side, exact): Tellijn's PUBACK means validated, deduplicated and
#   handed to the processors; Mosquitto's means received and queued for forwarding.
# - receipt → occupancy (`tellijn_processing_latency_seconds`: from the publish hook to the
#   room's new occupancy), read from the histogram's buckets (p50/p99/max are bucket bounds).
# Rows per rate give min/median/max over runs of each p99; the last row is the sustainable rate
# of each (the highest R whose median PUBACK p99 is < 50 ms).
source "$(dirname "$0")/common.sh"
SENSORS=${SENSORS:-370}
RATES=${RATES:-1 25 50 75 100}
SECS=${SECS:-8}
RUNS=${RUNS:-3}
tmp=$(mktemp -d); trap 'stop_server; rm -rf "$tmp"' EXIT
# All bench sensors connect from 127.0.0.1 at once; real cameras have an address each, so the
# per-address limit on connections still logging in is lifted here.
campus "$tmp/campus.toml" "$tmp/data" "$SENSORS" "$SENSORS" "$(printf '[limits]\npublish_rate = 1000\npublish_burst = 1000\nmax_pending_per_ip = 4096\n')"
hist() { curl -fs "http://127.0.0.1:$METRICS_PORT/metrics" | grep '^tellijn_processing_latency_seconds_bucket'; }
quantiles() {  # quantiles BEFORE AFTER: "p50 p99 max n" in ms from bucket deltas
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
lt() { python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) else 1)" "$1" "$2"; }
best_t=0; best_m=0
for r in $RATES; do
  n=$(( r * SECS )); [ "$n" -ge 10 ] || n=10
  tp99=(); mp99=(); op99=(); tp50=(); mp50=(); tmax=(); mmax=(); got=()
  for run in $(seq 1 "$RUNS"); do
    start_mosquitto "$tmp"
    out=$("$LOAD" publish --port "$MQTT_PORT" --clients "$SENSORS" --messages "$n" --rate "$r")
    stop_server
    mp50+=("$(json "$out" puback_ms_p50)"); mp99+=("$(json "$out" puback_ms_p99)"); mmax+=("$(json "$out" puback_ms_max)")
    rm -rf "$tmp/data"; mkdir -p "$tmp/data"
    start_tellijn "$tmp/campus.toml"
    before=$(hist)
    out=$("$LOAD" publish --port "$MQTT_PORT" --clients "$SENSORS" --messages "$n" --rate "$r")
    after=$(hist)
    stop_server
    read -r o50 o99 omax on <<<"$(quantiles "$before" "$after")"
    tp50+=("$(json "$out" puback_ms_p50)"); tp99+=("$(json "$out" puback_ms_p99)"); tmax+=("$(json "$out" puback_ms_max)")
    op99+=("$o99"); got+=("$on")
    echo "latency $r/s run $run: PUBACK p99 Tellijn ${tp99[-1]} ms, Mosquitto ${mp99[-1]} ms; receipt → occupancy p99 ≤ $o99 ms" >&2
  done
  tm=$(median "${tp99[@]}"); mm=$(median "${mp99[@]}"); om=$(median "${op99[@]}")
  lt "$tm" 50 && best_t=$r
  lt "$mm" 50 && best_m=$r
  target="receipt → occupancy p99 < 50 ms; PUBACK p99 ≤ Mosquitto's"
  [ "$r" -le 1 ] && target="receipt → occupancy p99 < 5 ms"
  echo "| latency at $r msg/s × $SENSORS sensors ($((r * SENSORS)) msg/s offered, $n each) | send → PUBACK p50 $(DEC=1 stats "${tp50[@]}") ms, p99 $(DEC=1 stats "${tp99[@]}") ms, max $(DEC=0 stats "${tmax[@]}") ms; receipt → occupancy p99 ≤ $(DEC=1 stats "${op99[@]}") ms (${got[0]} messages) | Mosquitto send → PUBACK p50 $(DEC=1 stats "${mp50[@]}") ms, p99 $(DEC=1 stats "${mp99[@]}") ms, max $(DEC=0 stats "${mmax[@]}") ms | PUBACK p99 $(ratio "$tm" "$mm") | $target |"
done
echo "| sustainable rate (highest of: $RATES msg/s per sensor with median PUBACK p99 < 50 ms) | Tellijn $best_t msg/s × $SENSORS = $((best_t * SENSORS)) msg/s | Mosquitto $best_m msg/s × $SENSORS = $((best_m * SENSORS)) msg/s | $(ratio "$((best_t + 0))" "$((best_m > 0 ? best_m : 1))") | ≥ 1 |"
echo "<!-- latency: commit $(commit); $RUNS runs per rate, interleaved, $SECS s each; figures are min/median/max over runs -->"
