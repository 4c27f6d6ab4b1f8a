#!/usr/bin/env bash
# Ingest throughput: CLIENTS real MQTT connections publish MESSAGES valid count messages each at
# QoS 1, as fast as the server acknowledges them (100 in flight per connection).
# Tellijn: the clock stops when every client's `ack` topic covers its last seq, i.e. every
# message is validated, deduplicated, aggregated and durably in Parquet.
# Peer: Debian's Mosquitto only forwarding the same messages to one subscriber; the clock stops
# when the subscriber has all of them. Same publisher, same run.
# Prints a Markdown row: Tellijn msg/s, Mosquitto msg/s, ratio.
source "$(dirname "$0")/common.sh"
CLIENTS=${CLIENTS:-50}
MESSAGES=${MESSAGES:-5000}
TOTAL=$((CLIENTS * MESSAGES))
tmp=$(mktemp -d); trap 'stop_server; rm -rf "$tmp"' EXIT

# Mosquitto first: it keeps nothing, so it cannot warm anything for Tellijn.
start_mosquitto "$tmp"
"$LOAD" subscribe --port "$MQTT_PORT" --expect "$TOTAL" >"$tmp/sub.out" &
sub=$!
until grep -q subscribed "$tmp/sub.out" 2>/dev/null; do sleep 0.05; done
start=$(date +%s.%N)
"$LOAD" publish --port "$MQTT_PORT" --clients "$CLIENTS" --messages "$MESSAGES" >"$tmp/mosq.json"
wait "$sub"
mosq=$(python3 -c "print(round($TOTAL / ($(date +%s.%N) - $start)))")
stop_server

mkdir -p "$tmp/data"
campus "$tmp/campus.toml" "$tmp/data" "$CLIENTS" "$CLIENTS" \
  "$(printf '[limits]\npublish_rate = 1000000\npublish_burst = 1000000\nmax_pending_per_ip = 4096')"
start_tellijn "$tmp/campus.toml"
cpu0=$(cpu_s "$SERVER_PID")
"$LOAD" publish --port "$MQTT_PORT" --clients "$CLIENTS" --messages "$MESSAGES" --wait-ack >"$tmp/tellijn.json"
cpu1=$(cpu_s "$SERVER_PID")
tellijn=$(json "$(cat "$tmp/tellijn.json")" per_second)
rows=$(curl -fs "http://127.0.0.1:$METRICS_PORT/metrics" | awk '/^tellijn_messages_total\{outcome="accepted"\}/ {print $2}')
stop_server
echo "| ingest, $CLIENTS connections × $MESSAGES messages, QoS 1 | Tellijn $tellijn msg/s (acked durably; $rows accepted; server CPU $(python3 -c "print(round($cpu1-$cpu0,1))") s) | Mosquitto $mosq msg/s (forwarded) | $(ratio "$tellijn" "$mosq") | ≥ 1.5 |"
