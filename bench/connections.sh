#!/usr/bin/env bash
# Scale of connections: the server's RSS and CPU with 370, 5 000 and 20 000 connected idle
# sensors (real TCP, logged in; keep-alive 60 s), measured after all are connected and again
# after 10 s of idling. Growth per connection = (RSS at the largest count − RSS at 370) / the difference.
# Peer: Debian's Mosquitto holding the same idle connections (anonymous, no persistence).
source "$(dirname "$0")/common.sh"
ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
# Each connection costs the server three descriptors (the client's socket, and the door's socket
# to rmqtt with rmqtt's end of it). Where the hard limit cannot be raised (a container), the
# largest count measured is what it allows, and the output says so.
fds=$(ulimit -n)
most=$(( (fds - 300) / 3 ))
counts=()
for n in ${COUNTS:-370 5000 20000}; do
  if [ "$n" -gt "$most" ]; then
    echo "<!-- connections: $n needs ≥ $((3 * n + 300)) descriptors, the limit here is $fds (hard limit $(ulimit -Hn)); measured $most instead -->"
    n=$most
  fi
  counts+=("$n")
done
tmp=$(mktemp -d); trap 'stop_server; rm -rf "$tmp"' EXIT
rows=(); mosq=()
for n in "${counts[@]}"; do
  rm -rf "$tmp/data"; mkdir -p "$tmp/data"
  campus "$tmp/campus.toml" "$tmp/data" "$n" 370 "$(printf '[limits]\nmax_pending = 20000\nmax_pending_per_ip = 20000\nconnect_timeout = "60s"\n')"
  start_tellijn "$tmp/campus.toml"
  base=$(rss_mb "$SERVER_PID")
  exec 3> >("$LOAD" idle --port "$MQTT_PORT" --clients "$n" >"$tmp/idle.out")
  until grep -q connected "$tmp/idle.out" 2>/dev/null; do sleep 0.2; done
  rss=$(rss_mb "$SERVER_PID"); cpu0=$(cpu_s "$SERVER_PID")
  sleep 10
  cpu1=$(cpu_s "$SERVER_PID"); rss10=$(rss_mb "$SERVER_PID")
  exec 3>&-
  rows+=("$n $base $rss $rss10 $(python3 -c "print(round(($cpu1-$cpu0)/10*100,1))")")
  stop_server
  start_mosquitto "$tmp"
  exec 3> >("$LOAD" idle --port "$MQTT_PORT" --clients "$n" >"$tmp/idle.out")
  until grep -q connected "$tmp/idle.out" 2>/dev/null; do sleep 0.2; done
  sleep 2
  mosq+=("$(rss_mb "$SERVER_PID")")
  exec 3>&-
  stop_server
done
first=(${rows[0]}); last=(${rows[-1]})
per=$(python3 -c "print(round((${last[3]}-${first[3]})*1024/(${last[0]}-${first[0]}),1))")
i=0
for r in "${rows[@]}"; do
  set -- $r
  echo "| $1 idle sensors connected | RSS $4 MB (empty server $2 MB), CPU idle $5 % of a core; growth ≈ $per KiB per connection | Mosquitto RSS ${mosq[$i]} MB | RSS $(ratio "$4" "${mosq[$i]}") | < 150 MB at 370 |"
  i=$((i + 1))
done
