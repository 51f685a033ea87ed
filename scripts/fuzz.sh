#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time, starting from
# its seed corpus (fuzz/corpus/<target>/), and fails on the first crash: a
# panic, an input slower than 10 s, or one that takes over 2 GB. Prints
# each target's executions. What a crash left behind is in
# fuzz/artifacts/<target>/; `cargo +nightly fuzz run <target> <file>`
# replays it.
#
#   scripts/fuzz.sh               15 s per target (CI: .ci/run)
#   FUZZ_SECONDS=120 scripts/fuzz.sh
#
# Needs the nightly toolchain and cargo-fuzz (.ci/run installs both).
# Built without AddressSanitizer: pgsplit has no unsafe code, and what the
# targets look for is a panic, which libFuzzer reports by itself; ASan only
# made the build and every run slower. Debug assertions and overflow
# checks stay on (cargo-fuzz's default), so arithmetic that would wrap
# silently in a release build fails here.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-15}
toolchain=${FUZZ_TOOLCHAIN:-nightly}
flags=(--sanitizer none --codegen-units 16)

cargo "+$toolchain" fuzz build "${flags[@]}"
for target in $(cargo "+$toolchain" fuzz list); do
  # New inputs go to a scratch directory, so the committed seeds stay as
  # they are; the seeds are read from the second directory.
  scratch=$(mktemp -d)
  log=$(mktemp)
  if cargo "+$toolchain" fuzz run "${flags[@]}" "$target" "$scratch" "fuzz/corpus/$target" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    echo "fuzz: $target: ${runs:-?} executions in ${seconds} s, no crash"
    rm -rf "$scratch" "$log"
  else
    echo "fuzz: $target FAILED; the end of its log:" >&2
    tail -n 60 "$log" >&2
    exit 1
  fi
done
