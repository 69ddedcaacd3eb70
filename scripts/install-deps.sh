#!/bin/sh
# The one list of the Debian 12 packages TracSeq Events needs, by group, for
# every install path: from source (make test, make run), the container's
# build and runtime stages (Dockerfile), the Debian package build (make
# package) and the fresh-machine test (make test-fresh).
#
#   scripts/install-deps.sh [GROUP...]     default: build test package
#
#   build     compilers, CMake, the -dev libraries and the code generators
#   runtime   only the shared libraries the installed binaries load (the
#             container's runtime stage; the .deb computes its own Depends)
#   test      what ctest, make test-sanitize, test-valgrind, fuzz and
#             format-check run: redis-server, Python and Node.js clients,
#             clang, clang-format, valgrind, python3-yaml (the container
#             file checks), python3-jsonschema (CloudEvents out of the bridge
#             against the spec's JSON schema), python3-prometheus-client
#             (the /metrics parser of interop/metrics), wrk and h2load
#             (nghttp2-client: the benchmarks' outside load generators),
#             curl, openssl (the TLS tests' throwaway certificates),
#             chromium and chromium-driver (the web console's browser test)
#   package   what cpack -G DEB needs beyond build: help2man, dpkg-shlibdeps
#   fresh     mmdebstrap and iproute2 (loopback in a network namespace),
#             for make test-fresh
#
# Installs only what is missing; idempotent and quiet when everything is
# there. Needs root (or sudo) only when something must be installed.
set -eu

group_pkgs() {
  case $1 in
    build) echo "build-essential cmake pkg-config git
      libgrpc-dev protobuf-compiler protobuf-compiler-grpc protobuf-c-compiler libprotobuf-c-dev
      libprotobuf-dev libhiredis-dev uuid-dev libjansson-dev libmicrohttpd-dev libcmocka-dev
      libssl-dev libgnutls28-dev" ;;
    runtime) echo "libgrpc29 libprotobuf-c1 libhiredis0.14 libuuid1 libjansson4 libmicrohttpd12 libssl3 libgnutls30" ;;
    test) echo "redis-server redis-tools python3 python3-grpcio python3-protobuf python3-yaml
      python3-jsonschema python3-prometheus-client
      clang libclang-rt-14-dev clang-format valgrind wrk nghttp2-client curl openssl chromium chromium-driver" ;;
    package) echo "help2man dpkg-dev file" ;;
    fresh) echo "mmdebstrap iproute2" ;;
    *) echo "install-deps.sh: unknown group '$1' (build, runtime, test, package, fresh)" >&2
       return 2 ;;
  esac
}

[ $# -gt 0 ] || set -- build test package
pkgs=""
for g in "$@"; do
  pkgs="$pkgs $(group_pkgs "$g")"
done
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# Node.js and npm for the Node interop tests: Debian's, only when none is on
# PATH (a Node already installed another way stays the one used).
case " $* " in
  *" test "*)
    command -v node >/dev/null 2>&1 || missing="$missing nodejs"
    command -v npm >/dev/null 2>&1 || missing="$missing npm" ;;
esac
[ -z "$missing" ] && exit 0
echo "installing:$missing"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# shellcheck disable=SC2086
$sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
# Debian's redis-server package starts a system instance on 6379 where
# systemd runs; we start our own (make run) and never rely on that one.
