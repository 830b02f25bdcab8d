#!/usr/bin/env bash
# peer_bench.sh -- side-by-side redis-benchmark anchors: direct redis vs
# twemproxy (nutcracker) vs one or more proxies under test.
#
# Adapted from shared/bench/peer_bench.sh (kept: pinning, interleaving,
# FLUSHALL before every redis-benchmark run, median-of-rounds table).
# Changed here:
#   * redis-benchmark output and stderr are kept per invocation (logs/); a
#     failed or timed-out run (redis-benchmark 7 exits on the first error reply)
#     is recorded in failures.csv and shown, instead of silently aborting the
#     whole script (the original piped 2>/dev/null into awk under pipefail);
#   * MSET runs as its own invocation with N/MSET_DIV requests (10 keys each),
#     LPUSH as its own with at most LPUSH_MAX requests (it pushes onto ONE key,
#     "mylist": N_PIPE x 1 KiB would be GBs in one redis-server);
#   * before measuring, an MSET span check: CONFIG RESETSTAT on both backends,
#     a short MSET run through each endpoint, then cmdstat_mset calls per backend
#     -- shows that redis-benchmark's MSET (10 random `key:__rand_int__` keys,
#     each placeholder drawn independently) reaches both backends through
#     every proxy (mset_span.txt);
#   * the endpoint order is rotated every round (A B C, B C A, C A B ...) so no
#     endpoint always runs first/last in a block;
#   * target process groups are taken from a pidfile written after setsid
#     (robust whether or not setsid had to fork), liveness is checked after
#     every run, and every redis-benchmark run is bounded by BENCH_TIMEOUT;
#   * the table is printed by bench_report.py (same directory), test names are
#     normalised ("MSET (10 keys)" -> mset); it shows p50/p99 latency and the
#     endpoint process's CPU per request (utime+stime from /proc/<pid>/stat
#     around each redis-benchmark run, / requests; cpu.csv).
#
# What it does
#   * starts 2 redis-server backends (daemonized, --save '' --appendonly no)
#     on free loopback ports, in a fresh temp dir;
#   * starts nutcracker in front of both (redis: true, hash fnv1a_64,
#     distribution $NUT_DIST (modula), server_connections: 1);
#   * optionally starts extra targets (proxies under test), see below;
#   * runs redis-benchmark with identical parameters against every endpoint,
#     interleaved, $ROUNDS rounds, for every (data size, pipeline) combination;
#     both backends are FLUSHALLed before every single redis-benchmark run;
#   * prints a table: endpoint, test, size, pipeline, median ops/s, min-max,
#     ratio vs direct and vs nutcracker. Raw CSV is kept in $OUT_DIR.
#   * kills every process it started (by PID / pidfile / process group) on exit.
#
# "direct" is ONE redis-server (backend 1) addressed without a proxy.
#
# Targets under test (placeholder convention)
#   Each target is a command line that must listen on 127.0.0.1:{port}.
#   Placeholders substituted before launch:
#     {port}      free TCP port the target must listen on
#     {backends}  comma separated backend list: 127.0.0.1:P1,127.0.0.1:P2
#     {b1} {b2}   the individual backend host:port
#   Give targets either as positional args  NAME='command line'  (any number)
#   or as env  TARGET_CMD='command line'  (name from TARGET_NAME, default
#   "target"). The command runs in its own session / process group
#   (setsid ... taskset -c $PROXY_CPUS CMD), which is killed on exit, so
#   multi-process targets are cleaned up as well. It runs in the caller's cwd.
#   Example:
#     bench/peer_bench.sh \
#       slotproxy='python -m proxy --listen 127.0.0.1:{port} --backends {backends}'
#
# Knobs (env, defaults in brackets)
#   TESTS [set,get,incr,lpush,mset]  SIZES ["32 1024"]  PIPES ["1 16"]
#   CLIENTS [50]  KEYSPACE [100000]  ROUNDS [3]
#   N_P1 [500000]  N_PIPE [4000000]   requests per test (-n) for -P 1 / -P >1
#   MSET_DIV [2]        MSET runs N/MSET_DIV requests (each sets 10 keys)
#   LPUSH_MAX [1000000] cap on LPUSH requests (all go to one list)
#   BENCH_TIMEOUT [600] seconds before one redis-benchmark run is killed
#   BENCH_CPUS [1]   taskset list for redis-benchmark
#   SERVER_CPUS [0]  taskset list for redis-server x2
#   PROXY_CPUS [0]   taskset list for nutcracker and targets
#                    (set any of them to "" for no pinning)
#   NUT_DIST [modula]  (or ketama)
#   SKIP_DIRECT=1 / SKIP_NUT=1  drop those endpoints
#   SKIP_SPAN_CHECK=1           skip the MSET span check
#   OUT_DIR [temp dir/results]  where meta.txt, raw.csv, failures.csv, table.txt,
#               mset_span.txt, progress.log and logs/ are written; the temp dir
#               (backend/proxy logs, configs) is deleted on exit only if OUT_DIR is
#               elsewhere and KEEP_TMP is unset (target logs are copied to OUT_DIR)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HELPER_PY=${HELPER_PY:-python3}   # stdlib only: free ports, table

TESTS=${TESTS:-set,get,incr,lpush,mset}
SIZES=${SIZES:-"32 1024"}
PIPES=${PIPES:-"1 16"}
CLIENTS=${CLIENTS:-50}
KEYSPACE=${KEYSPACE:-100000}
ROUNDS=${ROUNDS:-3}
N_P1=${N_P1:-500000}
N_PIPE=${N_PIPE:-4000000}
MSET_DIV=${MSET_DIV:-2}
LPUSH_MAX=${LPUSH_MAX:-1000000}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-600}
BENCH_CPUS=${BENCH_CPUS-1}
SERVER_CPUS=${SERVER_CPUS-0}
PROXY_CPUS=${PROXY_CPUS-0}
NUT_DIST=${NUT_DIST:-modula}

TMP=$(mktemp -d -t peer_bench.XXXXXX)
OUT_DIR=${OUT_DIR:-$TMP/results}
mkdir -p "$OUT_DIR/logs"
PIDS=()        # plain pids
PGIDS=()       # process groups (targets)
PIDFILES=()    # daemonized processes
declare -A TARGET_PGID=()
BENCH_PID=     # the redis-benchmark run in progress

exec 2> >(tee -a "$OUT_DIR/progress.log" >&2)

pin() { # pin CPUS cmd...
  local cpus=$1; shift
  if [[ -n "$cpus" ]]; then taskset -c "$cpus" "$@"; else "$@"; fi
}

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  [[ -n "${BENCH_PID:-}" ]] && kill -TERM "$BENCH_PID" 2>/dev/null
  for g in "${PGIDS[@]}"; do kill -TERM -- "-$g" 2>/dev/null; done
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for f in "${PIDFILES[@]}"; do
    [[ -s "$f" ]] && kill -TERM "$(cat "$f")" 2>/dev/null
  done
  sleep 0.5
  for g in "${PGIDS[@]}"; do kill -KILL -- "-$g" 2>/dev/null; done
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
  for f in "${PIDFILES[@]}"; do
    [[ -s "$f" ]] && kill -KILL "$(cat "$f")" 2>/dev/null
  done
  # keep the logs of the proxies next to the results
  for f in "$TMP"/*.log; do [[ -e "$f" ]] && cp "$f" "$OUT_DIR/logs/" 2>/dev/null; done
  if [[ -z "${KEEP_TMP:-}" && "$OUT_DIR" != "$TMP"/* ]]; then rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
  "$HELPER_PY" -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'
}

USED_PORTS=" "
new_port() { # a free port not handed out before in this run
  local p
  while :; do
    p=$(free_port)
    if [[ "$USED_PORTS" != *" $p "* ]]; then USED_PORTS+="$p "; echo "$p"; return; fi
  done
}

wait_ping() { # port name
  for _ in $(seq 1 100); do
    if [[ "$(redis-cli -p "$1" ping 2>/dev/null)" == "PONG" ]]; then return 0; fi
    sleep 0.1
  done
  echo "ERROR: $2 on port $1 did not answer PING" >&2; return 1
}

flush_backends() {
  redis-cli -p "$B1" flushall >/dev/null; redis-cli -p "$B2" flushall >/dev/null
}

# ---------------------------------------------------------------- backends
B1=$(new_port); B2=$(new_port)
for i in 1 2; do
  port_var=B$i; port=${!port_var}
  PIDFILES+=("$TMP/redis$i.pid")
  pin "$SERVER_CPUS" redis-server --port "$port" --bind 127.0.0.1 \
      --save '' --appendonly no --daemonize yes \
      --pidfile "$TMP/redis$i.pid" --dir "$TMP" --logfile "$TMP/redis$i.log"
  wait_ping "$port" "redis$i"
done
BACKENDS="127.0.0.1:$B1,127.0.0.1:$B2"

ENDPOINTS=()   # "name port"
[[ -z "${SKIP_DIRECT:-}" ]] && ENDPOINTS+=("direct $B1")

# ---------------------------------------------------------------- nutcracker
if [[ -z "${SKIP_NUT:-}" ]]; then
  NP=$(new_port); NS=$(new_port)
  cat > "$TMP/nutcracker.yml" <<EOF
bench:
  listen: 127.0.0.1:$NP
  hash: fnv1a_64
  distribution: $NUT_DIST
  redis: true
  preconnect: true
  auto_eject_hosts: false
  server_connections: 1
  timeout: 10000
  servers:
   - 127.0.0.1:$B1:1 r1
   - 127.0.0.1:$B2:1 r2
EOF
  PIDFILES+=("$TMP/nutcracker.pid")
  pin "$PROXY_CPUS" nutcracker -d -c "$TMP/nutcracker.yml" -p "$TMP/nutcracker.pid" \
      -o "$TMP/nutcracker.log" -s "$NS" -a 127.0.0.1
  wait_ping "$NP" nutcracker
  ENDPOINTS+=("nutcracker $NP")
  cp "$TMP/nutcracker.yml" "$OUT_DIR/"
fi

# ---------------------------------------------------------------- targets
TARGET_SPECS=("$@")
[[ -n "${TARGET_CMD:-}" ]] && TARGET_SPECS+=("${TARGET_NAME:-target}=$TARGET_CMD")
for spec in "${TARGET_SPECS[@]}"; do
  name=${spec%%=*}; cmd=${spec#*=}
  tp=$(new_port)
  cmd=${cmd//\{port\}/$tp}; cmd=${cmd//\{backends\}/$BACKENDS}
  cmd=${cmd//\{b1\}/127.0.0.1:$B1}; cmd=${cmd//\{b2\}/127.0.0.1:$B2}
  echo "# target $name: $cmd" >&2
  pinpfx=""
  [[ -n "$PROXY_CPUS" ]] && pinpfx="taskset -c $PROXY_CPUS "
  # After setsid the bash is the session/group leader: $$ is the group to kill.
  setsid bash -c "echo \$\$ > '$TMP/$name.pgid'; exec $pinpfx$cmd" \
      > "$TMP/$name.log" 2>&1 < /dev/null &
  PIDS+=("$!")
  for _ in $(seq 1 50); do [[ -s "$TMP/$name.pgid" ]] && break; sleep 0.05; done
  pg=$(cat "$TMP/$name.pgid")
  PGIDS+=("$pg"); TARGET_PGID[$name]=$pg
  wait_ping "$tp" "$name" || { cat "$TMP/$name.log" >&2; exit 1; }
  ENDPOINTS+=("$name $tp")
done

ep_pid() { # name -> the pid of the endpoint's (main) process
  case $1 in
    direct) cat "$TMP/redis1.pid" ;;
    nutcracker) cat "$TMP/nutcracker.pid" ;;
    *) echo "${TARGET_PGID[$1]}" ;;  # bash exec'd the target: the group leader is it
  esac
}
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { # pid -> utime+stime of the process (all its threads), in clock ticks
  # fields after "(comm) ": state is 1st, utime 12th, stime 13th
  sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $12 + $13}' || echo 0
}

alive() { # name -> 0 if the endpoint's processes are still there
  local name=$1
  if [[ "$name" == direct ]]; then kill -0 "$(cat "$TMP/redis1.pid")" 2>/dev/null; return; fi
  if [[ "$name" == nutcracker ]]; then kill -0 "$(cat "$TMP/nutcracker.pid")" 2>/dev/null; return; fi
  kill -0 -- "-${TARGET_PGID[$name]}" 2>/dev/null
}

# ------------------------------------------------------- smoke test routing
for ep in "${ENDPOINTS[@]}"; do
  read -r name port <<< "$ep"
  flush_backends
  for k in $(seq 1 200); do echo "SET smoke:$k v$k"; done | redis-cli -p "$port" >/dev/null
  got=$(redis-cli -p "$port" get smoke:77)
  echo "# smoke $name: get=$got dbsize b1=$(redis-cli -p "$B1" dbsize)" \
       "b2=$(redis-cli -p "$B2" dbsize)" >&2
  [[ "$got" == "v77" ]] || { echo "ERROR: smoke test failed for $name" >&2; exit 1; }
done

# ------------------------------------------------------- MSET span check
# redis-benchmark's MSET is `MSET key:__rand_int__ v` x10 with every placeholder
# drawn independently (-r), so through a 2-way proxy nearly every MSET must hit
# both backends: count MSET calls each backend saw per client MSET.
mset_calls() { # port
  redis-cli -p "$1" info commandstats | tr -d '\r' \
    | sed -n 's/^cmdstat_mset:calls=\([0-9]*\),.*/\1/p' | grep . || echo 0
}
if [[ -z "${SKIP_SPAN_CHECK:-}" && ",$TESTS," == *,mset,* ]]; then
  SPAN_N=2000
  for ep in "${ENDPOINTS[@]}"; do
    read -r name port <<< "$ep"
    flush_backends
    redis-cli -p "$B1" config resetstat >/dev/null; redis-cli -p "$B2" config resetstat >/dev/null
    timeout "$BENCH_TIMEOUT" redis-benchmark -h 127.0.0.1 -p "$port" -c 10 -n "$SPAN_N" \
      -r "$KEYSPACE" -d 8 -t mset -q > /dev/null 2> "$OUT_DIR/logs/span-$name.err" || true
    c1=$(mset_calls "$B1"); c2=$(mset_calls "$B2")
    k1=$(redis-cli -p "$B1" dbsize); k2=$(redis-cli -p "$B2" dbsize)
    line=$(printf 'mset span %-12s client MSETs=%d  backend MSET calls b1=%d b2=%d  keys b1=%d b2=%d' \
           "$name" "$SPAN_N" "$c1" "$c2" "$k1" "$k2")
    if [[ "$name" != direct ]] && (( c1 < SPAN_N * 9 / 10 || c2 < SPAN_N * 9 / 10 )); then
      line+="  WARNING: MSETs do not span both backends"
    fi
    echo "# $line" >&2
    echo "$line" >> "$OUT_DIR/mset_span.txt"
  done
fi

# ---------------------------------------------------------------- run
{
  echo "# $(date -u +%FT%TZ) tests=$TESTS sizes=$SIZES pipes=$PIPES c=$CLIENTS r=$KEYSPACE" \
       "rounds=$ROUNDS n_p1=$N_P1 n_pipe=$N_PIPE mset_div=$MSET_DIV lpush_max=$LPUSH_MAX"
  echo "# cpus: bench=${BENCH_CPUS:-any} redis=${SERVER_CPUS:-any} proxy=${PROXY_CPUS:-any}" \
       "nut_dist=$NUT_DIST nproc=$(nproc)"
  echo "# $(redis-server --version | head -1)"
  echo "# nutcracker $(nutcracker --version 2>&1 | head -1)"
  for ep in "${ENDPOINTS[@]}"; do echo "# endpoint $ep"; done
} | tee "$OUT_DIR/meta.txt" >&2

# invocation groups: SET/GET share one (GET reads what SET wrote), LPUSH and
# MSET get their own request counts.
GROUPS_=()
g1=""
for t in ${TESTS//,/ }; do
  case $t in lpush|mset) ;; *) g1+="${g1:+,}$t" ;; esac
done
[[ -n "$g1" ]] && GROUPS_+=("$g1")
[[ ",$TESTS," == *,lpush,* ]] && GROUPS_+=("lpush")
[[ ",$TESTS," == *,mset,* ]] && GROUPS_+=("mset")

RAW=$OUT_DIR/raw.csv
FAIL=$OUT_DIR/failures.csv
CPU=$OUT_DIR/cpu.csv
echo "round,endpoint,size,pipe,test,rps,p50_ms,p99_ms" > "$RAW"
echo "round,endpoint,size,pipe,tests,requests,cpu_s" > "$CPU"
echo "round,endpoint,size,pipe,tests,rc,message" > "$FAIL"
DEAD=" "
NEP=${#ENDPOINTS[@]}
for round in $(seq 1 "$ROUNDS"); do
  # rotate the endpoint order every round
  ORDER=()
  for i in $(seq 0 $((NEP - 1))); do ORDER+=("${ENDPOINTS[$(( (i + round - 1) % NEP ))]}"); done
  for size in $SIZES; do
    for pipe in $PIPES; do
      if [[ "$pipe" == 1 ]]; then n=$N_P1; else n=$N_PIPE; fi
      for ep in "${ORDER[@]}"; do
        read -r name port <<< "$ep"
        [[ "$DEAD" == *" $name "* ]] && continue
        t0=$(date +%s.%N)
        for grp in "${GROUPS_[@]}"; do
          case $grp in
            mset) gn=$(( n / MSET_DIV )) ;;
            lpush) gn=$(( n < LPUSH_MAX ? n : LPUSH_MAX )) ;;
            *) gn=$n ;;
          esac
          flush_backends
          tag="r${round}-${name}-d${size}-P${pipe}-${grp//,/_}"
          rc=0
          bcmd=(timeout --signal=KILL "$BENCH_TIMEOUT"
                redis-benchmark -h 127.0.0.1 -p "$port" -c "$CLIENTS"
                -n "$gn" -r "$KEYSPACE" -P "$pipe" -d "$size" -t "$grp" --csv)
          [[ -n "$BENCH_CPUS" ]] && bcmd=(taskset -c "$BENCH_CPUS" "${bcmd[@]}")
          # in the background + wait, so that a TERM is handled at once (bash runs
          # traps only after a foreground child ends); taskset execs timeout
          epid=$(ep_pid "$name")
          c0=$(cpu_ticks "$epid")
          "${bcmd[@]}" > "$OUT_DIR/logs/$tag.out" 2> "$OUT_DIR/logs/$tag.err" &
          BENCH_PID=$!
          wait "$BENCH_PID" || rc=$?
          BENCH_PID=
          c1=$(cpu_ticks "$epid")
          ntests=$(( $(tr -cd ',' <<< "$grp" | wc -c) + 1 ))
          echo "$round,$name,$size,$pipe,${grp//,/+},$(( gn * ntests ))," \
               "$(echo "scale=4; ($c1 - $c0) / $CLK_TCK" | bc)" | tr -d ' ' >> "$CPU"
          awk -F'","' -v r="$round" -v e="$name" -v s="$size" -v p="$pipe" '
              /^"/ && !/^"test"/ {
                gsub(/"/, ""); split($0, f, ",")
                t = tolower(f[1]); sub(/ \(.*$/, "", t)
                print r "," e "," s "," p "," t "," f[2] "," f[5] "," f[7]
              }' "$OUT_DIR/logs/$tag.out" >> "$RAW"
          if (( rc != 0 )) || grep -qiE '^(error|node .* replied with error)' "$OUT_DIR/logs/$tag.err"; then
            msg=$(grep -v '^WARNING: Could not fetch server CONFIG' "$OUT_DIR/logs/$tag.err" \
                  | head -3 | tr '\n,' '  ' | cut -c1-200)
            (( rc == 137 )) && msg="timeout after ${BENCH_TIMEOUT}s; $msg"
            echo "$round,$name,$size,$pipe,${grp//,/ },$rc,$msg" >> "$FAIL"
            echo "# FAILED: round $round $name d$size P$pipe $grp rc=$rc: $msg" >&2
          fi
          if ! alive "$name"; then
            echo "# ERROR: endpoint $name died; dropping it (log: logs/$name.log)" >&2
            tail -20 "$TMP/$name.log" >&2 2>/dev/null || true
            echo "$round,$name,$size,$pipe,${grp//,/ },-1,endpoint process died" >> "$FAIL"
            DEAD+="$name "
            break
          fi
        done
        t1=$(date +%s.%N)
        printf '# round %s size %s P%s %-12s %6.1fs\n' "$round" "$size" "$pipe" "$name" \
          "$(echo "$t1 - $t0" | bc)" >&2
      done
    done
  done
done

# ---------------------------------------------------------------- table
"$HELPER_PY" "$HERE/bench_report.py" table "$RAW" --failures "$FAIL" --cpu "$CPU" \
  | tee "$OUT_DIR/table.txt"
echo "# raw results: $RAW" >&2
