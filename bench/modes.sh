#!/usr/bin/env bash
# Starts three pgsplit instances in front of ../shared/bench's cluster, one per
# consistency mode: session on 6434, global on 6435, eventual on 6436. Used as
# EXTRA_START by bench/run.sh MODES=1; stops them all on SIGTERM.
# Usage: bench/modes.sh PGSPLIT_BINARY CONFIG
set -u
BIN=$1 CONFIG=$2
pids=()
for spec in session:6434 global:6435 eventual:6436; do
  RUST_LOG=warn "$BIN" --config "$CONFIG" --consistency "${spec%%:*}" \
    --listen "127.0.0.1:${spec##*:}" &
  pids+=($!)
done
trap 'kill "${pids[@]}" 2>/dev/null; wait' TERM INT
wait
