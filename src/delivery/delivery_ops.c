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

static void unavailable(tse_error *err)
{
    tse_error_set(err, TSE_UNAVAILABLE, NULL, "Redis is unavailable");
}

/* ===================== dead letters ===================================== */

static char *dup_or_empty(const char *s)
{
    return strdup(s ? s : "");
}

static Tracseq__Events__V1__DeadLetterReason reason_of(const char *r)
{
    /* Entries written before reasons were recorded all ran out of attempts. */
    if (r == NULL || strcmp(r, TSE_DLQ_REASON_MAX_ATTEMPTS) == 0)
        return TRACSEQ__EVENTS__V1__DEAD_LETTER_REASON__DEAD_LETTER_REASON_MAX_DELIVERY_ATTEMPTS;
    if (strcmp(r, TSE_DLQ_REASON_REJECTED) == 0)
        return TRACSEQ__EVENTS__V1__DEAD_LETTER_REASON__DEAD_LETTER_REASON_REJECTED;
    return TRACSEQ__EVENTS__V1__DEAD_LETTER_REASON__DEAD_LETTER_REASON_UNSPECIFIED;
}

/* One entry of the store as a DeadLetter; NULL when out of memory. */
static DeadLetter *dead_letter_of(const tse_sub *sub, const tse_stream_entry *e)
{
    DeadLetter *dl;
    const char *ev, *att;
    size_t ev_len = 0;
    uint64_t ms = 0;

    if ((dl = malloc(sizeof(*dl))) == NULL)
        return NULL;
    tracseq__events__v1__dead_letter__init(dl);
    dl->id = strdup(e->id);
    dl->subscription = strdup(sub->def->name);
    dl->stream = dup_or_empty(tse_stream_entry_field(e, "dlq_stream", NULL));
    dl->stream_id = dup_or_empty(tse_stream_entry_field(e, "dlq_id", NULL));
    att = tse_stream_entry_field(e, "dlq_attempts", NULL);
    dl->attempts = att ? (uint32_t)strtoul(att, NULL, 10) : 0;
    dl->reason = reason_of(tse_stream_entry_field(e, "dlq_reason", NULL));
    if ((ev = tse_stream_entry_field(e, "event", &ev_len)) != NULL) {
        dl->event = tracseq__events__v1__event__unpack(NULL, ev_len, (const uint8_t *)ev);
        /* Stored by the engine, so it decodes, unless memory ran out: the
         * dead letter is then shown without its event. */
        if (dl->event == NULL)
            tse_log(TSE_LOG_WARN, "dead letter: its event could not be decoded",
                    (const char *[]){"subscription", sub->def->name, NULL});
    }
    if (tse_entry_id_parse(e->id, &ms, NULL) &&
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

static ProtobufCMessage *list_dead_letters(tse_delivery *d, tse_sub *sub,
                                           const Tracseq__Events__V1__ListDeadLettersRequest *req,
                                           tse_error *err)
{
    Tracseq__Events__V1__ListDeadLettersResponse *out = malloc(sizeof(*out));
    uint32_t size = req->page_size ? req->page_size : TSE_DEAD_LETTER_PAGE_DEFAULT;
    char start[TSE_ENTRY_ID_MAX + 2];
    tse_stream_entries r = {0};
    long long total = 0;

    if (out == NULL)
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory"), NULL;
    tracseq__events__v1__list_dead_letters_response__init(out);
    snprintf(start, sizeof(start), "%s%s", req->page_token[0] ? "(" : "-", req->page_token);
    if (tse_dlq_length(d->conn, sub->def->name, &total) != TSE_OK ||
        tse_dlq_range(d->conn, sub->def->name, start, size + 1, &r) != TSE_OK) {
        tse_stream_entries_cleanup(&r);
        free(out);
        return unavailable(err), NULL;
    }
    out->total = (uint64_t)total;
    out->dead_letters = calloc(r.n ? r.n : 1, sizeof(*out->dead_letters));
    for (size_t i = 0; out->dead_letters && i < r.n && i < size; i++) {
        DeadLetter *dl = dead_letter_of(sub, &r.v[i]);
        if (dl != NULL)
            out->dead_letters[out->n_dead_letters++] = dl;
    }
    if (r.n > size && out->n_dead_letters > 0)
        out->next_page_token = strdup(out->dead_letters[out->n_dead_letters - 1]->id);
    if (out->next_page_token == NULL)
        out->next_page_token = (char *)protobuf_c_empty_string;
    tse_stream_entries_cleanup(&r);
    return &out->base;
}

/* Dead letter id into e; false with err NOT_FOUND / UNAVAILABLE. */
static bool dlq_entry(tse_delivery *d, tse_sub *sub, const char *id, const char *field,
                      tse_stream_entry *e, tse_error *err)
{
    tse_status st = tse_dlq_get(d->conn, sub->def->name, id, e);

    if (st == TSE_NOT_FOUND)
        tse_error_set(err, TSE_NOT_FOUND, field, "no dead letter %s", id);
    else if (st != TSE_OK)
        unavailable(err);
    return st == TSE_OK;
}

static ProtobufCMessage *get_dead_letter(tse_delivery *d, tse_sub *sub,
                                         const Tracseq__Events__V1__GetDeadLetterRequest *req,
                                         tse_error *err)
{
    tse_stream_entry e;
    DeadLetter *dl;

    if (!dlq_entry(d, sub, req->id, "id", &e, err))
        return NULL;
    dl = dead_letter_of(sub, &e);
    tse_stream_entry_cleanup(&e);
    if (dl == NULL)
        tse_error_set(err, TSE_NOMEM, NULL, "out of memory");
    return dl ? &dl->base : NULL;
}

/* The ids of a redrive or purge: the request's, or (all) every entry of
 * the store, read in pages. ids point into the request or into all. */
typedef struct id_set {
    const char **ids;
    size_t n;
    tse_stream_entries all;
} id_set;

static bool id_set_of(tse_delivery *d, tse_sub *sub, char *const *ids, size_t n, bool all,
                      id_set *out, tse_error *err)
{
    memset(out, 0, sizeof(*out));
    if (all) {
        /* Bounded, so a huge store cannot blow up one reply: the oldest
         * TSE_DEAD_LETTERS_ALL_MAX; the caller calls again for more. */
        if (tse_dlq_range(d->conn, sub->def->name, "-", TSE_DEAD_LETTERS_ALL_MAX, &out->all) !=
            TSE_OK) {
            tse_stream_entries_cleanup(&out->all);
            return unavailable(err), false;
        }
        n = out->all.n;
    }
    out->ids = calloc(n ? n : 1, sizeof(*out->ids));
    if (out->ids == NULL) {
        tse_stream_entries_cleanup(&out->all);
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory"), false;
    }
    for (size_t i = 0; i < n; i++)
        out->ids[i] = all ? out->all.v[i].id : ids[i];
    out->n = n;
    return true;
}

static void id_set_free(id_set *s)
{
    free(s->ids);
    tse_stream_entries_cleanup(&s->all);
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

/* The dead-letter store's key into un: its slot did not answer. */
static void unreached_dlq(tse_dl_unreached *un, const tse_sub *sub)
{
    char key[TSE_ACK_ID_MAX];

    tse_key_dlq(sub->def->name, key, sizeof(key));
    tse_dl_unreached_add(un, key);
}

/* The stream key of a dead letter's original entry, into key. */
static const char *original_key(const tse_stream_entry *e, char *key, size_t len)
{
    const char *stream = tse_stream_entry_field(e, "dlq_stream", NULL);

    tse_key_stream_current(stream ? stream : "", key, len);
    return key;
}

/* Hands the original entry of one dead letter back to the group: 1 done,
 * 0 gone from its stream (trimmed), -1 Redis failed. */
static int redrive_one(tse_delivery *d, tse_sub *sub, const char *consumer,
                       const tse_stream_entry *e)
{
    const char *stream = tse_stream_entry_field(e, "dlq_stream", NULL);
    const char *id = tse_stream_entry_field(e, "dlq_id", NULL);
    char key[TSE_ACK_ID_MAX];
    bool claimed = false;

    if (stream == NULL || id == NULL)
        return 0;
    /* A dead letter of before 1.0 names its stream by the old layout. */
    tse_key_stream_current(stream, key, sizeof(key));
    /* Idle as long as the deadline: the next claim scan takes it, and
     * RETRYCOUNT 0 makes its next delivery attempt 1. */
    if (tse_group_redrive(d->conn, key, sub->def->name, consumer, id, sub->def->ack_deadline_ms,
                          &claimed) == TSE_UNAVAILABLE)
        return -1;
    return claimed;
}

static ProtobufCMessage *redrive(tse_delivery *d, tse_sub *sub,
                                 const Tracseq__Events__V1__RedriveDeadLettersRequest *req,
                                 tse_error *err)
{
    Tracseq__Events__V1__RedriveDeadLettersResponse *out = malloc(sizeof(*out));
    char consumer[sizeof(d->instance) + 16];
    tse_dl_unreached un = {0};
    size_t total;
    id_set set;

    if (out == NULL)
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory"), NULL;
    tracseq__events__v1__redrive_dead_letters_response__init(out);
    snprintf(consumer, sizeof(consumer), "%s-redrive", d->instance);
    if (!id_set_of(d, sub, req->ids, req->n_ids, req->all, &set, err)) {
        free(out);
        return NULL;
    }
    for (size_t i = 0; i < set.n && d->conn; i++) {
        tse_error miss;
        tse_stream_entry e;
        char key[TSE_ACK_ID_MAX];
        bool deleted;
        int done;
        if (!dlq_entry(d, sub, set.ids[i], "ids", &e, &miss)) {
            if (miss.code == TSE_NOT_FOUND)
                add_id(&out->unknown_ids, &out->n_unknown_ids, set.ids[i]);
            else /* the store's slot did not answer: not unknown */
                unreached_dlq(&un, sub);
            continue;
        }
        done = redrive_one(d, sub, consumer, &e);
        /* The original stream's slot did not answer: the dead letter stays
         * (a retry redrives it: the claim is idempotent). */
        if (done < 0)
            tse_dl_unreached_add(&un, original_key(&e, key, sizeof(key)));
        tse_stream_entry_cleanup(&e);
        if (done == 0)
            add_id(&out->expired_ids, &out->n_expired_ids, set.ids[i]);
        if (done != 1)
            continue;
        /* Not deleted (no answer): it stays, a retry claims it again. */
        if (tse_dlq_delete(d->conn, sub->def->name, set.ids[i], &deleted) == TSE_UNAVAILABLE)
            unreached_dlq(&un, sub);
        out->redriven++;
    }
    total = set.n;
    id_set_free(&set);
    if (d->conn == NULL || tse_dl_unreached_error(&un, total, "dead letters to redrive", err)) {
        if (d->conn == NULL)
            unavailable(err);
        else if (out->redriven > 0) /* what was claimed is delivered all the same */
            tse_dl_claim_scan(d, sub, NULL);
        tse_stats_add(d->stats, TSE_STAT_REDRIVEN, d->conn ? out->redriven : 0);
        protobuf_c_message_free_unpacked(&out->base, NULL);
        return NULL;
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
    tse_dl_unreached un = {0};
    size_t total;
    id_set set;

    if (out == NULL)
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory"), NULL;
    tracseq__events__v1__purge_dead_letters_response__init(out);
    if (!id_set_of(d, sub, req->ids, req->n_ids, req->all, &set, err)) {
        free(out);
        return NULL;
    }
    /* One XDEL per id: a result per id. */
    for (size_t i = 0; i < set.n && d->conn; i++) {
        bool deleted = false;
        tse_status st = tse_dlq_delete(d->conn, sub->def->name, set.ids[i], &deleted);
        if (deleted)
            out->purged++;
        else if (st == TSE_UNAVAILABLE) /* the store's slot did not answer */
            unreached_dlq(&un, sub);
        else
            add_id(&out->unknown_ids, &out->n_unknown_ids, set.ids[i]);
    }
    total = set.n;
    id_set_free(&set);
    tse_stats_add(d->stats, TSE_STAT_PURGED, d->conn ? out->purged : 0);
    if (d->conn == NULL || tse_dl_unreached_error(&un, total, "dead letters to purge", err)) {
        if (d->conn == NULL)
            unavailable(err);
        protobuf_c_message_free_unpacked(&out->base, NULL);
        return NULL;
    }
    return &out->base;
}

/* ===================== positions ======================================== */

/* ===================== snapshots ======================================== */

static Snapshot *snapshot_unpack(const tse_blob *v)
{
    return tracseq__events__v1__snapshot__unpack(NULL, v->len, v->data);
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
    for (size_t i = 0; i < sub->n_streams && d->conn; i++) {
        char pos[TSE_ENTRY_ID_MAX + 1];
        Tracseq__Events__V1__Snapshot__PositionsEntry *e = malloc(sizeof(*e));
        if (e == NULL || tse_group_acked_position(d->conn, sub->streams[i], sub->def->name, pos,
                                                  sizeof(pos)) != TSE_OK) {
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
    const char *name = sub->def->name;
    Snapshot *snap;
    uint8_t *packed;
    size_t len;
    bool exists;
    long long n = 0;
    tse_status st;

    if (tse_snapshot_exists(d->conn, name, req->name, &exists) != TSE_OK)
        return unavailable(err), NULL;
    if (exists) {
        tse_error_set(err, TSE_ALREADY_EXISTS, "name", "snapshot '%s' of '%s' exists", req->name,
                      name);
        return NULL;
    }
    if (tse_snapshot_count(d->conn, name, &n) == TSE_OK && n >= TSE_SNAPSHOTS_MAX) {
        tse_error_set(err, TSE_RESOURCE_EXHAUSTED, "name",
                      "'%s' has %d snapshots, the most it may hold; delete one first", name,
                      TSE_SNAPSHOTS_MAX);
        return NULL;
    }
    if ((snap = snapshot_new(d, sub, req->name)) == NULL)
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory"), NULL;
    len = protobuf_c_message_get_packed_size(&snap->base);
    if ((packed = malloc(len ? len : 1)) == NULL) {
        protobuf_c_message_free_unpacked(&snap->base, NULL);
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory"), NULL;
    }
    protobuf_c_message_pack(&snap->base, packed);
    st = tse_snapshot_put(d->conn, name, req->name, packed, len);
    free(packed);
    if (st == TSE_UNAVAILABLE) {
        protobuf_c_message_free_unpacked(&snap->base, NULL);
        return unavailable(err), NULL;
    }
    return &snap->base;
}

static int by_name(const void *a, const void *b)
{
    return strcmp((*(Snapshot *const *)a)->name, (*(Snapshot *const *)b)->name);
}

static ProtobufCMessage *list_snapshots(tse_delivery *d, tse_sub *sub, tse_error *err)
{
    Tracseq__Events__V1__ListSnapshotsResponse *out = malloc(sizeof(*out));
    tse_blobs r = {0};

    if (out == NULL)
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory"), NULL;
    tracseq__events__v1__list_snapshots_response__init(out);
    if (tse_snapshot_all(d->conn, sub->def->name, &r) != TSE_OK) {
        tse_blobs_cleanup(&r);
        free(out);
        return unavailable(err), NULL;
    }
    out->snapshots = calloc(r.n ? r.n : 1, sizeof(*out->snapshots));
    for (size_t i = 0; out->snapshots && i < r.n; i++) {
        Snapshot *s = snapshot_unpack(&r.v[i]);
        if (s != NULL)
            out->snapshots[out->n_snapshots++] = s;
    }
    tse_blobs_cleanup(&r);
    if (out->n_snapshots > 1)
        qsort(out->snapshots, out->n_snapshots, sizeof(*out->snapshots), by_name);
    return &out->base;
}

static ProtobufCMessage *delete_snapshot(tse_delivery *d, tse_sub *sub,
                                         const Tracseq__Events__V1__DeleteSnapshotRequest *req,
                                         tse_error *err)
{
    Tracseq__Events__V1__DeleteSnapshotResponse *out = malloc(sizeof(*out));
    bool deleted = false;
    tse_status st;

    if (out == NULL)
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory"), NULL;
    tracseq__events__v1__delete_snapshot_response__init(out);
    st = tse_snapshot_delete(d->conn, sub->def->name, req->name, &deleted);
    if (st != TSE_OK || !deleted) {
        free(out);
        if (st == TSE_OK)
            tse_error_set(err, TSE_NOT_FOUND, "name", "no snapshot '%s' of '%s'", req->name,
                          sub->def->name);
        else
            unavailable(err);
        return NULL;
    }
    return &out->base;
}

/* ===================== seek ============================================= */

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
    tse_blob packed = {0};
    tse_status st = tse_snapshot_get(d->conn, sub->def->name, name, &packed);
    Snapshot *snap = NULL;

    if (st == TSE_UNAVAILABLE)
        return unavailable(err), NULL;
    if (st == TSE_OK)
        snap = snapshot_unpack(&packed);
    tse_blob_cleanup(&packed);
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
        s->n_ready = 0;
        s->hungry = true;
    }
    sub->drained = false;
    sub->next_claim_ms = 0;
}

static ProtobufCMessage *seek(tse_delivery *d, tse_sub *sub,
                              const Tracseq__Events__V1__SeekRequest *req, tse_error *err)
{
    Tracseq__Events__V1__SeekResponse *out = malloc(sizeof(*out));
    tse_dl_unreached un = {0};
    Snapshot *snap = NULL;

    if (out == NULL)
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory"), NULL;
    tracseq__events__v1__seek_response__init(out);
    if (req->snapshot[0] != '\0' && (snap = load_snapshot(d, sub, req->snapshot, err)) == NULL) {
        free(out);
        return NULL;
    }
    for (size_t i = 0; i < sub->n_streams && d->conn; i++) {
        char target[TSE_ENTRY_ID_MAX + 1], why[256];
        uint64_t cleared;
        tse_status st;
        seek_target(req, snap, sub->streams[i], target, sizeof(target));
        st = tse_group_seek(d->conn, sub->streams[i], sub->def->name, target, &cleared, why,
                            sizeof(why));
        if (st == TSE_OK) {
            out->pending_cleared += cleared;
            out->streams++;
        } else if (st == TSE_UNAVAILABLE) {
            tse_dl_unreached_add(&un, sub->streams[i]); /* its slot did not answer */
        } else {
            tse_log(TSE_LOG_WARN, "seek: a stream was not moved",
                    (const char *[]){"subscription", sub->def->name, "stream", sub->streams[i],
                                     "error", why, NULL});
        }
    }
    if (snap)
        protobuf_c_message_free_unpacked(&snap->base, NULL);
    if (d->conn == NULL) {
        free(out);
        return unavailable(err), NULL;
    }
    /* The streams that answered are moved (each atomically; a retry moves
     * them to the same position again, or to the newest for LATEST). */
    after_seek(sub);
    if (tse_dl_unreached_error(&un, sub->n_streams, "streams to move", err)) {
        free(out);
        return NULL;
    }
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
