#!/usr/bin/env bash
# bench/run.sh -- the full matrix: direct redis vs twemproxy (nutcracker) vs
# slotproxy with the compiled hot path ("slotproxy") and with the pure-Python one
# ("slotproxy-py"), interleaved in one run (bench/peer_bench.sh): ops/s, p50/p99
# latency and CPU per request of each endpoint process; then the summary of the
# issue's targets for each (slotproxy / nutcracker), and compiled / python:
#   P1  geo-mean >= 1.0x   P16 geo-mean >= 1.2x   MSET (spanning groups) >= 1.0x
#
# Usage:  bench/run.sh                 (defaults: ~12-15 min on a 2-core box)
#         ROUNDS=2 N_P1=100000 bench/run.sh
# Env:
#   PYTHON        interpreter for slotproxy [repo .venv/bin/python, else python3]
#   SLOTPROXY_ARGS extra proxy flags (e.g. "--no-hiredis")
#   MODES [compiled,python]  which slotproxy hot paths to run
#   ROUNDS [3] N_P1 [150000] N_PIPE [1000000] MSET_DIV [4] LPUSH_MAX [1000000]
#   TESTS SIZES PIPES CLIENTS KEYSPACE BENCH_CPUS SERVER_CPUS PROXY_CPUS ...
#                 passed through to bench/peer_bench.sh (see its header)
#   OUT_DIR       [bench/results/<UTC timestamp>]
#   STRICT=1      exit 1 when a target is missed (default: figures only, exit 0)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON=$ROOT/.venv/bin/python; else PYTHON=python3; fi
fi
command -v "$PYTHON" >/dev/null || { echo "run.sh: PYTHON=$PYTHON not found" >&2; exit 2; }
for tool in redis-server redis-cli redis-benchmark nutcracker taskset setsid timeout bc; do
  command -v "$tool" >/dev/null || { echo "run.sh: '$tool' is not installed" >&2; exit 2; }
done
if ! (cd "$ROOT" && "$PYTHON" -c 'import proxy.app' 2>/dev/null); then
  echo "run.sh: $PYTHON cannot import the proxy (missing deps?); set PYTHON=.../bin/python" >&2
  exit 2
fi
if ! "$PYTHON" -c 'import uvloop, hiredis' 2>/dev/null; then
  echo "run.sh: WARNING: $PYTHON lacks uvloop and/or hiredis: figures are not representative" >&2
fi

export ROUNDS=${ROUNDS:-3}
export N_P1=${N_P1:-150000}
export N_PIPE=${N_PIPE:-1000000}
export MSET_DIV=${MSET_DIV:-4}
export LPUSH_MAX=${LPUSH_MAX:-1000000}
TS=$(date -u +%Y%m%dT%H%M%SZ)
export OUT_DIR=${OUT_DIR:-$HERE/results/$TS}
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)

{
  echo "python: $PYTHON ($("$PYTHON" -VV 2>&1 | head -1))"
  echo "git: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo none)" \
       "dirty files: $(git -C "$ROOT" status --porcelain 2>/dev/null | wc -l)"
  echo "host: $(uname -srm), $(nproc) cpus, load: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$OUT_DIR/env.txt"
cat "$OUT_DIR/env.txt" >&2

cd "$ROOT"
printf -v PY_Q '%q' "$PYTHON"
printf -v ROOT_Q '%q' "$ROOT"
SLOTPROXY_CMD="env PYTHONPATH=$ROOT_Q $PY_Q -m proxy --listen 127.0.0.1:{port}"
SLOTPROXY_CMD+=" --backends {backends} --log-level warning ${SLOTPROXY_ARGS:-}"
# Both hot paths in the same run: "slotproxy" is the compiled one (the default when built),
# "slotproxy-py" the pure-Python fallback (--no-accelerator). MODES=compiled or MODES=python
# runs only one.
MODES=${MODES:-compiled,python}
TARGETS=()
if [[ ",$MODES," == *,compiled,* ]]; then
  if ! (cd "$ROOT" && "$PYTHON" -c 'import proxy._accel._speedups' 2>/dev/null); then
    echo "run.sh: the compiled hot path is not built (pip install -e . builds it)" >&2
    exit 2
  fi
  TARGETS+=("slotproxy=$SLOTPROXY_CMD")
fi
[[ ",$MODES," == *,python,* ]] && TARGETS+=("slotproxy-py=$SLOTPROXY_CMD --no-accelerator")
# The metrics' cost (issue: under 3% of ops/s): the same proxies with --no-metrics, in the
# same interleaved rounds. MODES=compiled,compiled-nometrics (or python,python-nometrics).
[[ ",$MODES," == *,compiled-nometrics,* ]] && TARGETS+=("slotproxy-nometrics=$SLOTPROXY_CMD --no-metrics")
[[ ",$MODES," == *,python-nometrics,* ]] && \
  TARGETS+=("slotproxy-py-nometrics=$SLOTPROXY_CMD --no-accelerator --no-metrics")

start=$(date +%s)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
# in the background so that a TERM/INT to run.sh is passed on (peer_bench.sh then
# kills everything it started); async children ignore SIGINT, hence TERM.
"$HERE/peer_bench.sh" "${TARGETS[@]}" &
PB=$!
trap 'kill -TERM "$PB" 2>/dev/null; wait "$PB"; exit 130' INT
trap 'kill -TERM "$PB" 2>/dev/null; wait "$PB"; exit 143' TERM
pb_rc=0
wait "$PB" || pb_rc=$?
trap - INT TERM
if (( pb_rc != 0 )); then
  echo "run.sh: peer_bench.sh failed (rc=$pb_rc); partial results in $OUT_DIR" >&2
  exit "$pb_rc"
fi
echo
rc=0
: > "$OUT_DIR/summary.txt"
for spec in "${TARGETS[@]}"; do
  summary_args=(summary "$OUT_DIR/raw.csv" --target "${spec%%=*}" --baseline nutcracker)
  [[ -n "${STRICT:-}" && "${spec%%=*}" == slotproxy ]] && summary_args+=(--strict)
  python3 "$HERE/bench_report.py" "${summary_args[@]}" | tee -a "$OUT_DIR/summary.txt" || rc=$?
done
for base in slotproxy slotproxy-py; do
  # metrics on / metrics off, when both ran: 1 - ratio is the metrics' cost in ops/s
  if [[ " ${TARGETS[*]%%=*} " == *" $base-nometrics "* && " ${TARGETS[*]%%=*} " == *" $base "* ]]
  then
    python3 "$HERE/bench_report.py" summary "$OUT_DIR/raw.csv" --target "$base" \
      --baseline "$base-nometrics" | sed 's/>= [0-9.]*)  \(PASS\|MISS\)/metrics on vs off)/' \
      | tee -a "$OUT_DIR/summary.txt" || true
  fi
done
if [[ ",$MODES," == *,compiled,* && ",$MODES," == *,python,* ]]; then
  python3 "$HERE/bench_report.py" summary "$OUT_DIR/raw.csv" --target slotproxy \
    --baseline slotproxy-py | sed 's/>= [0-9.]*)  \(PASS\|MISS\)/compiled vs python)/' \
    | tee -a "$OUT_DIR/summary.txt" || true
fi
echo "  load during the run: start $LOAD0, end $(cut -d' ' -f1-3 /proc/loadavg)" \
  | tee -a "$OUT_DIR/summary.txt"
if [[ -s "$OUT_DIR/mset_span.txt" ]]; then sed 's/^/  /' "$OUT_DIR/mset_span.txt"; fi
nfail=$(($(wc -l < "$OUT_DIR/failures.csv") - 1))
if (( nfail > 0 )); then
  echo "  WARNING: $nfail redis-benchmark run(s) failed, see $OUT_DIR/failures.csv"
fi
echo "  wall time $(( $(date +%s) - start ))s; results in $OUT_DIR"
exit "$rc"
