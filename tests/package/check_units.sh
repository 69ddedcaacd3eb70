#!/bin/sh
# ctest package/systemd_units: the packaged units (extracted by package/deb
# into SCRATCH/root) pass `systemd-analyze verify` with no complaint at all
# (it exits 0 on unknown keys, so any output fails the test), and their
# hardening scores at most 2.0 on `systemd-analyze security` ("OK"; 0 is
# best, 10 worst). verify checks that ExecStart is executable, so the units
# are checked with ExecStart pointing into the extracted package. Skipped
# (77) where systemd-analyze is missing.
#
#   check_units.sh SCRATCH
set -eu
scratch=$1
command -v systemd-analyze >/dev/null 2>&1 || { echo "systemd-analyze not found: skipped"; exit 77; }
units=$scratch/units
rm -rf "$units"
mkdir -p "$units"
for u in "$scratch"/root/lib/systemd/system/*.service; do
  sed "s|^ExecStart=/|ExecStart=$scratch/root/|" "$u" >"$units/$(basename "$u")"
done
out=$(systemd-analyze verify --man=no "$units"/*.service 2>&1) || { echo "$out"; exit 1; }
[ -z "$out" ] || { echo "systemd-analyze verify complained:"; echo "$out"; exit 1; }
for u in "$units"/*.service; do
  systemd-analyze security --offline=yes --threshold=20 "$u" >"$units/security.txt" 2>&1 \
    || { cat "$units/security.txt"; echo "$(basename "$u"): exposure above 2.0"; exit 1; }
  grep 'Overall exposure' "$units/security.txt"
done
echo "systemd units verified"
