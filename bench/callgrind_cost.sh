#!/usr/bin/env bash
# bench/callgrind_cost.sh -- the CPU cost of a proxy option in instructions, independent of
# machine load: the proxy runs under valgrind's callgrind, instrumentation is switched on only
# for a fixed redis-benchmark load, and the instruction totals of two proxy command lines are
# compared (per request and as a ratio).
#
# Usage:  bench/callgrind_cost.sh "--no-hotkeys"        # default vs. that option
#         bench/callgrind_cost.sh "ARGS A" "ARGS B"
# Env:    N [30000] requests per test   TESTS [set,get]   PIPE [16]   CLIENTS [10]
#         PYTHON [repo .venv/bin/python]   OUT_DIR [temp dir]
# Takes ~2 minutes per side on a 2-core box (valgrind runs the proxy ~50x slower).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
N=${N:-30000}; TESTS=${TESTS:-set,get}; PIPE=${PIPE:-16}; CLIENTS=${CLIENTS:-10}
A=${2:+$1}; B=${2:-$1}
OUT_DIR=${OUT_DIR:-$(mktemp -d)}
for tool in valgrind callgrind_control redis-server redis-cli redis-benchmark; do
  command -v "$tool" >/dev/null || { echo "callgrind_cost.sh: '$tool' is not installed" >&2; exit 2; }
done
free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

measure() {  # measure LABEL ARGS -> prints the instruction total
  local label=$1 args=$2 rport pport vpid
  rport=$(free_port); pport=$(free_port)
  redis-server --port "$rport" --save '' --appendonly no --daemonize yes \
    --pidfile "$OUT_DIR/redis-$label.pid" --logfile "$OUT_DIR/redis-$label.log"
  # shellcheck disable=SC2086
  PYTHONPATH=$ROOT valgrind --tool=callgrind --instr-atstart=no \
    --callgrind-out-file="$OUT_DIR/callgrind-$label.out" "$PYTHON" -m proxy \
    --listen "127.0.0.1:$pport" --backends "127.0.0.1:$rport" --log-level warning $args \
    >"$OUT_DIR/proxy-$label.log" 2>&1 &
  vpid=$!
  for _ in $(seq 600); do redis-cli -p "$pport" ping >/dev/null 2>&1 && break; sleep 0.5; done
  redis-benchmark -p "$pport" -n 2000 -c "$CLIENTS" -P "$PIPE" -t get -q >/dev/null 2>&1
  callgrind_control -i on "$vpid" >/dev/null
  redis-benchmark -p "$pport" -n "$N" -c "$CLIENTS" -P "$PIPE" -r 100000 -t "$TESTS" -q \
    2>&1 | tr '\r' '\n' | grep 'requests per second' >"$OUT_DIR/bench-$label.txt" || true
  callgrind_control -i off "$vpid" >/dev/null
  if (( $(wc -l <"$OUT_DIR/bench-$label.txt") != $(tr ',' '\n' <<<"$TESTS" | wc -l) )); then
    echo "callgrind_cost.sh: redis-benchmark did not complete for '$args' (see $OUT_DIR)" >&2
    kill -TERM "$vpid" 2>/dev/null || true
    exit 1
  fi
  kill -TERM "$vpid"; wait "$vpid" || true
  kill "$(cat "$OUT_DIR/redis-$label.pid")"
  awk '/^totals:/ {print $2}' "$OUT_DIR/callgrind-$label.out"
}

requests=$(( N * $(tr ',' '\n' <<<"$TESTS" | wc -l) ))
ia=$(measure a "$A"); ib=$(measure b "$B")
echo "proxy args        instructions   per request"
printf '%-16s %14d %13.0f\n' "'${A}'" "$ia" "$(bc -l <<<"$ia / $requests")"
printf '%-16s %14d %13.0f\n' "'${B}'" "$ib" "$(bc -l <<<"$ib / $requests")"
printf 'first / second: %.4f  (%d requests, -P %s, %s; files in %s)\n' \
  "$(bc -l <<<"$ia / $ib")" "$requests" "$PIPE" "$TESTS" "$OUT_DIR"
