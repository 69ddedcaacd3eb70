/*
 * subscriptions.c - see subscriptions.h.
 */
#include "subscriptions.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#define SERVICE "/tracseq.events.v1.EventService/"

void tse_test_create_subscription(tse_client *ch, const char *name, const char *pattern,
                                  Tracseq__Events__V1__StartPosition start, bool auto_ack,
                                  int timeout_ms)
{
    Tracseq__Events__V1__CreateSubscriptionRequest req =
        TRACSEQ__EVENTS__V1__CREATE_SUBSCRIPTION_REQUEST__INIT;
    Tracseq__Events__V1__Subscription sub = TRACSEQ__EVENTS__V1__SUBSCRIPTION__INIT;
    char *types[1] = {(char *)pattern};
    ProtobufCMessage *out = NULL;
    tse_test_status st;
    grpc_status_code code;

    sub.name = (char *)name;
    sub.event_types = types;
    sub.n_event_types = 1;
    sub.start = start;
    sub.ack_deadline_ms = 30000;
    sub.auto_ack = auto_ack;
    req.subscription = &sub;
    code = tse_test_unary(ch, SERVICE "CreateSubscription", &req.base,
                          &tracseq__events__v1__subscription__descriptor, &out, &st, timeout_ms,
                          NULL, NULL);
    if (code != GRPC_STATUS_OK)
        fail_msg("CreateSubscription %s: status %d '%s'", name, code, st.details);
    protobuf_c_message_free_unpacked(out, NULL);
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
