#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60), with a 512 MiB RSS limit, and
# prints the executions of each. The seeds kept in git (fuzz/corpus/TARGET) are read, and
# what a run finds goes to fuzz/work/TARGET (ignored by git), so fuzzing leaves the tree
# as it was. Built with debug assertions and overflow checks on (in release mode they are
# off, and they guard the crate's one unsafe block). Needs cargo-fuzz (installed if
# missing); it runs on the stable toolchain with RUSTC_BOOTSTRAP=1, which cargo-fuzz's -Z
# flags need.
#
#   fuzz/run.sh [SECONDS] [TARGET ...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(protocol handshake_request handshake_response inflate)
command -v cargo-fuzz >/dev/null || cargo install --quiet --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
# A smaller use-after-free quarantine keeps ASan itself well inside the RSS limit.
export ASAN_OPTIONS=${ASAN_OPTIONS:-quarantine_size_mb=32}
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target" "work/$target"
  log=$(mktemp)
  if ! cargo fuzz run --release --debug-assertions "$target" "work/$target" "corpus/$target" -- -max_total_time="$seconds" -rss_limit_mb=512 -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
    tail -40 "$log"
    echo "fuzz: $target FAILED"
    exit 1
  fi
  runs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')
  rss=$(grep -E '^stat::peak_rss_mb' "$log" | awk '{print $2}')
  echo "fuzz: $target: $runs executions in ${seconds}s, peak RSS ${rss} MiB, no crash"
  rm -f "$log"
done
