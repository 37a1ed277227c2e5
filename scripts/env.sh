# Sourced by the Makefile and scripts: where set-up puts things, outside the clone.
export TESSERA_DEV="${TESSERA_DEV:-$HOME/.cache/tessera-dev}"
export TESSERA_VENV="${TESSERA_VENV:-$TESSERA_DEV/venv}"
export TESSERA_ASSETS="${TESSERA_ASSETS:-$TESSERA_DEV/assets}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$TESSERA_DEV/target}"
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$TESSERA_VENV/lib/python3.11/site-packages/onnxruntime/capi/libonnxruntime.so.1.31.1}"
