#!/usr/bin/env bash
# bench/callgrind.sh -- instructions per request of the slotproxy process, compiled vs
# pure-Python hot path: a load-independent figure (valgrind counts instructions, so a busy
# shared machine changes the wall time, not the count).
#
# For each hot path, slotproxy runs under `valgrind --tool=callgrind` in front of 2
# redis-servers; after a warm-up the counters are zeroed (callgrind_control -z), one
# redis-benchmark run is made, the counters are dumped, and Ir / requests is printed.
# Everything the process does counts: event loop, syscalls' user-side work, parsing, routing,
# reply framing, the interpreter.
#
# Usage:  bench/callgrind.sh                      # all cases, both paths (~5-10 min)
# Env:    PYTHON [.venv/bin/python]  MODES [compiled,python]  CLIENTS [50]
#         CASES ["get:1:20000 set:1:20000 get:16:80000 set:16:80000 mset:1:4000 mset:16:16000"]
#               (test:pipeline:requests)   SIZE [32]   KEEP=1 keeps the callgrind files
#         SLOTPROXY_ARGS [] more proxy options for every mode (e.g. --no-metrics)
#         OUT_DIR [bench/results/callgrind-<UTC timestamp>]  (callgrind.out.* with KEEP=1;
#               annotate one with callgrind_annotate for the profile)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON=$ROOT/.venv/bin/python; else PYTHON=python3; fi
fi
for tool in valgrind callgrind_control redis-server redis-cli redis-benchmark; do
  command -v "$tool" >/dev/null || { echo "callgrind.sh: '$tool' is not installed" >&2; exit 2; }
done
MODES=${MODES:-compiled,python}
CLIENTS=${CLIENTS:-50}
SIZE=${SIZE:-32}
CASES=${CASES:-"get:1:20000 set:1:20000 get:16:80000 set:16:80000 mset:1:4000 mset:16:16000"}
OUT_DIR=${OUT_DIR:-$HERE/results/callgrind-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
TMP=$(mktemp -d -t slotproxy_cg.XXXXXX)
PIDS=()
cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for f in "$TMP"/redis*.pid; do [[ -s "$f" ]] && kill -TERM "$(cat "$f")" 2>/dev/null; done
  sleep 0.5
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_ping() {
  for _ in $(seq 1 3000); do  # valgrind starts a Python slowly on a busy machine
    [[ "$(redis-cli -p "$1" ping 2>/dev/null)" == PONG ]] && return 0
    sleep 0.1
  done
  echo "callgrind.sh: nothing answers PING on port $1" >&2; return 1
}

B1=$(free_port); B2=$(free_port)
for i in 1 2; do
  pv=B$i
  redis-server --port "${!pv}" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
    --pidfile "$TMP/redis$i.pid" --dir "$TMP" --logfile "$TMP/redis$i.log"
  wait_ping "${!pv}"
done

printf '%-9s %-6s %3s %9s %16s %12s\n' "hot_path" "test" "P" "requests" "instructions" "Ir/request" \
  | tee "$OUT_DIR/table.txt"
for mode in ${MODES//,/ }; do
  SP=$(free_port)
  args=(--listen "127.0.0.1:$SP" --backends "127.0.0.1:$B1,127.0.0.1:$B2" --log-level warning)
  [[ "$mode" == python ]] && args+=(--no-accelerator)
  # shellcheck disable=SC2206
  [[ -n "${SLOTPROXY_ARGS:-}" ]] && args+=($SLOTPROXY_ARGS)
  (cd "$ROOT" && exec env PYTHONPATH="$ROOT" valgrind --tool=callgrind --collect-atstart=yes \
      --callgrind-out-file="$TMP/cg.$mode.%p" "$PYTHON" -m proxy "${args[@]}") \
      > "$TMP/proxy.$mode.log" 2>&1 &
  PIDS+=("$!")
  wait_ping "$SP" || { cat "$TMP/proxy.$mode.log" >&2; exit 1; }
  vpid=$(pgrep -f -n "callgrind-out-file=$TMP/cg.$mode")
  for case in $CASES; do
    IFS=: read -r test pipe n <<< "$case"
    redis-benchmark -p "$SP" -c "$CLIENTS" -n 2000 -r 100000 -P "$pipe" -d "$SIZE" -t "$test" \
      -q > /dev/null 2>&1   # warm-up (caches, table spellings)
    callgrind_control -z "$vpid" > /dev/null 2>&1
    redis-benchmark -p "$SP" -c "$CLIENTS" -n "$n" -r 100000 -P "$pipe" -d "$SIZE" -t "$test" \
      -q > /dev/null 2>&1 || echo "# redis-benchmark failed: $case ($mode)" >&2
    rm -f "$TMP"/cg."$mode".*.[0-9]*
    callgrind_control -d "case-$test-P$pipe" "$vpid" > /dev/null 2>&1
    f=$(ls -t "$TMP"/cg."$mode".* | grep -v "\.$vpid$" | head -1 || true)
    [[ -z "$f" ]] && f=$(ls -t "$TMP"/cg."$mode".* | head -1)
    ir=$(grep -m1 '^summary:' "$f" | awk '{print $2}')
    [[ -n "${KEEP:-}" ]] && cp "$f" "$OUT_DIR/callgrind.out.$mode.$test.P$pipe"
    printf '%-9s %-6s %3s %9s %16s %12.0f\n' "$mode" "$test" "$pipe" "$n" "$ir" \
      "$(echo "$ir / $n" | bc -l)" | tee -a "$OUT_DIR/table.txt"
  done
  kill -TERM "$vpid" 2>/dev/null || true
  wait 2>/dev/null || true
done
echo "# redis-benchmark -c $CLIENTS -d $SIZE; MSET = 10 keys per request; results in $OUT_DIR" \
  | tee -a "$OUT_DIR/table.txt"
