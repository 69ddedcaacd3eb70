#!/usr/bin/env bash
# bench/run_latency_ab.sh - publish -> delivery at a fixed offered rate, two
# builds alternated A B B A, with what each event cost: CPU time per event
# of the service, of Redis and of the load generator itself, and wake-ups
# (time slices) per event, beside p50/p99 measured from each event's due
# time. On two shared cores the latency is mostly waiting for a CPU, once per
# wake-up (docs/benchmarks.md), so these per-event figures say more than a
# p99 taken while others build.
#
#   bench/run_latency_ab.sh BUILD_A BUILD_B [ROUNDS]     (ROUNDS default 1)
#
# Each BUILD holds tracseq-events and bench/bench_subscribe; each run takes
# both from its build (the generator is part of what is compared). Per run:
# a fresh redis-server (AOF, appendfsync everysec, as run_subscribe.sh) and
# service (--log-level warn), then bench_subscribe --mode latency
# --publisher stream --rate RATE --duration DURATION (warm-up 1 s). Reads
# /proc/PID/task/*/schedstat of the service and of Redis around the run (CPU,
# run-queue wait, time slices), Redis's command counts, the generator's own
# CPU and sleeps (its RESULT line; a generator older than client_cpu_s is
# read from client_cpu_pct and the wall time), and the load average.
#
# Knobs: RATE [10000], DURATION [10], SERVICE_ARGS_A / SERVICE_ARGS_B []
# extra service flags (e.g. "--threads 1"), THREADS=1 also prints each
# service thread's CPU, wait and slices per event. Exits non-zero when a run
# had errors: a run with errors is not a result.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
usage="usage: run_latency_ab.sh BUILD_A BUILD_B [ROUNDS]"
build_a=$(cd "${1:?$usage}" && pwd)
build_b=$(cd "${2:?$usage}" && pwd)
rounds=${3:-1}
rate=${RATE:-10000}
duration=${DURATION:-10}
# shellcheck source=lib.sh
source "$here/lib.sh"
bench_start

# Sums of a process's threads' schedstat: CPU ns, run-queue wait ns, slices.
sched_sum() {
    cat /proc/"$1"/task/*/schedstat 2>/dev/null |
        awk '{c += $1; w += $2; s += $3} END {printf "%.0f %.0f %.0f\n", c, w, s}'
}

# One line per thread: name, CPU ns, wait ns, slices.
sched_threads() {
    local t
    for t in /proc/"$1"/task/*; do
        echo "$(tr ' ' _ <"$t/comm")-${t##*/} $(cat "$t/schedstat")"
    done | sort
}

field() { # field NAME LINE
    sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"
}

# One run: $1 label (A or B), $2 build, $3 extra service flags.
run() {
    local label=$1 build=$2 args=$3 port s0 s1 r0 r1 w0 w1 l0 l1 line n gen_s
    start_redis_aof
    port=$(free_port)
    # shellcheck disable=SC2086
    TRACSEQ_EVENTS_CONFIG='' "$build/tracseq-events" --listen "127.0.0.1:$port" \
        --redis-url "redis://127.0.0.1:$REDIS_PORT" --log-level warn $args \
        >>"$SCRATCH/service-$label.log" 2>&1 &
    SERVICE_PID=$!
    wait_port "$port" || { echo "run_latency_ab.sh: the $label service did not start" >&2; exit 2; }
    sleep 1
    read -r -a s0 <<<"$(sched_sum "$SERVICE_PID")"
    read -r -a r0 <<<"$(sched_sum "$REDIS_PID")"
    sched_threads "$SERVICE_PID" >"$SCRATCH/t0"
    l0=$(cut -d' ' -f1 /proc/loadavg)
    w0=$(date +%s.%N)
    line=$("$build/bench/bench_subscribe" --target "127.0.0.1:$port" --mode latency \
        --publisher stream --rate "$rate" --duration "$duration" --name "lat-ab-$label" \
        --event-type bench.sub_latency_ab 2>"$SCRATCH/bench.err") || FAILED=1
    w1=$(date +%s.%N)
    read -r -a s1 <<<"$(sched_sum "$SERVICE_PID")"
    read -r -a r1 <<<"$(sched_sum "$REDIS_PID")"
    sched_threads "$SERVICE_PID" >"$SCRATCH/t1"
    l1=$(cut -d' ' -f1 /proc/loadavg)
    n=$(field published "$line")
    if [[ -z $line || -z $n || $n == 0 || $(field errors "$line") != 0 ]]; then
        echo "run_latency_ab.sh: run $label had errors: $(tail -2 "$SCRATCH/bench.err")" >&2
        FAILED=1
        n=1
    fi
    gen_s=$(field client_cpu_s "$line")
    [[ -n $gen_s ]] || gen_s=$(echo "$(field client_cpu_pct "$line") * ($w1 - $w0) / 100" | bc -l)
    awk -v b="$label" -v n="$n" -v g="$gen_s" -v gs="$(field client_sleeps "$line")" \
        -v sc=$((s1[0] - s0[0])) -v sw=$((s1[1] - s0[1])) -v ss=$((s1[2] - s0[2])) \
        -v rc=$((r1[0] - r0[0])) -v rs=$((r1[2] - r0[2])) -v p50="$(field p50_us "$line")" \
        -v p99="$(field p99_us "$line")" -v lag="$(field launch_lag_p99_us "$line")" \
        -v pub="$(field publish_p99_us "$line")" -v l0="$l0" -v l1="$l1" \
        -v xr="$(rcli info commandstats | tr -d '\r' | sed -n 's/^cmdstat_xreadgroup:calls=\([0-9]*\).*/\1/p')" \
        'BEGIN { printf "LAT build=%s events=%d p50_us=%s p99_us=%s publish_p99_us=%s launch_lag_p99_us=%s gen_us=%.1f svc_us=%.1f redis_us=%.1f gen_sleeps=%s svc_slices=%.2f redis_slices=%.2f svc_wait_us=%.1f xreadgroup=%.2f load=%s-%s\n",
                 b, n, p50, p99, pub, lag, g * 1e6 / n, sc / 1e3 / n, rc / 1e3 / n,
                 gs == "" ? "-" : sprintf("%.2f", gs / n), ss / n, rs / n, sw / 1e3 / n, xr / n, l0, l1 }' |
        tee -a "$SCRATCH/results"
    if [[ -n ${THREADS:-} ]]; then
        join "$SCRATCH/t0" "$SCRATCH/t1" | awk -v n="$n" '($5 - $2) / n >= 100 {
            printf "   %-22s cpu %6.1f us  wait %6.1f us  slices %.2f per event\n", $1, ($5 - $2) / 1e3 / n, ($6 - $3) / 1e3 / n, ($7 - $4) / n }'
    fi
    stop_service
    stop_redis
}

echo "== $(nproc) cores; load before: $(cut -d' ' -f1-3 /proc/loadavg); A=$build_a ${SERVICE_ARGS_A:-}; B=$build_b ${SERVICE_ARGS_B:-}"
for ((i = 0; i < rounds; i++)); do
    run A "$build_a" "${SERVICE_ARGS_A:-}"
    run B "$build_b" "${SERVICE_ARGS_B:-}"
    run B "$build_b" "${SERVICE_ARGS_B:-}"
    run A "$build_a" "${SERVICE_ARGS_A:-}"
done
# Medians per build of the per-event figures.
awk '{ delete f; for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
       b = f["build"]; k[b]++
       split("p50_us p99_us gen_us svc_us redis_us gen_sleeps svc_slices redis_slices", names, " ")
       for (j in names) v[b, names[j], k[b]] = f[names[j]] }
     function median(b, name,   n, a, i, j, t) {
       n = k[b]; for (i = 1; i <= n; i++) a[i] = v[b, name, i] + 0
       for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
       return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
     END { for (b in k) printf "SUMMARY build=%s runs=%d median p50_us=%.0f p99_us=%.0f gen_us=%.1f svc_us=%.1f redis_us=%.1f gen_sleeps=%s svc_slices=%.2f redis_slices=%.2f\n",
             b, k[b], median(b, "p50_us"), median(b, "p99_us"), median(b, "gen_us"), median(b, "svc_us"),
             median(b, "redis_us"), v[b, "gen_sleeps", 1] == "-" ? "-" : sprintf("%.2f", median(b, "gen_sleeps")),
             median(b, "svc_slices"), median(b, "redis_slices") }' \
    "$SCRATCH/results" | sort
echo "== load after: $(cut -d' ' -f1-3 /proc/loadavg)"
exit "$FAILED"
