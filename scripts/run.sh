#!/usr/bin/env bash
# make run: a local Redis (AOF on, data under ./var/redis) unless REDIS_URL
# is set, the event service (gRPC, GRPC_LISTEN, default 127.0.0.1:50051: open
# on loopback without AUTH_TOKENS_FILE, see docs/security.md) and
# the REST bridge (:8087), all in the foreground. Ctrl-C (or SIGTERM) stops
# every one of them; if any exits, the others are stopped too.
set -euo pipefail
build=${1:-build}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
pids=()

# Stops the bridge and the service first, Redis last (it runs in its own
# session, so a terminal's Ctrl-C reaches it only through here).
stop_all() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "${redis_pid:-}" ]; then
    kill -TERM "$redis_pid" 2>/dev/null || true
    while kill -0 "$redis_pid" 2>/dev/null; do sleep 0.05; done
  fi
}
trap 'stop_all; exit 0' INT TERM
trap stop_all EXIT

if [ -z "${REDIS_URL:-}" ]; then
  port=${REDIS_PORT:-6380}
  mkdir -p var/redis
  echo "starting redis-server on 127.0.0.1:$port (AOF everysec, data in var/redis)"
  setsid redis-server --port "$port" --bind 127.0.0.1 --dir "$top/var/redis" \
    --appendonly yes --appendfsync everysec --save "" --daemonize no \
    --logfile "$top/var/redis/redis.log" &
  redis_pid=$!
  export REDIS_URL="redis://127.0.0.1:$port"
  for _ in $(seq 1 100); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && break
    sleep 0.05
  done
  redis-cli -p "$port" ping >/dev/null 2>&1 || { echo "redis-server did not start: see var/redis/redis.log"; exit 1; }
fi

"$build/tracseq-events" &
pids+=($!)
if [ -x "$build/rest-bridge/tracseq-rest-bridge" ]; then
  "$build/rest-bridge/tracseq-rest-bridge" &
  pids+=($!)
else
  echo "REST bridge not built yet: serving gRPC only"
fi
echo "TracSeq Events: gRPC on ${GRPC_LISTEN:-127.0.0.1:50051}, REST on ${PORT:-8087}; Ctrl-C stops"
# Whichever exits first (or Ctrl-C) stops the rest.
wait -n "${pids[@]}" ${redis_pid:+"$redis_pid"} || true
