/*
 * test_faults.c - faults under load, with real processes: a redis-server
 * with AOF (tests/support/harness.c) and the tracseq-events binary, while
 * publisher and subscriber threads keep calling it.
 *
 *   - Redis killed (SIGKILL) and restarted on the same port and AOF;
 *   - the service killed (SIGKILL) holding unacked deliveries, a new one
 *     started: they come again to another subscriber;
 *   - Redis stopped (SIGSTOP) for 5 s: every call is answered within the
 *     Redis timeout (UNAVAILABLE) or its own deadline, none hangs; after
 *     SIGCONT the load goes on;
 *   - SIGTERM under load: exit 0 within SHUTDOWN_GRACE, every call answered
 *     OK or failed with a clean status.
 *
 * What every test asserts at the end: each publish answered OK is in Redis,
 * in the stream and at the entry id it was answered with, exactly once
 * (every event carries a client-set id, and publishers retry a failed event
 * with the same id until it is answered OK); each was delivered to a
 * subscriber; nothing was delivered that was never published.
 *
 * Durability: the service acknowledges an event once Redis acknowledged it
 * (README, "Durability"). Redis with `appendfsync everysec` writes the AOF
 * before it replies, so a killed Redis process loses nothing acknowledged,
 * except that while a background fsync is slow (a busy disk) Redis
 * postpones that write for up to 2 s and replies anyway. On a shared test
 * machine that window is real, so the test that kills Redis runs it with
 * `appendfsync always`: then "answered OK" means "on disk", and the test
 * can demand that nothing is lost.
 *
 * Invariants of this file: each test has its own Redis and service, and
 * stops every thread it started; waits are for conditions with generous
 * deadlines; the time bounds asserted are "answered, not hung" bounds with
 * seconds of slack, not performance figures.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "grpc/health/v1/health.pb-c.h"
#include "grpc_client.h"
#include "harness.h"
#include "subscriptions.h"
#include "tracseq/events/v1/service.pb-c.h"
#include "wait.h"

#define SERVICE          "/tracseq.events.v1.EventService/"
#define M_PUBLISH        SERVICE "Publish"
#define M_PUBLISH_STREAM SERVICE "PublishStream"
#define M_SUBSCRIBE      SERVICE "Subscribe"
#define M_CREATE         SERVICE "CreateSubscription"
#define M_PULL           SERVICE "Pull"
#define M_ACK            SERVICE "Acknowledge"
#define M_STATS          SERVICE "GetStats"
#define M_HEALTH         "/grpc.health.v1.Health/Check"
#define MAX_EVENTS       200000
#define SUBSCRIPTION     "faults"
#define PULLED           "faults-pull"
#define MAX_THREADS      10

/* The service's Redis timeout in these tests: calls fail within it. */
#define REDIS_TIMEOUT_MS 1000
#define ACK_DEADLINE_MS  2000

typedef Tracseq__Events__V1__Delivery Delivery;

enum { UNUSED, ATTEMPTED, ANSWERED_OK };

/* ==== the world: what was published and delivered ==== */

typedef struct world {
    char addr[64];
    atomic_bool stop_publishing, stop_subscribing;
    atomic_int next;                    /* next event number */
    atomic_uchar state[MAX_EVENTS];     /* UNUSED, ATTEMPTED, ANSWERED_OK */
    char stream_id[MAX_EVENTS][24];     /* the entry id answered (written before OK) */
    atomic_uchar delivered[MAX_EVENTS]; /* to a subscriber of SUBSCRIPTION */
    atomic_uchar pulled[MAX_EVENTS];    /* by a Pull on PULLED */
    atomic_uchar attempt[MAX_EVENTS];   /* highest delivery_attempt seen */
    atomic_long ok, failed, deliveries, foreign, resubscribes;
    atomic_long codes[GRPC_STATUS_UNAUTHENTICATED + 1]; /* every call's final status */
    atomic_llong slowest_ms;                            /* longest unary call */
    atomic_bool stopping;                               /* the service is being stopped (SIGTERM) */
    atomic_long unmatched; /* CANCELLED by gRPC for a call never started */
    atomic_long wrong;     /* wrong answers seen by a load thread (printed) */
    atomic_long stream_ok; /* of ok: answered on a PublishStream */
    int publish_deadline_ms;
    pthread_t threads[MAX_THREADS];
    int n_threads;
    struct subscriber *subs[MAX_THREADS]; /* freed with the world */
    int n_subs;
} world;

static world *world_create(const char *addr)
{
    world *w = calloc(1, sizeof(*w));

    assert_non_null(w);
    snprintf(w->addr, sizeof(w->addr), "%s", addr);
    w->publish_deadline_ms = 10000;
    return w;
}

/* A channel that reconnects within half a second (the service restarts on
 * the same port; gRPC's default backoff would wait up to minutes). */
static tse_client *channel(const char *addr)
{
    return tse_test_channel_backoff(addr, 100, 500);
}

static void event_id(char *buf, size_t len, int n)
{
    snprintf(buf, len, "00000000-0000-4000-8000-%012d", n);
}

static const char *event_type(int n)
{
    return n % 2 ? "fault.b" : "fault.a";
}

/* Event number of an event id of ours; -1 when it is not one. */
static int event_number(const char *id)
{
    int n;

    if (id == NULL || strncmp(id, "00000000-0000-4000-8000-", 24) != 0 || strlen(id) != 36)
        return -1;
    n = atoi(id + 24);
    return n >= 0 && n < MAX_EVENTS ? n : -1;
}

static void count_code(world *w, grpc_status_code code, long long ms, const char *what,
                       const tse_test_status *st)
{
    long long prev = atomic_load(&w->slowest_ms);

    if (code == GRPC_STATUS_CANCELLED && atomic_load(&w->stopping) &&
        strcmp(st->details, "CANCELLED") == 0) {
        /* gRPC core (grpc/grpc#41785) answers a call that reaches a server
         * after its shutdown began, before the client read the GOAWAY,
         * CANCELLED with no detail: no handler ever saw it. Counted apart;
         * our handlers never answer CANCELLED without saying why. */
        atomic_fetch_add(&w->unmatched, 1);
        return;
    }
    if (code != GRPC_STATUS_OK && code != GRPC_STATUS_UNAVAILABLE)
        print_message("%s ended %d after %lld ms: '%s'\n", what, code, ms, st->details);

    if ((int)code >= 0 && code <= GRPC_STATUS_UNAUTHENTICATED)
        atomic_fetch_add(&w->codes[code], 1);
    while (ms > prev && !atomic_compare_exchange_weak(&w->slowest_ms, &prev, ms))
        ;
}

/* ==== calls ==== */

/* Event n as this test publishes it: a client-set id, its type, the id
 * again as subject. ev and data are the caller's; id holds 40 bytes. */
static void fill_event(int n, Tracseq__Events__V1__Event *ev, Google__Protobuf__Struct *data,
                       char *id)
{
    Tracseq__Events__V1__Event ev_init = TRACSEQ__EVENTS__V1__EVENT__INIT;
    Google__Protobuf__Struct data_init = GOOGLE__PROTOBUF__STRUCT__INIT;

    *ev = ev_init;
    *data = data_init;
    event_id(id, 40, n);
    ev->id = id;
    ev->event_type = (char *)event_type(n);
    ev->source_service = "fault-test";
    ev->subject = id;
    ev->payload_case = TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_DATA;
    ev->data = data;
}

/* A wrong answer seen on a load thread: printed and counted (the test's
 * own thread fails on the count: cmocka cannot fail from another thread). */
static void wrong(world *w, const char *fmt, ...)
{
    char msg[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    print_error("wrong answer: %s\n", msg);
    atomic_fetch_add(&w->wrong, 1);
}

/* Records event n answered OK at stream_id. */
static void answered_ok(world *w, int n, const char *stream_id)
{
    snprintf(w->stream_id[n], sizeof(w->stream_id[n]), "%s", stream_id);
    atomic_store(&w->state[n], ANSWERED_OK);
    atomic_fetch_add(&w->ok, 1);
}

/* Publishes event n once; on OK records its entry id. */
static grpc_status_code publish(world *w, tse_client *ch, int n, int deadline_ms,
                                tse_test_status *st)
{
    Tracseq__Events__V1__PublishRequest req = TRACSEQ__EVENTS__V1__PUBLISH_REQUEST__INIT;
    Tracseq__Events__V1__PublishResponse *resp = NULL;
    Tracseq__Events__V1__Event ev;
    Google__Protobuf__Struct data;
    long long t0 = tse_test_now_ms();
    grpc_status_code code;
    char id[40];

    fill_event(n, &ev, &data, id);
    req.event = &ev;
    code =
        tse_test_unary(ch, M_PUBLISH, &req.base, &tracseq__events__v1__publish_response__descriptor,
                       (ProtobufCMessage **)&resp, st, deadline_ms, NULL, NULL);
    count_code(w, code, tse_test_now_ms() - t0, "Publish", st);
    if (code == GRPC_STATUS_OK) {
        if (resp == NULL || resp->stream_id == NULL || resp->stream_id[0] == '\0') {
            wrong(w, "event %d answered OK without a stream id", n);
            code = GRPC_STATUS_INTERNAL;
        } else {
            answered_ok(w, n, resp->stream_id);
        }
    } else if (resp != NULL && resp->stream_id != NULL && resp->stream_id[0] != '\0') {
        wrong(w, "event %d answered %d with stream id %s", n, code, resp->stream_id);
    }
    if (resp != NULL)
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    return code;
}

/* Publishes new events until told to stop; each is retried with its id
 * until answered OK (or the stop). */
static void *publisher_main(void *arg)
{
    world *w = arg;
    tse_client *ch = channel(w->addr);
    tse_test_status st;

    while (!atomic_load(&w->stop_publishing)) {
        int n = atomic_fetch_add(&w->next, 1);
        if (n >= MAX_EVENTS)
            break;
        atomic_store(&w->state[n], ATTEMPTED);
        while (!atomic_load(&w->stop_publishing)) {
            if (publish(w, ch, n, w->publish_deadline_ms, &st) == GRPC_STATUS_OK) {
                usleep(2000); /* a load, not a flood: other tests share the cores */
                break;
            }
            atomic_fetch_add(&w->failed, 1);
            usleep(20000); /* pacing: retries during an outage are not a flood */
        }
    }
    tse_test_channel_destroy(ch);
    return NULL;
}

#define STREAM_WINDOW 16

/* Sends event n on a PublishStream; false when the stream is broken. */
static bool stream_send(tse_test_stream *st, int n)
{
    Tracseq__Events__V1__PublishRequest req = TRACSEQ__EVENTS__V1__PUBLISH_REQUEST__INIT;
    Tracseq__Events__V1__Event ev;
    Google__Protobuf__Struct data;
    char id[40];

    fill_event(n, &ev, &data, id);
    req.event = &ev;
    return tse_test_stream_send(st, &req.base);
}

/*
 * Sends the window's events on st and reads their answers (one each, in
 * order): events answered OK leave the window, the others stay for the
 * next round. False when the stream ended (or an answer took over 10 s: a
 * hang, counted wrong).
 */
static bool stream_round(world *w, tse_test_stream *st, int *window, int *size)
{
    int sent = 0, kept = 0, i;
    bool alive;

    while (sent < *size && stream_send(st, window[sent]))
        sent++;
    alive = sent == *size;
    for (i = 0; i < sent; i++) {
        bool timed_out = false;
        Tracseq__Events__V1__PublishResponse *resp =
            (Tracseq__Events__V1__PublishResponse *)tse_test_stream_recv(
                st, &tracseq__events__v1__publish_response__descriptor, 10000, &timed_out);
        int n = window[i];

        if (resp == NULL) {
            if (timed_out)
                wrong(w, "a PublishStream answer took over 10 s");
            alive = false;
            break;
        }
        /* Answers come in request order; an error answer has every other
         * field empty (service.proto). */
        if (resp->error != NULL) {
            if (resp->stream_id[0] != '\0' || resp->event_id[0] != '\0')
                wrong(w, "event %d answered with an error and a stream id %s", n, resp->stream_id);
            atomic_fetch_add(&w->failed, 1);
            window[kept++] = n;
        } else if (event_number(resp->event_id) != n || resp->stream_id[0] == '\0') {
            wrong(w, "PublishStream answered '%s' at '%s' for event %d", resp->event_id,
                  resp->stream_id, n);
            window[kept++] = n;
        } else {
            answered_ok(w, n, resp->stream_id);
            atomic_fetch_add(&w->stream_ok, 1);
        }
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    }
    for (; i < *size; i++) /* unanswered, unsent */
        window[kept++] = window[i];
    *size = kept;
    return alive;
}

/* Publishes new events on a PublishStream, STREAM_WINDOW at a time, until
 * told to stop; an event not answered OK goes again (same id) in the next
 * round, on a new stream when this one ended. */
static void *stream_publisher_main(void *arg)
{
    world *w = arg;
    tse_client *ch = channel(w->addr);
    int window[STREAM_WINDOW], size = 0;

    while (!atomic_load(&w->stop_publishing)) {
        tse_test_stream *st = tse_test_stream_open(ch, M_PUBLISH_STREAM, -1, NULL, NULL);
        tse_test_status status;
        bool alive = true;

        while (alive && !atomic_load(&w->stop_publishing)) {
            while (size < STREAM_WINDOW) {
                int n = atomic_fetch_add(&w->next, 1);
                if (n >= MAX_EVENTS)
                    break;
                atomic_store(&w->state[n], ATTEMPTED);
                window[size++] = n;
            }
            alive = stream_round(w, st, window, &size);
            usleep(size > 0 ? 20000 : 5000); /* pacing: a load, not a flood */
        }
        if (alive) {
            tse_test_stream_cancel(st);
            break;
        }
        count_code(w, tse_test_stream_finish(st, &status), 0, "PublishStream", &status);
        usleep(100000); /* pacing: a new stream during an outage ends at once */
    }
    tse_test_channel_destroy(ch);
    return NULL;
}

/* Records one delivery; false when it is not an event this test published. */
static bool record_delivery(world *w, const Delivery *d, atomic_uchar *seen)
{
    int n = d->event ? event_number(d->event->id) : -1;
    unsigned char a = (unsigned char)(d->delivery_attempt > 255 ? 255 : d->delivery_attempt);
    unsigned char prev;

    atomic_fetch_add(&w->deliveries, 1);
    if (n < 0 || atomic_load(&w->state[n]) == UNUSED ||
        strcmp(d->event->event_type, event_type(n)) != 0) {
        atomic_fetch_add(&w->foreign, 1);
        return false;
    }
    atomic_store(&seen[n], 1);
    prev = atomic_load(&w->attempt[n]);
    while (a > prev && !atomic_compare_exchange_weak(&w->attempt[n], &prev, a))
        ;
    return true;
}

typedef struct subscriber subscriber;

struct subscriber {
    world *w;
    char consumer[32];
    bool ack; /* ack each delivery (else hold them) */
    atomic_long received;
    atomic_bool stop;      /* this one only */
    atomic_int held[4096]; /* without ack: the events received */
    atomic_int n_held;
    atomic_bool finished; /* its thread is done: n_held is final */
};

static tse_test_stream *subscribe(tse_client *ch, const char *consumer)
{
    Tracseq__Events__V1__SubscribeRequest req = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__INIT;
    tse_test_stream *s = tse_test_stream_open(ch, M_SUBSCRIBE, -1, NULL, NULL);

    req.request_case = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_SUBSCRIPTION_NAME;
    req.subscription_name = SUBSCRIPTION;
    req.consumer_name = (char *)consumer;
    if (!tse_test_stream_send(s, &req.base)) {
        tse_test_stream_cancel(s);
        return NULL;
    }
    return s;
}

static void send_ack(tse_test_stream *s, const char *ack_id)
{
    Tracseq__Events__V1__SubscribeRequest req = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__INIT;
    Tracseq__Events__V1__AckIds ids = TRACSEQ__EVENTS__V1__ACK_IDS__INIT;
    char *one[1] = {(char *)ack_id};

    ids.ack_ids = one;
    ids.n_ack_ids = 1;
    req.request_case = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_ACK;
    req.ack = &ids;
    tse_test_stream_send(s, &req.base); /* a broken stream ends the loop below */
}

/* Receives (and acks) deliveries until told to stop; a stream that ends
 * (Redis or the service went away) is opened again. */
static void *subscriber_main(void *arg)
{
    subscriber *sub = arg;
    world *w = sub->w;
    tse_client *ch = channel(w->addr);

    while (!atomic_load(&w->stop_subscribing) && !atomic_load(&sub->stop)) {
        tse_test_stream *s = subscribe(ch, sub->consumer);
        tse_test_status st;
        bool timed_out = false, ended = false;
        Delivery *d;

        if (s == NULL) {
            usleep(100000); /* pacing: resubscribing during an outage fails at once */
            continue;
        }
        while (!atomic_load(&w->stop_subscribing) && !atomic_load(&sub->stop)) {
            d = (Delivery *)tse_test_stream_recv(s, &tracseq__events__v1__delivery__descriptor, 100,
                                                 &timed_out);
            if (d == NULL && timed_out)
                continue;
            if (d == NULL) {
                ended = true;
                break;
            }
            atomic_fetch_add(&sub->received, 1);
            if (record_delivery(w, d, w->delivered) && !sub->ack) {
                int i = atomic_fetch_add(&sub->n_held, 1);
                if (i < (int)(sizeof(sub->held) / sizeof(sub->held[0])))
                    atomic_store(&sub->held[i], event_number(d->event->id));
            }
            if (sub->ack)
                send_ack(s, d->ack_id);
            protobuf_c_message_free_unpacked(&d->base, NULL);
        }
        if (ended) {
            count_code(w, tse_test_stream_finish(s, &st), 0, "Subscribe", &st);
            atomic_fetch_add(&w->resubscribes, 1);
            usleep(100000); /* pacing, as above */
        } else {
            tse_test_stream_cancel(s);
        }
    }
    tse_test_channel_destroy(ch);
    atomic_store(&sub->finished, true);
    return NULL;
}

/* Pulls from PULLED (up to 50 events, waiting up to 500 ms) and acks what
 * it got with Acknowledge, until told to stop. */
static void *puller_main(void *arg)
{
    world *w = arg;
    tse_client *ch = channel(w->addr);

    while (!atomic_load(&w->stop_subscribing)) {
        Tracseq__Events__V1__PullRequest req = TRACSEQ__EVENTS__V1__PULL_REQUEST__INIT;
        Tracseq__Events__V1__PullResponse *resp = NULL;
        long long t0 = tse_test_now_ms();
        tse_test_status st;
        grpc_status_code code;

        req.subscription = PULLED;
        req.max_events = 50;
        req.wait_ms = 500;
        req.consumer_name = "puller";
        code =
            tse_test_unary(ch, M_PULL, &req.base, &tracseq__events__v1__pull_response__descriptor,
                           (ProtobufCMessage **)&resp, &st, 10000, NULL, NULL);
        count_code(w, code, tse_test_now_ms() - t0, "Pull", &st);
        if (code == GRPC_STATUS_OK && resp != NULL && resp->n_deliveries > 0) {
            Tracseq__Events__V1__AcknowledgeRequest ack =
                TRACSEQ__EVENTS__V1__ACKNOWLEDGE_REQUEST__INIT;
            char *ids[50];
            ProtobufCMessage *out = NULL;

            for (size_t i = 0; i < resp->n_deliveries && i < 50; i++) {
                record_delivery(w, resp->deliveries[i], w->pulled);
                ids[i] = resp->deliveries[i]->ack_id;
            }
            ack.subscription = PULLED;
            ack.ack_ids = ids;
            ack.n_ack_ids = resp->n_deliveries < 50 ? resp->n_deliveries : 50;
            t0 = tse_test_now_ms();
            code = tse_test_unary(ch, M_ACK, &ack.base,
                                  &tracseq__events__v1__acknowledge_response__descriptor, &out, &st,
                                  10000, NULL, NULL);
            count_code(w, code, tse_test_now_ms() - t0, "Acknowledge", &st);
            if (out != NULL)
                protobuf_c_message_free_unpacked(out, NULL);
        } else if (code != GRPC_STATUS_OK) {
            usleep(50000); /* pacing: a failed pull during an outage */
        }
        if (resp != NULL)
            protobuf_c_message_free_unpacked(&resp->base, NULL);
    }
    tse_test_channel_destroy(ch);
    return NULL;
}

static void start_thread(world *w, void *(*fn)(void *), void *arg)
{
    assert_true(w->n_threads < MAX_THREADS);
    assert_int_equal(pthread_create(&w->threads[w->n_threads++], NULL, fn, arg), 0);
}

/* n unary publishers and one PublishStream publisher. */
static void start_publishers(world *w, int n)
{
    for (int i = 0; i < n; i++)
        start_thread(w, publisher_main, w);
    start_thread(w, stream_publisher_main, w);
}

static subscriber *start_subscriber(world *w, const char *consumer, bool ack)
{
    subscriber *sub = calloc(1, sizeof(*sub));

    assert_non_null(sub);
    w->subs[w->n_subs++] = sub;
    sub->w = w;
    sub->ack = ack;
    snprintf(sub->consumer, sizeof(sub->consumer), "%s", consumer);
    start_thread(w, subscriber_main, sub);
    return sub;
}

/* Stops and joins every thread. */
static void stop_all(world *w)
{
    atomic_store(&w->stop_publishing, true);
    atomic_store(&w->stop_subscribing, true);
    for (int i = 0; i < w->n_threads; i++)
        pthread_join(w->threads[i], NULL);
    w->n_threads = 0;
}

/* Frees the world and its subscribers (their threads stopped). */
static void world_destroy(world *w)
{
    for (int i = 0; i < w->n_subs; i++)
        free(w->subs[i]);
    free(w);
}

static void create_subscription(const char *addr, const char *name)
{
    tse_test_subscription t;
    Tracseq__Events__V1__Subscription *sub = tse_test_subscription_init(
        &t, name, "fault.*", TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_EARLIEST);
    tse_client *ch = tse_test_channel(addr);

    sub->ack_deadline_ms = ACK_DEADLINE_MS;
    sub->max_delivery_attempts = 100;
    sub->max_in_flight = 200;
    tse_test_subscription_create(ch, sub, 10000);
    tse_test_channel_destroy(ch);
}

/* Waits up to ms for *counter to reach want; returns its value. */
static long wait_count(atomic_long *counter, long want, int ms)
{
    tse_test_waiter waiter;

    tse_test_waiter_init(&waiter, ms);
    while (atomic_load(counter) < want && tse_test_waiter_poll(&waiter)) {
    }
    return atomic_load(counter);
}

/* ==== the checks ==== */

/* Every event answered OK is in Redis, once, at the entry id answered. */
static void check_published_in_redis(world *w, const tse_test_redis *r)
{
    struct timeval tv = {10, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", r->port, tv);
    unsigned char *found = calloc(MAX_EVENTS, 1);
    long stored = 0, missing = 0, ok = 0;

    assert_int_equal(atomic_load(&w->wrong), 0);
    assert_true(atomic_load(&w->stream_ok) > 0);
    assert_non_null(c);
    assert_int_equal(c->err, 0);
    assert_non_null(found);
    for (int t = 0; t < 2; t++) {
        char key[64], start[48] = "-";

        snprintf(key, sizeof(key), "tracseq:events:{%s}:p3", event_type(t));
        for (;;) {
            redisReply *rep = redisCommand(c, "XRANGE %s %s + COUNT 1000", key, start);
            assert_non_null(rep);
            assert_int_equal(rep->type, REDIS_REPLY_ARRAY);
            for (size_t i = 0; i < rep->elements; i++) {
                redisReply *entry = rep->element[i], *fields = entry->element[1];
                int n = -1;
                for (size_t f = 0; f + 1 < fields->elements; f += 2)
                    if (strcmp(fields->element[f]->str, "id") == 0)
                        n = event_number(fields->element[f + 1]->str);
                if (n < 0 || atomic_load(&w->state[n]) == UNUSED)
                    fail_msg("%s %s holds an event this test never published", key,
                             entry->element[0]->str);
                if (found[n])
                    fail_msg("event %d is stored twice (client-set id)", n);
                found[n] = 1;
                stored++;
                if (atomic_load(&w->state[n]) == ANSWERED_OK &&
                    strcmp(w->stream_id[n], entry->element[0]->str) != 0)
                    fail_msg("event %d answered at %s, stored at %s", n, w->stream_id[n],
                             entry->element[0]->str);
                snprintf(start, sizeof(start), "(%s", entry->element[0]->str);
            }
            if (rep->elements == 0) {
                freeReplyObject(rep);
                break;
            }
            freeReplyObject(rep);
        }
    }
    for (int n = 0; n < MAX_EVENTS; n++) {
        if (atomic_load(&w->state[n]) != ANSWERED_OK)
            continue;
        ok++;
        if (!found[n] && missing++ < 10)
            print_error("event %d answered OK at %s is not in Redis\n", n, w->stream_id[n]);
    }
    print_message("in Redis: %ld events stored, %ld answered OK, %ld of those missing\n", stored,
                  ok, missing);
    assert_int_equal(missing, 0);
    free(found);
    redisFree(c);
}

/* Waits up to ms until every event answered OK was delivered (to seen);
 * fails naming the first ones still missing. */
static void check_delivered(world *w, atomic_uchar *seen, const char *what, int ms)
{
    tse_test_waiter waiter;
    long missing;
    int first = -1;

    tse_test_waiter_init(&waiter, ms);
    do {
        missing = 0;
        for (int n = 0; n < MAX_EVENTS; n++)
            if (atomic_load(&w->state[n]) == ANSWERED_OK && !atomic_load(&seen[n])) {
                if (missing++ == 0)
                    first = n;
            }
    } while (missing > 0 && tse_test_waiter_poll(&waiter));
    if (missing > 0)
        fail_msg("%ld events answered OK were never delivered to %s (first: %d)", missing, what,
                 first);
    assert_int_equal(atomic_load(&w->foreign), 0);
}

static void print_world(const world *w, const char *when)
{
    print_message("%s: %d events attempted, %ld answered OK, %ld failed attempts, %ld deliveries, "
                  "%ld resubscribes, slowest call %lld ms; codes OK %ld, UNAVAILABLE %ld, "
                  "DEADLINE_EXCEEDED %ld, CANCELLED %ld\n",
                  when, atomic_load(&w->next), atomic_load(&w->ok), atomic_load(&w->failed),
                  atomic_load(&w->deliveries), atomic_load(&w->resubscribes),
                  atomic_load(&w->slowest_ms), atomic_load(&w->codes[GRPC_STATUS_OK]),
                  atomic_load(&w->codes[GRPC_STATUS_UNAVAILABLE]),
                  atomic_load(&w->codes[GRPC_STATUS_DEADLINE_EXCEEDED]),
                  atomic_load(&w->codes[GRPC_STATUS_CANCELLED]));
}

/* Only OK and UNAVAILABLE (the service's "try again"); a call cut by a
 * dying connection is UNAVAILABLE too. Anything else is a wrong answer. */
static void check_clean_codes(const world *w)
{
    for (int c = 0; c <= GRPC_STATUS_UNAUTHENTICATED; c++)
        if (c != GRPC_STATUS_OK && c != GRPC_STATUS_UNAVAILABLE && atomic_load(&w->codes[c]) > 0)
            fail_msg("%ld calls ended with status %d", atomic_load(&w->codes[c]), c);
}

static int health(const char *addr)
{
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    Grpc__Health__V1__HealthCheckResponse *resp = NULL;
    tse_client *ch = tse_test_channel(addr);
    tse_test_status st;
    int status = -1;

    if (tse_test_unary(ch, M_HEALTH, &req.base,
                       &grpc__health__v1__health_check_response__descriptor,
                       (ProtobufCMessage **)&resp, &st, 5000, NULL, NULL) == GRPC_STATUS_OK)
        status = resp->status;
    if (resp != NULL)
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    tse_test_channel_destroy(ch);
    return status;
}

static const char *const service_args[] = {"--redis-timeout=1s", "--shutdown-grace=3s",
                                           "--log-level=warn", NULL};

/* ==== tests ==== */

/*
 * Redis killed under publish and subscribe load, restarted on its AOF
 * (appendfsync always): nothing answered OK is lost, the load goes on once
 * Redis is back, and every event answered OK is delivered.
 */
static void test_redis_killed_under_load_loses_no_acknowledged_event(void **state)
{
    tse_test_redis *r = tse_test_redis_start_aof("always");
    tse_test_service *s;
    world *w;
    long ok_before, delivered_before;

    (void)state;
    assert_non_null(r);
    s = tse_test_service_start(r, service_args);
    assert_non_null(s);
    w = world_create(s->addr);
    create_subscription(s->addr, SUBSCRIPTION);
    start_publishers(w, 3);
    start_subscriber(w, "sub-1", true);
    start_subscriber(w, "sub-2", true);
    assert_true(wait_count(&w->ok, 500, 20000) >= 500);
    assert_true(wait_count(&w->deliveries, 200, 20000) >= 200);

    tse_test_redis_kill(r);
    print_world(w, "Redis killed");
    usleep(1000000); /* the load runs into the outage */
    ok_before = atomic_load(&w->ok);
    assert_true(tse_test_redis_restart(r));
    delivered_before = atomic_load(&w->deliveries);
    print_world(w, "Redis restarted");

    /* The load goes on. */
    if (wait_count(&w->ok, ok_before + 500, 20000) < ok_before + 500)
        fail_msg("publishing did not resume after Redis came back");
    if (wait_count(&w->deliveries, delivered_before + 200, 20000) < delivered_before + 200)
        fail_msg("delivery did not resume after Redis came back");
    atomic_store(&w->stop_publishing, true);
    check_delivered(w, w->delivered, SUBSCRIPTION, 30000);
    stop_all(w);
    print_world(w, "end");
    check_published_in_redis(w, r);

    assert_int_equal(tse_test_service_stop(s), 0);
    tse_test_redis_stop(r);
    world_destroy(w);
}

/*
 * The service killed while a subscriber holds unacked deliveries: a new
 * service on the same port serves the publishers again, and every event the
 * dead subscriber held comes again (delivery_attempt > 1) to another
 * subscriber, with everything else answered OK.
 */
static void test_service_killed_with_unacked_deliveries_redelivers_them_elsewhere(void **state)
{
    tse_test_redis *r = tse_test_redis_start(true);
    tse_test_service *s;
    subscriber *doomed;
    world *w;
    int port, held;
    long ok_before;

    (void)state;
    assert_non_null(r);
    s = tse_test_service_start(r, service_args);
    assert_non_null(s);
    port = s->port;
    w = world_create(s->addr);
    create_subscription(s->addr, SUBSCRIPTION);
    doomed = start_subscriber(w, "doomed", false);
    start_publishers(w, 2);
    /* The doomed subscriber holds max_in_flight (200) unacked deliveries. */
    assert_true(wait_count(&doomed->received, 200, 20000) >= 200);
    assert_true(wait_count(&w->ok, 400, 20000) >= 400);

    tse_test_service_kill(s);
    atomic_store(&doomed->stop, true);
    TSE_TEST_AWAIT(atomic_load(&doomed->finished), 10000, "the doomed subscriber to stop");
    held = atomic_load(&doomed->n_held);
    print_world(w, "service killed");
    print_message("the killed service's subscriber held %d unacked deliveries\n", held);
    assert_true(held > 0 && held <= 4096);
    /* What it received counts as not delivered: each must come again, to
     * an heir, as a later attempt. */
    for (int i = 0; i < held; i++) {
        atomic_store(&w->delivered[atomic_load(&doomed->held[i])], 0);
        atomic_store(&w->attempt[atomic_load(&doomed->held[i])], 0);
    }
    ok_before = atomic_load(&w->ok);
    s = tse_test_service_start_on(r, port, service_args);
    assert_non_null(s);
    start_subscriber(w, "heir-1", true);
    start_subscriber(w, "heir-2", true);

    if (wait_count(&w->ok, ok_before + 300, 20000) < ok_before + 300)
        fail_msg("publishing did not resume on the new service");
    atomic_store(&w->stop_publishing, true);
    check_delivered(w, w->delivered, "the new subscribers", 30000);
    stop_all(w);
    for (int i = 0; i < held; i++) {
        int n = atomic_load(&doomed->held[i]);
        if (atomic_load(&w->attempt[n]) < 2)
            fail_msg("event %d held by the killed subscriber came again with attempt %d", n,
                     atomic_load(&w->attempt[n]));
    }
    print_world(w, "end");
    check_published_in_redis(w, r);

    assert_int_equal(tse_test_service_stop(s), 0);
    tse_test_redis_stop(r);
    world_destroy(w);
}

/* One call of method with req (10 s deadline): its code and how long it
 * took. */
static void probe_unary(world *w, const char *method, const ProtobufCMessage *req,
                        const ProtobufCMessageDescriptor *resp_desc, grpc_status_code *code,
                        long long *ms)
{
    tse_client *ch = channel(w->addr);
    ProtobufCMessage *resp = NULL;
    long long t0 = tse_test_now_ms();
    tse_test_status st;

    *code = tse_test_unary(ch, method, req, resp_desc, &resp, &st, 10000, NULL, NULL);
    *ms = tse_test_now_ms() - t0;
    if (resp != NULL)
        protobuf_c_message_free_unpacked(resp, NULL);
    tse_test_channel_destroy(ch);
}

/* One Publish while Redis is stopped: its code and how long it took. */
static void probe_publish(world *w, int deadline_ms, grpc_status_code *code, long long *ms)
{
    tse_client *ch = channel(w->addr);
    int n = atomic_fetch_add(&w->next, 1);
    long long t0 = tse_test_now_ms();
    tse_test_status st;

    atomic_store(&w->state[n], ATTEMPTED);
    *code = publish(w, ch, n, deadline_ms, &st);
    *ms = tse_test_now_ms() - t0;
    if (*code == GRPC_STATUS_OK)
        atomic_store(&w->state[n], ANSWERED_OK);
    tse_test_channel_destroy(ch);
}

/*
 * Redis stopped (SIGSTOP) for 5 s under load: every call is answered, none
 * hangs: a Publish with a 10 s deadline is refused UNAVAILABLE within the
 * Redis timeout (1 s) plus slack, one with a 300 ms deadline ends within
 * it (DEADLINE_EXCEEDED or UNAVAILABLE), pulls answer; after SIGCONT the
 * load goes on and nothing answered OK is lost.
 */
static void test_redis_stopped_calls_answer_in_bounded_time_and_recover(void **state)
{
    Tracseq__Events__V1__GetStatsRequest get_stats = TRACSEQ__EVENTS__V1__GET_STATS_REQUEST__INIT;
    Tracseq__Events__V1__CreateSubscriptionRequest create =
        TRACSEQ__EVENTS__V1__CREATE_SUBSCRIPTION_REQUEST__INIT;
    Tracseq__Events__V1__Subscription sub = TRACSEQ__EVENTS__V1__SUBSCRIPTION__INIT;
    char *types[1] = {"stalled.*"};
    tse_test_redis *r = tse_test_redis_start(true);
    tse_test_service *s;
    world *w;
    grpc_status_code code;
    long long ms, stopped_at;
    long ok_before;
    int probes = 0;

    (void)state;
    assert_non_null(r);
    s = tse_test_service_start(r, service_args);
    assert_non_null(s);
    w = world_create(s->addr);
    create_subscription(s->addr, SUBSCRIPTION);
    create_subscription(s->addr, PULLED);
    start_publishers(w, 2);
    start_subscriber(w, "sub-1", true);
    start_thread(w, puller_main, w);
    assert_true(wait_count(&w->ok, 300, 20000) >= 300);
    sub.name = "stalled";
    sub.event_types = types;
    sub.n_event_types = 1;
    create.subscription = &sub;

    assert_int_equal(kill(r->pid, SIGSTOP), 0);
    stopped_at = tse_test_now_ms();
    print_world(w, "Redis stopped");
    usleep(200000); /* the fault under test: the load runs into the frozen Redis */
    while (tse_test_now_ms() - stopped_at < 4000) {
        probe_publish(w, 10000, &code, &ms);
        print_message("publish (deadline 10 s) while Redis is stopped: %d after %lld ms\n", code,
                      ms);
        assert_int_equal(code, GRPC_STATUS_UNAVAILABLE);
        assert_true(ms < 2 * REDIS_TIMEOUT_MS + 2000);
        probe_publish(w, 300, &code, &ms);
        print_message("publish (deadline 300 ms) while Redis is stopped: %d after %lld ms\n", code,
                      ms);
        assert_true(code == GRPC_STATUS_DEADLINE_EXCEEDED || code == GRPC_STATUS_UNAVAILABLE);
        assert_true(ms < 300 + 2000);
        probe_unary(w, M_STATS, &get_stats.base, &tracseq__events__v1__stats__descriptor, &code,
                    &ms);
        print_message("GetStats while Redis is stopped: %d after %lld ms\n", code, ms);
        assert_true(code == GRPC_STATUS_OK || code == GRPC_STATUS_UNAVAILABLE);
        assert_true(ms < 2 * REDIS_TIMEOUT_MS + 2000);
        probe_unary(w, M_CREATE, &create.base, &tracseq__events__v1__subscription__descriptor,
                    &code, &ms);
        print_message("CreateSubscription while Redis is stopped: %d after %lld ms\n", code, ms);
        assert_true(code == GRPC_STATUS_OK || code == GRPC_STATUS_UNAVAILABLE);
        assert_true(ms < 2 * REDIS_TIMEOUT_MS + 2000);
        probes++;
    }
    while (tse_test_now_ms() - stopped_at < 5000)
        usleep(10000); /* the fault under test: Redis frozen for 5 s */
    assert_int_equal(kill(r->pid, SIGCONT), 0);
    print_world(w, "Redis continued");
    ok_before = atomic_load(&w->ok);
    if (wait_count(&w->ok, ok_before + 300, 20000) < ok_before + 300)
        fail_msg("publishing did not resume after SIGCONT");
    assert_int_equal(health(s->addr),
                     GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
    atomic_store(&w->stop_publishing, true);
    check_delivered(w, w->delivered, SUBSCRIPTION, 30000);
    check_delivered(w, w->pulled, PULLED, 30000);
    stop_all(w);
    print_world(w, "end");
    /* The load's calls: the 10 s deadline never ran out (the service
     * answered each within the Redis timeout); only the 300 ms probes may
     * end DEADLINE_EXCEEDED. */
    assert_true(atomic_load(&w->codes[GRPC_STATUS_DEADLINE_EXCEEDED]) <= probes);
    assert_true(atomic_load(&w->slowest_ms) < 2 * REDIS_TIMEOUT_MS + 2000);
    check_published_in_redis(w, r);

    assert_int_equal(tse_test_service_stop(s), 0);
    tse_test_redis_stop(r);
    world_destroy(w);
}

/*
 * SIGTERM under load (unary publishes, Subscribe streams, pulls): the
 * service exits 0 within SHUTDOWN_GRACE (3 s, plus half a second, plus
 * slack), every call ends OK or UNAVAILABLE (never hangs, never another
 * code), every event answered OK is in Redis, and a service started again
 * delivers everything answered OK.
 */
static void test_sigterm_under_load_answers_every_call_and_exits_cleanly(void **state)
{
    tse_test_redis *r = tse_test_redis_start(true);
    tse_test_service *s;
    world *w;
    long long elapsed;
    long ok_before;
    int port, code;

    (void)state;
    assert_non_null(r);
    s = tse_test_service_start(r, service_args);
    assert_non_null(s);
    port = s->port;
    w = world_create(s->addr);
    create_subscription(s->addr, SUBSCRIPTION);
    create_subscription(s->addr, PULLED);
    start_publishers(w, 3);
    start_subscriber(w, "sub-1", true);
    start_subscriber(w, "sub-2", true);
    start_thread(w, puller_main, w);
    assert_true(wait_count(&w->ok, 500, 20000) >= 500);
    assert_true(wait_count(&w->deliveries, 200, 20000) >= 200);

    print_world(w, "SIGTERM");
    atomic_store(&w->stopping, true);
    code = tse_test_service_stop_timed(s, &elapsed);
    print_message("exit %d after %lld ms (grace 3000 ms); %ld calls arrived too late to be "
                  "started (CANCELLED by gRPC)\n",
                  code, elapsed, atomic_load(&w->unmatched));
    assert_int_equal(code, 0);
    assert_true(elapsed < 3000 + 500 + 2000);
    print_world(w, "service exited");
    check_clean_codes(w);

    /* Everything answered OK so far is in Redis; a new service delivers it. */
    /* Every call the exit cut short has ended (they end as the connection
     * closes; nothing counts calls in flight across the worker threads, so
     * this is a grace, not a condition) before CANCELLED counts as wrong. */
    usleep(500000);
    atomic_store(&w->stopping, false);
    s = tse_test_service_start_on(r, port, service_args);
    assert_non_null(s);
    ok_before = atomic_load(&w->ok);
    if (wait_count(&w->ok, ok_before + 200, 20000) < ok_before + 200)
        fail_msg("publishing did not resume on the new service");
    atomic_store(&w->stop_publishing, true);
    check_delivered(w, w->delivered, SUBSCRIPTION, 30000);
    check_delivered(w, w->pulled, PULLED, 30000);
    stop_all(w);
    print_world(w, "end");
    check_clean_codes(w);
    check_published_in_redis(w, r);

    assert_int_equal(tse_test_service_stop(s), 0);
    tse_test_redis_stop(r);
    world_destroy(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_redis_killed_under_load_loses_no_acknowledged_event),
        cmocka_unit_test(test_service_killed_with_unacked_deliveries_redelivers_them_elsewhere),
        cmocka_unit_test(test_redis_stopped_calls_answer_in_bounded_time_and_recover),
        cmocka_unit_test(test_sigterm_under_load_answers_every_call_and_exits_cleanly),
    };
    int failed;

    signal(SIGPIPE, SIG_IGN);
    if (getenv("TSE_TEST_FILTER") != NULL) /* one test, by name (wildcards allowed) */
        cmocka_set_test_filter(getenv("TSE_TEST_FILTER"));
    failed = cmocka_run_group_tests(tests, NULL, NULL);
    return failed;
}
