#!/usr/bin/env bash
# run_subscribe.sh - the subscribe benchmarks of docs/benchmarks.md, end to end:
#
#   bench/run_subscribe.sh [BUILD_DIR]        (default: build)
#
# Starts its own redis-server (loopback, free port, scratch dir, AOF on with
# appendfsync everysec) and the event service (--log-level=warn), then runs
# bench/bench_subscribe in each mode, one at a time:
#
#   latency         publish -> delivery at RATE events/s offered by one
#                   PublishStream paced by a timer thread, one subscriber
#                   acking in batches (64 ids or 1 ms)
#   latency-unary   the same with one unary Publish call per event
#   latency-batched the first with batched delivery (--per-message
#                   PER_MESSAGE): latency must stay as without
#   drain-kK        a backlog of COUNT events, then one subscriber with
#                   max_in_flight MAX_IN_FLIGHT drains it, one delivery per
#                   message
#   drain-kK-batched  the same with batched delivery: up to PER_MESSAGE
#                   deliveries per message (max_deliveries_per_message)
#   drain-kdefault  the same with the server's default max_in_flight (100)
#   drain-kdefault-batched  and with batched delivery
#   fanout          (fresh service) SUBSCRIPTIONS x SUBSCRIBERS streams held at
#                   once, FAN_EVENTS events, acks as they come: VmRSS idle /
#                   open / after, CPU while idle, deliveries per stream
#   fanout-hold     the same streams, max_in_flight FAN_EVENTS/SUBSCRIBERS and
#                   no ack until all arrived: every stream must get exactly
#                   that many (the credit limit spreads the events)
#
# and prints a summary. For each run it also reads the CPU time of the service
# and of Redis (/proc/PID/stat), Redis's per-command counts (INFO
# commandstats, reset before the run) and the machine's CPU pressure (the
# share of time some task waited for a CPU, /proc/pressure/cpu): other
# people's work on these cores shows there. Exits non-zero when any run had
# errors: a run with errors is not a result. Takes about 80 s.
#
# Environment knobs (defaults in brackets): DURATION [10] seconds measured at
# RATE [5000]/s, COUNT [300000] backlog events, MAX_IN_FLIGHT [1000],
# PER_MESSAGE [1000] deliveries per message in the batched runs,
# SUBSCRIPTIONS [10], SUBSCRIBERS [100] per subscription, FAN_EVENTS [2000],
# SERVICE_ARGS [] extra service flags, BENCH_SUBSCRIBE [BUILD/bench/
# bench_subscribe] the load generator binary.
set -euo pipefail

BUILD=${1:-build}
DURATION=${DURATION:-10}
RATE=${RATE:-5000}
COUNT=${COUNT:-300000}
MAX_IN_FLIGHT=${MAX_IN_FLIGHT:-1000}
PER_MESSAGE=${PER_MESSAGE:-1000}
SUBSCRIPTIONS=${SUBSCRIPTIONS:-10}
SUBSCRIBERS=${SUBSCRIBERS:-100}
FAN_EVENTS=${FAN_EVENTS:-2000}
SERVICE_ARGS=${SERVICE_ARGS:-}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
SERVICE=$BUILD/tracseq-events
BENCH=${BENCH_SUBSCRIBE:-$BUILD/bench/bench_subscribe}
CLK_TCK=$(getconf CLK_TCK)

die() {
    echo "run_subscribe.sh: $*" >&2
    exit 2
}

for tool in redis-server redis-cli python3 bc; do
    command -v "$tool" >/dev/null || die "$tool not found (make deps installs it)"
done
if [[ ! -x $SERVICE || ! -x $BENCH ]]; then
    echo "run_subscribe.sh: building tracseq-events and bench_subscribe in $BUILD" >&2
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build "$BUILD" --target tracseq-events bench_subscribe -j2 >/dev/null ||
        die "build failed (is bench/subscribe.cmake included from bench/CMakeLists.txt?)"
fi
(( FAN_EVENTS % SUBSCRIBERS == 0 )) || die "FAN_EVENTS must be a multiple of SUBSCRIBERS"

SCRATCH=$(mktemp -d /tmp/tse-subbench.XXXXXX)
REDIS_PID=
SERVICE_PID=
FAILED=0
RESULTS=$SCRATCH/results.txt
: >"$RESULTS"

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

trap cleanup EXIT
trap 'exit 130' INT TERM





# Microseconds that some task waited for a CPU (PSI), 0 when unavailable.
cpu_stall_us() {
    awk '/^some/ {sub("total=", "", $5); print $5; exit}' /proc/pressure/cpu 2>/dev/null || echo 0
}


# "name=calls" for the stream commands Redis ran since the last reset.
command_counts() {
    rcli info commandstats | tr -d '\r' |
        sed -n 's/^cmdstat_\(xreadgroup\|xack\|xadd\|xpending\|xclaim\|xinfo|groups\):calls=\([0-9]*\),usec=\([0-9]*\).*/\1 \2 \3/p' |
        awk '{gsub(/\|/, "_", $1); printf " %s_calls=%s %s_usec=%s", $1, $2, $1, $3}'
}

# Drops the benchmark streams and compacts the AOF, so runs start alike.
reset_redis() {
    local keys
    keys=$(rcli --scan --pattern 'tracseq:events:{bench.*' | tr '\n' ' ')
    # shellcheck disable=SC2086
    [[ -n $keys ]] && rcli unlink $keys >/dev/null
    rcli bgrewriteaof >/dev/null 2>&1 || true
    for _ in $(seq 100); do
        if rcli info persistence | tr -d '\r' | grep -q '^aof_rewrite_in_progress:0' &&
            ! rcli info persistence | tr -d '\r' | grep -q '^aof_rewrite_scheduled:1'; then
            break
        fi
        sleep 0.1
    done
}

start_service() {
    SERVICE_PORT=$(free_port)
    # shellcheck disable=SC2086
    "$SERVICE" --listen "127.0.0.1:$SERVICE_PORT" --redis-url "redis://127.0.0.1:$REDIS_PORT" \
        --log-level warn $SERVICE_ARGS >>"$SCRATCH/service.log" 2>&1 &
    SERVICE_PID=$!
    wait_port "$SERVICE_PORT" || die "the service did not start: $(tail -5 "$SCRATCH/service.log")"
    sleep 1 # let it connect to Redis and settle
}

# Runs bench_subscribe with a name and options; records its RESULT line with
# the service's and Redis's CPU use and Redis's command counts over the run.
run_bench() {
    local name=$1
    shift
    local s0 r0 w0 s1 r1 w1 p0 p1 line rc=0 counts
    reset_redis
    rcli config resetstat >/dev/null
    p0=$(cpu_stall_us)
    s0=$(cpu_ticks "$SERVICE_PID")
    r0=$(cpu_ticks "$REDIS_PID")
    w0=$(date +%s.%N)
    line=$("$BENCH" --target "127.0.0.1:$SERVICE_PORT" --name "bench-$name" \
        --event-type "bench.sub_${name//-/_}" --label "$name" "$@" 2>"$SCRATCH/bench.err") || rc=$?
    w1=$(date +%s.%N)
    s1=$(cpu_ticks "$SERVICE_PID")
    r1=$(cpu_ticks "$REDIS_PID")
    p1=$(cpu_stall_us)
    counts=$(command_counts)
    sed 's/^/   /' "$SCRATCH/bench.err" >&2
    if [[ $rc -ne 0 || -z $line ]]; then
        echo "run_subscribe.sh: $name FAILED (exit $rc)" >&2
        FAILED=1
    fi
    line=$(awk -v s="$((s1 - s0))" -v r="$((r1 - r0))" -v w="$(echo "$w1 - $w0" | bc)" \
        -v t="$CLK_TCK" -v c="$counts" -v p="$((p1 - p0))" \
        '{printf "%s wall_s=%.1f server_cpu_pct=%.0f redis_cpu_pct=%.0f cpu_pressure_pct=%.0f%s\n", $0, w, 100*s/t/w, 100*r/t/w, p/1e4/w, c}' \
        <<<"${line:-RESULT mode=none label=$name errors=1}")
    echo "$line"
    echo "$line" >>"$RESULTS"
}

field() { # field NAME LINE
    sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"
}

result() { # result LABEL: the RESULT line of that run
    grep " label=$1 " "$RESULTS" || true
}

verdict() { if [[ $1 == 1 ]]; then echo met; else echo MISSED; fi; }

# ---- setup ---------------------------------------------------------------------
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "== load before: $(uptime)"
echo "== CPU pressure before: $(head -1 /proc/pressure/cpu 2>/dev/null || echo n/a)"
echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ); scratch $SCRATCH"

REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$SCRATCH" --save '' \
    --appendonly yes --appendfsync everysec --logfile "$SCRATCH/redis.log" &
REDIS_PID=$!
wait_port "$REDIS_PORT" || die "redis-server did not start"
echo "== redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/') on :$REDIS_PORT (appendonly yes, appendfsync everysec)"

start_service
echo "== tracseq-events on :$SERVICE_PORT --log-level=warn $SERVICE_ARGS (pid $SERVICE_PID)"
echo "RESULT mode=rss label=rss-after-start vmrss_kb=$(rss_kb "$SERVICE_PID")"

# ---- latency and drain -------------------------------------------------------------
run_bench latency --mode latency --publisher stream --rate "$RATE" --duration "$DURATION"
run_bench latency-unary --mode latency --publisher unary --rate "$RATE" --duration "$DURATION"
run_bench latency-batched --mode latency --publisher stream --rate "$RATE" --duration "$DURATION" \
    --per-message "$PER_MESSAGE"
run_bench "drain-k$MAX_IN_FLIGHT" --mode drain --count "$COUNT" --max-in-flight "$MAX_IN_FLIGHT"
run_bench "drain-k$MAX_IN_FLIGHT-batched" --mode drain --count "$COUNT" \
    --max-in-flight "$MAX_IN_FLIGHT" --per-message "$PER_MESSAGE"
run_bench drain-kdefault --mode drain --count "$COUNT"
run_bench drain-kdefault-batched --mode drain --count "$COUNT" --per-message "$PER_MESSAGE"

# ---- many streams, on a fresh service (its idle VmRSS is the baseline) ----------
stop_service
reset_redis
start_service
echo "== tracseq-events restarted on :$SERVICE_PORT (pid $SERVICE_PID) for the fanout runs"
FAN_ARGS=(--mode fanout --subscriptions "$SUBSCRIPTIONS" --subscribers "$SUBSCRIBERS"
    --count "$FAN_EVENTS" --pid "$SERVICE_PID" --redis-pid "$REDIS_PID")
run_bench fanout "${FAN_ARGS[@]}"
run_bench fanout-hold "${FAN_ARGS[@]}" --hold-acks --max-in-flight $((FAN_EVENTS / SUBSCRIBERS))
sleep 1
echo "RESULT mode=rss label=rss-after-fanout vmrss_kb=$(rss_kb "$SERVICE_PID")"
stop_service

# ---- summary ---------------------------------------------------------------------
echo
echo "== summary (load now: $(uptime | sed 's/.*load average: //'))"
LAT=$(result latency)
LATU=$(result latency-unary)
LATB=$(result latency-batched)
DRK=$(result "drain-k$MAX_IN_FLIGHT")
DRKB=$(result "drain-k$MAX_IN_FLIGHT-batched")
DRD=$(result drain-kdefault)
DRDB=$(result drain-kdefault-batched)
FAN=$(result fanout)
FANH=$(result fanout-hold)
printf '%-22s %9s %9s %9s %9s %9s %8s %6s %7s %7s %7s %7s\n' run events/s p50_us p99_us max_us events messages errors srv_cpu% rds_cpu% cli_cpu% cpu_psi%
while read -r line; do
    printf '%-22s %9s %9s %9s %9s %9s %8s %6s %7s %7s %7s %7s\n' "$(field label "$line")" \
        "$(field rate "$line" | awk '{printf "%.0f", $1} END {if (NR == 0) print "-"}')" "$(field p50_us "$line" | sed 's/^$/-/')" \
        "$(field p99_us "$line" | sed 's/^$/-/')" "$(field max_us "$line" | sed 's/^$/-/')" \
        "$(field delivered "$line")" "$(field messages "$line")" "$(field errors "$line")" \
        "$(field server_cpu_pct "$line")" \
        "$(field redis_cpu_pct "$line")" "$(field client_cpu_pct "$line")" \
        "$(field cpu_pressure_pct "$line")"
done < <(grep -v 'mode=rss' "$RESULTS")
echo
P99=$(field p99_us "$LAT")
P99U=$(field p99_us "$LATU")
printf 'publish -> delivery at %s/s offered (PublishStream): p50 %s us, p90 %s us, p99 %s us, max %s us (target p99 < 2000 us: %s)\n' \
    "$RATE" "$(field p50_us "$LAT")" "$(field p90_us "$LAT")" "${P99:-?}" "$(field max_us "$LAT")" \
    "$(verdict "$(echo "${P99:-999999} < 2000" | bc)")"
printf '   unary Publish per event: p50 %s us, p90 %s us, p99 %s us, max %s us (p99 < 2000 us: %s)\n' \
    "$(field p50_us "$LATU")" "$(field p90_us "$LATU")" "${P99U:-?}" "$(field max_us "$LATU")" \
    "$(verdict "$(echo "${P99U:-999999} < 2000" | bc)")"
printf '   with batched delivery (--per-message %s): p50 %s us, p99 %s us, max %s us; %s deliveries in %s messages\n' \
    "$PER_MESSAGE" "$(field p50_us "$LATB")" "$(field p99_us "$LATB")" "$(field max_us "$LATB")" \
    "$(field delivered "$LATB")" "$(field messages "$LATB")"
for l in "$LAT" "$LATU"; do
    printf '   %s: publish answered p50 %s / p99 %s us; generator late p99 %s us; from the actual send p99 %s us\n' \
        "$(field label "$l")" "$(field publish_p50_us "$l")" "$(field publish_p99_us "$l")" \
        "$(field launch_lag_p99_us "$l")" "$(field from_send_p99_us "$l")"
done
RK=$(field rate "$DRK")
printf 'one subscriber, max_in_flight %s: %.0f events/s draining %s events (target >= 30000: %s)\n' \
    "$MAX_IN_FLIGHT" "${RK:-0}" "$COUNT" "$(verdict "$(echo "${RK:-0} >= 30000" | bc)")"
RKB=$(field rate "$DRKB")
printf '   batched delivery (up to %s per message): %.0f events/s in %s messages (target >= 200000: %s)\n' \
    "$PER_MESSAGE" "${RKB:-0}" "$(field messages "$DRKB")" "$(verdict "$(echo "${RKB:-0} >= 200000" | bc)")"
printf '   with the default max_in_flight (%s): %.0f events/s; batched: %.0f events/s in %s messages\n' \
    "$(field max_in_flight "$DRD")" "$(field rate "$DRD" | sed 's/^$/0/')" \
    "$(field rate "$DRDB" | sed 's/^$/0/')" "$(field messages "$DRDB")"
HELD=$(field attached "$FANH")
ALL=$([[ $(field streams_without "$FANH") == 0 && $(field unique "$FANH") == "$(field expected "$FANH")" &&
    ${HELD:-0} -ge $((SUBSCRIPTIONS * SUBSCRIBERS)) ]] && echo 1 || echo 0)
printf '%s streams held (%s x %s); all received events: %s (%s each, %s deliveries of %s)\n' \
    "${HELD:-0}" "$SUBSCRIPTIONS" "$SUBSCRIBERS" "$(verdict "$ALL")" \
    "$(field min_per_stream "$FANH")-$(field max_per_stream "$FANH")" "$(field unique "$FANH")" \
    "$(field expected "$FANH")"
printf '   service VmRSS: %s kB idle, %s kB with the streams open (%s kB/stream), %s kB after %s events\n' \
    "$(field vmrss_idle_kb "$FAN")" "$(field vmrss_open_kb "$FAN")" "$(field kb_per_stream "$FAN")" \
    "$(field vmrss_loaded_kb "$FAN")" "$(field events "$FAN")"
printf '   idle streams cost: service %s%% CPU, Redis %s%% CPU (the engine polls every subscriber)\n' \
    "$(field idle_server_cpu_pct "$FAN")" "$(field idle_redis_cpu_pct "$FAN")"
printf '   acking at once, %s of %s streams got no event (min %s, max %s per stream)\n' \
    "$(field streams_without "$FAN")" "$(field streams "$FAN")" "$(field min_per_stream "$FAN")" \
    "$(field max_per_stream "$FAN")"
echo "redis: $(grep -c 'fsync is taking too long' "$SCRATCH/redis.log" || true) 'AOF fsync is taking too long' warnings during the runs"
echo "RESULT mode=summary latency_p99_us=${P99:-0} latency_unary_p99_us=${P99U:-0} latency_batched_p99_us=$(field p99_us "$LATB") drain_rate=${RK:-0} drain_batched_rate=${RKB:-0} drain_default_rate=$(field rate "$DRD") drain_default_batched_rate=$(field rate "$DRDB") streams_held=${HELD:-0} all_received=$ALL vmrss_idle_kb=$(field vmrss_idle_kb "$FAN") vmrss_open_kb=$(field vmrss_open_kb "$FAN") failed=$FAILED"

if [[ $FAILED -ne 0 ]]; then
    echo "run_subscribe.sh: at least one run had errors: its figures are not results" >&2
    exit 1
fi
