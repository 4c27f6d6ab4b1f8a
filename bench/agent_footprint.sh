#!/usr/bin/env bash
# Agent footprint: stripped release binary size, and peak RSS while 100 000 messages wait in
# the outbox (broker unreachable, so the agent keeps counting and buffering).
# Usage: bench/agent_footprint.sh  (prints Markdown rows for BENCHMARKS.md)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-100000}
cargo build --release -q -p tellijn-agent --bin tellijn-agent --example fill_outbox
bin=target/release/tellijn-agent
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$bin" "$tmp/tellijn-agent"
strip "$tmp/tellijn-agent"
size=$(stat -c %s "$tmp/tellijn-agent")

target/release/examples/fill_outbox "$tmp/outbox" bench-1 "$N" >/dev/null
echo secret > "$tmp/secret"
cat > "$tmp/agent.toml" <<TOML
sensor = "bench-1"
broker = "mqtt://127.0.0.1:9"
secret_file = "secret"
outbox = "outbox"
interval = "10ms"
[source]
kind = "simulated"
TOML
"$tmp/tellijn-agent" --config "$tmp/agent.toml" 2>/dev/null &
pid=$!
peak=0
for _ in $(seq 1 50); do
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
  [ "$rss" -gt "$peak" ] && peak=$rss
  sleep 0.1
done
kill -INT $pid; wait $pid || true
queued=$(ls -1 "$tmp/outbox" | wc -l)
printf '| agent binary, stripped (release, `-p tellijn-agent`) | %.2f MB | < 6 MB |\n' "$(echo "$size/1000000" | bc -l)"
printf '| agent peak RSS, %s messages in the outbox, broker unreachable, 5 s | %.2f MB | < 10 MB |\n' "$N" "$(echo "$peak/1000" | bc -l)"
echo "(outbox segments: $queued)" >&2
