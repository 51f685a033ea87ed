#!/usr/bin/env bash
# Installs the real drivers tests/drivers.rs and tests/lazy_drivers.rs run
# through pgsplit: asyncpg, psycopg 3, psycopg2 and SQLAlchemy with its asyncio
# extra (PyPI; tests/drivers/orm_app.py), node-postgres (npm, into
# tests/drivers/node_modules) and PgJDBC (Debian's libpostgresql-jdbc-java;
# java comes with the machine).
# Idempotent: skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c "import asyncpg, psycopg, psycopg2, sqlalchemy.ext.asyncio" 2>/dev/null; then
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
    asyncpg "psycopg[binary]" psycopg2-binary "sqlalchemy[asyncio]"
fi
if ! NODE_PATH=tests/drivers/node_modules node -e "require('pg')" 2>/dev/null; then
  (cd tests/drivers && npm install --silent --no-audit --no-fund --no-save pg@8 >/dev/null)
fi
if [ ! -f /usr/share/java/postgresql.jar ] && [ "$(id -u)" -eq 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libpostgresql-jdbc-java >/dev/null
fi
if ! command -v java >/dev/null && [ "$(id -u)" -eq 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless >/dev/null
fi
