#!/usr/bin/env bash
# Quick side-by-side TPS of several pgsplit builds, with direct and PgBouncer,
# in turn (order flipped every round), against an already running cluster of
# ../shared/bench (primary 55432, replica 55433; PgBouncer on 6433 if it runs).
# Prints each round's TPS and ratio to direct, then the mean ratio per target.
# Quicker and less careful than bench/run.sh (no CPU accounting, no noise
# checks): for telling two builds apart while working, not for the record.
#
# Usage: bench/ab.sh ROUNDS "name:binary[:config] ..." [pgbench args]
#   bench/ab.sh 6 "old:/tmp/pgsplit-old new:target/release/pgsplit"
#   bench/ab.sh 6 "new:target/release/pgsplit" -M simple -c 16 -j 2 -T 6
# A third field names another config to start from (default pgsplit.toml
# here; its listen and metrics_listen are replaced). TLS to pgsplit: a config
# with client_tls_sslmode = "allow" and PGSSLMODE=prefer in the environment
# (targets without TLS then stay plain), see bench/README.md.
set -euo pipefail
ROUNDS=$1 SPEC=$2
shift 2
ARGS=${*:-"-n -S -M simple -c 16 -j 2 -T 5"}
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d /tmp/pgsplit-ab.XXXXXX)
declare -A PORT=([direct]=55432) PID=() SUM=()
names=(direct)
if psql -X -q -At -h 127.0.0.1 -p 6433 -U postgres -c 'select 1' postgres >/dev/null 2>&1; then
  PORT[pgbouncer]=6433
  names+=(pgbouncer)
fi
cleanup() {
  for pid in "${PID[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
port=6434
for spec in $SPEC; do
  IFS=: read -r name bin conf <<<"$spec"
  sed -e "s/^listen = .*/listen = \"127.0.0.1:$port\"/" \
    -e "s/^metrics_listen = .*/metrics_listen = \"127.0.0.1:$((port + 3500))\"/" \
    "${conf:-$HERE/pgsplit.toml}" >"$WORK/$name.toml"
  RUST_LOG=warn "$bin" --config "$WORK/$name.toml" >"$WORK/$name.log" 2>&1 &
  PID[$name]=$! PORT[$name]=$port
  names+=("$name")
  port=$((port + 1))
done
sleep 2
tps() {
  pgbench $ARGS -h 127.0.0.1 -p "${PORT[$1]}" -U postgres postgres 2>&1 | awk '/^tps/{print $3}'
}
for round in $(seq "$ROUNDS"); do
  order=("${names[@]}")
  if [ $((round % 2)) = 0 ]; then mapfile -t order < <(printf '%s\n' "${names[@]}" | tac); fi
  declare -A T=()
  for name in "${order[@]}"; do T[$name]=$(tps "$name"); done
  line="round $round:"
  for name in "${names[@]}"; do
    ratio=$(awk -v a="${T[$name]}" -v d="${T[direct]}" 'BEGIN{printf "%.3f", a/d}')
    SUM[$name]=$(awk -v s="${SUM[$name]:-0}" -v r="$ratio" 'BEGIN{print s+r}')
    line="$line $name=${T[$name]%.*} ($ratio)"
  done
  echo "$line"
done
echo -n "mean ratio:"
for name in "${names[@]}"; do
  echo -n " $name=$(awk -v s="${SUM[$name]}" -v r="$ROUNDS" 'BEGIN{printf "%.3f", s/r}')"
done
echo
