/*
 * delivery_flow.c - moving events to subscribers: reading new entries within
 * a subscriber's credit (priority 1 streams first), redelivering entries
 * idle past the ack deadline (XPENDING + XCLAIM, which counts attempts),
 * dead-lettering those that used up their attempts, and acks, nacks and
 * deadline extensions.
 *
 * Credit: a stream subscriber holds at most max_in_flight unacked
 * deliveries; every delivery takes one unit and its ack (or nack) gives it
 * back. Reads never ask for more than the credit left, per stream; entries a
 * multi-stream read returns beyond it wait in the subscriber's ready list
 * (they are already its pending entries) and go out first as credit returns,
 * so memory per subscriber stays bounded.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/pbscan.h"
#include "common/alloc.h"
#include "common/clock.h"
#include "delivery/delivery_internal.h"
#include "obs/log.h"
#include "storage/ack_id.h"

/* The field number of Event.timestamp (proto/tracseq/events/v1/event.proto). */
#define EVENT_TIMESTAMP_FIELD 5

const char *const tse_dl_reason_names[TSE_DL_REASONS] = {
    [TSE_DL_MAX_ATTEMPTS] = TSE_DLQ_REASON_MAX_ATTEMPTS,
    [TSE_DL_REJECTED] = TSE_DLQ_REASON_REJECTED,
};

/* The publish time of an entry: its envelope's timestamp (stamped by the
 * service that took the publish), else the time in its entry id (when Redis
 * stored it, milliseconds). */
static int64_t publish_time_us(const uint8_t *envelope, size_t len, const char *entry_id)
{
    int64_t sec;
    int32_t nanos;

    if (tse_pbscan_timestamp(envelope, len, EVENT_TIMESTAMP_FIELD, &sec, &nanos) && sec > 0)
        return sec * 1000000 + nanos / 1000;
    return strtoll(entry_id, NULL, 10) * 1000;
}

void tse_dl_ready_free(tse_ready *r)
{
    if (r != NULL)
        free(r->ack_id);
}

static void ready_push(tse_subscriber *s, tse_ready *r)
{
    if (s->ready_tail)
        s->ready_tail->next = r;
    else
        s->ready = r;
    s->ready_tail = r;
    s->n_ready++;
}

/* The first ready entry of s, out of the list. */
static tse_ready *ready_pop(tse_subscriber *s)
{
    tse_ready *r = s->ready;

    s->ready = r->next;
    if (s->ready == NULL)
        s->ready_tail = NULL;
    r->next = NULL;
    s->n_ready--;
    return r;
}

/* A ready entry of stream key from an entry read or claimed, in one
 * allocation (tse_ready): the ack id "<key>/<id>" built by hand (asprintf
 * was ~1.5k instructions per delivery), the envelope copied from the
 * reply; NULL when out of memory. */
static tse_ready *ready_of(const char *key, const tse_group_entry *e)
{
    size_t key_len = strlen(key), id_len = strlen(e->id), ack_len = key_len + 1 + id_len;
    size_t at = (ack_len + 1 + _Alignof(tse_ready) - 1) / _Alignof(tse_ready) * _Alignof(tse_ready);
    char *block = malloc(at + sizeof(tse_ready) + e->envelope_len);
    tse_ready *r;

    if (block == NULL)
        return NULL;
    memcpy(block, key, key_len);
    block[key_len] = '/';
    memcpy(block + key_len + 1, e->id, id_len + 1);
    r = (tse_ready *)(block + at);
    r->next = NULL;
    r->ack_id = block;
    r->stream_id = block + key_len + 1;
    r->ack_len = ack_len;
    r->attempt = e->attempt;
    r->envelope = (const uint8_t *)(r + 1);
    r->envelope_len = e->envelope_len;
    if (e->envelope_len > 0)
        memcpy(r + 1, e->envelope, e->envelope_len);
    r->published_us = publish_time_us(r->envelope, r->envelope_len, r->stream_id);
    return r;
}

/* Moves the entries got (of the streams keys) to s's ready list; returns
 * how many. */
static long ready_all(tse_subscriber *s, const char *const *keys, tse_group_entries *got)
{
    long n = 0;

    for (size_t i = 0; i < got->n; i++) {
        tse_ready *ready = ready_of(keys[got->v[i].stream], &got->v[i]);
        if (ready) {
            ready_push(s, ready);
            n++;
        }
    }
    tse_group_entries_cleanup(got);
    return n;
}

/* Makes room for one more in-flight id: slides the live window to the
 * front, growing the array only when it is more than half full. */
static bool inflight_room(tse_subscriber *s)
{
    size_t live = s->inflight_end - s->inflight_head;

    if (s->inflight_end < s->cap_inflight)
        return true;
    if (s->inflight_head > 0 && live <= s->cap_inflight / 2) {
        memmove(s->inflight, s->inflight + s->inflight_head, live * sizeof(*s->inflight));
    } else {
        size_t cap = s->cap_inflight ? 2 * s->cap_inflight : 16;
        char **p = tse_malloc(cap * sizeof(*p));
        if (p == NULL)
            return false;
        if (live > 0)
            memcpy(p, s->inflight + s->inflight_head, live * sizeof(*p));
        tse_free(s->inflight);
        s->inflight = p;
        s->cap_inflight = cap;
    }
    s->inflight_head = 0;
    s->inflight_end = live;
    return true;
}

/* Keeps ready entry r's ack id (its allocation) among the in-flight ones;
 * *at: its place after the live window's head, which a later room-making
 * may move but not reorder. */
static bool track(tse_subscriber *s, tse_ready *r, size_t *at)
{
    if (!inflight_room(s))
        return false;
    *at = s->inflight_end - s->inflight_head;
    s->inflight[s->inflight_end++] = r->ack_id;
    s->n_inflight++;
    return true;
}

void tse_dl_forget_inflight(tse_subscriber *s, const char *ack_id)
{
    for (size_t i = s->inflight_head; i < s->inflight_end; i++) {
        if (s->inflight[i] == NULL || strcmp(s->inflight[i], ack_id) != 0)
            continue;
        free(s->inflight[i]);
        s->inflight[i] = NULL;
        s->n_inflight--;
        while (s->inflight_head < s->inflight_end && s->inflight[s->inflight_head] == NULL)
            s->inflight_head++;
        if (s->n_inflight == 0)
            s->inflight_head = s->inflight_end = 0;
        s->credit++;
        /* Refill in batches, not one read per ack: when a quarter of the
         * window is free, or nothing is in flight. */
        if (s->sub &&
            (s->credit * 4 >= s->sub->def->max_in_flight || s->n_inflight == 0 || s->ready != NULL))
            s->hungry = true;
        return;
    }
}

/* Counts an entry handed to a subscriber at now_us (wall clock); a first
 * delivery's latency from its publish time goes to the histogram. */
static void count_handed(tse_delivery *d, tse_subscriber *s, tse_ready *r, int64_t now_us)
{
    if (r->attempt > 1) {
        tse_stats_add(d->stats, TSE_STAT_REDELIVERED, 1);
        s->sub->redelivered++;
    } else if (r->published_us > 0) {
        tse_histogram_observe(tse_stats_histogram(d->stats, TSE_HIST_DELIVERY),
                              now_us - r->published_us);
    }
    tse_stats_add(d->stats, TSE_STAT_CONSUMED, 1);
    s->sub->delivered++;
}

/* A pull takes the ready entries its credit allows; they are answered
 * together, once, when it is done gathering. */
static size_t take_for_pull(tse_delivery *d, tse_subscriber *s)
{
    size_t n = 0;
    int64_t now = tse_wall_us();

    while (s->ready && s->credit > 0) {
        tse_ready *r = ready_pop(s);
        if (s->taken_tail)
            s->taken_tail->next = r;
        else
            s->taken = r;
        s->taken_tail = r;
        s->n_taken++;
        s->credit--;
        count_handed(d, s, r, now);
        n++;
    }
    return n;
}

/* Delivers a batch to a stream subscriber, then keeps each entry's ack id
 * alone for the in-flight list (at[i]: its place, track) and frees the
 * rest. A copy, not realloc's shrink, which takes the arena's lock (~100
 * instructions a delivery more under callgrind). Out of memory the whole
 * entry stays as the id (it starts with it). */
static void deliver(tse_subscriber *s, const tse_delivered *batch, tse_ready *const *sent,
                    const size_t *at, size_t n)
{
    s->ops->deliver(s->arg, batch, n);
    for (size_t i = 0; i < n; i++) {
        char *block = sent[i]->ack_id;
        char *id = malloc(sent[i]->ack_len + 1);

        if (id == NULL)
            continue;
        memcpy(id, block, sent[i]->ack_len + 1);
        s->inflight[s->inflight_head + at[i]] = id;
        free(block);
    }
}

/*
 * Hands the ready entries the credit allows to the subscriber. Returns how
 * many went out. A stream subscriber gets them in batches of up to 64; a
 * pull takes them, to be answered with everything at once. An entry that
 * cannot be tracked (out of memory) is not handed out: its ack would never
 * give the credit back. It stays ready for the next round (at the latest
 * the next poll).
 */
static size_t hand_out(tse_delivery *d, tse_subscriber *s)
{
    tse_delivered batch[64];
    tse_ready *sent[64];
    size_t at[64], n = 0, total = 0;
    int64_t now;

    if (s->is_pull)
        return take_for_pull(d, s);
    now = tse_wall_us();
    while (s->ready && s->credit > 0) {
        tse_ready *r = s->ready;
        /* The id, owned by the in-flight list from here on, lives until
         * its ack: past this delivery's callback. */
        const char *ack_id = r->ack_id;
        if (!track(s, r, &at[n]))
            break;
        ready_pop(s);
        s->credit--;
        batch[n] = (tse_delivered){ack_id, r->attempt, r->stream_id, r->envelope, r->envelope_len};
        sent[n++] = r;
        count_handed(d, s, r, now);
        if (n == 64) {
            deliver(s, batch, sent, at, n);
            total += n;
            n = 0;
        }
    }
    if (n > 0)
        deliver(s, batch, sent, at, n);
    return total + n;
}

void tse_dl_pull_answer(tse_delivery *d, tse_subscriber *s, const tse_error *err)
{
    tse_pull_cb cb = s->pull_cb;
    tse_delivered *out = NULL;
    size_t n = 0;

    (void)d;
    s->pull_cb = NULL;
    if (cb == NULL) {
        tse_logf(TSE_LOG_ERROR, "delivery: a pull (%llu) was to be answered twice; ignored",
                 (unsigned long long)s->pull_id);
        return;
    }
    if (err != NULL && err->code != TSE_OK) {
        cb(s->pull_arg, err, NULL, 0);
    } else {
        out = calloc(s->n_taken ? s->n_taken : 1, sizeof(*out));
        if (out == NULL && s->n_taken > 0) {
            tse_error nomem;
            /* What it took stays pending and comes back after the deadline. */
            tse_error_set(&nomem, TSE_NOMEM, NULL, "out of memory");
            cb(s->pull_arg, &nomem, NULL, 0);
        } else {
            for (tse_ready *r = s->taken; r; r = r->next)
                out[n++] = (tse_delivered){r->ack_id, r->attempt, r->stream_id, r->envelope,
                                           r->envelope_len};
            cb(s->pull_arg, NULL, out, n);
        }
        free(out);
    }
    while (s->taken) {
        tse_ready *next = s->taken->next;
        tse_dl_ready_free(s->taken);
        s->taken = next;
    }
    s->taken_tail = NULL;
    s->n_taken = 0;
}

/* Answers a pull with what it took, leaves its list and frees it. */
static void pull_done(tse_delivery *d, tse_subscriber *s)
{
    tse_dl_pull_answer(d, s, NULL);
    for (tse_subscriber **p = &s->sub->subscribers; *p; p = &(*p)->next) {
        if (*p == s) {
            *p = s->next;
            break;
        }
    }
    tse_dl_release(d, s);
}

/* ---- acks owed to Redis ---- */

static void acks_by_stream(const tse_sub *sub, char *const *ids, size_t n, const char **key_of,
                           const char **entry_of);
static void acks_counted(tse_delivery *d, tse_sub *sub, uint32_t done);

bool tse_dl_owe_acks(tse_sub *sub, tse_id_list *ids)
{
    if (sub->n_owed + ids->n > sub->cap_owed) {
        size_t cap = sub->cap_owed ? sub->cap_owed : 64;
        char **owed;
        while (cap < sub->n_owed + ids->n)
            cap *= 2;
        if ((owed = tse_realloc(sub->owed, cap * sizeof(*owed))) == NULL)
            return false;
        sub->owed = owed;
        sub->cap_owed = cap;
    }
    if (sub->n_owed == 0)
        sub->owed_since_ms = tse_clock_ms();
    if (ids->n > 0)
        memcpy(sub->owed + sub->n_owed, ids->ids, ids->n * sizeof(*ids->ids));
    sub->n_owed += ids->n;
    ids->n = 0;
    return true;
}

void tse_dl_drop_acks(tse_sub *sub)
{
    for (size_t i = 0; i < sub->n_owed; i++)
        tse_free(sub->owed[i]);
    sub->n_owed = 0;
}

void tse_dl_note_unreached(const tse_sub *sub, const char *what, size_t total, uint32_t done,
                           const tse_dl_unreached *un)
{
    char n[24], applied[24], slot[16];

    if (un->n == 0)
        return;
    snprintf(n, sizeof(n), "%zu", total);
    snprintf(applied, sizeof(applied), "%u", done);
    snprintf(slot, sizeof(slot), "%u", un->slot);
    /* A Subscribe stream's ack or nack message has no answer: the client
     * believes it done. When a slot's master is out of reach (a cluster
     * master dead, its replica not yet promoted) some of it is not: those
     * deliveries stay pending and come again after their ack deadline (at
     * least once). Not silent: logged once per flush, naming the
     * subscription and slot (docs/operations.md, "A master's failure").
     * The Acknowledge and Nack calls answer UNAVAILABLE instead. */
    tse_log(TSE_LOG_WARN,
            "Subscribe stream: settlements not applied (a slot's master out of reach); those "
            "deliveries stay pending and come again after their ack deadline",
            (const char *[]){"subscription", sub->def->name, "what", what, "ids", n, "applied",
                             applied, "slot", slot, NULL});
}

void tse_dl_flush_acks(tse_delivery *d, tse_sub *sub)
{
    tse_dl_unreached un = {0};
    size_t n = sub->n_owed;

    if (n == 0)
        return;
    tse_dl_note_unreached(sub, "ack", n, tse_dl_ack_ids(d, sub, sub->owed, n, NULL, NULL, &un),
                          &un);
    tse_dl_drop_acks(sub);
}

void tse_dl_flush_all_acks(tse_delivery *d)
{
    for (tse_sub *sub = d->subs; sub; sub = sub->next)
        tse_dl_flush_acks(d, sub);
}

int64_t tse_dl_flush_due_acks(tse_delivery *d, int64_t now)
{
    int64_t next = INT64_MAX;

    for (tse_sub *sub = d->subs; sub; sub = sub->next) {
        if (sub->n_owed == 0)
            continue;
        if (now - sub->owed_since_ms >= TSE_ACK_LINGER_MS)
            tse_dl_flush_acks(d, sub);
        else if (sub->owed_since_ms + TSE_ACK_LINGER_MS < next)
            next = sub->owed_since_ms + TSE_ACK_LINGER_MS;
    }
    return next;
}

/* A read's share of the owed acks: sub's ids by stream (their arrays). */
typedef struct owed_acks {
    tse_group_acks acks;
    const char **key_of, **entry_of;
} owed_acks;

/* Frees the arrays of owed_acks_begin (the owed ids themselves stay). */
static void owed_acks_free(owed_acks *a)
{
    free(a->key_of);
    free(a->entry_of);
}

/* Prepares sub's owed acks to go with a read; false when there are none
 * (or no memory for the arrays: they go at the flush). */
static bool owed_acks_begin(tse_sub *sub, owed_acks *a)
{
    memset(a, 0, sizeof(*a));
    if (sub->n_owed == 0)
        return false;
    a->key_of = calloc(sub->n_owed, sizeof(*a->key_of));
    a->entry_of = calloc(sub->n_owed, sizeof(*a->entry_of));
    if (a->key_of == NULL || a->entry_of == NULL) {
        owed_acks_free(a);
        memset(a, 0, sizeof(*a));
        return false;
    }
    acks_by_stream(sub, sub->owed, sub->n_owed, a->key_of, a->entry_of);
    a->acks = (tse_group_acks){a->key_of, a->entry_of, sub->n_owed, 0, TSE_OK};
    return true;
}

/* Counts what the read's acks did and frees them (those Redis did not
 * answer stay pending: come again after the deadline, as any ack lost). */
static void owed_acks_end(tse_delivery *d, tse_sub *sub, owed_acks *a)
{
    tse_dl_unreached un = {0};

    if (a->key_of == NULL)
        return;
    if (a->acks.st == TSE_UNAVAILABLE && d->conn != NULL && a->acks.n > 0 && a->key_of[0] != NULL)
        tse_dl_unreached_add(&un, a->key_of[0]);
    acks_counted(d, sub, a->acks.acked);
    tse_dl_note_unreached(sub, "ack", a->acks.n, a->acks.acked, &un);
    tse_dl_drop_acks(sub);
    owed_acks_free(a);
}

/* A read of some of a subscriber's streams, sent and not yet taken. */
typedef struct stream_read {
    tse_group_sent_read *op;
    const char **keys;
    size_t *per_stream; /* when the caller wants to know which were full */
    size_t k;
    owed_acks acks;
    bool with_acks;
} stream_read;

/*
 * Sends XREADGROUP ... COUNT count STREAMS <the k streams of which[]> >,
 * with the group's owed acks ahead of it, for read_take to take: Redis
 * works on it meanwhile. counts: room is made for each stream's count (to
 * tell which were full). False when nothing was sent (out of memory).
 */
static bool read_send(tse_delivery *d, tse_subscriber *s, const size_t *which, size_t k,
                      uint32_t count, bool counts, stream_read *rd)
{
    tse_sub *sub = s->sub;

    memset(rd, 0, sizeof(*rd));
    rd->k = k;
    rd->keys = calloc(k ? k : 1, sizeof(*rd->keys));
    rd->per_stream = counts ? calloc(k ? k : 1, sizeof(*rd->per_stream)) : NULL;
    if (rd->keys == NULL || (counts && rd->per_stream == NULL)) {
        free(rd->keys);
        free(rd->per_stream);
        return false;
    }
    for (size_t i = 0; i < k; i++)
        rd->keys[i] = sub->streams[which[i]];
    rd->with_acks = owed_acks_begin(sub, &rd->acks);
    if (tse_group_read_send(d->conn, sub->def->name, rd->with_acks ? &rd->acks.acks : NULL,
                            s->consumer, rd->keys, k, count, &rd->op) == TSE_OK)
        return true;
    if (rd->with_acks) /* not sent: they stay owed */
        owed_acks_free(&rd->acks);
    free(rd->keys);
    free(rd->per_stream);
    return false;
}

/*
 * Takes a read sent by read_send: its entries appended to the ready list.
 * full[i] (when non-NULL, and read_send was asked for counts) tells
 * whether stream i of the read gave all count entries (it may have more).
 * Returns the number read, -1 on a Redis failure.
 */
static long read_take(tse_delivery *d, tse_subscriber *s, stream_read *rd, uint32_t count,
                      bool *full)
{
    size_t *per_stream = rd->per_stream;
    tse_group_entries got = {0};
    tse_status st = tse_group_read_take(rd->op, &got, per_stream);
    long n = -1;

    if (rd->with_acks)
        owed_acks_end(d, s->sub, &rd->acks);
    /* Unavailable with the connection kept (a cluster's node down): the
     * slots that answered are delivered, the others read at a later poll
     * (what their reads may have taken is pending: claimed after the
     * deadline). */
    if (st == TSE_UNAVAILABLE && tse_conn_lost(d->conn)) {
        tse_group_entries_cleanup(&got);
        goto out;
    }
    for (size_t i = 0; full && per_stream && i < rd->k; i++)
        full[i] = per_stream[i] >= count;
    n = ready_all(s, rd->keys, &got);
out:
    free(rd->keys);
    free(per_stream);
    return n;
}

/* read_send then read_take: the entries appended to the ready list. */
static long read_streams(tse_delivery *d, tse_subscriber *s, const size_t *which, size_t k,
                         uint32_t count, bool *full)
{
    stream_read rd;

    if (!read_send(d, s, which, k, count, full != NULL, &rd))
        return -1;
    return read_take(d, s, &rd, count, full);
}

/* The streams of sub at priority prio into which[] (room for n_streams),
 * starting at stream `first` and wrapping around; returns how many. */
static size_t level_streams(const tse_sub *sub, int prio, size_t first, size_t *which)
{
    size_t k = 0;

    for (size_t j = 0; j < sub->n_streams; j++) {
        size_t i = (first + j) % sub->n_streams;
        if (sub->prio[i] == prio)
            which[k++] = i;
    }
    return k;
}

/* The credit of s that no ready entry has taken yet: what a read may ask. */
static uint32_t room_of(const tse_subscriber *s)
{
    return s->credit > s->n_ready ? s->credit - s->n_ready : 0;
}

/*
 * A stream subscriber reads all streams of a level at once, up to its
 * room from each (what comes beyond it waits in its ready list); what was
 * ready is handed out while Redis reads. Returns the number read, -1 on a
 * failure.
 */
static long read_level(tse_delivery *d, tse_subscriber *s, int prio, size_t *handed)
{
    size_t *which = calloc(s->sub->n_streams ? s->sub->n_streams : 1, sizeof(*which));
    size_t k = which ? level_streams(s->sub, prio, 0, which) : 0;
    uint32_t room = room_of(s);
    long got = which == NULL ? -1 : 0;
    stream_read rd;
    bool sent = false;

    if (k > 0 && room > 0 && !(sent = read_send(d, s, which, k, room, false, &rd)))
        got = -1;
    *handed += hand_out(d, s);
    if (sent)
        got = read_take(d, s, &rd, room, NULL);
    free(which);
    return got;
}

/* Whether the engine's next pass starts at once (requests or a publish
 * wait): entries just read may wait for it, to go out while its read runs. */
static bool next_pass_due(tse_delivery *d)
{
    bool due;

    pthread_mutex_lock(&d->mu);
    due = d->head != NULL || atomic_load(&d->notified);
    pthread_mutex_unlock(&d->mu);
    return due;
}

/*
 * A stream subscriber's fill: priority 1 first, each level read while the
 * last one's entries are handed out. What the last read gave goes out now,
 * unless the next pass starts at once: then it goes out during that pass's
 * read (s is deferred: the next pass fills it before anyone else), so
 * that Redis and the engine work at the same time instead of in turn.
 * Entries wait in the ready list at most that long; the credit they will
 * take is kept for them (room_of).
 */
static void fill_stream(tse_delivery *d, tse_subscriber *s, size_t *handed, long *got)
{
    for (int prio = TSE_PRIORITY_MIN; prio <= TSE_PRIORITY_MAX && d->conn && room_of(s) > 0;
         prio++) {
        long n = read_level(d, s, prio, handed);
        if (n < 0)
            break;
        *got += n;
    }
    if (s->ready == NULL || s->credit == 0)
        return;
    if (*got > 0 && d->conn && next_pass_due(d))
        s->hungry = s->deferred = true;
    else
        *handed += hand_out(d, s);
}

/*
 * A pull never reads more than it can take (what it read and did not answer
 * would wait for its ack deadline): a read of k streams asks for credit / k
 * from each, on at most `credit` streams at a time, and streams that gave
 * all they were asked for are read again while credit lasts. The first
 * stream turns from pull to pull, so no stream of a level starves the
 * others. Returns the number read, -1 on a Redis failure.
 */
static long read_level_for_pull(tse_delivery *d, tse_subscriber *s, int prio)
{
    tse_sub *sub = s->sub;
    size_t n = sub->n_streams ? sub->n_streams : 1;
    size_t *which = calloc(n, sizeof(*which));
    bool *full = calloc(n, sizeof(*full));
    size_t k = 0, pos = 0;
    long got = 0;

    if (which == NULL || full == NULL) {
        got = -1;
        goto out;
    }
    k = level_streams(sub, prio, sub->pull_turn++ % n, which);
    while (k > 0 && s->credit > 0) {
        size_t chunk = k - pos < s->credit ? k - pos : s->credit;
        long r = read_streams(d, s, which + pos, chunk, s->credit / (uint32_t)chunk, full + pos);
        if (r < 0) {
            got = -1;
            goto out;
        }
        got += r;
        take_for_pull(d, s);
        pos += chunk;
        if (pos < k)
            continue;
        /* A pass is over: again over the streams that may have more. */
        size_t more = 0;
        for (size_t i = 0; i < k; i++)
            if (full[i])
                which[more++] = which[i];
        k = more;
        pos = 0;
    }
out:
    free(which);
    free(full);
    return got;
}

/* A pull gathers over every level, priority 1 first, while credit lasts
 * and is answered once, with everything it took. */
static void fill_pull(tse_delivery *d, tse_subscriber *s)
{
    take_for_pull(d, s);
    for (int prio = TSE_PRIORITY_MIN;
         prio <= TSE_PRIORITY_MAX && s->credit > 0 && s->ready == NULL && d->conn; prio++) {
        if (read_level_for_pull(d, s, prio) < 0)
            break;
        take_for_pull(d, s);
    }
    /* With nothing taken it waits for a publish, a poll or its deadline
     * (or, when Redis failed, for the loop to end it with UNAVAILABLE). */
    if (s->n_taken > 0)
        pull_done(d, s);
}

void tse_dl_fill(tse_delivery *d, tse_subscriber *s)
{
    size_t handed = 0;
    long got = 0;

    s->hungry = false;
    if (s->sub == NULL)
        return;
    if (s->is_pull) {
        fill_pull(d, s);
        return;
    }
    fill_stream(d, s, &handed, &got);
    if (d->conn == NULL)
        return;
    /* More may be waiting: look again at once while credit lasts. An empty
     * read is empty for the whole group: spare the other subscribers. */
    if (got > 0 && s->credit > 0)
        s->hungry = true;
    if (got == 0 && handed == 0)
        s->sub->drained = true;
}

/* Moves one entry to the subscription's dead-letter target, or else its
 * dead-letter stream, and acks it in the group; reason is a
 * TSE_DLQ_REASON_*. False when it was left pending (Redis, memory). */
static bool dead_letter(tse_delivery *d, tse_sub *sub, const char *key, const char *id,
                        long long attempts, const char *reason)
{
    tse_target_result target = TSE_TARGET_NONE;
    tse_stream_entry e;
    tse_status st = tse_stream_entry_get(d->conn, key, id, &e);
    bool acked;

    /* Gone from the stream (or unreadable): nothing to keep, but acked. */
    if (st == TSE_UNAVAILABLE || st == TSE_NOMEM)
        return false;
    if (st == TSE_OK)
        target = tse_dl_target_publish(d, sub, key, id, attempts, reason, &e);
    if (target == TSE_TARGET_FAILED) {
        tse_stream_entry_cleanup(&e); /* left pending: the next scan tries again */
        return false;
    }
    /* A dead letter Redis did not store (an error reply, memory) is not
     * acked: it stays pending and the next scan tries again. */
    if (target == TSE_TARGET_NONE && st == TSE_OK &&
        tse_dlq_add(d->conn, sub->def->name, key, id, attempts, reason, &e) != TSE_OK) {
        tse_stream_entry_cleanup(&e);
        return false;
    }
    tse_stream_entry_cleanup(&e);
    if (d->conn == NULL)
        return false;
    if (tse_group_ack_each(d->conn, sub->def->name, &key, &id, 1, &acked, NULL) != TSE_OK)
        return false;
    if (strcmp(reason, TSE_DLQ_REASON_REJECTED) == 0) {
        tse_stats_add(d->stats, TSE_STAT_REJECTED, 1);
        sub->dead_lettered[TSE_DL_REJECTED]++;
    } else {
        tse_stats_add(d->stats, TSE_STAT_DEAD_LETTERED, 1);
        sub->dead_lettered[TSE_DL_MAX_ATTEMPTS]++;
    }
    return true;
}

/* A live subscriber (stream or waiting pull) with credit to take
 * redeliveries: the one with the most. */
static tse_subscriber *pick_target(tse_sub *sub)
{
    tse_subscriber *best = NULL;

    for (tse_subscriber *s = sub->subscribers; s; s = s->next)
        if (s->credit > 0 && s->ready == NULL && (best == NULL || s->credit > best->credit))
            best = s;
    return best;
}

/* Claims ids of one stream for target; entries go to its ready list with
 * their attempt numbers. */
static void claim(tse_delivery *d, tse_sub *sub, tse_subscriber *target, const char *key,
                  const char **ids, const long long *counts, size_t n)
{
    tse_group_entries got = {0};

    tse_group_claim(d->conn, key, sub->def->name, target->consumer, sub->def->ack_deadline_ms, ids,
                    counts, n, &got);
    ready_all(target, &key, &got);
}

/* The idle time an entry delivered `delivered` times needs before it is
 * delivered again: the ack deadline, plus the retry policy's backoff
 * (min_backoff_ms doubled per earlier attempt, capped at max_backoff_ms). */
static long long retry_idle(const Tracseq__Events__V1__Subscription *def, long long delivered)
{
    long long backoff = def->min_backoff_ms;

    for (long long i = 1; i < delivered && backoff < (long long)def->max_backoff_ms; i++)
        backoff *= 2;
    if (backoff > (long long)def->max_backoff_ms)
        backoff = def->max_backoff_ms;
    return (long long)def->ack_deadline_ms + backoff;
}

/* Redelivery and dead letters for one stream of sub. */
static void scan_stream(tse_delivery *d, tse_sub *sub, tse_subscriber *target, const char *key)
{
    const char *ids[TSE_CLAIM_BATCH];
    long long counts[TSE_CLAIM_BATCH];
    size_t n = 0;
    uint32_t max = sub->def->max_delivery_attempts;
    tse_pending_list p = {0};

    if (tse_group_pending(d->conn, key, sub->def->name, sub->def->ack_deadline_ms, TSE_CLAIM_BATCH,
                          &p) != TSE_OK) {
        tse_pending_list_cleanup(&p);
        return;
    }
    for (size_t i = 0; i < p.n && d->conn; i++) {
        long long delivered = p.v[i].delivered;
        if (max > 0 && delivered >= (long long)max) {
            dead_letter(d, sub, key, p.v[i].id, delivered, TSE_DLQ_REASON_MAX_ATTEMPTS);
        } else if (p.v[i].idle_ms < retry_idle(sub->def, delivered)) {
            continue; /* still backing off */
        } else if (target && n < target->credit) {
            ids[n] = p.v[i].id;
            counts[n++] = delivered;
        }
    }
    if (n > 0 && d->conn)
        claim(d, sub, target, key, ids, counts, n);
    tse_pending_list_cleanup(&p);
}

void tse_dl_claim_scan(tse_delivery *d, tse_sub *sub, tse_subscriber *target)
{
    for (size_t i = 0; d->conn && i < sub->n_streams; i++) {
        tse_subscriber *t = target ? target : pick_target(sub);
        if (t && t->ready)
            t = NULL; /* already has work waiting: no more claims for now */
        scan_stream(d, sub, t, sub->streams[i]);
        if (t && t->ready && !target)
            tse_dl_fill(d, t); /* hands it out; a pull is then answered */
    }
}

/* Splits "<stream key>/<entry id>"; false when the id is not one of sub's. */
static bool split_ack_id(const tse_sub *sub, const char *ack_id, char *key, size_t len,
                         const char **entry)
{
    if (!tse_ack_id_split(ack_id, key, len, entry))
        return false;
    for (size_t i = 0; i < sub->n_streams; i++)
        if (strcmp(sub->streams[i], key) == 0)
            return true;
    return false;
}

/* The deliveries so far of a pending entry of sub's group; 0 when it is
 * not pending. */
static long long pending_count(tse_delivery *d, tse_sub *sub, const char *key, const char *entry)
{
    long long count = 0;

    if (tse_group_pending_count(d->conn, key, sub->def->name, entry, &count) == TSE_UNAVAILABLE)
        return -1; /* not known: no answer */
    return count;
}

void tse_dl_unreached_add(tse_dl_unreached *u, const char *key)
{
    if (u == NULL)
        return;
    if (u->n++ == 0)
        u->slot = tse_key_slot(key, strlen(key));
}

bool tse_dl_unreached_error(const tse_dl_unreached *u, size_t total, const char *what,
                            tse_error *err)
{
    if (u->n == 0)
        return false;
    tse_error_set(err, TSE_UNAVAILABLE, NULL,
                  "%zu of %zu %s could not be done: the streams of slot %u%s have no reachable "
                  "master; retry",
                  u->n, total, what, u->slot, u->n > 1 ? " (and maybe others)" : "");
    return true;
}

uint32_t tse_dl_reject_ids(tse_delivery *d, tse_sub *sub, char *const *ids, size_t n,
                           char ***unknown, size_t *n_unknown, size_t *n_stuck,
                           tse_dl_unreached *un)
{
    char key[256];
    const char *entry;
    uint32_t done = 0;

    if (n_stuck)
        *n_stuck = 0;
    if (unknown) {
        *unknown = calloc(n ? n : 1, sizeof(char *));
        *n_unknown = 0;
    }
    for (size_t i = 0; i < n && d->conn; i++) {
        long long count = 0;
        if (split_ack_id(sub, ids[i], key, sizeof(key), &entry))
            count = pending_count(d, sub, key, entry);
        if (count < 0 && d->conn) { /* no answer for its slot: not unknown */
            tse_dl_unreached_add(un, key);
            continue;
        }
        if (count > 0 && dead_letter(d, sub, key, entry, count, TSE_DLQ_REASON_REJECTED)) {
            done++;
            continue;
        }
        if (count > 0 && n_stuck) { /* pending still: not unknown, but not done */
            (*n_stuck)++;
            continue;
        }
        if (unknown && *unknown)
            (*unknown)[(*n_unknown)++] = ids[i];
    }
    return done;
}

/* The stream of sub an ack id names (one of sub->streams), its entry id to
 * *entry; NULL when the id is not one of sub's. */
static const char *stream_of(const tse_sub *sub, const char *ack_id, const char **entry)
{
    char key[256];

    if (!tse_ack_id_split(ack_id, key, sizeof(key), entry))
        return NULL;
    for (size_t i = 0; i < sub->n_streams; i++)
        if (strcmp(sub->streams[i], key) == 0)
            return sub->streams[i];
    return NULL;
}

/*
 * Puts the ids of one stream next to each other (each stream's in their
 * order, streams in the order of their first id, unknown ids, key NULL,
 * last), so that each stream's ids are one XACK: key_of[i] is one of
 * sub->streams, compared as a pointer. O(n x streams). When the copies
 * cannot be made the order stays (more XACKs, the same acks).
 */
static void group_by_stream(const char **key_of, const char **entry_of, size_t n)
{
    const char **keys, **entries, **seen;
    size_t out = 0, n_seen = 0, runs = 1;

    for (size_t i = 1; i < n; i++)
        runs += key_of[i] != key_of[i - 1];
    if (runs <= 1)
        return;
    keys = malloc(n * sizeof(*keys));
    entries = malloc(n * sizeof(*entries));
    seen = malloc(n * sizeof(*seen));
    if (keys == NULL || entries == NULL || seen == NULL)
        goto out;
    for (size_t i = 0; i < n; i++) {
        size_t j = 0;
        while (j < n_seen && seen[j] != key_of[i])
            j++;
        if (j == n_seen)
            seen[n_seen++] = key_of[i];
    }
    for (size_t k = 0; k < n_seen; k++) {
        if (seen[k] == NULL)
            continue;
        for (size_t i = 0; i < n; i++)
            if (key_of[i] == seen[k]) {
                keys[out] = key_of[i];
                entries[out++] = entry_of[i];
            }
    }
    for (size_t i = 0; i < n; i++)
        if (key_of[i] == NULL) {
            keys[out] = NULL;
            entries[out++] = entry_of[i];
        }
    memcpy(key_of, keys, n * sizeof(*keys));
    memcpy(entry_of, entries, n * sizeof(*entries));
out:
    free(keys);
    free(entries);
    free(seen);
}

/* The stream (one of sub->streams, NULL: not one of sub's) and entry id of
 * each ack id, grouped by stream: each stream's ids are one XACK. */
static void acks_by_stream(const tse_sub *sub, char *const *ids, size_t n, const char **key_of,
                           const char **entry_of)
{
    for (size_t i = 0; i < n; i++)
        key_of[i] = stream_of(sub, ids[i], &entry_of[i]);
    group_by_stream(key_of, entry_of, n);
}

static void acks_counted(tse_delivery *d, tse_sub *sub, uint32_t done)
{
    tse_stats_add(d->stats, TSE_STAT_ACKED, done);
    sub->acked += done;
}

/*
 * Acks of a live stream want no answer per id: one XACK per stream (the
 * ids grouped by stream; the engine merges the ack messages of a
 * subscriber that queued up meanwhile), pipelined, instead of one XACK per
 * id. Acknowledge wants one per id (it answers the
 * ids that were not pending): one XACK per id, pipelined. Either way one
 * round trip.
 */
uint32_t tse_dl_ack_ids(tse_delivery *d, tse_sub *sub, char *const *ids, size_t n, char ***unknown,
                        size_t *n_unknown, tse_dl_unreached *un)
{
    const char **key_of = calloc(n ? n : 1, sizeof(*key_of));
    const char **entry_of = calloc(n ? n : 1, sizeof(*entry_of));
    bool *acked = unknown ? calloc(n ? n : 1, sizeof(*acked)) : NULL;
    bool *unreached = unknown ? calloc(n ? n : 1, sizeof(*unreached)) : NULL;
    uint32_t done = 0;

    if (unknown) {
        *unknown = calloc(n ? n : 1, sizeof(char *));
        *n_unknown = 0;
    }
    /* Out of memory: not acked, delivered again after the deadline. */
    if (key_of == NULL || entry_of == NULL || (unknown && (acked == NULL || unreached == NULL)) ||
        d->conn == NULL)
        goto out;
    if (unknown == NULL) {
        acks_by_stream(sub, ids, n, key_of, entry_of);
        /* Which run's slot did not answer is not known: the first id's
         * slot stands for them (the log says how many were applied). */
        if (tse_group_ack_runs(d->conn, sub->def->name, key_of, entry_of, n, &done) ==
                TSE_UNAVAILABLE &&
            d->conn != NULL && n > 0 && key_of[0] != NULL)
            tse_dl_unreached_add(un, key_of[0]);
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        key_of[i] = stream_of(sub, ids[i], &entry_of[i]);
    tse_group_ack_each(d->conn, sub->def->name, key_of, entry_of, n, acked, unreached);
    for (size_t i = 0; i < n; i++) {
        if (acked[i])
            done++;
        else if (unreached[i])
            tse_dl_unreached_add(un, key_of[i]); /* pending or not: unknown */
        else if (*unknown)
            (*unknown)[(*n_unknown)++] = ids[i];
    }
out:
    free(key_of);
    free(entry_of);
    free(acked);
    free(unreached);
    acks_counted(d, sub, done);
    return done;
}

void tse_dl_ext_free(tse_ext *e)
{
    if (e == NULL)
        return;
    free(e->key);
    free(e->entry);
    free(e->owner);
    free(e);
}

/* Sets an entry's idle time (ms) without counting an attempt; true when it
 * is still pending. *unanswered (NULL: not wanted): Redis did not answer
 * (whether it is pending is not known). */
static bool set_idle(tse_delivery *d, tse_sub *sub, const char *key, const char *entry,
                     const char *owner, uint32_t idle_ms, bool *unanswered)
{
    bool pending = false;
    tse_status st =
        tse_group_set_idle(d->conn, key, sub->def->name, owner, entry, idle_ms, &pending);

    if (unanswered)
        *unanswered = st == TSE_UNAVAILABLE;
    return pending;
}

void tse_dl_extensions(tse_delivery *d, tse_sub *sub)
{
    uint32_t deadline = sub->def->ack_deadline_ms;
    int64_t now = tse_clock_ms();
    tse_ext **p = &sub->ext;

    while (*p && d->conn) {
        tse_ext *e = *p;
        int64_t left = e->until_ms - now;
        if (left > (int64_t)deadline) {
            /* Still far: keep it from expiring (acked entries drop out). */
            bool unanswered = false;
            /* Kept when its slot did not answer: tried again next time. */
            if (set_idle(d, sub, e->key, e->entry, e->owner, 0, &unanswered) || unanswered) {
                p = &e->next;
                continue;
            }
        } else {
            set_idle(d, sub, e->key, e->entry, e->owner,
                     left <= 0 ? deadline : deadline - (uint32_t)left, NULL);
        }
        *p = e->next;
        tse_dl_ext_free(e);
    }
}

static void add_extension(tse_sub *sub, const char *key, const char *entry, const char *owner,
                          uint32_t delay_ms)
{
    tse_ext *e = calloc(1, sizeof(*e));

    if (e == NULL)
        return;
    e->key = strdup(key);
    e->entry = strdup(entry);
    e->owner = strdup(owner);
    e->until_ms = tse_clock_ms() + delay_ms;
    if (!e->key || !e->entry || !e->owner) {
        tse_dl_ext_free(e);
        return;
    }
    e->next = sub->ext;
    sub->ext = e;
}

uint32_t tse_dl_nack_ids(tse_delivery *d, tse_sub *sub, const char *consumer, char *const *ids,
                         size_t n, uint32_t delay_ms, bool extend, char ***unknown,
                         size_t *n_unknown, tse_dl_unreached *un)
{
    uint32_t deadline = sub->def->ack_deadline_ms, done = 0;
    char key[256], idle[24], owner[TSE_CONSUMER_NAME_MAX + 64];
    const char *entry;

    /* The entry becomes claimable again `delay_ms` from now (a nack), or
     * its deadline is pushed to `delay_ms` from now (an extension; capped
     * at the subscription's deadline, the most an idle time can express). */
    snprintf(idle, sizeof(idle), "%u", delay_ms >= deadline ? 0 : deadline - delay_ms);
    snprintf(owner, sizeof(owner), "%s", consumer ? consumer : TSE_DL_NACK_OWNER);
    if (unknown) {
        *unknown = calloc(n ? n : 1, sizeof(char *));
        *n_unknown = 0;
    }
    for (size_t i = 0; i < n && d->conn; i++) {
        bool unanswered = false;
        if (!split_ack_id(sub, ids[i], key, sizeof(key), &entry) ||
            !set_idle(d, sub, key, entry, owner, (uint32_t)strtoul(idle, NULL, 10), &unanswered)) {
            if (unanswered && d->conn) { /* its slot did not answer: not unknown */
                tse_dl_unreached_add(un, key);
                continue;
            }
            if (unknown && *unknown)
                (*unknown)[(*n_unknown)++] = ids[i];
            continue;
        }
        done++;
        if (delay_ms > deadline)
            add_extension(sub, key, entry, owner, delay_ms);
    }
    if (!extend) {
        int64_t due = tse_clock_ms() + delay_ms;
        tse_stats_add(d->stats, TSE_STAT_NACKED, done);
        sub->nacked += done;
        if (due < sub->next_claim_ms)
            sub->next_claim_ms = due;
    }
    return done;
}
