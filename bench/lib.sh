# bench/lib.sh - helpers shared by the benchmark scripts (sourced, not run):
# process cleanup, free ports, waiting for a port, /proc figures, redis-cli.
# They use the caller's SCRATCH, SERVICE_PID, REDIS_PID and REDIS_PORT.
# shellcheck shell=bash

stop_service() {
    if [[ -n $SERVICE_PID ]]; then
        kill -TERM "$SERVICE_PID" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$SERVICE_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SERVICE_PID" 2>/dev/null || true
        wait "$SERVICE_PID" 2>/dev/null || true
        SERVICE_PID=
    fi
}

cleanup() {
    stop_service
    if [[ -n $REDIS_PID ]]; then
        kill -TERM "$REDIS_PID" 2>/dev/null || true
        wait "$REDIS_PID" 2>/dev/null || true
    fi
    rm -rf "$SCRATCH"
}

# A run's start: a new SCRATCH folder, no service or Redis yet, cleanup at
# exit, FAILED=0.
bench_start() {
    SCRATCH=$(mktemp -d)
    SERVICE_PID=
    REDIS_PID=
    REDIS_PORT=
    trap cleanup EXIT
    # shellcheck disable=SC2034 # read by the caller
    FAILED=0
}

# A fresh Redis on a free port (REDIS_PORT, REDIS_PID), AOF with fsync every
# second in $SCRATCH/redis, no RDB; returns once it accepts connections.
start_redis_aof() {
    REDIS_PORT=$(free_port)
    rm -rf "$SCRATCH/redis" && mkdir -p "$SCRATCH/redis"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly yes \
        --appendfsync everysec --dir "$SCRATCH/redis" >/dev/null 2>&1 &
    REDIS_PID=$!
    wait_port "$REDIS_PORT"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until something accepts TCP connections on 127.0.0.1:$1, for up to
# $2 tenths of a second (default 100: 10 s).
wait_port() {
    for _ in $(seq "${2:-100}"); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# Resident memory of a process, in kB.
rss_kb() {
    awk '/^VmRSS:/ {print $2}' "/proc/$1/status"
}

# CPU time of a process (its threads and reaped children), in clock ticks.
cpu_ticks() {
    awk '{print $14 + $15 + $16 + $17}' "/proc/$1/stat"
}

rcli() {
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"
}
