"""Shared machinery of the interop tests (tests/interop/test_*.py).

What every interop test needs: Python stubs generated at test time from
proto/ with Debian's protoc and grpc_python_plugin, a private redis-server and
a private tracseq-events, each on a 127.0.0.1 port of its own, a tiny Redis
client speaking RESP over a socket (Debian 12's python3-grpcio environment has
no redis-py), and a check runner that prints one line per check and a closing
"interop: N passed, M failed".

Invariants:
- Runs under /usr/bin/python3 only (Debian's python3-grpcio and
  python3-protobuf); the tests start it with -E -s so neither PYTHONPATH nor a
  user site can slip in another grpc.
- Nothing listens on anything but 127.0.0.1, and every process started here is
  stopped (SIGTERM, then SIGKILL after a bound) on every path out, failures
  included: callers use `Stack` as a context manager.
- Generated stubs and every file a test writes live in its own scratch folder
  under the build tree ($TSE_INTEROP_SCRATCH/<test>), emptied when the test
  starts, so tests may run in parallel.

Environment: TSE_SERVICE_BIN (the tracseq-events binary), TSE_SOURCE_DIR (the
source tree, for proto/), TSE_INTEROP_SCRATCH (a folder under the build tree).
"""
import fcntl
import glob
import importlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback
import types

PROTOC = "/usr/bin/protoc"
GRPC_PYTHON_PLUGIN = "/usr/bin/grpc_python_plugin"
EVENT_SERVICE = "tracseq.events.v1.EventService"
# Seconds to wait for a process to come up, or to go away after SIGTERM.
START_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0


class CheckFailed(Exception):
    """An answer was not what the contract says; the message tells how."""


class ProcessExited(CheckFailed):
    """A process we started died before it was ready."""


def check(condition, message):
    if not condition:
        raise CheckFailed(message)


def check_equal(actual, expected, what):
    if actual != expected:
        raise CheckFailed(f"{what}: got {actual!r}, want {expected!r}")


def env_path(name):
    value = os.environ.get(name)
    if not value:
        raise CheckFailed(f"environment variable {name} is not set (run the test through ctest)")
    return value


def scratch_dir(test_name):
    """An empty folder of this test's own under $TSE_INTEROP_SCRATCH."""
    path = os.path.join(env_path("TSE_INTEROP_SCRATCH"), test_name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


# ---- ports -------------------------------------------------------------------
#
# The scheme of tests/support/ports.h, through the same lock file, so C and
# Python tests running side by side never share a port: a port outside the
# kernel's ephemeral range (where no connect() and no bind to port 0 goes),
# claimed with a POSIX record lock on its byte of the lock file, held until
# this process exits, and only when nothing listens on it. A server is up
# once the very process started listens on its port (Process.listens_on).

PORTS_LOCK_FILE = "/tmp/tse-test-ports.lock"
_PORT_FLOOR, _PORT_CEIL, _MIN_SPAN = 10000, 65535, 1000
_ports = {"fd": None, "held": set(), "next": None}


def port_range():
    """(lo, hi): the largest stretch of 10000..65535 outside the ephemeral
    range, or all of it when that stretch is too small."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            elo, ehi = (int(x) for x in f.read().split())
    except (OSError, ValueError):
        elo, ehi = 32768, 60999
    below_hi = min(elo - 1, _PORT_CEIL)
    above_lo = max(ehi + 1, _PORT_FLOOR)
    if below_hi - _PORT_FLOOR >= _PORT_CEIL - above_lo and below_hi - _PORT_FLOOR + 1 >= _MIN_SPAN:
        return _PORT_FLOOR, below_hi
    if _PORT_CEIL - above_lo + 1 >= _MIN_SPAN:
        return above_lo, _PORT_CEIL
    return _PORT_FLOOR, _PORT_CEIL


def _nothing_listens(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _try_claim(port):
    if port in _ports["held"]:
        return False
    if _ports["fd"] is None:
        # Never closed: closing it would drop every lock of this process.
        _ports["fd"] = os.open(PORTS_LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            os.fchmod(_ports["fd"], 0o666)
        except OSError:
            pass
    try:
        fcntl.lockf(_ports["fd"], fcntl.LOCK_EX | fcntl.LOCK_NB, 1, port, os.SEEK_SET)
    except OSError:
        return False
    if not _nothing_listens(port):
        fcntl.lockf(_ports["fd"], fcntl.LOCK_UN, 1, port, os.SEEK_SET)
        return False
    _ports["held"].add(port)
    return True


def free_port():
    """A loopback port nothing listens on, claimed for this process until it
    exits (no other test and no outgoing connection gets it)."""
    lo, hi = port_range()
    span = hi - lo + 1
    if _ports["next"] is None:
        _ports["next"] = lo + (os.getpid() * 2654435761 + time.time_ns()) % span
    for _ in range(span):
        port = _ports["next"]
        _ports["next"] = lo if port >= hi else port + 1
        if _try_claim(port):
            return port
    raise CheckFailed(f"no port of {lo}..{hi} is free (locks in {PORTS_LOCK_FILE})")


def _listening_inodes(port):
    inodes = set()
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if (len(fields) > 9 and int(fields[1].rsplit(":", 1)[1], 16) == port
                            and fields[3] == "0A"):
                        inodes.add(fields[9])
        except OSError:
            pass
    return inodes


def listened_by(port, pid):
    """Whether process pid has a TCP socket listening on port."""
    inodes = _listening_inodes(port)
    if not inodes:
        return False
    fd_dir = f"/proc/{pid}/fd"
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return False
    for name in names:
        try:
            target = os.readlink(os.path.join(fd_dir, name))
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            return True
    return False


# ---- stubs -------------------------------------------------------------------

def all_protos(proto_dir):
    """Every .proto under proto_dir, as paths relative to it, sorted."""
    found = glob.glob(os.path.join(proto_dir, "**", "*.proto"), recursive=True)
    return sorted(os.path.relpath(p, proto_dir) for p in found)


def generate_stubs(proto_dir, out_dir):
    """Runs protoc with the Python and gRPC-Python generators over proto/."""
    os.makedirs(out_dir, exist_ok=True)
    protos = all_protos(proto_dir)
    check(protos, f"no .proto files under {proto_dir}")
    cmd = [PROTOC, "-I", proto_dir, "-I", "/usr/include",
           "--python_out", out_dir, "--grpc_python_out", out_dir,
           f"--plugin=protoc-gen-grpc_python={GRPC_PYTHON_PLUGIN}"] + protos
    done = subprocess.run(cmd, capture_output=True, text=True)
    check(done.returncode == 0,
          f"protoc failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr}")


def load_stubs(out_dir):
    """Imports the generated modules; returns them as attributes of one object.

    tracseq/ is a plain namespace package once out_dir is on sys.path. The
    health and reflection stubs live under out_dir/grpc/, a name the installed
    grpc package already holds (and the generated code imports them by that
    name), so out_dir/grpc is added to that package's search path, as
    reflection_client.py does.
    """
    import grpc

    out_dir = os.path.abspath(out_dir)
    if out_dir not in sys.path:
        sys.path.append(out_dir)
    extra = os.path.join(out_dir, "grpc")
    if extra not in grpc.__path__:
        grpc.__path__.append(extra)
    names = {
        "event_pb2": "tracseq.events.v1.event_pb2",
        "sample_pb2": "tracseq.events.v1.sample_pb2",
        "service_pb2": "tracseq.events.v1.service_pb2",
        "service_pb2_grpc": "tracseq.events.v1.service_pb2_grpc",
        "health_pb2": "grpc.health.v1.health_pb2",
        "health_pb2_grpc": "grpc.health.v1.health_pb2_grpc",
    }
    return types.SimpleNamespace(**{k: importlib.import_module(v) for k, v in names.items()})


# ---- Redis -------------------------------------------------------------------

class RedisError(Exception):
    """Redis answered with an error reply."""


class RedisClient:
    """One RESP2 connection: commands in, replies out (bytes, int, list, None)."""

    def __init__(self, port, timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.reader = self.sock.makefile("rb")

    def close(self):
        self.reader.close()
        self.sock.close()

    def command(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for arg in args:
            data = arg if isinstance(arg, bytes) else str(arg).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self.sock.sendall(b"".join(out))
        return self.read_reply()

    def read_reply(self):
        line = self.reader.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("Redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest
        if kind == b"-":
            raise RedisError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.reader.read(n + 2)[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read_reply() for _ in range(n)]
        raise ConnectionError(f"unexpected RESP reply {line!r}")

    def xrange(self, key, start="-", end="+"):
        """Entries as (entry id str, {field str: value bytes}) in stream order."""
        entries = []
        for entry_id, flat in self.command("XRANGE", key, start, end):
            fields = {flat[i].decode(): flat[i + 1] for i in range(0, len(flat), 2)}
            entries.append((entry_id.decode(), fields))
        return entries


# ---- processes ---------------------------------------------------------------

class Process:
    """A child process whose output goes to a log file in the scratch folder."""

    def __init__(self, name, argv, log_path):
        self.name = name
        self.log_path = log_path
        self.log = open(log_path, "ab")
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log,
                                         stderr=subprocess.STDOUT)
        except BaseException:
            self.log.close()
            raise

    def alive(self):
        return self.proc.poll() is None

    def listens_on(self, port):
        """Whether this very process listens on port (not another that took it)."""
        return self.alive() and listened_by(port, self.proc.pid)

    def stop(self):
        """SIGTERM, wait, SIGKILL if it outlives STOP_TIMEOUT; the exit status
        (negative: killed by that signal), or None when it had to be killed."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.log.close()
                return None
        self.log.close()
        return self.proc.returncode

    def log_tail(self, lines=30):
        try:
            with open(self.log_path, "rb") as f:
                text = f.read().decode(errors="replace")
        except OSError as e:
            return f"({self.log_path}: {e})"
        return "\n".join(text.splitlines()[-lines:])


def wait_until(what, ready, process, timeout=START_TIMEOUT):
    """Polls ready() until it is true; fails early if process died."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if not process.alive():
            raise ProcessExited(f"{process.name} exited ({process.proc.returncode}) before "
                                f"{what}:\n{process.log_tail()}")
        try:
            if ready():
                return
        except Exception as e:  # not up yet: remember why, try again
            last = e
        time.sleep(0.05)
    raise CheckFailed(f"{what} not within {timeout}s (last: {last}):\n{process.log_tail()}")


def on_free_port(start):
    """start(port) on a free port, tried again on another should the process
    die first (a server outside the claiming scheme may take a port between
    our claim and its bind)."""
    for attempt in range(3):
        try:
            return start(free_port())
        except ProcessExited:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def start_redis(scratch, port=None):
    """A redis-server on port (a free one when None); (process, port)."""
    if port is None:
        return on_free_port(lambda p: start_redis(scratch, p))
    data = os.path.join(scratch, "redis")
    os.makedirs(data, exist_ok=True)
    proc = Process("redis-server",
                   ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                    "--save", "", "--appendonly", "no", "--dir", data],
                   os.path.join(scratch, "redis.log"))

    def pong():
        if not proc.listens_on(port):
            return False
        client = RedisClient(port, timeout=1.0)
        try:
            return client.command("PING") == b"PONG"
        finally:
            client.close()

    try:
        wait_until("redis-server answering PING", pong, proc)
    except BaseException:
        proc.stop()
        raise
    return proc, port


def tcp_accepts(port):
    with socket.create_connection(("127.0.0.1", port), timeout=1.0):
        return True


def start_service(scratch, redis_port, stubs, extra_args=(), credentials=None):
    """tracseq-events on a free port, SERVING: (process, target, channel).

    credentials: grpc.ChannelCredentials for a TLS port (None: plaintext)."""
    return on_free_port(
        lambda p: start_service_on(p, scratch, redis_port, stubs, extra_args, credentials))


def start_service_on(port, scratch, redis_port, stubs, extra_args, credentials=None):
    import grpc

    # Every setting the tests rely on is a flag: flags win over a
    # developer's environment (VALIDATION_MODE=strict, ...).
    argv = [env_path("TSE_SERVICE_BIN"), f"--listen=127.0.0.1:{port}",
            f"--redis-url=redis://127.0.0.1:{redis_port}", "--log-format=text",
            "--validation-mode=lenient", "--shutdown-grace=5s"] + list(extra_args)
    proc = Process("tracseq-events", argv, os.path.join(scratch, "service.log"))
    target = f"127.0.0.1:{port}"
    # A channel whose first connection is refused stays failed for seconds
    # (gRPC's reconnect backoff), so it is made once the port accepts.
    try:
        wait_until(f"{target} accepting connections",
                   lambda: proc.listens_on(port) and tcp_accepts(port), proc)
    except BaseException:
        proc.stop()
        raise
    if credentials is None:
        channel = grpc.insecure_channel(target)
    else:
        channel = grpc.secure_channel(target, credentials)
    health = stubs.health_pb2_grpc.HealthStub(channel)
    serving = stubs.health_pb2.HealthCheckResponse.SERVING

    def is_serving():
        request = stubs.health_pb2.HealthCheckRequest(service="")
        return health.Check(request, timeout=1.0).status == serving

    try:
        wait_until(f"health Check SERVING on {target}", is_serving, proc)
    except BaseException:
        channel.close()
        proc.stop()
        raise
    return proc, target, channel


class Stack:
    """redis-server + tracseq-events + generated stubs, for one test.

    with Stack("publish") as stack:  stack.stubs, stack.channel, stack.redis()
    On leaving, the channel is closed, the service gets SIGTERM and must exit 0
    (recorded as a check when a Checks is given), then Redis is stopped.
    """

    def __init__(self, test_name, checks=None, service_args=(), credentials=None):
        self.test_name = test_name
        self.checks = checks
        self.service_args = service_args
        self.credentials = credentials
        self.redis_proc = self.service = self.channel = None
        self.clients = []

    def __enter__(self):
        try:
            self.scratch = scratch_dir(self.test_name)
            self.proto_dir = os.path.join(env_path("TSE_SOURCE_DIR"), "proto")
            self.stub_dir = os.path.join(self.scratch, "stubs")
            generate_stubs(self.proto_dir, self.stub_dir)
            self.stubs = load_stubs(self.stub_dir)
            self.redis_proc, self.redis_port = start_redis(self.scratch)
            self.service, self.target, self.channel = start_service(
                self.scratch, self.redis_port, self.stubs, self.service_args, self.credentials)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, kind, value, tb):
        self.close()
        return False

    def redis(self):
        client = RedisClient(self.redis_port)
        self.clients.append(client)
        return client

    def stop_redis(self):
        """Stops Redis under the running service (to see how it copes)."""
        proc, self.redis_proc = self.redis_proc, None
        proc.stop()

    def restart_redis(self):
        """Starts a fresh, empty Redis on the port the service was given."""
        self.redis_proc, _ = start_redis(self.scratch, self.redis_port)

    def event_service(self):
        return self.stubs.service_pb2_grpc.EventServiceStub(self.channel)

    def health(self):
        return self.stubs.health_pb2_grpc.HealthStub(self.channel)

    def close(self):
        for client in self.clients:
            client.close()
        self.clients = []
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if self.service is not None:
            service, self.service = self.service, None
            rc = service.stop()
            if self.checks is not None:
                self.checks.record("service exits 0 on SIGTERM", rc == 0,
                                   f"exit status {rc}:\n{service.log_tail()}")
        if self.redis_proc is not None:
            self.redis_proc.stop()
            self.redis_proc = None


# ---- checks ------------------------------------------------------------------

class Checks:
    """Runs named checks, prints one line each, and the closing count."""

    def __init__(self, suite):
        self.suite = suite
        self.passed = 0
        self.failed = 0

    def record(self, name, ok, why=""):
        if ok:
            self.passed += 1
            print(f"ok   {name}", flush=True)
        else:
            self.failed += 1
            print(f"FAIL {name}: {why}", flush=True)

    def run(self, name, fn, *args):
        """Runs fn(*args); a raised exception fails this check only."""
        try:
            fn(*args)
        except CheckFailed as e:
            self.record(name, False, str(e))
        except Exception as e:  # an RpcError, a decode error: report, go on
            detail = traceback.format_exception_only(type(e), e)[-1].strip()
            if hasattr(e, "code") and hasattr(e, "details"):
                detail = f"RPC failed: {e.code()} {e.details()!r}"
            self.record(name, False, detail)
        else:
            self.record(name, True)

    def finish(self):
        """Prints the closing line; the process exit status to return."""
        print(f"{self.suite}: {self.passed} passed, {self.failed} failed", flush=True)
        return 0 if self.failed == 0 and self.passed > 0 else 1


def interrupted(signum, frame):
    raise SystemExit(f"interrupted by signal {signum}")


def main(suite, test_name, body, service_args=(), credentials=None):
    """Runs body(stack, checks) against a fresh stack; returns the exit status.

    A failure to set the stack up counts as one failed check, so the closing
    line always tells.
    """
    checks = Checks(suite)
    # ctest stops a test that outlives its TIMEOUT with a signal: turn it into
    # an exception so the stack's processes are still stopped.
    signal.signal(signal.SIGTERM, interrupted)
    try:
        with Stack(test_name, checks, service_args, credentials) as stack:
            body(stack, checks)
    except Exception as e:
        checks.record("set up redis-server and tracseq-events", False,
                      f"{type(e).__name__}: {e}")
    return checks.finish()
