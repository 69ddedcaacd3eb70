#!/bin/sh
# Fails when generated/ is stale against proto/: regenerates into a scratch
# folder and compares. Fix with `cmake --build build --target generate`.
set -eu
src=$1
scratch=$2
rm -rf "$scratch"
"$src/scripts/generate.sh" "$scratch"
if diff -r "$src/generated" "$scratch" >/dev/null; then
  echo "generated/ is current"
  rm -rf "$scratch"
else
  diff -r "$src/generated" "$scratch" | head -40
  echo "generated/ is stale against proto/: run 'cmake --build build --target generate'" >&2
  exit 1
fi
