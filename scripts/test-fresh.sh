#!/usr/bin/env bash
# make test-fresh: every install path works on a machine that has nothing but
# Debian 12 minimal, or this fails naming the step that did not.
#
#   1. Two minimal Debian 12 roots (mmdebstrap --variant=minbase --mode=root
#      bookworm) in a temp dir, each given this machine's package-client
#      settings as they are (apt's sources, apt.conf.d, keyrings and auth,
#      npm's npmrc files, the CA certificates, resolv.conf and hosts): what a
#      fresh machine here has. Nothing of theirs is kept in the repository.
#   2. Source, in the first root: a clean git clone of HEAD (committed work
#      only, not the working tree), then the README's steps for a fresh
#      Debian 12 (its prerequisite line, then `make test`), then `make run`
#      as a smoke test (/health answers 200 on :8087, a publish through the
#      bridge and one through gRPC with eventctl succeed, SIGINT stops
#      everything, exit status 0), then `make package`.
#   3. Package, in the second root: `apt-get install ./tracseq-events_*.deb`
#      (apt resolves the dependencies), then the installed service and bridge,
#      as the package's user, against a local redis-server: eventctl health
#      and publish, the bridge's /health, SIGTERM, exit status 0.
#
# Every command in a root runs chrooted in private mount and PID namespaces
# (/proc, /sys, /dev and a tmpfs /tmp are mounted there only, so they vanish
# with the namespace, and no process outlives its step), with a clean environment
# and no stdin. The smoke tests also get a private network namespace (only
# loopback), so their fixed ports (6379, 6380, 8087, 50051) never meet
# another process on this machine. Package scripts start no daemons in the
# roots (/usr/sbin/policy-rc.d answers 101, as in Debian's container
# images): one would bind its port in this machine's network.
#
# Needs root and scripts/install-deps.sh fresh (make test-fresh installs it).
# TEST_FRESH_KEEP=1 keeps the temp dir (TMPDIR, default /tmp) for a look.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
self="$top/scripts/test-fresh.sh"

# What the README tells a fresh Debian 12 machine to run first (as root);
# checked to be in the README word for word, so the two stay one.
readme_prereq="apt-get update && apt-get install -y make git"
readme_test="make test"
readme_package="apt-get install ./build/tracseq-events_*.deb"

# ---------------------------------------------------------------------------
# The machine's package-client settings, copied as they are.

# copy_if_exists SRC DEST: a file or a directory's contents, if present.
copy_if_exists() {
  if [ -d "$1" ]; then
    mkdir -p "$2"
    cp -a "$1/." "$2/"
  elif [ -e "$1" ]; then
    mkdir -p "$(dirname "$2")"
    cp -aL "$1" "$2"
  fi
}

# apt's settings (not its sources: mmdebstrap writes those from the host's
# files, see make_root). Run as mmdebstrap's setup hook, so that its own apt
# runs with them too.
copy_apt_settings() { # ROOT
  local d
  for d in apt.conf.d auth.conf.d preferences.d trusted.gpg.d keyrings; do
    copy_if_exists "/etc/apt/$d" "$1/etc/apt/$d"
  done
  copy_if_exists /etc/apt/trusted.gpg "$1/etc/apt/trusted.gpg"
}

copy_machine_settings() { # ROOT
  local r=$1 f
  # CA certificates: the bundle as it is, and the locally added ones, which
  # update-ca-certificates keeps when a package installs ca-certificates.
  copy_if_exists /etc/ssl/certs "$r/etc/ssl/certs"
  copy_if_exists /usr/local/share/ca-certificates "$r/usr/local/share/ca-certificates"
  # npm and pip: system-wide files, and this user's (the roots run as root).
  for f in /etc/npmrc /usr/etc/npmrc /usr/local/etc/npmrc /etc/pip.conf /etc/xdg/pip/pip.conf; do
    copy_if_exists "$f" "$r$f"
  done
  copy_if_exists "$HOME/.npmrc" "$r/root/.npmrc"
  copy_if_exists "$HOME/.config/pip" "$r/root/.config/pip"
  # Name resolution.
  copy_if_exists /etc/resolv.conf "$r/etc/resolv.conf"
  copy_if_exists /etc/hosts "$r/etc/hosts"
  printf '#!/bin/sh\nexit 101\n' >"$r/usr/sbin/policy-rc.d"
  chmod 755 "$r/usr/sbin/policy-rc.d"
}

# ---------------------------------------------------------------------------
# Steps, failures, cleanup.

start=$(date +%s)
step_name="start"
tmp=""
bg_pids=""  # the mmdebstrap sessions still running
ns_pid=""

step() {
  step_name=$1
  printf '\n== test-fresh [%4ss]: %s\n' "$(($(date +%s) - start))" "$1"
}

fail() {
  echo "test-fresh: FAILED at step '$step_name': $*" >&2
  exit 1
}

# Processes whose root is in our temp dir: none once each namespace is gone
# (its PID namespace ends with it); this is the safety net. Fails when it
# found none.
kill_leftovers() {
  local p r found=1
  for p in /proc/[0-9]*; do
    r=$(readlink "$p/root" 2>/dev/null) || continue
    case "$r" in "$tmp"/*) kill -KILL "${p#/proc/}" 2>/dev/null && found=0 ;; esac
  done
  return "$found"
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  # Each mmdebstrap runs in its own session: all of it stops.
  local p
  for p in $bg_pids; do
    kill -TERM -- "-$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  # unshare ignores SIGTERM and SIGINT while its child runs: SIGKILL, and
  # --kill-child takes the namespace's PID 1, so every process in it, along.
  if [ -n "$ns_pid" ]; then
    kill -KILL "$ns_pid" 2>/dev/null || true
    wait "$ns_pid" 2>/dev/null || true
  fi
  if [ -n "$tmp" ] && [ -d "$tmp" ]; then
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      kill_leftovers || break
      sleep 0.5
    done
    # Our mounts live in private namespaces; one seen here would be a bug,
    # and nothing is removed under a mount point.
    if grep -q " ${tmp}/" /proc/self/mountinfo; then
      grep " ${tmp}/" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l || true
    fi
    if grep -q " ${tmp}/" /proc/self/mountinfo; then
      echo "test-fresh: mounts left under $tmp; not removing it" >&2
      status=1
    elif [ "${TEST_FRESH_KEEP:-0}" = 1 ]; then
      echo "test-fresh: kept $tmp"
    else
      rm -rf --one-file-system "$tmp"
    fi
  fi
  if [ "$status" -eq 0 ]; then
    echo "test-fresh: all green in $(($(date +%s) - start)) s"
  else
    echo "test-fresh: FAILED (step '$step_name', exit $status) after $(($(date +%s) - start)) s" >&2
  fi
  exit "$status"
}
# in_root ROOT NET SCRIPT: runs bash SCRIPT in ROOT as root. NET is host (the
# machine's network, for apt and npm) or private (loopback only).
in_root() {
  local root=$1 net=$2 script=$3
  local -a ns=(--mount --pid --fork --kill-child --propagation private)
  [ "$net" = private ] && ns+=(--net)
  local -a envv=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
                 HOME=/root TERM=dumb "CI=${CI:-}")
  local v
  for v in http_proxy https_proxy no_proxy all_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY ALL_PROXY; do
    [ -n "${!v:-}" ] && envv+=("$v=${!v}")
  done
  # PID 1 of the namespace is this sh: it mounts, runs the chroot and reaps
  # orphans until the chroot's command ends; then everything left is killed.
  # Run in the background so that a signal to this script is handled at
  # once (cleanup kills unshare; --kill-child then ends the namespace); a
  # background job ignores SIGINT and SIGQUIT, the chroot's command must not.
  unshare "${ns[@]}" -- /bin/sh -ec '
    r=$1 net=$2; shift 2
    mount -t proc proc "$r/proc"
    # Every machine has /sys, and a root without it is no fresh machine:
    # gRPC 1.51 reads errno after a connect() with an absl mutex in between,
    # whose first contended wait reads /sys/devices/system/cpu/online; with
    # no /sys that leaves ENOENT, and the connect "fails" (docs/operations.md).
    mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$r/sys"
    mount --rbind /dev "$r/dev"
    mount -t tmpfs -o mode=1777 tmpfs "$r/tmp"
    if [ "$net" = private ]; then ip link set lo up; fi
    env --default-signal=INT,QUIT chroot "$r" "$@"
  ' in_root "$root" "$net" /usr/bin/env -i "${envv[@]}" /bin/bash -euo pipefail -c "$script" </dev/null &
  ns_pid=$!
  local status=0
  wait "$ns_pid" || status=$?
  ns_pid=""
  return "$status"
}

# make_root DIR LOG: a minimal Debian 12 with the machine's settings.
make_root() {
  local dir=$1 log=$2 f
  local -a sources=()
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -s "$f" ] && sources+=("$f")
  done
  [ ${#sources[@]} -gt 0 ] || { echo "no apt sources on this machine" >"$log"; return 1; }
  mmdebstrap --variant=minbase --mode=root --quiet \
    --setup-hook="'$self' apt-settings \"\$1\"" \
    bookworm "$dir" "${sources[@]}" >"$log" 2>&1 || return 1
  copy_machine_settings "$dir"
}

# Subcommands, for mmdebstrap's setup hook and the background root.
case "${1:-}" in
  apt-settings) copy_apt_settings "$2"; exit 0 ;;
  make-root) make_root "$2" "$3"; exit 0 ;;
esac

# ---------------------------------------------------------------------------

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "checks"
[ "$(id -u)" -eq 0 ] || fail "needs root (mmdebstrap --mode=root, chroot, namespaces)"
for c in mmdebstrap unshare chroot ip git; do
  command -v "$c" >/dev/null || fail "$c is missing: run scripts/install-deps.sh fresh"
done
for line in "$readme_prereq" "$readme_test" "$readme_package"; do
  grep -qF -- "$line" "$top/README.md" || fail "README.md no longer says '$line': update it and this test together"
done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tracseq-fresh.XXXXXX")
src_root=$tmp/source
pkg_root=$tmp/package
echo "temp dir $tmp; testing HEAD $(git -C "$top" log -1 --format='%h %s')"
git -C "$top" diff --quiet HEAD || echo "note: uncommitted changes in $top are not tested"

step "debootstrap two Debian 12 minbase roots (in parallel)"
setsid "$self" make-root "$pkg_root" "$tmp/mmdebstrap-package.log" &
pkg_pid=$!
setsid "$self" make-root "$src_root" "$tmp/mmdebstrap-source.log" &
src_pid=$!
bg_pids="$pkg_pid $src_pid"
wait "$src_pid" || { cat "$tmp/mmdebstrap-source.log" >&2; fail "mmdebstrap (source root)"; }
bg_pids=$pkg_pid

step "git clone of HEAD into the source root"
git clone --quiet --no-hardlinks "$top" "$src_root/root/tracseq-events" || fail "git clone"
# Exactly this HEAD, also when it is detached or not the clone's default.
git -C "$src_root/root/tracseq-events" checkout --quiet --detach "$(git -C "$top" rev-parse HEAD)" \
  || fail "git checkout of HEAD in the clone"

step "README prerequisites: $readme_prereq"
in_root "$src_root" host "$readme_prereq >/dev/null" || fail "$readme_prereq"

step "README: $readme_test (install everything, build, ctest)"
in_root "$src_root" host "cd /root/tracseq-events && $readme_test" || fail "$readme_test"

step "make run: /health, publish over REST and gRPC, SIGINT, exit 0"
in_root "$src_root" private '
cd /root/tracseq-events
fail() { echo "make run smoke: $*" >&2; cat /tmp/run.log >&2; exit 1; }
set -m                       # make run gets its own process group, as at a terminal
make run >/tmp/run.log 2>&1 &
make_pid=$!
ok=""
for _ in $(seq 1 600); do
  code=$(curl -s -o /dev/null -w "%{http_code}" http://localhost:8087/health || true)
  [ "$code" = 200 ] && { ok=1; break; }
  kill -0 "$make_pid" 2>/dev/null || fail "make run exited before /health answered"
  sleep 0.1
done
[ -n "$ok" ] || fail "/health did not answer 200 within 60 s (last: $code)"
echo "GET /health: 200"
out=$(curl -s -w "\n%{http_code}" -X POST http://localhost:8087/api/v1/events/publish \
  -H "Content-Type: application/json" \
  -d "{\"event_type\":\"sample.created\",\"source_service\":\"test-fresh\",\"payload\":{\"test\":\"data\"}}")
code=$(tail -n1 <<<"$out")
case "$code" in 2??) ;; *) fail "REST publish answered $code: $out" ;; esac
echo "$out" | grep -q event_id || fail "REST publish answer has no event_id: $out"
echo "POST /api/v1/events/publish: $code"
build/src/cli/eventctl publish sample.created --payload "{\"sample_id\":\"6f1c8a52-3f8e-4a59-9f57-0d6c2b7f1a10\",
  \"barcode\":\"BC-1\",\"sample_type\":\"blood\",\"submitter_id\":\"0b5e7f8a-91c2-4d3e-8f60-1a2b3c4d5e6f\",
  \"lab_id\":\"1c6f8a9b-a2d3-4e4f-9071-2b3c4d5e6f70\"}" || fail "eventctl publish exited $?"
# Ctrl-C at a terminal signals the whole process group. GNU make re-raises
# SIGINT on itself whatever its recipe did (status 130, "Interrupt"), so the
# signal goes to every member but make: make then exits with run.sh status.
pgid=$make_pid
for p in /proc/[0-9]*; do
  pid=${p#/proc/}
  [ "$pid" = "$make_pid" ] && continue
  stat=$(cat "$p/stat" 2>/dev/null) || continue
  set -- ${stat##*) }
  [ "$3" = "$pgid" ] && kill -INT "$pid" 2>/dev/null || true
done
status=0
wait "$make_pid" || status=$?
[ "$status" -eq 0 ] || fail "make run exited $status after SIGINT"
for p in /proc/[0-9]*; do
  comm=$(cat "$p/comm" 2>/dev/null) || continue
  case "$comm" in tracseq*|redis-server) fail "$comm (pid ${p#/proc/}) still runs after make run exited" ;; esac
done
echo "SIGINT: make run exited 0, nothing left running"
' || fail "make run smoke test"

step "make package"
in_root "$src_root" host "cd /root/tracseq-events && make package >/tmp/package.log 2>&1 || { cat /tmp/package.log; exit 1; }; ls build/*.deb" \
  || fail "make package"

step "wait for the package root"
wait "$pkg_pid" || { cat "$tmp/mmdebstrap-package.log" >&2; fail "mmdebstrap (package root)"; }
bg_pids=""

step "apt-get install ./tracseq-events_*.deb into the package root"
cp "$src_root"/root/tracseq-events/build/tracseq-events_*.deb "$pkg_root/root/" || fail "no .deb to copy"
in_root "$pkg_root" host 'cd /root && apt-get update -qq && apt-get install -y -qq ./tracseq-events_*.deb >/tmp/apt.log 2>&1 || { cat /tmp/apt.log; exit 1; }
command -v redis-server >/dev/null || apt-get install -y -qq redis-server >/dev/null
dpkg-query -W tracseq-events' || fail "apt-get install ./tracseq-events_*.deb"

step "installed package: service and bridge as tracseq-events against redis-server, publish"
in_root "$pkg_root" private '
fail() { echo "package smoke: $*" >&2; cat /tmp/*.log >&2 || true; exit 1; }
redis-server --port 6379 --bind 127.0.0.1 --save "" --appendonly no --daemonize no >/tmp/redis.log 2>&1 &
for _ in $(seq 1 100); do redis-cli ping >/dev/null 2>&1 && break; sleep 0.05; done
redis-cli ping >/dev/null || fail "redis-server did not start"
as_user="setpriv --reuid=tracseq-events --regid=tracseq-events --init-groups"
$as_user tracseq-events >/tmp/service.log 2>&1 &
svc=$!
$as_user tracseq-rest-bridge >/tmp/bridge.log 2>&1 &
bridge=$!
for _ in $(seq 1 300); do eventctl health >/dev/null 2>&1 && break; sleep 0.1; done
eventctl health || fail "eventctl health"
eventctl publish sample.created --payload "{\"sample_id\":\"6f1c8a52-3f8e-4a59-9f57-0d6c2b7f1a10\",
  \"barcode\":\"BC-1\",\"sample_type\":\"blood\",\"submitter_id\":\"0b5e7f8a-91c2-4d3e-8f60-1a2b3c4d5e6f\",
  \"lab_id\":\"1c6f8a9b-a2d3-4e4f-9071-2b3c4d5e6f70\"}" || fail "eventctl publish"
[ "$(redis-cli dbsize)" -ge 1 ] || fail "Redis is empty after the publish"
# The bridge, with what the root has (no curl): bash'"'"'s /dev/tcp.
health=""
for _ in $(seq 1 300); do
  if exec 3<>/dev/tcp/127.0.0.1/8087 2>/dev/null; then
    printf "GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n" >&3
    health=$(head -n1 <&3 || true); exec 3<&-
    break
  fi
  sleep 0.1
done
case "$health" in *" 200"*) echo "bridge GET /health: $health" ;; *) fail "bridge /health: ${health:-no answer}" ;; esac
kill -TERM "$bridge" "$svc"
wait "$bridge" || fail "tracseq-rest-bridge exited $? on SIGTERM"
wait "$svc" || fail "tracseq-events exited $? on SIGTERM"
echo "SIGTERM: service and bridge exited 0"
' || fail "installed package smoke test"
