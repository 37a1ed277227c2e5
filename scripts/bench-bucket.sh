#!/usr/bin/env bash
# Replicas on object storage under load (issue 16): N concurrent snapshot_downloads of MiniLM
# (90 MB) from a SeaweedFS-backed hub, three ways in one run:
#   proxy     one replica with --proxy-bytes (every xorb byte through the replica)
#   presign1  one replica handing out presigned SeaweedFS URLs
#   presign2  two replicas (clients split evenly) handing out presigned URLs
# Prints one JSON line per way: aggregate MB/s (tests/py/load.py) and the replicas'
# CPU-seconds (utime+stime from /proc) spent during the downloads.
#
#   scripts/bench-bucket.sh [CLIENTS]      (default 16; needs `make setup` and a built binary)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/env.sh"
clients=${1:-16}
bin="$CARGO_TARGET_DIR/debug/tessera"
py="$TESSERA_VENV/bin/python"
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_weed() {
  local names=(s3.port s3.port.grpc filer.port filer.port.grpc master.port master.port.grpc
    volume.port volume.port.grpc webdav.port admin.port admin.port.grpc)
  local flags=() p
  for n in "${names[@]}"; do p=$(free_port); flags+=("-$n=$p"); eval "port_${n//./_}=$p"; done
  cat >"$work/s3.json" <<'JSON'
{"identities":[{"name":"bench","credentials":[{"accessKey":"bench","secretKey":"bench-secret"}],"actions":["Admin","Read","Write","List"]}]}
JSON
  "$TESSERA_VENV/bin/weed" mini -dir="$work/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -master.telemetry=false -admin.ui=false -s3.port.iceberg=0 -s3.port.lance=0 \
    -s3.config="$work/s3.json" -bucket=bench "${flags[@]}" >"$work/weed.log" 2>&1 &
  pids+=($!)
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port_filer_port/buckets/bench/")" = 200 ]; do sleep 0.05; done
  export AWS_ENDPOINT_URL="http://127.0.0.1:$port_s3_port" AWS_REGION=us-east-1
  export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret
}

# start_replica NAME [FLAGS...]: prints the URL; the pid goes to $work/NAME.pid
start_replica() {
  local name=$1; shift
  echo "hf_bench alice write" >"$work/tokens"
  "$bin" hub serve --listen 127.0.0.1:0 --data "$work/$name" --tokens "$work/tokens" \
    --storage s3://bench/hub "$@" >"$work/$name.out" 2>"$work/$name.log" &
  echo $! >"$work/$name.pid"
  until grep -q 'listening on' "$work/$name.out"; do sleep 0.02; done
  grep -o 'http://[0-9.:]*' "$work/$name.out"
}

cpu_secs() { # utime+stime of a pid, seconds
  awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"
}

load() { # load URL N DIR: tests/py/load.py's JSON
  (cd "$here/../tests/py" && HF_ENDPOINT=$1 T_WORK="$3" HF_HUB_DISABLE_PROGRESS_BARS=1 \
    "$py" load.py "$2" alice/minilm)
}

add() { awk -v a="$1" -v b="$2" 'BEGIN { print a + b }'; }

start_weed
seed=$(start_replica seed); pids+=("$(cat "$work/seed.pid")")
(cd "$here/../tests/py" && HF_ENDPOINT=$seed T_WRITE=hf_bench T_WORK="$work/seed-work" "$py" -c '
from huggingface_hub import HfApi
from common import MINILM, URL, WRITE
api = HfApi(endpoint=URL, token=WRITE)
api.create_repo("alice/minilm")
api.upload_folder(repo_id="alice/minilm", folder_path=MINILM)')

run() { # run WAY REPLICAS [FLAGS...]
  local way=$1 n=$2; shift 2
  local urls=() rpids=() before=0 after=0 i
  for i in $(seq 1 "$n"); do
    urls+=("$(start_replica "$way-$i" "$@")"); rpids+=("$(cat "$work/$way-$i.pid")"); pids+=("${rpids[-1]}")
  done
  for p in "${rpids[@]}"; do before=$(add "$before" "$(cpu_secs "$p")"); done
  local per=$((clients / n)) loads=()
  for i in "${!urls[@]}"; do
    load "${urls[$i]}" "$per" "$work/load-$way-$i" >"$work/$way-load-$i.json" &
    loads+=($!)
  done
  wait "${loads[@]}"
  for p in "${rpids[@]}"; do after=$(add "$after" "$(cpu_secs "$p")"); done
  "$py" - "$way" "$n" "$(add "$after" "-$before")" "$work"/"$way"-load-*.json <<'PY'
import json, sys
way, n, cpu, files = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4:]
runs = [json.load(open(f)) for f in files]
clients = sum(r["clients"] for r in runs)
ok = sum(r["succeeded"] for r in runs)
wall = max(r["wall_s"] for r in runs)
mb = clients * runs[0]["repo_bytes"] / 1e6
print(json.dumps({"way": way, "replicas": n, "clients": clients, "succeeded": ok,
                  "wall_s": wall, "aggregate_mb_s": round(mb / wall, 1), "replica_cpu_s": round(cpu, 1)}))
PY
  for p in "${rpids[@]}"; do kill "$p"; done
}

run proxy 1 --proxy-bytes
run presign1 1
run presign2 2
