#!/usr/bin/env bash
# tellijn-counter (issue 18), on one core (taskset -c 1): frames/s with --replay against OpenCV's
# MOG2 + contours (bench/counter_peer.py, single-threaded) on the same Y4M, side by side, RUNS
# runs each at 320×240 (1800 frames) and 640×480 (900 frames), min/median/max; peak RSS;
# stripped binary size; frame lifetime at 15 fps live (tellijn-scene --realtime, no --replay);
# Debian's vtest.avi (real footage, 768×576) replayed and live-paced; counting accuracy per
# direction on unseen seeds, raw and through H.264, and the net drift over a simulated hour
# (bench/counter_accuracy.py). Prints rows of the BENCHMARKS.md table; ≈ 5–6 min on 2 cores.
source "$(dirname "$0")/common.sh"
RUNS=${RUNS:-5}
LIVE_S=${LIVE_S:-20}
ACC_SECONDS=${ACC_SECONDS:-60}
DRIFT_SECONDS=${DRIFT_SECONDS:-3600}
CORE=${CORE:-1}
COUNTER=${COUNTER_BIN:-$TARGET/release/tellijn-counter}
SCENE=${SCENE_BIN:-$TARGET/release/tellijn-scene}
apt_install() { { [ -n "${APT_UPDATED:-}" ] || apt-get update -qq; } && APT_UPDATED=1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; }

# bench/common.sh's build() is the server's and the agent's; the counter builds its own two.
[ -n "${COUNTER_BIN:-}${SCENE_BIN:-}" ] || cargo build --release -q -p tellijn-counter -p tellijn-scene
python3 -c 'import cv2, numpy' 2>/dev/null || python3 -m pip install -q opencv-python-headless 2>/dev/null \
  || python3 -m pip install -q --break-system-packages opencv-python-headless
command -v ffmpeg >/dev/null || apt_install ffmpeg
[ -x /usr/bin/time ] || apt_install time
VTEST=$(dpkg -L opencv-doc 2>/dev/null | grep '/vtest\.avi$' | head -1 || true)
[ -n "$VTEST" ] || { apt_install opencv-doc; VTEST=$(dpkg -L opencv-doc | grep '/vtest\.avi$' | head -1); }

tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
commit=$(git rev-parse --short HEAD)
git diff --quiet HEAD -- counter scene 2>/dev/null || commit="$commit+uncommitted counter/scene changes"
echo "<!-- counter: commit $commit; $RUNS runs per side, interleaved; tellijn-counter and the peer pinned to core $CORE (taskset), OpenCV $(python3 -c 'import cv2; print(cv2.__version__)') with setNumThreads(1); load average before: $(cut -d' ' -f1-3 /proc/loadavg) -->"

# stats V…: "min/median/max" of the numbers given.
stats() { python3 -c 'import sys,statistics as s; v=sorted(map(float,sys.argv[1:])); print(f"{v[0]:.0f}/{s.median(v):.0f}/{v[-1]:.0f}")' "$@"; }
median() { python3 -c 'import sys,statistics as s; print(f"{s.median(map(float,sys.argv[1:])):.1f}")' "$@"; }
status_of() { grep '"status"' "$1" | tail -1; }  # the counter's final status line
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])["status"][sys.argv[2]])' "$1" "$2"; }
ms() { python3 -c "print(f'{$1/1000:.1f}')"; }
met() { python3 -c "import sys; print('met' if $1 else 'MISSED')"; }

# speed W H SECONDS SIZE: renders one mixed scene, then RUNS × (tellijn-counter, peer), alternating.
peak_rss_kb=0
speed() {
  local w=$1 h=$2 secs=$3 size=$4 f="$tmp/speed-$1.y4m" i t0 t1
  "$SCENE" --scenario mixed --seconds "$secs" --seed 9001 --width "$w" --height "$h" \
    --truth "$tmp/speed-$w.json" --counter-config "$tmp/speed-$w.toml" >"$f"
  local frames; frames=$(json "$(cat "$tmp/speed-$w.json")" frames)
  local tf=() tc=() pf=() pc=()
  for i in $(seq 1 "$RUNS"); do
    t0=$(date +%s%N)
    /usr/bin/time -v -o "$tmp/time" taskset -c "$CORE" "$COUNTER" --replay --config "$tmp/speed-$w.toml" \
      <"$f" >"$tmp/out" 2>/dev/null
    t1=$(date +%s%N)
    [ "$(field "$(status_of "$tmp/out")" processed)" = "$frames" ] || { echo "counter processed too few frames" >&2; exit 1; }
    tf+=("$(python3 -c "print($frames*1e9/($t1-$t0))")")
    tc+=("$(awk -v n="$frames" '/User time/ {u=$NF} /System time/ {s=$NF} END {print n/(u+s)}' "$tmp/time")")
    local rss; rss=$(awk '/Maximum resident set size/ {print $NF}' "$tmp/time")
    [ "$rss" -gt "$peak_rss_kb" ] && peak_rss_kb=$rss
    local p; p=$(taskset -c "$CORE" python3 bench/counter_peer.py --person-size "$size" <"$f")
    [ "$(json "$p" frames)" = "$frames" ] || { echo "peer read too few frames" >&2; exit 1; }
    pf+=("$(json "$p" fps)"); pc+=("$(json "$p" cpu_fps)")
  done
  local target=$([ "$w" = 320 ] && echo 300 || echo 80) tm pm
  tm=$(median "${tf[@]}"); pm=$(median "${pf[@]}")
  echo "| counter frames/s, ${w}×${h}, one core, \`--replay\` ($frames frames, mixed, min/median/max of $RUNS) | tellijn-counter $(stats "${tf[@]}") frames/s wall (per CPU second: $(stats "${tc[@]}")) | OpenCV MOG2 + contours, no tracking: $(stats "${pf[@]}") frames/s wall (per CPU second: $(stats "${pc[@]}")) | $(ratio "$tm" "$pm") | ≥ $target frames/s: $(met "$tm >= $target") |"
  rm -f "$f"
}
speed 320 240 120 40
speed 640 480 60 80
rss_mb=$(python3 -c "print(f'{$peak_rss_kb/1024:.1f}')")
echo "| tellijn-counter peak RSS (\`/usr/bin/time -v\`, max over the $((2 * RUNS)) replay runs, 640×480 included) | $rss_mb MB | budget 20 MB | $(ratio "$rss_mb" 20) | ≤ 20 MB: $(met "$rss_mb <= 20") |"
cp "$COUNTER" "$tmp/counter-stripped"; strip "$tmp/counter-stripped"
size=$(python3 -c "print(f'{$(stat -c %s "$tmp/counter-stripped")/1e6:.2f}')")
echo "| tellijn-counter binary, stripped (release) | $size MB | budget 4 MB | $(ratio "$size" 4) | ≤ 4 MB: $(met "$size <= 4") |"

# live W H: LIVE_S seconds paced at 15 fps by tellijn-scene --realtime, no --replay.
live() {
  local w=$1 h=$2 s
  "$SCENE" --scenario mixed --seconds "$LIVE_S" --seed 9002 --width "$w" --height "$h" --truth-only \
    --counter-config "$tmp/live.toml" >/dev/null
  "$SCENE" --scenario mixed --seconds "$LIVE_S" --seed 9002 --width "$w" --height "$h" --realtime \
    | taskset -c "$CORE" "$COUNTER" --config "$tmp/live.toml" >"$tmp/out" 2>/dev/null
  s=$(status_of "$tmp/out")
  local p99 max; p99=$(ms "$(field "$s" lifetime_p99_us)"); max=$(ms "$(field "$s" lifetime_max_us)")
  echo "| frame lifetime, live at 15 fps, ${w}×${h}, ${LIVE_S} s (\`tellijn-scene --realtime\`, no \`--replay\`) | p99 $p99 ms, max $max ms | $(field "$s" frames) frames, $(field "$s" processed) processed, $(field "$s" dropped_behind) dropped behind, $(field "$s" dropped_late) dropped late, privacy level $(field "$s" privacy_level) | — | p99 ≤ 20 ms: $(met "$p99 <= 20") |"
}
live 320 240
live 640 480

# Real footage: vtest.avi (768×576, 10 fps, 795 frames; a street seen at an angle, not a
# doorway from above, so its counts mean nothing: this checks that it runs, and how fast).
cat >"$tmp/vtest.toml" <<'TOML'
[camera]
source = "y4m"

[[lines]]
line = "main"
from = [0, 288]
to = [768, 288]
inside = [384, 432]

[people]
size = 40
TOML
ffmpeg -nostdin -hide_banner -loglevel error -i "$VTEST" -f yuv4mpegpipe -pix_fmt yuv420p "$tmp/vtest.y4m"
t0=$(date +%s%N)
taskset -c "$CORE" "$COUNTER" --replay --config "$tmp/vtest.toml" <"$tmp/vtest.y4m" >"$tmp/out" 2>"$tmp/err"
t1=$(date +%s%N)
s=$(status_of "$tmp/out"); n=$(field "$s" processed)
echo "| real footage: Debian opencv-doc \`vtest.avi\` → Y4M 768×576, \`--replay\`, one core | ran without error: $(python3 -c "print(f'{$n*1e9/($t1-$t0):.0f}')") frames/s, lifetime p99 $(ms "$(field "$s" lifetime_p99_us)") ms, max $(ms "$(field "$s" lifetime_max_us)") ms | $n of $(field "$s" frames) frames; $(grep -c '"in"' "$tmp/out" || true) in / $(grep -c '"out"' "$tmp/out" || true) out (a street at an angle, no truth) | — | runs: met |"
rm -f "$tmp/vtest.y4m"
ffmpeg -nostdin -hide_banner -loglevel error -re -i "$VTEST" -t "$LIVE_S" -f yuv4mpegpipe -pix_fmt yuv420p - \
  | taskset -c "$CORE" "$COUNTER" --config "$tmp/vtest.toml" >"$tmp/out" 2>"$tmp/err"
s=$(status_of "$tmp/out")
echo "| real footage: \`vtest.avi\` live-paced (\`ffmpeg -re\`, 10 fps, ${LIVE_S} s), no \`--replay\` | lifetime p99 $(ms "$(field "$s" lifetime_p99_us)") ms, max $(ms "$(field "$s" lifetime_max_us)") ms | $(field "$s" frames) frames, $(field "$s" processed) processed, $(field "$s" dropped_behind) dropped behind, $(field "$s" dropped_late) dropped late | — | p99 ≤ 20 ms: $(met "$(field "$s" lifetime_p99_us) <= 20000") |"

python3 bench/counter_accuracy.py --scene "$SCENE" --counter "$COUNTER" --seeds 9001-9010 \
  --seconds "$ACC_SECONDS" --drift-seconds "$DRIFT_SECONDS" --jobs 2 --tmp "$tmp"
