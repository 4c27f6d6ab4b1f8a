# Shared by the bench scripts: the release build, a campus with N bench sensors, starting and
# measuring a server. Source it; it sets BIN, LOAD and the helpers below.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
export CARGO_TERM_COLOR=never
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=${TELLIJN_BIN:-$TARGET/release/tellijn}
LOAD=${MQTT_LOAD:-$TARGET/release/examples/mqtt_load}

build() {
  cargo build --release -q -p tellijn --bin tellijn
  cargo build --release -q -p tellijn-agent --bin tellijn-agent --example mqtt_load --example fill_outbox
}

# argon2id of "bench-secret" at a low cost (m=1 MiB, t=1), so that 20 000 connections measure
# the server and not password hashing. Production hashes from `tellijn hash-secret` cost more.
BENCH_HASH='$argon2id$v=19$m=1024,t=1,p=1$D0Gjx0/aI7grNpxGuon8Wg$mks2R97qrfQ8S+3qC0+ObNiSagR7qPdpmYnwoTLKP6M'

# campus FILE DATA_DIR SENSORS ROOMS [EXTRA_TABLES]: sensors bench-0… count a door into rooms
# room-0… (sensor i into room i mod ROOMS), ten rooms per building, a third lecture halls.
campus() {
  local file=$1 data=$2 sensors=$3 rooms=$4 extra=${5:-}
  python3 - "$file" "$data" "$sensors" "$rooms" "$extra" "$BENCH_HASH" <<'PY'
import sys
file, data, sensors, rooms, extra, h = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
kinds = ["lecture-hall", "study", "meeting"]
out = [f'[server]\ndata_dir = "{data}"\nflush_interval = "1s"\n']
for b in range((rooms + 9) // 10):
    out.append(f'[[buildings]]\nid = "b-{b}"\nname = "Building {b}"\n')
for r in range(rooms):
    k = kinds[r % 3]
    out.append(f'[[rooms]]\nid = "room-{r}"\nbuilding = "b-{r // 10}"\nname = "Room {r}"\nkind = "{k}"\ncapacity = {200 if k == "lecture-hall" else 40}\npublic = true\n')
for s in range(sensors):
    out.append(f'[[sensors]]\nid = "bench-{s}"\nsecret_hash = "{h}"\nlines = [{{ line = "main", into = "room-{s % rooms}" }}]\n')
out.append(extra)  # whole tables such as [limits], after the arrays
open(file, "w").write("\n".join(out))
PY
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_tellijn CONFIG: starts `tellijn serve` on free ports; sets SERVER_PID, MQTT_PORT,
# HTTP_PORT, METRICS_PORT.
start_tellijn() {
  MQTT_PORT=$(free_port); HTTP_PORT=$(free_port); METRICS_PORT=$(free_port)
  "$BIN" serve --config "$1" --mqtt "127.0.0.1:$MQTT_PORT" --http "127.0.0.1:$HTTP_PORT" \
    --metrics "127.0.0.1:$METRICS_PORT" --postgres 127.0.0.1:0 >"$1.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 600); do
    curl -fs "http://127.0.0.1:$HTTP_PORT/healthz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "tellijn did not start:" >&2; cat "$1.log" >&2; return 1
}

# start_mosquitto DIR: Debian's mosquitto on a free port, anonymous, no queue limits (so it
# drops nothing for a slow subscriber); sets SERVER_PID, MQTT_PORT.
start_mosquitto() {
  MQTT_PORT=$(free_port)
  cat >"$1/mosquitto.conf" <<CONF
listener $MQTT_PORT 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 0
max_inflight_messages 0
log_dest none
CONF
  /usr/sbin/mosquitto -c "$1/mosquitto.conf" &
  SERVER_PID=$!
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$MQTT_PORT") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "mosquitto did not start" >&2; return 1
}

stop_server() { kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; }

rss_mb() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
# CPU seconds (user + system) a process has used so far.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14+$15)/hz}' "/proc/$1/stat"; }
ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
json() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
# stats V…: "min/median/max" of the numbers given (the spread over runs), to D decimals (DEC).
stats() { python3 -c 'import sys,statistics as s; d=int(sys.argv[1]); v=sorted(map(float,sys.argv[2:])); print(f"{v[0]:.{d}f}/{s.median(v):.{d}f}/{v[-1]:.{d}f}")' "${DEC:-0}" "$@"; }
# median V…: the median of the numbers given.
median() { python3 -c 'import sys,statistics as s; print(s.median(map(float,sys.argv[1:])))' "$@"; }
# The commit the figures come from (with a note when the work tree differs from it).
commit() { [ -n "${BENCH_COMMIT:-}" ] && { echo "$BENCH_COMMIT"; return; }; local c; c=$(git rev-parse --short HEAD 2>/dev/null || echo unknown); git diff --quiet HEAD 2>/dev/null || c="$c+uncommitted"; echo "$c"; }
