#!/bin/sh
# check-reports.sh NAME DIR: fails (printing them) when a sanitizer left any
# report file in DIR. Used by `make test-tsan`, whose processes write their
# reports there (TSAN_OPTIONS=log_path=DIR/tsan), so a race found in a child
# process (the service, the bridge) fails the run even when its test passed.
set -eu
name=$1
dir=$2
reports=$(find "$dir" -type f -size +0 2>/dev/null | sort)
if [ -z "$reports" ]; then
    echo "$name: no reports"
    exit 0
fi
for f in $reports; do
    echo "==== $f"
    cat "$f"
done
echo "$name: $(echo "$reports" | wc -l) report file(s) in $dir" >&2
exit 1
