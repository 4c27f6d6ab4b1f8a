#!/usr/bin/env bash
# Scale of connections: the server's RSS and CPU with COUNTS connected idle sensors (default
# 370 and 5 000; real TCP, logged in; keep-alive 60 s), measured after all are connected and
# again after 10 s of idling, RUNS runs each on a fresh server. Growth per connection =
# (RSS at the largest count − RSS at the smallest) / the difference, per run.
# Peer: Debian's Mosquitto holding the same idle connections (anonymous, no persistence).
# Figures are min/median/max over runs.
source "$(dirname "$0")/common.sh"
RUNS=${RUNS:-3}
ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
# Each connection costs the server one descriptor (the client's socket; rmqtt runs on it, there
# is no relay). Where the hard limit cannot be raised (a container), the largest count measured
# is what it allows, and the output says so.
fds=$(ulimit -n)
most=$(( fds - 300 ))
counts=()
for n in ${COUNTS:-370 5000}; do
  if [ "$n" -gt "$most" ]; then
    echo "<!-- connections: $n needs ≥ $((n + 300)) descriptors, the limit here is $fds (hard limit $(ulimit -Hn)); measured $most instead -->"
    n=$most
  fi
  counts+=("$n")
done
tmp=$(mktemp -d); trap 'stop_server; rm -rf "$tmp"' EXIT
declare -A base rss cpu mosq
for run in $(seq 1 "$RUNS"); do
  for n in "${counts[@]}"; do
    rm -rf "$tmp/data"; mkdir -p "$tmp/data"
    campus "$tmp/campus.toml" "$tmp/data" "$n" 370 "$(printf '[limits]\nmax_pending = 20000\nmax_pending_per_ip = 20000\nconnect_timeout = "60s"\n')"
    start_tellijn "$tmp/campus.toml"
    base[$n]+="$(rss_mb "$SERVER_PID") "
    exec 3> >("$LOAD" idle --port "$MQTT_PORT" --clients "$n" >"$tmp/idle.out")
    until grep -q connected "$tmp/idle.out" 2>/dev/null; do sleep 0.2; done
    cpu0=$(cpu_s "$SERVER_PID")
    sleep 10
    cpu1=$(cpu_s "$SERVER_PID")
    rss[$n]+="$(rss_mb "$SERVER_PID") "
    cpu[$n]+="$(python3 -c "print(round(($cpu1-$cpu0)/10*100,1))") "
    exec 3>&-
    stop_server
    start_mosquitto "$tmp"
    exec 3> >("$LOAD" idle --port "$MQTT_PORT" --clients "$n" >"$tmp/idle.out")
    until grep -q connected "$tmp/idle.out" 2>/dev/null; do sleep 0.2; done
    sleep 2
    mosq[$n]+="$(rss_mb "$SERVER_PID") "
    exec 3>&-
    stop_server
    echo "connections $n run $run: Tellijn RSS $(echo ${rss[$n]} | awk '{print $NF}') MB" >&2
  done
done
first=${counts[0]}; last=${counts[-1]}
growth() {  # growth RSS_FIRST… RSS_LAST… : KiB per connection per run
  python3 - "$first" "$last" "$1" "$2" <<'PY'
import sys
a, b = int(sys.argv[1]), int(sys.argv[2])
x, y = map(float, sys.argv[3].split()), map(float, sys.argv[4].split())
print(" ".join(f"{(q - p) * 1024 / (b - a):.1f}" for p, q in zip(x, y)))
PY
}
per=$(growth "${rss[$first]}" "${rss[$last]}")
mper=$(growth "${mosq[$first]}" "${mosq[$last]}")
# The same growth split in two: what a further sensor costs configured but not connected (the
# empty servers' difference: its policy entry, metrics and processor state), and what its
# connection adds on top (RSS connected − RSS empty, per run).
conf=$(growth "${base[$first]}" "${base[$last]}")
over() {  # over RSS… BASE… : RSS − BASE per run
  python3 -c 'import sys; a, b = sys.argv[1].split(), sys.argv[2].split(); print(" ".join(f"{float(x) - float(y):.1f}" for x, y in zip(a, b)))' "$1" "$2"
}
conn=$(growth "$(over "${rss[$first]}" "${base[$first]}")" "$(over "${rss[$last]}" "${base[$last]}")")
echo "<!-- connections: commit $(commit); $RUNS runs; figures are min/median/max over runs -->"
for n in "${counts[@]}"; do
  t=$(median ${rss[$n]}); m=$(median ${mosq[$n]})
  target="≤ 60 MB at 370"; [ "$n" -gt 370 ] && target="≤ 10 KiB per further connection"
  echo "| $n idle sensors connected | RSS $(DEC=1 stats ${rss[$n]}) MB (empty server $(DEC=1 stats ${base[$n]}) MB), CPU idle $(DEC=1 stats ${cpu[$n]}) % of a core | Mosquitto RSS $(DEC=1 stats ${mosq[$n]}) MB | RSS $(ratio "$t" "$m") | $target |"
done
echo "| growth per further idle connection ($first → $last) | $(DEC=1 stats $per) KiB | Mosquitto $(DEC=1 stats $mper) KiB | $(ratio "$(median $per)" "$(median $mper)") | ≤ 10 KiB |"
echo "| of which a further sensor in the config, not connected | $(DEC=1 stats $conf) KiB | – | – | – |"
echo "| of which its idle connection | $(DEC=1 stats $conn) KiB | Mosquitto $(DEC=1 stats $mper) KiB | $(ratio "$(median $conn)" "$(median $mper)") | – |"
