/*
 * client.c - the connection: options and their defaults, the channels, call
 * creation with the client's metadata, blocking unary calls on a private
 * completion queue each, and the wire form of a publish request.
 *
 * Invariants: a client is immutable after connect except for its id
 * counter (atomic), so any number of threads may call through it. Each
 * blocking call owns its completion queue, call and buffers, and releases
 * them all before returning. grpc_init/grpc_shutdown are paired per client.
 */
#include <errno.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/internal.h"
#include "codec/pbjson.h"
#include "codec/pbwire.h"

#define EXPORT __attribute__((visibility("default")))

/* ============================== options =================================== */

EXPORT void tse_client_options_init(tse_client_options *o)
{
    if (o != NULL)
        memset(o, 0, sizeof(*o));
}

static const char *env_or(const char *name, const char *fallback)
{
    const char *v = getenv(name);

    return v != NULL && v[0] != '\0' ? v : fallback;
}

tse_client_status tse_client_options_resolve(const tse_client_options *in, tse_client_options *out,
                                             tse_client_error *err)
{
    tse_client_options o = {0};

    if (in != NULL)
        o = *in;
    if (o.target == NULL)
        o.target = env_or("TRACSEQ_EVENTS_SERVER", TSE_CLIENT_DEFAULT_TARGET);
    if (o.source_service == NULL)
        o.source_service = env_or("TRACSEQ_SOURCE_SERVICE", TSE_CLIENT_DEFAULT_SOURCE);
    if (o.timeout_ms == 0)
        o.timeout_ms = TSE_CLIENT_DEFAULT_TIMEOUT;
    if (o.reconnect_initial_ms == 0)
        o.reconnect_initial_ms = TSE_CLIENT_DEFAULT_BACKOFF;
    if (o.channels == 0)
        o.channels = 1;
    if (o.reconnect_max_ms == 0)
        o.reconnect_max_ms = TSE_CLIENT_DEFAULT_MAX_BO;
    if (o.target[0] == '\0')
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, "target",
                               "target must be host:port, not empty");
    if (o.source_service[0] == '\0' || strlen(o.source_service) > TSE_CLIENT_SOURCE_MAX)
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, "source_service",
                               "source_service must have 1 to %d characters",
                               TSE_CLIENT_SOURCE_MAX);
    if (o.timeout_ms < 0)
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, "timeout_ms",
                               "timeout_ms must be positive");
    if (o.reconnect_initial_ms < 0 || o.reconnect_max_ms < o.reconnect_initial_ms)
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, "reconnect_max_ms",
                               "reconnect delays must be positive, the maximum at least the "
                               "initial one");
    if (o.channels < 1 || o.channels > TSE_CLIENT_MAX_CHANNELS)
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, "channels",
                               "channels must be 1 to %d", TSE_CLIENT_MAX_CHANNELS);
    if ((o.tls_cert_pem == NULL) != (o.tls_key_pem == NULL))
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1,
                               o.tls_cert_pem ? "tls_key_pem" : "tls_cert_pem",
                               "tls_cert_pem and tls_key_pem go together: both or neither");
    if (o.tls_server_name != NULL && o.tls_server_name[0] == '\0')
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, "tls_server_name",
                               "tls_server_name must be non-empty (NULL: the target's host)");
    if (o.tls_root_certs_pem != NULL || o.tls_cert_pem != NULL || o.tls_server_name != NULL)
        o.tls = true;
    if (o.token != NULL && (o.token[0] == '\0' || strpbrk(o.token, "\r\n") != NULL))
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, "token",
                               "token must be non-empty and on one line");
    *out = o;
    return TSE_CLIENT_OK;
}

/* ============================== connect =================================== */

/* gRPC copies the PEM texts: the caller's strings may go after connect. */
static grpc_channel_credentials *make_credentials(const tse_client_options *o)
{
    grpc_ssl_pem_key_cert_pair pair = {.private_key = o->tls_key_pem,
                                       .cert_chain = o->tls_cert_pem};

    if (o->tls)
        return grpc_ssl_credentials_create(o->tls_root_certs_pem,
                                           o->tls_cert_pem != NULL ? &pair : NULL, NULL, NULL);
    return grpc_insecure_credentials_create();
}

/*
 * A local subchannel pool gives every client its own TCP connection (two
 * clients of one process would otherwise share one); the reconnect backoff
 * follows the client's options, so a restarted service is found again
 * within reconnect_max_ms rather than gRPC's default two minutes.
 */
static grpc_channel *open_channel(const tse_client_options *o, grpc_channel_credentials *creds)
{
    grpc_arg args[8] = {
        {GRPC_ARG_INTEGER, GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, {.integer = 1}},
        {GRPC_ARG_INTEGER,
         GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
         {.integer = o->reconnect_initial_ms}},
        {GRPC_ARG_INTEGER, GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, {.integer = o->reconnect_max_ms}},
        {GRPC_ARG_INTEGER, GRPC_ARG_KEEPALIVE_TIME_MS, {.integer = 30000}},
        {GRPC_ARG_INTEGER, GRPC_ARG_KEEPALIVE_TIMEOUT_MS, {.integer = 10000}},
        /* Nothing reads channelz in a client, and it reads the clock per message. */
        {GRPC_ARG_INTEGER, GRPC_ARG_ENABLE_CHANNELZ, {.integer = 0}},
        /* A pull of 1,000 events may be larger than gRPC's default 4 MB. */
        {GRPC_ARG_INTEGER, GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, {.integer = 64 << 20}},
    };
    grpc_channel_args ca = {.num_args = 7, .args = args};

    if (o->tls_server_name != NULL)
        args[ca.num_args++] = (grpc_arg){GRPC_ARG_STRING,
                                         GRPC_SSL_TARGET_NAME_OVERRIDE_ARG,
                                         {.string = (char *)o->tls_server_name}};

    return grpc_channel_create(o->target, creds, &ca);
}

grpc_channel *tse_client_open_channel(const tse_client *c)
{
    return open_channel(&c->opt, c->creds);
}

/* After a restart of the service the channels come back one by one (each
 * on its own backoff), and a call on one still down would fail. */
grpc_channel *tse_client_pick_channel(tse_client *c)
{
    size_t n = (size_t)c->opt.channels;
    size_t start = atomic_fetch_add_explicit(&c->next_channel, 1, memory_order_relaxed);

    if (n == 1)
        return c->channels[0];
    for (size_t k = 0; k < n; k++) {
        grpc_channel *ch = c->channels[(start + k) % n];
        if (grpc_channel_check_connectivity_state(ch, 0) == GRPC_CHANNEL_READY)
            return ch;
    }
    for (size_t k = 1; k < n; k++) /* none is: get them all going */
        grpc_channel_check_connectivity_state(c->channels[(start + k) % n], 1);
    return c->channels[start % n];
}

/* The client's call channels; false when one could not be made. */
static bool open_channels(tse_client *c, const tse_client_options *o)
{
    for (int i = 0; i < o->channels; i++)
        if ((c->channels[i] = open_channel(o, c->creds)) == NULL)
            return false;
    return true;
}

/* Copies the strings the client keeps, and packs its source field once. */
static tse_client_status client_fill(tse_client *c, const tse_client_options *o)
{
    size_t slen = strlen(o->source_service);

    c->target = strdup(o->target);
    if (o->tls_server_name != NULL && (c->tls_server_name = strdup(o->tls_server_name)) == NULL)
        return TSE_CLIENT_NO_MEMORY;
    c->source_service = strdup(o->source_service);
    c->source_field = malloc(slen + 2);
    if (o->token != NULL && asprintf(&c->authorization, "Bearer %s", o->token) < 0)
        c->authorization = NULL;
    if (c->target == NULL || c->source_service == NULL || c->source_field == NULL ||
        (o->token != NULL && c->authorization == NULL))
        return TSE_CLIENT_NO_MEMORY;
    c->source_field[0] = 0x1a; /* Event.source_service: field 3, bytes */
    c->source_field_len =
        (size_t)(tse_pbwire_put_varint(c->source_field + 1, slen) - c->source_field);
    memcpy(c->source_field + c->source_field_len, o->source_service, slen);
    c->source_field_len += slen;
    c->opt = *o;
    c->opt.target = c->target;
    c->opt.source_service = c->source_service;
    c->opt.token = NULL;
    c->opt.tls_root_certs_pem = NULL; /* in the credentials */
    c->opt.tls_cert_pem = NULL;
    c->opt.tls_key_pem = NULL;
    c->opt.tls_server_name = c->tls_server_name;
    tse_uuid_seq_init(&c->ids);
    return TSE_CLIENT_OK;
}

EXPORT tse_client_status tse_client_connect(const tse_client_options *options, tse_client **out,
                                            tse_client_error *err)
{
    tse_client_options o;
    tse_client *c;
    tse_client_status st;

    tse_client_error_clear(err);
    if (out == NULL)
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, "out", "out is NULL");
    st = tse_client_options_resolve(options, &o, err);
    if (st != TSE_CLIENT_OK)
        return st;
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return tse_client_fail(err, TSE_CLIENT_NO_MEMORY, -1, NULL, "out of memory");
    pthread_mutex_init(&c->pump_mu, NULL);
    pthread_mutex_init(&c->calls_mu, NULL);
    /* gRPC's threads may still be reconnecting (a TLS handshake) after the
     * last client is destroyed; OpenSSL's own exit handler would free the
     * locks under them and crash the exiting program. Keep OpenSSL alive to
     * the end: first call in the process wins, later ones do nothing. */
    OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT, NULL);
    grpc_init();
    st = client_fill(c, &o);
    if (st == TSE_CLIENT_OK && ((c->creds = make_credentials(&o)) == NULL || !open_channels(c, &o)))
        st = TSE_CLIENT_INVALID_ARGUMENT;
    if (st != TSE_CLIENT_OK) {
        tse_client_destroy(c);
        return tse_client_fail(err, st, -1, st == TSE_CLIENT_NO_MEMORY ? NULL : "tls",
                               st == TSE_CLIENT_NO_MEMORY ? "out of memory"
                                                          : "cannot make the TLS credentials");
    }
    *out = c;
    return TSE_CLIENT_OK;
}

EXPORT void tse_client_destroy(tse_client *c)
{
    if (c == NULL)
        return;
    tse_client_streams_cancel(c);
    tse_client_pump_stop(c);
    for (size_t i = 0; i < TSE_CLIENT_MAX_CHANNELS; i++)
        if (c->channels[i] != NULL)
            grpc_channel_destroy(c->channels[i]);
    if (c->creds != NULL)
        grpc_channel_credentials_release(c->creds);
    pthread_mutex_destroy(&c->pump_mu);
    pthread_mutex_destroy(&c->calls_mu);
    free(c->target);
    free(c->tls_server_name);
    free(c->source_service);
    free(c->authorization);
    free(c->source_field);
    free(c);
    grpc_shutdown();
}

EXPORT const char *tse_client_target(const tse_client *c)
{
    return c != NULL ? c->target : NULL;
}

/* ============================== ids and requests ========================== */

grpc_slice tse_client_request_slice(const tse_client *c, const tse_client_event *ev, const char *id)
{
    size_t id_len = id != NULL ? 2 + 36 : 0;
    size_t source_len = ev->raw ? 0 : c->source_field_len;
    size_t inner = id_len + source_len + ev->len;
    uint8_t head[11];
    size_t n, at;
    grpc_slice s;
    uint8_t *p;

    head[0] = 0x0a; /* PublishRequest.event: field 1, bytes */
    n = (size_t)(tse_pbwire_put_varint(head + 1, inner) - head);
    s = grpc_slice_malloc(n + inner);
    p = GRPC_SLICE_START_PTR(s);
    memcpy(p, head, n);
    at = n;
    if (id != NULL) {
        p[at++] = 0x0a; /* Event.id: field 1, bytes */
        p[at++] = 36;
        memcpy(p + at, id, 36);
        at += 36;
    }
    memcpy(p + at, c->source_field, source_len);
    at += source_len;
    memcpy(p + at, ev->bytes, ev->len);
    return s;
}

/* Runs per publish result: a copy, not snprintf. */
static void copy_bounded(char *dst, size_t cap, const char *src)
{
    size_t n = src != NULL ? strnlen(src, cap - 1) : 0;

    memcpy(dst, src != NULL ? src : "", n);
    dst[n] = '\0';
}

tse_client_status tse_client_publish_response(const uint8_t *data, size_t len,
                                              tse_client_publish_result *result,
                                              tse_client_error *err)
{
    Tracseq__Events__V1__PublishResponse *r =
        tracseq__events__v1__publish_response__unpack(NULL, len, data);
    tse_client_status st = TSE_CLIENT_OK;

    if (r == NULL)
        return tse_client_fail(err, TSE_CLIENT_INTERNAL, -1, NULL, "undecodable PublishResponse");
    if (r->error != NULL) {
        grpc_status_code code = (grpc_status_code)r->error->code;
        st = tse_client_fail(err, tse_client_status_from_grpc(code), r->error->code,
                             r->error->field, "%s", r->error->message);
    } else if (result != NULL) {
        memset(result, 0, sizeof(*result));
        copy_bounded(result->event_id, sizeof(result->event_id), r->event_id);
        copy_bounded(result->stream_id, sizeof(result->stream_id), r->stream_id);
        result->duplicate = r->duplicate;
        result->schema_valid = r->schema_valid;
        if (r->published_at != NULL) {
            result->published_at_seconds = r->published_at->seconds;
            result->published_at_nanos = r->published_at->nanos;
        }
    }
    tracseq__events__v1__publish_response__free_unpacked(r, NULL);
    return st;
}

/* ============================== time ====================================== */

gpr_timespec tse_client_deadline(int timeout_ms)
{
    if (timeout_ms < 0)
        return gpr_inf_future(GPR_CLOCK_MONOTONIC);
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                        gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
}

void tse_client_sleep_ms(int ms, const atomic_bool *stop)
{
    while (ms > 0 && (stop == NULL || !atomic_load(stop))) {
        int step = ms < 20 ? ms : 20;
        struct timespec ts = {0, (long)step * 1000000L};

        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
        ms -= step;
    }
}

int tse_client_backoff_next(const tse_client *c, int ms)
{
    return ms * 2 < c->opt.reconnect_max_ms ? ms * 2 : c->opt.reconnect_max_ms;
}

/* ============================== calls ===================================== */

/* A call on cq (NULL for a fresh pluck queue is not allowed here). */
static grpc_call *new_call(tse_client *c, grpc_completion_queue *cq, const char *method,
                           gpr_timespec deadline)
{
    grpc_slice m = grpc_slice_from_static_string(method);
    grpc_call *call = grpc_channel_create_call(
        tse_client_pick_channel(c), NULL, GRPC_PROPAGATE_DEFAULTS, cq, m, NULL, deadline, NULL);

    grpc_slice_unref(m);
    return call;
}

/* The call metadata (authorization) to send; *n receives the count. */
static void call_metadata(const tse_client *c, grpc_metadata md[1], size_t *n)
{
    *n = 0;
    if (c->authorization != NULL) {
        memset(&md[0], 0, sizeof(md[0]));
        md[0].key = grpc_slice_from_static_string("authorization");
        md[0].value = grpc_slice_from_static_string(c->authorization);
        *n = 1;
    }
}

void tse_client_call_io_init(tse_client_call_io *io)
{
    memset(io, 0, sizeof(*io));
    io->details = grpc_empty_slice();
    io->code = GRPC_STATUS_UNKNOWN;
    grpc_metadata_array_init(&io->initial_md);
    grpc_metadata_array_init(&io->trailing_md);
}

void tse_client_call_io_cleanup(tse_client_call_io *io)
{
    if (io->send_buf != NULL)
        grpc_byte_buffer_destroy(io->send_buf);
    if (io->recv_buf != NULL)
        grpc_byte_buffer_destroy(io->recv_buf);
    grpc_metadata_array_destroy(&io->initial_md);
    grpc_metadata_array_destroy(&io->trailing_md);
    grpc_slice_unref(io->details);
}

void tse_client_status_op(tse_client_call_io *io, grpc_op *op)
{
    memset(op, 0, sizeof(*op));
    op->op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    op->data.recv_status_on_client.trailing_metadata = &io->trailing_md;
    op->data.recv_status_on_client.status = &io->code;
    op->data.recv_status_on_client.status_details = &io->details;
}

void tse_client_unary_ops(tse_client_call_io *io, grpc_metadata *md, size_t n_md,
                          grpc_byte_buffer *request, grpc_op ops[6])
{
    memset(ops, 0, 5 * sizeof(grpc_op));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = n_md;
    ops[0].data.send_initial_metadata.metadata = md;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = io->send_buf = request;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &io->initial_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &io->recv_buf;
    tse_client_status_op(io, &ops[5]);
}

tse_client_status tse_client_call_io_status(const tse_client_call_io *io, tse_client_error *err)
{
    if (io->code == GRPC_STATUS_OK)
        return TSE_CLIENT_OK;
    return tse_client_from_grpc_status(io->code, (const char *)GRPC_SLICE_START_PTR(io->details),
                                       GRPC_SLICE_LENGTH(io->details), &io->trailing_md, err);
}

static tse_client_status unary_result(tse_client_call_io *u, grpc_slice *resp,
                                      tse_client_error *err)
{
    grpc_byte_buffer_reader reader;

    if (u->code != GRPC_STATUS_OK)
        return tse_client_call_io_status(u, err);
    if (u->recv_buf == NULL || !grpc_byte_buffer_reader_init(&reader, u->recv_buf))
        return tse_client_fail(err, TSE_CLIENT_INTERNAL, 0, NULL, "the answer had no message");
    *resp = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    return TSE_CLIENT_OK;
}

tse_client_status tse_client_unary_raw(tse_client *c, const char *method, grpc_slice req,
                                       gpr_timespec deadline, grpc_slice *resp,
                                       tse_client_error *err)
{
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_call *call = new_call(c, cq, method, deadline);
    tse_client_call_io u;
    tse_client_status st;
    grpc_metadata md[1];
    grpc_op ops[6];
    grpc_event ev;
    size_t n_md;

    tse_client_call_io_init(&u);
    call_metadata(c, md, &n_md);
    tse_client_unary_ops(&u, md, n_md, grpc_raw_byte_buffer_create(&req, 1), ops);
    if (grpc_call_start_batch(call, ops, 6, &u, NULL) != GRPC_CALL_OK) {
        st = tse_client_fail(err, TSE_CLIENT_INTERNAL, -1, NULL, "cannot start the call");
        goto out;
    }
    ev = grpc_completion_queue_pluck(cq, &u, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (ev.type != GRPC_OP_COMPLETE || !ev.success)
        st = tse_client_fail(err, TSE_CLIENT_INTERNAL, -1, NULL, "the call did not complete");
    else
        st = unary_result(&u, resp, err);
out:
    grpc_call_unref(call);
    tse_client_call_io_cleanup(&u);
    grpc_completion_queue_shutdown(cq);
    grpc_completion_queue_destroy(cq);
    return st;
}

tse_client_status tse_client_unary(tse_client *c, const char *method, const ProtobufCMessage *req,
                                   const ProtobufCMessageDescriptor *resp_desc,
                                   ProtobufCMessage **resp, tse_client_error *err)
{
    size_t len = protobuf_c_message_get_packed_size(req);
    grpc_slice in = grpc_slice_malloc(len), out = grpc_empty_slice();
    tse_client_status st;

    protobuf_c_message_pack(req, GRPC_SLICE_START_PTR(in));
    st = tse_client_unary_raw(c, method, in, tse_client_deadline(c->opt.timeout_ms), &out, err);
    grpc_slice_unref(in);
    if (st == TSE_CLIENT_OK) {
        *resp = protobuf_c_message_unpack(resp_desc, NULL, GRPC_SLICE_LENGTH(out),
                                          GRPC_SLICE_START_PTR(out));
        if (*resp == NULL)
            st = tse_client_fail(err, TSE_CLIENT_INTERNAL, 0, NULL, "undecodable %s answer",
                                 resp_desc->short_name);
    }
    grpc_slice_unref(out);
    return st;
}

tse_client_status tse_client_message_json(const ProtobufCMessage *msg, char **json_out,
                                          tse_client_error *err)
{
    json_t *j;

    if (json_out == NULL)
        return TSE_CLIENT_OK;
    j = tse_pbjson_from_message(msg, TSE_PBJSON_EMIT_DEFAULTS);
    *json_out = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (*json_out == NULL)
        return tse_client_fail(err, TSE_CLIENT_NO_MEMORY, -1, NULL, "cannot render the answer");
    return TSE_CLIENT_OK;
}
