'use strict';
// Interop: server reflection from Node.js, with no .proto file of ours.
//
// The only .proto the client loads is the reflection protocol itself
// (proto/grpc/reflection/v1alpha/reflection.proto, plus the health protocol
// support.js uses to wait for SERVING). Over one
// grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo stream it
// lists the services, asks for the file holding tracseq.events.v1.Event, and
// fetches every dependency the answers name until the set is closed; the
// FileDescriptorProto bytes are decoded with protobufjs's descriptor support
// and built into a fresh protobufjs Root. That Root must hold Event with the
// envelope fields and its typed payloads, and EventService with the streaming
// shapes of its RPCs; an unknown symbol must be answered NOT_FOUND. Finally it
// publishes one event through the reflected types alone (what grpcurl -d
// does) and finds it in Redis, decoded with the reflected Event.
//
// Prints one line per check and "node interop: N passed, M failed"; exits 1
// when any check failed.

const {
  CheckFailed, check, checkEqual, show, need, needs, loadProtos, TO_OBJECT, main,
} = require('./support');

const EVENT = 'tracseq.events.v1.Event';
const SERVICE = 'tracseq.events.v1.EventService';
const MUST_LIST = ['grpc.health.v1.Health', 'grpc.reflection.v1.ServerReflection',
                   'grpc.reflection.v1alpha.ServerReflection', SERVICE];
const NOT_FOUND = 5;
// FieldDescriptorProto.Type.TYPE_STRING
const TYPE_STRING = 9;
const PUBLISHED_TYPE = 'node_interop.reflection_checked';
const TIMEOUT_MS = 10000;

// One ServerReflectionInfo stream: ask() writes a request and resolves with
// the answer to it (the protocol answers in order).
class Reflector {
  constructor(target) {
    const grpc = need('@grpc/grpc-js');
    const pkg = loadProtos(['grpc/reflection/v1alpha/reflection.proto']);
    this.client = new pkg.grpc.reflection.v1alpha.ServerReflection(
      target, grpc.credentials.createInsecure());
    this.call = this.client.ServerReflectionInfo({ deadline: Date.now() + 60000 });
    this.answers = [];
    this.waiters = [];
    this.failure = null;
    this.call.on('data', (answer) => this.deliver(answer));
    this.call.on('error',
                  (e) => this.fail(new CheckFailed(`reflection stream: ${e.code} ${e.details}`)));
    this.call.on('end', () => this.fail(new CheckFailed('reflection stream ended early')));
  }

  deliver(answer) {
    const waiter = this.waiters.shift();
    if (waiter) waiter.resolve(answer);
    else this.answers.push(answer);
  }

  fail(error) {
    if (this.failure === null) this.failure = error;
    for (const waiter of this.waiters.splice(0)) waiter.reject(error);
  }

  ask(request) {
    if (this.answers.length > 0) return Promise.reject(new Error('an unasked answer is queued'));
    if (this.failure !== null) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new CheckFailed(
        `no answer to ${show(request)} within ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
      this.waiters.push({
        resolve: (answer) => { clearTimeout(timer); resolve(answer); },
        reject: (error) => { clearTimeout(timer); reject(error); },
      });
      this.call.write(request);
    });
  }

  close() {
    this.call.cancel();
    this.client.close();
  }
}

// The FileDescriptorProtos answering `request`, decoded (camelCase fields:
// messageType, dependency, ...), keyed by file name.
async function askFiles(reflector, request) {
  const answer = await reflector.ask(request);
  if (answer.message_response === 'error_response') {
    const { error_code: code, error_message: message } = answer.error_response;
    throw new CheckFailed(`${show(request)} answered error ${code} ${show(message)}`);
  }
  checkEqual(answer.message_response, 'file_descriptor_response', `answer to ${show(request)}`);
  const descriptor = need('protobufjs/ext/descriptor');
  const files = new Map();
  for (const bytes of answer.file_descriptor_response.file_descriptor_proto) {
    const file = descriptor.FileDescriptorProto.decode(bytes);
    files.set(file.name, file);
  }
  check(files.size > 0, `${show(request)} answered no file`);
  return files;
}

// The files holding `symbol` and, transitively, every file they import;
// dependencies the server did not send along are asked for by name.
async function resolveClosed(reflector, symbol) {
  const files = await askFiles(reflector, { file_containing_symbol: symbol });
  const asked = new Set();
  for (;;) {
    const missing = [...files.values()].flatMap((f) => f.dependency || [])
      .filter((name) => !files.has(name));
    if (missing.length === 0) return files;
    const name = missing[0];
    check(!asked.has(name), `file_by_filename ${name} did not answer that file`);
    asked.add(name);
    for (const [n, f] of await askFiles(reflector, { file_by_filename: name })) files.set(n, f);
  }
}

function buildRoot(files) {
  const descriptor = need('protobufjs/ext/descriptor');
  const protobuf = need('protobufjs');
  const set = descriptor.FileDescriptorSet.create({ file: [...files.values()] });
  const root = protobuf.Root.fromDescriptor(set);
  check(root instanceof protobuf.Root, 'fromDescriptor did not build a Root');
  return root;
}

function newState(stack) {
  return { reflector: new Reflector(stack.target), serviceRoot: null };
}

async function listServices(st) {
  const answer = await st.reflector.ask({ list_services: '*' });
  checkEqual(answer.message_response, 'list_services_response', 'answer kind');
  const names = answer.list_services_response.service.map((s) => s.name).sort();
  console.log(`     | services: ${names.join(', ')}`);
  for (const name of MUST_LIST) check(names.includes(name), `${name} not listed: ${show(names)}`);
  checkEqual(new Set(names).size, names.length, 'services listed once each');
}

function checkField(type, name, id, kind, what) {
  const field = type.fields[name];
  check(field !== undefined, `${what}: no field ${name} (has ${Object.keys(type.fields)})`);
  checkEqual(field.id, id, `${what}.${name} number`);
  if (kind.startsWith('.')) {
    field.resolve();
    check(field.resolvedType !== null, `${what}.${name}: type ${field.type} unresolved`);
    checkEqual(field.resolvedType.fullName, kind, `${what}.${name} type`);
  } else {
    checkEqual(field.type, kind, `${what}.${name} type`);
  }
  return field;
}

async function resolveEvent(st) {
  const files = await resolveClosed(st.reflector, EVENT);
  const names = [...files.keys()].sort();
  console.log(`     | ${files.size} files: ${names.join(', ')}`);
  const home = files.get('tracseq/events/v1/event.proto');
  check(home !== undefined, `no tracseq/events/v1/event.proto among ${show(names)}`);
  checkEqual(home.package, 'tracseq.events.v1', 'event.proto package');
  check(home.messageType.some((m) => m.name === 'Event'), 'event.proto has no message Event');

  const event = buildRoot(files).lookupType(EVENT);
  checkField(event, 'id', 1, 'string', 'Event');
  checkField(event, 'event_type', 2, 'string', 'Event');
  checkField(event, 'source_service', 3, 'string', 'Event');
  checkField(event, 'version', 4, 'string', 'Event');
  checkField(event, 'timestamp', 5, '.google.protobuf.Timestamp', 'Event');
  checkField(event, 'correlation_id', 6, 'string', 'Event');
  checkField(event, 'causation_id', 7, 'string', 'Event');
  checkField(event, 'priority', 9, 'int32', 'Event');
  // protobufjs's fromDescriptor keeps a map as the repeated entry message it
  // is on the wire, so map<string, string> is checked in the raw descriptor:
  // a nested MetadataEntry marked map_entry, key 1 and value 2 both strings.
  const metadata = checkField(event, 'metadata', 10, '.tracseq.events.v1.Event.MetadataEntry',
                              'Event');
  check(metadata.repeated, 'Event.metadata is not repeated (map entries)');
  const raw = home.messageType.find((m) => m.name === 'Event');
  const entry = (raw.nestedType || []).find((m) => m.name === 'MetadataEntry');
  check(entry !== undefined, 'Event has no nested MetadataEntry');
  check(entry.options && entry.options.mapEntry, 'Event.MetadataEntry lacks option map_entry');
  checkEqual(entry.field.map((f) => [f.name, f.number, f.type]),
             [['key', 1, TYPE_STRING], ['value', 2, TYPE_STRING]],
             'MetadataEntry fields (name, number, type)');
  const payload = event.oneofs.payload;
  check(payload !== undefined, 'Event has no oneof payload');
  check(payload.fieldsArray.length === 19,
        `oneof payload has ${payload.fieldsArray.length} members, want 19 (data + 18 typed)`);
  checkField(event, 'data', 20, '.google.protobuf.Struct', 'Event');
  const created = checkField(event, 'sample_created', 101, '.tracseq.events.v1.SampleCreated',
                             'Event').resolvedType;
  checkEqual(Object.keys(created.fields),
             ['sample_id', 'barcode', 'sample_type', 'submitter_id', 'lab_id', 'metadata',
              'created_at'], 'SampleCreated fields');
  checkField(event, 'temperature_alert', 201, '.tracseq.events.v1.TemperatureAlert', 'Event');
}

async function resolveService(st) {
  const files = await resolveClosed(st.reflector, SERVICE);
  check(files.has('tracseq/events/v1/service.proto'),
        `no tracseq/events/v1/service.proto among ${show([...files.keys()])}`);
  const root = buildRoot(files);
  const service = root.lookupService(SERVICE);
  const shapes = {};
  for (const m of service.methodsArray) shapes[m.name] = [!!m.requestStream, !!m.responseStream];
  checkEqual(Object.keys(shapes).length, 23, `EventService methods ${show(Object.keys(shapes))}`);
  for (const m of ['ListDeadLetters', 'GetDeadLetter', 'RedriveDeadLetters', 'PurgeDeadLetters',
                   'Seek', 'CreateSnapshot', 'ListSnapshots', 'DeleteSnapshot'])
    checkEqual(shapes[m], [false, false], `${m} is unary`);
  checkEqual(shapes.Publish, [false, false], 'Publish streaming (request, response)');
  checkEqual(shapes.PublishStream, [true, true], 'PublishStream streaming');
  checkEqual(shapes.PublishBatch, [false, false], 'PublishBatch streaming');
  checkEqual(shapes.PublishBatchStream, [true, true], 'PublishBatchStream streaming');
  checkEqual(shapes.PublishCloudEvent, [false, false], 'PublishCloudEvent streaming');
  checkEqual(shapes.Subscribe, [true, true], 'Subscribe streaming');
  checkEqual(shapes.GetSubscription, [false, false], 'GetSubscription streaming');
  const publish = service.methods.Publish;
  publish.resolve();
  checkEqual(publish.resolvedRequestType.fullName, '.tracseq.events.v1.PublishRequest',
             'Publish request type');
  checkEqual(publish.resolvedResponseType.fullName, '.tracseq.events.v1.PublishResponse',
             'Publish response type');
  st.serviceRoot = root;
}

async function unknownSymbol(st) {
  const symbol = 'tracseq.events.v1.NoSuchThing';
  const answer = await st.reflector.ask({ file_containing_symbol: symbol });
  checkEqual(answer.message_response, 'error_response', `answer kind (${show(answer)})`);
  checkEqual(answer.error_response.error_code, NOT_FOUND, 'error_code');
}

// Publish with request/response classes made from the reflected descriptors.
// Maps (Event.metadata, Struct.fields) are written as the entry lists that
// protobufjs's fromDescriptor makes of them: the same bytes on the wire.
async function publishReflected(st, stack) {
  const root = needs(st.serviceRoot, 'resolving EventService');
  const grpc = need('@grpc/grpc-js');
  const request = root.lookupType('tracseq.events.v1.PublishRequest');
  const response = root.lookupType('tracseq.events.v1.PublishResponse');
  const event = root.lookupType(EVENT);
  const sent = {
    event: { event_type: PUBLISHED_TYPE, source_service: 'node-reflection', priority: 4,
             metadata: [{ key: 'via', value: 'reflection' }],
             data: { fields: [{ key: 'ok', value: { bool_value: true } },
                              { key: 'n', value: { number_value: 42 } }] } },
  };
  const message = request.fromObject(sent);
  const client = stack.track(new grpc.Client(stack.target, grpc.credentials.createInsecure()));
  const answer = await new Promise((resolve, reject) => {
    client.makeUnaryRequest(`/${SERVICE}/Publish`,
                            (m) => Buffer.from(request.encode(m).finish()),
                            (bytes) => response.toObject(response.decode(bytes), TO_OBJECT),
                            message, new grpc.Metadata(), { deadline: Date.now() + TIMEOUT_MS },
                            (error, value) => (error ? reject(error) : resolve(value)));
  });
  check(answer.error === null, `error ${show(answer.error)}`);
  checkEqual(answer.stream, `tracseq:events:{${PUBLISHED_TYPE}}:p4`, 'stream');
  const redis = await stack.redis();
  const entries = await redis.xrange(answer.stream);
  checkEqual(entries.map(([id]) => id), [answer.stream_id], `entries in ${answer.stream}`);
  const stored = event.toObject(event.decode(entries[0][1].event), TO_OBJECT);
  checkEqual(stored.id, answer.event_id, 'stored id');
  checkEqual(stored.source_service, 'node-reflection', 'stored source_service');
  checkEqual(stored.metadata, [{ key: 'via', value: 'reflection' }], 'stored metadata (entries)');
  checkEqual(stored.payload, 'data', 'stored payload kind');
  const data = Object.fromEntries(stored.data.fields.map((f) => [f.key, f.value]));
  checkEqual(Object.keys(data).sort(), ['n', 'ok'], 'stored data keys');
  checkEqual(data.ok.bool_value, true, 'stored data.ok');
  checkEqual(data.n.number_value, 42, 'stored data.n');
}

async function body(stack, checks) {
  const st = newState(stack);
  try {
    await checks.run('list_services names EventService, Health and both ServerReflections',
                     () => listServices(st));
    await checks.run(`${EVENT} resolved over reflection alone: envelope fields and payloads`,
                     () => resolveEvent(st));
    await checks.run(`${SERVICE} resolved over reflection: its RPCs and their streaming`,
                     () => resolveService(st));
    await checks.run('an unknown symbol is answered NOT_FOUND', () => unknownSymbol(st));
    await checks.run('publish through reflected types; Redis holds the event',
                     () => publishReflected(st, stack));
  } finally {
    st.reflector.close();
  }
}

main('node interop', 'node_reflection', body);
