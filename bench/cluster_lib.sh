# bench/cluster_lib.sh - Redis processes for the cluster benchmarks (sourced
# by run_cluster.sh and run_instr.sh, not run): a single redis-server or a
# Redis Cluster of 3 masters with REPLICAS [1] replica each, every process
# on loopback and a free port, AOF on with appendfsync everysec, no RDB and
# no automatic AOF rewrite, in its own folder under $SCRATCH.
#
# They set NODE_PIDS and NODE_PORTS (every Redis process), MASTER_PIDS,
# MASTER_PORTS and REPLICA_PIDS (roles read back from the nodes, not
# assumed) and REDIS_URL; stop_nodes stops them all. Needs lib.sh's
# free_port and wait_port, redis-server, redis-cli and python3.
# shellcheck shell=bash

REPLICAS=${REPLICAS:-1}
NODE_PIDS=()
NODE_PORTS=()
MASTER_PIDS=()
MASTER_PORTS=()
REPLICA_PIDS=()

cluster_die() {
    echo "${0##*/}: $*" >&2
    exit 2
}

ncli() { # ncli PORT redis-cli-args...
    local port=$1
    shift
    redis-cli -h 127.0.0.1 -p "$port" "$@"
}

# A free port for a cluster node: its bus port (+10000) must exist and be
# free too.
free_cluster_port() {
    python3 -c '
import random, socket
while True:
    p = random.randint(20000, 55535)
    try:
        for q in (p, p + 10000):
            s = socket.socket(); s.bind(("127.0.0.1", q)); s.close()
        print(p); break
    except OSError:
        pass'
}

# Starts one redis-server in its own directory; cluster mode when $2 is set.
start_node() { # start_node NAME [cluster]
    local port dir
    if [[ -n ${2:-} ]]; then port=$(free_cluster_port); else port=$(free_port); fi
    dir=$SCRATCH/redis-$1
    rm -rf "$dir" && mkdir -p "$dir"
    redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save '' --appendonly yes \
        --appendfsync everysec --auto-aof-rewrite-percentage 0 --logfile "$dir/log" \
        ${2:+--cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 5000} &
    NODE_PIDS+=("$!")
    NODE_PORTS+=("$port")
    wait_port "$port" || cluster_die "redis-server $1 did not start: $(tail -3 "$dir/log")"
}

# True when `ncli PORT $2...` prints a line matching $1.
node_says() { # node_says PORT REGEX cmd...
    local port=$1 re=$2
    shift 2
    ncli "$port" "$@" 2>/dev/null | tr -d '\r' | grep -Eq "$re"
}

start_single() {
    start_node single
    MASTER_PIDS=("${NODE_PIDS[0]}")
    MASTER_PORTS=("${NODE_PORTS[0]}")
    # shellcheck disable=SC2034 # read by the caller
    REDIS_URL=redis://127.0.0.1:${NODE_PORTS[0]}
}

# 3 masters (+ a replica each): redis-cli --cluster create, then wait until
# every node says cluster_state:ok and knows every other, and every replica
# is in sync.
start_cluster() {
    local n=$((3 * (1 + REPLICAS))) i port addrs=() ok
    for i in $(seq "$n"); do
        start_node "node$i" cluster
    done
    for port in "${NODE_PORTS[@]}"; do
        addrs+=("127.0.0.1:$port")
    done
    redis-cli --cluster create "${addrs[@]}" --cluster-replicas "$REPLICAS" --cluster-yes \
        >"$SCRATCH/cluster-create.log" 2>&1 || cluster_die "cluster create: $(tail -5 "$SCRATCH/cluster-create.log")"
    for _ in $(seq 300); do
        ok=1
        for port in "${NODE_PORTS[@]}"; do
            if ! node_says "$port" '^cluster_state:ok' cluster info ||
                ! node_says "$port" "^cluster_known_nodes:$n\$" cluster info; then
                ok=0
            elif node_says "$port" '^role:slave' info replication &&
                ! node_says "$port" '^master_link_status:up' info replication; then
                ok=0
            fi
        done
        ((ok)) && break
        sleep 0.1
    done
    ((ok)) || cluster_die "the cluster did not settle in 30 s"
    for i in "${!NODE_PORTS[@]}"; do
        if node_says "${NODE_PORTS[$i]}" '^role:master' info replication; then
            MASTER_PIDS+=("${NODE_PIDS[$i]}")
            MASTER_PORTS+=("${NODE_PORTS[$i]}")
        else
            REPLICA_PIDS+=("${NODE_PIDS[$i]}")
        fi
    done
    ((${#MASTER_PIDS[@]} == 3)) || cluster_die "expected 3 masters, found ${#MASTER_PIDS[@]}"
    # shellcheck disable=SC2034 # read by the caller
    REDIS_URL=redis+cluster://$(IFS=,; echo "${addrs[*]}") # seeds: every node
}

stop_nodes() {
    local pid
    for pid in "${NODE_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${NODE_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    NODE_PIDS=() NODE_PORTS=() MASTER_PIDS=() REPLICA_PIDS=() MASTER_PORTS=()
}
