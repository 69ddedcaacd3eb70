/*
 * call.c - the life of one call object: references, batches, encoding and
 * the one finishing path of every call. See internal.h for the ownership
 * rules and the call invariant this file enforces (answered exactly once,
 * nothing started after the answer).
 */
#include <assert.h>
#include <grpc/support/alloc.h>
#include <stdlib.h>
#include <string.h>

#include "codec/pbjson.h"
#include "codec/pbscan.h"
#include "codec/pbunpack.h"
#include "common/tsan.h"
#include "obs/log.h"
#include "transport/internal.h"

static void call_free(tse_call *c)
{
    tse_server *s = c->server;

    if (c->method->release)
        c->method->release(c);
    if (c->call)
        grpc_call_unref(c->call);
    grpc_metadata_array_destroy(&c->metadata);
    grpc_call_details_destroy(&c->details);
    if (c->payload)
        grpc_byte_buffer_destroy(c->payload);
    if (c->request)
        protobuf_c_message_free_unpacked(c->request, NULL);
    grpc_slice_unref(c->request_bytes);
    if (c->response)
        grpc_byte_buffer_destroy(c->response);
    grpc_slice_unref(c->status_details);
    grpc_slice_unref(c->trailer.value);
    tse_auth_release(c->auth_table);
    pthread_mutex_destroy(&c->lock);
    free(c);

    /* The server waits on this count at shutdown. */
    pthread_mutex_lock(&s->calls_lock);
    if (--s->live_calls == 0)
        pthread_cond_broadcast(&s->calls_cond);
    pthread_mutex_unlock(&s->calls_lock);
}

static void call_ref(tse_call *c)
{
    pthread_mutex_lock(&c->lock);
    c->refs++;
    pthread_mutex_unlock(&c->lock);
}

void tse_call_unref(tse_call *c)
{
    int left;

    pthread_mutex_lock(&c->lock);
    left = --c->refs;
    pthread_mutex_unlock(&c->lock);
    if (left == 0)
        call_free(c);
}

static const char *state_name(tse_call_state st)
{
    switch (st) {
    case TSE_CALL_POSTED: return "POSTED";
    case TSE_CALL_ACTIVE: return "ACTIVE";
    case TSE_CALL_FINISHING: return "FINISHING";
    case TSE_CALL_DONE: return "DONE";
    }
    return "?";
}

/* A broken call invariant: a bug in a handler. Release builds log it and
 * carry on without touching the call; debug builds stop here. */
static void invariant_broken(const tse_call *c, const char *what)
{
    tse_log(TSE_LOG_ERROR, "call invariant broken; ignored",
            (const char *[]){"method", c->method->name, "what", what, "state", state_name(c->state),
                             NULL});
    assert(!"call invariant broken: see the log line above");
}

bool tse_call_active_locked(const tse_call *c)
{
    return c->state == TSE_CALL_ACTIVE;
}

/*
 * Starts a batch with c->lock held by the caller; takes a reference that the
 * tag's handler must drop. Returns false (and drops it) when the call
 * refused the batch: then the tag never fires. A batch on a call that is no
 * longer ACTIVE is refused here (a bug: logged, asserted in debug builds).
 */
static bool start_batch_locked(tse_call *c, const grpc_op *ops, size_t n, tse_tag *tag)
{
    grpc_call_error e;

    if (c->state != TSE_CALL_ACTIVE) {
        invariant_broken(c, "a batch started after the call was finished");
        return false;
    }
    c->refs++;
    tse_tsan_release(tag);
    e = grpc_call_start_batch(c->call, ops, n, tag, NULL);
    if (e == GRPC_CALL_OK)
        return true;
    c->refs--;
    tse_logf(TSE_LOG_DEBUG, "%s: batch refused (%d)", c->method->name, (int)e);
    return false;
}

/* Puts SEND_INITIAL_METADATA in *op the first time it is asked for on c;
 * returns the number of ops written (0 or 1). With c->lock held. */
static size_t initial_md_locked(tse_call *c, grpc_op *op)
{
    if (c->md_sent)
        return 0;
    c->md_sent = true;
    memset(op, 0, sizeof(*op));
    op->op = GRPC_OP_SEND_INITIAL_METADATA;
    return 1;
}

bool tse_call_watch_close_locked(tse_call *c, tse_tag *tag)
{
    grpc_op op = {.op = GRPC_OP_RECV_CLOSE_ON_SERVER};

    op.data.recv_close_on_server.cancelled = &c->cancelled;
    c->close_started = start_batch_locked(c, &op, 1, tag);
    return c->close_started;
}

bool tse_call_recv_locked(tse_call *c, grpc_byte_buffer **buf, tse_tag *tag)
{
    grpc_op op = {.op = GRPC_OP_RECV_MESSAGE};

    op.data.recv_message.recv_message = buf;
    return start_batch_locked(c, &op, 1, tag);
}

bool tse_call_send_locked(tse_call *c, grpc_byte_buffer *msg, bool more, tse_tag *tag)
{
    grpc_op ops[2];
    size_t n;

    memset(ops, 0, sizeof(ops));
    n = initial_md_locked(c, &ops[0]);
    /* Buffered only behind a message that flushed: never the first. */
    if (more && n == 0)
        ops[n].flags = GRPC_WRITE_BUFFER_HINT;
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = msg;
    return start_batch_locked(c, ops, n, tag);
}

bool tse_call_open_stream_locked(tse_call *c, tse_call_list *list, tse_tag *close_tag)
{
    if (!tse_call_watch_close_locked(c, close_tag)) {
        tse_call_finish_locked(c, NULL, TSE_ERROR(TSE_UNAVAILABLE, "", "the call could not start"));
        return false;
    }
    if (list != NULL) {
        c->next_live = list->head;
        list->head = c;
        list->n++;
    }
    return true;
}

void tse_call_unlist(tse_call *c, tse_call_list *list)
{
    pthread_mutex_lock(&c->server->watch_lock);
    for (tse_call **p = &list->head; *p; p = &(*p)->next_live) {
        if (*p == c) {
            *p = c->next_live;
            list->n--;
            break;
        }
    }
    pthread_mutex_unlock(&c->server->watch_lock);
}

void tse_call_cancel_all(tse_server *s, const tse_call_list *list, const char *why)
{
    pthread_mutex_lock(&s->watch_lock);
    for (tse_call *c = list->head; c; c = c->next_live)
        grpc_call_cancel_with_status(c->call, tse_status_to_grpc(TSE_UNAVAILABLE), why, NULL);
    pthread_mutex_unlock(&s->watch_lock);
}

bool tse_scan_request(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                      tse_error *err)
{
    return tse_pb_check(desc, data, len, TSE_PBJSON_MAX_DEPTH, err) == TSE_OK;
}

ProtobufCMessage *tse_decode(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *desc,
                             tse_error *err)
{
    return tse_decode_bounded(bb, desc, 0, err);
}

/* More entries of field 1 than max: refused naming the field, unpacked never. */
static bool over_bound(const ProtobufCMessageDescriptor *desc, grpc_slice all, size_t max,
                       tse_error *err)
{
    const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field(desc, 1);
    size_t n;

    if (max == 0 || fd == NULL)
        return false;
    n = tse_pbscan_count(GRPC_SLICE_START_PTR(all), GRPC_SLICE_LENGTH(all), 1);
    if (n <= max)
        return false;
    tse_error_set(err, TSE_INVALID, fd->name, "holds %zu entries; at most %zu are allowed", n, max);
    return true;
}

ProtobufCMessage *tse_decode_bounded(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *desc,
                                     size_t max_entries, tse_error *err)
{
    return tse_decode_keeping(bb, desc, max_entries, NULL, err);
}

ProtobufCMessage *tse_decode_keeping(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *desc,
                                     size_t max_entries, grpc_slice *bytes, tse_error *err)
{
    grpc_byte_buffer_reader reader;
    ProtobufCMessage *msg = NULL;
    grpc_slice all = grpc_empty_slice();
    tse_pbscan_info info = {false};

    if (bb != NULL) {
        if (!grpc_byte_buffer_reader_init(&reader, bb)) {
            tse_error_set(err, TSE_INVALID, "request", "not a valid %s (unreadable)", desc->name);
            return NULL;
        }
        all = grpc_byte_buffer_reader_readall(&reader);
        grpc_byte_buffer_reader_destroy(&reader);
    }
    /* Scanned (nesting bounded) before protobuf-c recurses into it. */
    if (!over_bound(desc, all, max_entries, err))
        tse_pb_unpack_with(desc, GRPC_SLICE_START_PTR(all), GRPC_SLICE_LENGTH(all),
                           TSE_PBJSON_MAX_DEPTH, &msg, &info, err);
    if (bytes != NULL && msg != NULL && !info.message_repeated)
        *bytes = all;
    else
        grpc_slice_unref(all);
    return msg;
}

/* ---- batches read one entry at a time -------------------------------------- */

/* Every root field 1 of the request is length-delimited, as unpacking a
 * repeated message field requires; false otherwise. */
static bool entries_delimited(grpc_slice all)
{
    tse_pbscan_field f;
    size_t pos = 0;

    while (tse_pbscan_next(GRPC_SLICE_START_PTR(all), GRPC_SLICE_LENGTH(all), &pos, &f))
        if (f.id == 1 && f.wire != 2)
            return false;
    return true;
}

bool tse_batch_open(tse_batch_reader *r, grpc_byte_buffer *bb,
                    const ProtobufCMessageDescriptor *desc, size_t max, tse_error *err)
{
    const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field(desc, 1);
    grpc_byte_buffer_reader reader;
    grpc_slice all = grpc_empty_slice();
    tse_pbscan_info info = {false};

    memset(r, 0, sizeof(*r));
    r->bytes = grpc_empty_slice();
    if (bb != NULL) {
        if (!grpc_byte_buffer_reader_init(&reader, bb)) {
            tse_error_set(err, TSE_INVALID, "request", "not a valid %s (unreadable)", desc->name);
            return false;
        }
        all = grpc_byte_buffer_reader_readall(&reader);
        grpc_byte_buffer_reader_destroy(&reader);
    }
    if (over_bound(desc, all, max, err) ||
        tse_pb_check_with(desc, GRPC_SLICE_START_PTR(all), GRPC_SLICE_LENGTH(all),
                          TSE_PBJSON_MAX_DEPTH, &info, err) != TSE_OK) {
        grpc_slice_unref(all);
        return false;
    }
    if (!entries_delimited(all)) {
        grpc_slice_unref(all);
        tse_error_set(err, TSE_INVALID, "request", "not a valid %s", desc->name);
        return false;
    }
    r->request = desc;
    r->entry = fd->descriptor;
    r->bytes = all;
    r->n = tse_pbscan_count(GRPC_SLICE_START_PTR(all), GRPC_SLICE_LENGTH(all), 1);
    r->reusable = !info.message_repeated;
    return true;
}

tse_status tse_batch_next(tse_batch_reader *r, ProtobufCMessage **out, const uint8_t **wire,
                          size_t *wire_len, tse_error *err)
{
    tse_pbscan_field f;
    tse_status st;

    *out = NULL;
    while (
        tse_pbscan_next(GRPC_SLICE_START_PTR(r->bytes), GRPC_SLICE_LENGTH(r->bytes), &r->pos, &f)) {
        if (f.id != 1)
            continue;
        st = tse_pb_unpack_scanned(r->entry, f.data, f.len, out, err);
        if (st == TSE_INVALID) /* named as the whole request's unpacking names it */
            tse_error_set(err, TSE_INVALID, "request", "not a valid %s", r->request->name);
        else if (st == TSE_NOMEM)
            tse_error_set(err, TSE_NOMEM, NULL, "out of memory decoding a %s", r->request->name);
        *wire = f.data;
        *wire_len = f.len;
        return st;
    }
    return tse_error_set(err, TSE_INTERNAL, NULL, "no entry left in the %s", r->request->name);
}

void tse_batch_close(tse_batch_reader *r)
{
    grpc_slice_unref(r->bytes);
    r->bytes = grpc_empty_slice();
}

grpc_slice tse_pack_slice(const ProtobufCMessage *msg)
{
    grpc_slice slice = grpc_slice_malloc(protobuf_c_message_get_packed_size(msg));

    protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(slice));
    return slice;
}

grpc_byte_buffer *tse_byte_buffer_take(grpc_slice slice)
{
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&slice, 1);

    grpc_slice_unref(slice);
    return bb;
}

grpc_byte_buffer *tse_encode(const ProtobufCMessage *msg)
{
    return tse_byte_buffer_take(tse_pack_slice(msg));
}

void tse_call_log_kv(tse_call *c, const char *key, const char *value)
{
    int i = 0;
    size_t n;

    while (c->log_kv[2 * i] != NULL && i < TSE_LOG_KV_MAX)
        i++;
    if (i == TSE_LOG_KV_MAX)
        return;
    /* A bounded copy, not snprintf: 1.2k instructions per unary Publish. */
    n = value ? strnlen(value, sizeof(c->log_buf[i]) - 1) : 0;
    memcpy(c->log_buf[i], value ? value : "", n);
    c->log_buf[i][n] = '\0';
    c->log_kv[2 * i] = key;
    c->log_kv[2 * i + 1] = c->log_buf[i];
}

/* The status batch completed: the call is DONE and its handler let go. */
static void on_finished(tse_tag *tag, bool ok)
{
    tse_call *c = TSE_CONTAINER_OF(tag, tse_call, finished);

    pthread_mutex_lock(&c->lock);
    c->state = TSE_CALL_DONE;
    pthread_mutex_unlock(&c->lock);
    tse_call_unref(c); /* the batch's */
    tse_call_unref(c); /* the handler's */
}

/* The status of err into c (code, message, details), for the status op. */
static grpc_status_code status_of(tse_call *c, const tse_error *err, grpc_op *op)
{
    char text[TSE_ERROR_FIELD_MAX + TSE_ERROR_MESSAGE_MAX + 4] = "";
    grpc_status_code code = tse_status_to_grpc(err ? err->code : TSE_OK);

    if (err != NULL && (err->code != TSE_OK || err->message[0] != '\0'))
        tse_error_describe(err, text, sizeof(text));
    grpc_slice_unref(c->status_details);
    c->status_details = grpc_slice_from_copied_string(text);
    op->op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    op->data.send_status_from_server.status = code;
    op->data.send_status_from_server.status_details = &c->status_details;
    if (tse_error_has_details(err)) {
        grpc_slice_unref(c->trailer.value);
        c->trailer.key = grpc_slice_from_static_string("grpc-status-details-bin");
        c->trailer.value = tse_status_details_bin(err, text);
        op->data.send_status_from_server.trailing_metadata_count = 1;
        op->data.send_status_from_server.trailing_metadata = &c->trailer;
    }
    return code;
}

void tse_call_finish_locked(tse_call *c, grpc_byte_buffer *msg, const tse_error *err)
{
    grpc_op ops[4];
    size_t n;
    bool ok = err == NULL || err->code == TSE_OK;

    if (c->state != TSE_CALL_ACTIVE) {
        if (msg != NULL)
            grpc_byte_buffer_destroy(msg);
        invariant_broken(c, "a call answered twice; the second answer is dropped");
        return;
    }
    c->state = TSE_CALL_FINISHING;
    memset(ops, 0, sizeof(ops));
    n = initial_md_locked(c, &ops[0]);
    if (msg != NULL && ok) {
        if (c->response != NULL)
            grpc_byte_buffer_destroy(c->response);
        c->response = msg;
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = msg;
    } else if (msg != NULL) {
        grpc_byte_buffer_destroy(msg);
    }
    c->status = status_of(c, err, &ops[n++]);
    tse_log_request(c->method->name, tse_grpc_code_name(c->status), tse_clock_us() - c->start_us,
                    c->correlation_id, c->log_kv);
    if (!c->close_started) {
        c->close_started = true;
        ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
        ops[n++].data.recv_close_on_server.cancelled = &c->cancelled;
    }
    c->finished.fn = on_finished;
    c->refs++; /* the batch's */
    tse_tsan_release(&c->finished);
    if (grpc_call_start_batch(c->call, ops, n, &c->finished, NULL) == GRPC_CALL_OK)
        return;
    /* Refused (the call is broken): it is over all the same. The caller
     * holds a reference of its own, so this is never the last. */
    tse_logf(TSE_LOG_WARN, "%s: the status could not be sent", c->method->name);
    c->refs -= 2; /* the batch's and the handler's */
    c->state = TSE_CALL_DONE;
    assert(c->refs > 0);
}

void tse_call_finish(tse_call *c, grpc_byte_buffer *msg, const tse_error *err)
{
    call_ref(c); /* ours, across the finish */
    pthread_mutex_lock(&c->lock);
    tse_call_finish_locked(c, msg, err);
    pthread_mutex_unlock(&c->lock);
    tse_call_unref(c);
}

void tse_call_finish_unary(tse_call *c, const ProtobufCMessage *resp, const tse_error *err)
{
    bool ok = err == NULL || err->code == TSE_OK;

    tse_call_finish(c, resp != NULL && ok ? tse_encode(resp) : NULL, err);
}

void tse_call_fail(tse_call *c, const tse_error *err)
{
    tse_call_finish(c, NULL, err);
}
