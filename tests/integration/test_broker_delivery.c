/*
 * test_broker_delivery.c - the delivery engine (delivery/delivery.h) against a
 * real Redis, for what the service-level tests cannot reach: the engine's
 * own allocations failing on its thread.
 *
 * The allocator fails every tse_* allocation made on a thread other than the
 * test's while it is armed. Requests are built on the test's thread, so what
 * fails is the engine's own bookkeeping (the in-flight ids of a subscriber).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"
#include "delivery/delivery.h"
#include "harness.h"
#include "obs/stats.h"
#include "wait.h"

/* ---- the allocator: fails on the engine's thread while armed ------------- */

static _Thread_local bool on_test_thread;
static atomic_bool armed;
static atomic_ulong refused;

static bool refuse(void)
{
    if (!atomic_load(&armed) || on_test_thread)
        return false;
    atomic_fetch_add(&refused, 1);
    return true;
}

static void *t_malloc(size_t size)
{
    return refuse() ? NULL : malloc(size);
}

static void *t_calloc(size_t count, size_t size)
{
    return refuse() ? NULL : calloc(count, size);
}

static void *t_realloc(void *ptr, size_t size)
{
    return refuse() ? NULL : realloc(ptr, size);
}

static const tse_alloc_funcs failing = {t_malloc, t_calloc, t_realloc, free};

/* ---- a subscriber that acks what it gets ---------------------------------- */

typedef struct sub_state {
    pthread_mutex_t mu;
    atomic_int attached; /* 1 ok, -1 failed */
    atomic_int delivered;
    char pending[8][TSE_ACK_ID_MAX + 1]; /* ack ids to ack, from the test thread */
    int n_pending;
} sub_state;

static void on_attached(void *arg, const tse_error *err,
                        const Tracseq__Events__V1__Subscription *settings)
{
    sub_state *st = arg;

    (void)settings;
    atomic_store(&st->attached, err->code == TSE_OK ? 1 : -1);
}

static void on_deliver(void *arg, const tse_delivered *d, size_t n)
{
    sub_state *st = arg;

    pthread_mutex_lock(&st->mu);
    for (size_t i = 0; i < n && st->n_pending < 8; i++)
        snprintf(st->pending[st->n_pending++], sizeof(st->pending[0]), "%s", d[i].ack_id);
    pthread_mutex_unlock(&st->mu);
    atomic_fetch_add(&st->delivered, (int)n);
}

static void on_ended(void *arg, const tse_error *err)
{
    (void)arg;
    (void)err;
}

static atomic_bool released;

static void on_released(void *arg)
{
    (void)arg;
    atomic_store(&released, true);
}

static const tse_subscriber_ops ops = {on_attached, on_deliver, on_ended, on_released};

/* Acks every delivery received so far (from the test's thread). */
static void ack_pending(tse_delivery *d, tse_subscriber *s, sub_state *st)
{
    char *ids[8];
    int n;

    pthread_mutex_lock(&st->mu);
    n = st->n_pending;
    for (int i = 0; i < n; i++)
        ids[i] = strdup(st->pending[i]);
    st->n_pending = 0;
    pthread_mutex_unlock(&st->mu);
    if (n > 0)
        assert_int_equal(tse_delivery_ack(d, s, ids, (size_t)n, NULL), TSE_OK);
    for (int i = 0; i < n; i++)
        free(ids[i]);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

    nanosleep(&ts, NULL);
}

/*
 * With room for one unacked delivery, an event the engine cannot track (out
 * of memory) is held back, not handed out untracked: an untracked delivery's
 * ack would never give the credit back, and the subscriber would stall for
 * good after its first event. Once memory is back, every event arrives.
 */
static void an_untracked_delivery_never_costs_the_subscriber_its_credit(void **state)
{
    tse_test_redis *r = tse_test_redis_start(false);
    tse_delivery_options o = {.timeout_ms = 2000, .poll_ms = 20, .instance = "t"};
    Tracseq__Events__V1__Subscription spec = TRACSEQ__EVENTS__V1__SUBSCRIPTION__INIT;
    char *types[] = {"t.track"};
    sub_state st = {.mu = PTHREAD_MUTEX_INITIALIZER};
    tse_stats *stats = tse_stats_create();
    tse_delivery *d = NULL;
    tse_subscriber *s = NULL;
    tse_error err;

    (void)state;
    assert_int_equal(tse_redis_url_parse(r->url, &o.target, &err), TSE_OK);
    free(tse_test_redis_cmd(r, "SADD tracseq:streams tracseq:events:{t.track}:p3"));
    for (int i = 0; i < 3; i++)
        free(tse_test_redis_cmd(r, "XADD tracseq:events:{t.track}:p3 * event x%d", i));
    assert_int_equal(tse_delivery_create(&o, stats, &d, &err), TSE_OK);
    spec.name = "track";
    spec.n_event_types = 1;
    spec.event_types = types;
    spec.start = TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_EARLIEST;
    spec.ack_deadline_ms = 60000; /* no redelivery within the test */
    spec.max_in_flight = 1;

    atomic_store(&armed, true);
    assert_int_equal(tse_delivery_attach(d, &spec, NULL, NULL, &ops, &st, &s, &err), TSE_OK);
    TSE_TEST_AWAIT(atomic_load(&st.attached) != 0, 5000, "the attach");
    assert_int_equal(atomic_load(&st.attached), 1);
    /* Armed: the engine reads the events but can track none of them. */
    TSE_TEST_AWAIT(atomic_load(&refused) > 0, 5000, "a refused track");
    sleep_ms(200);
    assert_int_equal(atomic_load(&st.delivered), 0);
    atomic_store(&armed, false);

    for (int i = 0; i < 100 && atomic_load(&st.delivered) < 3; i++) {
        ack_pending(d, s, &st);
        sleep_ms(50);
    }
    assert_int_equal(atomic_load(&st.delivered), 3);
    tse_delivery_detach(d, s);
    TSE_TEST_AWAIT(atomic_load(&released), 5000, "the release");
    tse_delivery_destroy(d);
    tse_stats_destroy(stats);
    tse_test_redis_stop(r);
}

/* How many entries of stream key are pending in group (XPENDING's summary). */
static long long pending_in(tse_test_redis *r, const char *key, const char *group)
{
    char *out = tse_test_redis_cmd(r, "XPENDING %s %s", key, group);
    long long n = out ? atoll(out) : -1;

    free(out);
    return n;
}

/*
 * The engine gathers the ack messages of a subscription (they go to Redis
 * with its next read, or after TSE_ACK_LINGER_MS); bursts of empty ones
 * gather too (a list grown by zero ids must not be freed or lost). With
 * room for one unacked delivery, the third event arrives only after the
 * first two acks, among the empty ones around them, gave the credit back;
 * then nothing is pending in Redis: the last ack went without a read.
 */
static void bursts_of_empty_acks_merge_and_the_real_acks_still_apply(void **state)
{
    tse_test_redis *r = tse_test_redis_start(false);
    tse_delivery_options o = {.timeout_ms = 2000, .poll_ms = 20, .instance = "t"};
    Tracseq__Events__V1__Subscription spec = TRACSEQ__EVENTS__V1__SUBSCRIPTION__INIT;
    char *types[] = {"t.burst"};
    sub_state st = {.mu = PTHREAD_MUTEX_INITIALIZER};
    tse_stats *stats = tse_stats_create();
    tse_delivery *d = NULL;
    tse_subscriber *s = NULL;
    tse_error err;

    (void)state;
    atomic_store(&released, false);
    assert_int_equal(tse_redis_url_parse(r->url, &o.target, &err), TSE_OK);
    free(tse_test_redis_cmd(r, "SADD tracseq:streams tracseq:events:{t.burst}:p3"));
    for (int i = 0; i < 3; i++)
        free(tse_test_redis_cmd(r, "XADD tracseq:events:{t.burst}:p3 * event x%d", i));
    assert_int_equal(tse_delivery_create(&o, stats, &d, &err), TSE_OK);
    spec.name = "burst";
    spec.n_event_types = 1;
    spec.event_types = types;
    spec.start = TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_EARLIEST;
    spec.ack_deadline_ms = 60000; /* no redelivery within the test */
    spec.max_in_flight = 1;
    assert_int_equal(tse_delivery_attach(d, &spec, NULL, NULL, &ops, &st, &s, &err), TSE_OK);
    TSE_TEST_AWAIT(atomic_load(&st.attached) != 0, 5000, "the attach");
    assert_int_equal(atomic_load(&st.attached), 1);
    for (int i = 0; i < 100 && atomic_load(&st.delivered) < 3; i++) {
        for (int k = 0; k < 200; k++)
            assert_int_equal(tse_delivery_ack(d, s, NULL, 0, NULL), TSE_OK);
        ack_pending(d, s, &st);
        for (int k = 0; k < 200; k++)
            assert_int_equal(tse_delivery_ack(d, s, NULL, 0, NULL), TSE_OK);
        sleep_ms(20);
    }
    assert_int_equal(atomic_load(&st.delivered), 3);
    ack_pending(d, s, &st);
    TSE_TEST_AWAIT(pending_in(r, "tracseq:events:{t.burst}:p3", "burst") == 0, 5000,
                   "every ack applied");
    tse_delivery_detach(d, s);
    TSE_TEST_AWAIT(atomic_load(&released), 5000, "the release");
    tse_delivery_destroy(d);
    tse_stats_destroy(stats);
    tse_test_redis_stop(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(an_untracked_delivery_never_costs_the_subscriber_its_credit),
        cmocka_unit_test(bursts_of_empty_acks_merge_and_the_real_acks_still_apply),
    };

    on_test_thread = true;
    tse_alloc_set(&failing);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
