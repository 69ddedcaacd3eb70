#!/usr/bin/env bash
# bench/run_cluster.sh - what a Redis Cluster and a second service instance
# cost (issue 13, "Performance"): publish and subscribe through four set-ups
# in one run, alternated, with the CPU each process spends per event.
#
#   bench/run_cluster.sh [BUILD] [ROUNDS]         defaults: build, 3
#
# Set-ups (SETUPS, default "1r-1s cl-1s 1r-2s cl-2s"; a round runs them in
# that order, the next round backwards, so none always goes first):
#
#   1r-1s   one redis-server, one service
#   cl-1s   a Redis Cluster of 3 masters (REPLICAS [1] replica each: the
#           realistic set-up; 0 for masters only), one service
#   1r-2s   one redis-server, two service instances
#   cl-2s   the cluster, two service instances
#
# Every Redis process: loopback, a free port, AOF on with appendfsync
# everysec, no RDB (as run_cpu.sh), and no automatic AOF rewrite: a single
# Redis holds three times the data of one master and would be charged
# rewrites the masters skip. Between shapes the bench streams are deleted and
# every node's AOF rewritten, unmeasured, so each shape starts alike.
#
# Shapes (SHAPES, default "batch stream sdk drain"); the events take TYPES
# [6] event types in turn, named so that they fall in equal parts of the
# slot space (bench_types.h): every master gets its share.
#
#   batch   PublishBatchStream, BATCH [100] events per message
#           (bench_publish --batch)
#   stream  PublishStream, one event per message
#   sdk     the SDK's pipelined publisher (bench_sdk_publish --server-ids),
#           SDK_SECONDS [4] seconds
#   drain   bench_subscribe --mode drain: a backlog of DRAIN_COUNT [200000]
#           events published through the first instance, then SUBSCRIBERS
#           [2] Subscribe streams sharing the subscription drain it (with two
#           instances, one stream on each)
#
# The publish shapes run two generator processes at once, COUNT [300000]
# events in all (2 streams or publishers each): with two instances each
# talks to its own, with one both talk to it, so the load is the same in
# every set-up. PAYLOAD [300] bytes per event.
#
# Per run one line: events stored (drain: delivered), the rate (summed over
# the generators; indicative on a shared machine), and the CPU time per event
# (utime + stime from /proc/PID/stat, with reaped children) of the service
# instances together, the Redis masters together (a single Redis is its own
# master), the replicas together, and the generators; the services' read
# and write system calls, context switches and kernel CPU per event
# (publish shapes);
# plus the load average. Publish shapes: over the generators' whole run, divided by the
# events they stored. Drain: over the drain alone (bench_subscribe --pid
# --redis-pid), divided by the events delivered; its Redis column is masters
# and replicas together. At the end, the medians per set-up and shape and the
# target of the issue: the service's CPU per published event in cluster mode
# within 15 % of single-Redis mode.
#
# Exits non-zero when any run had errors: a run with errors is not a result.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$here/.." && pwd)
BUILD=${1:-build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
ROUNDS=${2:-3}
SETUPS=${SETUPS:-1r-1s cl-1s 1r-2s cl-2s}
SHAPES=${SHAPES:-batch stream sdk drain}
REPLICAS=${REPLICAS:-1}
TYPES=${TYPES:-6}
COUNT=${COUNT:-300000}
DRAIN_COUNT=${DRAIN_COUNT:-200000}
SUBSCRIBERS=${SUBSCRIBERS:-2}
SDK_SECONDS=${SDK_SECONDS:-4}
BATCH=${BATCH:-100}
PAYLOAD=${PAYLOAD:-300}
SERVICE_ARGS=${SERVICE_ARGS:-}
SERVICE=$BUILD/tracseq-events
BENCH=$BUILD/bench
HZ=$(getconf CLK_TCK)

die() {
    echo "run_cluster.sh: $*" >&2
    exit 2
}

for tool in redis-server redis-cli python3; do
    command -v "$tool" >/dev/null || die "$tool not found (make deps installs it)"
done
for bin in "$SERVICE" "$BENCH/bench_publish" "$BENCH/bench_sdk_publish" "$BENCH/bench_subscribe"; do
    [[ -x $bin ]] || die "$bin missing: build it first (cmake --build $BUILD)"
done
[[ $REPLICAS =~ ^[01]$ ]] || die "REPLICAS is 0 or 1"

# shellcheck source=bench/lib.sh
source "$here/lib.sh"
# shellcheck source=bench/cluster_lib.sh
source "$here/cluster_lib.sh"
SCRATCH=$(mktemp -d /tmp/tse-cbench.XXXXXX)
SERVICE_PID= # lib.sh's stop_service stops this one
SERVICE_PIDS=()
TARGETS=()
FAILED=0
RESULTS=$SCRATCH/results
: >"$RESULTS"
TIMEFORMAT='%U %S'

stop_services() {
    local pid
    for pid in "${SERVICE_PIDS[@]}"; do
        SERVICE_PID=$pid
        stop_service
    done
    SERVICE_PIDS=()
    TARGETS=()
}

stop_all() {
    stop_services
    stop_nodes
}

on_exit() {
    stop_all
    rm -rf "$SCRATCH"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

start_services() { # start_services COUNT
    local i port log
    for i in $(seq "$1"); do
        port=$(free_port)
        log=$SCRATCH/service-$i.log
        # shellcheck disable=SC2086
        TRACSEQ_EVENTS_CONFIG='' "$SERVICE" --listen="127.0.0.1:$port" --redis-url="$REDIS_URL" \
            --log-level=warn $SERVICE_ARGS 2>"$log" &
        SERVICE_PIDS+=("$!")
        TARGETS+=("127.0.0.1:$port")
        wait_port "$port" || die "service $i did not start: $(tail -5 "$log")"
    done
    sleep 0.5 # let them connect to Redis
}

start_setup() { # start_setup SETUP
    case $1 in
    1r-*) start_single ;;
    cl-*) start_cluster ;;
    *) die "unknown set-up $1" ;;
    esac
    case $1 in
    *-1s) start_services 1 ;;
    *-2s) start_services 2 ;;
    *) die "unknown set-up $1" ;;
    esac
    SERVICE_PIDS_CSV=$(IFS=,; echo "${SERVICE_PIDS[*]}")
}

# Deletes the bench streams (one key per command: in a cluster they sit on
# different slots) and rewrites every node's AOF, then waits for the
# rewrites; replicas follow their master's deletes.
reset_redis() {
    local port key
    for port in "${MASTER_PORTS[@]}"; do
        ncli "$port" --scan --pattern 'tracseq:events:{bench.*' | while read -r key; do
            ncli "$port" unlink "$key" >/dev/null
        done
    done
    sleep 0.2
    for port in "${NODE_PORTS[@]}"; do
        ncli "$port" bgrewriteaof >/dev/null 2>&1 || true
    done
    for port in "${NODE_PORTS[@]}"; do
        for _ in $(seq 200); do
            node_says "$port" '^aof_rewrite_in_progress:0' info persistence &&
                node_says "$port" '^aof_rewrite_scheduled:0' info persistence && break
            sleep 0.1
        done
    done
}

sum_ticks() { # sum_ticks PID...
    local pid sum=0
    for pid in "$@"; do
        sum=$((sum + $(cpu_ticks "$pid")))
    done
    echo "$sum"
}

# The services' read and write system calls (/proc/PID/io syscr + syscw:
# hiredis's and the writer's read and write on the Redis sockets; gRPC's
# recvmsg and sendmsg are not counted there) and context switches
# (voluntary and not, summed over their threads), and their kernel CPU
# ticks (stime, with reaped children), as "SYSCALLS SWITCHES KERNEL_TICKS".
sum_io() { # sum_io PID...
    local pid sys=0 cs=0 kernel=0
    for pid in "$@"; do
        kernel=$((kernel + $(awk '{print $15 + $17}' "/proc/$pid/stat")))
        sys=$((sys + $(awk '/^sysc[rw]:/ {n += $2} END {print n + 0}' "/proc/$pid/io")))
        cs=$((cs + $(cat /proc/"$pid"/task/*/status 2>/dev/null |
            awk '/^(non)?voluntary_ctxt_switches:/ {n += $2} END {print n + 0}')))
    done
    echo "$sys $cs $kernel"
}

field() { # field NAME LINE
    sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"
}

# Records one line: set-up, shape, events, rate, then the CPU ticks of the
# services, masters, replicas and generator seconds, turned into µs/event.
record() { # record SETUP SHAPE EVENTS RATE SVC_TICKS MASTER_TICKS REPLICA_TICKS GEN_S [SYS CS KERNEL]
    awk -v su="$1" -v sh="$2" -v n="$3" -v rate="$4" -v s="$5" -v m="$6" -v r="$7" -v g="$8" \
        -v sys="${9:-0}" -v cs="${10:-0}" -v k="${11:-0}" \
        -v hz="$HZ" -v load="$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' /)" -v round="$ROUND" \
        'BEGIN { if (n <= 0) n = 1;
                 fmt = "CPU round=%d setup=%s shape=%s events=%d rate=%.0f service_us=%.2f ";
                 fmt = fmt "service_kernel_us=%.2f ";
                 fmt = fmt "masters_us=%.2f replicas_us=%.2f gen_us=%.2f sys_per_event=%.3f ";
                 fmt = fmt "cs_per_event=%.3f load=%s\n";
                 printf fmt, round, su, sh, n, rate, s * 1e6 / hz / n, k * 1e6 / hz / n,
                        m * 1e6 / hz / n,
                        r * 1e6 / hz / n, g * 1e6 / n, sys / n, cs / n, load }' | tee -a "$RESULTS"
}

# Two publish generators at once (argv: the command without --target); the
# i-th talks to instance i modulo the instances.
publish_shape() { # publish_shape SETUP SHAPE cmd...
    local setup=$1 shape=$2 s0 m0 r0 s1 m1 r1 i ok=0 rate=0 gen=0 line pids=() io0 io1
    shift 2
    reset_redis
    s0=$(sum_ticks "${SERVICE_PIDS[@]}")
    m0=$(sum_ticks "${MASTER_PIDS[@]}")
    r0=$(sum_ticks "${REPLICA_PIDS[@]}")
    read -r -a io0 <<<"$(sum_io "${SERVICE_PIDS[@]}")"
    for i in 0 1; do
        { time "$@" --target "${TARGETS[$((i % ${#TARGETS[@]}))]}" \
            >"$SCRATCH/out$i" 2>"$SCRATCH/err$i"; } 2>"$SCRATCH/time$i" &
        pids+=("$!")
    done
    wait "${pids[@]}" || true # failures show in their RESULT lines
    s1=$(sum_ticks "${SERVICE_PIDS[@]}")
    m1=$(sum_ticks "${MASTER_PIDS[@]}")
    r1=$(sum_ticks "${REPLICA_PIDS[@]}")
    read -r -a io1 <<<"$(sum_io "${SERVICE_PIDS[@]}")"
    for i in 0 1; do
        line=$(grep '^RESULT' "$SCRATCH/out$i" || true)
        if [[ -z $line ]] || ! grep -q ' errors=0 ' <<<"$line"; then
            echo "run_cluster.sh: $setup/$shape generator $i FAILED: ${line:-$(tail -3 "$SCRATCH/err$i")}" >&2
            FAILED=1
        fi
        ok=$((ok + $(field total_ok "$line" | grep . || echo 0)))
        rate=$(awk -v a="$rate" -v b="$(field rate "$line")" 'BEGIN { print a + b }')
        gen=$(awk -v a="$gen" '{ print a + $1 + $2 }' "$SCRATCH/time$i")
    done
    record "$setup" "$shape" "$ok" "$rate" $((s1 - s0)) $((m1 - m0)) $((r1 - r0)) "$gen" \
        $((io1[0] - io0[0])) $((io1[1] - io0[1])) $((io1[2] - io0[2]))
}

drain_shape() { # drain_shape SETUP
    local setup=$1 line redis_csv
    reset_redis
    redis_csv=$(IFS=,; echo "${NODE_PIDS[*]}")
    if ! line=$("$BENCH/bench_subscribe" --mode drain --target "${TARGETS[0]}" \
        --sub-target "$(IFS=,; echo "${TARGETS[*]}")" --subscribers "$SUBSCRIBERS" \
        --types "$TYPES" --count "$DRAIN_COUNT" --max-in-flight 1000 --payload-bytes "$PAYLOAD" \
        --pid "$SERVICE_PIDS_CSV" --redis-pid "$redis_csv" 2>"$SCRATCH/err-drain") ||
        ! grep -q ' errors=0 ' <<<"$line"; then
        echo "run_cluster.sh: $setup/drain FAILED: ${line:-} $(tail -3 "$SCRATCH/err-drain")" >&2
        FAILED=1
    fi
    # The drain's CPU figures come from bench_subscribe (the drain alone).
    awk -v su="$setup" -v line="$line" -v load="$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' /)" \
        -v round="$ROUND" 'BEGIN {
            n = split(line, kv, " ");
            for (i = 1; i <= n; i++) { split(kv[i], p, "="); f[p[1]] = p[2] }
            fmt = "CPU round=%d setup=%s shape=drain events=%d rate=%.0f service_us=%.2f ";
            fmt = fmt "masters_us=%.2f replicas_us=0 gen_us=0 load=%s\n";
            printf fmt, round, su, f["events"], f["rate"], f["deliver_cpu_us"],
                   f["deliver_redis_us"], load }' | tee -a "$RESULTS"
}

run_setup() { # run_setup SETUP
    local setup=$1 shape per=$((COUNT / 2))
    start_setup "$setup"
    echo "== round $ROUND $setup: ${#MASTER_PIDS[@]} master(s), ${#REPLICA_PIDS[@]} replica(s)," \
        "${#SERVICE_PIDS[@]} instance(s), $REDIS_URL; load $(cut -d' ' -f1-3 /proc/loadavg)"
    for shape in $SHAPES; do
        case $shape in
        batch | stream)
            publish_shape "$setup" "$shape" "$BENCH/bench_publish" --mode stream --streams 2 \
                --connections 2 --window 1024 --batch "$([[ $shape == batch ]] && echo "$BATCH" || echo 1)" \
                --count "$per" --duration 600 --types "$TYPES" --payload-bytes "$PAYLOAD"
            ;;
        sdk)
            publish_shape "$setup" sdk "$BENCH/bench_sdk_publish" --server-ids --publishers 2 \
                --duration "$SDK_SECONDS" --types "$TYPES" --payload-bytes "$PAYLOAD"
            ;;
        drain) drain_shape "$setup" ;;
        *) die "unknown shape $shape" ;;
        esac
    done
    stop_all
}

echo "== $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) load $(cut -d' ' -f1-3 /proc/loadavg); redis" \
    "$(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/'); types $TYPES, replicas $REPLICAS," \
    "count $COUNT, drain $DRAIN_COUNT, batch $BATCH, payload $PAYLOAD"
read -r -a setups <<<"$SETUPS"
for ROUND in $(seq "$ROUNDS"); do
    if ((ROUND % 2)); then
        order=("${setups[@]}")
    else
        order=()
        for ((i = ${#setups[@]} - 1; i >= 0; i--)); do
            order+=("${setups[$i]}")
        done
    fi
    for setup in "${order[@]}"; do
        run_setup "$setup"
    done
done
echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) load $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$RESULTS" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    f = dict(kv.split("=", 1) for kv in line.split()[1:])
    rows.setdefault((f["shape"], f["setup"]), []).append(f)
def med(rs, k):
    return statistics.median(float(r.get(k, 0)) for r in rs)
print("medians per shape and set-up (us of CPU per event; rate indicative; drain: redis = all nodes):")
print(f"{'shape':7} {'set-up':6} {'runs':>4} {'events/s':>9} {'service':>8} {'kernel':>6} {'masters':>8} "
      f"{'replicas':>8} {'gen':>6} {'sys/ev':>7} {'cs/ev':>6}")
for (shape, setup), rs in sorted(rows.items()):
    print(f"{shape:7} {setup:6} {len(rs):4} {med(rs, 'rate'):9,.0f} {med(rs, 'service_us'):8.2f} "
          f"{med(rs, 'service_kernel_us'):6.2f} "
          f"{med(rs, 'masters_us'):8.2f} {med(rs, 'replicas_us'):8.2f} {med(rs, 'gen_us'):6.2f} "
          f"{med(rs, 'sys_per_event'):7.3f} {med(rs, 'cs_per_event'):6.3f}")
for shape in sorted({s for s, _ in rows}):
    for n in ("1s", "2s"):
        a, b = rows.get((shape, "1r-" + n)), rows.get((shape, "cl-" + n))
        if not a or not b:
            continue
        sa, sb = med(a, "service_us"), med(b, "service_us")
        d = 100 * (sb / sa - 1) if sa > 0 else 0
        verdict = "" if shape == "drain" else (" within 15 %: " + ("met" if d <= 15 else "MISSED"))
        print(f"SUMMARY {shape} {n}: service {sa:.2f} -> {sb:.2f} us/event cluster vs single "
              f"({d:+.1f} %){verdict}; redis masters {med(a, 'masters_us'):.2f} -> "
              f"{med(b, 'masters_us'):.2f}, replicas {med(b, 'replicas_us'):.2f}; rate "
              f"{med(a, 'rate'):,.0f} -> {med(b, 'rate'):,.0f}")
EOF
exit "$FAILED"
