'use strict';
// Interop: a Node.js publisher and subscriber (@grpc/grpc-js with
// @grpc/proto-loader loading proto/ at test time) against a private
// tracseq-events + redis-server.
//
// A durable subscription (sample.*, storage.temperature_alert,
// node_interop.*; EARLIEST; 1000 ms ack deadline; 5 attempts) is created;
// 502 events go through one PublishStream: 500 valid ones of five types
// (typed sample.created, sample.status_changed, storage.temperature_alert,
// auth.user_logged_in, and generic Struct data) and 2 invalid ones in the
// middle. Every request gets one answer, in order; the invalid ones an error
// naming the field, the others their ids. Redis then holds exactly the valid
// ones, per stream key, in publish order, each decoding to what was sent. A
// Subscribe stream gets every matching event (backlog, then a live batch)
// exactly once with its envelope and typed payload intact, and never an
// auth.* one; the test acks all but one, which comes back with
// delivery_attempt 2 after the deadline; once that is acked too nothing more
// arrives and GetSubscription shows pending 0 and the client's counts.
//
// Checks build on each other (one subscription, counted from start to end);
// a check whose input failed says so. Prints one line per check and
// "node interop: N passed, M failed"; exits 1 when any check failed.

const crypto = require('crypto');
const path = require('path');
const {
  CheckFailed, check, checkEqual, checkSubset, show, need, needs, loadProtos, protoDir, TO_OBJECT,
  unary, main,
} = require('./support');

const SUB = 'node-main';
const SUB_TYPES = ['sample.*', 'storage.temperature_alert', 'node_interop.*'];
const DEADLINE_MS = 1000;
const MAX_ATTEMPTS = 5;
const VALID = 500;
// Positions (among the 502 requests) of the two invalid events, and the
// field each error must name.
const INVALID = new Map([[123, 'event.priority'], [377, 'event.event_type']]);
const LIVE = 20;
const SOURCE = 'interop-node';
const STREAM_ID_RE = /^\d+-\d+$/;
// Slack under a lower time bound: the client sees a delivery a little after
// the server sent it, so the gap it measures between two may be shorter.
const SLACK_MS = 100;

function streamKey(eventType, priority) {
  return `tracseq:events:{${eventType}}:p${priority}`;
}

function matches(eventType) {
  return eventType.startsWith('sample.') || eventType === 'storage.temperature_alert' ||
         eventType.startsWith('node_interop.');
}

const AT = { seconds: '1718700000', nanos: 5000000 };

// google.protobuf.Value members are camelCase (numberValue, ...) even with
// keepCase: proto-loader takes the well-known types from protobufjs's bundled
// definitions, which keepCase does not touch. Snake-case names here would be
// dropped silently on serialising.

// The n-th valid event: five kinds in turn, each with its own priority.
function makeEvent(n) {
  const base = {
    id: crypto.randomUUID(), source_service: SOURCE, correlation_id: crypto.randomUUID(),
    causation_id: crypto.randomUUID(), subject: `sample-${n}`, metadata: { seq: String(n) },
  };
  const sampleId = crypto.randomUUID();
  const barcode = `SAM-NODE-${String(n).padStart(4, '0')}`;
  switch (n % 5) {
    case 0:
      return { ...base, event_type: 'sample.created', priority: 2, sample_created: {
        sample_id: sampleId, barcode, sample_type: 'DNA', submitter_id: crypto.randomUUID(),
        lab_id: crypto.randomUUID(), created_at: AT,
        metadata: { volume_ul: { numberValue: 12.5 }, tube: { stringValue: 'A1' } } } };
    case 1:
      return { ...base, event_type: 'sample.status_changed', priority: 3,
               sample_status_changed: { sample_id: sampleId, barcode, old_status: 'received',
                                        new_status: 'validated', changed_by: 'node',
                                        reason: 'interop', changed_at: AT } };
    case 2:
      return { ...base, event_type: 'storage.temperature_alert', priority: 1,
               temperature_alert: { location_id: 'freezer-7', zone_name: '-80 zone',
                                    current_temperature: -61.25, target_temperature: -80,
                                    threshold_type: 'high', sensor_id: `s-${n}`, alert_at: AT } };
    case 3:
      return { ...base, event_type: 'auth.user_logged_in', priority: 3,
               user_logged_in: { user_id: `u-${n}`, username: 'nöde', session_id: `sess-${n}`,
                                 ip_address: '10.0.0.7', login_at: AT } };
    default:
      return { ...base, event_type: 'node_interop.generic', priority: 4, data: { fields: {
        n: { numberValue: n }, name: { stringValue: 'nöde ✓' }, ok: { boolValue: true },
        nested: { structValue: { fields: { list: { listValue: { values: [
          { numberValue: 1 }, { stringValue: 'two' }, { nullValue: 'NULL_VALUE' }] } } } } },
      } } };
  }
}

// The payload oneof member of a sent event.
function payloadOf(event) {
  for (const key of ['sample_created', 'sample_status_changed', 'temperature_alert',
                     'user_logged_in', 'data']) {
    if (key in event) return key;
  }
  throw new Error('event without payload');
}

// A delivered or stored event is the sent one: envelope, payload kind and
// every payload field the sender set; plus what the server stamps.
function checkEvent(got, sent, what) {
  for (const key of ['id', 'event_type', 'source_service', 'correlation_id', 'causation_id',
                     'subject', 'priority']) {
    checkEqual(got[key], sent[key], `${what}: ${key}`);
  }
  checkEqual(got.metadata, sent.metadata, `${what}: metadata`);
  checkEqual(got.version, '1.0', `${what}: version`);
  check(got.timestamp && Number(got.timestamp.seconds) > 1700000000,
        `${what}: no server timestamp (${show(got.timestamp)})`);
  const kind = payloadOf(sent);
  checkEqual(got.payload, kind, `${what}: payload kind`);
  checkSubset(got[kind], sent[kind], `${what}: ${kind}`);
}

// ---- state shared by the checks ---------------------------------------------

function newState(stack) {
  const grpc = need('@grpc/grpc-js');
  const pkg = loadProtos(['tracseq/events/v1/service.proto']);
  const service = stack.track(new pkg.tracseq.events.v1.EventService(
    stack.target, grpc.credentials.createInsecure()));
  // protobufjs, for decoding what Redis holds (loaded from proto/ too).
  const protobuf = need('protobufjs');
  const root = new protobuf.Root();
  root.resolvePath = (origin, target) => path.join(protoDir(), target);
  root.loadSync('tracseq/events/v1/event.proto', { keepCase: true });
  return {
    grpc, service, eventType: root.lookupType('tracseq.events.v1.Event'),
    sent: new Map(), // id -> {event, response}
    published: null, // the valid events of the PublishStream, in order
    created: null, stream: null, held: null, tally: { delivered: 0, acked: 0, redelivered: 0 },
    drained: null,
  };
}

// Sends events through one PublishStream (honouring back pressure); resolves
// with every answer, in arrival order.
function publishStream(st, events) {
  return new Promise((resolve, reject) => {
    const call = st.service.PublishStream({ deadline: Date.now() + 60000 });
    const answers = [];
    call.on('data', (response) => answers.push(response));
    call.on('error', reject);
    call.on('end', () => resolve(answers));
    let i = 0;
    const writeMore = () => {
      while (i < events.length) {
        if (!call.write({ event: events[i++] })) {
          call.once('drain', writeMore);
          return;
        }
      }
      call.end();
    };
    writeMore();
  });
}

async function createSubscription(st) {
  const spec = { name: SUB, event_types: SUB_TYPES, start: 'START_POSITION_EARLIEST',
                 ack_deadline_ms: DEADLINE_MS, max_delivery_attempts: MAX_ATTEMPTS };
  const created = await unary(st.service, 'CreateSubscription', { subscription: spec });
  checkEqual(created.name, SUB, 'name');
  checkEqual(created.event_types, SUB_TYPES, 'event_types');
  checkEqual(created.start, 'START_POSITION_EARLIEST', 'start');
  checkEqual(created.ack_deadline_ms, DEADLINE_MS, 'ack_deadline_ms');
  checkEqual(created.max_delivery_attempts, MAX_ATTEMPTS, 'max_delivery_attempts');
  check(created.created_at !== null, 'no created_at');
  st.created = created;
}

async function publishWithErrors(st) {
  const requests = [];
  const valid = [];
  for (let n = 0; requests.length < VALID + INVALID.size;) {
    const position = requests.length;
    if (INVALID.has(position)) {
      const bad = makeEvent(n);
      if (INVALID.get(position) === 'event.priority') bad.priority = 9;
      else bad.event_type = 'Node Interop';
      requests.push(bad);
    } else {
      const event = makeEvent(n++);
      requests.push(event);
      valid.push(event);
    }
  }
  const answers = await publishStream(st, requests);
  checkEqual(answers.length, requests.length, 'PublishStream answers');
  answers.forEach((answer, i) => {
    const what = `answer ${i}`;
    if (INVALID.has(i)) {
      check(answer.error !== null, `${what} (invalid) has no error: ${show(answer)}`);
      checkEqual(answer.error.code, 3, `${what}: error.code`);
      checkEqual(answer.error.field, INVALID.get(i), `${what}: error.field`);
      check(answer.error.message !== '', `${what}: error without message`);
      check(answer.event_id === '' && answer.stream_id === '',
            `${what}: a refused event has ids: ${show(answer)}`);
      return;
    }
    const sent = requests[i];
    check(answer.error === null, `${what}: unexpected error ${show(answer.error)}`);
    checkEqual(answer.event_id, sent.id, `${what}: event_id (answers out of order?)`);
    check(STREAM_ID_RE.test(answer.stream_id), `${what}: stream_id ${show(answer.stream_id)}`);
    checkEqual(answer.stream, streamKey(sent.event_type, sent.priority), `${what}: stream`);
    check(answer.schema_valid, `${what}: ${sent.event_type} answered schema_valid=false`);
    check(!answer.duplicate, `${what}: a first publish answered duplicate`);
    st.sent.set(sent.id, { event: sent, response: answer });
  });
  st.published = valid;
}

async function redisHoldsThem(st, stack) {
  const events = needs(st.published, 'the PublishStream');
  const redis = await stack.redis();
  const byKey = new Map();
  for (const event of events) {
    const key = streamKey(event.event_type, event.priority);
    if (!byKey.has(key)) byKey.set(key, []);
    byKey.get(key).push(event);
  }
  checkEqual(byKey.size, 5, 'stream keys written');
  for (const [key, sent] of byKey) {
    const entries = await redis.xrange(key);
    checkEqual(entries.length, sent.length, `entries in ${key}`);
    checkEqual(await redis.command('XLEN', key), sent.length, `XLEN ${key}`);
    entries.forEach(([entryId, fields], i) => {
      const what = `${key} entry ${i}`;
      const { response } = st.sent.get(sent[i].id);
      checkEqual(entryId, response.stream_id, `${what}: entry id vs answered stream_id`);
      checkEqual(Object.keys(fields).sort(), ['event', 'id', 'type'], `${what}: fields`);
      checkEqual(fields.id.toString(), sent[i].id, `${what}: id field (publish order?)`);
      checkEqual(fields.type.toString(), sent[i].event_type, `${what}: type field`);
      const stored = st.eventType.toObject(st.eventType.decode(fields.event), TO_OBJECT);
      checkEvent(stored, sent[i], what);
    });
  }
  // The refused events reached no stream: the streams Redis knows are these.
  const known = (await redis.command('SMEMBERS', 'tracseq:streams')).map(String).sort();
  checkEqual(known, [...byKey.keys()].sort(), 'SMEMBERS tracseq:streams');
}

// ---- a Subscribe stream -------------------------------------------------------

// One Subscribe call: deliveries (with their receipt time) and its end are
// queued; next() and quiet() read them with a time limit.
class Stream {
  constructor(st, first) {
    this.st = st;
    this.items = [];
    this.waiter = null;
    this.ended = null;
    this.call = st.service.Subscribe({ deadline: Date.now() + 110000 });
    this.call.on('data', (delivery) => this.push({ at: Date.now(), delivery }));
    this.call.on('error', (e) => this.push({ end: `${e.code} ${e.details}` }));
    this.call.on('end', () => this.push({ end: 'OK' }));
    this.call.write(first);
  }

  push(item) {
    this.items.push(item);
    if (this.waiter) this.waiter();
  }

  // The next item within ms, or null.
  take(ms) {
    if (this.items.length > 0) return Promise.resolve(this.items.shift());
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        resolve(null);
      }, ms);
      this.waiter = () => {
        clearTimeout(timer);
        this.waiter = null;
        resolve(this.items.shift());
      };
    });
  }

  async next(ms, what) {
    check(this.ended === null, `${what}: the stream had already ended (${this.ended})`);
    const item = await this.take(ms);
    if (item === null) throw new CheckFailed(`${what}: no delivery within ${ms} ms`);
    if (item.end) {
      this.ended = item.end;
      throw new CheckFailed(`${what}: the stream ended (${item.end})`);
    }
    this.st.tally.delivered += 1;
    if (item.delivery.delivery_attempt > 1) this.st.tally.redelivered += 1;
    return item;
  }

  async quiet(ms, what) {
    check(this.ended === null, `${what}: the stream had already ended (${this.ended})`);
    const item = await this.take(ms);
    if (item === null) return;
    if (item.end) {
      this.ended = item.end;
      throw new CheckFailed(`${what}: the stream ended (${item.end})`);
    }
    const d = item.delivery;
    throw new CheckFailed(`${what}: unexpected delivery of ${d.event.event_type} ${d.event.id} ` +
                          `(attempt ${d.delivery_attempt})`);
  }

  ack(ackIds) {
    this.call.write({ ack: { ack_ids: ackIds } });
    this.st.tally.acked += ackIds.length;
  }

  close() {
    if (this.ended === null) this.call.cancel();
  }
}

// Receives deliveries until every id in `want` came once (attempt 1). Acks
// each at once, except the first sample.created, which is held (not acked);
// its redelivery (attempt 2) may come in between and is acked.
async function receive(st, want, firstSeen, what) {
  const stream = st.stream;
  let left = [...want].filter((id) => !firstSeen.has(id)).length;
  while (left > 0) {
    const { at, delivery } = await stream.next(10000, `${what} (${left} still to come)`);
    const id = delivery.event && delivery.event.id;
    const known = st.sent.get(id);
    check(known !== undefined, `delivery of an event not published here: ${show(delivery.event)}`);
    check(matches(known.event.event_type),
          `delivered ${known.event.event_type} ${id}, which the patterns do not match`);
    checkEqual(delivery.subscription, SUB, `${id}: delivery.subscription`);
    checkEqual(delivery.stream_id, known.response.stream_id, `${id}: delivery.stream_id`);
    check(delivery.ack_id !== '', `${id}: empty ack_id`);
    checkEvent(delivery.event, known.event, `delivered ${known.event.event_type} ${id}`);
    if (delivery.delivery_attempt === 2 && st.held && id === st.held.id) {
      st.held.redelivered = { at, delivery };
      stream.ack([delivery.ack_id]);
      continue;
    }
    checkEqual(delivery.delivery_attempt, 1, `${id}: delivery_attempt`);
    check(!firstSeen.has(id), `${id} delivered twice`);
    check(want.has(id), `${id} delivered, but it was not expected now`);
    firstSeen.add(id);
    left -= 1;
    if (st.held === null && known.event.event_type === 'sample.created') {
      st.held = { id, at, redelivered: null };
      continue;
    }
    stream.ack([delivery.ack_id]);
  }
}

async function subscribeExactlyOnce(st) {
  needs(st.created, 'CreateSubscription');
  needs(st.published, 'the PublishStream');
  const firstSeen = new Set();
  const backlog = new Set(st.published.filter((e) => matches(e.event_type)).map((e) => e.id));
  checkEqual(backlog.size, VALID * 4 / 5, 'matching events published');
  st.stream = new Stream(st, { subscription_name: SUB, consumer_name: 'node-consumer' });
  await receive(st, backlog, firstSeen, 'backlog');

  // Live: published while the stream is open.
  const live = [];
  for (let n = 0; live.length < LIVE; n++) {
    const event = makeEvent(VALID + n);
    if (matches(event.event_type)) live.push(event);
  }
  const answers = await publishStream(st, live);
  checkEqual(answers.length, LIVE, 'live PublishStream answers');
  answers.forEach((answer, i) => {
    check(answer.error === null, `live answer ${i}: ${show(answer.error)}`);
    st.sent.set(live[i].id, { event: live[i], response: answer });
  });
  await receive(st, new Set(live.map((e) => e.id)), firstSeen, 'live');
  checkEqual(firstSeen.size, backlog.size + LIVE, 'distinct events delivered');
  st.drained = firstSeen.size;
}

async function heldIsRedelivered(st) {
  needs(st.drained, 'Subscribe');
  const held = needs(st.held, 'holding a sample.created');
  const limit = Date.now() + 5 * DEADLINE_MS;
  while (held.redelivered === null) {
    const { at, delivery } = await st.stream.next(Math.max(0, limit - Date.now()),
                                                  `redelivery of the unacked ${held.id}`);
    checkEqual(delivery.event.id, held.id, 'redelivered event');
    held.redelivered = { at, delivery };
    st.stream.ack([delivery.ack_id]);
  }
  const { at, delivery } = held.redelivered;
  checkEqual(delivery.delivery_attempt, 2, 'delivery_attempt of the redelivery');
  checkEvent(delivery.event, st.sent.get(held.id).event, 'redelivered event');
  const gap = at - held.at;
  check(gap >= DEADLINE_MS - SLACK_MS,
        `redelivered ${gap} ms after the first delivery (ack deadline ${DEADLINE_MS} ms)`);
}

async function allAckedStats(st) {
  needs(st.drained, 'Subscribe');
  const held = needs(st.held, 'holding a sample.created');
  needs(held.redelivered, 'the redelivery');
  // Every ack landed: nothing comes back after another deadline.
  await st.stream.quiet(DEADLINE_MS + 500, 'after acking everything');
  const { tally } = st;
  const limit = Date.now() + 5000;
  let sub;
  do {
    sub = await unary(st.service, 'GetSubscription', { name: SUB });
    if (sub.stats.pending === '0' && Number(sub.stats.acked) === tally.acked) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  } while (Date.now() < limit);
  const s = sub.stats;
  checkEqual(tally, { delivered: st.drained + 1, acked: st.drained, redelivered: 1 },
             "the client's (delivered, acked, redelivered)");
  checkEqual([s.pending, s.lag, s.dead_lettered], ['0', '0', '0'], '(pending, lag, dead_lettered)');
  checkEqual([s.delivered, s.acked, s.redelivered].map(Number),
             [tally.delivered, tally.acked, tally.redelivered],
             "(delivered, acked, redelivered) vs the client's count");
  checkEqual(s.active_subscribers, 1, 'active_subscribers');
  checkEqual(s.streams, 4, 'streams (sample.created, sample.status_changed, ' +
             'storage.temperature_alert, node_interop.generic)');
}

async function body(stack, checks) {
  const st = newState(stack);
  try {
    await checks.run('CreateSubscription (sample.*, storage.temperature_alert, node_interop.*; ' +
                     'EARLIEST; 1000 ms; 5 attempts) echoes its spec',
                     () => createSubscription(st));
    await checks.run(`PublishStream ${VALID} typed/generic events + 2 invalid: one answer each, ` +
                     'in order, errors naming the field', () => publishWithErrors(st));
    await checks.run('Redis holds the valid events per stream key, in order, as sent',
                     () => redisHoldsThem(st, stack));
    await checks.run('Subscribe with acks: every matching event (backlog + live) exactly once, ' +
                     'fields intact, auth.* never', () => subscribeExactlyOnce(st));
    await checks.run('unacked event redelivered with delivery_attempt 2 after the ack deadline',
                     () => heldIsRedelivered(st));
    await checks.run('all acked: nothing more arrives; GetSubscription pending 0, counts match',
                     () => allAckedStats(st));
  } finally {
    if (st.stream) st.stream.close();
  }
}

main('node interop', 'node_publish_subscribe', body);
