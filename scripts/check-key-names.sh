#!/bin/sh
# Refuses a Redis key name spelled outside the storage layer's key module:
# src/storage/keys.h is the only C source of src/ and rest-bridge/ that may
# contain the key prefix "tracseq:" (issue 13: every key is built in one
# place, with the hash tags Redis Cluster needs). Prints "file:line: ..." per
# violation and exits 1; prints nothing and exits 0 otherwise. Runs under
# ctest as lint/key_names. Documentation (*.md) may show key names.
#
# usage: scripts/check-key-names.sh [ROOT]
set -eu
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$root"
owner=src/storage/keys.h
dirs=
for d in src rest-bridge; do
  [ -d "$d" ] && dirs="$dirs $d"
done
[ -n "$dirs" ] || exit 0
found=$(find $dirs -type f \( -name '*.c' -o -name '*.h' -o -name '*.lua' \) ! -path "$owner" \
        -exec grep -Hn 'tracseq:' {} + || true)
if [ -n "$found" ]; then
  printf '%s\n' "$found" | sed "s|\$|  <- a key name outside $owner; build it with storage/keys.h|" >&2
  exit 1
fi
