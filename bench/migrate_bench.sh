#!/usr/bin/env bash
# bench/migrate_bench.sh -- online slot migration benchmark (see bench/migrate_bench.py):
# move a slot range holding >= 1M small keys while redis-benchmark runs through the proxy on
# slots that do not move; prints keys/s moved and p50/p99 with vs without the migration.
#
# Usage:  bench/migrate_bench.sh [--keys 1000000] [--slots 0-511] [--clients 20] [--out F]
# Env:    PYTHON  interpreter with slotproxy's deps [repo .venv/bin/python, else python3]
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON=$ROOT/.venv/bin/python; else PYTHON=python3; fi
fi
for tool in redis-server redis-cli redis-benchmark; do
  command -v "$tool" >/dev/null || { echo "migrate_bench.sh: '$tool' is not installed" >&2; exit 2; }
done
cd "$ROOT"
exec "$PYTHON" bench/migrate_bench.py "$@"
