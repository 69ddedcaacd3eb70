/*
 * grpc_client.c - blocking test calls and streams on the client SDK's
 * asynchronous API; see grpc_client.h.
 *
 * The SDK runs handlers on the client's call thread; a caller here waits on
 * its own condition variable for what they hand over. A unary call waits
 * for its one callback. A stream queues the responses its handler got,
 * pausing the SDK stream after each one; recv resumes it when the queue is
 * empty, so one response at a time is asked for, as a raw client that
 * reads when told would. The stream starts (tse_client_stream_start) with
 * the first send, because the SDK sends the first request with the call;
 * the stream's lock is held across the start so that a handler never runs
 * before the handle is stored.
 */
#include "grpc_client.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ============================== channels ================================== */

static tse_client *channel_of(const tse_client_options *o)
{
    tse_client_error err;
    tse_client *c = NULL;

    if (tse_client_connect(o, &c, &err) != TSE_CLIENT_OK) {
        fprintf(stderr, "tse_test_channel %s: %s\n", o->target, err.message);
        abort();
    }
    return c;
}

tse_client *tse_test_channel_secure(const char *addr, const char *roots_pem, const char *token)
{
    tse_client_options o = {.target = addr,
                            .source_service = "tracseq-tests",
                            .reconnect_initial_ms = 1000,
                            .reconnect_max_ms = 120000,
                            .tls_root_certs_pem = roots_pem,
                            .token = token};

    return channel_of(&o);
}

tse_client *tse_test_channel_backoff(const char *addr, int initial_ms, int max_ms)
{
    tse_client_options o = {.target = addr,
                            .source_service = "tracseq-tests",
                            .reconnect_initial_ms = initial_ms,
                            .reconnect_max_ms = max_ms};

    return channel_of(&o);
}

/* gRPC's own default backoff (1 s doubling to 2 minutes), which these
 * tests had before they used the SDK. */
tse_client *tse_test_channel(const char *addr)
{
    return tse_test_channel_backoff(addr, 1000, 120000);
}

void tse_test_channel_destroy(tse_client *ch)
{
    tse_client_destroy(ch);
}

/* ============================== helpers =================================== */

/* The SDK's deadline: 0 means "the client's" there, "now" here. */
static int sdk_timeout(int timeout_ms)
{
    return timeout_ms < 0 ? -1 : timeout_ms == 0 ? 1 : timeout_ms;
}

static void set_status(grpc_status_code *code, char *details, size_t size,
                       const tse_client_error *err)
{
    *code = err == NULL           ? GRPC_STATUS_OK
            : err->grpc_code >= 0 ? (grpc_status_code)err->grpc_code
                                  : GRPC_STATUS_INTERNAL;
    snprintf(details, size, "%s", *code != GRPC_STATUS_OK ? err->message : "");
}

static void cond_init_monotonic(pthread_cond_t *cv)
{
    pthread_condattr_t a;

    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &a);
    pthread_condattr_destroy(&a);
}

/* An absolute CLOCK_MONOTONIC time timeout_ms from now. */
static struct timespec after_ms(int timeout_ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

static ProtobufCMessage *decode(const ProtobufCMessageDescriptor *desc, const void *data,
                                size_t len)
{
    return protobuf_c_message_unpack(desc, NULL, len, data);
}

/* ============================== unary ===================================== */

typedef struct unary_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    grpc_status_code code;
    char details[512];
    const ProtobufCMessageDescriptor *resp_desc;
    ProtobufCMessage *resp;
} unary_wait;

static void on_unary(void *arg, tse_client_status status, const tse_client_error *err,
                     const void *response, size_t len)
{
    unary_wait *u = arg;

    pthread_mutex_lock(&u->mu);
    if (status == TSE_CLIENT_OK && u->resp_desc != NULL)
        u->resp = decode(u->resp_desc, response, len);
    set_status(&u->code, u->details, sizeof(u->details), err);
    u->done = true;
    pthread_cond_signal(&u->cv);
    pthread_mutex_unlock(&u->mu);
}

static grpc_status_code unary(tse_client *ch, const char *method, const void *data, size_t len,
                              const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                              tse_test_status *status, int timeout_ms,
                              const tse_client_metadata *md, size_t n_md)
{
    tse_client_call_options o = {
        .timeout_ms = sdk_timeout(timeout_ms), .metadata = md, .n_metadata = n_md};
    unary_wait u = {.mu = PTHREAD_MUTEX_INITIALIZER, .resp_desc = resp != NULL ? resp_desc : NULL};
    tse_client_error err;

    cond_init_monotonic(&u.cv);
    if (resp != NULL)
        *resp = NULL;
    if (tse_client_call_start(ch, method, data, len, &o, on_unary, &u, NULL, &err) != TSE_CLIENT_OK)
        set_status(&u.code, u.details, sizeof(u.details), &err);
    else {
        pthread_mutex_lock(&u.mu);
        while (!u.done)
            pthread_cond_wait(&u.cv, &u.mu);
        pthread_mutex_unlock(&u.mu);
    }
    if (resp != NULL)
        *resp = u.resp;
    if (status != NULL) {
        status->code = u.code;
        snprintf(status->details, sizeof(status->details), "%s", u.details);
    }
    pthread_cond_destroy(&u.cv);
    pthread_mutex_destroy(&u.mu);
    return u.code;
}

grpc_status_code tse_test_unary(tse_client *ch, const char *method, const ProtobufCMessage *req,
                                const ProtobufCMessageDescriptor *resp_desc,
                                ProtobufCMessage **resp, tse_test_status *status, int timeout_ms,
                                const char *md_key, const char *md_value)
{
    tse_client_metadata md = {md_key, md_value};

    return tse_test_unary_md(ch, method, req, resp_desc, resp, status, timeout_ms, &md,
                             md_key != NULL);
}

grpc_status_code tse_test_unary_md(tse_client *ch, const char *method, const ProtobufCMessage *req,
                                   const ProtobufCMessageDescriptor *resp_desc,
                                   ProtobufCMessage **resp, tse_test_status *status, int timeout_ms,
                                   const tse_client_metadata *md, size_t n_md)
{
    size_t len = protobuf_c_message_get_packed_size(req);
    uint8_t *buf = malloc(len + 1);
    grpc_status_code code;

    if (buf == NULL)
        abort();
    protobuf_c_message_pack(req, buf);
    code = unary(ch, method, buf, len, resp_desc, resp, status, timeout_ms, md, n_md);
    free(buf);
    return code;
}

grpc_status_code tse_test_unary_raw(tse_client *ch, const char *method, const void *data,
                                    size_t len, const ProtobufCMessageDescriptor *resp_desc,
                                    ProtobufCMessage **resp, tse_test_status *status,
                                    int timeout_ms)
{
    return unary(ch, method, data, len, resp_desc, resp, status, timeout_ms, NULL, 0);
}

/* ============================== streams =================================== */

typedef struct reply {
    struct reply *next;
    size_t len;
    unsigned char bytes[];
} reply;

struct tse_test_stream {
    tse_client *client;
    char *method;
    int timeout_ms;
    tse_client_metadata md[TSE_TEST_STREAM_MD_MAX]; /* strings owned */
    size_t n_md;
    tse_client_stream *stream; /* NULL until the first send */

    pthread_mutex_t mu; /* the fields below */
    pthread_cond_t cv;
    reply *head, *tail; /* responses not yet received */
    bool ended;
    grpc_status_code code;
    char details[512];
};

static void on_message(void *arg, const void *msg, size_t len)
{
    tse_test_stream *s = arg;
    reply *r = malloc(sizeof(*r) + len);

    if (r == NULL)
        abort();
    r->next = NULL;
    r->len = len;
    memcpy(r->bytes, msg, len);
    pthread_mutex_lock(&s->mu);
    if (s->tail != NULL)
        s->tail->next = r;
    else
        s->head = r;
    s->tail = r;
    tse_client_stream_pause(s->stream, true); /* until recv asks again */
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void on_end(void *arg, tse_client_status status, const tse_client_error *err)
{
    tse_test_stream *s = arg;

    (void)status;
    pthread_mutex_lock(&s->mu);
    set_status(&s->code, s->details, sizeof(s->details), err);
    s->ended = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

tse_test_stream *tse_test_stream_open(tse_client *ch, const char *method, int timeout_ms,
                                      const char *md_key, const char *md_value)
{
    tse_test_stream *s = calloc(1, sizeof(*s));

    if (s == NULL || (s->method = strdup(method)) == NULL)
        abort();
    s->client = ch;
    s->timeout_ms = sdk_timeout(timeout_ms);
    if (md_key != NULL)
        tse_test_stream_add_metadata(s, md_key, md_value);
    pthread_mutex_init(&s->mu, NULL);
    cond_init_monotonic(&s->cv);
    return s;
}

void tse_test_stream_add_metadata(tse_test_stream *s, const char *key, const char *value)
{
    if (s->n_md == TSE_TEST_STREAM_MD_MAX || s->stream != NULL)
        abort();
    s->md[s->n_md].key = strdup(key);
    s->md[s->n_md].value = strdup(value);
    if (s->md[s->n_md].key == NULL || s->md[s->n_md].value == NULL)
        abort();
    s->n_md++;
}

/* Starts the SDK stream with data as its first message (under mu). */
static bool start_locked(tse_test_stream *s, const void *data, size_t len)
{
    static const tse_client_stream_handlers h = {on_message, on_end};
    tse_client_call_options o = {
        .timeout_ms = s->timeout_ms, .metadata = s->md, .n_metadata = s->n_md};
    tse_client_error err;

    if (tse_client_stream_start(s->client, s->method, data, len, &o, &h, s, &s->stream, &err) ==
        TSE_CLIENT_OK)
        return true;
    set_status(&s->code, s->details, sizeof(s->details), &err);
    s->ended = true;
    return false;
}

bool tse_test_stream_send_raw(tse_test_stream *s, const void *data, size_t len)
{
    bool ok;

    pthread_mutex_lock(&s->mu);
    if (s->stream == NULL && !s->ended)
        ok = start_locked(s, data, len);
    else
        ok = !s->ended && tse_client_stream_send(s->stream, data, len) == TSE_CLIENT_OK;
    pthread_mutex_unlock(&s->mu);
    return ok;
}

bool tse_test_stream_send(tse_test_stream *s, const ProtobufCMessage *msg)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(len + 1);
    bool ok;

    if (buf == NULL)
        abort();
    protobuf_c_message_pack(msg, buf);
    ok = tse_test_stream_send_raw(s, buf, len);
    free(buf);
    return ok;
}

static void need_started(const tse_test_stream *s, const char *what)
{
    if (s->stream == NULL && !s->ended) {
        fprintf(stderr, "grpc_client: %s on %s before its first send\n", what, s->method);
        abort();
    }
}

bool tse_test_stream_close_send(tse_test_stream *s)
{
    bool ok;

    pthread_mutex_lock(&s->mu);
    need_started(s, "close_send");
    ok = !s->ended && tse_client_stream_close_send(s->stream) == TSE_CLIENT_OK;
    pthread_mutex_unlock(&s->mu);
    return ok;
}

/* The first queued response, or NULL. Under mu. */
static reply *pop_locked(tse_test_stream *s)
{
    reply *r = s->head;

    if (r != NULL && (s->head = r->next) == NULL)
        s->tail = NULL;
    return r;
}

ProtobufCMessage *tse_test_stream_recv(tse_test_stream *s, const ProtobufCMessageDescriptor *desc,
                                       int timeout_ms, bool *timed_out)
{
    struct timespec until = after_ms(timeout_ms > 0 ? timeout_ms : 0);
    ProtobufCMessage *msg = NULL;
    bool late = false;
    reply *r;

    pthread_mutex_lock(&s->mu);
    need_started(s, "recv");
    if (s->head == NULL && !s->ended)
        tse_client_stream_pause(s->stream, false);
    while (s->head == NULL && !s->ended && !late) {
        if (timeout_ms < 0)
            pthread_cond_wait(&s->cv, &s->mu);
        else if (pthread_cond_timedwait(&s->cv, &s->mu, &until) == ETIMEDOUT)
            late = s->head == NULL && !s->ended;
    }
    r = pop_locked(s);
    pthread_mutex_unlock(&s->mu);
    if (timed_out != NULL)
        *timed_out = late;
    if (r != NULL) {
        msg = decode(desc, r->bytes, r->len);
        free(r);
    }
    return msg;
}

static void stream_free(tse_test_stream *s)
{
    reply *r;

    while ((r = pop_locked(s)) != NULL)
        free(r);
    tse_client_stream_release(s->stream);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s->method);
    for (size_t i = 0; i < s->n_md; i++) {
        free((char *)s->md[i].key);
        free((char *)s->md[i].value);
    }
    free(s);
}

grpc_status_code tse_test_stream_finish(tse_test_stream *s, tse_test_status *status)
{
    grpc_status_code code;
    reply *r;

    pthread_mutex_lock(&s->mu);
    need_started(s, "finish");
    while (!s->ended) {
        while ((r = pop_locked(s)) != NULL)
            free(r);
        tse_client_stream_pause(s->stream, false);
        pthread_cond_wait(&s->cv, &s->mu);
    }
    code = s->code;
    if (status != NULL) {
        status->code = code;
        snprintf(status->details, sizeof(status->details), "%s", s->details);
    }
    pthread_mutex_unlock(&s->mu);
    stream_free(s);
    return code;
}

void tse_test_stream_cancel(tse_test_stream *s)
{
    pthread_mutex_lock(&s->mu);
    if (s->stream != NULL) {
        tse_client_stream_cancel(s->stream, TSE_CLIENT_CANCELLED, NULL);
        while (!s->ended)
            pthread_cond_wait(&s->cv, &s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    stream_free(s);
}
