/*
 * subscriptions.c - see subscriptions.h.
 */
#include "subscriptions.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "events.h"

#define SERVICE "/tracseq.events.v1.EventService/"

Tracseq__Events__V1__Subscription *
tse_test_subscription_init(tse_test_subscription *t, const char *name, const char *pattern,
                           Tracseq__Events__V1__StartPosition start)
{
    Tracseq__Events__V1__Subscription sub = TRACSEQ__EVENTS__V1__SUBSCRIPTION__INIT;
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;

    t->sub = sub;
    t->start_time = ts;
    t->types[0] = (char *)pattern;
    t->sub.name = (char *)name;
    t->sub.event_types = t->types;
    t->sub.n_event_types = 1;
    t->sub.start = start;
    t->sub.ack_deadline_ms = 30000;
    return &t->sub;
}

void tse_test_subscription_create(tse_client *ch, const Tracseq__Events__V1__Subscription *sub,
                                  int timeout_ms)
{
    Tracseq__Events__V1__CreateSubscriptionRequest req =
        TRACSEQ__EVENTS__V1__CREATE_SUBSCRIPTION_REQUEST__INIT;
    ProtobufCMessage *out = NULL;
    tse_test_status st;
    grpc_status_code code;

    req.subscription = (Tracseq__Events__V1__Subscription *)sub;
    code = tse_test_unary(ch, SERVICE "CreateSubscription", &req.base,
                          &tracseq__events__v1__subscription__descriptor, &out, &st, timeout_ms,
                          NULL, NULL);
    if (code != GRPC_STATUS_OK)
        fail_msg("CreateSubscription %s: status %d '%s'", sub->name, code, st.details);
    protobuf_c_message_free_unpacked(out, NULL);
}

void tse_test_create_subscription(tse_client *ch, const char *name, const char *pattern,
                                  Tracseq__Events__V1__StartPosition start, bool auto_ack,
                                  int timeout_ms)
{
    tse_test_subscription t;
    Tracseq__Events__V1__Subscription *sub = tse_test_subscription_init(&t, name, pattern, start);

    sub->auto_ack = auto_ack;
    tse_test_subscription_create(ch, sub, timeout_ms);
}

void tse_test_delete_subscription(tse_client *ch, const char *name, int timeout_ms)
{
    Tracseq__Events__V1__DeleteSubscriptionRequest req =
        TRACSEQ__EVENTS__V1__DELETE_SUBSCRIPTION_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    tse_test_status st;
    grpc_status_code code;

    req.name = (char *)name;
    code = tse_test_unary(ch, SERVICE "DeleteSubscription", &req.base,
                          &tracseq__events__v1__delete_subscription_response__descriptor, &resp,
                          &st, timeout_ms, NULL, NULL);
    if (code != GRPC_STATUS_OK)
        fail_msg("DeleteSubscription %s: status %d '%s'", name, code, st.details);
    protobuf_c_message_free_unpacked(resp, NULL);
}

Tracseq__Events__V1__Stats *tse_test_get_stats(tse_client *ch, int timeout_ms)
{
    Tracseq__Events__V1__GetStatsRequest req = TRACSEQ__EVENTS__V1__GET_STATS_REQUEST__INIT;
    Tracseq__Events__V1__Stats *stats = NULL;
    tse_test_status st;
    grpc_status_code code =
        tse_test_unary(ch, SERVICE "GetStats", &req.base, &tracseq__events__v1__stats__descriptor,
                       (ProtobufCMessage **)&stats, &st, timeout_ms, NULL, NULL);

    if (code != GRPC_STATUS_OK)
        fail_msg("GetStats: status %d '%s'", code, st.details);
    assert_non_null(stats);
    return stats;
}

uint32_t tse_test_subscribers_of(tse_client *ch, const char *name, int timeout_ms)
{
    Tracseq__Events__V1__GetSubscriptionRequest req =
        TRACSEQ__EVENTS__V1__GET_SUBSCRIPTION_REQUEST__INIT;
    Tracseq__Events__V1__Subscription *out = NULL;
    tse_test_status st;
    uint32_t n = 0;

    req.name = (char *)name;
    if (tse_test_unary(ch, SERVICE "GetSubscription", &req.base,
                       &tracseq__events__v1__subscription__descriptor, (ProtobufCMessage **)&out,
                       &st, timeout_ms, NULL, NULL) == GRPC_STATUS_OK &&
        out != NULL && out->stats != NULL)
        n = out->stats->active_subscribers;
    if (out != NULL)
        protobuf_c_message_free_unpacked(&out->base, NULL);
    return n;
}

Tracseq__Events__V1__Delivery *tse_test_next_delivery(tse_test_stream *s, int timeout_ms,
                                                      bool *ended)
{
    bool timed_out = false;
    Tracseq__Events__V1__Delivery *d = (Tracseq__Events__V1__Delivery *)tse_test_stream_recv(
        s, &tracseq__events__v1__delivery__descriptor, timeout_ms, &timed_out);

    if (ended != NULL)
        *ended = d == NULL && !timed_out;
    return d;
}

tse_test_stream *tse_test_subscribe(tse_client *ch, const char *name, const char *consumer,
                                    uint32_t per_message, int timeout_ms)
{
    Tracseq__Events__V1__SubscribeRequest req = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__INIT;
    tse_test_stream *s = tse_test_stream_open(ch, SERVICE "Subscribe", timeout_ms, NULL, NULL);

    req.request_case = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_SUBSCRIPTION_NAME;
    req.subscription_name = (char *)name;
    req.consumer_name = consumer != NULL ? (char *)consumer : "";
    req.max_deliveries_per_message = per_message;
    /* Refused at once, the stream may break before this send completes:
     * the caller then sees it end with its status. */
    (void)tse_test_stream_send(s, &req.base);
    return s;
}

bool tse_test_send_acks(tse_test_stream *s, char *const *ids, size_t n)
{
    Tracseq__Events__V1__SubscribeRequest req = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__INIT;
    Tracseq__Events__V1__AckIds ack = TRACSEQ__EVENTS__V1__ACK_IDS__INIT;

    ack.ack_ids = (char **)ids;
    ack.n_ack_ids = n;
    req.request_case = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_ACK;
    req.ack = &ack;
    return tse_test_stream_send(s, &req.base);
}

void tse_test_publish_seqs(tse_client *ch, const char *type, int priority, int from, int n)
{
    tse_test_stream *s = tse_test_stream_open(ch, SERVICE "PublishStream", 300000, NULL, NULL);
    tse_test_status st;
    grpc_status_code code;

    for (int i = 0; i < n; i++) {
        Tracseq__Events__V1__PublishRequest req = TRACSEQ__EVENTS__V1__PUBLISH_REQUEST__INIT;
        tse_test_event t;
        req.event = tse_test_event_init(&t, "tests", type, priority, from + i, NULL);
        if (!tse_test_stream_send(s, &req.base))
            break;
    }
    for (int i = 0; i < n; i++) {
        Tracseq__Events__V1__PublishResponse *r =
            (Tracseq__Events__V1__PublishResponse *)tse_test_stream_recv(
                s, &tracseq__events__v1__publish_response__descriptor, 30000, NULL);
        if (r == NULL || r->error != NULL)
            fail_msg("PublishStream of %s seq-%d: %s", type, from + i,
                     r != NULL ? r->error->message : "no answer");
        protobuf_c_message_free_unpacked(&r->base, NULL);
    }
    tse_test_stream_close_send(s);
    code = tse_test_stream_finish(s, &st);
    if (code != GRPC_STATUS_OK)
        fail_msg("PublishStream of %s: status %d '%s'", type, code, st.details);
}

size_t tse_test_message_deliveries(const Tracseq__Events__V1__Delivery *m,
                                   const Tracseq__Events__V1__Delivery **out, size_t cap)
{
    size_t n = 0;

    if (cap == 0)
        return 0;
    out[n++] = m;
    for (size_t i = 0; i < m->n_more && n < cap; i++)
        out[n++] = m->more[i];
    return n;
}
