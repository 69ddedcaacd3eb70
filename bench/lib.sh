# bench/lib.sh - helpers shared by the benchmark scripts (sourced, not run):
# process cleanup, free ports, waiting for a port, /proc figures, redis-cli,
# callgrind totals and their INSTR/SUMMARY lines.
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

stop_redis() {
    if [[ -n $REDIS_PID ]]; then
        kill -TERM "$REDIS_PID" 2>/dev/null || true
        wait "$REDIS_PID" 2>/dev/null || true
        REDIS_PID=
    fi
}

cleanup() {
    stop_service
    stop_redis
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

# ---- callgrind runs (run_instr.sh, run_instr_rest.sh) ----

# Ends the process $1 under callgrind, which writes its profile at exit:
# waits for it however slowly it goes.
stop_profiled() {
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# Prints the total instructions of callgrind profile $1 (a run of shape $2
# with $3 units on build $4), kept in KEEP_PROFILES when that is set.
profile_total() {
    if [[ -n ${KEEP_PROFILES:-} ]]; then
        cp "$1" "$KEEP_PROFILES/callgrind.$2.$3.$(tr / _ <<<"$4")"
    fi
    awk '/^(summary|totals):/ {print $2; exit}' "$1"
}

# One INSTR line, printed and added to $SCRATCH/results: shape $1, build $2
# (label A when $3 is 0, B when 1), total instructions $4 over $6 events and
# $5 over $7 events (start-up and shutdown, subtracted); $8, when given, the
# Redis set-up (run_instr.sh's REDIS).
instr_line() {
    awk -v s="$1${8:+ redis=$8}" -v b="$2" -v i="$3" -v f="$4" -v z="$5" -v n="$6" -v m="$7" \
        -v l="$(cut -d' ' -f1 /proc/loadavg)" \
        'BEGIN { printf "INSTR shape=%s build=%s label=%s total=%d base=%d per_event=%.0f load=%s\n",
                        s, b, substr("AB", i + 1, 1), f, z, (f - z) / (n - m), l }' |
        tee -a "$SCRATCH/results"
}

# One SUMMARY line per shape (and Redis set-up) of $SCRATCH/results: A's
# instructions per event, and B's change when there was a B; with both
# Redis set-ups, one more per shape and build: cluster against single.
instr_summary() {
    awk '{ delete f; for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
           k = f["shape"] (f["redis"] != "" ? " " f["redis"] : "")
           v[k, f["label"]] = f["per_event"]; keys[k] = 1
           if (f["redis"] != "") r[f["shape"], f["redis"], f["label"]] = f["per_event"] }
         END { for (k in keys) {
                 a = v[k, "A"]; b = v[k, "B"]
                 if (b != "") printf "SUMMARY %s: %d -> %d instructions per event (%+.1f %%)\n", k, a, b, 100 * (b / a - 1)
                 else printf "SUMMARY %s: %d instructions per event\n", k, a }
               for (k in keys) {
                 split(k, sr, " ")
                 if (sr[2] != "single") continue
                 for (l = 1; l <= 2; l++) {
                   x = substr("AB", l, 1); a = r[sr[1], "single", x]; b = r[sr[1], "cluster", x]
                   if (a != "" && b != "")
                     printf "SUMMARY %s build %s: cluster against single %d -> %d instructions per event (%+.1f %%)\n", sr[1], x, a, b, 100 * (b / a - 1) } } }' "$SCRATCH/results"
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

# Peak resident memory of a process since it started (VmHWM), in kB.
hwm_kb() {
    awk '/^VmHWM:/ {print $2}' "/proc/$1/status"
}

# CPU time of a process (its threads and reaped children), in clock ticks.
cpu_ticks() {
    awk '{print $14 + $15 + $16 + $17}' "/proc/$1/stat"
}

rcli() {
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"
}

# Starts build dir $1's tracseq-events on a free loopback port against the
# Redis on REDIS_PORT (warn level, SERVICE_ARGS added, its log in
# SCRATCH/svc.log) and waits for it; sets SERVICE_PID and TARGET.
start_bench_service() {
    local port
    port=$(free_port)
    # shellcheck disable=SC2086
    TRACSEQ_EVENTS_CONFIG='' "$1/tracseq-events" --listen="127.0.0.1:$port" \
        --redis-url="redis://127.0.0.1:$REDIS_PORT" --log-level=warn $SERVICE_ARGS \
        2>"$SCRATCH/svc.log" &
    SERVICE_PID=$!
    wait_port "$port"
    sleep 0.5 # let it connect to Redis
    # shellcheck disable=SC2034 # the caller's
    TARGET=127.0.0.1:$port
}
