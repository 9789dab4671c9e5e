#!/usr/bin/env bash
# Start Redis and PostgreSQL when they are not answering (Debian/Ubuntu packages).
set -uo pipefail
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  if ! command -v redis-server >/dev/null; then
    as_root apt-get install -y -qq redis-server >/dev/null
  fi
  mkdir -p /tmp/multitune-redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp/multitune-redis --logfile /tmp/multitune-redis/redis.log
  for _ in $(seq 50); do redis-cli ping >/dev/null 2>&1 && break; sleep 0.1; done
fi

if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  if ! command -v pg_ctlcluster >/dev/null; then
    as_root apt-get install -y -qq postgresql >/dev/null
  fi
  version=$(ls /etc/postgresql | sort -n | tail -1)
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 100); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 0.2; done
fi
# The dashboard's browser tests drive Debian's chromium (never a downloaded browser).
if [ ! -x /usr/bin/chromium ]; then
  as_root apt-get install -y -qq chromium >/dev/null 2>&1 \
    || { as_root apt-get update -qq && as_root apt-get install -y -qq chromium >/dev/null; } \
    || echo "chromium could not be installed; tests/dashboard_tests need /usr/bin/chromium"
fi

redis-cli -h 127.0.0.1 ping >/dev/null || { echo "Redis is not answering"; exit 1; }
pg_isready -h 127.0.0.1 -p 5432 || { echo "PostgreSQL is not answering"; exit 1; }
