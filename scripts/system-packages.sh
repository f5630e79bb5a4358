#!/usr/bin/env bash
# System packages the tests need: PostgreSQL's server binaries (Debian's `postgresql`),
# Redis (Debian's `redis-server`) and Prometheus with promtool (Debian's `prometheus`). The tests start their own servers on loopback;
# nothing is started here (Debian's package starts a service where systemd runs; the
# tests never use it). Idempotent: installs only what is missing.
set -euo pipefail

have_postgres() {
  command -v initdb >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}
have_redis() {
  command -v redis-server >/dev/null 2>&1
}
have_prometheus() {
  command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1
}

missing=()
have_postgres || missing+=(postgresql)
have_redis || missing+=(redis-server)
have_prometheus || missing+=(prometheus)
if [ "${#missing[@]}" = 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "Missing system packages: ${missing[*]} (PostgreSQL 15+ server binaries, redis-server, prometheus)." >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  SUDO="sudo"
fi
echo "Installing Debian's ${missing[*]} (servers the tests start on loopback)"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
  "${missing[@]}" >/dev/null
have_postgres && have_redis && have_prometheus
