#!/usr/bin/env bash
# run.sh - the publish benchmarks of docs/benchmarks.md, end to end:
#
#   bench/run.sh [BUILD_DIR]        (default: build; `make bench` runs this)
#
# Starts its own redis-server (loopback, free port, scratch dir, AOF on with
# appendfsync everysec) and the event service (--log-level=warn), measures
# redis-benchmark's pipelined XADD as the ceiling, then runs
# bench/bench_publish in each mode, one at a time, and prints a summary.
# Exits non-zero when any run had errors: a run with errors is not a result.
#
# Between runs the benchmark stream is deleted and the AOF rewritten, so each
# run starts from the same small dataset; the AOF rewrites Redis does by
# itself during a run are counted and shown (they cost CPU on these cores).
#
# Environment knobs (defaults in brackets): DURATION [10] seconds per main
# run, SHORT [5] seconds for the secondary runs, STREAMS [4], WINDOW [1024],
# CONCURRENCY [32], RATE [5000], CONNECTIONS [4], PAYLOAD [300] bytes,
# RB_RUNS [3] redis-benchmark runs per command (the median counts),
# BATCH [100] events per message of the batched runs (issue 14),
# IDLE_WAIT [6] seconds idle before the after-load VmRSS (one trim period),
# SERVICE_ARGS [] extra service flags, e.g. "--threads 2".
set -euo pipefail

BUILD=${1:-build}
DURATION=${DURATION:-10}
SHORT=${SHORT:-5}
STREAMS=${STREAMS:-4}
WINDOW=${WINDOW:-1024}
CONCURRENCY=${CONCURRENCY:-32}
RATE=${RATE:-5000}
CONNECTIONS=${CONNECTIONS:-4}
PAYLOAD=${PAYLOAD:-300}
RB_RUNS=${RB_RUNS:-3}
BATCH=${BATCH:-100}
IDLE_WAIT=${IDLE_WAIT:-6}
SERVICE_ARGS=${SERVICE_ARGS:-}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
SERVICE=$BUILD/tracseq-events
BENCH=$BUILD/bench/bench_publish
BENCH_SDK=$BUILD/bench/bench_sdk_publish
CLK_TCK=$(getconf CLK_TCK)

die() {
    echo "run.sh: $*" >&2
    exit 2
}

for tool in redis-server redis-cli redis-benchmark python3; do
    command -v "$tool" >/dev/null || die "$tool not found (make deps installs it)"
done
if [[ ! -x $SERVICE || ! -x $BENCH || ! -x $BENCH_SDK ]]; then
    echo "run.sh: building tracseq-events, bench_publish and bench_sdk_publish in $BUILD" >&2
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build "$BUILD" --target tracseq-events bench_publish bench_sdk_publish -j2 >/dev/null
fi

SCRATCH=$(mktemp -d /tmp/tse-bench.XXXXXX)
REDIS_PID=
SERVICE_PID=
FAILED=0
RESULTS=$SCRATCH/results.txt
: >"$RESULTS"

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

trap cleanup EXIT
trap 'exit 130' INT TERM






aof_rewrites() {
    rcli info persistence | tr -d '\r' | awk -F: '$1 == "aof_rewrites" {print $2}'
}

# Empties the benchmark streams and compacts the AOF, so each run starts
# alike. Only the stream keys go: the service remembers which stream keys it
# registered, so the rest of its keys must stay.
reset_redis() {
    local keys
    keys=$(rcli --scan --pattern 'tracseq:events:{bench.*' | tr '\n' ' ')
    # shellcheck disable=SC2086
    [[ -n $keys ]] && rcli unlink $keys >/dev/null
    rcli del benchstream >/dev/null
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

start_service() {
    local level=$1
    SERVICE_PORT=$(free_port)
    # shellcheck disable=SC2086
    "$SERVICE" --listen "127.0.0.1:$SERVICE_PORT" --redis-url "redis://127.0.0.1:$REDIS_PORT" \
        --log-level "$level" $SERVICE_ARGS >"$SCRATCH/service-$level.log" 2>&1 &
    SERVICE_PID=$!
    wait_port "$SERVICE_PORT" || die "the service did not start: $(tail -5 "$SCRATCH/service-$level.log")"
    sleep 0.5 # let it connect to Redis
}

# Runs a load generator (bench_publish or bench_sdk_publish: the command
# and its options) under a name; records its RESULT line with the server's
# and Redis's CPU use over the run.
run_prog() {
    local name=$1
    shift
    local s0 r0 w0 s1 r1 w1 a0 a1 line rc=0
    reset_redis
    a0=$(aof_rewrites)
    s0=$(cpu_ticks "$SERVICE_PID")
    r0=$(cpu_ticks "$REDIS_PID")
    w0=$(date +%s.%N)
    line=$("$@" --target "127.0.0.1:$SERVICE_PORT" --payload-bytes "$PAYLOAD" \
        2>"$SCRATCH/bench.err") || rc=$?
    w1=$(date +%s.%N)
    s1=$(cpu_ticks "$SERVICE_PID")
    r1=$(cpu_ticks "$REDIS_PID")
    a1=$(aof_rewrites)
    cat "$SCRATCH/bench.err" >&2
    if [[ $rc -ne 0 || -z $line ]]; then
        echo "run.sh: $name FAILED (exit $rc)" >&2
        FAILED=1
    fi
    line=$(awk -v n="$name" -v s="$((s1 - s0))" -v r="$((r1 - r0))" -v w="$(echo "$w1 - $w0" | bc)" \
        -v t="$CLK_TCK" -v a="$((a1 - a0))" \
        '{printf "%s name=%s server_cpu_pct=%.0f redis_cpu_pct=%.0f aof_rewrites=%d\n", $0, n, 100*s/t/w, 100*r/t/w, a}' \
        <<<"${line:-RESULT mode=none errors=1}")
    echo "$line"
    echo "$line" >>"$RESULTS"
}

run_bench() { # run_bench NAME bench_publish-options...
    local name=$1
    shift
    run_prog "$name" "$BENCH" --connections "$CONNECTIONS" "$@"
}

# The client SDK's pipelined publisher: one publisher (own connection and
# PublishStream) per stream of the raw run.
run_sdk() { # run_sdk NAME bench_sdk_publish-options...
    local name=$1
    shift
    run_prog "$name" "$BENCH_SDK" --publishers "$STREAMS" --window "$WINDOW" "$@"
}

field() { # field NAME LINE
    sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"
}

# ---- setup ---------------------------------------------------------------------
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "== load before: $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min)"
echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ); scratch $SCRATCH"

REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$SCRATCH" --save '' \
    --appendonly yes --appendfsync everysec --logfile "$SCRATCH/redis.log" &
REDIS_PID=$!
wait_port "$REDIS_PORT" || die "redis-server did not start"
echo "== redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/') on :$REDIS_PORT (appendonly yes, appendfsync everysec)"

# ---- the ceiling: redis-benchmark, same payload size -----------------------
# Runs redis-benchmark once with a name and the command to repeat; prints
# and records a RESULT line (rate in requests/s, latencies in ms).
redis_bench_once() {
    local name=$1 out a0 r0 w0 w1 r1 rate line
    shift
    reset_redis
    a0=$(aof_rewrites)
    r0=$(cpu_ticks "$REDIS_PID")
    w0=$(date +%s.%N)
    out=$(redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -n 300000 -c 50 -P 32 --csv "$@" | tail -1)
    w1=$(date +%s.%N)
    r1=$(cpu_ticks "$REDIS_PID")
    rate=$(awk -F'","' '{print $2}' <<<"$out")
    [[ -n $rate ]] || die "redis-benchmark gave no figure: $out"
    line=$(printf 'RESULT mode=redis-benchmark name=%s rate=%s p50_ms=%s p99_ms=%s redis_cpu_pct=%.0f aof_rewrites=%d' \
        "$name" "$rate" "$(awk -F'","' '{print $5}' <<<"$out")" "$(awk -F'","' '{print $7}' <<<"$out")" \
        "$(echo "100 * ($r1 - $r0) / $CLK_TCK / ($w1 - $w0)" | bc -l)" "$(($(aof_rewrites) - a0))")
    echo "$line"
    echo "$line" >>"$SCRATCH/redis-benchmark.txt"
}

# Runs it RB_RUNS times (its figure swings widely from run to run here) and
# records the run with the median rate under the plain name.
redis_bench() {
    local name=$1 median
    shift
    for i in $(seq "$RB_RUNS"); do
        redis_bench_once "$name#$i" "$@"
    done
    median=$(grep " name=$name#" "$SCRATCH/redis-benchmark.txt" | sort -t= -k4 -g |
        awk -v n="$RB_RUNS" 'NR == int((n + 1) / 2)')
    sed "s/ name=$name#[0-9]* / name=$name /; s/\$/ runs=$RB_RUNS/" <<<"$median" >>"$SCRATCH/redis-benchmark.txt"
}

# The reference of the target: one 300-byte field, as the issue states it.
redis_bench redis-benchmark XADD benchstream '*' f "$(head -c "$PAYLOAD" /dev/zero | tr '\0' 'x')"
# The command the service really sends per event (command.c): three fields,
# the ~390-byte packed envelope (trimming is a separate XTRIM once a second).
# Not the target's reference; it shows how much of the gap is the command's
# own shape.
redis_bench redis-benchmark-shaped XADD benchstream '*' \
    id 3d553515-8f46-4deb-8f38-a19f6dd4a823 type bench.event \
    event "$(head -c $((PAYLOAD + 90)) /dev/zero | tr '\0' 'y')"
RB_LINE=$(grep ' name=redis-benchmark ' "$SCRATCH/redis-benchmark.txt")
RBS_LINE=$(grep ' name=redis-benchmark-shaped ' "$SCRATCH/redis-benchmark.txt")
RB_RATE=$(field rate "$RB_LINE")
RBS_RATE=$(field rate "$RBS_LINE")

# ---- the service at warn level -----------------------------------------------
start_service warn
echo "== tracseq-events on :$SERVICE_PORT --log-level=warn $SERVICE_ARGS (pid $SERVICE_PID)"
sleep 1
RSS_IDLE=$(rss_kb "$SERVICE_PID")
echo "RESULT mode=rss name=rss-after-start vmrss_kb=$RSS_IDLE"

run_bench stream --mode stream --streams "$STREAMS" --window "$WINDOW" --duration "$DURATION"
# Issue 14: PublishBatchStream, BATCH events per message, then the same with
# a client id on every event (the dedup script, one call per batch).
run_bench stream-batch --mode stream --streams "$STREAMS" --window "$WINDOW" --batch "$BATCH" \
    --duration "$DURATION"
run_bench stream-batch-ids --mode stream --streams "$STREAMS" --window "$WINDOW" --batch "$BATCH" \
    --duration "$SHORT" --ids
# Issue 5: the SDK's pipelined publisher right after the raw stream, in the
# same shape (server-assigned ids, like the raw run).
run_sdk sdk-stream --server-ids --duration "$DURATION"
run_bench unary --mode unary --concurrency "$CONCURRENCY" --duration "$DURATION"
run_bench latency --mode latency --rate "$RATE" --duration "$DURATION"
# The same offered load over one connection: every call on one server worker.
run_bench latency-1conn --mode latency --rate "$RATE" --duration "$SHORT" --connections 1
run_bench stream-ids --mode stream --streams "$STREAMS" --window "$WINDOW" --duration "$SHORT" --ids
# The SDK's default: a client id per event (retries deduplicated), i.e. the
# server's dedup path, like stream-ids.
run_sdk sdk-stream-ids --duration "$SHORT"
run_bench unary-ids --mode unary --concurrency "$CONCURRENCY" --duration "$SHORT" --ids

sleep 2 # idle again: in-flight work drained, timers settled
# The peak under load (VmHWM: the batched runs are the largest) for the
# "< 64 MB under load" target, then the idle figure once the service has
# had its chance to give freed memory back: it trims every 5 s when idle
# (wait_for_signal in src/service/main.c), so a reading taken at once
# counts memory that is about to be returned.
RSS_PEAK=$(hwm_kb "$SERVICE_PID")
RSS_LOADED=$(rss_kb "$SERVICE_PID")
sleep "$IDLE_WAIT"
RSS_AFTER=$(rss_kb "$SERVICE_PID")
echo "RESULT mode=rss name=rss-after-load vmrss_kb=$RSS_AFTER vmrss_at_end_kb=$RSS_LOADED vmhwm_kb=$RSS_PEAK idle_wait_s=$IDLE_WAIT"
stop_service

# ---- the cost of request logging: the default info level ---------------------
# Bracketed by a fresh warn-level service with the same run, so the two
# figures are taken minutes apart at most and from the same starting state.
start_service info
echo "== tracseq-events on :$SERVICE_PORT --log-level=info (the default; log to a file)"
run_bench unary-info --mode unary --concurrency "$CONCURRENCY" --duration "$SHORT"
echo "   info-level log: $(wc -l <"$SCRATCH/service-info.log") lines, $(du -h "$SCRATCH/service-info.log" | cut -f1)"
stop_service
start_service warn
echo "== tracseq-events on :$SERVICE_PORT --log-level=warn again, same run as unary-info"
run_bench unary-warn --mode unary --concurrency "$CONCURRENCY" --duration "$SHORT"
stop_service

# ---- summary ---------------------------------------------------------------------
STREAM_RATE=$(field rate "$(grep ' name=stream ' "$RESULTS" || true)")
UNARY_RATE=$(field rate "$(grep ' name=unary ' "$RESULTS" || true)")
LAT=$(grep ' name=latency ' "$RESULTS" || true)
LAT_P99=$(field p99_us "$LAT")
RATIO=$(echo "scale=3; ${STREAM_RATE:-0} / $RB_RATE" | bc -l)

echo
echo "== summary (load now: $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%-16s %10s %9s %9s %9s %7s %7s %7s %7s %4s\n' run events/s p50_us p99_us max_us errors srv_cpu% rds_cpu% cli_cpu% aofrw
for line in "$RB_LINE" "$RBS_LINE"; do
    printf '%-16s %10.0f %9.0f %9.0f %9s %7s %7s %7s %7s %4s\n' "$(field name "$line" | cut -c1-16)" \
        "$(field rate "$line")" "$(echo "$(field p50_ms "$line") * 1000" | bc)" \
        "$(echo "$(field p99_ms "$line") * 1000" | bc)" - 0 - "$(field redis_cpu_pct "$line")" - \
        "$(field aof_rewrites "$line")"
done
while read -r line; do
    printf '%-16s %10.0f %9s %9s %9s %7s %7s %7s %7s %4s\n' "$(field name "$line")" \
        "$(field rate "$line")" "$(field p50_us "$line")" "$(field p99_us "$line")" \
        "$(field max_us "$line")" "$(field errors "$line")" "$(field server_cpu_pct "$line")" \
        "$(field redis_cpu_pct "$line")" "$(field client_cpu_pct "$line")" "$(field aof_rewrites "$line")"
done <"$RESULTS"
for n in redis-benchmark redis-benchmark-shaped; do
    echo "$n, each run: $(grep " name=$n#" "$SCRATCH/redis-benchmark.txt" |
        sed 's/.* rate=\([0-9.]*\).*/\1/' | awk '{printf "%s%.0f/s", (NR > 1 ? ", " : ""), $1}') (median counts)"
done
echo
verdict() { if [[ $1 == 1 ]]; then echo met; else echo MISSED; fi; }
printf 'PublishStream %.0f/s vs redis-benchmark XADD -P 32 %.0f/s: ratio %.2f (target >= 0.50: %s)\n' \
    "${STREAM_RATE:-0}" "$RB_RATE" "$RATIO" "$(verdict "$(echo "$RATIO >= 0.5" | bc)")"
printf '   (vs the service-shaped XADD, %.0f/s: ratio %.2f)\n' "$RBS_RATE" \
    "$(echo "scale=3; ${STREAM_RATE:-0} / $RBS_RATE" | bc -l)"
printf 'unary Publish, %s in flight: %.0f/s (target >= 15000: %s)\n' "$CONCURRENCY" \
    "${UNARY_RATE:-0}" "$(verdict "$(echo "${UNARY_RATE:-0} >= 15000" | bc)")"
printf 'latency at %s/s offered: p50 %s us, p90 %s us, p99 %s us, max %s us (target p99 < 2000 us: %s)\n' \
    "$RATE" "$(field p50_us "$LAT")" "$(field p90_us "$LAT")" "$(field p99_us "$LAT")" \
    "$(field max_us "$LAT")" "$(verdict "$(echo "${LAT_P99:-999999} < 2000" | bc)")"
for n in latency latency-1conn; do
    line=$(grep " name=$n " "$RESULTS" || true)
    printf '   %s: the generator started calls late by p99 %s us (max %s us); p99 from the actual start %s us\n' \
        "$n" "$(field launch_lag_p99_us "$line")" "$(field launch_lag_max_us "$line")" \
        "$(field from_send_p99_us "$line")"
done
BATCH_RATE=$(field rate "$(grep ' name=stream-batch ' "$RESULTS" || true)")
BATCH_IDS_RATE=$(field rate "$(grep ' name=stream-batch-ids ' "$RESULTS" || true)")
printf 'PublishBatchStream, %s events per message: %.0f/s, ratio %.2f to redis-benchmark (target >= 0.75: %s)\n' \
    "$BATCH" "${BATCH_RATE:-0}" "$(echo "scale=3; ${BATCH_RATE:-0} / $RB_RATE" | bc -l)" \
    "$(verdict "$(echo "${BATCH_RATE:-0} >= 0.75 * $RB_RATE" | bc)")"
printf '   with client ids: %.0f/s, ratio %.2f (target >= 0.40: %s)\n' "${BATCH_IDS_RATE:-0}" \
    "$(echo "scale=3; ${BATCH_IDS_RATE:-0} / $RB_RATE" | bc -l)" \
    "$(verdict "$(echo "${BATCH_IDS_RATE:-0} >= 0.40 * $RB_RATE" | bc)")"
SDK_RATE=$(field rate "$(grep ' name=sdk-stream ' "$RESULTS" || true)")
SDK_IDS_RATE=$(field rate "$(grep ' name=sdk-stream-ids ' "$RESULTS" || true)")
IDS_RATE=$(field rate "$(grep ' name=stream-ids ' "$RESULTS" || true)")
SDK_PCT=$(echo "100 * ${SDK_RATE:-0} / ${STREAM_RATE:-1}" | bc -l)
printf 'SDK pipelined publish %.0f/s vs raw PublishStream %.0f/s: %.0f%% (target >= 90%%: %s)\n' \
    "${SDK_RATE:-0}" "${STREAM_RATE:-0}" "$SDK_PCT" "$(verdict "$(echo "$SDK_PCT >= 90" | bc)")"
printf '   the SDK batches by itself: %.0f%% of the raw batched stream (%.0f/s; target >= 90%%: %s)\n' \
    "$(echo "100 * ${SDK_RATE:-0} / ${BATCH_RATE:-1}" | bc -l)" "${BATCH_RATE:-0}" \
    "$(verdict "$(echo "${SDK_RATE:-0} >= 0.9 * ${BATCH_RATE:-1}" | bc)")"
printf '   with client ids (the SDK default, dedup path): %.0f/s vs raw --ids %.0f/s: %.0f%%\n' \
    "${SDK_IDS_RATE:-0}" "${IDS_RATE:-0}" "$(echo "100 * ${SDK_IDS_RATE:-0} / ${IDS_RATE:-1}" | bc -l)"
INFO_RATE=$(field rate "$(grep ' name=unary-info ' "$RESULTS" || true)")
WARN_RATE=$(field rate "$(grep ' name=unary-warn ' "$RESULTS" || true)")
printf 'request logging (info level, one line per call): unary %.0f/s vs %.0f/s at warn (%.0f%%)\n' \
    "${INFO_RATE:-0}" "${WARN_RATE:-0}" "$(echo "100 * ${INFO_RATE:-0} / ${WARN_RATE:-1}" | bc -l)"
printf 'idle VmRSS: %s kB after start, %s kB %s s after the load (%s kB at its end) (target < 20480 kB: %s)\n' \
    "$RSS_IDLE" "$RSS_AFTER" "$IDLE_WAIT" "$RSS_LOADED" "$(verdict "$(echo "$RSS_IDLE < 20480 && $RSS_AFTER < 20480" | bc)")"
printf 'peak VmRSS under the load (VmHWM): %s kB (target < 65536 kB: %s)\n' \
    "$RSS_PEAK" "$(verdict "$(echo "$RSS_PEAK < 65536" | bc)")"
echo "redis: $(grep -c 'fsync is taking too long' "$SCRATCH/redis.log" || true) 'AOF fsync is taking too long' warnings during the runs"
echo "RESULT mode=summary stream_rate=${STREAM_RATE:-0} redis_benchmark_rate=$RB_RATE ratio=$RATIO sdk_rate=${SDK_RATE:-0} sdk_pct=$(printf '%.0f' "$SDK_PCT") unary_rate=${UNARY_RATE:-0} latency_p99_us=$LAT_P99 rss_start_kb=$RSS_IDLE rss_after_kb=$RSS_AFTER rss_peak_kb=$RSS_PEAK failed=$FAILED"

if [[ $FAILED -ne 0 ]]; then
    echo "run.sh: at least one run had errors: its figures are not results" >&2
    exit 1
fi
