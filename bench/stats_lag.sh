#!/usr/bin/env bash
# bench/stats_lag.sh - how GetStats's cost follows the amount of data when
# Redis cannot report the subscriptions' lag (docs/benchmarks.md, "GetStats
# and lag").
#
#   ./bench/stats_lag.sh [BUILD_DIR]       (default build; needs tracseq-events, eventctl)
#   SERVICE=/path/to/tracseq-events ./bench/stats_lag.sh build   (another binary, e.g. an older one)
#
# For each total in SIZES (default "10000 100000") it starts its own
# redis-server (loopback, free port, no persistence) and the service, writes
# STREAMS streams of SIZE/STREAMS entries one millisecond apart, creates SUBS
# subscriptions over all of them starting at the middle of the streams' time
# (so every group starts mid-stream: Redis has no lag for it) and deletes one
# entry near the end of each stream (a tombstone ahead of every group: Redis
# never reports their lag). Then it runs `eventctl stats` CALLS times and
# prints per call (PAUSE seconds apart): the wall time (eventctl's own start included), the
# XRANGE/XREVRANGE calls Redis ran and the microseconds Redis spent in
# scripts (INFO commandstats). Prints numbers; asserts nothing.
set -euo pipefail

BUILD=${1:-build}
SIZES=${SIZES:-"10000 100000"}
STREAMS=${STREAMS:-10}
SUBS=${SUBS:-10}
CALLS=${CALLS:-10}
PAUSE=${PAUSE:-0.3} # seconds between calls
SERVICE=${SERVICE:-$BUILD/tracseq-events}
EVENTCTL=${EVENTCTL:-$BUILD/src/cli/eventctl}

die() {
    echo "stats_lag.sh: $*" >&2
    exit 1
}
[[ -x $SERVICE && -x $EVENTCTL ]] || die "no $SERVICE or $EVENTCTL (build first)"

SCRATCH=$(mktemp -d /tmp/tse-statslag.XXXXXX)
REDIS_PID=
SERVICE_PID=
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
trap cleanup EXIT
trap 'exit 130' INT TERM

stat_of() { # stat_of CMD FIELD: a cmdstat field, 0 when the command never ran
    rcli info commandstats | tr -d '\r' | sed -n "s/^cmdstat_$1:/,/p" |
        sed -n "s/.*,$2=\\([0-9]*\\).*/\\1/p" | grep . || echo 0
}

run_size() {
    local size=$1 per=$(($1 / STREAMS)) base mid_ms t0 t1 reads0 usec0 sum=0 max=0 i s
    REDIS_PORT=$(free_port)
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$SCRATCH" --save '' \
        --appendonly no --logfile "$SCRATCH/redis.log" &
    REDIS_PID=$!
    wait_port "$REDIS_PORT" || die "redis-server did not start"
    base=$(($(date +%s%3N) - 2 * per - 60000))
    for ((s = 0; s < STREAMS; s++)); do
        awk -v k="tracseq:events:{bench.t$s}:p3" -v b="$base" -v n="$per" \
            'BEGIN { for (i = 0; i < n; i++) printf "XADD %s %.0f-0 f v\n", k, b + i }' |
            rcli --pipe >/dev/null
        rcli sadd tracseq:streams "tracseq:events:{bench.t$s}:p3" >/dev/null
    done
    SERVICE_PORT=$(free_port)
    "$SERVICE" --listen "127.0.0.1:$SERVICE_PORT" --redis-url "redis://127.0.0.1:$REDIS_PORT" \
        --log-level warn --retention-age 0 >>"$SCRATCH/service.log" 2>&1 &
    SERVICE_PID=$!
    wait_port "$SERVICE_PORT" || die "the service did not start: $(tail -5 "$SCRATCH/service.log")"
    mid_ms=$((base + per / 2))
    for ((i = 0; i < SUBS; i++)); do
        "$EVENTCTL" --server "127.0.0.1:$SERVICE_PORT" subscriptions create "bench$i" \
            --types 'bench.*' --from "$(date -u -d "@$((mid_ms / 1000))" +%FT%T).$(printf %03d $((mid_ms % 1000)))Z" \
            >/dev/null
    done
    for ((s = 0; s < STREAMS; s++)); do
        rcli xdel "tracseq:events:{bench.t$s}:p3" "$((base + per - 10))-0" >/dev/null
    done
    echo "== $size entries ($STREAMS streams x $per), $SUBS subscriptions x $STREAMS streams = $((SUBS * STREAMS)) groups, a deleted entry ahead of each"
    for ((i = 1; i <= CALLS; i++)); do
        reads0=$(($(stat_of xrange calls) + $(stat_of xrevrange calls)))
        usec0=$(stat_of eval usec)
        t0=$(date +%s%N)
        "$EVENTCTL" --server "127.0.0.1:$SERVICE_PORT" stats --json >/dev/null ||
            echo "   (eventctl stats failed)"
        t1=$(date +%s%N)
        printf '   call %2d: %8.1f ms, Redis ran %5d XRANGE/XREVRANGE, %8d us in scripts\n' "$i" \
            "$(echo "($t1 - $t0) / 1000000" | bc -l)" \
            $(($(stat_of xrange calls) + $(stat_of xrevrange calls) - reads0)) \
            $(($(stat_of eval usec) - usec0))
        sleep "$PAUSE"
        sum=$((sum + t1 - t0))
        ((t1 - t0 > max)) && max=$((t1 - t0))
    done
    printf '   mean %.1f ms, max %.1f ms; lag of bench0: %s\n' "$(echo "$sum / $CALLS / 1000000" | bc -l)" \
        "$(echo "$max / 1000000" | bc -l)" \
        "$("$EVENTCTL" --server "127.0.0.1:$SERVICE_PORT" subscriptions get bench0 --json |
            python3 -c 'import json,sys; print(json.load(sys.stdin)["stats"]["lag"])')"
    stop_service
    kill -TERM "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
    REDIS_PID=
}

echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) $SERVICE; load $(cut -d' ' -f1-3 /proc/loadavg)"
for size in $SIZES; do
    run_size "$size"
done
