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
    const char *argv[] = {"XGROUP",  "CREATE", key, sub->def->name, now ? "$" : sub->group_start,
                          "MKSTREAM"};
    redisReply *r = tse_dl_cmd(d, 6, argv, NULL);
    char *copy;

    if (r == NULL)
        return;
    if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BUSYGROUP", 9) != 0) {
        freeReplyObject(r);
        return;
    }
    freeReplyObject(r);
    /* Out of memory: not adopted now; the next discovery tries again. */
    if ((copy = strdup(key)) == NULL)
        return;
    if (sub->n_streams == sub->cap_streams) {
        size_t cap = sub->cap_streams ? 2 * sub->cap_streams : 16;
        char **s = realloc(sub->streams, cap * sizeof(*s));
        int *p = s ? realloc(sub->prio, cap * sizeof(*p)) : NULL;
        tse_lag_memo *m = p ? realloc(sub->lag, cap * sizeof(*m)) : NULL;
        if (s)
            sub->streams = s;
        if (p)
            sub->prio = p;
        if (m == NULL) {
            free(copy);
            return;
        }
        sub->lag = m;
        sub->cap_streams = cap;
    }
    memset(&sub->lag[sub->n_streams], 0, sizeof(sub->lag[0]));
    sub->streams[sub->n_streams] = copy;
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
    const char *argv[] = {"SMEMBERS", TSE_STREAMS_KEY};
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

/* Adopts registered streams new to sub (no deletion check). */
static void refresh(tse_delivery *d, tse_sub *sub)
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
    snprintf(dlq, sizeof(dlq), TSE_SNAPSHOTS_PREFIX "%s", name);
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

    d->last_discover_ms = tse_clock_ms();
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
    d->streams_seen = (long long)keys->elements;
    for (sub = d->subs; d->ctx && sub; sub = sub->next)
        match_streams(d, sub, keys);
    freeReplyObject(keys);
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
 * - The script below counts the entries after the group's last-delivered id,
 *   from both sides of it at once (after it forward, up to it backward, lag =
 *   length - up to it), a page each in turn, so the cost is about twice the
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
 * Returns {lag, how, entries-added, max-deleted-entry-id, last-delivered id}
 * and, for how 0 and 1, the entries read; how: 0 an estimate, 1 counted
 * exactly, 2 the kept figure plus appends, 3 no entry read otherwise (Redis's
 * own figure, 0 or the length); {-1} when the group does not exist. GetStats costs, per group of a
 * stream: one XINFO GROUPS, plus one such script where Redis has no lag, reading at most
 * LAG_COUNT_MAX entries and that only within the bounds above.
 */
static const char lag_script[] =
    "local function fields(a)\n"
    "  local f = {}\n"
    "  for i = 1, #a, 2 do f[a[i]] = a[i + 1] end\n"
    "  return f\n"
    "end\n"
    "local g\n"
    "for _, a in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do\n"
    "  local f = fields(a)\n"
    "  if f['name'] == ARGV[1] then g = f end\n"
    "end\n"
    "if not g then return {-1} end\n"
    "local last = g['last-delivered-id']\n"
    "local s = fields(redis.call('XINFO', 'STREAM', KEYS[1]))\n"
    "local len, added, dead = s['length'], s['entries-added'], s['max-deleted-entry-id']\n"
    "if type(g['lag']) == 'number' then return {g['lag'], 3, added, dead, last} end\n"
    "local function id(x)\n"
    "  local a, b = string.match(x, '^(%d+)-(%d+)$')\n"
    "  return tonumber(a), tonumber(b)\n"
    "end\n"
    "local function le(am, as, bm, bs) return am < bm or (am == bm and as <= bs) end\n"
    "local lm, ls = id(last)\n"
    "local nm, ns = id(s['last-generated-id'])\n"
    "if len == 0 or le(nm, ns, lm, ls) then return {0, 3, added, dead, last} end\n"
    "local fm, fs = id(s['first-entry'][1])\n"
    "if not le(fm, fs, lm, ls) then return {len, 3, added, dead, last} end\n"
    "local grew = added - tonumber(ARGV[4])\n"
    "if last == ARGV[3] and dead == ARGV[5] and grew >= 0 then\n"
    "  return {tonumber(ARGV[6]) + grew, 2, added, dead, last}\n"
    "end\n"
    "local cap, page = tonumber(ARGV[2]), 500\n"
    "local fwd, back, after, upto, lag = last, last, 0, 0, nil\n"
    "local back_from = last\n"
    "while after + upto < cap do\n"
    "  local p = redis.call('XRANGE', KEYS[1], '(' .. fwd, '+', 'COUNT', page)\n"
    "  after = after + #p\n"
    "  if #p < page then lag = after break end\n"
    "  fwd = p[#p][1]\n"
    "  local q = redis.call('XREVRANGE', KEYS[1], back_from, '-', 'COUNT', page)\n"
    "  upto = upto + #q\n"
    "  if #q < page then lag = len - upto break end\n"
    "  back = q[#q][1]\n"
    "  back_from = '(' .. back\n"
    "end\n"
    "if lag then\n"
    "  redis.call('XGROUP', 'SETID', KEYS[1], ARGV[1], last, 'ENTRIESREAD', added - lag)\n"
    "  return {lag, 1, added, dead, last, after + upto}\n"
    "end\n"
    "local function ms(id) return tonumber(string.match(id, '^(%d+)')) end\n"
    "local first, newest = ms(s['first-entry'][1]), ms(s['last-generated-id'])\n"
    "local a, b = newest - ms(fwd), ms(back) - first\n"
    "local unknown, est = len - after - upto, after\n"
    "if unknown > 0 and a + b > 0 then\n"
    "  est = after + math.floor(unknown * a / (a + b))\n"
    "end\n"
    "return {est, 0, added, dead, last, after + upto}\n";

/* Entries one lag count may read (see lag_script): about 7 ms of Redis. */
#define LAG_COUNT_MAX  "5000"
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
    char added[24], kept[24];
    long long how, read;
    redisReply *r;
    uint64_t lag = 0;

    snprintf(added, sizeof(added), "%lld", m->entries_added);
    snprintf(kept, sizeof(kept), "%" PRIu64, m->lag);
    r = tse_dl_cmd(d, 10,
                   (const char *[]){"EVAL", lag_script, "1", sub->streams[i], sub->def->name,
                                    count ? LAG_COUNT_MAX : "0", m->last_id, added, m->max_deleted,
                                    kept},
                   NULL);
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 5 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || r->element[0]->integer < 0 ||
        r->element[1]->type != REDIS_REPLY_INTEGER || r->element[2]->type != REDIS_REPLY_INTEGER ||
        r->element[3]->type != REDIS_REPLY_STRING || r->element[4]->type != REDIS_REPLY_STRING)
        goto out;
    lag = (uint64_t)r->element[0]->integer;
    how = r->element[1]->integer;
    read =
        r->elements == 6 && r->element[5]->type == REDIS_REPLY_INTEGER ? r->element[5]->integer : 0;
    d->lag_read += read;
    /* Keep counted figures and their updates; an uncounted estimate would
     * hide the point of the last count. */
    if (how == 2 || (how < 2 && count)) {
        snprintf(m->last_id, sizeof(m->last_id), "%s", r->element[4]->str);
        snprintf(m->max_deleted, sizeof(m->max_deleted), "%s", r->element[3]->str);
        m->entries_added = r->element[2]->integer;
        m->lag = lag;
        if (how != 2) {
            m->counted_ms = tse_clock_ms();
            m->read = read;
        }
    }
out:
    if (r)
        freeReplyObject(r);
    return lag;
}

void tse_dl_check_streams(tse_delivery *d)
{
    redisReply *r;
    bool changed;

    if (d->subs == NULL || d->ctx == NULL)
        return;
    r = tse_dl_cmd(d, 2, (const char *[]){"SCARD", TSE_STREAMS_KEY}, NULL);
    changed = r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer != d->streams_seen;
    if (r)
        freeReplyObject(r);
    if (changed)
        tse_dl_discover(d);
}

/* The entry-id time (ms) of the oldest pending entry of sub's group on key
 * (XPENDING's summary form), or -1 when none. */
static long long oldest_pending_ms(tse_delivery *d, const tse_sub *sub, const char *key)
{
    redisReply *r = tse_dl_cmd(d, 3, (const char *[]){"XPENDING", key, sub->def->name}, NULL);
    long long ms = -1;

    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 4 &&
        r->element[1]->type == REDIS_REPLY_STRING)
        ms = strtoll(r->element[1]->str, NULL, 10);
    if (r)
        freeReplyObject(r);
    return ms;
}

/* The consumers of sub's group on key, the placeholder owner of nacked
 * deliveries left out (XINFO CONSUMERS). */
static uint64_t group_consumers(tse_delivery *d, const tse_sub *sub, const char *key)
{
    redisReply *r =
        tse_dl_cmd(d, 4, (const char *[]){"XINFO", "CONSUMERS", key, sub->def->name}, NULL);
    uint64_t n = 0;

    for (size_t c = 0; r && r->type == REDIS_REPLY_ARRAY && c < r->elements; c++) {
        const redisReply *f = r->element[c];
        for (size_t i = 0; f->type == REDIS_REPLY_ARRAY && i + 1 < f->elements; i += 2) {
            const char *k = f->element[i]->str, *v = f->element[i + 1]->str;
            if (k != NULL && strcmp(k, "name") == 0)
                n += v == NULL || strcmp(v, TSE_DL_NACK_OWNER) != 0;
        }
    }
    if (r)
        freeReplyObject(r);
    return n;
}

/* Adds one stream's group figures (XINFO GROUPS) to the stats; *oldest_ms
 * becomes the oldest pending entry's time when this stream's is older. */
static void group_figures(tse_delivery *d, tse_sub *sub, size_t i_stream,
                          Tracseq__Events__V1__SubscriptionStats *st, long long *oldest_ms)
{
    const char *key = sub->streams[i_stream];
    redisReply *r = tse_dl_cmd(d, 3, (const char *[]){"XINFO", "GROUPS", key}, NULL);
    bool mine = false, lag_known = false;
    uint64_t pending = 0, lag = 0, consumers = 0;

    if (r == NULL || r->type != REDIS_REPLY_ARRAY)
        goto out;
    for (size_t g = 0; !mine && g < r->elements; g++) {
        redisReply *f = r->element[g];
        for (size_t i = 0; f->type == REDIS_REPLY_ARRAY && i + 1 < f->elements; i += 2) {
            const char *k = f->element[i]->str;
            redisReply *v = f->element[i + 1];
            if (k == NULL)
                continue;
            if (strcmp(k, "name") == 0 && v->str)
                mine = strcmp(v->str, sub->def->name) == 0;
            else if (strcmp(k, "pending") == 0 && v->type == REDIS_REPLY_INTEGER)
                pending = (uint64_t)v->integer;
            else if (strcmp(k, "consumers") == 0 && v->type == REDIS_REPLY_INTEGER)
                consumers = (uint64_t)v->integer;
            else if (strcmp(k, "lag") == 0 && v->type == REDIS_REPLY_INTEGER) {
                lag = (uint64_t)v->integer;
                lag_known = true;
            }
        }
        if (!mine)
            pending = lag = consumers = 0, lag_known = false;
    }
    if (mine) {
        st->pending += pending;
        st->lag += lag_known ? lag : counted_lag(d, sub, i_stream);
        /* Every consumer reads all the streams: the most of any is the
         * count. Only a group with consumers is asked for their names. */
        if (consumers > st->consumers)
            consumers = group_consumers(d, sub, key);
        if (consumers > st->consumers)
            st->consumers = (uint32_t)consumers;
    }
    if (mine && pending > 0) {
        long long ms = oldest_pending_ms(d, sub, key);
        if (ms >= 0 && (*oldest_ms < 0 || ms < *oldest_ms))
            *oldest_ms = ms;
    }
out:
    if (r)
        freeReplyObject(r);
}

/* Milliseconds from an entry-id time to Redis's clock now (TIME), so the
 * age does not depend on this host's clock agreeing with Redis's; 0 when
 * Redis does not say. */
static uint64_t age_ms(tse_delivery *d, long long entry_ms)
{
    redisReply *r = tse_dl_cmd(d, 1, (const char *[]){"TIME"}, NULL);
    long long now = -1;

    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_STRING && r->element[1]->type == REDIS_REPLY_STRING)
        now = strtoll(r->element[0]->str, NULL, 10) * 1000 +
              strtoll(r->element[1]->str, NULL, 10) / 1000;
    if (r)
        freeReplyObject(r);
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
    redisReply *r;
    long long oldest_ms = -1;

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
    for (size_t i = 0; d->ctx && i < sub->n_streams; i++)
        group_figures(d, sub, i, st, &oldest_ms);
    if (oldest_ms >= 0)
        st->oldest_unacked_age_ms = age_ms(d, oldest_ms);
    snprintf(dlq, sizeof(dlq), TSE_DLQ_PREFIX "%s", sub->def->name);
    r = tse_dl_cmd(d, 2, (const char *[]){"XLEN", dlq}, NULL);
    if (r && r->type == REDIS_REPLY_INTEGER)
        st->dead_lettered = (uint64_t)r->integer;
    if (r)
        freeReplyObject(r);
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
    int64_t now = tse_clock_ms(), every;

    if (d->opts.reap_idle_ms <= 0 || now < d->next_reap_ms)
        return;
    every = d->opts.reap_idle_ms < 60000 ? d->opts.reap_idle_ms : 60000;
    d->next_reap_ms = now + every;
    for (tse_sub *sub = d->subs; d->ctx && sub; sub = sub->next)
        for (size_t i = 0; d->ctx && i < sub->n_streams; i++)
            reap_stream(d, sub, sub->streams[i]);
}
