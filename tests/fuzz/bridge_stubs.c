/*
 * bridge_stubs.c - runs the REST bridge's routes and handlers without their
 * daemon (see bridge_harness.h): fuzz_bridge_run, and stand-ins for the
 * entry points of rest-bridge/server.c, sse.c, the SDK's publisher and
 * libmicrohttpd's header and query lookup. Each stand-in keeps the
 * documented contract of the real one (bridge.h, tracseq/client.h, sse.h), so the
 * handlers cannot tell: a deferred step never completes (the request stays
 * pending), borrowed messages are only read.
 */
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bridge.h"
#include "bridge_harness.h"
#include "sse.h"

/* What MHD_lookup_connection_value reads: the request being run. */
typedef struct fake_conn {
    const fuzz_bridge_request *r;
    char query[1024];
    const char *args[32][2];
    size_t n_args;
} fake_conn;

/* ---- libmicrohttpd ---------------------------------------------------------- */

const char *MHD_lookup_connection_value(struct MHD_Connection *connection, enum MHD_ValueKind kind,
                                        const char *key)
{
    const fake_conn *c = (const fake_conn *)connection;

    if (c == NULL || key == NULL)
        return NULL;
    if (kind == MHD_HEADER_KIND) {
        for (size_t i = 0; i < c->r->n_headers; i++)
            if (strcasecmp(c->r->headers[i][0], key) == 0)
                return c->r->headers[i][1];
    } else if (kind == MHD_GET_ARGUMENT_KIND) {
        for (size_t i = 0; i < c->n_args; i++)
            if (strcmp(c->args[i][0], key) == 0)
                return c->args[i][1];
    }
    return NULL;
}

int MHD_get_connection_values(struct MHD_Connection *connection, enum MHD_ValueKind kind,
                              MHD_KeyValueIterator iterator, void *iterator_cls)
{
    const fake_conn *c = (const fake_conn *)connection;
    int n = 0;

    if (c == NULL)
        return -1;
    if (kind & MHD_HEADER_KIND)
        for (size_t i = 0; i < c->r->n_headers; i++, n++)
            if (iterator != NULL && iterator(iterator_cls, MHD_HEADER_KIND, c->r->headers[i][0],
                                             c->r->headers[i][1]) != MHD_YES)
                return n + 1;
    if (kind & MHD_GET_ARGUMENT_KIND)
        for (size_t i = 0; i < c->n_args; i++, n++)
            if (iterator != NULL && iterator(iterator_cls, MHD_GET_ARGUMENT_KIND, c->args[i][0],
                                             c->args[i][1]) != MHD_YES)
                return n + 1;
    return n;
}

/* ---- server.c ------------------------------------------------------------------ */

void tsb_request_defer(tsb_request *req, tsb_response *resp, tsb_then then)
{
    resp->pending = true;
}

void tsb_request_complete(tsb_request *req, const tsb_calls_status *st, ProtobufCMessage *out)
{
    if (out != NULL)
        protobuf_c_message_free_unpacked(out, NULL);
}

/* A message the bridge would send must pack and decode again as its type. */
static void check_message(const ProtobufCMessage *in)
{
    size_t len = protobuf_c_message_get_packed_size(in);
    uint8_t *buf = malloc(len ? len : 1);
    ProtobufCMessage *back;

    if (buf == NULL)
        abort();
    protobuf_c_message_pack(in, buf);
    back = protobuf_c_message_unpack(in->descriptor, NULL, len, buf);
    if (back == NULL) {
        fprintf(stderr, "the bridge would send a %s that does not decode\n", in->descriptor->name);
        abort();
    }
    protobuf_c_message_free_unpacked(back, NULL);
    free(buf);
}

void tsb_request_call(tsb_request *req, tsb_response *resp, const char *method,
                      const ProtobufCMessage *in, int timeout_ms, int flags, tsb_then then)
{
    check_message(in);
    tsb_request_defer(req, resp, then);
}

/* ---- the SDK's publisher, sse.c ------------------------------------------------------ */

/* The one publisher the handlers see; never dereferenced. */
static char fake_publisher;

tse_client_status tse_client_event_from_envelope(const void *envelope, size_t len,
                                                 tse_client_event **out, tse_client_error *err)
{
    ProtobufCMessage *back =
        protobuf_c_message_unpack(&tracseq__events__v1__event__descriptor, NULL, len, envelope);

    if (back == NULL) {
        fprintf(stderr, "the bridge would send an Event that does not decode\n");
        abort();
    }
    protobuf_c_message_free_unpacked(back, NULL);
    *out = (tse_client_event *)(void *)&fake_publisher;
    return TSE_CLIENT_OK;
}

void tse_client_event_destroy(tse_client_event *ev)
{
}

tse_client_status tse_client_publisher_publish(tse_client_publisher *pub,
                                               const tse_client_event *ev, void *user_data,
                                               tse_client_error *err)
{
    return TSE_CLIENT_OK; /* queued: the callback would come later, so never */
}

tse_client_status tse_client_publisher_publish_many(tse_client_publisher *pub,
                                                    const tse_client_event *const *evs,
                                                    void *const *user_data, size_t n,
                                                    size_t *queued, tse_client_error *err)
{
    *queued = n;
    return TSE_CLIENT_OK; /* queued, never answered, as above */
}

/* A caller's publish (with its Authorization): started, never answered. */
tse_client_status tse_client_call_start(tse_client *client, const char *method, const void *request,
                                        size_t len, const tse_client_call_options *options,
                                        tse_client_call_cb cb, void *cb_arg, tse_client_call **out,
                                        tse_client_error *err)
{
    return TSE_CLIENT_OK;
}

/* Read only of a failed call or publish, which the stand-ins above never
 * report: reaching it means the harness lost track of the SDK. */
const char *tse_client_error_problem(const tse_client_error *err)
{
    fprintf(stderr, "a stand-in reported an SDK failure it never makes\n");
    abort();
}

/* The publishers' lifetime is main.c's: never here. */
tse_client_status tse_client_publisher_create(tse_client *client,
                                              const tse_client_publisher_options *options,
                                              tse_client_publish_cb cb, void *cb_arg,
                                              tse_client_publisher **out, tse_client_error *err)
{
    abort();
}

void tse_client_publisher_cancel(tse_client_publisher *pub)
{
}

void tse_client_publisher_destroy(tse_client_publisher *pub)
{
}

void tsb_sse_start(tsb_request *req, tsb_response *resp,
                   const Tracseq__Events__V1__Subscription *sub, const char *consumer)
{
    /* Reached only after the service answered GetSubscription: never here. */
    abort();
}

void tsb_sse_settled(tsb_sse_hub *h, const char *subscription, char *const *ids, size_t n,
                     bool nack, uint32_t delay_ms)
{
}

/* ---- the run ---------------------------------------------------------------------- */

static void split_query(fake_conn *c, const char *query)
{
    char *p, *save = NULL;

    snprintf(c->query, sizeof(c->query), "%s", query);
    for (p = strtok_r(c->query, "&", &save); p && c->n_args < 32; p = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(p, '=');
        if (eq != NULL)
            *eq++ = '\0';
        c->args[c->n_args][0] = p;
        c->args[c->n_args++][1] = eq ? eq : "";
    }
}

static const tsb_bridge_config *config(void)
{
    static tsb_bridge_config cfg;
    static bool loaded;

    if (!loaded) {
        char *argv[] = {"fuzz", NULL};
        tse_error err;
        /* The defaults (and whatever the environment says, as in the bridge). */
        if (tsb_bridge_config_load(&cfg, 1, argv, stdout, &err) != TSE_CONFIG_RUN) {
            fprintf(stderr, "bridge settings: %s: %s\n", err.field, err.message);
            abort();
        }
        loaded = true;
    }
    return &cfg;
}

static void check_answer(const tsb_response *resp)
{
    json_t *body, *error, *code;

    if (resp->status < 200 || resp->status > 599) {
        fprintf(stderr, "HTTP status %u\n", resp->status);
        abort();
    }
    if (resp->body == NULL || resp->content_type == NULL ||
        strncmp(resp->content_type, "application/json", 16) != 0)
        return;
    body = json_loadb(resp->body, resp->len, 0, NULL);
    if (body == NULL) {
        fprintf(stderr, "the answer is not JSON: %.*s\n", (int)resp->len, resp->body);
        abort();
    }
    error = json_object_get(body, "error");
    code = json_object_get(body, "code");
    if (resp->status >= 400 && (!json_is_string(error) || !json_is_string(code))) {
        fprintf(stderr, "error answer %u without error and code: %.*s\n", resp->status,
                (int)resp->len, resp->body);
        abort();
    }
    json_decref(body);
}

void fuzz_bridge_run(const fuzz_bridge_request *r)
{
    tse_client_publisher *publisher = (tse_client_publisher *)(void *)&fake_publisher;
    tsb_bridge bridge = {.cfg = config(), .publishers = &publisher, .npublishers = 1};
    fake_conn conn = {.r = r};
    tsb_request req = {.bridge = &bridge, .conn = (struct MHD_Connection *)&conn};
    tsb_response resp = {.status = 500};
    const char *q = strchr(r->target, '?');
    char path[2048];
    size_t route;
    tsb_handler fn;

    snprintf(path, sizeof(path), "%.*s", q ? (int)(q - r->target) : (int)strlen(r->target),
             r->target);
    if (q != NULL)
        split_query(&conn, q + 1);
    req.method = r->method;
    req.path = path;
    req.body = r->body;
    req.body_len = r->body_len;
    snprintf(req.correlation_id, sizeof(req.correlation_id),
             "0e7b6c1a-2f3d-4e5f-8a9b-0c1d2e3f4a5b");

    fn = tsb_route_find(&req, &resp, &route);
    if (fn == NULL && route != tsb_route_count())
        abort();
    if (fn != NULL)
        fn(&req, &resp);
    if (!resp.pending)
        check_answer(&resp);
    if (req.ctx_free != NULL)
        req.ctx_free(req.ctx);
    free(resp.body);
    json_decref(resp.headers);
}
