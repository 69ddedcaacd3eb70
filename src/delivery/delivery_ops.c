/*
 * delivery_ops.c - operations on a subscription's state, on the engine
 * thread: its dead letters (list, get, redrive, purge), seek, and its
 * snapshots (create, list, delete). See delivery.h (tse_delivery_operate)
 * and docs/architecture.md.
 *
 * Dead letters live in the stream TSE_DLQ_PREFIX<subscription>: one entry
 * per event given up on, the original entry's fields plus dlq_stream,
 * dlq_id, dlq_attempts and dlq_reason. A redrive hands the original entry
 * back to the group with XCLAIM ... RETRYCOUNT 0 FORCE, as if idle past
 * its deadline: the claim scan then delivers it to a live subscriber with
 * delivery_attempt 1, and the dead letter leaves the store.
 *
 * A seek settles the group on each stream of the subscription atomically
 * (one script per stream): every pending entry is acked, then XGROUP
 * SETID moves the group's last-delivered id. Entries after the new
 * position are read (and delivered) again, once; entries before it count
 * as acknowledged. Snapshots (hash TSE_SNAPSHOTS_PREFIX<subscription>) hold
 * per stream the acknowledged position: the group's last-delivered id, or
 * just before its oldest pending entry when it has one.
 *
 * Responses are built with the system allocator throughout, so each is
 * released by protobuf_c_message_free_unpacked after its callback.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "delivery/delivery_internal.h"
#include "domain/operate.h"
#include "obs/log.h"

typedef Tracseq__Events__V1__DeadLetter DeadLetter;
typedef Tracseq__Events__V1__Snapshot Snapshot;

#define NAME_KEY_MAX              (TSE_SUBSCRIPTION_NAME_MAX + 32)
/* Dead letters one `all` request handles (TSE_DEAD_LETTERS_ALL_MAX). */
#define TSE_DEAD_LETTERS_ALL_TEXT "10000"

static void unavailable(tse_error *err)
{
    tse_error_set(err, TSE_UNAVAILABLE, NULL, "Redis is unavailable");
}

static void dlq_key(char *out, size_t len, const tse_sub *sub)
{
    snprintf(out, len, TSE_DLQ_PREFIX "%s", sub->def->name);
}

static void snapshots_key(char *out, size_t len, const tse_sub *sub)
{
    snprintf(out, len, TSE_SNAPSHOTS_PREFIX "%s", sub->def->name);
}

/* A string field of a flat field/value array reply, or NULL. */
static const redisReply *field_of(const redisReply *f, const char *name)
{
    for (size_t i = 0; f->type == REDIS_REPLY_ARRAY && i + 1 < f->elements; i += 2)
        if (f->element[i]->type == REDIS_REPLY_STRING && strcmp(f->element[i]->str, name) == 0 &&
            f->element[i + 1]->type == REDIS_REPLY_STRING)
            return f->element[i + 1];
    return NULL;
}

/* ===================== dead letters ===================================== */

static char *dup_or_empty(const redisReply *r)
{
    return strdup(r ? r->str : "");
}

static Tracseq__Events__V1__DeadLetterReason reason_of(const redisReply *r)
{
    /* Entries written before reasons were recorded all ran out of attempts. */
    if (r == NULL || strcmp(r->str, TSE_DLQ_REASON_MAX_ATTEMPTS) == 0)
        return TRACSEQ__EVENTS__V1__DEAD_LETTER_REASON__DEAD_LETTER_REASON_MAX_DELIVERY_ATTEMPTS;
    if (strcmp(r->str, TSE_DLQ_REASON_REJECTED) == 0)
        return TRACSEQ__EVENTS__V1__DEAD_LETTER_REASON__DEAD_LETTER_REASON_REJECTED;
    return TRACSEQ__EVENTS__V1__DEAD_LETTER_REASON__DEAD_LETTER_REASON_UNSPECIFIED;
}

/* One XRANGE entry [id, [field, value, ...]] of the store as a DeadLetter;
 * NULL when out of memory or not an entry. */
static DeadLetter *dead_letter_of(const tse_sub *sub, const redisReply *e)
{
    DeadLetter *dl;
    const redisReply *f, *ev, *att;
    uint64_t ms = 0;

    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[0]->type != REDIS_REPLY_STRING)
        return NULL;
    f = e->element[1];
    if ((dl = malloc(sizeof(*dl))) == NULL)
        return NULL;
    tracseq__events__v1__dead_letter__init(dl);
    dl->id = strdup(e->element[0]->str);
    dl->subscription = strdup(sub->def->name);
    dl->stream = dup_or_empty(field_of(f, "dlq_stream"));
    dl->stream_id = dup_or_empty(field_of(f, "dlq_id"));
    att = field_of(f, "dlq_attempts");
    dl->attempts = att ? (uint32_t)strtoul(att->str, NULL, 10) : 0;
    dl->reason = reason_of(field_of(f, "dlq_reason"));
    if ((ev = field_of(f, "event")) != NULL) {
        dl->event = tracseq__events__v1__event__unpack(NULL, ev->len, (const uint8_t *)ev->str);
        /* Stored by the engine, so it decodes, unless memory ran out: the
         * dead letter is then shown without its event. */
        if (dl->event == NULL)
            tse_log(TSE_LOG_WARN, "dead letter: its event could not be decoded",
                    (const char *[]){"subscription", sub->def->name, NULL});
    }
    if (tse_entry_id_parse(e->element[0]->str, &ms, NULL) &&
        (dl->dead_lettered_at = malloc(sizeof(*dl->dead_lettered_at))) != NULL) {
        google__protobuf__timestamp__init(dl->dead_lettered_at);
        dl->dead_lettered_at->seconds = (int64_t)(ms / 1000);
        dl->dead_lettered_at->nanos = (int32_t)(ms % 1000) * 1000000;
    }
    if (dl->id == NULL || dl->subscription == NULL || dl->stream == NULL || dl->stream_id == NULL) {
        protobuf_c_message_free_unpacked(&dl->base, NULL);
        return NULL;
    }
    return dl;
}

static long long dlq_len(tse_delivery *d, const char *key)
{
    redisReply *r = tse_dl_cmd(d, 2, (const char *[]){"XLEN", key}, NULL);
    long long n = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;

    if (r)
        freeReplyObject(r);
    return n;
}

static ProtobufCMessage *list_dead_letters(tse_delivery *d, tse_sub *sub,
                                           const Tracseq__Events__V1__ListDeadLettersRequest *req,
                                           tse_error *err)
{
    Tracseq__Events__V1__ListDeadLettersResponse *out = malloc(sizeof(*out));
    uint32_t size = req->page_size ? req->page_size : TSE_DEAD_LETTER_PAGE_DEFAULT;
    char key[NAME_KEY_MAX], start[TSE_ENTRY_ID_MAX + 2], count[16];
    redisReply *r;
    long long total;

    if (out == NULL)
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory"), NULL;
    tracseq__events__v1__list_dead_letters_response__init(out);
    dlq_key(key, sizeof(key), sub);
    snprintf(start, sizeof(start), "%s%s", req->page_token[0] ? "(" : "-", req->page_token);
    snprintf(count, sizeof(count), "%u", size + 1);
    total = dlq_len(d, key);
    r = total < 0
            ? NULL
            : tse_dl_cmd(d, 6, (const char *[]){"XRANGE", key, start, "+", "COUNT", count}, NULL);
    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        if (r)
            freeReplyObject(r);
        free(out);
        return unavailable(err), NULL;
    }
    out->total = (uint64_t)total;
    out->dead_letters = calloc(r->elements ? r->elements : 1, sizeof(*out->dead_letters));
    for (size_t i = 0; out->dead_letters && i < r->elements && i < size; i++) {
        DeadLetter *dl = dead_letter_of(sub, r->element[i]);
        if (dl != NULL)
            out->dead_letters[out->n_dead_letters++] = dl;
    }
    if (r->elements > size && out->n_dead_letters > 0)
        out->next_page_token = strdup(out->dead_letters[out->n_dead_letters - 1]->id);
    if (out->next_page_token == NULL)
        out->next_page_token = (char *)protobuf_c_empty_string;
    freeReplyObject(r);
    return &out->base;
}

/* The store's entry id, or NULL with err NOT_FOUND / UNAVAILABLE; caller
 * frees the reply (an XRANGE of one entry). */
static redisReply *dlq_entry(tse_delivery *d, const char *key, const char *id, const char *field,
                             tse_error *err)
{
    redisReply *r = tse_dl_cmd(d, 4, (const char *[]){"XRANGE", key, id, id}, NULL);

    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        if (r)
            freeReplyObject(r);
        return unavailable(err), NULL;
    }
    if (r->elements != 1) {
        freeReplyObject(r);
        tse_error_set(err, TSE_NOT_FOUND, field, "no dead letter %s", id);
        return NULL;
    }
    return r;
}

static ProtobufCMessage *get_dead_letter(tse_delivery *d, tse_sub *sub,
                                         const Tracseq__Events__V1__GetDeadLetterRequest *req,
                                         tse_error *err)
{
    char key[NAME_KEY_MAX];
    redisReply *r;
    DeadLetter *dl;

    dlq_key(key, sizeof(key), sub);
    if ((r = dlq_entry(d, key, req->id, "id", err)) == NULL)
        return NULL;
    dl = dead_letter_of(sub, r->element[0]);
    freeReplyObject(r);
    if (dl == NULL)
        tse_error_set(err, TSE_NOMEM, NULL, "out of memory");
    return dl ? &dl->base : NULL;
}

/* The ids of a redrive or purge: the request's, or (all) every entry of
 * the store, read in pages. Returns an XRANGE reply owning the strings
 * when all; ids point into it or into the request. */
typedef struct id_set {
    const char **ids;
    size_t n;
    redisReply *all;
} id_set;

static bool id_set_of(tse_delivery *d, const char *key, char *const *ids, size_t n, bool all,
                      id_set *out, tse_error *err)
{
    memset(out, 0, sizeof(*out));
    if (all) {
        /* Bounded, so a huge store cannot blow up one reply: the oldest
         * TSE_DEAD_LETTERS_ALL_MAX; the caller calls again for more. */
        out->all = tse_dl_cmd(
            d, 6, (const char *[]){"XRANGE", key, "-", "+", "COUNT", TSE_DEAD_LETTERS_ALL_TEXT},
            NULL);
        if (out->all == NULL || out->all->type != REDIS_REPLY_ARRAY) {
            if (out->all)
                freeReplyObject(out->all);
            out->all = NULL;
            return unavailable(err), false;
        }
        n = out->all->elements;
    }
    out->ids = calloc(n ? n : 1, sizeof(*out->ids));
    if (out->ids == NULL) {
        if (out->all)
            freeReplyObject(out->all);
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory"), false;
    }
    for (size_t i = 0; i < n; i++)
        out->ids[i] = all ? out->all->element[i]->element[0]->str : ids[i];
    out->n = n;
    return true;
}

static void id_set_free(id_set *s)
{
    free(s->ids);
    if (s->all)
        freeReplyObject(s->all);
}

/* Appends a copy of id to a response's repeated string field. */
static void add_id(char ***ids, size_t *n, const char *id)
{
    char *copy = strdup(id);
    char **grown = copy ? realloc(*ids, (*n + 1) * sizeof(**ids)) : NULL;

    if (grown == NULL) {
        free(copy);
        return;
    }
    *ids = grown;
    (*ids)[(*n)++] = copy;
}

/* Hands the original entry of one dead letter back to the group: 1 done,
 * 0 gone from its stream (trimmed), -1 Redis failed. */
static int redrive_one(tse_delivery *d, tse_sub *sub, const char *consumer, const redisReply *f)
{
    const redisReply *stream = field_of(f, "dlq_stream"), *id = field_of(f, "dlq_id");
    char idle[16], key[TSE_ACK_ID_MAX];
    redisReply *r;
    int done;

    if (stream == NULL || id == NULL)
        return 0;
    /* A dead letter of before 1.0 names its stream by the old layout. */
    tse_key_stream_current(stream->str, key, sizeof(key));
    /* Idle as long as the deadline: the next claim scan takes it, and
     * RETRYCOUNT 0 makes its next delivery attempt 1. */
    snprintf(idle, sizeof(idle), "%u", sub->def->ack_deadline_ms);
    r = tse_dl_cmd(d, 12,
                   (const char *[]){"XCLAIM", key, sub->def->name, consumer, "0", id->str, "IDLE",
                                    idle, "RETRYCOUNT", "0", "FORCE", "JUSTID"},
                   NULL);
    if (r == NULL)
        return -1;
    done = r->type == REDIS_REPLY_ARRAY && r->elements == 1;
    freeReplyObject(r);
    return done;
}

static ProtobufCMessage *redrive(tse_delivery *d, tse_sub *sub,
                                 const Tracseq__Events__V1__RedriveDeadLettersRequest *req,
                                 tse_error *err)
{
    Tracseq__Events__V1__RedriveDeadLettersResponse *out = malloc(sizeof(*out));
    char key[NAME_KEY_MAX], consumer[sizeof(d->instance) + 16];
    id_set set;

    if (out == NULL)
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory"), NULL;
    tracseq__events__v1__redrive_dead_letters_response__init(out);
    dlq_key(key, sizeof(key), sub);
    snprintf(consumer, sizeof(consumer), "%s-redrive", d->instance);
    if (!id_set_of(d, key, req->ids, req->n_ids, req->all, &set, err)) {
        free(out);
        return NULL;
    }
    for (size_t i = 0; i < set.n && d->ctx; i++) {
        tse_error miss;
        redisReply *e = dlq_entry(d, key, set.ids[i], "ids", &miss);
        int done;
        if (e == NULL) {
            if (miss.code == TSE_NOT_FOUND)
                add_id(&out->unknown_ids, &out->n_unknown_ids, set.ids[i]);
            continue;
        }
        done = redrive_one(d, sub, consumer, e->element[0]->element[1]);
        freeReplyObject(e);
        if (done == 0)
            add_id(&out->expired_ids, &out->n_expired_ids, set.ids[i]);
        if (done != 1)
            continue;
        redisReply *x = tse_dl_cmd(d, 3, (const char *[]){"XDEL", key, set.ids[i]}, NULL);
        if (x)
            freeReplyObject(x);
        out->redriven++;
    }
    id_set_free(&set);
    if (d->ctx == NULL) {
        protobuf_c_message_free_unpacked(&out->base, NULL);
        return unavailable(err), NULL;
    }
    tse_stats_add(d->stats, TSE_STAT_REDRIVEN, out->redriven);
    tse_log(TSE_LOG_INFO, "dead letters redriven",
            (const char *[]){"subscription", sub->def->name, NULL});
    /* Deliver them now rather than at the next scan. */
    if (out->redriven > 0)
        tse_dl_claim_scan(d, sub, NULL);
    return &out->base;
}

static ProtobufCMessage *purge(tse_delivery *d, tse_sub *sub,
                               const Tracseq__Events__V1__PurgeDeadLettersRequest *req,
                               tse_error *err)
{
    Tracseq__Events__V1__PurgeDeadLettersResponse *out = malloc(sizeof(*out));
    char key[NAME_KEY_MAX];
    id_set set;

    if (out == NULL)
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory"), NULL;
    tracseq__events__v1__purge_dead_letters_response__init(out);
    dlq_key(key, sizeof(key), sub);
    if (!id_set_of(d, key, req->ids, req->n_ids, req->all, &set, err)) {
        free(out);
        return NULL;
    }
    /* One XDEL per id: a result per id. */
    for (size_t i = 0; i < set.n && d->ctx; i++) {
        redisReply *x = tse_dl_cmd(d, 3, (const char *[]){"XDEL", key, set.ids[i]}, NULL);
        if (x && x->type == REDIS_REPLY_INTEGER && x->integer == 1)
            out->purged++;
        else if (x)
            add_id(&out->unknown_ids, &out->n_unknown_ids, set.ids[i]);
        if (x)
            freeReplyObject(x);
    }
    id_set_free(&set);
    if (d->ctx == NULL) {
        protobuf_c_message_free_unpacked(&out->base, NULL);
        return unavailable(err), NULL;
    }
    tse_stats_add(d->stats, TSE_STAT_PURGED, out->purged);
    return &out->base;
}

/* ===================== positions ======================================== */

/* The id just before entry id `id` ("0-0" stays "0-0"). */
static void id_before(const char *id, char *out, size_t len)
{
    uint64_t ms = 0, seq = 0;

    if (!tse_entry_id_parse(id, &ms, &seq) || (ms == 0 && seq == 0))
        snprintf(out, len, "0-0");
    else if (seq > 0)
        snprintf(out, len, "%" PRIu64 "-%" PRIu64, ms, seq - 1);
    else
        snprintf(out, len, "%" PRIu64 "-%" PRIu64, ms - 1, UINT64_MAX);
}

/* The group's acknowledged position on one stream: its last-delivered id,
 * or just before its oldest pending entry. {last, oldest pending or ""}. */
static const char acked_position_script[] =
    "local last = nil\n"
    "for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do\n"
    "  local t = {}\n"
    "  for i = 1, #g, 2 do t[g[i]] = g[i + 1] end\n"
    "  if t['name'] == ARGV[1] then last = t['last-delivered-id'] end\n"
    "end\n"
    "if not last then return false end\n"
    "local p = redis.call('XPENDING', KEYS[1], ARGV[1])\n"
    "return {last, p[2] or ''}\n";

/* Position of sub's group on stream key into out; false when Redis failed
 * or the group is not there ("0-0" then). */
static bool acked_position(tse_delivery *d, tse_sub *sub, const char *key, char *out, size_t len)
{
    redisReply *r = tse_dl_cmd(
        d, 5, (const char *[]){"EVAL", acked_position_script, "1", key, sub->def->name}, NULL);
    bool ok = r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
              r->element[0]->type == REDIS_REPLY_STRING &&
              r->element[1]->type == REDIS_REPLY_STRING;

    snprintf(out, len, "0-0");
    if (ok && r->element[1]->str[0] != '\0')
        id_before(r->element[1]->str, out, len);
    else if (ok)
        snprintf(out, len, "%s", r->element[0]->str);
    if (r)
        freeReplyObject(r);
    return ok;
}

/* ===================== snapshots ======================================== */

static Snapshot *snapshot_unpack(const redisReply *v)
{
    return v && v->type == REDIS_REPLY_STRING
               ? tracseq__events__v1__snapshot__unpack(NULL, v->len, (const uint8_t *)v->str)
               : NULL;
}

static Snapshot *snapshot_new(tse_delivery *d, tse_sub *sub, const char *name)
{
    Snapshot *snap = malloc(sizeof(*snap));
    struct timespec now;

    if (snap == NULL)
        return NULL;
    tracseq__events__v1__snapshot__init(snap);
    snap->name = strdup(name);
    snap->subscription = strdup(sub->def->name);
    snap->positions = calloc(sub->n_streams ? sub->n_streams : 1, sizeof(*snap->positions));
    snap->created_at = malloc(sizeof(*snap->created_at));
    if (snap->name == NULL || snap->subscription == NULL || snap->positions == NULL ||
        snap->created_at == NULL) {
        protobuf_c_message_free_unpacked(&snap->base, NULL);
        return NULL;
    }
    google__protobuf__timestamp__init(snap->created_at);
    clock_gettime(CLOCK_REALTIME, &now);
    snap->created_at->seconds = now.tv_sec;
    snap->created_at->nanos = (int32_t)now.tv_nsec;
    for (size_t i = 0; i < sub->n_streams && d->ctx; i++) {
        char pos[TSE_ENTRY_ID_MAX + 1];
        Tracseq__Events__V1__Snapshot__PositionsEntry *e = malloc(sizeof(*e));
        if (e == NULL || !acked_position(d, sub, sub->streams[i], pos, sizeof(pos))) {
            free(e);
            continue;
        }
        tracseq__events__v1__snapshot__positions_entry__init(e);
        e->key = strdup(sub->streams[i]);
        e->value = strdup(pos);
        snap->positions[snap->n_positions++] = e;
        if (e->key == NULL || e->value == NULL)
            break;
    }
    return snap;
}

static ProtobufCMessage *create_snapshot(tse_delivery *d, tse_sub *sub,
                                         const Tracseq__Events__V1__CreateSnapshotRequest *req,
                                         tse_error *err)
{
    char key[NAME_KEY_MAX];
    redisReply *r;
    Snapshot *snap;
    uint8_t *packed;
    size_t len;

    snapshots_key(key, sizeof(key), sub);
    r = tse_dl_cmd(d, 3, (const char *[]){"HEXISTS", key, req->name}, NULL);
    if (r == NULL || r->type != REDIS_REPLY_INTEGER) {
        if (r)
            freeReplyObject(r);
        return unavailable(err), NULL;
    }
    if (r->integer == 1) {
        freeReplyObject(r);
        tse_error_set(err, TSE_ALREADY_EXISTS, "name", "snapshot '%s' of '%s' exists", req->name,
                      sub->def->name);
        return NULL;
    }
    freeReplyObject(r);
    r = tse_dl_cmd(d, 2, (const char *[]){"HLEN", key}, NULL);
    if (r && r->type == REDIS_REPLY_INTEGER && r->integer >= TSE_SNAPSHOTS_MAX) {
        freeReplyObject(r);
        tse_error_set(err, TSE_RESOURCE_EXHAUSTED, "name",
                      "'%s' has %d snapshots, the most it may hold; delete one first",
                      sub->def->name, TSE_SNAPSHOTS_MAX);
        return NULL;
    }
    if (r)
        freeReplyObject(r);
    if ((snap = snapshot_new(d, sub, req->name)) == NULL)
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory"), NULL;
    len = protobuf_c_message_get_packed_size(&snap->base);
    if ((packed = malloc(len ? len : 1)) == NULL) {
        protobuf_c_message_free_unpacked(&snap->base, NULL);
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory"), NULL;
    }
    protobuf_c_message_pack(&snap->base, packed);
    r = d->ctx ? tse_dl_cmd(d, 4, (const char *[]){"HSET", key, req->name, (const char *)packed},
                            (const size_t[]){4, strlen(key), strlen(req->name), len})
               : NULL;
    free(packed);
    if (r == NULL) {
        protobuf_c_message_free_unpacked(&snap->base, NULL);
        return unavailable(err), NULL;
    }
    freeReplyObject(r);
    return &snap->base;
}

static int by_name(const void *a, const void *b)
{
    return strcmp((*(Snapshot *const *)a)->name, (*(Snapshot *const *)b)->name);
}

static ProtobufCMessage *list_snapshots(tse_delivery *d, tse_sub *sub, tse_error *err)
{
    Tracseq__Events__V1__ListSnapshotsResponse *out = malloc(sizeof(*out));
    char key[NAME_KEY_MAX];
    redisReply *r;

    if (out == NULL)
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory"), NULL;
    tracseq__events__v1__list_snapshots_response__init(out);
    snapshots_key(key, sizeof(key), sub);
    r = tse_dl_cmd(d, 2, (const char *[]){"HVALS", key}, NULL);
    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        if (r)
            freeReplyObject(r);
        free(out);
        return unavailable(err), NULL;
    }
    out->snapshots = calloc(r->elements ? r->elements : 1, sizeof(*out->snapshots));
    for (size_t i = 0; out->snapshots && i < r->elements; i++) {
        Snapshot *s = snapshot_unpack(r->element[i]);
        if (s != NULL)
            out->snapshots[out->n_snapshots++] = s;
    }
    freeReplyObject(r);
    if (out->n_snapshots > 1)
        qsort(out->snapshots, out->n_snapshots, sizeof(*out->snapshots), by_name);
    return &out->base;
}

static ProtobufCMessage *delete_snapshot(tse_delivery *d, tse_sub *sub,
                                         const Tracseq__Events__V1__DeleteSnapshotRequest *req,
                                         tse_error *err)
{
    Tracseq__Events__V1__DeleteSnapshotResponse *out = malloc(sizeof(*out));
    char key[NAME_KEY_MAX];
    redisReply *r;

    if (out == NULL)
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory"), NULL;
    tracseq__events__v1__delete_snapshot_response__init(out);
    snapshots_key(key, sizeof(key), sub);
    r = tse_dl_cmd(d, 3, (const char *[]){"HDEL", key, req->name}, NULL);
    if (r == NULL || r->type != REDIS_REPLY_INTEGER || r->integer != 1) {
        bool missing = r && r->type == REDIS_REPLY_INTEGER;
        if (r)
            freeReplyObject(r);
        free(out);
        if (missing)
            tse_error_set(err, TSE_NOT_FOUND, "name", "no snapshot '%s' of '%s'", req->name,
                          sub->def->name);
        else
            unavailable(err);
        return NULL;
    }
    freeReplyObject(r);
    return &out->base;
}

/* ===================== seek ============================================= */

/* Acks every pending entry of the group, then moves it: atomic per stream.
 * Returns how many pending entries it acked. */
static const char seek_script[] =
    "local n = 0\n"
    "while true do\n"
    "  local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1000)\n"
    "  if #p == 0 then break end\n"
    "  local ids = {}\n"
    "  for i, e in ipairs(p) do ids[i] = e[1] end\n"
    "  n = n + redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))\n"
    "end\n"
    "redis.call('XGROUP', 'SETID', KEYS[1], ARGV[1], ARGV[2])\n"
    "return n\n";

/* The seek target on one stream: into out. */
static void seek_target(const Tracseq__Events__V1__SeekRequest *req, const Snapshot *snap,
                        const char *key, char *out, size_t len)
{
    int64_t ms;

    if (snap != NULL) {
        /* A stream the snapshot does not know came after it: all of it. */
        snprintf(out, len, "0-0");
        for (size_t i = 0; i < snap->n_positions; i++)
            if (strcmp(snap->positions[i]->key, key) == 0 &&
                tse_entry_id_parse(snap->positions[i]->value, NULL, NULL))
                snprintf(out, len, "%s", snap->positions[i]->value);
        return;
    }
    switch (req->position) {
    case TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_EARLIEST:
        snprintf(out, len, "0-0");
        break;
    case TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_TIMESTAMP:
        ms = req->time->seconds * 1000 + req->time->nanos / 1000000;
        if (ms <= 0) /* just before the first entry of that millisecond */
            snprintf(out, len, "0-0");
        else
            snprintf(out, len, "%" PRId64 "-%" PRIu64, ms - 1, UINT64_MAX);
        break;
    default: snprintf(out, len, "$");
    }
}

static Snapshot *load_snapshot(tse_delivery *d, tse_sub *sub, const char *name, tse_error *err)
{
    char key[NAME_KEY_MAX];
    redisReply *r;
    Snapshot *snap;

    snapshots_key(key, sizeof(key), sub);
    r = tse_dl_cmd(d, 3, (const char *[]){"HGET", key, name}, NULL);
    if (r == NULL)
        return unavailable(err), NULL;
    snap = snapshot_unpack(r);
    freeReplyObject(r);
    if (snap == NULL)
        tse_error_set(err, TSE_NOT_FOUND, "snapshot", "no snapshot '%s' of '%s'", name,
                      sub->def->name);
    return snap;
}

/* What the engine holds for sub that the seek made stale: entries read
 * but not handed out, deadline extensions, lag figures. Live subscribers
 * read again at once. */
static void after_seek(tse_sub *sub)
{
    tse_ext *e = sub->ext;

    sub->ext = NULL;
    while (e) {
        tse_ext *next = e->next;
        tse_dl_ext_free(e);
        e = next;
    }
    for (size_t i = 0; sub->lag && i < sub->n_streams; i++)
        memset(&sub->lag[i], 0, sizeof(sub->lag[i]));
    for (tse_subscriber *s = sub->subscribers; s; s = s->next) {
        while (s->ready) {
            tse_ready *r = s->ready;
            s->ready = r->next;
            tse_dl_ready_free(r);
        }
        s->ready_tail = NULL;
        s->hungry = true;
    }
    sub->drained = false;
    sub->next_claim_ms = 0;
}

static ProtobufCMessage *seek(tse_delivery *d, tse_sub *sub,
                              const Tracseq__Events__V1__SeekRequest *req, tse_error *err)
{
    Tracseq__Events__V1__SeekResponse *out = malloc(sizeof(*out));
    Snapshot *snap = NULL;

    if (out == NULL)
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory"), NULL;
    tracseq__events__v1__seek_response__init(out);
    if (req->snapshot[0] != '\0' && (snap = load_snapshot(d, sub, req->snapshot, err)) == NULL) {
        free(out);
        return NULL;
    }
    for (size_t i = 0; i < sub->n_streams && d->ctx; i++) {
        char target[TSE_ENTRY_ID_MAX + 1];
        redisReply *r;
        seek_target(req, snap, sub->streams[i], target, sizeof(target));
        r = tse_dl_cmd(
            d, 6,
            (const char *[]){"EVAL", seek_script, "1", sub->streams[i], sub->def->name, target},
            NULL);
        if (r && r->type == REDIS_REPLY_INTEGER) {
            out->pending_cleared += (uint64_t)r->integer;
            out->streams++;
        } else if (r) {
            tse_log(TSE_LOG_WARN, "seek: a stream was not moved",
                    (const char *[]){"subscription", sub->def->name, "stream", sub->streams[i],
                                     "error", r->type == REDIS_REPLY_ERROR ? r->str : "", NULL});
        }
        if (r)
            freeReplyObject(r);
    }
    if (snap)
        protobuf_c_message_free_unpacked(&snap->base, NULL);
    if (d->ctx == NULL) {
        free(out);
        return unavailable(err), NULL;
    }
    after_seek(sub);
    return &out->base;
}

/* ===================== dispatch ========================================= */

void tse_dl_operate(tse_delivery *d, const ProtobufCMessage *req, tse_operate_cb cb, void *arg)
{
    const ProtobufCMessageDescriptor *desc = req->descriptor;
    ProtobufCMessage *out = NULL;
    tse_error err;
    tse_sub *sub;

    tse_error_clear(&err);
    tse_dl_check_streams(d);
    sub = tse_dl_load(d, tse_operate_subscription(req), &err);
    if (sub == NULL) {
        cb(arg, &err, NULL);
        return;
    }
    if (desc == &tracseq__events__v1__list_dead_letters_request__descriptor)
        out = list_dead_letters(d, sub, (const void *)req, &err);
    else if (desc == &tracseq__events__v1__get_dead_letter_request__descriptor)
        out = get_dead_letter(d, sub, (const void *)req, &err);
    else if (desc == &tracseq__events__v1__redrive_dead_letters_request__descriptor)
        out = redrive(d, sub, (const void *)req, &err);
    else if (desc == &tracseq__events__v1__purge_dead_letters_request__descriptor)
        out = purge(d, sub, (const void *)req, &err);
    else if (desc == &tracseq__events__v1__seek_request__descriptor)
        out = seek(d, sub, (const void *)req, &err);
    else if (desc == &tracseq__events__v1__create_snapshot_request__descriptor)
        out = create_snapshot(d, sub, (const void *)req, &err);
    else if (desc == &tracseq__events__v1__list_snapshots_request__descriptor)
        out = list_snapshots(d, sub, &err);
    else if (desc == &tracseq__events__v1__delete_snapshot_request__descriptor)
        out = delete_snapshot(d, sub, (const void *)req, &err);
    else
        tse_error_set(&err, TSE_INVALID, "request", "not an operation request");
    if (out == NULL && err.code == TSE_OK)
        tse_error_set(&err, TSE_INTERNAL, NULL, "no answer");
    cb(arg, out ? NULL : &err, out);
    if (out)
        protobuf_c_message_free_unpacked(out, NULL);
}
