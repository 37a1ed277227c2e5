#!/usr/bin/env bash
# The README's first command (`make demo`): Tessera end to end on a real model from PyPI.
#   1. start a Hub-compatible server on loopback (`tessera hub serve`),
#   2. publish silero-vad 6.2.3 to it with the Hub's own client (huggingface_hub + hf_xet),
#   3. mount every repo lazily (`tessera mount`), with an empty store: nothing is downloaded,
#   4. serve the ONNX model straight from the mount (`tessera serve`, KServe v2 REST),
#   5. run voice-activity detection on speech synthesized by espeak-ng and print the result,
#      the time from `serve` start to the first answer, and what the store fetched.
set -euo pipefail
source "$(dirname "$0")/env.sh"
bin="$CARGO_TARGET_DIR/debug/tessera"
py="$TESSERA_VENV/bin/python"
work=$(mktemp -d /tmp/tessera-demo.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  fusermount3 -u -z -q "$work/models" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# Starts a server writing its stdout to $1.out; echoes the URL from its first line.
url_of() {
  for _ in $(seq 1 300); do
    if grep -q 'listening on http://' "$1" 2>/dev/null; then
      grep -o 'http://[0-9.:]*' "$1" | head -1; return 0
    fi
    sleep 0.1
  done
  echo "no address in $1" >&2; cat "$1" >&2; return 1
}

say "1. a local Hub: tessera hub serve"
echo "demo_write_token demo write" > "$work/tokens"
"$bin" hub serve --listen 127.0.0.1:0 --data "$work/hub" --tokens "$work/tokens" >"$work/hub.out" 2>"$work/hub.err" &
pids+=($!)
hub=$(url_of "$work/hub.out")
echo "hub at $hub"

say "2. publish silero-vad 6.2.3 (from PyPI) with huggingface_hub"
HF_ENDPOINT="$hub" "$py" - "$TESSERA_ASSETS/silero-vad-6.2.3/silero_vad/data" <<'PY'
import sys
from huggingface_hub import HfApi
api = HfApi(token="demo_write_token")
api.create_repo("snakers4/silero-vad", exist_ok=True)
info = api.upload_folder(repo_id="snakers4/silero-vad", folder_path=sys.argv[1])
print(f"published commit {info.oid}: {len(api.list_repo_files('snakers4/silero-vad'))} files")
PY

say "3. mount every repo lazily, on an empty store"
mkdir -p "$work/models"
"$bin" --home "$work/store" mount "$work/models" --endpoint "$hub" 2>"$work/mount.err" &
pids+=($!)
for _ in $(seq 1 300); do grep -q 'tessera: mounted' "$work/mount.err" 2>/dev/null && break; sleep 0.1; done
model="$work/models/snakers4/silero-vad@main/silero_vad.onnx"
ls -l "$work/models/snakers4/silero-vad@main/" | sed 's/^/  /'

say "4. serve the model straight from the mount"
start=$(date +%s.%N)
"$bin" --home "$work/store" serve --listen 127.0.0.1:0 --model "vad=$model" >"$work/serve.out" 2>"$work/serve.err" &
pids+=($!)
srv=$(url_of "$work/serve.out")
first=$("$py" - "$srv" <<'PY'
import json, sys, time, urllib.request
url = sys.argv[1]
for _ in range(600):
    try:
        if urllib.request.urlopen(f"{url}/v2/health/ready", timeout=5).status == 200:
            break
    except Exception:
        time.sleep(0.05)
body = {"inputs": [
    {"name": "input", "shape": [1, 576], "datatype": "FP32", "data": [0.0] * 576},
    {"name": "state", "shape": [2, 1, 128], "datatype": "FP32", "data": [0.0] * 256},
    {"name": "sr", "shape": [], "datatype": "INT64", "data": [16000]}]}
req = urllib.request.Request(f"{url}/v2/models/vad/infer", data=json.dumps(body).encode(),
                             headers={"Content-Type": "application/json"})
out = json.load(urllib.request.urlopen(req, timeout=60))
print(out["outputs"][0]["data"][0])
PY
)
end=$(date +%s.%N)
secs=$("$py" -c "print(f'{$end - $start:.2f}')")
echo "first answer (silence -> p(speech) = $first) $secs s after serve started"
curl -s "$srv/v2/models/vad" | "$py" -c "import json,sys; m=json.load(sys.stdin); print('model metadata:', json.dumps(m.get('parameters', {})))"

say "5. voice-activity detection on speech synthesized by espeak-ng"
"$py" "$(dirname "$0")/vad_client.py" "$srv" vad "Tessera serves this model straight from a lazy mount."

say "what the store holds: only the bytes serve read, not the whole repo"
for i in 3 2; do kill -TERM "${pids[$((i - 1))]}" 2>/dev/null || true; wait "${pids[$((i - 1))]}" 2>/dev/null || true; done
"$bin" --home "$work/store" du
echo
echo "restart time (process start to first answer): $secs s"
