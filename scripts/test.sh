#!/usr/bin/env bash
# Runs pgsplit's test suite: the Kubernetes manifests' validation
# (scripts/k8s-validate.sh), unit tests and the integration tests in tests/,
# which start their own PostgreSQL 15 primary and replica on free ports
# (tests/support/cluster.rs). Exits non-zero when a build or a test fails.
#
# Needs PostgreSQL 15 (initdb, pg_ctl, pgbench in /usr/lib/postgresql/15/bin);
# run as root on Debian 12 it installs what is missing with apt-get.
set -euo pipefail

cd "$(dirname "$0")/.."

# The Kubernetes manifests (deploy/kubernetes) against the Kubernetes and
# ServiceMonitor schemas, then broken copies of them that must fail: 10 to
# 15 s, 30 to 60 s the first time on a machine (installing the validator).
scripts/k8s-validate.sh --self-test

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
export PATH="$PGBIN:$PATH"

PGBIN=$PGBIN scripts/pgcluster.sh deps
# Real drivers for tests/drivers.rs; once installed, their tests must run.
if scripts/drivers.sh; then
  export PGSPLIT_REQUIRE_DRIVERS=1
else
  echo "test.sh: could not install every driver; tests/drivers.rs skips the missing ones" >&2
fi

# The toolchain rust-toolchain.toml pins, under its name (a fresh
# machine's rustup knows it as "stable" only); a machine whose stable is
# another release builds with that one rather than not at all.
if ! scripts/toolchain.sh; then
  echo "$(basename "$0"): building with this machine's stable toolchain instead" >&2
  export RUSTUP_TOOLCHAIN=stable
fi
# --features demo: the users-api binary and its test (tests/users_api.rs)
# are built only with it (Cargo.toml).
cargo build --all-targets --features demo
# Plain cargo test (not nextest) so the output ends with cargo's summary lines.
# Each integration test starts two servers; 4 threads keep 2 cores busy.
cargo test --all-targets --features demo -- --test-threads=4
