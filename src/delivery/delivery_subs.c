/*
 * delivery_subs.c - the subscriptions the engine knows: stored in Redis
 * (hash TSE_SUBS_KEY: name -> packed Subscription), cached while in use,
 * with a consumer group on every stream whose type matches, including
 * streams first seen later (discovery, every second).
 *
 * A group's start id is the subscription's start: LATEST -> the Redis time
 * of creation, EARLIEST -> 0, TIMESTAMP -> just before start_time. Groups
 * are created with that id on every stream, whenever it is found, so an
 * event type first published after the subscription is delivered whole.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "delivery/delivery_internal.h"
#include "domain/subscription.h"

typedef Tracseq__Events__V1__Subscription Subscription;

static tse_sub *find_sub(tse_delivery *d, const char *name)
{
    for (tse_sub *sub = d->subs; sub; sub = sub->next)
        if (strcmp(sub->def->name, name) == 0)
            return sub;
    return NULL;
}

static void sub_free(tse_sub *sub)
{
    if (sub == NULL)
        return;
    tse_dl_drop_acks(sub);
    tse_free(sub->owed);
    while (sub->ext) {
        tse_ext *next = sub->ext->next;
        tse_dl_ext_free(sub->ext);
        sub->ext = next;
    }
    for (size_t i = 0; i < sub->n_streams; i++)
        free(sub->streams[i]);
    free(sub->streams);
    free(sub->prio);
    free(sub->lag);
    if (sub->def)
        protobuf_c_message_free_unpacked(&sub->def->base, NULL);
    free(sub);
}

/* Splits a stream key into type (into buf) and priority (1..5). */
static bool parse_stream_key(const char *key, char *type, size_t len, int *prio)
{
    const char *t;
    size_t tlen;

    if (!tse_key_stream_parse(key, strlen(key), &t, &tlen, prio) || *prio > 5 || tlen >= len)
        return false;
    snprintf(type, len, "%.*s", (int)tlen, t);
    return true;
}

static bool has_stream(const tse_sub *sub, const char *key)
{
    for (size_t i = 0; i < sub->n_streams; i++)
        if (strcmp(sub->streams[i], key) == 0)
            return true;
    return false;
}

/* Creates the group on key (an existing group is fine) and remembers key. */
static void adopt_stream(tse_delivery *d, tse_sub *sub, const char *key, int prio)
{
    /* Streams that exist as a LATEST subscription is created start at their
     * end exactly; streams found later start at the creation time. */
    bool now = sub->creating &&
               (sub->def->start == TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_LATEST ||
                sub->def->start == TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_UNSPECIFIED);
    /* The three arrays share cap_streams, which moves once all have grown. */
    size_t cap_s = sub->cap_streams, cap_p = sub->cap_streams, cap_l = sub->cap_streams;
    size_t need = sub->n_streams + 1;
    char *copy;

    if (tse_group_create(d->conn, key, sub->def->name, now ? "$" : sub->group_start) != TSE_OK)
        return;
    /* Out of memory: not adopted now; the next discovery tries again. */
    if ((copy = strdup(key)) == NULL)
        return;
    if (!TSE_GROW(realloc, sub->streams, cap_s, need, 16) ||
        !TSE_GROW(realloc, sub->prio, cap_p, need, 16) ||
        !TSE_GROW(realloc, sub->lag, cap_l, need, 16)) {
        free(copy);
        return;
    }
    sub->cap_streams = cap_s;
    memset(&sub->lag[sub->n_streams], 0, sizeof(sub->lag[0]));
    sub->streams[sub->n_streams] = copy;
    sub->prio[sub->n_streams++] = prio;
}

/* Adopts every registered stream that matches and is new to sub. */
static void match_streams(tse_delivery *d, tse_sub *sub, const tse_strings *keys)
{
    char type[160];
    int prio;

    for (size_t i = 0; d->conn && i < keys->n; i++) {
        const char *key = keys->v[i];
        if (has_stream(sub, key) || !parse_stream_key(key, type, sizeof(type), &prio))
            continue;
        if (tse_patterns_match(sub->def->event_types, sub->def->n_event_types, type)) {
            adopt_stream(d, sub, key, prio);
            /* A new stream may hold events: every subscriber looks. */
            sub->drained = false;
            for (tse_subscriber *s = sub->subscribers; s; s = s->next)
                if (s->credit > 0)
                    s->hungry = true;
        }
    }
}

/* Every registered stream into keys; false when Redis did not say. */
static bool registered_streams(tse_delivery *d, tse_strings *keys)
{
    if (tse_streams_list(d->conn, keys) == TSE_OK)
        return true;
    tse_strings_cleanup(keys);
    return false;
}

static void set_group_start(tse_sub *sub)
{
    const Subscription *def = sub->def;
    int64_t ms;

    switch (def->start) {
    case TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_EARLIEST:
        snprintf(sub->group_start, sizeof(sub->group_start), "0-0");
        break;
    case TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_TIMESTAMP:
        ms = def->start_time ? def->start_time->seconds * 1000 + def->start_time->nanos / 1000000
                             : 0;
        if (ms <= 0)
            snprintf(sub->group_start, sizeof(sub->group_start), "0-0");
        else /* just before the first entry of that millisecond */
            snprintf(sub->group_start, sizeof(sub->group_start), "%" PRId64 "-%" PRIu64, ms - 1,
                     UINT64_MAX);
        break;
    default:
        ms = def->created_at ? def->created_at->seconds * 1000 + def->created_at->nanos / 1000000
                             : 0;
        snprintf(sub->group_start, sizeof(sub->group_start), "%" PRId64 "-%" PRIu64,
                 ms > 0 ? ms - 1 : 0, ms > 0 ? UINT64_MAX : 0);
    }
}

/* Caches def (taking ownership) and prepares its groups. */
static tse_sub *adopt(tse_delivery *d, Subscription *def, bool creating)
{
    tse_sub *sub = calloc(1, sizeof(*sub));
    tse_strings keys = {0};

    if (sub == NULL) {
        protobuf_c_message_free_unpacked(&def->base, NULL);
        return NULL;
    }
    sub->def = def;
    sub->creating = creating;
    set_group_start(sub);
    if (registered_streams(d, &keys))
        match_streams(d, sub, &keys);
    tse_strings_cleanup(&keys);
    sub->creating = false;
    sub->next = d->subs;
    d->subs = sub;
    return sub;
}

static Subscription *stored(tse_delivery *d, const char *name, tse_error *err)
{
    tse_blob packed = {0};
    tse_status st = tse_subs_get(d->conn, name, &packed);
    Subscription *def = NULL;

    if (st == TSE_UNAVAILABLE) {
        tse_error_set(err, TSE_UNAVAILABLE, NULL, "Redis is unavailable; retry later");
        return NULL;
    }
    if (st == TSE_OK)
        def = tracseq__events__v1__subscription__unpack(NULL, packed.len, packed.data);
    else
        tse_error_set(err, TSE_NOT_FOUND, "subscription", "no subscription named '%.64s'", name);
    tse_blob_cleanup(&packed);
    return def;
}

tse_sub *tse_dl_load(tse_delivery *d, const char *name, tse_error *err)
{
    tse_sub *sub;
    Subscription *def;

    if (name == NULL || !tse_subscription_name_valid(name, TSE_SUBSCRIPTION_NAME_MAX)) {
        tse_error_set(err, TSE_INVALID, "subscription",
                      "a subscription name is 1-%d characters of A-Z a-z 0-9 _ . -",
                      TSE_SUBSCRIPTION_NAME_MAX);
        return NULL;
    }
    sub = find_sub(d, name);
    if (sub != NULL)
        return sub;
    def = stored(d, name, err);
    return def ? adopt(d, def, false) : NULL;
}

tse_sub *tse_dl_load_current(tse_delivery *d, const char *name, tse_error *err)
{
    tse_sub *sub = name ? find_sub(d, name) : NULL;
    tse_blob packed = {0};
    tse_error gone;

    /* Deleted through another instance since it was cached: forgotten
     * now, as discovery would within a second; tse_dl_load then answers
     * NOT_FOUND. Redis unreachable: the cached one still answers. */
    if (sub != NULL && tse_subs_get(d->conn, name, &packed) == TSE_NOT_FOUND) {
        tse_error_set(&gone, TSE_NOT_FOUND, "subscription", "subscription '%s' was deleted", name);
        tse_dl_forget(d, sub, &gone);
    }
    tse_blob_cleanup(&packed);
    return tse_dl_load(d, name, err);
}

/* Adopts registered streams new to sub (no deletion check). */
static void refresh(tse_delivery *d, tse_sub *sub)
{
    tse_strings keys = {0};

    if (registered_streams(d, &keys))
        match_streams(d, sub, &keys);
    tse_strings_cleanup(&keys);
}

tse_sub *tse_dl_create(tse_delivery *d, Subscription *spec, tse_error *err)
{
    Google__Protobuf__Timestamp created = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    Google__Protobuf__Timestamp *old_created;
    Tracseq__Events__V1__SubscriptionStats *old_stats;
    Subscription *existing;
    uint8_t *buf;
    size_t len;
    bool inserted;
    tse_status st;

    if (spec == NULL)
        return tse_error_set(err, TSE_INVALID, "subscription", "is required"), NULL;
    if (tse_subscription_validate(spec, err) != TSE_OK)
        return NULL;
    existing = stored(d, spec->name, err);
    if (existing == NULL && err->code != TSE_NOT_FOUND)
        return NULL;
    if (existing != NULL) {
        bool same = tse_subscription_same(existing, spec);
        protobuf_c_message_free_unpacked(&existing->base, NULL);
        if (!same) {
            tse_error_set(err, TSE_ALREADY_EXISTS, "subscription.name",
                          "subscription '%s' exists with other settings", spec->name);
            return NULL;
        }
        tse_error_clear(err);
        return tse_dl_load(d, spec->name, err);
    }
    tse_error_clear(err);
    if (tse_redis_time(d->conn, &created.seconds, &created.nanos) != TSE_OK)
        return tse_error_set(err, TSE_UNAVAILABLE, NULL, "Redis is unavailable"), NULL;
    /* Store the settings only: output fields are computed on read. */
    old_created = spec->created_at;
    old_stats = spec->stats;
    spec->created_at = &created;
    spec->stats = NULL;
    len = protobuf_c_message_get_packed_size(&spec->base);
    buf = malloc(len ? len : 1);
    if (buf)
        protobuf_c_message_pack(&spec->base, buf);
    spec->created_at = old_created;
    spec->stats = old_stats;
    if (buf == NULL)
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory"), NULL;
    st = tse_subs_put_new(d->conn, spec->name, buf, len, &inserted);
    free(buf);
    if (st == TSE_UNAVAILABLE)
        return tse_error_set(err, TSE_UNAVAILABLE, NULL, "Redis is unavailable"), NULL;
    if (!inserted) /* created meanwhile by another instance: load what is stored */
        return tse_dl_load(d, spec->name, err);
    existing = stored(d, spec->name, err);
    return existing ? adopt(d, existing, true) : NULL;
}

void tse_dl_forget(tse_delivery *d, tse_sub *sub, const tse_error *why)
{
    for (tse_sub **p = &d->subs; *p; p = &(*p)->next) {
        if (*p == sub) {
            *p = sub->next;
            break;
        }
    }
    while (sub->subscribers) {
        tse_subscriber *s = sub->subscribers;
        sub->subscribers = s->next;
        s->sub = NULL;
        if (s->is_pull) {
            tse_dl_pull_answer(d, s, why);
            tse_dl_release(d, s);
        } else if (s->ops->ended) {
            /* The transport ends its stream and detaches; then it is released. */
            s->ops->ended(s->arg, why);
        }
    }
    sub_free(sub);
}

void tse_dl_delete(tse_delivery *d, const char *name, tse_error *err)
{
    tse_sub *sub = tse_dl_load(d, name, err);
    tse_error gone;

    if (sub == NULL)
        return;
    for (size_t i = 0; d->conn && i < sub->n_streams; i++)
        tse_group_destroy(d->conn, sub->streams[i], name);
    if (tse_subs_delete(d->conn, name) == TSE_UNAVAILABLE) {
        tse_error_set(err, TSE_UNAVAILABLE, NULL, "Redis is unavailable");
        return;
    }
    tse_error_set(&gone, TSE_NOT_FOUND, "subscription", "subscription '%s' was deleted", name);
    tse_dl_forget(d, sub, &gone);
}

void tse_dl_discover(tse_delivery *d)
{
    tse_strings keys = {0}, names = {0};
    tse_sub *sub, *next;
    tse_error gone;
    tse_status st;

    if (d->subs == NULL)
        return;
    st = tse_subs_names(d->conn, &names);
    if (st == TSE_UNAVAILABLE)
        return;
    /* Deleted elsewhere: end its subscribers here too. */
    for (sub = d->subs; st == TSE_OK && sub; sub = next) {
        bool found = false;
        next = sub->next;
        for (size_t i = 0; !found && i < names.n; i++)
            found = strcmp(names.v[i], sub->def->name) == 0;
        if (!found) {
            tse_error_set(&gone, TSE_NOT_FOUND, "subscription", "subscription '%s' was deleted",
                          sub->def->name);
            tse_dl_forget(d, sub, &gone);
        }
    }
    tse_strings_cleanup(&names);
    if (!registered_streams(d, &keys))
        return;
    d->streams_seen = (long long)keys.n;
    for (sub = d->subs; d->conn && sub; sub = sub->next)
        match_streams(d, sub, &keys);
    tse_strings_cleanup(&keys);
}

/*
 * A group's lag when XINFO GROUPS has none. Redis knows it only while it can
 * tell how many entries the group has read: not for a group created at an id
 * in the middle of a stream (a timestamp start, or a stream found after the
 * subscription was made) until it catches up with the end, and never while an
 * entry after the group's last-delivered id was deleted (a tombstone ahead).
 *
 * Lag is the number of entries after the group's last-delivered id; Redis has
 * no command that says it without reading them, so reading them must be rare:
 * GetStats and /metrics scrapes ask for every group of every stream, and a
 * count reading 20,000 entries per group on every call (an earlier version)
 * cost 28 ms of Redis each and blocked every other client for seconds. So:
 *
 * - The lag script (tse_group_lag, storage/group_ops.c) counts the entries
 *   after the group's last-delivered id, from both sides of it at once
 *   (after it forward, up to it backward, lag = length - up to it), a page
 *   each in turn, so the cost is about twice the
 *   smaller side, bounded by ARGV[2] entries (LAG_COUNT_MAX: a few ms of
 *   Redis). Counted exactly, the figure is handed back to Redis (XGROUP SETID
 *   at the same id with ENTRIESREAD = entries-added - lag), so Redis reports
 *   the lag itself from then on unless a tombstone is ahead; all inside the
 *   script, so no read of the group can slip in between. Past the bound, the
 *   entries not counted (before the backward count and after the forward one)
 *   are split between the two sides in proportion to the time they span
 *   (entry ids are times): an estimate, never below what was counted.
 * - Each figure is kept with its point (tse_lag_memo: last-delivered id,
 *   entries-added, max-deleted-entry-id). While the group has not moved, no
 *   entry was deleted (XDEL moves max-deleted-entry-id; XTRIM does not) and
 *   trimming took only entries behind the group (the first entry is not past
 *   its id), every entry added since is after the group: the lag is the kept
 *   one plus the entries added, exact when the kept one was. The script
 *   answers that from two XINFO calls (ARGV[3..6]), reading no entry. This is
 *   the usual case of a group with no consumer, the one that made stats slow.
 * - Otherwise (the group moved, entries were deleted or trimmed past it)
 *   the entries are counted again: at once if the last count was cheap (at
 *   most LAG_CHEAP_READ entries), else after LAG_RECOUNT_MS; and the engine's
 *   counts read at most LAG_READ_PER_S entries a second. In between, the
 *   script runs with a bound of 0: it reads no entry and answers the time
 *   estimate alone (how 0). So the figure is exact wherever Redis or a
 *   count knows it; it is an estimate only past the bound, or for a group
 *   that moved since a dear count (more than LAG_CHEAP_READ entries), until
 *   it may be counted again.
 * - A group whose id is at or past the stream's newest (a timestamp start in
 *   the future) has nothing to be delivered: 0, nothing kept, since entries
 *   added later may still come before its id. A group before the first entry
 *   has the whole stream to be delivered: its length.
 *
 * The script is tse_group_lag's (storage/group_ops.c). It returns {lag, how,
 * entries-added, max-deleted-entry-id, last-delivered id}
 * and, for how 0 and 1, the entries read; how: 0 an estimate, 1 counted
 * exactly, 2 the kept figure plus appends, 3 no entry read otherwise (Redis's
 * own figure, 0 or the length); {-1} when the group does not exist. GetStats costs, per group of a
 * stream: one XINFO GROUPS, plus one such script where Redis has no lag, reading at most
 * LAG_COUNT_MAX entries and that only within the bounds above.
 */
/* Entries one lag count may read (see lag_script): about 7 ms of Redis. */
#define LAG_COUNT_MAX  5000
/* Entries the engine's lag counts may read in one second, whoever asks:
 * about 3% of Redis's time at most. */
#define LAG_READ_PER_S 20000
/* A count that read at most this many entries (about a millisecond of
 * Redis) may be made again whenever the group's point moved... */
#define LAG_CHEAP_READ 1000
/* ...a dearer one after this long at the earliest. */
#define LAG_RECOUNT_MS 30000

/* True when the entries of the group kept in m may be counted now. */
static bool may_count(tse_delivery *d, const tse_lag_memo *m)
{
    int64_t now = tse_clock_ms();

    if (m->last_id[0] != '\0' && m->read > LAG_CHEAP_READ && now - m->counted_ms < LAG_RECOUNT_MS)
        return false;
    if (now - d->lag_window_ms >= 1000) {
        d->lag_window_ms = now;
        d->lag_read = 0;
    }
    return d->lag_read < LAG_READ_PER_S;
}

static uint64_t counted_lag(tse_delivery *d, tse_sub *sub, size_t i)
{
    tse_lag_memo *m = &sub->lag[i];
    bool count = may_count(d, m);
    tse_lag_query q = {m->last_id, m->max_deleted, m->entries_added, m->lag,
                       count ? LAG_COUNT_MAX : 0};
    tse_lag_answer a;

    if (tse_group_lag(d->conn, sub->streams[i], sub->def->name, &q, &a) != TSE_OK)
        return 0;
    d->lag_read += a.read;
    /* Keep counted figures and their updates; an uncounted estimate would
     * hide the point of the last count. */
    if (a.how == 2 || (a.how < 2 && count)) {
        snprintf(m->last_id, sizeof(m->last_id), "%s", a.last_id);
        snprintf(m->max_deleted, sizeof(m->max_deleted), "%s", a.max_deleted);
        m->entries_added = a.entries_added;
        m->lag = a.lag;
        if (a.how != 2) {
            m->counted_ms = tse_clock_ms();
            m->read = a.read;
        }
    }
    return a.lag;
}

void tse_dl_check_streams(tse_delivery *d)
{
    long long n = 0;

    if (d->subs == NULL || d->conn == NULL)
        return;
    if (tse_streams_count(d->conn, &n) == TSE_OK && n != d->streams_seen)
        tse_dl_discover(d);
}

/* The consumers of sub's group on key, the placeholder owner of nacked
 * deliveries left out (XINFO CONSUMERS). */
static uint64_t group_consumers(tse_delivery *d, const tse_sub *sub, const char *key)
{
    tse_consumer_list l = {0};
    uint64_t n = 0;

    tse_group_consumers(d->conn, key, sub->def->name, &l);
    for (size_t c = 0; c < l.n; c++)
        n += strcmp(l.v[c].name, TSE_DL_NACK_OWNER) != 0;
    tse_consumer_list_cleanup(&l);
    return n;
}

/* Adds one stream's group figures (XINFO GROUPS) to the stats; *oldest_ms
 * becomes the oldest pending entry's time when this stream's is older. */
static void group_figures(tse_delivery *d, tse_sub *sub, size_t i_stream,
                          Tracseq__Events__V1__SubscriptionStats *st, long long *oldest_ms)
{
    const char *key = sub->streams[i_stream];
    tse_group_info g;
    uint64_t consumers;
    long long ms = -1;

    if (tse_group_info_get(d->conn, key, sub->def->name, &g) != TSE_OK || !g.found)
        return;
    st->pending += g.pending;
    st->lag += g.lag_known ? g.lag : counted_lag(d, sub, i_stream);
    /* Every consumer reads all the streams: the most of any is the count.
     * Only a group with consumers is asked for their names. */
    consumers = g.consumers;
    if (consumers > st->consumers)
        consumers = group_consumers(d, sub, key);
    if (consumers > st->consumers)
        st->consumers = (uint32_t)consumers;
    if (g.pending > 0 && tse_group_oldest_pending(d->conn, key, sub->def->name, &ms) == TSE_OK &&
        ms >= 0 && (*oldest_ms < 0 || ms < *oldest_ms))
        *oldest_ms = ms;
}

/* Milliseconds from an entry-id time to Redis's clock now (TIME), so the
 * age does not depend on this host's clock agreeing with Redis's; 0 when
 * Redis does not say. */
static uint64_t age_ms(tse_delivery *d, long long entry_ms)
{
    int64_t sec;
    int32_t nanos;
    long long now = -1;

    if (tse_redis_time(d->conn, &sec, &nanos) == TSE_OK)
        now = (long long)sec * 1000 + nanos / 1000000;
    return now > entry_ms ? (uint64_t)(now - entry_ms) : 0;
}

/* The per-reason dead-letter counts of sub into st's map (every reason,
 * zeros included, so a series exists before its first event); false when
 * out of memory (st's own free releases what was set). */
static bool reason_counts(const tse_sub *sub, Tracseq__Events__V1__SubscriptionStats *st)
{
    st->dead_lettered_by_reason = calloc(TSE_DL_REASONS, sizeof(*st->dead_lettered_by_reason));
    if (st->dead_lettered_by_reason == NULL)
        return false;
    for (size_t i = 0; i < TSE_DL_REASONS; i++) {
        Tracseq__Events__V1__SubscriptionStats__DeadLetteredByReasonEntry *e = malloc(sizeof(*e));
        if (e == NULL)
            return false;
        tracseq__events__v1__subscription_stats__dead_lettered_by_reason_entry__init(e);
        st->dead_lettered_by_reason[st->n_dead_lettered_by_reason++] = e;
        e->value = sub->dead_lettered[i];
        e->key = strdup(tse_dl_reason_names[i]); /* NULL: freed as none */
        if (e->key == NULL)
            return false;
    }
    return true;
}

Subscription *tse_dl_describe(tse_delivery *d, tse_sub *sub)
{
    size_t len = protobuf_c_message_get_packed_size(&sub->def->base);
    uint8_t *buf = malloc(len ? len : 1);
    Subscription *out;
    Tracseq__Events__V1__SubscriptionStats *st;
    char dlq[TSE_SUBSCRIPTION_NAME_MAX + 32];
    long long oldest_ms = -1, dead = 0;

    if (buf == NULL)
        return NULL;
    protobuf_c_message_pack(&sub->def->base, buf);
    out = tracseq__events__v1__subscription__unpack(NULL, len, buf);
    free(buf);
    st = calloc(1, sizeof(*st));
    if (out == NULL || st == NULL) {
        free(st);
        return out;
    }
    tracseq__events__v1__subscription_stats__init(st);
    refresh(d, sub); /* lag counts streams that appeared since discovery */
    for (size_t i = 0; d->conn && i < sub->n_streams; i++)
        group_figures(d, sub, i, st, &oldest_ms);
    if (oldest_ms >= 0)
        st->oldest_unacked_age_ms = age_ms(d, oldest_ms);
    tse_key_dlq(sub->def->name, dlq, sizeof(dlq));
    if (tse_dlq_length(d->conn, sub->def->name, &dead) == TSE_OK)
        st->dead_lettered = (uint64_t)dead;
    for (tse_subscriber *s = sub->subscribers; s; s = s->next)
        st->active_subscribers += s->is_pull ? 0 : 1;
    st->streams = (uint32_t)sub->n_streams;
    st->delivered = sub->delivered;
    st->acked = sub->acked;
    st->redelivered = sub->redelivered;
    st->nacked = sub->nacked;
    out->stats = st;
    st->dead_letter_stream = strdup(dlq);
    if (st->dead_letter_stream == NULL || !reason_counts(sub, st)) {
        protobuf_c_message_free_unpacked(&out->base, NULL);
        return NULL;
    }
    return out;
}

/* True when consumer is a live subscriber of this process. */
static bool local_consumer(const tse_sub *sub, const char *consumer)
{
    for (const tse_subscriber *s = sub->subscribers; s; s = s->next)
        if (strcmp(s->consumer, consumer) == 0)
            return true;
    return false;
}

/* One stream's consumers of sub: those idle past the limit with nothing
 * pending go. A consumer with pending entries is never deleted (its entries
 * would be orphaned); a deleted one that comes back is simply recreated. */
static void reap_stream(tse_delivery *d, tse_sub *sub, const char *key)
{
    tse_consumer_list l = {0};

    tse_group_consumers(d->conn, key, sub->def->name, &l);
    for (size_t c = 0; c < l.n && d->conn; c++) {
        const tse_consumer_info *ci = &l.v[c];
        if (ci->pending != 0 || ci->idle_ms < d->opts.reap_idle_ms || local_consumer(sub, ci->name))
            continue;
        tse_group_delete_consumer(d->conn, key, sub->def->name, ci->name);
    }
    tse_consumer_list_cleanup(&l);
}

void tse_dl_reap(tse_delivery *d)
{
    int64_t now = tse_clock_ms(), every;

    if (d->opts.reap_idle_ms <= 0 || now < d->next_reap_ms)
        return;
    every = d->opts.reap_idle_ms < 60000 ? d->opts.reap_idle_ms : 60000;
    d->next_reap_ms = now + every;
    for (tse_sub *sub = d->subs; d->conn && sub; sub = sub->next)
        for (size_t i = 0; d->conn && i < sub->n_streams; i++)
            reap_stream(d, sub, sub->streams[i]);
}
