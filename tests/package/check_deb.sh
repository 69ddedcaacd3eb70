#!/bin/sh
# ctest package/deb: builds the Debian packages from this build tree (cpack
# -G DEB into a scratch folder) and checks what a platform team relies on:
# the file names, the Depends that dpkg-shlibdeps found plus adduser, the
# conffiles, every program with its man page and systemd unit, the SDK in
# -dev, and that the settings files, uncommented, are valid settings of the
# binaries they belong to. Leaves the packages and their extracted trees
# in the scratch folder for package/systemd_units.
#
#   check_deb.sh BUILD_DIR SCRATCH VERSION
set -eu
build=$1
scratch=$2
version=$3
fail() { echo "package/deb: $*" >&2; exit 1; }

rm -rf "$scratch"
mkdir -p "$scratch"
(cd "$build" && cpack -G DEB -B "$scratch" >"$scratch/cpack.log" 2>&1) \
  || { cat "$scratch/cpack.log" >&2; fail "cpack -G DEB failed"; }
arch=$(dpkg --print-architecture)
deb=$scratch/tracseq-events_${version}_$arch.deb
dev=$scratch/tracseq-events-dev_${version}_$arch.deb
[ -f "$deb" ] || fail "no $(basename "$deb") (got: $(ls "$scratch"))"
[ -f "$dev" ] || fail "no $(basename "$dev")"

# Depends: the shared libraries the binaries load, and adduser (postinst).
depends=$(dpkg-deb -f "$deb" Depends)
for lib in adduser libgrpc29 libprotobuf-c1 libhiredis0.14 libjansson4 libmicrohttpd12 libuuid1; do
  echo "$depends" | grep -q "\\b$lib\\b" || fail "Depends lacks $lib: $depends"
done
dpkg-deb -f "$deb" Recommends | grep -q redis-server || fail "Recommends lacks redis-server"
dpkg-deb -f "$dev" Depends | grep -q libgrpc-dev || fail "-dev Depends lacks libgrpc-dev"

# Contents.
dpkg-deb -x "$deb" "$scratch/root"
dpkg-deb -x "$dev" "$scratch/dev"
dpkg-deb -e "$deb" "$scratch/control"
for f in usr/bin/tracseq-events usr/bin/tracseq-rest-bridge usr/bin/eventctl \
         etc/tracseq-events/tracseq-events.conf etc/tracseq-events/rest-bridge.conf \
         lib/systemd/system/tracseq-events.service lib/systemd/system/tracseq-rest-bridge.service \
         usr/share/man/man1/tracseq-events.1.gz usr/share/man/man1/tracseq-rest-bridge.1.gz \
         usr/share/man/man1/eventctl.1.gz usr/share/doc/tracseq-events/operations.md; do
  [ -e "$scratch/root/$f" ] || fail "tracseq-events lacks /$f"
done
for f in usr/include/tracseq/client.h usr/lib/pkgconfig/tracseq-client.pc; do
  [ -e "$scratch/dev/$f" ] || fail "tracseq-events-dev lacks /$f"
done
ls "$scratch"/dev/usr/lib/libtracseq-client.so.* >/dev/null 2>&1 || fail "-dev lacks libtracseq-client.so.*"
for f in /etc/tracseq-events/tracseq-events.conf /etc/tracseq-events/rest-bridge.conf; do
  grep -qx "$f" "$scratch/control/conffiles" || fail "$f is not a conffile"
done
for s in postinst prerm postrm; do
  [ -x "$scratch/control/$s" ] || fail "no executable $s"
  sh -n "$scratch/control/$s" || fail "$s: syntax error"
done
# Each unit runs a program of the package.
for u in "$scratch"/root/lib/systemd/system/*.service; do
  exe=$(sed -n 's/^ExecStart=//p' "$u" | cut -d' ' -f1)
  [ -x "$scratch/root$exe" ] || fail "$(basename "$u"): ExecStart $exe is not in the package"
done

# The settings files list every setting, commented out at its default;
# uncommented, each is accepted by its program: the unknown flag after it is
# then the first (and only) error.
check_conf() { # BINARY CONF
  sed 's/^#\([A-Z_][A-Z_]*=\)/\1/' "$2" >"$scratch/uncommented.conf"
  n=$(grep -c '^[A-Z_]*=' "$scratch/uncommented.conf")
  [ "$n" -ge 5 ] || fail "$(basename "$2") lists only $n settings"
  if out=$("$1" --config="$scratch/uncommented.conf" --no-such-flag 2>&1); then
    fail "$1 ran with --no-such-flag"
  fi
  echo "$out" | grep -q "unknown option '--no-such-flag'" \
    || fail "$(basename "$2") uncommented is not valid for $(basename "$1"): $out"
}
check_conf "$scratch/root/usr/bin/tracseq-events" "$scratch/root/etc/tracseq-events/tracseq-events.conf"
check_conf "$scratch/root/usr/bin/tracseq-rest-bridge" "$scratch/root/etc/tracseq-events/rest-bridge.conf"
echo "package/deb: $(basename "$deb") and $(basename "$dev") are complete"
