#!/usr/bin/env bash
# run_ceiling.sh - how close PublishStream comes to gRPC C core's own bidi
# streaming ceiling on this machine, both measured in one run:
#
#   bench/run_ceiling.sh [BUILD_DIR]        (default: build)
#
# The ceiling is bench/bench_echo_server (bench/echo_server.c): a server that
# keeps PublishStream's wire contract (one PublishResponse per request, in
# order, same batching technique as the service) but answers every request
# with fixed pre-encoded bytes: no decoding, no validation, no Redis. Against
# it and against the real service (its own redis-server, AOF on with
# appendfsync everysec, --log-level=warn, as bench/run.sh starts them) it runs
# bench_publish's stream mode with bench/run.sh's settings (STREAMS streams,
# WINDOW unanswered each, DURATION s), RUNS rounds of:
#
#   echo-t2   the echo server, --threads 2 (the service's default)
#   echo-t1   the echo server, --threads 1
#   service   the real service (fresh, with the same redis-server)
#
# interleaved, so slow drift in other people's load hits all three alike;
# then one echo-decode run (--decode: protobuf-c unpacks each request).
# First it runs the issue's reference, redis-benchmark's pipelined XADD
# (-P 32, as bench/run.sh does; RB_RUNS times, the median counts), so both
# figures can also be read as a share of it.
# Each server is started fresh for its run and stopped with SIGTERM after it
# (the echo server must exit 0).
#
# For each run: events/s, latency, the CPU of the server, of Redis and of the
# client (bench_publish's own figure), per-event CPU in microseconds, the
# 1-minute load average before the run and "other": the machine's busy CPU
# (/proc/stat) during the run minus the three processes', i.e. other
# people's work on these 2 cores. Before each run it waits up to QUIET_WAIT
# seconds for the load average to fall below MAX_LOAD. The summary's means
# count only the runs during which "other" stayed at most MAX_OTHER % of a
# core (all runs of a kind when none did; it says how many counted). Exits
# non-zero when any run had errors or a server did not stop cleanly. Takes
# about 2 minutes plus the waits.
#
# Environment knobs (defaults in brackets): DURATION [10], STREAMS [4],
# WINDOW [1024], CONNECTIONS [4], PAYLOAD [300] bytes, RUNS [2] rounds,
# MAX_LOAD [1.5], QUIET_WAIT [90] seconds, MAX_OTHER [15] %, SERVICE_ARGS []
# extra service flags, DECODE [1] (0 skips the echo-decode run), RB_RUNS [3]
# (0 skips redis-benchmark).
set -euo pipefail

BUILD=${1:-build}
DURATION=${DURATION:-10}
STREAMS=${STREAMS:-4}
WINDOW=${WINDOW:-1024}
CONNECTIONS=${CONNECTIONS:-4}
PAYLOAD=${PAYLOAD:-300}
RUNS=${RUNS:-2}
MAX_LOAD=${MAX_LOAD:-1.5}
QUIET_WAIT=${QUIET_WAIT:-90}
SERVICE_ARGS=${SERVICE_ARGS:-}
DECODE=${DECODE:-1}
RB_RUNS=${RB_RUNS:-3}
RB_RATE=
MAX_OTHER=${MAX_OTHER:-15}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
SERVICE=$BUILD/tracseq-events
ECHO=$BUILD/bench/bench_echo_server
BENCH=$BUILD/bench/bench_publish
CLK_TCK=$(getconf CLK_TCK)

die() {
    echo "run_ceiling.sh: $*" >&2
    exit 2
}

for tool in redis-server redis-cli redis-benchmark python3 bc; do
    command -v "$tool" >/dev/null || die "$tool not found (make deps installs it)"
done
if [[ ! -x $SERVICE || ! -x $BENCH || ! -x $ECHO ]]; then
    echo "run_ceiling.sh: building tracseq-events, bench_publish, bench_echo_server in $BUILD" >&2
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build "$BUILD" --target tracseq-events bench_publish bench_echo_server -j2 >/dev/null
fi

SCRATCH=$(mktemp -d /tmp/tse-ceiling.XXXXXX)
REDIS_PID=
SERVICE_PID= # the server under test: the echo server or the service
FAILED=0
RESULTS=$SCRATCH/results.txt
: >"$RESULTS"

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

trap cleanup EXIT
trap 'exit 130' INT TERM

field() { # field NAME LINE
    sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"
}

load1() {
    cut -d' ' -f1 /proc/loadavg
}

# Busy clock ticks of the whole machine (all CPUs): everything but idle and
# iowait.
machine_busy_ticks() {
    awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat
}

# "pid ticks comm" of every process (utime + stime of its threads), to name
# who else used the CPU during a run.
proc_ticks() {
    python3 -c '
import glob
for f in glob.glob("/proc/[0-9]*/stat"):
    try:
        s = open(f).read()
    except OSError:
        continue
    comm, rest = s[s.index("(") + 1:s.rindex(")")], s[s.rindex(")") + 2:].split()
    print(f.split("/")[2], int(rest[11]) + int(rest[12]), comm.replace(" ", "_"))'
}

# The other processes that used over 5 % of a core between two proc_ticks
# files (those that ended meanwhile are missed), e.g. "cc1:62% redis-server:20%".
top_others() { # top_others BEFORE AFTER SECONDS PID...
    local before=$1 after=$2 secs=$3
    shift 3
    awk -v t="$CLK_TCK" -v w="$secs" -v skip=" $* " '
        NR == FNR { b[$1] = $2; next }
        index(skip, " " $1 " ") == 0 { d = 100 * ($2 - b[$1]) / t / w; if (d > 5) printf "%s:%.0f%%\n", $3, d }' \
        "$before" "$after" | sort -t: -k2 -rn | head -4 | tr '\n' ' '
}

# Waits (up to QUIET_WAIT s) until the 1-minute load is below MAX_LOAD.
wait_quiet() {
    local waited=0
    while (($(echo "$(load1) >= $MAX_LOAD" | bc))) && ((waited < QUIET_WAIT)); do
        sleep 5
        waited=$((waited + 5))
    done
    if ((waited > 0)); then
        echo "   (waited ${waited} s for the load to fall below $MAX_LOAD: now $(load1))" >&2
    fi
}

# Empties the benchmark streams and compacts the AOF (as bench/run.sh does),
# so each service run starts from the same small dataset.
reset_redis() {
    local keys
    keys=$(rcli --scan --pattern 'tracseq:events:{bench.*' | tr '\n' ' ')
    # shellcheck disable=SC2086
    [[ -n $keys ]] && rcli unlink $keys >/dev/null
    rcli bgrewriteaof >/dev/null 2>&1 || true
    for _ in $(seq 100); do
        if rcli info persistence | tr -d '\r' | grep -q '^aof_rewrite_in_progress:0'; then
            if ! rcli info persistence | tr -d '\r' | grep -q '^aof_rewrite_scheduled:1'; then
                break
            fi
        fi
        sleep 0.1
    done
}

start_echo() { # start_echo EXTRA_ARGS...
    SERVER_PORT=$(free_port)
    "$ECHO" --listen "127.0.0.1:$SERVER_PORT" "$@" >"$SCRATCH/echo.log" 2>&1 &
    SERVICE_PID=$!
    wait_port "$SERVER_PORT" || die "the echo server did not start: $(tail -5 "$SCRATCH/echo.log")"
}

start_real_service() {
    SERVER_PORT=$(free_port)
    # shellcheck disable=SC2086
    "$SERVICE" --listen "127.0.0.1:$SERVER_PORT" --redis-url "redis://127.0.0.1:$REDIS_PORT" \
        --log-level warn $SERVICE_ARGS >"$SCRATCH/service.log" 2>&1 &
    SERVICE_PID=$!
    wait_port "$SERVER_PORT" || die "the service did not start: $(tail -5 "$SCRATCH/service.log")"
    sleep 0.5 # let it connect to Redis
}

# Stops the server under test with SIGTERM; a server that needs SIGKILL or
# exits non-zero fails the run.
stop_server() {
    local rc=0 name=$1
    kill -TERM "$SERVICE_PID" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$SERVICE_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$SERVICE_PID" 2>/dev/null; then
        echo "run_ceiling.sh: $name did not stop within 10 s of SIGTERM" >&2
        kill -KILL "$SERVICE_PID" 2>/dev/null || true
        FAILED=1
    fi
    wait "$SERVICE_PID" 2>/dev/null || rc=$?
    if [[ $rc -ne 0 ]]; then
        echo "run_ceiling.sh: $name exited with status $rc after SIGTERM" >&2
        FAILED=1
    fi
    SERVICE_PID=
}

# Runs bench_publish's stream mode against SERVER_PORT; prints and records a
# RESULT line with the CPU figures of the run.
run_stream() { # run_stream NAME TARGET THREADS
    local name=$1 target=$2 threads=$3 l s0 r0 m0 w0 s1 r1 m1 w1 line others rc=0
    wait_quiet
    l=$(load1)
    s0=$(cpu_ticks "$SERVICE_PID")
    r0=$(cpu_ticks "$REDIS_PID")
    proc_ticks >"$SCRATCH/ticks0"
    m0=$(machine_busy_ticks)
    w0=$(date +%s.%N)
    line=$("$BENCH" --target "127.0.0.1:$SERVER_PORT" --mode stream --streams "$STREAMS" \
        --window "$WINDOW" --duration "$DURATION" --connections "$CONNECTIONS" \
        --payload-bytes "$PAYLOAD" 2>"$SCRATCH/bench.err") || rc=$?
    w1=$(date +%s.%N)
    s1=$(cpu_ticks "$SERVICE_PID")
    r1=$(cpu_ticks "$REDIS_PID")
    m1=$(machine_busy_ticks)
    proc_ticks >"$SCRATCH/ticks1"
    others=$(top_others "$SCRATCH/ticks0" "$SCRATCH/ticks1" "$(echo "$w1 - $w0" | bc)" \
        "$SERVICE_PID" "$REDIS_PID")
    if [[ $rc -ne 0 || -z $line ]]; then
        cat "$SCRATCH/bench.err" >&2
        echo "run_ceiling.sh: $name FAILED (exit $rc)" >&2
        FAILED=1
    fi
    # Redis idles through the echo runs: its CPU counts only for the service.
    [[ $target == service ]] || r1=$r0
    line=$(awk -v n="$name" -v tg="$target" -v th="$threads" -v l="$l" -v s="$((s1 - s0))" \
        -v r="$((r1 - r0))" -v m="$((m1 - m0))" -v w="$(echo "$w1 - $w0" | bc)" -v t="$CLK_TCK" '
        {
            rate = 0; cli = 0
            for (i = 1; i <= NF; i++) {
                split($i, kv, "=")
                if (kv[1] == "rate") rate = kv[2]
                if (kv[1] == "client_cpu_pct") cli = kv[2]
            }
            srv = 100 * s / t / w; rds = 100 * r / t / w
            other = 100 * m / t / w - srv - rds - cli
            if (other < 0) other = 0
            per = rate > 0 ? 1e4 / rate : 0 # percent of a core -> us per event
            sub(/^RESULT mode=stream/, "RESULT mode=ceiling name=" n " target=" tg " threads=" th)
            printf "%s server_cpu_pct=%.0f redis_cpu_pct=%.0f other_cpu_pct=%.0f load1=%s server_us_per_event=%.2f redis_us_per_event=%.2f client_us_per_event=%.2f\n",
                $0, srv, rds, other, l, srv * per, rds * per, cli * per
        }' <<<"${line:-RESULT mode=stream errors=1 rate=0}")
    echo "$line"
    echo "$line" >>"$RESULTS"
    if [[ -n $others ]]; then
        echo "   other processes during $name: $others"
    fi
}

run_echo() { # run_echo NAME ECHO_ARGS...
    local name=$1 threads
    shift
    threads=$(sed -n 's/.*--threads \([0-9]*\).*/\1/p' <<<" $* ")
    start_echo "$@"
    run_stream "$name" echo "${threads:-2}"
    stop_server "$name"
    sed 's/^/   /' "$SCRATCH/echo.log" >&2
}

run_service() { # run_service NAME
    start_real_service
    reset_redis
    local threads
    threads=$(sed -n 's/.*--threads \([0-9]*\).*/\1/p' <<<" $SERVICE_ARGS ")
    run_stream "$1" service "${threads:-2}" # the service's default: 2
    stop_server "$1"
}

# The runs of one kind (name KIND#n) during which other people's work took
# at most MAX_OTHER % of a core.
quiet_runs() { # quiet_runs KIND
    grep " name=$1#" "$RESULTS" | awk -v m="$MAX_OTHER" '{
        for (i = 1; i <= NF; i++) if ($i ~ /^other_cpu_pct=/) { split($i, kv, "="); o = kv[2] }
        if (o + 0 <= m + 0) print }'
}

# The runs that count: the quiet ones, or all of the kind when none was
# quiet (the summary says which).
counted_runs() { # counted_runs KIND
    local quiet
    quiet=$(quiet_runs "$1")
    if [[ -n $quiet ]]; then echo "$quiet"; else grep " name=$1#" "$RESULTS"; fi
}

mean_field() { # mean_field KIND FIELD: its mean over the counted runs
    counted_runs "$1" | sed "s/.* $2=\([0-9.]*\).*/\1/" |
        awk '{s += $1; n++} END {printf "%.2f", n ? s / n : 0}'
}

# "N of M runs, best R/s" for the summary.
runs_note() { # runs_note KIND
    local quiet all best
    quiet=$(quiet_runs "$1" | grep -c . || true)
    all=$(grep -c " name=$1#" "$RESULTS")
    best=$(grep " name=$1#" "$RESULTS" | sed 's/.* rate=\([0-9.]*\).*/\1/' | sort -g | tail -1)
    if [[ $quiet -gt 0 ]]; then
        printf 'mean of the %s of %s runs with other <= %s%%; best run %.0f/s' "$quiet" "$all" \
            "$MAX_OTHER" "$best"
    else
        printf 'NO run with other <= %s%%: mean of all %s; best run %.0f/s' "$MAX_OTHER" "$all" \
            "$best"
    fi
}

# ---- setup ---------------------------------------------------------------------
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "== load before: $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min)"
echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ); scratch $SCRATCH"
echo "== bench_publish --mode stream --streams $STREAMS --window $WINDOW --duration $DURATION" \
    "--connections $CONNECTIONS --payload-bytes $PAYLOAD"

REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$SCRATCH" --save '' \
    --appendonly yes --appendfsync everysec --logfile "$SCRATCH/redis.log" &
REDIS_PID=$!
wait_port "$REDIS_PORT" || die "redis-server did not start"
echo "== redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/') on :$REDIS_PORT" \
    "(appendonly yes, appendfsync everysec; idle during the echo runs)"

# ---- the issue's reference: redis-benchmark, as bench/run.sh runs it -------------
# RB_RUNS runs (each under a second), the median counts; the stream is
# deleted before each.
if ((RB_RUNS > 0)); then
    wait_quiet
    for i in $(seq "$RB_RUNS"); do
        rcli del benchstream >/dev/null
        out=$(redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -n 300000 -c 50 -P 32 --csv \
            XADD benchstream '*' f "$(head -c "$PAYLOAD" /dev/zero | tr '\0' 'x')" | tail -1)
        echo "RESULT mode=redis-benchmark name=redis-benchmark#$i rate=$(awk -F'","' '{print $2}' <<<"$out") load1=$(load1)" |
            tee -a "$SCRATCH/redis-benchmark.txt"
    done
    rcli del benchstream >/dev/null
    RB_RATE=$(sed 's/.* rate=\([0-9.]*\).*/\1/' "$SCRATCH/redis-benchmark.txt" | sort -g |
        awk -v n="$RB_RUNS" 'NR == int((n + 1) / 2)')
fi

# ---- the runs --------------------------------------------------------------------
for i in $(seq "$RUNS"); do
    run_echo "echo-t2#$i" --threads 2
    run_echo "echo-t1#$i" --threads 1
    run_service "service#$i"
done
if [[ $DECODE == 1 ]]; then
    run_echo "echo-decode#1" --threads 2 --decode
fi

# ---- summary ---------------------------------------------------------------------
echo
echo "== summary (load now: $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%-14s %9s %8s %8s %6s %7s %7s %7s %7s %6s %7s %7s %7s\n' run events/s p50_us p99_us \
    errors srv_cpu% rds_cpu% cli_cpu% other% load1 srv_us rds_us cli_us
while read -r line; do
    printf '%-14s %9.0f %8s %8s %6s %7s %7s %7s %7s %6s %7s %7s %7s\n' "$(field name "$line")" \
        "$(field rate "$line")" "$(field p50_us "$line")" "$(field p99_us "$line")" \
        "$(field errors "$line")" "$(field server_cpu_pct "$line")" \
        "$(field redis_cpu_pct "$line")" "$(field client_cpu_pct "$line")" \
        "$(field other_cpu_pct "$line")" "$(field load1 "$line")" \
        "$(field server_us_per_event "$line")" "$(field redis_us_per_event "$line")" \
        "$(field client_us_per_event "$line")"
done <"$RESULTS"
echo "(srv/rds/cli_us: CPU microseconds per event of the server, Redis, the client;" \
    "other%: the machine's busy CPU minus those three, in % of one core)"

ECHO2=$(mean_field echo-t2 rate)
ECHO1=$(mean_field echo-t1 rate)
REAL=$(mean_field service rate)
RATIO=$(echo "scale=3; $REAL / ($ECHO2 + 0.0001)" | bc -l)
echo
printf 'echo ceiling, 2 threads: %.0f/s, server %.2f us/event, client %.2f us/event (%s)\n' \
    "$ECHO2" "$(mean_field echo-t2 server_us_per_event)" \
    "$(mean_field echo-t2 client_us_per_event)" "$(runs_note echo-t2)"
printf 'echo ceiling, 1 thread:  %.0f/s, server %.2f us/event, client %.2f us/event (%s)\n' \
    "$ECHO1" "$(mean_field echo-t1 server_us_per_event)" \
    "$(mean_field echo-t1 client_us_per_event)" "$(runs_note echo-t1)"
printf 'real service:            %.0f/s, server %.2f us/event, client %.2f us/event, Redis %.2f us/event (%s)\n' \
    "$REAL" "$(mean_field service server_us_per_event)" \
    "$(mean_field service client_us_per_event)" "$(mean_field service redis_us_per_event)" \
    "$(runs_note service)"
if [[ $DECODE == 1 ]]; then
    printf 'echo with --decode:      %.0f/s, server %.2f us/event (%s)\n' \
        "$(mean_field echo-decode rate)" "$(mean_field echo-decode server_us_per_event)" \
        "$(runs_note echo-decode)"
fi
printf 'ratio real / ceiling (2 threads): %.2f (means of the counted runs)\n' "$RATIO"
if [[ -n $RB_RATE ]]; then
    printf 'vs redis-benchmark XADD -P 32 (median of %s runs, %.0f/s): ceiling %.2f, real %.2f\n' \
        "$RB_RUNS" "$RB_RATE" "$(echo "$ECHO2 / $RB_RATE" | bc -l)" "$(echo "$REAL / $RB_RATE" | bc -l)"
fi
echo "RESULT mode=ceiling-summary echo_t2_rate=$ECHO2 echo_t1_rate=$ECHO1 service_rate=$REAL" \
    "ratio_service_echo=$RATIO redis_benchmark_rate=${RB_RATE:-0} runs=$RUNS" \
    "max_other_pct=$MAX_OTHER failed=$FAILED"

if [[ $FAILED -ne 0 ]]; then
    echo "run_ceiling.sh: at least one run had errors: its figures are not results" >&2
    exit 1
fi
