#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/) for FUZZ_SECONDS each (default 600): the xorb, chunk and
# shard decoders, the Range parsers the server exposes and the JSON the clients and server parse.
# Not part of CI: `bash scripts/fuzz.sh [TARGET...]`. The fuzz crate depends only on the pure
# crates, so it builds without RocksDB. Inputs that crash are copied to fuzz/regressions/TARGET,
# which the test suite replays (crates/*/tests/fuzz_regressions.rs); commit them with the fix.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${FUZZ_SECONDS:-600}"
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cargo run -q -p tessera-xet --example fuzz_seeds -- fuzz/corpus
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cd fuzz && cargo +nightly fuzz list)
status=0
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/regressions/$t"
  echo "== $t: ${secs}s"
  if ! (cd fuzz && cargo +nightly fuzz run -O "$t" "corpus/$t" "regressions/$t" -- \
      -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 2>&1 |
      grep -E '^(stat::number_of_executed_units|stat::new_units_added|stat::peak_rss_mb|==|SUMMARY|artifact_prefix|Test unit written)' ); then
    status=1
  fi
  for crash in fuzz/artifacts/"$t"/*; do
    [ -e "$crash" ] && cp "$crash" "fuzz/regressions/$t/" && echo "crash kept: fuzz/regressions/$t/$(basename "$crash")" && status=1
  done
done
exit "$status"
