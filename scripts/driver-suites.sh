#!/usr/bin/env bash
# Runs a real driver's own test suite against PostgreSQL directly and through
# pgsplit (transaction pooling, then session pooling), and prints the three
# results side by side with every test whose outcome differs.
#
# Suites:
# - tokio-postgres's integration tests (tests/test in the crate source cargo
#   already has, at the version in Cargo.lock). They expect a server on
#   127.0.0.1:5433 with roles pass_user (password), md5_user (md5) and
#   scram_user (scram-sha-256), all with password "password", and the
#   hstore, citext and ltree extensions: set up here as its own CI does.
# - psycopg2's test suite (tests/ in its PyPI sdist, run against
#   psycopg2-binary of the same version), on database psycopg2_test.
# - node-postgres's integration tests (test/integration in the npm tarball of
#   pg@4.5.7, the last release that ships its tests), each file run as its
#   Makefile does, in text and in binary mode, on database node_test with its
#   person table from script/create-test-tables.js. The result unit is a file
#   and a mode: it passes when node exits 0 (a failed assertion exits 255).
# - asyncpg's test suite (tests/ of its PyPI sdist, run with pytest against
#   the installed asyncpg wheel of the same version; with PGHOST set its
#   tests use that server instead of starting their own). Deselected:
#   tests/test_connect.py::TestConnectionAttributes, whose tests start their
#   own hot-standby cluster with pg_ctl, which refuses to run as root.
#
# Direct: a primary on 5433 (replica 5434). Through pgsplit: a primary and a
# replica on 55532/55533, pgsplit on 5433 (trust; it logs in to the servers
# with the roles' passwords from its [[users]]; pools of 20 connections per
# role, since asyncpg's pool tests hold more than session pooling's default
# 15 at once).
#
# Usage: scripts/driver-suites.sh   (root on Debian 12; needs postgresql,
# postgresql-contrib, cargo, python3, node and npm, and network access to
# crates.io, PyPI and the npm registry for the suites and their
# dependencies). Results go to /tmp/pgsplit-suites/.
#   SUITES="asyncpg psycopg2"   only these suites (default: all four)
#   PORT=5533 REPLICA_PORT=5534 BACKEND_PORTS="55632 55633"   other ports:
#     the suites connect to PORT (the direct primary, then pgsplit); the
#     tokio-postgres suite needs 5433.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WORK=${WORK:-/tmp/pgsplit-suites}
SUITES=${SUITES:-"tokio-postgres psycopg2 node-postgres asyncpg"}
PORT=${PORT:-5433}
REPLICA_PORT=${REPLICA_PORT:-5434}
read -r BACKEND_PRIMARY BACKEND_REPLICA <<<"${BACKEND_PORTS:-55532 55533}"
want() { case " $SUITES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
if want tokio-postgres && [ "$PORT" != 5433 ]; then
  echo "the tokio-postgres suite connects to 5433: set PORT=5433 or leave it out of SUITES" >&2
  exit 1
fi
mkdir -p "$WORK"
chmod 755 "$WORK"

cargo build --release --bin pgsplit
if want tokio-postgres; then
  VERSION=$(awk '/^name = "tokio-postgres"$/ {getline; gsub(/[^0-9.]/, "", $0); print; exit}' Cargo.lock)
  SRC=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"tokio-postgres-$VERSION" | head -1)
  [ -d "$SRC/tests/test" ] || { echo "no tokio-postgres $VERSION source with tests" >&2; exit 1; }
  SUITE=$WORK/tokio-postgres-$VERSION
  if [ ! -d "$SUITE" ]; then
    cp -r "$SRC" "$SUITE"
    # Its own workspace, so cargo does not look for one above it.
    printf '\n[workspace]\n' >>"$SUITE/Cargo.toml"
  fi
  (cd "$SUITE" && cargo test --test test --no-run >"$WORK/build.log" 2>&1) \
    || { tail -30 "$WORK/build.log" >&2; exit 1; }
fi

# The sdist of a PyPI package (NAME VERSION), unpacked under $WORK.
pypi_sdist() {
  local url
  url=$(curl -s "https://pypi.org/pypi/$1/json" | python3 -c "
import sys, json, urllib.parse
data = json.load(sys.stdin)
files = data.get('releases', {}).get('$2') or data['urls']
sdist = [f['url'] for f in files if f['packagetype'] == 'sdist'][0]
print(urllib.parse.urljoin('https://pypi.org/pypi/$1/json', sdist))")
  curl -sL "$url" | tar xz -C "$WORK"
}

# psycopg2: the sdist has the tests; the binary wheel is what they import.
PSYCOPG2=${PSYCOPG2_VERSION:-2.9.13}
PG2=$WORK/psycopg2-$PSYCOPG2
if want psycopg2 && [ ! -d "$PG2/tests" ]; then
  pip install -q "psycopg2-binary==$PSYCOPG2" >/dev/null 2>&1
  pypi_sdist psycopg2 "$PSYCOPG2"
fi

# asyncpg: the sdist has the tests; the installed wheel is what they import.
# Only tests/ is kept (in $APG, beside a pytest.ini with the options of the
# sdist's pyproject.toml), so that the sdist's uncompiled asyncpg/ package
# cannot shadow the wheel.
ASYNCPG=${ASYNCPG_VERSION:-0.32.0}
APG=$WORK/asyncpg-$ASYNCPG-tests
if want asyncpg; then
  python3 -c "import asyncpg, sys; sys.exit(asyncpg.__version__ != '$ASYNCPG')" 2>/dev/null \
    || pip install -q "asyncpg==$ASYNCPG" >/dev/null 2>&1
  python3 -c "import pytest, distro" 2>/dev/null || pip install -q pytest distro >/dev/null 2>&1
  if [ ! -d "$APG/tests" ]; then
    pypi_sdist asyncpg "$ASYNCPG"
    mkdir -p "$APG"
    mv "$WORK/asyncpg-$ASYNCPG/tests" "$APG/"
    rm -rf "$WORK/asyncpg-$ASYNCPG"
    printf '%s\n' '[pytest]' \
      'addopts = --capture=no --assert=plain --strict-markers --tb=native --import-mode=importlib' \
      'testpaths = tests' 'filterwarnings = default' >"$APG/pytest.ini"
  fi
fi

# node-postgres: the tarball has the tests; npm installs what they require
# (pg-copy-streams and async are devDependencies). Two lines are patched so
# that a 2016 suite runs on Node 20 and PostgreSQL 15 at all:
# - lib/connection.js connects only a socket whose readyState is 'closed',
#   and a new net.Socket reads 'open' since Node 14, so no client would ever
#   connect (pg 8.0.3 fixed it upstream by always connecting);
# - test/integration/test-helper.js hands "15.18" from version() to semver,
#   which throws on two-part versions.
NODEPG=${NODEPG_VERSION:-4.5.7}
NPG=$WORK/node-postgres-$NODEPG
if want node-postgres && [ ! -d "$NPG/node_modules/pg-copy-streams" ]; then
  rm -rf "$NPG"
  mkdir -p "$NPG"
  tgz=$(cd "$WORK" && npm pack -q "pg@$NODEPG" 2>/dev/null | tail -1)
  tar xzf "$WORK/$tgz" -C "$NPG" --strip-components=1
  rm -f "$WORK/$tgz"
  sed -i "s/if(this.stream.readyState === 'closed') {/if(this.stream.readyState === 'closed' || (this.stream instanceof net.Socket \&\& !this.stream._handle)) {/" \
    "$NPG/lib/connection.js"
  sed -i "s/var version = result.rows\[0\].version.split(' ')\[1\];/&\n    if(version.split('.').length == 2) version += '.0';/" \
    "$NPG/test/integration/test-helper.js"
  grep -q '_handle' "$NPG/lib/connection.js" && grep -q "version += '.0'" "$NPG/test/integration/test-helper.js" \
    || { echo "node-postgres $NODEPG: the Node 20 patches did not apply" >&2; exit 1; }
  (cd "$NPG" && npm install --no-audit --no-fund --no-package-lock >"$WORK/npm.log" 2>&1) \
    || { tail -30 "$WORK/npm.log" >&2; exit 1; }
fi

PSQL=/usr/lib/postgresql/15/bin/psql
cluster_up() { # DIR PRIMARY_PORT REPLICA_PORT
  PGC_FAST=1 scripts/pgcluster.sh up "$1" "$2" "$3" >/dev/null
  for data in "$1/primary" "$1/replica"; do
    { printf 'host all pass_user 127.0.0.1/32 password\n'
      printf 'host all md5_user 127.0.0.1/32 md5\n'
      printf 'host all scram_user 127.0.0.1/32 scram-sha-256\n'
      cat "$data/pg_hba.conf"; } >"$data/pg_hba.conf.new"
    mv "$data/pg_hba.conf.new" "$data/pg_hba.conf"
    chown postgres: "$data/pg_hba.conf" 2>/dev/null || true
  done
  "$PSQL" -X -q -h 127.0.0.1 -p "$2" -U postgres postgres <<'SQL' >/dev/null
SET password_encryption = 'md5';
CREATE ROLE pass_user PASSWORD 'password' LOGIN;
CREATE ROLE md5_user PASSWORD 'password' LOGIN;
SET password_encryption = 'scram-sha-256';
CREATE ROLE scram_user PASSWORD 'password' LOGIN;
CREATE EXTENSION hstore;
CREATE EXTENSION citext;
CREATE EXTENSION ltree;
CREATE DATABASE psycopg2_test;
CREATE DATABASE node_test;
\c psycopg2_test
CREATE EXTENSION hstore;
SELECT pg_reload_conf();
SQL
  "$PSQL" -X -q -h 127.0.0.1 -p "$3" -U postgres postgres -c "select pg_reload_conf()" >/dev/null
  if want node-postgres; then
    # As its Makefile's prepare-test-db; on the primary, so the replica has it too.
    (cd "$NPG" && node script/create-test-tables.js "postgres://postgres@127.0.0.1:$2/node_test" >/dev/null 2>&1)
    [ "$("$PSQL" -X -A -t -h 127.0.0.1 -p "$2" -U postgres node_test -c "select count(*) from person")" = 26 ] \
      || { echo "node-postgres: no person table in node_test" >&2; exit 1; }
  fi
}

# Databases asyncpg's tests create and drop. Through pgsplit their DROP
# DATABASE fails while pgsplit's pools hold connections to them, so a run
# can leave them behind; they are dropped (FORCE) before the next run.
drop_asyncpg_databases() { # PRIMARY_PORT
  for db in testdb asyncpg_intro_test; do
    PGOPTIONS="-c client_min_messages=warning" "$PSQL" -X -q -h 127.0.0.1 -p "$1" -U postgres postgres \
      -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
  done
}

run_suite() { # NAME
  if want tokio-postgres; then
    (cd "$SUITE" && cargo test --test test -- --test-threads=1 2>&1) >"$WORK/$1.log" || true
    grep -E '^test .* \.\.\. (ok|FAILED|ignored)' "$WORK/$1.log" \
      | sed -E 's/^test (.*) \.\.\. (ok|FAILED|ignored).*/\1 \2/' | sort >"$WORK/$1.txt"
  fi
  if want psycopg2; then
    (cd "$PG2" && PSYCOPG2_TESTDB_HOST=127.0.0.1 PSYCOPG2_TESTDB_PORT=$PORT PSYCOPG2_TESTDB_USER=postgres \
      timeout 900 python3 -c "import tests; tests.unittest.main(defaultTest='tests.test_suite')" -v 2>&1) \
      >"$WORK/pg2-$1.log" || true
    # "test_x (tests.mod.Class.test_x) ... ok" may span lines (docstrings).
    python3 - "$WORK/pg2-$1.log" >"$WORK/pg2-$1.txt" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
for name, outcome in re.findall(r"^(test\w+ \([\w.]+\))(?:.|\n)*? \.\.\. (ok|FAIL|ERROR|skipped)", text, re.M):
    print(name.replace(" ", "_"), "FAILED" if outcome in ("FAIL", "ERROR") else outcome)
PY
    sort -o "$WORK/pg2-$1.txt" "$WORK/pg2-$1.txt"
  fi
  if want node-postgres; then
    # A few files connect with the driver's defaults (new pg.Client()), which
    # come from PG* variables; a hung file is cut off as a failure.
    : >"$WORK/npg-$1.log"
    for mode in text binary; do
      for file in $(cd "$NPG/test" && find integration -name '*-tests.js' | sort); do
        printf '\n== %s %s\n' "$file" "$mode" >>"$WORK/npg-$1.log"
        if (cd "$NPG" && PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres PGDATABASE=node_test NODE_NO_WARNINGS=1 \
            timeout 60 node "test/$file" "postgres://postgres@127.0.0.1:$PORT/node_test" \
            $([ "$mode" = binary ] && echo binary)) >>"$WORK/npg-$1.log" 2>&1; then
          echo "$file:$mode ok"
        else
          echo "$file:$mode FAILED"
        fi
      done
    done | sort >"$WORK/npg-$1.txt"
  fi
  if want asyncpg; then
    # JUnit XML, since --capture=no (the sdist's option) interleaves the
    # tests' own output with pytest's lines. A test whose setup or teardown
    # fails counts as failed.
    # test_unknown_type_text_fallback creates citext, which tokio-postgres's
    # suite needs in place: it is out of the way meanwhile.
    rm -f "$WORK/apg-$1.xml"
    "$PSQL" -X -q -h 127.0.0.1 -p "$PORT" -U postgres postgres -c "DROP EXTENSION IF EXISTS citext" >/dev/null
    (cd "$APG" && PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres PGDATABASE=postgres \
      timeout 1800 python3 -m pytest -p no:cacheprovider --junitxml="$WORK/apg-$1.xml" \
      --deselect tests/test_connect.py::TestConnectionAttributes 2>&1) >"$WORK/apg-$1.log" || true
    "$PSQL" -X -q -h 127.0.0.1 -p "$PORT" -U postgres postgres -c "CREATE EXTENSION IF NOT EXISTS citext" >/dev/null
    python3 - "$WORK/apg-$1.xml" >"$WORK/apg-$1.txt" <<'PY'
import os, sys, xml.etree.ElementTree as ET
if os.path.exists(sys.argv[1]):
    for case in ET.parse(sys.argv[1]).iter("testcase"):
        kids = {child.tag for child in case}
        outcome = "FAILED" if kids & {"failure", "error"} else "skipped" if "skipped" in kids else "ok"
        print(f"{case.get('classname')}::{case.get('name')}", outcome)
PY
    # A failed teardown repeats its test's line: keep the worst outcome.
    sort "$WORK/apg-$1.txt" | awk '{o[$1] = (o[$1] == "FAILED" ? o[$1] : $2)} END {for (t in o) print t, o[t]}' \
      | sort >"$WORK/apg-$1.txt.new"
    mv "$WORK/apg-$1.txt.new" "$WORK/apg-$1.txt"
  fi
}

PGSPLIT_PID=
cleanup() {
  [ -n "$PGSPLIT_PID" ] && kill "$PGSPLIT_PID" 2>/dev/null || true
  scripts/pgcluster.sh down "$WORK/direct" >/dev/null 2>&1 || true
  scripts/pgcluster.sh down "$WORK/proxied" >/dev/null 2>&1 || true
}
trap cleanup EXIT

echo "== direct: PostgreSQL on $PORT"
cleanup
rm -rf "$WORK/direct" "$WORK/proxied"
cluster_up "$WORK/direct" "$PORT" "$REPLICA_PORT"
run_suite direct
scripts/pgcluster.sh down "$WORK/direct" >/dev/null

cluster_up "$WORK/proxied" "$BACKEND_PRIMARY" "$BACKEND_REPLICA"
for mode in transaction session; do
  echo "== through pgsplit, $mode pooling, on $PORT"
  want asyncpg && drop_asyncpg_databases "$BACKEND_PRIMARY"
  cat >"$WORK/pgsplit.toml" <<EOF
listen = "127.0.0.1:$PORT"
primary = "127.0.0.1:$BACKEND_PRIMARY"
replicas = ["127.0.0.1:$BACKEND_REPLICA"]
pool_mode = "$mode"
[[users]]
name = "pass_user"
password = "password"
[[users]]
name = "md5_user"
password = "password"
[[users]]
name = "scram_user"
password = "password"
[health]
user = "postgres"
[pool.primary]
pool_size = 20
[pool.replica]
pool_size = 20
EOF
  RUST_LOG=warn "$ROOT/target/release/pgsplit" --config "$WORK/pgsplit.toml" >"$WORK/pgsplit-$mode.log" 2>&1 &
  PGSPLIT_PID=$!
  sleep 1
  run_suite "$mode"
  kill "$PGSPLIT_PID"; wait "$PGSPLIT_PID" 2>/dev/null || true
  PGSPLIT_PID=
done

count() { awk -v want="$2" '$2 == want' "$WORK/$1.txt" | wc -l; }
row() { # LABEL PREFIX [UNIT]
  printf '| %s (%s %s) |' "$1" "$(wc -l <"$WORK/${2}direct.txt")" "${3:-tests}"
  for run in direct transaction session; do
    printf ' %s passed, %s failed |' "$(count "$2$run" ok)" "$(count "$2$run" FAILED)"
  done
  echo
}
echo
echo "| suite | direct | pgsplit transaction | pgsplit session |"
echo "|---|---|---|---|"
prefixes=()
if want tokio-postgres; then row "tokio-postgres $VERSION" ""; prefixes+=(""); fi
if want psycopg2; then row "psycopg2 $PSYCOPG2" "pg2-"; prefixes+=(pg2-); fi
if want node-postgres; then row "node-postgres $NODEPG" "npg-" "file runs, text and binary"; prefixes+=(npg-); fi
if want asyncpg; then row "asyncpg $ASYNCPG" "apg-"; prefixes+=(apg-); fi
echo
echo "Tests whose outcome differs from direct:"
for prefix in "${prefixes[@]}"; do
  for mode in transaction session; do
    join "$WORK/${prefix}direct.txt" "$WORK/$prefix$mode.txt" \
      | awk -v m="$prefix$mode" '$2 != $3 {print "  " m ": " $1 " (direct " $2 ", pgsplit " $3 ")"}'
  done
done
