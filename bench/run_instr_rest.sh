#!/usr/bin/env bash
# bench/run_instr_rest.sh - the REST bridge's instructions per published
# event, from valgrind's callgrind (user space, every thread of the bridge;
# deterministic, unlike times and rates on a shared machine). For each build
# and shape: a fresh redis-server (AOF on, appendfsync everysec), the service
# (not measured) and the bridge under callgrind, then one curl sends REQUESTS
# requests on one keep-alive connection; the same with BASE requests
# measures start-up and shutdown, which are subtracted:
#
#   per event = (Ir(REQUESTS) - Ir(BASE)) / ((REQUESTS - BASE) * events per request)
#
#   bench/run_instr_rest.sh BUILD [BUILD2]
#
# Shapes (SHAPES ["batch single"]): batch = POST /api/v1/events/batch with
# BATCH [100] of bench_rest.sh's ~300-byte events per body; single = POST
# /api/v1/events/publish with one. Knobs: REQUESTS [batch 40, single 2000],
# BASE [batch 2, single 50]; KEEP_PROFILES=DIR keeps each profile there.
# PROFILE [bridge]: which process runs under callgrind, bridge or service
# (the event service behind the bridge; then the bridge runs unprofiled).
# Exits non-zero when any answer was not 200.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
builds=("${1:?usage: run_instr_rest.sh BUILD [BUILD2]}")
[[ $# -ge 2 ]] && builds+=("$2")
BATCH=${BATCH:-100}
SHAPES=${SHAPES:-batch single}
# shellcheck source=lib.sh
source "$here/lib.sh"
bench_start
BRIDGE_PID=
stop_all() {
    if [[ -n $BRIDGE_PID ]]; then
        stop_profiled "$BRIDGE_PID"
        BRIDGE_PID=
    fi
    cleanup
}
trap stop_all EXIT

BODY='{"event_type":"sample.created","source_service":"bench-client-service","priority":3,"payload":{"sample_id":"123e4567-e89b-42d3-a456-426614174000","barcode":"SAM-20240618-001","sample_type":"DNA","submitter_id":"223e4567-e89b-42d3-a456-426614174001","lab_id":"323e4567-e89b-42d3-a456-426614174002"}}'
printf '%s' "$BODY" >"$SCRATCH/single.json"
{
    printf '{"events":['
    for ((i = 0; i < BATCH; i++)); do
        ((i > 0)) && printf ','
        printf '%s' "$BODY"
    done
    printf ']}'
} >"$SCRATCH/batch.json"

# One run: $1 build, $2 shape, $3 requests; prints the bridge's total Ir.
instructions() {
    local build=$1 shape=$2 n=$3 gport hport out path svc_run=() bridge_run=()
    out=$SCRATCH/callgrind.out
    rm -f "$out"
    if [[ ${PROFILE:-bridge} == service ]]; then
        svc_run=(valgrind --tool=callgrind --callgrind-out-file="$out")
    else
        bridge_run=(valgrind --tool=callgrind --callgrind-out-file="$out")
    fi
    start_redis_aof
    gport=$(free_port)
    TRACSEQ_EVENTS_CONFIG='' "${svc_run[@]}" "$build/tracseq-events" --listen="127.0.0.1:$gport" \
        --redis-url="redis://127.0.0.1:$REDIS_PORT" --log-level=warn 2>"$SCRATCH/svc.log" &
    SERVICE_PID=$!
    wait_port "$gport" 600
    hport=$(free_port)
    TRACSEQ_BRIDGE_CONFIG='' LOG_LEVEL=warn "${bridge_run[@]}" \
        "$build/rest-bridge/tracseq-rest-bridge" --host=127.0.0.1 --port="$hport" \
        --event-service-addr="127.0.0.1:$gport" >"$SCRATCH/bridge.log" 2>&1 &
    BRIDGE_PID=$!
    wait_port "$hport" 600 # the bridge under callgrind starts slowly: up to a minute
    sleep 1
    path=batch
    [[ $shape == single ]] && path=publish
    # One curl, one keep-alive connection, n requests in sequence.
    for ((i = 0; i < n; i++)); do
        printf 'url = "http://127.0.0.1:%s/api/v1/events/%s"\noutput = "/dev/null"\n' "$hport" "$path"
    done >"$SCRATCH/curl.cfg"
    curl -s -K "$SCRATCH/curl.cfg" -H 'Content-Type: application/json' \
        --data-binary "@$SCRATCH/$shape.json" -w '%{http_code}\n' >"$SCRATCH/codes" || true
    if [[ $(grep -c '^200$' "$SCRATCH/codes") != "$n" ]]; then
        echo "run_instr_rest.sh: $shape/$build: $(sort "$SCRATCH/codes" | uniq -c | tr '\n' ' ')" >&2
        FAILED=1
    fi
    stop_profiled "$BRIDGE_PID"
    BRIDGE_PID=
    if [[ ${PROFILE:-bridge} == service ]]; then
        stop_profiled "$SERVICE_PID" # callgrind writes its profile as the service exits
        SERVICE_PID=
    fi
    stop_service
    stop_redis
    profile_total "$out" "$shape" "$n" "$build"
}

for shape in $SHAPES; do
    if [[ $shape == batch ]]; then
        per=$BATCH full_n=${REQUESTS:-40} base_n=${BASE:-2}
    else
        per=1 full_n=${REQUESTS:-2000} base_n=${BASE:-50}
    fi
    for i in "${!builds[@]}"; do
        build=${builds[$i]}
        full=$(instructions "$build" "$shape" "$full_n")
        base=$(instructions "$build" "$shape" "$base_n")
        instr_line "$shape" "$build" "$i" "$full" "$base" "$((full_n * per))" "$((base_n * per))"
    done
done

instr_summary
exit "$FAILED"
