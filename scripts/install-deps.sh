#!/bin/sh
# Installs the Debian 12 packages TracSeq Events needs to build, run and test,
# when any is missing. Idempotent and quiet when everything is there; needs
# root (or sudo) only when something must be installed.
set -eu
pkgs="build-essential cmake pkg-config git
libgrpc-dev protobuf-compiler protobuf-compiler-grpc protobuf-c-compiler libprotobuf-c-dev
libhiredis-dev uuid-dev libjansson-dev libmicrohttpd-dev libcmocka-dev
redis-server redis-tools
python3-grpcio python3-protobuf
clang libclang-rt-14-dev wrk curl"
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# Node.js and npm for the Node interop tests: Debian's, only when none is on
# PATH (a Node already installed another way stays the one used).
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
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
