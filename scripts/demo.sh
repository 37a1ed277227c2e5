#!/usr/bin/env bash
# The README's first command (`make demo`): Tessera end to end on a real model package.
# Set-up (scripts/setup.sh) has fetched the silero-vad releases from PyPI.
set -euo pipefail
source "$(dirname "$0")/env.sh"
bin="$CARGO_TARGET_DIR/debug/tessera"
home=$(mktemp -d /tmp/tessera-demo.XXXXXX)
trap 'rm -rf "$home"' EXIT
t() { "$bin" --home "$home" "$@"; }

v5="$TESSERA_ASSETS/silero-vad-5.1.2/silero_vad/data"
v6="$TESSERA_ASSETS/silero-vad-6.2.3/silero_vad/data"
echo "== add silero-vad 5.1.2 (a real model package from PyPI)"
t add "$v5"
echo
echo "== add silero-vad 6.2.3: only chunks the store does not hold are stored"
t add "$v6"
echo
echo "== usage"
t du
echo
echo "== verify every chunk and index entry"
t fsck
f=$(t hash --json "$v6/silero_vad.onnx" | sed 's/.*"xet_hash":"\([0-9a-f]*\)".*/\1/')
if cmp -s <(t cat "$f") "$v6/silero_vad.onnx"; then
  echo "cat $f: byte-identical to the original"
else
  echo "cat $f: MISMATCH"; exit 1
fi
