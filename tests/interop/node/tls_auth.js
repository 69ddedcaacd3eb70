'use strict';
// Interop: a Node.js client (@grpc/grpc-js) over TLS with a bearer token
// (issue 12), against a private tracseq-events started with a server
// certificate (a throwaway CA made with the openssl command line) and a
// tokens file holding only the SHA-256 of each token, and a private
// redis-server.
//
// The token travels the way a Node client would send it: call credentials
// (grpc.credentials.createFromMetadataGenerator) combined with the TLS
// channel credentials (grpc.credentials.createSsl with the CA). Checks:
// publish within the identity's rights is stored; a type outside its publish
// patterns and another source_service are PERMISSION_DENIED; no token and an
// unknown token are UNAUTHENTICATED; a subscription wider than its subscribe
// patterns is PERMISSION_DENIED, one within them is owned by it and its
// event can be pulled; a plaintext client and one that does not trust the
// CA never reach the service (UNAVAILABLE); health needs no token.
//
// Prints one line per check and "node interop: N passed, M failed"; exits 1
// when any check failed.

const childProcess = require('child_process');
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const { check, checkEqual, need, loadProtos, unary, main } = require('./support');

const TOKEN = `tse_${crypto.randomBytes(24).toString('base64url')}`;
const IDENTITY = 'node-lims';
const SUB = 'node-tls-samples';
const TIMEOUT_MS = 10000;
// Calls that cannot connect fail at their deadline at the latest.
const FAIL_MS = 3000;

// A CA, a server certificate it signs for 127.0.0.1 and localhost, and an
// unrelated CA; EC P-256 keys.
function makeCertificates(dir) {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  const openssl = (args) => childProcess.execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  for (const ca of ['ca', 'other-ca']) {
    openssl(['req', '-x509', ...ec, '-days', '2', '-subj', `/CN=${ca}`, '-keyout', `${ca}.key`,
             '-out', `${ca}.pem`]);
  }
  fs.writeFileSync(path.join(dir, 'server.ext'),
                   'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  openssl(['req', ...ec, '-subj', '/CN=localhost', '-keyout', 'server.key', '-out', 'server.csr']);
  openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key',
           '-CAcreateserial', '-days', '2', '-extfile', 'server.ext', '-out', 'server.pem']);
}

let certDir = null;

// The service's flags: TLS and the tokens file, written into scratch first.
function serviceSetup(scratch) {
  const grpc = need('@grpc/grpc-js');
  certDir = scratch;
  makeCertificates(scratch);
  const digest = crypto.createHash('sha256').update(TOKEN).digest('hex');
  const tokens = path.join(scratch, 'tokens');
  fs.writeFileSync(tokens, `${IDENTITY} sha256=${digest} publish=sample.* subscribe=sample.*\n`);
  return {
    args: [`--tls-cert=${path.join(scratch, 'server.pem')}`,
           `--tls-key=${path.join(scratch, 'server.key')}`, `--auth-tokens-file=${tokens}`],
    credentials: grpc.credentials.createSsl(fs.readFileSync(path.join(scratch, 'ca.pem'))),
  };
}

// Channel credentials: TLS trusting ca (a file of certDir; null:
// plaintext), with token as call credentials (null: none).
function credentials(ca, token) {
  const grpc = need('@grpc/grpc-js');
  if (ca === null) return grpc.credentials.createInsecure();
  const ssl = grpc.credentials.createSsl(fs.readFileSync(path.join(certDir, ca)));
  if (token === null) return ssl;
  const bearer = grpc.credentials.createFromMetadataGenerator((params, callback) => {
    const md = new grpc.Metadata();
    md.add('authorization', `Bearer ${token}`);
    callback(null, md);
  });
  return grpc.credentials.combineChannelCredentials(ssl, bearer);
}

function event(eventType = 'sample.created', source = IDENTITY) {
  return { event_type: eventType, source_service: source, data: { fields: {} } };
}

// The call's gRPC status code (0 when it succeeded).
async function codeOf(promise) {
  try {
    await promise;
    return 0;
  } catch (e) {
    if (typeof e.code !== 'number') throw e;
    return e.code;
  }
}

async function body(stack, checks) {
  const grpc = need('@grpc/grpc-js');
  const { status } = grpc;
  const pkg = loadProtos(['tracseq/events/v1/service.proto', 'grpc/health/v1/health.proto']);
  const Service = pkg.tracseq.events.v1.EventService;
  const client = (ca, token) => stack.track(new Service(stack.target, credentials(ca, token)));
  const lims = client('ca.pem', TOKEN);
  const nobody = client('ca.pem', null);
  const stranger = client('ca.pem', 'tse_not-a-known-token');

  await checks.run('TLS with the token: publish within its rights is stored', async () => {
    const answer = await unary(lims, 'Publish', { event: event() }, TIMEOUT_MS);
    check(/^\d+-\d+$/.test(answer.stream_id), `stream id ${answer.stream_id}`);
  });
  await checks.run('a type outside its publish patterns is PERMISSION_DENIED', async () => {
    checkEqual(await codeOf(unary(lims, 'Publish', { event: event('auth.user_logged_in') })),
               status.PERMISSION_DENIED, 'status');
  });
  await checks.run('another source_service is PERMISSION_DENIED', async () => {
    checkEqual(await codeOf(unary(lims, 'Publish', { event: event('sample.created', 'lims') })),
               status.PERMISSION_DENIED, 'status');
  });
  await checks.run('no token, or an unknown one, is UNAUTHENTICATED', async () => {
    checkEqual(await codeOf(unary(nobody, 'Publish', { event: event() })),
               status.UNAUTHENTICATED, 'no token');
    checkEqual(await codeOf(unary(stranger, 'Publish', { event: event() })),
               status.UNAUTHENTICATED, 'unknown token');
  });
  await checks.run('subscriptions: within its patterns, owned; wider ones refused', async () => {
    const wide = { name: 'node-tls-all', event_types: ['*'], max_delivery_attempts: 5 };
    checkEqual(await codeOf(unary(lims, 'CreateSubscription', { subscription: wide })),
               status.PERMISSION_DENIED, 'a subscription to *');
    const mine = { name: SUB, event_types: ['sample.*'], max_delivery_attempts: 5,
                   start: 'START_POSITION_EARLIEST' };
    const created = await unary(lims, 'CreateSubscription', { subscription: mine });
    checkEqual(created.owner, IDENTITY, 'owner');
    await unary(lims, 'Publish', { event: event('sample.received') });
    const pulled = await unary(lims, 'Pull', { subscription: SUB, max_events: 10, wait_ms: 5000 });
    check(pulled.deliveries.length >= 1, 'a delivery pulled over TLS with the token');
    checkEqual(await codeOf(unary(nobody, 'Pull', { subscription: SUB, max_events: 1 })),
               status.UNAUTHENTICATED, 'pull without a token');
  });
  await checks.run('plaintext, or a client that does not trust the CA, never connects',
                   async () => {
    const plain = client(null, null);
    const untrusting = client('other-ca.pem', TOKEN);
    checkEqual(await codeOf(unary(plain, 'Publish', { event: event() }, FAIL_MS)),
               status.UNAVAILABLE, 'plaintext client');
    checkEqual(await codeOf(unary(untrusting, 'Publish', { event: event() }, FAIL_MS)),
               status.UNAVAILABLE, 'a client trusting another CA');
  });
  await checks.run('health over TLS needs no token', async () => {
    const health = stack.track(new pkg.grpc.health.v1.Health(stack.target,
                                                             credentials('ca.pem', null)));
    checkEqual((await unary(health, 'Check', { service: '' })).status, 'SERVING', 'health');
  });
}

main('node interop', 'node_tls_auth', body, serviceSetup);
