/*
 * introspect.c - GetStats and ListEventTypes. ListEventTypes is answered
 * with the catalog's description, built once when the server was created
 * (domain/catalog.h). GetStats gathers in two steps, each on
 * the thread that owns the data: the stream lengths from a broker lane (a
 * typed storage operation, tse_broker_stream_lengths), then every subscription with its figures
 * from the delivery engine (whose answer it is, subscriptions being in Redis, created by any
 * instance); the counters come from memory. When Redis is down it still
 * answers, with the counters only and redis_connected false.
 *
 * Several instances on one Redis: what is read from Redis (subscriptions,
 * stream lengths, each group's lag, pending, consumers, dead letters) is the
 * same whichever instance answers; the counters, gauges and latencies are
 * this instance's, named in the answer's `instance` (service.proto's Stats
 * says which field is which; docs/operations.md, "Several instances").
 */
#include <stdlib.h>
#include <string.h>

#include "domain/limits.h"
#include "tracseq/events/v1/service.pb-c.h"
#include "transport/internal.h"

/* ===================== GetStats ========================================= */

typedef struct type_counts {
    Tracseq__Events__V1__Stats__PublishedByTypeEntry *entries;
    Tracseq__Events__V1__Stats__PublishedByTypeEntry **ptrs;
    size_t n, cap;
} type_counts;

static void add_type(void *arg, const char *type, uint64_t count)
{
    type_counts *tc = arg;

    if (tc->n == tc->cap)
        return;
    Tracseq__Events__V1__Stats__PublishedByTypeEntry *e = &tc->entries[tc->n];
    tracseq__events__v1__stats__published_by_type_entry__init(e);
    e->key = (char *)type;
    e->value = count;
    tc->ptrs[tc->n++] = e;
}

typedef struct length_map {
    Tracseq__Events__V1__Stats__StreamLengthsEntry *entries;
    Tracseq__Events__V1__Stats__StreamLengthsEntry **ptrs;
    char (*types)[TSE_EVENT_TYPE_MAX + 1];
    size_t n;
} length_map;

static void length_map_free(length_map *m)
{
    free(m->entries);
    free(m->ptrs);
    free(m->types);
    memset(m, 0, sizeof(*m));
}

/* Copies the stream lengths (per event type) into the answer's entries. */
static void length_map_fill(length_map *m, const tse_stream_lengths *l)
{
    m->entries = calloc(l->n + 1, sizeof(*m->entries));
    m->ptrs = calloc(l->n + 1, sizeof(*m->ptrs));
    m->types = calloc(l->n + 1, sizeof(*m->types));
    if (m->entries == NULL || m->ptrs == NULL || m->types == NULL) {
        length_map_free(m);
        return;
    }
    for (size_t i = 0; i < l->n; i++) {
        memcpy(m->types[i], l->types[i].type, sizeof(m->types[i]));
        tracseq__events__v1__stats__stream_lengths_entry__init(&m->entries[i]);
        m->entries[i].key = m->types[i];
        m->entries[i].value = l->types[i].length;
        m->ptrs[i] = &m->entries[i];
    }
    m->n = l->n;
}

/* A GetStats call: what the first step gathered for the answer. */
typedef struct stats_call {
    tse_call base;
    length_map lengths; /* owned */
    bool redis_answered;
} stats_call;

static void stats_release(tse_call *c)
{
    length_map_free(&((stats_call *)c)->lengths);
}

/* One histogram of the answer, its arrays in caller storage. */
typedef struct histogram_out {
    Tracseq__Events__V1__Histogram msg;
    double bounds[TSE_HISTOGRAM_BOUNDS];
    tse_histogram_snapshot snap;
} histogram_out;

static Tracseq__Events__V1__Histogram *histogram_fill(histogram_out *h, tse_stats *st,
                                                      tse_hist which)
{
    tracseq__events__v1__histogram__init(&h->msg);
    tse_histogram_read(tse_stats_histogram(st, which), &h->snap);
    for (size_t i = 0; i < TSE_HISTOGRAM_BOUNDS; i++)
        h->bounds[i] = (double)tse_histogram_bounds_us[i] / 1e6;
    h->msg.n_bounds = TSE_HISTOGRAM_BOUNDS;
    h->msg.bounds = h->bounds;
    h->msg.n_cumulative_counts = TSE_HISTOGRAM_BUCKETS;
    h->msg.cumulative_counts = h->snap.cumulative;
    h->msg.count = h->snap.count;
    h->msg.sum_seconds = (double)h->snap.sum_us / 1e6;
    return &h->msg;
}

/* Answers from the counters, the gathered stream lengths and subs (the
 * delivery engine's answer; none when it could not reach Redis). */
static void answer_stats(stats_call *sc, Tracseq__Events__V1__Subscription *const *subs, size_t n)
{
    tse_server *s = sc->base.server;
    tse_stats *st = s->stats;
    Tracseq__Events__V1__Stats out = TRACSEQ__EVENTS__V1__STATS__INIT;
    tse_latency_summary lat = tse_stats_latency(st);
    type_counts tc = {0};
    histogram_out hist[TSE_HIST_COUNT];
    /* Per reason: used up its delivery attempts, or rejected. */
    Tracseq__Events__V1__Stats__DeadLetteredByReasonEntry reason =
        TRACSEQ__EVENTS__V1__STATS__DEAD_LETTERED_BY_REASON_ENTRY__INIT;
    Tracseq__Events__V1__Stats__DeadLetteredByReasonEntry rejected =
        TRACSEQ__EVENTS__V1__STATS__DEAD_LETTERED_BY_REASON_ENTRY__INIT;
    Tracseq__Events__V1__Stats__DeadLetteredByReasonEntry *reasons[] = {&reason, &rejected};

    tc.cap = 4097;
    tc.entries = calloc(tc.cap, sizeof(*tc.entries));
    tc.ptrs = calloc(tc.cap, sizeof(*tc.ptrs));
    if (tc.entries && tc.ptrs)
        tse_stats_each_type(st, add_type, &tc);
    out.events_published = tse_stats_get(st, TSE_STAT_PUBLISHED);
    out.events_consumed = tse_stats_get(st, TSE_STAT_CONSUMED);
    out.events_failed =
        tse_stats_get(st, TSE_STAT_INVALID) + tse_stats_get(st, TSE_STAT_UNAVAILABLE);
    out.handlers_registered = tse_stats_get(st, TSE_STAT_SUBSCRIBERS);
    out.events_acked = tse_stats_get(st, TSE_STAT_ACKED);
    out.events_redelivered = tse_stats_get(st, TSE_STAT_REDELIVERED);
    reason.key = "max_delivery_attempts";
    reason.value = tse_stats_get(st, TSE_STAT_DEAD_LETTERED);
    rejected.key = "rejected";
    rejected.value = tse_stats_get(st, TSE_STAT_REJECTED);
    out.events_dead_lettered = reason.value + rejected.value;
    out.n_dead_lettered_by_reason = 2;
    out.dead_lettered_by_reason = reasons;
    out.dead_letters_redriven = tse_stats_get(st, TSE_STAT_REDRIVEN);
    out.dead_letters_purged = tse_stats_get(st, TSE_STAT_PURGED);
    out.events_duplicate = tse_stats_get(st, TSE_STAT_DUPLICATE);
    out.events_schema_invalid = tse_stats_get(st, TSE_STAT_SCHEMA_INVALID);
    out.events_invalid = tse_stats_get(st, TSE_STAT_INVALID);
    out.events_unavailable = tse_stats_get(st, TSE_STAT_UNAVAILABLE);
    out.active_subscribers = (uint32_t)tse_stats_get(st, TSE_STAT_SUBSCRIBERS);
    out.subscriptions = (uint32_t)n;
    out.n_subscription_stats = n;
    out.subscription_stats = (Tracseq__Events__V1__Subscription **)subs;
    out.n_published_by_type = tc.n;
    out.published_by_type = tc.ptrs;
    out.n_stream_lengths = sc->lengths.n;
    out.stream_lengths = sc->lengths.ptrs;
    out.publish_latency_p50_us = lat.p50_us;
    out.publish_latency_p99_us = lat.p99_us;
    out.publish_latency_max_us = lat.max_us;
    out.events_nacked = tse_stats_get(st, TSE_STAT_NACKED);
    out.publish_latency = histogram_fill(&hist[TSE_HIST_PUBLISH], st, TSE_HIST_PUBLISH);
    out.redis_round_trip = histogram_fill(&hist[TSE_HIST_REDIS_RTT], st, TSE_HIST_REDIS_RTT);
    out.delivery_latency = histogram_fill(&hist[TSE_HIST_DELIVERY], st, TSE_HIST_DELIVERY);
    out.uptime_seconds = tse_stats_uptime(st);
    out.redis_connected = sc->redis_answered && tse_broker_is_up(s->broker);
    out.validation_mode = s->config->strict ? "strict" : "lenient";
    out.version = TSE_VERSION;
    out.instance = s->delivery ? (char *)tse_delivery_instance(s->delivery) : "";
    tse_call_finish_unary(&sc->base, &out.base, NULL);
    free(tc.entries);
    free(tc.ptrs);
}

/* Step 2, on the delivery engine's thread. */
static void on_subscriptions(void *arg, const tse_error *err,
                             const Tracseq__Events__V1__Subscription *const *subs, size_t n)
{
    stats_call *sc = arg;

    /* Redis down: the counters and lengths still answer. */
    if (err != NULL && err->code != TSE_OK)
        n = 0;
    answer_stats(sc, (Tracseq__Events__V1__Subscription *const *)subs, n);
}

static void gather_subscriptions(stats_call *sc)
{
    tse_delivery *d = sc->base.server->delivery;

    /* No engine, or the request not queued: the counters still answer. */
    if (d == NULL || tse_delivery_get_subscriptions(d, NULL, on_subscriptions, sc, NULL) != TSE_OK)
        answer_stats(sc, NULL, 0);
}

/* Step 1, on a broker lane's thread. */
static void on_stream_lengths(void *arg, tse_status status, const tse_stream_lengths *lengths)
{
    stats_call *sc = arg;

    /* Redis down or an error reply: no lengths. Out of memory decoding
     * them: Redis answered, the lengths are left out. */
    if (lengths != NULL)
        length_map_fill(&sc->lengths, lengths);
    sc->redis_answered = status == TSE_OK || status == TSE_NOMEM;
    gather_subscriptions(sc);
}

static void get_stats_start(tse_call *c)
{
    tse_broker *b = c->server->broker;
    tse_error err;

    /* The stats of every stream and subscription: an admin's. */
    if (tse_access_admin(c, "stats", &err) != TSE_OK) {
        tse_call_fail(c, &err);
        return;
    }
    if (tse_broker_stream_lengths(b, tse_broker_pick_lane(b), on_stream_lengths, c) != TSE_OK)
        gather_subscriptions((stats_call *)c);
}

const tse_method tse_method_get_stats = {
    .path = "/tracseq.events.v1.EventService/GetStats",
    .name = "GetStats",
    .streaming_in = false,
    .backlog = 4,
    .call_size = sizeof(stats_call),
    .request = &tracseq__events__v1__get_stats_request__descriptor,
    .start = get_stats_start,
    .release = stats_release,
};

/* ===================== ListEventTypes =================================== */

/* Built once, with the server (tse_catalog_describe); each call sends a copy. */
static void list_types_start(tse_call *c)
{
    const tse_server *s = c->server;

    tse_call_finish(c,
                    tse_byte_buffer_take(grpc_slice_from_copied_buffer(
                        (const char *)s->catalog_answer, s->catalog_answer_len)),
                    NULL);
}

const tse_method tse_method_list_event_types = {
    .path = "/tracseq.events.v1.EventService/ListEventTypes",
    .name = "ListEventTypes",
    .streaming_in = false,
    .backlog = 2,
    .call_size = sizeof(tse_call),
    .request = &tracseq__events__v1__list_event_types_request__descriptor,
    .start = list_types_start,
};
