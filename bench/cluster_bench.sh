#!/usr/bin/env bash
# bench/cluster_bench.sh -- the masquerade benchmark (see bench/cluster_bench.py):
# redis-benchmark --cluster through 2 proxies vs redis-benchmark through one; prints a table.
#
# Usage:  bench/cluster_bench.sh [--requests 100000] [--clients 50] [--rounds 2] [--pipeline 1]
# Env:    PYTHON  interpreter with slotproxy's deps [repo .venv/bin/python, else python3]
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON=$ROOT/.venv/bin/python; else PYTHON=python3; fi
fi
for tool in redis-server redis-benchmark; do
  command -v "$tool" >/dev/null || { echo "cluster_bench.sh: '$tool' is not installed" >&2; exit 2; }
done
cd "$ROOT"
exec "$PYTHON" bench/cluster_bench.py "$@"
