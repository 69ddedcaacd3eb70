#!/usr/bin/env bash
# bench/run_instr.sh - the service's instructions per published event, from
# valgrind's callgrind (user space, deterministic: the figure a noisy shared
# machine cannot move, unlike times and rates). For each build and shape:
# a fresh redis-server (AOF on, appendfsync everysec) and the service under
# callgrind, then the load generator publishes COUNT events; the same with
# BASE events measures start-up and shutdown, which are subtracted:
#
#   per event = (Ir(COUNT) - Ir(BASE)) / (COUNT - BASE)
#
#   bench/run_instr.sh BUILD [BUILD2]
#
# Shapes (SHAPES ["batch batch-ids stream unary"]), generators from the last
# build given (bench_publish):
#
#   batch       PublishBatchStream, BATCH [100] events per message
#   batch-ids   the same with a client id on every event
#   stream      PublishStream, one event per message
#   unary       Publish, CONCURRENCY [32] calls in flight
#   drain       bench_subscribe --mode drain: the events published over
#               PublishStream, then one subscriber (max_in_flight 1000,
#               batched delivery up to 1000 per message, explicit acks)
#               drains them; minus `stream`, the delivery path's share
#
# Redis (REDIS ["single"]; "single cluster" measures both, each build on
# each): single = one redis-server; cluster = 3 masters with REPLICAS [1]
# replica each (bench/cluster_lib.sh), the service on redis+cluster://.
# With a cluster in REDIS the events take TYPES [6] event types in turn,
# which fall in equal parts of the slot space (bench_types.h), in every
# set-up of the run; TYPES= for bench_publish's one type. SERVICE_ARGS
# [""] go to the service (e.g. --redis-min-replicas=0).
#
# Knobs: COUNT [20000], BASE [100], PAYLOAD [300]; KEEP_PROFILES=DIR keeps
# each callgrind profile there (callgrind_annotate reads them). Prints one line per run
# and, per shape (and Redis), the instructions per event of each build (and
# the change of BUILD2; with both Redis set-ups, cluster against single per
# build). Needs valgrind. Exits non-zero when any run had errors.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
builds=("${1:?usage: run_instr.sh BUILD [BUILD2]}")
[[ $# -ge 2 ]] && builds+=("$2")
COUNT=${COUNT:-20000}
BASE=${BASE:-100}
BATCH=${BATCH:-100}
PAYLOAD=${PAYLOAD:-300}
CONCURRENCY=${CONCURRENCY:-32}
SHAPES=${SHAPES:-batch batch-ids stream unary drain}
REDIS=${REDIS:-single}
[[ $REDIS == *cluster* ]] && TYPES=${TYPES-6}
TYPES=${TYPES:-}
SERVICE_ARGS=${SERVICE_ARGS:-}
bench=${builds[-1]}/bench
# shellcheck source=lib.sh
source "$here/lib.sh"
# shellcheck source=cluster_lib.sh
source "$here/cluster_lib.sh"
bench_start
trap 'stop_nodes; cleanup' EXIT

# One run: $1 build, $2 shape, $3 events, $4 Redis set-up; prints the
# service's total Ir.
instructions() {
    local build=$1 shape=$2 n=$3 redis=$4 port out
    case $redis in
    single) start_single ;;
    cluster) start_cluster ;;
    *) echo "run_instr.sh: unknown Redis set-up $redis" >&2 && exit 2 ;;
    esac
    port=$(free_port)
    out=$SCRATCH/callgrind.out
    rm -f "$out"
    # shellcheck disable=SC2086 # SERVICE_ARGS: several arguments
    TRACSEQ_EVENTS_CONFIG='' valgrind --tool=callgrind --callgrind-out-file="$out" \
        "$build/tracseq-events" --listen="127.0.0.1:$port" \
        --redis-url="$REDIS_URL" --log-level=warn $SERVICE_ARGS 2>"$SCRATCH/svc.log" &
    SERVICE_PID=$!
    wait_port "$port" 600 # the service under callgrind starts slowly: up to a minute
    sleep 1
    local args=(--target "127.0.0.1:$port" --count "$n" --payload-bytes "$PAYLOAD")
    [[ -n $TYPES ]] && args+=(--types "$TYPES")
    local gen=$bench/bench_publish
    [[ $shape == drain ]] || args+=(--duration 600)
    case $shape in
    batch) args+=(--mode stream --streams 4 --window 1024 --batch "$BATCH") ;;
    batch-ids) args+=(--mode stream --streams 4 --window 1024 --batch "$BATCH" --ids) ;;
    stream) args+=(--mode stream --streams 4 --window 1024) ;;
    unary) args+=(--mode unary --concurrency "$CONCURRENCY") ;;
    drain)
        gen=$bench/bench_subscribe
        args+=(--mode drain --max-in-flight 1000 --per-message 1000)
        ;;
    *) echo "run_instr.sh: unknown shape $shape" >&2 && exit 2 ;;
    esac
    "$gen" "${args[@]}" >"$SCRATCH/out" 2>"$SCRATCH/err" || true
    grep -q ' errors=0 ' "$SCRATCH/out" || {
        echo "run_instr.sh: $shape/$build had errors: $(grep RESULT "$SCRATCH/out") $(tail -2 "$SCRATCH/err")" >&2
        FAILED=1
    }
    stop_profiled "$SERVICE_PID"
    SERVICE_PID=
    stop_nodes
    profile_total "$out" "$shape.$redis" "$n" "$build"
}

for shape in $SHAPES; do
    for redis in $REDIS; do
        for i in "${!builds[@]}"; do
            build=${builds[$i]}
            full=$(instructions "$build" "$shape" "$COUNT" "$redis")
            base=$(instructions "$build" "$shape" "$BASE" "$redis")
            instr_line "$shape" "$build" "$i" "$full" "$base" "$COUNT" "$BASE" "$redis"
        done
    done
done

instr_summary
exit "$FAILED"
