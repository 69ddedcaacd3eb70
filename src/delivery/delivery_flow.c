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

/* The wall clock in microseconds, as events' timestamps are. */
static int64_t wall_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

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

/* A ready entry from one stream entry reply [id, [field, value, ...]]; NULL
 * when the entry has no envelope (deleted or foreign). */
static tse_ready *entry_to_ready(const char *key, const redisReply *e, uint32_t attempt)
{
    const redisReply *fields;
    tse_ready *r;

    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || e->element[0]->str == NULL)
        return NULL;
    fields = e->element[1];
    if (fields->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        const redisReply *f = fields->element[i], *v = fields->element[i + 1];
        if (f->str == NULL || strcmp(f->str, "event") != 0 || v->type != REDIS_REPLY_STRING)
            continue;
        r = calloc(1, sizeof(*r));
        if (r == NULL)
            return NULL;
        r->stream_id = strdup(e->element[0]->str);
        r->attempt = attempt;
        r->envelope = malloc(v->len ? v->len : 1);
        if (asprintf(&r->ack_id, "%s/%s", key, e->element[0]->str) < 0)
            r->ack_id = NULL;
        if (r->stream_id == NULL || r->envelope == NULL || r->ack_id == NULL) {
            tse_dl_ready_free(r);
            return NULL;
        }
        memcpy(r->envelope, v->str, v->len);
        r->envelope_len = v->len;
        r->published_us = publish_time_us(r->envelope, r->envelope_len, r->stream_id);
        return r;
    }
    return NULL;
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
        char **p = malloc(cap * sizeof(*p));
        if (p == NULL)
            return false;
        if (live > 0)
            memcpy(p, s->inflight + s->inflight_head, live * sizeof(*p));
        free(s->inflight);
        s->inflight = p;
        s->cap_inflight = cap;
    }
    s->inflight_head = 0;
    s->inflight_end = live;
    return true;
}

static bool track(tse_subscriber *s, const char *ack_id)
{
    char *copy;

    if (!inflight_room(s) || (copy = tse_strdup(ack_id)) == NULL)
        return false;
    s->inflight[s->inflight_end++] = copy;
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
    int64_t now = wall_us();

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
    now = wall_us();
    while (s->ready && s->credit > 0 && track(s, s->ready->ack_id)) {
        tse_ready *r = s->ready;
        s->ready = r->next;
        if (s->ready == NULL)
            s->ready_tail = NULL;
        s->credit--;
        batch[n] =
            (tse_delivered){r->ack_id, r->attempt, r->stream_id, r->envelope, r->envelope_len};
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
    const char **argv = calloc(7 + 2 * k, sizeof(*argv));
    size_t argc = 0;
    char count_buf[16];
    redisReply *r;
    long got = 0;

    if (argv == NULL)
        return -1;
    snprintf(count_buf, sizeof(count_buf), "%u", count);
    argv[argc++] = "XREADGROUP";
    argv[argc++] = "GROUP";
    argv[argc++] = sub->def->name;
    argv[argc++] = s->consumer;
    argv[argc++] = "COUNT";
    argv[argc++] = count_buf;
    argv[argc++] = "STREAMS";
    for (size_t i = 0; i < k; i++)
        argv[argc++] = sub->streams[which[i]];
    for (size_t i = 0; i < k; i++)
        argv[argc++] = ">";
    r = tse_dl_cmd(d, (int)argc, argv, NULL);
    free(argv);
    if (r == NULL)
        return -1;
    for (size_t i = 0; full && i < k; i++)
        full[i] = false;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        const redisReply *stream = r->element[i];
        if (stream->type != REDIS_REPLY_ARRAY || stream->elements != 2 ||
            stream->element[0]->str == NULL || stream->element[1]->type != REDIS_REPLY_ARRAY)
            continue;
        for (size_t j = 0; full && j < k; j++)
            if (strcmp(sub->streams[which[j]], stream->element[0]->str) == 0)
                full[j] = stream->element[1]->elements >= count;
        for (size_t j = 0; j < stream->element[1]->elements; j++) {
            tse_ready *ready =
                entry_to_ready(stream->element[0]->str, stream->element[1]->element[j], 1);
            if (ready) {
                ready_push(s, ready);
                got++;
            }
        }
    }
    freeReplyObject(r);
    return got;
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
         prio <= TSE_PRIORITY_MAX && s->credit > 0 && s->ready == NULL && d->ctx; prio++) {
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
    if (d->ctx == NULL)
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
    char dlq[TSE_SUBSCRIPTION_NAME_MAX + 32], att[24];
    tse_target_result target = TSE_TARGET_NONE;
    redisReply *e, *r;

    snprintf(dlq, sizeof(dlq), TSE_DLQ_PREFIX "%s", sub->def->name);
    snprintf(att, sizeof(att), "%lld", attempts);
    e = tse_dl_cmd(d, 4, (const char *[]){"XRANGE", key, id, id}, NULL);
    if (e == NULL)
        return false;
    if (e->type == REDIS_REPLY_ARRAY && e->elements == 1 &&
        e->element[0]->element[1]->type == REDIS_REPLY_ARRAY)
        target =
            tse_dl_target_publish(d, sub, key, id, attempts, reason, e->element[0]->element[1]);
    if (target == TSE_TARGET_FAILED) {
        freeReplyObject(e); /* left pending: the next scan tries again */
        return false;
    }
    if (target == TSE_TARGET_NONE && e->type == REDIS_REPLY_ARRAY && e->elements == 1 &&
        e->element[0]->element[1]->type == REDIS_REPLY_ARRAY) {
        const redisReply *f = e->element[0]->element[1];
        size_t argc = 0;
        const char **argv = calloc(f->elements + 11, sizeof(*argv));
        size_t *lens = calloc(f->elements + 11, sizeof(*lens));
        if (argv && lens) {
            const char *head[] = {"XADD", dlq,          "*",   "dlq_stream",
                                  key,    "dlq_id",     id,    "dlq_attempts",
                                  att,    "dlq_reason", reason};
            for (size_t i = 0; i < 11; i++) {
                argv[argc] = head[i];
                lens[argc++] = strlen(head[i]);
            }
            for (size_t i = 0; i < f->elements; i++) {
                argv[argc] = f->element[i]->str;
                lens[argc++] = f->element[i]->len;
            }
            r = tse_dl_cmd(d, (int)argc, argv, lens);
            if (r)
                freeReplyObject(r);
        }
        free(argv);
        free(lens);
    }
    freeReplyObject(e);
    if (d->ctx == NULL)
        return false;
    r = tse_dl_cmd(d, 4, (const char *[]){"XACK", key, sub->def->name, id}, NULL);
    if (r == NULL)
        return false;
    freeReplyObject(r);
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
    const char **argv = calloc(n + 5, sizeof(*argv));
    char idle[24];
    redisReply *r;
    size_t argc = 0;

    if (argv == NULL)
        return;
    snprintf(idle, sizeof(idle), "%u", sub->def->ack_deadline_ms);
    argv[argc++] = "XCLAIM";
    argv[argc++] = key;
    argv[argc++] = sub->def->name;
    argv[argc++] = target->consumer;
    argv[argc++] = idle;
    for (size_t i = 0; i < n; i++)
        argv[argc++] = ids[i];
    r = tse_dl_cmd(d, (int)argc, argv, NULL);
    free(argv);
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        const redisReply *e = r->element[i];
        long long count = 1;
        for (size_t j = 0; e->type == REDIS_REPLY_ARRAY && j < n; j++)
            if (e->elements == 2 && e->element[0]->str && strcmp(e->element[0]->str, ids[j]) == 0)
                count = counts[j];
        tse_ready *ready = entry_to_ready(key, e, (uint32_t)count + 1);
        if (ready)
            ready_push(target, ready);
    }
    if (r)
        freeReplyObject(r);
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
    char idle[24], count[16];
    const char *ids[TSE_CLAIM_BATCH];
    long long counts[TSE_CLAIM_BATCH];
    size_t n = 0;
    uint32_t max = sub->def->max_delivery_attempts;
    redisReply *r;

    snprintf(idle, sizeof(idle), "%u", sub->def->ack_deadline_ms);
    snprintf(count, sizeof(count), "%d", TSE_CLAIM_BATCH);
    r = tse_dl_cmd(d, 8,
                   (const char *[]){"XPENDING", key, sub->def->name, "IDLE", idle, "-", "+", count},
                   NULL);
    if (r == NULL)
        return;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements && d->ctx; i++) {
        const redisReply *p = r->element[i];
        if (p->type != REDIS_REPLY_ARRAY || p->elements != 4)
            continue;
        long long delivered = p->element[3]->integer;
        if (max > 0 && delivered >= (long long)max) {
            dead_letter(d, sub, key, p->element[0]->str, delivered, TSE_DLQ_REASON_MAX_ATTEMPTS);
        } else if (p->element[2]->integer < retry_idle(sub->def, delivered)) {
            continue; /* still backing off */
        } else if (target && n < target->credit) {
            ids[n] = p->element[0]->str;
            counts[n++] = delivered;
        }
    }
    if (n > 0 && d->ctx)
        claim(d, sub, target, key, ids, counts, n);
    freeReplyObject(r);
}

void tse_dl_claim_scan(tse_delivery *d, tse_sub *sub, tse_subscriber *target)
{
    for (size_t i = 0; d->ctx && i < sub->n_streams; i++) {
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
    redisReply *r = tse_dl_cmd(
        d, 6, (const char *[]){"XPENDING", key, sub->def->name, entry, entry, "1"}, NULL);
    long long count = 0;

    if (r == NULL)
        return 0;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
        r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements == 4 &&
        r->element[0]->element[3]->type == REDIS_REPLY_INTEGER)
        count = r->element[0]->element[3]->integer;
    freeReplyObject(r);
    return count;
}

uint32_t tse_dl_reject_ids(tse_delivery *d, tse_sub *sub, char *const *ids, size_t n,
                           char ***unknown, size_t *n_unknown)
{
    char key[256];
    const char *entry;
    uint32_t done = 0;

    if (unknown) {
        *unknown = calloc(n ? n : 1, sizeof(char *));
        *n_unknown = 0;
    }
    for (size_t i = 0; i < n && d->ctx; i++) {
        long long count = 0;
        if (split_ack_id(sub, ids[i], key, sizeof(key), &entry))
            count = pending_count(d, sub, key, entry);
        if (count > 0 && dead_letter(d, sub, key, entry, count, TSE_DLQ_REASON_REJECTED)) {
            done++;
            continue;
        }
        if (unknown && *unknown)
            (*unknown)[(*n_unknown)++] = ids[i];
    }
    return done;
}

/*
 * Acks of a live stream, which want no answer per id: one XACK per run of
 * ids of one stream (an ack message's ids are mostly of one stream),
 * pipelined, instead of one XACK per id. Returns how many Redis acked.
 */
static uint32_t ack_runs(tse_delivery *d, tse_sub *sub, char *const *ids, size_t n)
{
    const char **argv = calloc(n + 3, sizeof(*argv));
    char key[256], next[256];
    const char *entry;
    size_t sent = 0, i = 0;
    uint32_t done = 0;

    if (argv == NULL)
        return 0; /* not acked: delivered again after the deadline */
    while (i < n && d->ctx) {
        int argc = 0;
        if (!split_ack_id(sub, ids[i++], key, sizeof(key), &entry))
            continue;
        argv[argc++] = "XACK";
        argv[argc++] = key;
        argv[argc++] = sub->def->name;
        argv[argc++] = entry;
        for (; i < n; i++) {
            if (!split_ack_id(sub, ids[i], next, sizeof(next), &entry))
                continue;
            if (strcmp(next, key) != 0)
                break;
            argv[argc++] = entry;
        }
        if (redisAppendCommandArgv(d->ctx, argc, argv, NULL) == REDIS_OK)
            sent++;
    }
    for (size_t k = 0; k < sent && d->ctx; k++) {
        redisReply *r = NULL;
        if (redisGetReply(d->ctx, (void **)&r) != REDIS_OK) {
            tse_dl_disconnect(d, "redis: connection lost while acking");
            break;
        }
        if (r && r->type == REDIS_REPLY_INTEGER && r->integer > 0)
            done += (uint32_t)r->integer;
        if (r)
            freeReplyObject(r);
    }
    free(argv);
    return done;
}

uint32_t tse_dl_ack_ids(tse_delivery *d, tse_sub *sub, char *const *ids, size_t n, char ***unknown,
                        size_t *n_unknown)
{
    char key[256];
    const char *entry;
    bool *sent = NULL;
    uint32_t done = 0;

    if (unknown == NULL) {
        done = d->ctx ? ack_runs(d, sub, ids, n) : 0;
        goto out;
    }
    sent = calloc(n ? n : 1, sizeof(*sent));
    if (unknown) {
        *unknown = calloc(n ? n : 1, sizeof(char *));
        *n_unknown = 0;
    }
    if (sent == NULL || d->ctx == NULL)
        goto out;
    /* One XACK per id, pipelined: one round trip, and a result per id
     * (Acknowledge answers the ids that were not pending). */
    for (size_t i = 0; i < n; i++) {
        if (!split_ack_id(sub, ids[i], key, sizeof(key), &entry))
            continue;
        const char *argv[] = {"XACK", key, sub->def->name, entry};
        sent[i] = redisAppendCommandArgv(d->ctx, 4, argv, NULL) == REDIS_OK;
    }
    for (size_t i = 0; i < n && d->ctx; i++) {
        redisReply *r = NULL;
        if (sent[i] && redisGetReply(d->ctx, (void **)&r) != REDIS_OK) {
            tse_dl_disconnect(d, "redis: connection lost while acking");
            break;
        }
        if (r && r->type == REDIS_REPLY_INTEGER && r->integer == 1)
            done++;
        else if (unknown && *unknown)
            (*unknown)[(*n_unknown)++] = ids[i];
        if (r)
            freeReplyObject(r);
    }
out:
    free(sent);
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
 * is still pending. */
static bool set_idle(tse_delivery *d, tse_sub *sub, const char *key, const char *entry,
                     const char *owner, uint32_t idle_ms)
{
    char idle[24];
    redisReply *r;
    bool pending;

    snprintf(idle, sizeof(idle), "%u", idle_ms);
    r = tse_dl_cmd(
        d, 9,
        (const char *[]){"XCLAIM", key, sub->def->name, owner, "0", entry, "IDLE", idle, "JUSTID"},
        NULL);
    pending = r && r->type == REDIS_REPLY_ARRAY && r->elements == 1;
    if (r)
        freeReplyObject(r);
    return pending;
}

void tse_dl_extensions(tse_delivery *d, tse_sub *sub)
{
    uint32_t deadline = sub->def->ack_deadline_ms;
    int64_t now = tse_clock_ms();
    tse_ext **p = &sub->ext;

    while (*p && d->ctx) {
        tse_ext *e = *p;
        int64_t left = e->until_ms - now;
        if (left > (int64_t)deadline) {
            /* Still far: keep it from expiring (acked entries drop out). */
            if (set_idle(d, sub, e->key, e->entry, e->owner, 0)) {
                p = &e->next;
                continue;
            }
        } else {
            set_idle(d, sub, e->key, e->entry, e->owner,
                     left <= 0 ? deadline : deadline - (uint32_t)left);
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
                         size_t *n_unknown)
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
    for (size_t i = 0; i < n && d->ctx; i++) {
        if (!split_ack_id(sub, ids[i], key, sizeof(key), &entry) ||
            !set_idle(d, sub, key, entry, owner, (uint32_t)strtoul(idle, NULL, 10))) {
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
