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
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/pbscan.h"
#include "common/alloc.h"
#include "common/clock.h"
#include "delivery/delivery_internal.h"
#include "domain/subscription.h"
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
    if (r == NULL)
        return;
    free(r->ack_id);
    free(r->stream_id);
    free(r->envelope);
    free(r);
}

static void ready_push(tse_subscriber *s, tse_ready *r)
{
    if (s->ready_tail)
        s->ready_tail->next = r;
    else
        s->ready = r;
    s->ready_tail = r;
}

/* The ack id of entry id of stream key, "<key>/<id>" (storage/ack_id.h),
 * malloc'd; NULL when out of memory. Built by hand: asprintf was ~1.5k
 * instructions per delivery, an eighth of the delivery path's. */
static char *ack_id_of(const char *key, const char *id)
{
    size_t key_len = strlen(key), id_len = strlen(id);
    char *ack_id = malloc(key_len + id_len + 2);

    if (ack_id == NULL)
        return NULL;
    memcpy(ack_id, key, key_len);
    ack_id[key_len] = '/';
    memcpy(ack_id + key_len + 1, id, id_len + 1);
    return ack_id;
}

/* A ready entry of stream key from an entry read or claimed: takes its id
 * and envelope (no copy); NULL when out of memory (the entry keeps them). */
static tse_ready *ready_of(const char *key, tse_group_entry *e)
{
    tse_ready *r = calloc(1, sizeof(*r));

    if (r == NULL)
        return NULL;
    if ((r->ack_id = ack_id_of(key, e->id)) == NULL) {
        free(r);
        return NULL;
    }
    r->stream_id = e->id;
    r->envelope = e->envelope;
    r->envelope_len = e->envelope_len;
    r->attempt = e->attempt;
    r->published_us = publish_time_us(r->envelope, r->envelope_len, r->stream_id);
    e->id = NULL;
    e->envelope = NULL;
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

/* Keeps ready entry r's ack id among the in-flight ones: the list takes
 * it over (r->ack_id is NULL after), so a delivery's id is not copied. */
static bool track(tse_subscriber *s, tse_ready *r)
{
    if (!inflight_room(s))
        return false;
    s->inflight[s->inflight_end++] = r->ack_id;
    s->n_inflight++;
    r->ack_id = NULL;
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
        if (s->sub && (s->credit * 4 >= s->sub->def->max_in_flight || s->n_inflight == 0))
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
        tse_ready *r = s->ready;
        s->ready = r->next;
        if (s->ready == NULL)
            s->ready_tail = NULL;
        r->next = NULL;
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

/* Delivers a batch to a stream subscriber and frees its entries. */
static void deliver(tse_subscriber *s, const tse_delivered *batch, tse_ready *const *sent, size_t n)
{
    s->ops->deliver(s->arg, batch, n);
    for (size_t i = 0; i < n; i++)
        tse_dl_ready_free(sent[i]);
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
    size_t n = 0, total = 0;
    int64_t now;

    if (s->is_pull)
        return take_for_pull(d, s);
    now = tse_wall_us();
    while (s->ready && s->credit > 0) {
        tse_ready *r = s->ready;
        /* The id, owned by the in-flight list from here on, lives until
         * its ack: past this delivery's callback. */
        const char *ack_id = r->ack_id;
        if (!track(s, r))
            break;
        s->ready = r->next;
        if (s->ready == NULL)
            s->ready_tail = NULL;
        s->credit--;
        batch[n] = (tse_delivered){ack_id, r->attempt, r->stream_id, r->envelope, r->envelope_len};
        sent[n++] = r;
        count_handed(d, s, r, now);
        if (n == 64) {
            deliver(s, batch, sent, n);
            total += n;
            n = 0;
        }
    }
    if (n > 0)
        deliver(s, batch, sent, n);
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

/*
 * XREADGROUP ... COUNT count STREAMS <the k streams of which[]> > ...;
 * entries appended to the ready list. full[i] (when non-NULL) tells whether
 * stream which[i] gave all count entries (it may have more). Returns the
 * number read, -1 on a Redis failure.
 */
static long read_streams(tse_delivery *d, tse_subscriber *s, const size_t *which, size_t k,
                         uint32_t count, bool *full)
{
    tse_sub *sub = s->sub;
    const char **keys = calloc(k ? k : 1, sizeof(*keys));
    size_t *per_stream = full ? calloc(k ? k : 1, sizeof(*per_stream)) : NULL;
    tse_group_entries got = {0};
    long n = -1;

    if (keys == NULL || (full && per_stream == NULL))
        goto out;
    for (size_t i = 0; i < k; i++)
        keys[i] = sub->streams[which[i]];
    /* Unavailable with the connection kept (a cluster's node down): the
     * slots that answered are delivered, the others read at a later poll
     * (what their reads may have taken is pending: claimed after the
     * deadline). */
    if (tse_group_read(d->conn, sub->def->name, s->consumer, keys, k, count, &got, per_stream) ==
            TSE_UNAVAILABLE &&
        tse_conn_lost(d->conn)) {
        tse_group_entries_cleanup(&got);
        goto out;
    }
    for (size_t i = 0; full && i < k; i++)
        full[i] = per_stream[i] >= count;
    n = ready_all(s, keys, &got);
out:
    free(keys);
    free(per_stream);
    return n;
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

/* A stream subscriber reads all streams of a level at once, up to its
 * credit from each; what comes beyond the credit waits in its ready list. */
static long read_level(tse_delivery *d, tse_subscriber *s, int prio)
{
    size_t *which = calloc(s->sub->n_streams ? s->sub->n_streams : 1, sizeof(*which));
    size_t k = which ? level_streams(s->sub, prio, 0, which) : 0;
    long got = which == NULL ? -1 : 0;

    if (k > 0)
        got = read_streams(d, s, which, k, s->credit, NULL);
    free(which);
    return got;
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

void tse_dl_fill(tse_delivery *d, tse_subscriber *s)
{
    tse_sub *sub = s->sub;
    size_t handed = 0;
    long got = 0;

    s->hungry = false;
    if (sub == NULL)
        return;
    handed += hand_out(d, s);
    /* Priority 1 first; a pull gathers over every level while credit lasts
     * and is answered once, with everything it took. */
    for (int prio = TSE_PRIORITY_MIN;
         prio <= TSE_PRIORITY_MAX && s->credit > 0 && s->ready == NULL && d->conn; prio++) {
        long n = s->is_pull ? read_level_for_pull(d, s, prio) : read_level(d, s, prio);
        if (n < 0)
            break;
        got += n;
        handed += hand_out(d, s);
    }
    if (s->is_pull) {
        /* With nothing taken it waits for a publish, a poll or its deadline
         * (or, when Redis failed, for the loop to end it with UNAVAILABLE). */
        if (s->n_taken > 0)
            pull_done(d, s);
        return;
    }
    if (d->conn == NULL)
        return;
    /* More may be waiting: look again at once while credit lasts. An empty
     * read is empty for the whole group: spare the other subscribers. */
    if (got > 0 && s->credit > 0)
        s->hungry = true;
    if (got == 0 && handed == 0)
        sub->drained = true;
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
    for (size_t i = 0; i < n; i++)
        key_of[i] = stream_of(sub, ids[i], &entry_of[i]);
    if (unknown == NULL) {
        group_by_stream(key_of, entry_of, n);
        /* Which run's slot did not answer is not known: the first id's
         * slot stands for them (the log says how many were applied). */
        if (tse_group_ack_runs(d->conn, sub->def->name, key_of, entry_of, n, &done) ==
                TSE_UNAVAILABLE &&
            d->conn != NULL && n > 0 && key_of[0] != NULL)
            tse_dl_unreached_add(un, key_of[0]);
        goto out;
    }
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
    tse_stats_add(d->stats, TSE_STAT_ACKED, done);
    sub->acked += done;
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
