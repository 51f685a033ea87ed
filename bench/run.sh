#!/usr/bin/env bash
# Runs ../shared/bench (pgbench: direct, PgBouncer and pgsplit side by side in
# one run) with pgsplit as an extra target on 127.0.0.1:6434, in front of the
# harness's primary 55432 and replica 55433. Extra arguments are passed as
# environment, e.g.:  bench/run.sh DUR=3 ROUNDS=1 WORKLOADS=sel_c16_simple
# With MODES=1 in its environment (MODES=1 bench/run.sh ...) it compares the consistency modes instead: three pgsplit
# targets, session (6434), global (6435) and eventual (6436), see modes.sh.
# Needs root on Debian 12 with postgresql, pgbouncer and sysstat installed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BENCH=${BENCH_DIR:-$ROOT/../shared/bench}
[ -x "$BENCH/baseline.sh" ] || { echo "no bench harness at $BENCH" >&2; exit 1; }
cargo build --release --bin pgsplit
# A copy, so that a rebuild during the run cannot change the binary under test.
BIN=$(mktemp /tmp/pgsplit-bench.XXXXXX)
cp target/release/pgsplit "$BIN"
chmod 755 "$BIN"
trap 'rm -f "$BIN"' EXIT
cd "$BENCH"
if [ "${MODES:-0}" = 1 ]; then
  env "$@" EXTRA_TARGETS="session:6434 global:6435 eventual:6436" \
    EXTRA_START="$ROOT/bench/modes.sh $BIN $ROOT/bench/pgsplit.toml" ./baseline.sh
else
  env "$@" EXTRA_TARGETS="pgsplit:6434" \
    EXTRA_START="env RUST_LOG=warn $BIN --config $ROOT/bench/pgsplit.toml" ./baseline.sh
fi
