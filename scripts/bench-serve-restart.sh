#!/usr/bin/env bash
# What the optimized-model cache saves on a restart of `tessera serve`.
#
#   scripts/bench-serve-restart.sh MODEL.onnx [RUNS]
#
# Starts the server RUNS times (default 5) each way, alternating: without the cache (graph
# optimisation on every start) and with a warm cache (the optimized model from <home>/ort-cache,
# optimisation disabled). Prints the median model load time (from the server's log) and the median
# time from process start to /v2/health/ready.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/env.sh"
model=$(realpath "$1"); runs=${2:-5}
bin="$CARGO_TARGET_DIR/debug/tessera"
home=$(mktemp -d); log=$(mktemp)
trap 'rm -rf "$home" "$log"' EXIT

start_once() { # prints "<load ms> <ready ms>"
  local t0 pid port
  : >"$log" # before the start, so that no earlier run's port can be read
  t0=$(date +%s%N)
  "$bin" --home "$home" serve --listen 127.0.0.1:0 --model "m=$model" "$@" 2>"$log" &
  pid=$!
  until port=$(grep -o 'listening on http://[0-9.:]*' "$log" | sed 's/.*://'); [ -n "$port" ]; do sleep 0.01; done
  until curl -sf "http://127.0.0.1:$port/v2/health/ready" >/dev/null; do sleep 0.01; done
  local t1; t1=$(date +%s%N)
  kill -TERM "$pid"; wait "$pid"
  printf '%s %s\n' "$(grep -o 'in [0-9.]* ms (optimized' "$log" | grep -o '[0-9.]*' | head -1)" \
    "$(( (t1 - t0) / 1000000 ))"
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

start_once >/dev/null # writes the cache
: >"$home/no-cache"; : >"$home/warm"
for _ in $(seq "$runs"); do
  start_once --no-cache >>"$home/no-cache"
  start_once >>"$home/warm"
done
echo "model: $model ($(stat -c %s "$model") bytes), $runs runs each, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for mode in no-cache warm; do
  printf '  %-9s load %7.1f ms (median)   start -> ready %5d ms (median)\n' "$mode" \
    "$(cut -d' ' -f1 "$home/$mode" | median)" "$(cut -d' ' -f2 "$home/$mode" | median)"
done
