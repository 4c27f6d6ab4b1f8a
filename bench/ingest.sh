#!/usr/bin/env bash
# Ingest throughput: CLIENTS real MQTT connections publish MESSAGES valid count messages each at
# QoS 1, as fast as the server acknowledges them (100 in flight per connection).
# Tellijn: the clock stops when every client's `ack` topic covers its last seq, i.e. every
# message is validated, deduplicated, aggregated and durably in Parquet.
# Peer: Debian's Mosquitto only forwarding the same messages to one subscriber; the clock stops
# when the subscriber has all of them. Same publisher; RUNS runs, interleaved (Mosquitto, then
# Tellijn on a fresh data directory), min/median/max of each side and of the ratio per run.
# Server CPU seconds (user + system) per million messages for both.
# Prints a Markdown row.
source "$(dirname "$0")/common.sh"
CLIENTS=${CLIENTS:-50}
MESSAGES=${MESSAGES:-5000}
RUNS=${RUNS:-3}
TOTAL=$((CLIENTS * MESSAGES))
tmp=$(mktemp -d); trap 'stop_server; rm -rf "$tmp"' EXIT
campus "$tmp/campus.toml" "$tmp/data" "$CLIENTS" "$CLIENTS" \
  "$(printf '[limits]\npublish_rate = 1000000\npublish_burst = 1000000\nmax_pending_per_ip = 4096')"
per_million() { python3 -c "print(round(($2 - $1) * 1e6 / $TOTAL, 1))"; }
mosq=(); tell=(); ratios=(); mcpu=(); tcpu=(); accepted=()
for run in $(seq 1 "$RUNS"); do
  # Mosquitto first in each run: it keeps nothing, so it cannot warm anything for Tellijn.
  start_mosquitto "$tmp"
  "$LOAD" subscribe --port "$MQTT_PORT" --expect "$TOTAL" >"$tmp/sub.out" &
  sub=$!
  until grep -q subscribed "$tmp/sub.out" 2>/dev/null; do sleep 0.05; done
  c0=$(cpu_s "$SERVER_PID"); start=$(date +%s.%N)
  "$LOAD" publish --port "$MQTT_PORT" --clients "$CLIENTS" --messages "$MESSAGES" >"$tmp/mosq.json"
  wait "$sub"
  m=$(python3 -c "print(round($TOTAL / ($(date +%s.%N) - $start)))")
  mcpu+=("$(per_million "$c0" "$(cpu_s "$SERVER_PID")")")
  stop_server

  rm -rf "$tmp/data"; mkdir -p "$tmp/data"
  start_tellijn "$tmp/campus.toml"
  c0=$(cpu_s "$SERVER_PID")
  "$LOAD" publish --port "$MQTT_PORT" --clients "$CLIENTS" --messages "$MESSAGES" --wait-ack >"$tmp/tellijn.json"
  tcpu+=("$(per_million "$c0" "$(cpu_s "$SERVER_PID")")")
  t=$(json "$(cat "$tmp/tellijn.json")" per_second)
  accepted+=("$(curl -fs "http://127.0.0.1:$METRICS_PORT/metrics" | awk '/^tellijn_messages_total\{outcome="accepted"\}/ {print $2}')")
  stop_server
  mosq+=("$m"); tell+=("$t"); ratios+=("$(ratio "$t" "$m")")
  echo "ingest run $run: Tellijn $t msg/s, Mosquitto $m msg/s" >&2
done
echo "<!-- ingest: commit $(commit); $RUNS runs, interleaved; figures are min/median/max over runs; accepted per run: ${accepted[*]} (of $TOTAL) -->"
echo "| ingest, $CLIENTS connections × $MESSAGES messages, QoS 1 | Tellijn $(stats "${tell[@]}") msg/s (acked durably); server CPU $(DEC=1 stats "${tcpu[@]}") s per million | Mosquitto $(stats "${mosq[@]}") msg/s (forwarded); server CPU $(DEC=1 stats "${mcpu[@]}") s per million | $(DEC=2 stats "${ratios[@]}") | ≥ 2.0 |"
