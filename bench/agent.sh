#!/usr/bin/env bash
# The sensor agent: stripped binary size; RSS and CPU at 1 message/s against a running Tellijn
# (30 s); and draining 100 000 buffered messages (an outage's outbox) into Tellijn: time, agent
# CPU and peak RSS, until the server has accepted all of them.
source "$(dirname "$0")/common.sh"
N=${N:-100000}
AGENT=$(realpath "${AGENT_BIN:-$TARGET/release/tellijn-agent}")
FILL=${FILL_OUTBOX:-$TARGET/release/examples/fill_outbox}
tmp=$(mktemp -d); trap 'stop_server; kill $apid 2>/dev/null || true; rm -rf "$tmp"' EXIT
apid=
cp "$AGENT" "$tmp/agent-stripped"; strip "$tmp/agent-stripped"
size=$(python3 -c "print(f'{$(stat -c %s "$tmp/agent-stripped")/1e6:.2f}')")

mkdir -p "$tmp/data"
# The publish rate limit is lifted to measure the agent, not the limit (default 50/s per sensor:
# a 100 000-message outbox then drains in ≈ 33 min).
campus "$tmp/campus.toml" "$tmp/data" 2 2 "$(printf '[limits]\npublish_rate = 1000000\npublish_burst = 1000000\n')"
start_tellijn "$tmp/campus.toml"
echo bench-secret >"$tmp/secret"
agent_config() {  # agent_config SENSOR OUTBOX
  cat >"$tmp/$1.toml" <<TOML
sensor = "$1"
broker = "mqtt://127.0.0.1:$MQTT_PORT"
secret_file = "secret"
outbox = "$2"
interval = "1s"
[source]
kind = "simulated"
lines = ["main"]
TOML
}
peak_rss() {  # peak_rss PID SECONDS: samples VmRSS every 100 ms, prints the peak in MB
  local peak=0 r
  for _ in $(seq 1 $(($2 * 10))); do
    r=$(awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0)
    [ "$r" -gt "$peak" ] && peak=$r
    sleep 0.1
  done
  python3 -c "print(f'{$peak/1024:.1f}')"
}
accepted() {
  curl -fs "http://127.0.0.1:$METRICS_PORT/metrics" |
    awk '/^tellijn_messages_total\{outcome="(accepted|late)"\}/ {s += $2} END {print s + 0}'
}

# 1 message per second, 30 s.
agent_config bench-0 outbox-0
(cd "$tmp" && exec "$AGENT" --config bench-0.toml 2>/dev/null) &
apid=$!
sleep 2
cpu0=$(cpu_s "$apid")
rss=$(peak_rss "$apid" 30)
cpu=$(python3 -c "print(f'{($(cpu_s "$apid") - $cpu0) / 30 * 100:.2f}')")
kill -INT "$apid"; wait "$apid" || true

# Draining an outbox of N messages.
"$FILL" "$tmp/outbox-1" bench-1 "$N" >/dev/null
agent_config bench-1 outbox-1
before=$(accepted)
start=$(date +%s.%N)
(cd "$tmp" && exec "$AGENT" --config bench-1.toml 2>/dev/null) &
apid=$!
peak=0
while [ "$(accepted)" -lt $((before + N)) ]; do
  r=$(awk '/^VmRSS/ {print $2}' "/proc/$apid/status")
  [ "$r" -gt "$peak" ] && peak=$r
  sleep 0.2
done
secs=$(python3 -c "print(f'{$(date +%s.%N) - $start:.1f}')")
dcpu=$(cpu_s "$apid")
kill -INT "$apid"; wait "$apid" || true
drss=$(python3 -c "print(f'{$peak/1024:.1f}')")
# No peer runs the agent's job here; its figures are set against its budgets (issue 4).
echo "| agent binary, stripped (release) | $size MB | budget 6 MB | $(ratio "$size" 6) | < 6 MB |"
echo "| agent at 1 message/s, 30 s, connected | CPU $cpu % of a core, peak RSS $rss MB | budget 10 MB RSS | $(ratio "$rss" 10) | < 10 MB |"
echo "| agent draining $N buffered messages into Tellijn | $secs s ($(python3 -c "print(round($N/$secs))") msg/s, until the server accepted all), agent CPU $dcpu s, peak RSS $drss MB | budget 10 MB RSS | $(ratio "$drss" 10) | < 10 MB |"
