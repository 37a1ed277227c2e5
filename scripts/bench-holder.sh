#!/usr/bin/env bash
# Overhead of running commands through a mount's control socket (issue 14's first benchmark):
# `ls`, `du` and `cat` of a 256 MiB file on an unmounted store, then the same commands on the
# same store while `tessera mount` holds it (they then run inside the mount process and stream
# their output back). Prints the median of RUNS runs of each, side by side.
set -euo pipefail
shopt -s inherit_errexit
source "$(dirname "$0")/env.sh"
bin="${TESSERA_BIN:-$CARGO_TARGET_DIR/debug/tessera}"
runs="${RUNS:-5}"
work=$(mktemp -d /tmp/tessera-bench-holder.XXXXXX)
# On exit: stop the hub and the mount (this shell's jobs), unmount, remove everything.
trap 'set +e; kill $(jobs -p) 2>/dev/null; wait; fusermount3 -u -z -q "$work/models" 2>/dev/null; rm -rf "$work"' EXIT

# Waits until file $1 has a line matching $2 (the servers print their readiness).
wait_for() {
  for _ in $(seq 1 600); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
  echo "no '$2' in $1" >&2; cat "$1" >&2; return 1
}

# Median wall seconds of `tessera --home H ARGS > /dev/null`, over $runs runs.
median() {
  for _ in $(seq 1 "$runs"); do
    local t0 t1; t0=$(date +%s.%N)
    "$bin" --home "$work/home" "$@" >/dev/null 2>&1
    t1=$(date +%s.%N); echo "$t1 - $t0" | bc
  done | sort -n | sed -n "$(( (runs + 1) / 2 ))p"
}

echo "bench_write bench write" > "$work/tokens"
"$bin" hub serve --listen 127.0.0.1:0 --data "$work/hub" --tokens "$work/tokens" >"$work/hub.out" 2>/dev/null &
wait_for "$work/hub.out" 'listening on http://'
hub=$(grep -o 'http://[0-9.:]*' "$work/hub.out" | head -1)
mkdir -p "$work/upload"
head -c $((256 << 20)) /dev/urandom > "$work/upload/model.bin"
HF_ENDPOINT=$hub HF_TOKEN=bench_write "$bin" --home "$work/pub" push --create "$work/upload" org/bench >/dev/null
HF_ENDPOINT=$hub "$bin" --home "$work/home" pull org/bench >/dev/null
export HF_HUB_OFFLINE=1
cmds=("ls org/bench" "du" "cat org/bench:model.bin")
declare -A before
for c in "${cmds[@]}"; do read -ra a <<<"$c"; before[$c]=$(median "${a[@]}"); done

"$bin" --home "$work/home" mount "$work/models" --offline 2>"$work/mount.err" &
wait_for "$work/mount.err" 'tessera: mounted'
printf '%-26s %12s %12s %8s\n' command unmounted_s mounted_s speed
for c in "${cmds[@]}"; do
  read -ra a <<<"$c"
  after=$(median "${a[@]}")
  printf '%-26s %12.3f %12.3f %7.2fx\n' "$c" "${before[$c]}" "$after" "$(echo "${before[$c]} / $after" | bc -l)"
done
