#!/bin/sh
# One case of the layer check's own test: runs scripts/check-layers.sh on the
# fixture tree CASE (its declaration is CASE/src/layers.txt) and compares
# what it printed with CASE/expected, exactly. An empty expected file means
# the tree must be accepted (exit 0), any other must be refused (exit 1).
#
# usage: tests/check_layers_case.sh CHECKER CASE
set -u
checker=$1
case_dir=$2
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$checker" "$case_dir" > "$out" 2>&1
rc=$?
want=1
[ -s "$case_dir/expected" ] || want=0
if ! diff -u "$case_dir/expected" "$out"; then
  echo "check-layers.sh printed other messages than $case_dir/expected (diff above)" >&2
  exit 1
fi
if [ "$rc" -ne "$want" ]; then
  echo "check-layers.sh exited $rc, expected $want" >&2
  exit 1
fi
echo "ok: $(basename "$case_dir")"
