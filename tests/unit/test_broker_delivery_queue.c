/*
 * test_broker_delivery_queue.c - the delivery engine's request queue
 * (delivery/delivery.h): a tse_delivery_* call that returns TSE_OK is answered
 * exactly once; one that fails (its copies could not be allocated) returns
 * TSE_NOMEM, is never answered and leaves nothing allocated.
 *
 * Every call is swept as in test_alloc_failure.c: run once counting its
 * allocations, then once per allocation with that one failing. The engine
 * points at a closed port, so every request it handles is answered
 * UNAVAILABLE at once and no Redis is needed. Counting and failing happen on
 * the test's thread only (the engine thread allocates as usual), and a
 * request that was refused is shown never to be answered by queuing one more
 * behind it: requests are handled in order, so once that one is answered,
 * the refused one would have been too.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"
#include "delivery/delivery.h"

/* ===========================================================================
 * The failing allocator (this thread only)
 * ======================================================================== */

static _Thread_local struct {
    bool counting;
    unsigned long count;   /* allocations while counting */
    unsigned long fail_at; /* 1-based: which one fails; 0 = none */
    bool failed;           /* the chosen one was refused */
    long live;             /* blocks allocated and not freed while counting */
} torture;

static bool refuse(void)
{
    if (!torture.counting)
        return false;
    if (++torture.count != torture.fail_at)
        return false;
    torture.failed = true;
    return true;
}

static void *counted(void *p)
{
    if (p != NULL && torture.counting)
        torture.live++;
    return p;
}

static void *t_malloc(size_t size)
{
    return refuse() ? NULL : counted(malloc(size));
}

static void *t_calloc(size_t count, size_t size)
{
    return refuse() ? NULL : counted(calloc(count, size));
}

static void *t_realloc(void *ptr, size_t size)
{
    return refuse() ? NULL : realloc(ptr, size);
}

static void t_free(void *ptr)
{
    if (ptr != NULL && torture.counting)
        torture.live--;
    free(ptr);
}

static void arm(unsigned long fail_at)
{
    torture.count = 0;
    torture.fail_at = fail_at;
    torture.failed = false;
    torture.live = 0;
    torture.counting = true;
}

static void disarm(void)
{
    torture.counting = false;
}

/* ===========================================================================
 * Answers, counted (they come on the engine thread)
 * ======================================================================== */

typedef struct probe {
    atomic_int answers;
    atomic_int released;
    atomic_int code; /* of the last answer */
} probe;

static void on_subs(void *arg, const tse_error *err,
                    const Tracseq__Events__V1__Subscription *const *subs, size_t n)
{
    probe *p = arg;

    (void)subs;
    (void)n;
    atomic_store(&p->code, (int)err->code);
    atomic_fetch_add(&p->answers, 1);
}

static void on_acks(void *arg, const tse_error *err, uint32_t done, const char *const *unknown,
                    size_t n_unknown)
{
    probe *p = arg;

    (void)done;
    (void)unknown;
    (void)n_unknown;
    atomic_store(&p->code, (int)err->code);
    atomic_fetch_add(&p->answers, 1);
}

static void on_pull(void *arg, const tse_error *err, const tse_delivered *d, size_t n)
{
    probe *p = arg;

    (void)d;
    (void)n;
    atomic_store(&p->code, (int)err->code);
    atomic_fetch_add(&p->answers, 1);
}

static void on_attached(void *arg, const tse_error *err,
                        const Tracseq__Events__V1__Subscription *settings)
{
    probe *p = arg;

    (void)settings;
    atomic_store(&p->code, (int)err->code);
    atomic_fetch_add(&p->answers, 1);
}

static void on_released(void *arg)
{
    probe *p = arg;

    atomic_fetch_add(&p->released, 1);
}

static const tse_subscriber_ops ops = {.attached = on_attached, .released = on_released};

/* Waits up to 10 s for *counter to reach want; true when it did. */
static bool wait_for(atomic_int *counter, int want)
{
    struct timespec pause = {0, 1000000};

    for (int i = 0; i < 10000 && atomic_load(counter) < want; i++)
        nanosleep(&pause, NULL);
    return atomic_load(counter) >= want;
}

/* Every request queued before this one has been handled. */
static void barrier(tse_delivery *d)
{
    probe p = {0};

    assert_int_equal(tse_delivery_get_subscriptions(d, NULL, on_subs, &p, NULL), TSE_OK);
    assert_true(wait_for(&p.answers, 1));
}

/* ===========================================================================
 * The calls under test
 * ======================================================================== */

static char *ids[] = {"tracseq:events:{sample.created}:p3/1-0", "tracseq:events:{x.y}:p1/2-0"};
static char *pattern[] = {"sample.*"};

typedef struct world {
    tse_delivery *d;
    tse_subscriber *live; /* attached (unsuccessfully: no Redis), for ack/nack/extend */
    probe live_probe;
    Tracseq__Events__V1__Subscription spec;
} world;

/* One call; `answered`: whether a TSE_OK means a callback comes. */
typedef struct call {
    const char *name;
    tse_status (*fn)(world *w, probe *p, tse_error *err);
    bool answered;
} call;

static tse_status do_create(world *w, probe *p, tse_error *err)
{
    return tse_delivery_create_subscription(w->d, &w->spec, on_subs, p, err);
}

static tse_status do_get(world *w, probe *p, tse_error *err)
{
    return tse_delivery_get_subscriptions(w->d, "orders", on_subs, p, err);
}

static tse_status do_list(world *w, probe *p, tse_error *err)
{
    return tse_delivery_get_subscriptions(w->d, NULL, on_subs, p, err);
}

static tse_status do_delete(world *w, probe *p, tse_error *err)
{
    return tse_delivery_delete_subscription(w->d, "orders", on_subs, p, err);
}

static tse_status do_acknowledge(world *w, probe *p, tse_error *err)
{
    return tse_delivery_acknowledge(w->d, "orders", ids, 2, on_acks, p, err);
}

static tse_status do_nack_ids(world *w, probe *p, tse_error *err)
{
    return tse_delivery_nack_ids(w->d, "orders", ids, 2, 100, false, on_acks, p, err);
}

static tse_status do_pull(world *w, probe *p, tse_error *err)
{
    return tse_delivery_pull(w->d, "orders", "c1", 10, 0, 7, on_pull, p, err);
}

static tse_status do_pull_cancel(world *w, probe *p, tse_error *err)
{
    (void)p;
    return tse_delivery_pull_cancel(w->d, 7, err);
}

static tse_status do_ack(world *w, probe *p, tse_error *err)
{
    (void)p;
    return tse_delivery_ack(w->d, w->live, ids, 2, err);
}

static tse_status do_nack(world *w, probe *p, tse_error *err)
{
    (void)p;
    return tse_delivery_nack(w->d, w->live, ids, 2, 100, false, err);
}

static tse_status do_extend(world *w, probe *p, tse_error *err)
{
    (void)p;
    return tse_delivery_extend(w->d, w->live, ids, 2, 60000, err);
}

static const call calls[] = {
    {"create_subscription", do_create, true},
    {"get_subscriptions (one)", do_get, true},
    {"get_subscriptions (all)", do_list, true},
    {"delete_subscription", do_delete, true},
    {"acknowledge", do_acknowledge, true},
    {"nack_ids", do_nack_ids, true},
    {"pull", do_pull, true},
    {"pull_cancel", do_pull_cancel, false},
    {"ack", do_ack, false},
    {"nack", do_nack, false},
    {"extend", do_extend, false},
};

static int world_setup(void **state)
{
    world *w = calloc(1, sizeof(*w));
    tse_delivery_options opts = {.timeout_ms = 200, .poll_ms = 100, .instance = "test"};
    tse_alloc_funcs funcs = {t_malloc, t_calloc, t_realloc, t_free};

    if (w == NULL)
        return -1;
    tse_alloc_set(&funcs);
    /* Port 1 on loopback: nothing listens, every connect is refused. */
    strcpy(opts.target.host, "127.0.0.1");
    opts.target.port = 1;
    if (tse_delivery_create(&opts, NULL, &w->d, NULL) != TSE_OK)
        return -1;
    tracseq__events__v1__subscription__init(&w->spec);
    w->spec.name = "orders";
    w->spec.event_types = pattern;
    w->spec.n_event_types = 1;
    w->spec.max_in_flight = 10;
    w->spec.ack_deadline_ms = 30000;
    if (tse_delivery_attach(w->d, NULL, "orders", NULL, &ops, &w->live_probe, &w->live, NULL) !=
            TSE_OK ||
        !wait_for(&w->live_probe.answers, 1))
        return -1;
    *state = w;
    return 0;
}

static int world_teardown(void **state)
{
    world *w = *state;

    tse_delivery_detach(w->d, w->live);
    wait_for(&w->live_probe.released, 1);
    tse_delivery_destroy(w->d);
    tse_alloc_set(NULL);
    free(w);
    return 0;
}

/* ===========================================================================
 * Tests
 * ======================================================================== */

/* The sweep of one call: each allocation failing in turn, then none. */
static void sweep(world *w, const call *c)
{
    for (unsigned long fail_at = 1;; fail_at++) {
        probe p = {0};
        tse_error err;
        tse_status st;

        tse_error_clear(&err);
        arm(fail_at);
        st = c->fn(w, &p, &err);
        disarm();
        if (!torture.failed) {
            /* Every allocation succeeded: queued, answered once. */
            assert_int_equal(st, TSE_OK);
            assert_true(fail_at > 1); /* each call allocates */
            barrier(w->d);
            assert_int_equal(atomic_load(&p.answers), c->answered ? 1 : 0);
            if (c->answered)
                assert_int_equal(atomic_load(&p.code), TSE_UNAVAILABLE);
            return;
        }
        if (st != TSE_NOMEM || err.code != TSE_NOMEM || torture.live != 0)
            fail_msg("%s with allocation %lu failing: status %d, error %d, %ld block(s) left",
                     c->name, fail_at, (int)st, (int)err.code, torture.live);
        barrier(w->d);
        if (atomic_load(&p.answers) != 0)
            fail_msg("%s with allocation %lu failing was answered although refused", c->name,
                     fail_at);
    }
}

static void every_call_is_refused_cleanly_when_an_allocation_fails(void **state)
{
    world *w = *state;

    for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++)
        sweep(w, &calls[i]);
}

/* attach: refused means no handle, no callback, nothing to detach;
 * queued means attached once, then released once after the detach. */
static void attach_is_refused_cleanly_or_answered_then_released(void **state)
{
    world *w = *state;

    for (int by_spec = 0; by_spec < 2; by_spec++) {
        for (unsigned long fail_at = 1;; fail_at++) {
            probe p = {0};
            tse_subscriber *s = NULL;
            tse_error err;
            tse_status st;

            tse_error_clear(&err);
            arm(fail_at);
            st = tse_delivery_attach(w->d, by_spec ? &w->spec : NULL, "orders", "c2", &ops, &p, &s,
                                     &err);
            disarm();
            if (torture.failed) {
                assert_int_equal(st, TSE_NOMEM);
                assert_int_equal(err.code, TSE_NOMEM);
                assert_null(s);
                assert_int_equal(torture.live, 0);
                barrier(w->d);
                assert_int_equal(atomic_load(&p.answers), 0);
                continue;
            }
            assert_int_equal(st, TSE_OK);
            assert_non_null(s);
            assert_true(wait_for(&p.answers, 1));
            assert_int_equal(atomic_load(&p.code), TSE_UNAVAILABLE);
            tse_delivery_detach(w->d, s);
            assert_true(wait_for(&p.released, 1));
            barrier(w->d);
            assert_int_equal(atomic_load(&p.answers), 1);
            assert_int_equal(atomic_load(&p.released), 1);
            break;
        }
    }
}

/* destroy answers what is still queued: each request once, each
 * subscriber released once (attach and detach both queued included). */
static void destroy_answers_queued_requests_once(void **state)
{
    tse_delivery_options opts = {.timeout_ms = 200, .poll_ms = 100, .instance = "test"};
    world *w = *state;
    probe subs = {0}, acks = {0}, pulls = {0}, detached = {0};
    tse_subscriber *b = NULL;
    tse_delivery *d;

    strcpy(opts.target.host, "127.0.0.1");
    opts.target.port = 1;
    assert_int_equal(tse_delivery_create(&opts, NULL, &d, NULL), TSE_OK);
    for (int i = 0; i < 50; i++) {
        assert_int_equal(tse_delivery_get_subscriptions(d, NULL, on_subs, &subs, NULL), TSE_OK);
        assert_int_equal(tse_delivery_acknowledge(d, "orders", ids, 2, on_acks, &acks, NULL),
                         TSE_OK);
        assert_int_equal(
            tse_delivery_pull(d, "orders", "", 5, 60000, (uint64_t)i, on_pull, &pulls, NULL),
            TSE_OK);
    }
    assert_int_equal(tse_delivery_attach(d, &w->spec, NULL, NULL, &ops, &detached, &b, NULL),
                     TSE_OK);
    tse_delivery_detach(d, b);
    tse_delivery_destroy(d);
    assert_int_equal(atomic_load(&subs.answers), 50);
    assert_int_equal(atomic_load(&acks.answers), 50);
    assert_int_equal(atomic_load(&pulls.answers), 50);
    assert_int_equal(atomic_load(&detached.answers), 1);
    assert_int_equal(atomic_load(&detached.released), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_call_is_refused_cleanly_when_an_allocation_fails),
        cmocka_unit_test(attach_is_refused_cleanly_or_answered_then_released),
        cmocka_unit_test(destroy_answers_queued_requests_once),
    };
    return cmocka_run_group_tests(tests, world_setup, world_teardown);
}
