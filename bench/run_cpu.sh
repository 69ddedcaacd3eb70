#!/usr/bin/env bash
# bench/run_cpu.sh - the per-event CPU budget of the publish path (issue 14):
# for each load shape, the CPU time the service, Redis and the load
# generator spend per stored event, measured from /proc (utime + stime of
# each process over the run, divided by the events it stored). On a machine
# shared with other work the throughput swings with the neighbours; the CPU
# time per event barely does, so it is the figure to compare builds with.
#
#   bench/run_cpu.sh BUILD [BUILD2] [ROUNDS]      ROUNDS default 3
#
# With two builds they alternate (A B, then B A in the next round), so
# neither always runs first; the medians per build and shape are printed at
# the end, with the change of BUILD2 against BUILD. The load generators come
# from the last build given (BENCH_BUILD overrides): the same binaries for
# both. Per round and build, each shape in turn, each against a fresh
# redis-server (AOF on, appendfsync everysec, like bench/run.sh) and service:
#
#   rb          redis-benchmark -P 32 -c 50 XADD of one PAYLOAD-byte field
#               (the reference of the issue's targets: Redis and generator)
#   batch       PublishBatchStream, BATCH events per message (bench_publish)
#   batch-ids   the same with a client id on every event (the batch script)
#   sdk         the SDK publisher, server-assigned ids (bench_sdk_publish)
#   unary       Publish, CONCURRENCY calls in flight
#
# Knobs (defaults in brackets): COUNT [400000] events per shape (unary: a
# fifth), SDK_SECONDS [4], BATCH [100], PAYLOAD [300], CONCURRENCY [32],
# SHAPES ["rb batch batch-ids sdk unary"], SERVICE_ARGS []. Exits non-zero
# when any run had errors: a run with errors is not a result.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
usage="usage: run_cpu.sh BUILD [BUILD2] [ROUNDS]"
builds=("${1:?$usage}")
if [[ $# -ge 2 && ! $2 =~ ^[0-9]+$ ]]; then
    builds+=("$2")
    shift
fi
rounds=${2:-3}
COUNT=${COUNT:-400000}
SDK_SECONDS=${SDK_SECONDS:-4}
BATCH=${BATCH:-100}
PAYLOAD=${PAYLOAD:-300}
CONCURRENCY=${CONCURRENCY:-32}
SHAPES=${SHAPES:-rb batch batch-ids sdk unary}
SERVICE_ARGS=${SERVICE_ARGS:-}
bench=${BENCH_BUILD:-${builds[-1]}}/bench
hz=$(getconf CLK_TCK)
# shellcheck source=lib.sh
source "$here/lib.sh"
bench_start
TIMEFORMAT='%U %S'

# Runs a generator ($@) as shape $1 of build label $2 and records one line:
# the events it stored, its rate and the three CPU figures per event.
measure() {
    local shape=$1 label=$2 s0 r0 s1 r1 line ok rate gen
    shift 2
    s0=$(cpu_ticks "$SERVICE_PID")
    r0=$(cpu_ticks "$REDIS_PID")
    { time "$@" >"$SCRATCH/out" 2>"$SCRATCH/err"; } 2>"$SCRATCH/time" || {
        echo "run_cpu.sh: $shape/$label FAILED: $(tail -3 "$SCRATCH/err")" >&2
        FAILED=1
    }
    s1=$(cpu_ticks "$SERVICE_PID")
    r1=$(cpu_ticks "$REDIS_PID")
    line=$(grep '^RESULT' "$SCRATCH/out" || true)
    if [[ $shape == rb ]]; then
        ok=$COUNT
        rate=$(awk -F'","' '{print $2}' "$SCRATCH/out" | tail -1)
    else
        ok=$(sed -n 's/.* total_ok=\([0-9]*\).*/\1/p' <<<"$line")
        rate=$(sed -n 's/.* rate=\([0-9.]*\).*/\1/p' <<<"$line")
        grep -q ' errors=0 ' <<<"$line" || {
            echo "run_cpu.sh: $shape/$label had errors: $line" >&2
            FAILED=1
        }
    fi
    gen=$(awk '{print $1 + $2}' "$SCRATCH/time")
    awk -v sh="$shape" -v l="$label" -v n="${ok:-0}" -v rate="${rate:-0}" -v s=$((s1 - s0)) \
        -v r=$((r1 - r0)) -v g="$gen" -v hz="$hz" -v load="$(cut -d' ' -f1 /proc/loadavg)" \
        'BEGIN { if (n == 0) n = 1; if (sh == "rb") s = 0;
                 printf "CPU shape=%s label=%s events=%d rate=%.0f service_us=%.2f redis_us=%.2f gen_us=%.2f load=%s\n",
                        sh, l, n, rate, s * 1e6 / hz / n, r * 1e6 / hz / n, g * 1e6 / n, load }' |
        tee -a "$SCRATCH/results"
}

start_all() { # start_all BUILD
    start_redis_aof
    start_bench_service "$1"
}

stop_all() {
    stop_service
    kill -TERM "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
    REDIS_PID=
}

# Each shape against a fresh Redis and service: a dataset left by the
# previous shape would make Redis's AOF rewrites (forked, counted in its CPU
# time when reaped) costlier for the next.
run() { # run LABEL BUILD
    local label=$1 build=$2 shape
    for shape in $SHAPES; do
        start_all "$build"
        case $shape in
        rb)
            measure rb "$label" redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -n "$COUNT" -c 50 \
                -P 32 --csv XADD benchstream '*' f "$(head -c "$PAYLOAD" /dev/zero | tr '\0' x)"
            ;;
        batch | batch-ids)
            measure "$shape" "$label" "$bench/bench_publish" --target "$TARGET" --mode stream \
                --streams 4 --window 1024 --batch "$BATCH" --count "$COUNT" --duration 600 \
                --payload-bytes "$PAYLOAD" $([[ $shape == batch-ids ]] && echo --ids)
            ;;
        sdk)
            measure sdk "$label" "$bench/bench_sdk_publish" --target "$TARGET" --server-ids \
                --duration "$SDK_SECONDS" --payload-bytes "$PAYLOAD"
            ;;
        unary)
            measure unary "$label" "$bench/bench_publish" --target "$TARGET" --mode unary \
                --concurrency "$CONCURRENCY" --count $((COUNT / 5)) --duration 600 \
                --payload-bytes "$PAYLOAD"
            ;;
        *) echo "run_cpu.sh: unknown shape $shape" >&2 && exit 2 ;;
        esac
        stop_all
    done
}

for round in $(seq "$rounds"); do
    echo "round $round: $(uptime)"
    if [[ ${#builds[@]} -eq 1 ]]; then
        run A "${builds[0]}"
    elif ((round % 2)); then
        run A "${builds[0]}" && run B "${builds[1]}"
    else
        run B "${builds[1]}" && run A "${builds[0]}"
    fi
done

python3 - "$SCRATCH/results" <<'EOF'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    f = dict(kv.split("=", 1) for kv in line.split()[1:])
    rows.setdefault((f["shape"], f["label"]), []).append(f)
def med(rs, k):
    return statistics.median(float(r[k]) for r in rs)
print("median per shape and build (us of CPU per stored event; rate indicative):")
print(f"{'shape':10} {'build':5} {'events/s':>9} {'service':>8} {'redis':>7} {'gen':>7} {'total':>7}")
for (shape, label), rs in sorted(rows.items()):
    s, r, g = med(rs, "service_us"), med(rs, "redis_us"), med(rs, "gen_us")
    print(f"{shape:10} {label:5} {med(rs, 'rate'):9,.0f} {s:8.2f} {r:7.2f} {g:7.2f} {s + r + g:7.2f}")
for shape in sorted({s for s, _ in rows}):
    a, b = rows.get((shape, "A")), rows.get((shape, "B"))
    if a and b:
        sa, sb = med(a, "service_us"), med(b, "service_us")
        change = f"({100 * (sb / sa - 1):+.1f} %)" if sa > 0 else ""
        print(f"SUMMARY {shape}: service {sa:.2f} -> {sb:.2f} us {change}, redis "
              f"{med(a, 'redis_us'):.2f} -> {med(b, 'redis_us'):.2f}, gen {med(a, 'gen_us'):.2f} -> "
              f"{med(b, 'gen_us'):.2f}, rate {med(a, 'rate'):,.0f} -> {med(b, 'rate'):,.0f}")
EOF
exit "$FAILED"
