#!/usr/bin/env bash
# bench/redis_script_instr.sh - Redis's own instructions per stored event
# (valgrind's callgrind on redis-server: deterministic, unlike CPU time on a
# shared machine) for the commands the service sends, their older shapes and
# prototypes, driven by redis-benchmark (its __rand_int__ makes each id new):
#
#   bench/redis_script_instr.sh [VARIANT...]       default: all of them
#
#   xadd-shaped     XADD with the service's entry fields: id, type, event
#   xadd-event      XADD of the event field alone (what dropping id and type
#                   would leave)
#   xadd-one-field  XADD of one field as many bytes as xadd-shaped's three
#   batch           the batch dedup script of src/storage/ops.c (read from
#                   it), 100 events per call, each with a client id
#   batch-nested    its shape before 2026-12-07 (redis_scripts/batch_nested.lua)
#   batch-bucket    a prototype keeping the records in a hash per time bucket
#                   (redis_scripts/batch_bucket.lua; not used by the service)
#   single          the single-event dedup script of src/storage/ops.c
#   single-nine     its shape before 2026-12-07 (redis_scripts/single_nine.lua)
#
# Per variant: a fresh redis-server (AOF on, appendfsync everysec, no
# automatic rewrite) under callgrind, CALLS [220] script calls of 100 events
# (XADD: as many single XADDs, -P 50), and again with BASE [20] calls; the
# difference over the events between is the figure:
#   per event = (Ir(CALLS) - Ir(BASE)) / ((CALLS - BASE) * 100)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CALLS=${CALLS:-220}
BASE=${BASE:-20}
VARIANTS=("$@")
[[ ${#VARIANTS[@]} -gt 0 ]] ||
    VARIANTS=(xadd-shaped xadd-event xadd-one-field batch batch-nested batch-bucket single single-nine)
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"
bench_start

# The script of variant $1 into stdout: ops.c's C string, or a Lua file.
script_of() {
    case $1 in
    batch | single)
        python3 - "$HERE/../src/storage/ops.c" "$([[ $1 == batch ]] && echo tse_dedup_batch_script || echo tse_dedup_script)" <<'PY'
import ast, re, sys
src = open(sys.argv[1]).read()
m = re.search(r'const char ' + sys.argv[2] + r'\[\] =\s*((?:\s*"(?:[^"\\]|\\.)*"\s*)+);', src)
print(''.join(ast.literal_eval('"' + p + '"') for p in re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(1))), end='')
PY
        ;;
    batch-nested) cat "$HERE/redis_scripts/batch_nested.lua" ;;
    batch-bucket) cat "$HERE/redis_scripts/batch_bucket.lua" ;;
    single-nine) cat "$HERE/redis_scripts/single_nine.lua" ;;
    esac
}

# The command of variant $1, NUL-separated, "SHA" for the script's SHA.
command_of() {
    python3 - "$1" <<'PY'
import sys
v, n = sys.argv[1], 100
t = 'bench.event'
stream = 'tracseq:events:{%s}:p3' % t
dkey = 'tracseq:dedup:{%s}:__rand_int__%s'
blob, when = 'y' * 390, '1765100000.123456789'
if v == 'xadd-shaped':
    a = ['XADD', stream, '*', 'id', '__rand_int__', 'type', t, 'event', blob]
elif v == 'xadd-event':
    a = ['XADD', stream, '*', 'event', blob]
elif v == 'xadd-one-field':
    a = ['XADD', stream, '*', 'event', blob + 'z' * 56]
elif v in ('batch', 'batch-nested'):
    keys = sum(([stream, dkey % (t, i)] for i in range(n)), [])
    a = ['EVALSHA', 'SHA', str(len(keys))] + keys + ['120000']
    for i in range(n):
        if v == 'batch':
            a += (['bench.event'] if i == 0 else []) + ['1', when, '__rand_int__%d' % i, blob]
        else:
            a += ['1', when, '*', 'id', '__rand_int__%d' % i, 'type', t, 'event', blob]
elif v == 'batch-bucket':
    keys = ['tracseq:dedupb:{%s}:14758' % t, 'tracseq:dedupb:{%s}:14757' % t] + [stream] * n
    a = ['EVALSHA', 'SHA', str(len(keys))] + keys + ['240000', t]
    for i in range(n):
        a += ['1', when, '__rand_int__%d' % i, blob]
elif v == 'single':
    a = ['EVALSHA', 'SHA', '2', stream, dkey % (t, ''), '120000', when, '__rand_int__', t, blob]
elif v == 'single-nine':
    a = ['EVALSHA', 'SHA', '2', stream, dkey % (t, ''), '120000', when, '*', 'id', '__rand_int__',
         'type', t, 'event', blob]
else:
    sys.exit('redis_script_instr.sh: unknown variant ' + v)
sys.stdout.write('\0'.join(a) + '\0')
PY
}

# Redis's total instructions for $2 calls of variant $1.
instructions() {
    local v=$1 calls=$2 sha args
    REDIS_PORT=$(free_port)
    rm -rf "$SCRATCH/redis" && mkdir -p "$SCRATCH/redis"
    valgrind --tool=callgrind --callgrind-out-file="$SCRATCH/cg.out" redis-server --port "$REDIS_PORT" \
        --bind 127.0.0.1 --save '' --appendonly yes --appendfsync everysec --dir "$SCRATCH/redis" \
        --auto-aof-rewrite-percentage 0 >/dev/null 2>&1 &
    REDIS_PID=$!
    for _ in $(seq 300); do rcli ping >/dev/null 2>&1 && break; sleep 0.1; done
    command_of "$v" >"$SCRATCH/args"
    mapfile -d '' args <"$SCRATCH/args"
    if [[ $v != xadd-* ]]; then
        sha=$(rcli script load "$(script_of "$v")")
        args[1]=$sha
    fi
    if [[ $v == xadd-* || $v == single* ]]; then
        redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -n $((calls * 100)) -c 2 -P 50 -r 2000000000 \
            --csv "${args[@]}" >/dev/null
    else
        redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -n "$calls" -c 2 -P 4 -r 2000000000 \
            --csv "${args[@]}" >/dev/null
    fi
    rcli shutdown nosave >/dev/null 2>&1 || true
    wait "$REDIS_PID" || true
    REDIS_PID=
    awk '/^(summary|totals):/ {print $2; exit}' "$SCRATCH/cg.out"
}

for v in "${VARIANTS[@]}"; do
    a=$(instructions "$v" "$BASE")
    b=$(instructions "$v" "$CALLS")
    awk -v v="$v" -v a="$a" -v b="$b" -v n=$(((CALLS - BASE) * 100)) \
        'BEGIN { printf "INSTR variant=%s redis_ir_per_event=%.0f events=%d\n", v, (b - a) / n, n }'
done
