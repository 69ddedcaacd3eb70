/*
 * subscriptions.h - the subscription calls the integration tests make again
 * and again, over tse_test_unary: create one over a single pattern, delete
 * one, count the Subscribe streams the service has attached to one, read
 * the stats; publish numbered events; join, read and ack a Subscribe stream.
 */
#ifndef TSE_TEST_SUBSCRIPTIONS_H
#define TSE_TEST_SUBSCRIPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "grpc_client.h"
#include "tracseq/events/v1/service.pb-c.h"

/* A subscription of one event type pattern, for a test to adjust before it
 * creates it; the message points into its tse_test_subscription, which must
 * outlive its use. */
typedef struct tse_test_subscription {
    Tracseq__Events__V1__Subscription sub;
    char *types[4]; /* a test may add patterns: types[sub.n_event_types++] */
    Google__Protobuf__Timestamp start_time; /* for sub.start_time */
} tse_test_subscription;

/* Fills t and returns its subscription: name, the one pattern, start, an
 * ack deadline of 30 s; the rest unset (the service's defaults). */
Tracseq__Events__V1__Subscription *
tse_test_subscription_init(tse_test_subscription *t, const char *name, const char *pattern,
                           Tracseq__Events__V1__StartPosition start);

/* Creates sub (CreateSubscription, timeout_ms); fails the test (cmocka)
 * with the status when it is not created. */
void tse_test_subscription_create(tse_client *ch, const Tracseq__Events__V1__Subscription *sub,
                                  int timeout_ms);

/* Creates subscription name of the one event type pattern, an ack deadline
 * of 30 s, start and auto_ack as given (CreateSubscription, timeout_ms);
 * fails the test (cmocka) with the status when it is not created. */
void tse_test_create_subscription(tse_client *ch, const char *name, const char *pattern,
                                  Tracseq__Events__V1__StartPosition start, bool auto_ack,
                                  int timeout_ms);

/* Deletes subscription name (DeleteSubscription, timeout_ms); fails the
 * test (cmocka) with the status when it is not deleted. */
void tse_test_delete_subscription(tse_client *ch, const char *name, int timeout_ms);

/* GetStats (timeout_ms); fails the test (cmocka) with the status when it
 * is not answered. Free with protobuf_c_message_free_unpacked. */
Tracseq__Events__V1__Stats *tse_test_get_stats(tse_client *ch, int timeout_ms);

/* Subscribe streams the service of ch has attached to name
 * (GetSubscription, timeout_ms): 0 when it has none, the subscription does
 * not exist or the call fails. */
uint32_t tse_test_subscribers_of(tse_client *ch, const char *name, int timeout_ms);

/* Opens a Subscribe stream joining subscription name as consumer (NULL or
 * "": the service names it), asking max_deliveries_per_message per_message
 * (0: not set). A stream the server refuses at once ends with its status
 * (tse_test_stream_finish). */
tse_test_stream *tse_test_subscribe(tse_client *ch, const char *name, const char *consumer,
                                    uint32_t per_message, int timeout_ms);

/* Acks the n ids on a Subscribe stream, in one message; false when the
 * stream has ended. */
bool tse_test_send_acks(tse_test_stream *s, char *const *ids, size_t n);

/* Publishes events seq from .. from + n - 1 of type at priority (events.h's
 * numbered events, source "tests") through one PublishStream; fails the test
 * (cmocka) unless every one is answered without an error. */
void tse_test_publish_seqs(tse_client *ch, const char *type, int priority, int from, int n);

/* The deliveries of one Delivery message of a Subscribe stream, in order:
 * the message itself, then its `more`; up to cap into out (borrowed from
 * m). Returns how many. */
size_t tse_test_message_deliveries(const Tracseq__Events__V1__Delivery *m,
                                   const Tracseq__Events__V1__Delivery **out, size_t cap);

/* The next Delivery message of a Subscribe stream; NULL when none came
 * within timeout_ms (*ended false) or the stream ended (*ended true). ended
 * may be NULL. Free with protobuf_c_message_free_unpacked. */
Tracseq__Events__V1__Delivery *tse_test_next_delivery(tse_test_stream *s, int timeout_ms,
                                                      bool *ended);

#endif
