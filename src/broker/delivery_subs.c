/*
 * delivery_subs.c - the subscriptions the engine knows: stored in Redis
 * (hash tracseq:subs: name -> packed Subscription), cached while in use,
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

#include "broker/delivery_internal.h"
#include "domain/subscription.h"

#define EVENTS_PREFIX "tracseq:events:"

typedef Tracseq__Events__V1__Subscription Subscription;

tse_sub *tse_dl_find(tse_delivery *d, const char *name)
{
    for (tse_sub *sub = d->subs; sub; sub = sub->next)
        if (strcmp(sub->def->name, name) == 0)
            return sub;
    return NULL;
}

void tse_dl_sub_free(tse_sub *sub)
{
    if (sub == NULL)
        return;
    while (sub->ext) {
        tse_ext *next = sub->ext->next;
        tse_dl_ext_free(sub->ext);
        sub->ext = next;
    }
    for (size_t i = 0; i < sub->n_streams; i++)
        free(sub->streams[i]);
    free(sub->streams);
    free(sub->prio);
    if (sub->def)
        protobuf_c_message_free_unpacked(&sub->def->base, NULL);
    free(sub);
}

/* Splits "tracseq:events:<type>:p<N>" into type (into buf) and priority. */
static bool parse_stream_key(const char *key, char *type, size_t len, int *prio)
{
    size_t plen = strlen(EVENTS_PREFIX);
    const char *colon;

    if (strncmp(key, EVENTS_PREFIX, plen) != 0)
        return false;
    colon = strrchr(key + plen, ':');
    if (colon == NULL || colon[1] != 'p' || colon[2] < '1' || colon[2] > '5' || colon[3] != '\0')
        return false;
    if ((size_t)(colon - key) - plen >= len)
        return false;
    snprintf(type, len, "%.*s", (int)((size_t)(colon - key) - plen), key + plen);
    *prio = colon[2] - '0';
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
    const char *argv[] = {"XGROUP",  "CREATE", key, sub->def->name, now ? "$" : sub->group_start,
                          "MKSTREAM"};
    redisReply *r = tse_dl_cmd(d, 6, argv, NULL);

    if (r == NULL)
        return;
    if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BUSYGROUP", 9) != 0) {
        freeReplyObject(r);
        return;
    }
    freeReplyObject(r);
    if (sub->n_streams == sub->cap_streams) {
        size_t cap = sub->cap_streams ? 2 * sub->cap_streams : 16;
        char **s = realloc(sub->streams, cap * sizeof(*s));
        int *p = s ? realloc(sub->prio, cap * sizeof(*p)) : NULL;
        if (s)
            sub->streams = s;
        if (p == NULL)
            return;
        sub->prio = p;
        sub->cap_streams = cap;
    }
    sub->streams[sub->n_streams] = strdup(key);
    sub->prio[sub->n_streams++] = prio;
}

/* Adopts every registered stream that matches and is new to sub. */
static void match_streams(tse_delivery *d, tse_sub *sub, const redisReply *keys)
{
    char type[160];
    int prio;

    for (size_t i = 0; d->ctx && i < keys->elements; i++) {
        const char *key = keys->element[i]->str;
        if (key == NULL || has_stream(sub, key) ||
            !parse_stream_key(key, type, sizeof(type), &prio))
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

static redisReply *registered_streams(tse_delivery *d)
{
    const char *argv[] = {"SMEMBERS", "tracseq:streams"};
    redisReply *r = tse_dl_cmd(d, 2, argv, NULL);

    if (r != NULL && r->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        return NULL;
    }
    return r;
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
    redisReply *keys;

    if (sub == NULL) {
        protobuf_c_message_free_unpacked(&def->base, NULL);
        return NULL;
    }
    sub->def = def;
    sub->creating = creating;
    set_group_start(sub);
    keys = registered_streams(d);
    if (keys != NULL) {
        match_streams(d, sub, keys);
        freeReplyObject(keys);
    }
    sub->creating = false;
    sub->next = d->subs;
    d->subs = sub;
    return sub;
}

static Subscription *stored(tse_delivery *d, const char *name, tse_error *err)
{
    const char *argv[] = {"HGET", TSE_SUBS_KEY, name};
    redisReply *r = tse_dl_cmd(d, 3, argv, NULL);
    Subscription *def = NULL;

    if (r == NULL) {
        tse_error_set(err, TSE_UNAVAILABLE, NULL, "Redis is unavailable; retry later");
        return NULL;
    }
    if (r->type == REDIS_REPLY_STRING)
        def = tracseq__events__v1__subscription__unpack(NULL, r->len, (const uint8_t *)r->str);
    else
        tse_error_set(err, TSE_NOT_FOUND, "subscription", "no subscription named '%.64s'", name);
    freeReplyObject(r);
    return def;
}

tse_sub *tse_dl_load(tse_delivery *d, const char *name, tse_error *err)
{
    tse_sub *sub;
    Subscription *def;

    if (name == NULL || !tse_subscription_name_valid(name, TSE_SUBSCRIPTION_NAME_MAX)) {
        tse_error_set(err, TSE_INVALID, "subscription",
                      "a subscription name is 1-64 characters of A-Z a-z 0-9 _ . -");
        return NULL;
    }
    sub = tse_dl_find(d, name);
    if (sub != NULL)
        return sub;
    def = stored(d, name, err);
    return def ? adopt(d, def, false) : NULL;
}

void tse_dl_refresh(tse_delivery *d, tse_sub *sub)
{
    redisReply *keys = registered_streams(d);

    if (keys != NULL) {
        match_streams(d, sub, keys);
        freeReplyObject(keys);
    }
}

/* The Redis clock, so group start ids and entry ids agree. */
static bool redis_time(tse_delivery *d, int64_t *sec, int32_t *nanos)
{
    const char *argv[] = {"TIME"};
    redisReply *r = tse_dl_cmd(d, 1, argv, NULL);
    bool ok = r && r->type == REDIS_REPLY_ARRAY && r->elements == 2;

    if (ok) {
        *sec = strtoll(r->element[0]->str, NULL, 10);
        *nanos = (int32_t)(strtol(r->element[1]->str, NULL, 10) * 1000);
    }
    if (r)
        freeReplyObject(r);
    return ok;
}

tse_sub *tse_dl_create(tse_delivery *d, Subscription *spec, tse_error *err)
{
    Google__Protobuf__Timestamp created = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    Google__Protobuf__Timestamp *old_created;
    Tracseq__Events__V1__SubscriptionStats *old_stats;
    Subscription *existing;
    uint8_t *buf;
    size_t len;
    redisReply *r;

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
    if (!redis_time(d, &created.seconds, &created.nanos))
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
    r = tse_dl_cmd(d, 4, (const char *[]){"HSETNX", TSE_SUBS_KEY, spec->name, (char *)buf},
                   (const size_t[]){6, strlen(TSE_SUBS_KEY), strlen(spec->name), len});
    free(buf);
    if (r == NULL)
        return tse_error_set(err, TSE_UNAVAILABLE, NULL, "Redis is unavailable"), NULL;
    bool inserted = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
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
            s->pull_cb(s->pull_arg, why, NULL, 0);
            tse_dl_release(d, s);
        } else if (s->ops->ended) {
            /* The transport ends its stream and detaches; then it is released. */
            s->ops->ended(s->arg, why);
        }
    }
    tse_dl_sub_free(sub);
}

void tse_dl_delete(tse_delivery *d, const char *name, tse_error *err)
{
    tse_sub *sub = tse_dl_load(d, name, err);
    char dlq[TSE_SUBSCRIPTION_NAME_MAX + 32];
    tse_error gone;
    redisReply *r;

    if (sub == NULL)
        return;
    for (size_t i = 0; d->ctx && i < sub->n_streams; i++) {
        r = tse_dl_cmd(d, 4, (const char *[]){"XGROUP", "DESTROY", sub->streams[i], name}, NULL);
        if (r)
            freeReplyObject(r);
    }
    snprintf(dlq, sizeof(dlq), TSE_DLQ_PREFIX "%s", name);
    r = tse_dl_cmd(d, 2, (const char *[]){"DEL", dlq}, NULL);
    if (r)
        freeReplyObject(r);
    r = tse_dl_cmd(d, 3, (const char *[]){"HDEL", TSE_SUBS_KEY, name}, NULL);
    if (r == NULL) {
        tse_error_set(err, TSE_UNAVAILABLE, NULL, "Redis is unavailable");
        return;
    }
    freeReplyObject(r);
    tse_error_set(&gone, TSE_NOT_FOUND, "subscription", "subscription '%s' was deleted", name);
    tse_dl_forget(d, sub, &gone);
}

void tse_dl_discover(tse_delivery *d)
{
    redisReply *keys, *names;
    tse_sub *sub, *next;
    tse_error gone;

    d->last_discover_ms = tse_dl_now_ms();
    if (d->subs == NULL)
        return;
    names = tse_dl_cmd(d, 2, (const char *[]){"HKEYS", TSE_SUBS_KEY}, NULL);
    if (names == NULL)
        return;
    /* Deleted elsewhere: end its subscribers here too. */
    for (sub = d->subs; names->type == REDIS_REPLY_ARRAY && sub; sub = next) {
        bool found = false;
        next = sub->next;
        for (size_t i = 0; !found && i < names->elements; i++)
            found = strcmp(names->element[i]->str, sub->def->name) == 0;
        if (!found) {
            tse_error_set(&gone, TSE_NOT_FOUND, "subscription", "subscription '%s' was deleted",
                          sub->def->name);
            tse_dl_forget(d, sub, &gone);
        }
    }
    freeReplyObject(names);
    keys = registered_streams(d);
    if (keys == NULL)
        return;
    for (sub = d->subs; d->ctx && sub; sub = sub->next)
        match_streams(d, sub, keys);
    freeReplyObject(keys);
}

/* Adds one stream's group figures (XINFO GROUPS) to the stats. */
static void group_figures(tse_delivery *d, tse_sub *sub, const char *key,
                          Tracseq__Events__V1__SubscriptionStats *st)
{
    redisReply *r = tse_dl_cmd(d, 3, (const char *[]){"XINFO", "GROUPS", key}, NULL);

    if (r == NULL || r->type != REDIS_REPLY_ARRAY)
        goto out;
    for (size_t g = 0; g < r->elements; g++) {
        redisReply *f = r->element[g];
        bool mine = false;
        uint64_t pending = 0, lag = 0;
        for (size_t i = 0; f->type == REDIS_REPLY_ARRAY && i + 1 < f->elements; i += 2) {
            const char *k = f->element[i]->str;
            redisReply *v = f->element[i + 1];
            if (k == NULL)
                continue;
            if (strcmp(k, "name") == 0 && v->str)
                mine = strcmp(v->str, sub->def->name) == 0;
            else if (strcmp(k, "pending") == 0 && v->type == REDIS_REPLY_INTEGER)
                pending = (uint64_t)v->integer;
            else if (strcmp(k, "lag") == 0 && v->type == REDIS_REPLY_INTEGER)
                lag = (uint64_t)v->integer;
        }
        if (mine) {
            st->pending += pending;
            st->lag += lag;
        }
    }
out:
    if (r)
        freeReplyObject(r);
}

Subscription *tse_dl_describe(tse_delivery *d, tse_sub *sub)
{
    size_t len = protobuf_c_message_get_packed_size(&sub->def->base);
    uint8_t *buf = malloc(len ? len : 1);
    Subscription *out;
    Tracseq__Events__V1__SubscriptionStats *st;
    char dlq[TSE_SUBSCRIPTION_NAME_MAX + 32];
    redisReply *r;

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
    tse_dl_refresh(d, sub); /* lag counts streams that appeared since discovery */
    for (size_t i = 0; d->ctx && i < sub->n_streams; i++)
        group_figures(d, sub, sub->streams[i], st);
    snprintf(dlq, sizeof(dlq), TSE_DLQ_PREFIX "%s", sub->def->name);
    r = tse_dl_cmd(d, 2, (const char *[]){"XLEN", dlq}, NULL);
    if (r && r->type == REDIS_REPLY_INTEGER)
        st->dead_lettered = (uint64_t)r->integer;
    if (r)
        freeReplyObject(r);
    for (tse_subscriber *s = sub->subscribers; s; s = s->next)
        st->active_subscribers += s->is_pull ? 0 : 1;
    st->streams = (uint32_t)sub->n_streams;
    st->dead_letter_stream = strdup(dlq);
    st->delivered = sub->delivered;
    st->acked = sub->acked;
    st->redelivered = sub->redelivered;
    out->stats = st;
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
    redisReply *r =
        tse_dl_cmd(d, 4, (const char *[]){"XINFO", "CONSUMERS", key, sub->def->name}, NULL);

    for (size_t c = 0; r && r->type == REDIS_REPLY_ARRAY && c < r->elements; c++) {
        const redisReply *f = r->element[c];
        const char *name = NULL;
        long long pending = -1, idle = 0;
        for (size_t i = 0; f->type == REDIS_REPLY_ARRAY && i + 1 < f->elements; i += 2) {
            const char *k = f->element[i]->str;
            const redisReply *v = f->element[i + 1];
            if (k == NULL)
                continue;
            if (strcmp(k, "name") == 0)
                name = v->str;
            else if (strcmp(k, "pending") == 0 && v->type == REDIS_REPLY_INTEGER)
                pending = v->integer;
            else if (strcmp(k, "idle") == 0 && v->type == REDIS_REPLY_INTEGER)
                idle = v->integer;
        }
        if (name == NULL || pending != 0 || idle < d->opts.reap_idle_ms ||
            local_consumer(sub, name))
            continue;
        redisReply *del = tse_dl_cmd(
            d, 5, (const char *[]){"XGROUP", "DELCONSUMER", key, sub->def->name, name}, NULL);
        if (del)
            freeReplyObject(del);
        if (d->ctx == NULL)
            break;
    }
    if (r)
        freeReplyObject(r);
}

void tse_dl_reap(tse_delivery *d)
{
    int64_t now = tse_dl_now_ms(), every;

    if (d->opts.reap_idle_ms <= 0 || now < d->next_reap_ms)
        return;
    every = d->opts.reap_idle_ms < 60000 ? d->opts.reap_idle_ms : 60000;
    d->next_reap_ms = now + every;
    for (tse_sub *sub = d->subs; d->ctx && sub; sub = sub->next)
        for (size_t i = 0; d->ctx && i < sub->n_streams; i++)
            reap_stream(d, sub, sub->streams[i]);
}
