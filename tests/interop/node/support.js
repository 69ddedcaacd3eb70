'use strict';
// Shared machinery of the Node.js interop tests (tests/interop/node/*.js).
//
// What every Node interop test needs: the npm packages installed into the
// build tree by the interop/node_deps ctest fixture (install_deps.js), a
// private redis-server and a private tracseq-events, each on a 127.0.0.1 port
// of its own, a tiny RESP client (so no Redis package is needed), and a
// check runner that prints one line per check and a closing
// "node interop: N passed, M failed".
//
// Invariants:
// - Packages come only from $TSE_NODE_DIR/node_modules (the build tree), never
//   from a node_modules folder that happens to sit above the source tree.
// - Nothing listens on anything but 127.0.0.1, and every process started here
//   is stopped (SIGTERM, then SIGKILL after a bound) on every way out: normal
//   end, a failed check, an exception, SIGTERM/SIGINT/SIGHUP; when node itself
//   is killed, the children get SIGKILL from the kernel (setpriv --pdeathsig).
// - Every file a test writes lives in its own scratch folder under the build
//   tree ($TSE_INTEROP_SCRATCH/<test>), emptied when the test starts, so tests
//   may run in parallel.
//
// Environment (set by tests/interop/CMakeLists.txt): TSE_SERVICE_BIN (the
// tracseq-events binary), TSE_SOURCE_DIR (for proto/), TSE_INTEROP_SCRATCH (a
// folder under the build tree), TSE_NODE_DIR (where npm installed packages).

const childProcess = require('child_process');
const fs = require('fs');
const net = require('net');
const path = require('path');
const util = require('util');
const { createRequire } = require('module');

// Milliseconds to wait for a process to come up, or to go away after SIGTERM.
const START_TIMEOUT_MS = 15000;
const STOP_TIMEOUT_MS = 15000;
const SETPRIV = '/usr/bin/setpriv';

class CheckFailed extends Error {}

// A process we started died before it was ready.
class ProcessExited extends CheckFailed {}

function check(condition, message) {
  if (!condition) throw new CheckFailed(message);
}

function show(value) {
  return util.inspect(value, { depth: 6, breakLength: Infinity, maxArrayLength: 20 });
}

function checkEqual(actual, expected, what) {
  if (!util.isDeepStrictEqual(actual, expected)) {
    throw new CheckFailed(`${what}: got ${show(actual)}, want ${show(expected)}`);
  }
}

// Every key of `want` has its value in `got` (recursively; arrays whole).
// Decoded messages carry defaults and oneof markers the sender never set, so
// "what was sent came back" is a subset match, not equality.
function checkSubset(got, want, what) {
  if (want === null || typeof want !== 'object') {
    checkEqual(got, want, what);
    return;
  }
  check(got !== null && typeof got === 'object', `${what}: got ${show(got)}, want ${show(want)}`);
  if (Array.isArray(want)) {
    check(Array.isArray(got) && got.length === want.length,
          `${what}: got ${show(got)}, want ${show(want)}`);
  }
  for (const key of Object.keys(want)) checkSubset(got[key], want[key], `${what}.${key}`);
}

function envPath(name) {
  const value = process.env[name];
  if (!value) {
    throw new CheckFailed(`environment variable ${name} is not set (run the test through ctest)`);
  }
  return value;
}

// A package from the build tree's node_modules (see the invariants above).
function need(name) {
  const base = path.join(envPath('TSE_NODE_DIR'), 'node_modules', 'noop.js');
  return createRequire(base)(name);
}

function protoDir() {
  return path.join(envPath('TSE_SOURCE_DIR'), 'proto');
}

// Loads .proto files (paths relative to proto/) with proto-loader, the way a
// Node client would: field names as in the .proto, 64-bit numbers as strings,
// enums by name, defaults filled, the set member of a oneof named.
function loadProtos(files) {
  const protoLoader = need('@grpc/proto-loader');
  const grpc = need('@grpc/grpc-js');
  const definition = protoLoader.loadSync(files, {
    includeDirs: [protoDir()], keepCase: true, longs: String, enums: String, defaults: true,
    oneofs: true,
  });
  return grpc.loadPackageDefinition(definition);
}

// The same options, for messages decoded by protobufjs directly.
const TO_OBJECT = { longs: String, enums: String, defaults: true, oneofs: true };

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function scratchDir(testName) {
  const dir = path.join(envPath('TSE_INTEROP_SCRATCH'), testName);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

// Ports: the scheme of tests/support/ports.h, so that C, Python and Node
// tests running side by side never share one: outside the kernel's ephemeral
// range (no connect() goes there), each claimed with a POSIX record lock on
// its byte of a lock file all of them share, held until this process exits.
// Node cannot take such locks: ../port_claimer.py, started once, claims them
// and holds them until its stdin closes (when node exits, crash included).
let claimer = null;

function portClaimer() {
  if (claimer !== null) return claimer;
  const script = path.join(__dirname, '..', 'port_claimer.py');
  const child = childProcess.spawn('/usr/bin/python3', ['-E', '-s', script],
                                   { stdio: ['pipe', 'pipe', 'inherit'] });
  claimer = { child, waiting: [], buffered: '' };
  const failAll = (why) => {
    for (const w of claimer.waiting.splice(0)) w.reject(new CheckFailed(`port claimer: ${why}`));
  };
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk) => {
    claimer.buffered += chunk;
    let nl;
    while ((nl = claimer.buffered.indexOf('\n')) >= 0) {
      const line = claimer.buffered.slice(0, nl);
      claimer.buffered = claimer.buffered.slice(nl + 1);
      const w = claimer.waiting.shift();
      if (w !== undefined) w.resolve(Number(line));
    }
    if (claimer.waiting.length === 0) child.stdout.unref();
  });
  child.on('exit', (code, signal) => failAll(`exited (${signal || code})`));
  child.on('error', (e) => failAll(e.message));
  // It must not keep node alive: only a claim in progress does.
  child.unref();
  child.stdin.unref();
  child.stdout.unref();
  return claimer;
}

// A loopback port nothing listens on, claimed until this process exits.
function freePort() {
  const c = portClaimer();
  return new Promise((resolve, reject) => {
    c.waiting.push({ resolve, reject });
    c.child.stdout.ref();
    c.child.stdin.write('claim\n');
  });
}

// Whether process pid has a TCP socket listening on port: the process a test
// started, not another one that took the port.
function listenedBy(port, pid) {
  const inodes = new Set();
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (e) {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length > 9 && parseInt(f[1].split(':').pop(), 16) === port && f[3] === '0A') {
        inodes.add(f[9]);
      }
    }
  }
  if (inodes.size === 0) return false;
  let fds;
  try {
    fds = fs.readdirSync(`/proc/${pid}/fd`);
  } catch (e) {
    return false;
  }
  return fds.some((fd) => {
    try {
      const target = fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
      return target.startsWith('socket:[') && inodes.has(target.slice(8, -1));
    } catch (e) {
      return false;
    }
  });
}

// A grpc-js deadline ms from now.
function deadline(ms) {
  return Date.now() + ms;
}

// A unary call as a promise.
function unary(client, method, request, timeoutMs = 10000, metadata = null) {
  const grpc = need('@grpc/grpc-js');
  return new Promise((resolve, reject) => {
    client[method](request, metadata || new grpc.Metadata(), { deadline: deadline(timeoutMs) },
                   (error, response) => (error ? reject(error) : resolve(response)));
  });
}

// ---- Redis ------------------------------------------------------------------

class RedisError extends Error {}

// Parses one RESP2 reply at buf[offset...]: [value, next offset], or null
// when the buffer does not hold all of it yet. Bulk strings stay Buffers.
function parseReply(buf, offset) {
  const eol = buf.indexOf('\r\n', offset);
  if (eol < 0) return null;
  const kind = String.fromCharCode(buf[offset]);
  const rest = buf.toString('utf8', offset + 1, eol);
  const next = eol + 2;
  if (kind === '+') return [rest, next];
  if (kind === '-') return [new RedisError(rest), next];
  if (kind === ':') return [Number(rest), next];
  if (kind === '$') {
    const n = Number(rest);
    if (n < 0) return [null, next];
    if (buf.length < next + n + 2) return null;
    return [Buffer.from(buf.subarray(next, next + n)), next + n + 2];
  }
  if (kind === '*') {
    const n = Number(rest);
    if (n < 0) return [null, next];
    const items = [];
    let at = next;
    for (let i = 0; i < n; i++) {
      const item = parseReply(buf, at);
      if (item === null) return null;
      items.push(item[0]);
      at = item[1];
    }
    return [items, at];
  }
  throw new Error(`unexpected RESP reply ${show(buf.toString('utf8', offset, eol))}`);
}

// One RESP2 connection: await command('XLEN', key). Replies come in order, so
// a FIFO of waiters is all the bookkeeping needed.
class RedisClient {
  static connect(port, timeoutMs = 5000) {
    return new Promise((resolve, reject) => {
      const socket = net.createConnection({ host: '127.0.0.1', port });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`Redis on ${port}: no connection within ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      socket.once('connect', () => {
        clearTimeout(timer);
        resolve(new RedisClient(socket));
      });
    });
  }

  constructor(socket) {
    this.socket = socket;
    this.buf = Buffer.alloc(0);
    this.waiting = [];
    socket.on('data', (chunk) => this.received(chunk));
    socket.on('error', (e) => this.failAll(e));
    socket.on('close', () => this.failAll(new Error('Redis closed the connection')));
  }

  received(chunk) {
    this.buf = Buffer.concat([this.buf, chunk]);
    for (;;) {
      const parsed = parseReply(this.buf, 0);
      if (parsed === null) return;
      this.buf = this.buf.subarray(parsed[1]);
      const waiter = this.waiting.shift();
      if (!waiter) continue;
      if (parsed[0] instanceof RedisError) waiter.reject(parsed[0]);
      else waiter.resolve(parsed[0]);
    }
  }

  failAll(error) {
    for (const waiter of this.waiting.splice(0)) waiter.reject(error);
  }

  command(...args) {
    const parts = [Buffer.from(`*${args.length}\r\n`)];
    for (const arg of args) {
      const data = Buffer.isBuffer(arg) ? arg : Buffer.from(String(arg));
      parts.push(Buffer.from(`$${data.length}\r\n`), data, Buffer.from('\r\n'));
    }
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.socket.write(Buffer.concat(parts));
    });
  }

  // Entries as [entry id, {field: Buffer}] in stream order.
  async xrange(key, start = '-', end = '+') {
    const reply = await this.command('XRANGE', key, start, end);
    return reply.map(([id, flat]) => {
      const fields = {};
      for (let i = 0; i < flat.length; i += 2) fields[flat[i].toString()] = flat[i + 1];
      return [id.toString(), fields];
    });
  }

  close() {
    this.socket.destroy();
  }
}

// ---- processes --------------------------------------------------------------

const running = new Set();

// A child process whose output goes to a log file in the scratch folder.
class Process {
  constructor(name, argv, logPath) {
    this.name = name;
    this.logPath = logPath;
    const log = fs.openSync(logPath, 'a');
    // setpriv --pdeathsig: the kernel kills the child should node die
    // without running its handlers (SIGKILL, a crash in native code).
    const wrapped = fs.existsSync(SETPRIV) ? [SETPRIV, '--pdeathsig', 'KILL', ...argv] : argv;
    try {
      this.child = childProcess.spawn(wrapped[0], wrapped.slice(1),
                                      { stdio: ['ignore', log, log] });
    } finally {
      fs.closeSync(log);
    }
    this.exitStatus = null;
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        this.exitStatus = signal ? `signal ${signal}` : code;
        running.delete(this);
        resolve(this.exitStatus);
      });
      this.child.on('error', (e) => {
        this.exitStatus = `spawn failed: ${e.message}`;
        running.delete(this);
        resolve(this.exitStatus);
      });
    });
    running.add(this);
  }

  alive() {
    return this.exitStatus === null;
  }

  // SIGTERM, wait, SIGKILL if it outlives STOP_TIMEOUT_MS: the exit status
  // (a code, or "signal X"), or null when it had to be killed.
  async stop() {
    if (!this.alive()) return this.exitStatus;
    this.child.kill('SIGTERM');
    const timedOut = Symbol('timeout');
    let timer;
    const first = await Promise.race([
      this.exited,
      new Promise((resolve) => { timer = setTimeout(() => resolve(timedOut), STOP_TIMEOUT_MS); }),
    ]);
    clearTimeout(timer);
    if (first !== timedOut) return first;
    this.child.kill('SIGKILL');
    await this.exited;
    return null;
  }

  logTail(lines = 30) {
    try {
      return fs.readFileSync(this.logPath, 'utf8').split('\n').slice(-lines).join('\n');
    } catch (e) {
      return `(${this.logPath}: ${e.message})`;
    }
  }
}

// Whatever still runs when node exits gets SIGKILL: the last resort of the
// "every process is stopped" invariant ('exit' handlers cannot wait).
process.on('exit', () => {
  for (const proc of running) {
    try {
      proc.child.kill('SIGKILL');
    } catch (e) {
      // already gone
    }
  }
});

// Polls ready() (sync or async) until it is true; fails early if proc died.
async function waitUntil(what, ready, proc, timeoutMs = START_TIMEOUT_MS) {
  const limit = Date.now() + timeoutMs;
  let last = null;
  while (Date.now() < limit) {
    if (!proc.alive()) {
      throw new ProcessExited(
        `${proc.name} exited (${proc.exitStatus}) before ${what}:\n${proc.logTail()}`);
    }
    try {
      if (await ready()) return;
    } catch (e) {
      last = e; // not up yet: remember why, try again
    }
    await sleep(50);
  }
  throw new CheckFailed(
    `${what} not within ${timeoutMs} ms (last: ${last && last.message}):\n${proc.logTail()}`);
}

// start(port) on a free port, tried again on another should the process die
// first (a server outside the claiming scheme may take the port between our
// claim and its bind).
async function onFreePort(start) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await start(await freePort());
    } catch (e) {
      if (!(e instanceof ProcessExited) || attempt === 2) throw e;
    }
  }
}

async function startRedisOn(scratch, port) {
  const data = path.join(scratch, 'redis');
  fs.mkdirSync(data, { recursive: true });
  const proc = new Process('redis-server',
                           ['redis-server', '--port', String(port), '--bind', '127.0.0.1',
                            '--save', '', '--appendonly', 'no', '--dir', data],
                           path.join(scratch, 'redis.log'));
  const pong = async () => {
    if (!listenedBy(port, proc.child.pid)) return false;
    const client = await RedisClient.connect(port, 1000);
    try {
      return (await client.command('PING')) === 'PONG';
    } finally {
      client.close();
    }
  };
  try {
    await waitUntil('redis-server answering PING', pong, proc);
  } catch (e) {
    await proc.stop();
    throw e;
  }
  return { proc, port };
}

function tcpAccepts(port) {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', reject);
  });
}

// credentials: the channel credentials of the health check that says the
// service is up (null: plaintext).
async function startServiceOn(port, scratch, redisPort, extraArgs, credentials = null) {
  const grpc = need('@grpc/grpc-js');
  // Every setting the tests rely on is a flag: flags win over a developer's
  // environment (VALIDATION_MODE=strict, ...).
  const argv = [envPath('TSE_SERVICE_BIN'), `--listen=127.0.0.1:${port}`,
                `--redis-url=redis://127.0.0.1:${redisPort}`, '--log-format=text',
                '--validation-mode=lenient', '--shutdown-grace=5s', ...extraArgs];
  const proc = new Process('tracseq-events', argv, path.join(scratch, 'service.log'));
  const target = `127.0.0.1:${port}`;
  let health = null;
  try {
    // A channel whose first connection is refused waits out gRPC's reconnect
    // backoff, so the client is made once the port accepts.
    await waitUntil(`${target} accepting connections`,
                    async () => listenedBy(port, proc.child.pid) && tcpAccepts(port), proc);
    const pkg = loadProtos(['grpc/health/v1/health.proto']);
    health = new pkg.grpc.health.v1.Health(target,
                                           credentials || grpc.credentials.createInsecure());
    const serving = async () => {
      const answer = await unary(health, 'Check', { service: '' }, 1000);
      return answer.status === 'SERVING';
    };
    await waitUntil(`health Check SERVING on ${target}`, serving, proc);
  } catch (e) {
    await proc.stop();
    throw e;
  } finally {
    if (health !== null) health.close();
  }
  return { proc, target };
}

// redis-server + tracseq-events for one test. stack.target is the service's
// host:port; stack.redis() a new RESP connection (closed with the stack);
// stack.track(client) closes a gRPC client with the stack. serviceArgs: the
// service's extra flags, or a function of the scratch folder returning
// { args, credentials } (files it writes there first, such as certificates
// and a tokens file; credentials: what the health check connects with).
class Stack {
  constructor(testName, checks, serviceArgs = []) {
    this.testName = testName;
    this.checks = checks;
    this.serviceArgs = serviceArgs;
    this.redisProc = null;
    this.service = null;
    this.closers = [];
  }

  async open() {
    this.scratch = scratchDir(this.testName);
    const redis = await onFreePort((port) => startRedisOn(this.scratch, port));
    this.redisProc = redis.proc;
    this.redisPort = redis.port;
    let args = this.serviceArgs;
    let credentials = null;
    if (typeof args === 'function') ({ args, credentials } = args(this.scratch));
    const service = await onFreePort(
      (port) => startServiceOn(port, this.scratch, this.redisPort, args, credentials));
    this.service = service.proc;
    this.target = service.target;
  }

  async redis() {
    const client = await RedisClient.connect(this.redisPort);
    this.closers.push(() => client.close());
    return client;
  }

  track(client) {
    this.closers.push(() => client.close());
    return client;
  }

  // Clients first, then the service (SIGTERM; must exit 0, recorded as a
  // check), then Redis. Safe to call twice and after a failed open().
  async close() {
    for (const close of this.closers.splice(0)) {
      try {
        close();
      } catch (e) {
        // closing is best effort
      }
    }
    if (this.service !== null) {
      const service = this.service;
      this.service = null;
      const status = await service.stop();
      if (this.checks) {
        this.checks.record('service exits 0 on SIGTERM', status === 0,
                           `exit status ${status}:\n${service.logTail()}`);
      }
    }
    if (this.redisProc !== null) {
      const redis = this.redisProc;
      this.redisProc = null;
      await redis.stop();
    }
  }
}

// ---- checks -----------------------------------------------------------------

// Runs named checks, prints one line each, and the closing count.
class Checks {
  constructor(suite) {
    this.suite = suite;
    this.passed = 0;
    this.failed = 0;
  }

  record(name, ok, why = '') {
    if (ok) {
      this.passed += 1;
      console.log(`ok   ${name}`);
    } else {
      this.failed += 1;
      console.log(`FAIL ${name}: ${why}`);
    }
  }

  // Runs await fn(); a thrown error fails this check only.
  async run(name, fn) {
    try {
      await fn();
    } catch (e) {
      this.record(name, false, describe(e));
      return false;
    }
    this.record(name, true);
    return true;
  }

  finish() {
    console.log(`${this.suite}: ${this.passed} passed, ${this.failed} failed`);
    return this.failed === 0 && this.passed > 0 ? 0 : 1;
  }
}

function describe(e) {
  if (e instanceof CheckFailed) return e.message;
  if (e && typeof e.code === 'number' && 'details' in e) {
    return `RPC failed: code ${e.code} ${show(e.details)}`;
  }
  return e && e.stack ? e.stack : String(e);
}

// A check that depends on an earlier one says so instead of failing obscurely.
function needs(value, what) {
  check(value !== null && value !== undefined, `skipped: ${what} failed earlier`);
  return value;
}

// Runs await body(stack, checks) against a fresh stack and exits with the
// status. A failure to set the stack up counts as one failed check, so the
// closing line always tells. A signal (ctest's timeout, ^C) stops the stack
// first.
function main(suite, testName, body, serviceArgs = []) {
  const checks = new Checks(suite);
  const stack = new Stack(testName, checks, serviceArgs);
  let stopping = false;
  const interrupted = (signal) => {
    if (stopping) return;
    stopping = true;
    console.log(`FAIL interrupted by ${signal}`);
    stack.close().finally(() => process.exit(1));
  };
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(signal, interrupted);
  (async () => {
    let opened = false;
    try {
      await stack.open();
      opened = true;
      await body(stack, checks);
    } catch (e) {
      checks.record(opened ? 'test body' : 'set up redis-server and tracseq-events', false,
                    describe(e));
    } finally {
      await stack.close();
    }
    if (!stopping) process.exit(checks.finish());
  })();
}

module.exports = {
  CheckFailed, check, checkEqual, checkSubset, show, need, needs, loadProtos, protoDir, TO_OBJECT,
  sleep, unary, deadline, RedisClient, Stack, Checks, main,
};
