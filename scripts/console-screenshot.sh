#!/bin/sh
# Retakes docs/console.png, the README's picture of the web console: runs
# the browser test (tests/browser/test_console.py, headless chromium), which
# saves what the page shows just before it redrives a dead letter.
#
#   scripts/console-screenshot.sh [BUILD_DIR]     default: build
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
TSE_CONSOLE_SCREENSHOT=$root/docs/console.png \
  ctest --test-dir "$build" -R '^browser/console$' --output-on-failure
echo "wrote $root/docs/console.png"
