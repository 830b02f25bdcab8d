#!/usr/bin/env bash
# bench/profile.sh -- sample slotproxy with py-spy while redis-benchmark loads it,
# then print the top self-time frames (bench/pyspy_top.py).
#
# Usage:  bench/profile.sh            # -P 16 (default)
#         bench/profile.sh -P 1       # or: bench/profile.sh 1
# Env:
#   PYTHON   interpreter for slotproxy [repo .venv/bin/python, else python3]
#   PYSPY    py-spy binary [py-spy next to $PYTHON, else on PATH; else it is
#            pip-installed into $PYTHON's environment unless PYSPY_INSTALL=0]
#   TESTS [set,get]  SIZE [32]  CLIENTS [50]  KEYSPACE [100000]
#   N        requests per test [P1: 300000, P>1: 2000000]
#   RATE [200]  py-spy samples/s     NATIVE=1  also sample C frames (uvloop,
#            hiredis; py-spy then pauses the process for each sample: slower)
#   TOP [25]  frames shown           SLOTPROXY_ARGS  extra proxy flags
#   BENCH_CPUS [1]  SERVER_CPUS [0]  PROXY_CPUS [0]  PYSPY_CPUS [1]  ("" = no pinning)
#   OUT_DIR  [bench/results/profile-<UTC timestamp>-P<pipe>]
# Output in OUT_DIR: pyspy.txt (collapsed stacks: `py-spy --format raw`, also
# loadable by speedscope.app), bench.csv (redis-benchmark under profiling),
# top.txt (the summary printed at the end).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")

PIPE=${PIPE:-16}
while (($#)); do
  case $1 in
    -P) PIPE=$2; shift 2 ;;
    -P*) PIPE=${1#-P}; shift ;;
    [0-9]*) PIPE=$1; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "profile.sh: unknown argument $1 (try -h)" >&2; exit 2 ;;
  esac
done

if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON=$ROOT/.venv/bin/python; else PYTHON=python3; fi
fi
TESTS=${TESTS:-set,get}
SIZE=${SIZE:-32}
CLIENTS=${CLIENTS:-50}
KEYSPACE=${KEYSPACE:-100000}
if [[ "$PIPE" == 1 ]]; then N=${N:-300000}; else N=${N:-2000000}; fi
RATE=${RATE:-200}
TOP=${TOP:-25}
BENCH_CPUS=${BENCH_CPUS-1}
SERVER_CPUS=${SERVER_CPUS-0}
PROXY_CPUS=${PROXY_CPUS-0}
PYSPY_CPUS=${PYSPY_CPUS-1}
OUT_DIR=${OUT_DIR:-$HERE/results/profile-$(date -u +%Y%m%dT%H%M%SZ)-P$PIPE}
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)

# ---------------------------------------------------------------- py-spy
find_pyspy() {
  local scripts
  if [[ -n "${PYSPY:-}" ]]; then echo "$PYSPY"; return; fi
  scripts=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true)
  if [[ -n "$scripts" && -x "$scripts/py-spy" ]]; then echo "$scripts/py-spy"; return; fi
  command -v py-spy 2>/dev/null || true
}
PYSPY_BIN=$(find_pyspy)
if [[ -z "$PYSPY_BIN" && "${PYSPY_INSTALL:-1}" != 0 ]]; then
  echo "# py-spy not found: installing it into $PYTHON's environment (pip install py-spy)" >&2
  "$PYTHON" -m pip install --quiet py-spy >&2 || true
  PYSPY_BIN=$(find_pyspy)
fi
if [[ -z "$PYSPY_BIN" ]]; then
  echo "profile.sh: py-spy is not available (pip install py-spy, or set PYSPY=/path/to/py-spy)" >&2
  exit 2
fi

# ---------------------------------------------------------------- processes
TMP=$(mktemp -d -t slotproxy_prof.XXXXXX)
PIDS=(); PGIDS=(); PIDFILES=()
pin() { local cpus=$1; shift; if [[ -n "$cpus" ]]; then taskset -c "$cpus" "$@"; else "$@"; fi; }
cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  for p in "${PIDS[@]}"; do kill -INT "$p" 2>/dev/null; done
  for g in "${PGIDS[@]}"; do kill -TERM -- "-$g" 2>/dev/null; done
  for f in "${PIDFILES[@]}"; do [[ -s "$f" ]] && kill -TERM "$(cat "$f")" 2>/dev/null; done
  sleep 0.5
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
  for g in "${PGIDS[@]}"; do kill -KILL -- "-$g" 2>/dev/null; done
  for f in "${PIDFILES[@]}"; do [[ -s "$f" ]] && kill -KILL "$(cat "$f")" 2>/dev/null; done
  cp "$TMP"/*.log "$OUT_DIR/" 2>/dev/null
  [[ -z "${KEEP_TMP:-}" ]] && rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

USED=" "
new_port() {
  local p
  while :; do
    p=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
    if [[ "$USED" != *" $p "* ]]; then USED+="$p "; echo "$p"; return; fi
  done
}
wait_ping() {
  for _ in $(seq 1 100); do
    [[ "$(redis-cli -p "$1" ping 2>/dev/null)" == PONG ]] && return 0
    sleep 0.1
  done
  echo "ERROR: $2 on port $1 did not answer PING" >&2; return 1
}

B1=$(new_port); B2=$(new_port); SP=$(new_port)
for i in 1 2; do
  pv=B$i
  PIDFILES+=("$TMP/redis$i.pid")
  pin "$SERVER_CPUS" redis-server --port "${!pv}" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize yes --pidfile "$TMP/redis$i.pid" --dir "$TMP" --logfile "$TMP/redis$i.log"
  wait_ping "${!pv}" "redis$i"
done

pinpfx=""
[[ -n "$PROXY_CPUS" ]] && pinpfx="taskset -c $PROXY_CPUS "
printf -v PY_Q '%q' "$PYTHON"
printf -v ROOT_Q '%q' "$ROOT"
cmd="env PYTHONPATH=$ROOT_Q $PY_Q -m proxy --listen 127.0.0.1:$SP"
cmd+=" --backends 127.0.0.1:$B1,127.0.0.1:$B2 --log-level warning ${SLOTPROXY_ARGS:-}"
echo "# slotproxy: $cmd" >&2
cd "$ROOT"
setsid bash -c "echo \$\$ > '$TMP/slotproxy.pgid'; exec $pinpfx$cmd" \
  > "$TMP/slotproxy.log" 2>&1 < /dev/null &
for _ in $(seq 1 50); do [[ -s "$TMP/slotproxy.pgid" ]] && break; sleep 0.05; done
SP_PID=$(cat "$TMP/slotproxy.pgid")   # bash exec'd env exec'd python: same pid
PGIDS+=("$SP_PID")
wait_ping "$SP" slotproxy || { cat "$TMP/slotproxy.log" >&2; exit 1; }

bench() { # n -> redis-benchmark csv on stdout
  pin "$BENCH_CPUS" redis-benchmark -h 127.0.0.1 -p "$SP" -c "$CLIENTS" -n "$1" \
    -r "$KEYSPACE" -P "$PIPE" -d "$SIZE" -t "$TESTS" --csv 2> "$TMP/bench.err"
}
echo "# warm-up" >&2
bench 20000 > /dev/null

native=()
[[ -n "${NATIVE:-}" ]] && native=(--native)
nonblock=(--nonblocking)
[[ -n "${NATIVE:-}" ]] && nonblock=()
echo "# py-spy record --pid $SP_PID --rate $RATE ${native[*]} ${nonblock[*]}" >&2
# started directly (not via a shell function) so that $! is py-spy itself (taskset execs it)
pyspy_cmd=("$PYSPY_BIN" record --pid "$SP_PID" --rate "$RATE" --format raw
           -o "$OUT_DIR/pyspy.txt" "${native[@]}" "${nonblock[@]}")
[[ -n "$PYSPY_CPUS" ]] && pyspy_cmd=(taskset -c "$PYSPY_CPUS" "${pyspy_cmd[@]}")
"${pyspy_cmd[@]}" > "$TMP/pyspy.log" 2>&1 &
PYSPY_PID=$!
PIDS+=("$PYSPY_PID")
sleep 1
if ! kill -0 "$PYSPY_PID" 2>/dev/null; then
  cat "$TMP/pyspy.log" >&2
  echo "profile.sh: py-spy failed to attach (ptrace permission? run as root or set" \
       "kernel.yama.ptrace_scope=0)" >&2
  exit 1
fi

echo "# redis-benchmark -P $PIPE -d $SIZE -c $CLIENTS -n $N -t $TESTS" >&2
t0=$(date +%s.%N)
bench "$N" | tee "$OUT_DIR/bench.csv"
t1=$(date +%s.%N)
kill -INT "$PYSPY_PID" 2>/dev/null || true
for _ in $(seq 1 100); do kill -0 "$PYSPY_PID" 2>/dev/null || break; sleep 0.1; done
wait "$PYSPY_PID" 2>/dev/null || true
grep -v '^WARNING: Could not fetch server CONFIG' "$TMP/bench.err" >&2 || true
if [[ ! -s "$OUT_DIR/pyspy.txt" ]]; then
  cat "$TMP/pyspy.log" >&2
  echo "profile.sh: py-spy wrote no samples" >&2
  exit 1
fi

secs=$(echo "$t1 - $t0" | bc)
{
  echo "# slotproxy profile: -P $PIPE -d $SIZE -c $CLIENTS -n $N -t $TESTS," \
       "${secs}s under load, py-spy rate $RATE${NATIVE:+ (native)}"
  python3 "$HERE/pyspy_top.py" "$OUT_DIR/pyspy.txt" --top "$TOP" --rate "$RATE" \
    --seconds "$secs" --root "$ROOT"
} | tee "$OUT_DIR/top.txt"
echo "# profile in $OUT_DIR" >&2
