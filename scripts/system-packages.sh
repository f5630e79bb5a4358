#!/usr/bin/env bash
# System packages the tests need: PostgreSQL's server binaries (Debian's `postgresql`).
# The tests start their own server on loopback; nothing is started here.
# Idempotent: installs only what is missing.
set -euo pipefail

have_postgres() {
  command -v initdb >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}

if have_postgres; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "PostgreSQL server binaries (initdb, pg_ctl) are missing; install PostgreSQL 15+." >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  SUDO="sudo"
fi
echo "Installing Debian's postgresql (server binaries for the tests)"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null
have_postgres
