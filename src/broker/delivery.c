/*
 * delivery.c - the delivery engine's thread, its Redis connection and the
 * request queue through which other threads reach it. See delivery.h.
 *
 * Invariants: only the engine thread touches engine state and the Redis
 * connection; a request is answered (its callback called) exactly once; a
 * subscriber gets `released` exactly once, as its last callback, after
 * which the engine never touches it again.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "broker/delivery_internal.h"
#include "domain/subscription.h"

int64_t tse_dl_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ===================== requests from other threads ====================== */

static void push(tse_delivery *d, tse_req *r)
{
    pthread_mutex_lock(&d->mu);
    if (d->tail)
        d->tail->next = r;
    else
        d->head = r;
    d->tail = r;
    pthread_cond_signal(&d->cond);
    pthread_mutex_unlock(&d->mu);
}

static tse_req *req_new(tse_req_kind kind)
{
    tse_req *r = calloc(1, sizeof(*r));

    if (r != NULL)
        r->kind = kind;
    return r;
}

static char **copy_ids(char *const *ids, size_t n)
{
    char **out = calloc(n ? n : 1, sizeof(*out));

    for (size_t i = 0; out && i < n; i++)
        out[i] = strdup(ids[i] ? ids[i] : "");
    return out;
}

static void req_free(tse_req *r)
{
    if (r == NULL)
        return;
    if (r->spec)
        protobuf_c_message_free_unpacked(&r->spec->base, NULL);
    for (size_t i = 0; r->ids && i < r->n; i++)
        free(r->ids[i]);
    free(r->ids);
    free(r->name);
    free(r);
}

/* A deep copy of a subscription spec (pack, unpack). */
static Tracseq__Events__V1__Subscription *copy_spec(const Tracseq__Events__V1__Subscription *spec)
{
    size_t len = protobuf_c_message_get_packed_size(&spec->base);
    uint8_t *buf = malloc(len ? len : 1);
    Tracseq__Events__V1__Subscription *out = NULL;

    if (buf == NULL)
        return NULL;
    protobuf_c_message_pack(&spec->base, buf);
    out = tracseq__events__v1__subscription__unpack(NULL, len, buf);
    free(buf);
    return out;
}

void tse_delivery_notify(tse_delivery *d, const char *stream_key)
{
    /* Nobody to deliver to: a wake-up per publish would cost the engine
     * thread (and Redis, in discovery) for nothing; subscribers that attach
     * later read what is there anyway. Otherwise only the first notification
     * since the engine last looked takes the lock: publishing at full speed
     * costs one atomic exchange per event. */
    if (d == NULL || !atomic_load_explicit(&d->listening, memory_order_relaxed) ||
        atomic_exchange(&d->notified, true))
        return;
    pthread_mutex_lock(&d->mu);
    pthread_cond_signal(&d->cond);
    pthread_mutex_unlock(&d->mu);
}

tse_subscriber *tse_delivery_attach(tse_delivery *d, const Tracseq__Events__V1__Subscription *spec,
                                    const char *name, const char *consumer,
                                    const tse_subscriber_ops *ops, void *arg)
{
    tse_subscriber *s = calloc(1, sizeof(*s));
    tse_req *r = req_new(REQ_ATTACH);

    if (s == NULL || r == NULL) {
        free(s);
        free(r);
        return NULL;
    }
    s->ops = ops;
    s->arg = arg;
    if (consumer != NULL && consumer[0] != '\0')
        snprintf(s->consumer, sizeof(s->consumer), "%s", consumer);
    else
        snprintf(s->consumer, sizeof(s->consumer), "%s-%u", d->instance,
                 atomic_fetch_add(&d->next_consumer, 1));
    r->s = s;
    r->spec = spec ? copy_spec(spec) : NULL;
    r->name = name ? strdup(name) : NULL;
    push(d, r);
    return s;
}

static void push_ids(tse_delivery *d, tse_req_kind kind, tse_subscriber *s, char *const *ids,
                     size_t n, uint32_t num)
{
    tse_req *r = req_new(kind);

    if (r == NULL)
        return;
    r->s = s;
    r->ids = copy_ids(ids, n);
    r->n = r->ids ? n : 0;
    r->num = num;
    push(d, r);
}

void tse_delivery_detach(tse_delivery *d, tse_subscriber *s)
{
    push_ids(d, REQ_DETACH, s, NULL, 0, 0);
}

void tse_delivery_ack(tse_delivery *d, tse_subscriber *s, char *const *ids, size_t n)
{
    push_ids(d, REQ_ACK, s, ids, n, 0);
}

void tse_delivery_nack(tse_delivery *d, tse_subscriber *s, char *const *ids, size_t n,
                       uint32_t delay_ms)
{
    push_ids(d, REQ_NACK, s, ids, n, delay_ms);
}

void tse_delivery_extend(tse_delivery *d, tse_subscriber *s, char *const *ids, size_t n,
                         uint32_t deadline_ms)
{
    push_ids(d, REQ_EXTEND, s, ids, n, deadline_ms);
}

void tse_delivery_create_subscription(tse_delivery *d,
                                      const Tracseq__Events__V1__Subscription *spec,
                                      tse_subscription_cb cb, void *arg)
{
    tse_req *r = req_new(REQ_CREATE);

    r->spec = copy_spec(spec);
    r->sub_cb = cb;
    r->arg = arg;
    push(d, r);
}

void tse_delivery_get_subscriptions(tse_delivery *d, const char *name, tse_subscription_cb cb,
                                    void *arg)
{
    tse_req *r = req_new(REQ_GET);

    r->name = name ? strdup(name) : NULL;
    r->sub_cb = cb;
    r->arg = arg;
    push(d, r);
}

void tse_delivery_delete_subscription(tse_delivery *d, const char *name, tse_subscription_cb cb,
                                      void *arg)
{
    tse_req *r = req_new(REQ_DELETE);

    r->name = strdup(name ? name : "");
    r->sub_cb = cb;
    r->arg = arg;
    push(d, r);
}

void tse_delivery_acknowledge(tse_delivery *d, const char *subscription, char *const *ack_ids,
                              size_t n, tse_ack_cb cb, void *arg)
{
    tse_req *r = req_new(REQ_ACKNOWLEDGE);

    r->name = strdup(subscription ? subscription : "");
    r->ids = copy_ids(ack_ids, n);
    r->n = n;
    r->ack_cb = cb;
    r->arg = arg;
    push(d, r);
}

void tse_delivery_nack_ids(tse_delivery *d, const char *subscription, char *const *ack_ids,
                           size_t n, uint32_t delay_ms, tse_ack_cb cb, void *arg)
{
    tse_req *r = req_new(REQ_NACK_IDS);

    r->name = strdup(subscription ? subscription : "");
    r->ids = copy_ids(ack_ids, n);
    r->n = n;
    r->num = delay_ms;
    r->ack_cb = cb;
    r->arg = arg;
    push(d, r);
}

void tse_delivery_pull(tse_delivery *d, const char *subscription, const char *consumer,
                       uint32_t max, uint32_t wait_ms, uint64_t pull_id, tse_pull_cb cb, void *arg)
{
    tse_req *r = req_new(REQ_PULL);

    r->name = strdup(subscription ? subscription : "");
    r->ids = copy_ids((char *const[]){(char *)(consumer ? consumer : "")}, 1);
    r->n = 1;
    r->num = max;
    r->wait_ms = wait_ms;
    r->pull_id = pull_id;
    r->pull_cb = cb;
    r->arg = arg;
    push(d, r);
}

void tse_delivery_pull_cancel(tse_delivery *d, uint64_t pull_id)
{
    tse_req *r = req_new(REQ_PULL_CANCEL);

    r->pull_id = pull_id;
    push(d, r);
}

/* ===================== the Redis connection ============================= */

redisReply *tse_dl_cmd(tse_delivery *d, int argc, const char **argv, const size_t *lens)
{
    redisReply *r;

    if (d->ctx == NULL)
        return NULL;
    r = redisCommandArgv(d->ctx, argc, argv, lens);
    if (r == NULL) {
        char why[256];
        snprintf(why, sizeof(why), "redis: %s", d->ctx->errstr[0] ? d->ctx->errstr : "I/O error");
        tse_dl_disconnect(d, why);
    }
    return r;
}

static bool connect_redis(tse_delivery *d)
{
    const tse_redis_target *t = &d->opts.target;
    struct timeval tv = {d->opts.timeout_ms / 1000, (d->opts.timeout_ms % 1000) * 1000};
    redisReply *r = NULL;

    d->ctx = redisConnectWithTimeout(t->host, t->port, tv);
    if (d->ctx == NULL || d->ctx->err || redisSetTimeout(d->ctx, tv) != REDIS_OK)
        goto fail;
    redisEnableKeepAlive(d->ctx);
    if (t->password[0] != '\0') {
        if (t->username[0] != '\0')
            r = redisCommand(d->ctx, "AUTH %s %s", t->username, t->password);
        else
            r = redisCommand(d->ctx, "AUTH %s", t->password);
        if (r == NULL || r->type == REDIS_REPLY_ERROR)
            goto fail;
        freeReplyObject(r);
        r = NULL;
    }
    if (t->db != 0) {
        r = redisCommand(d->ctx, "SELECT %d", t->db);
        if (r == NULL || r->type == REDIS_REPLY_ERROR)
            goto fail;
        freeReplyObject(r);
    }
    return true;
fail:
    if (r)
        freeReplyObject(r);
    redisFree(d->ctx);
    d->ctx = NULL;
    return false;
}

void tse_dl_release(tse_delivery *d, tse_subscriber *s)
{
    while (s->ready) {
        tse_ready *next = s->ready->next;
        tse_dl_ready_free(s->ready);
        s->ready = next;
    }
    for (size_t i = s->inflight_head; i < s->inflight_end; i++)
        free(s->inflight[i]);
    free(s->inflight);
    if (s->counted)
        tse_stats_add(d->stats, TSE_STAT_SUBSCRIBERS, -1);
    if (s->ops && s->ops->released)
        s->ops->released(s->arg);
    free(s);
}

void tse_dl_disconnect(tse_delivery *d, const char *why)
{
    redisFree(d->ctx);
    d->ctx = NULL;
    d->next_connect_ms = tse_dl_now_ms() + d->backoff_ms;
    snprintf(d->lost_why, sizeof(d->lost_why), "%s", why);
    /* Subscriptions are dropped by the loop, between two steps: callers up
     * the stack may still hold pointers to them. */
    d->lost = true;
}

/* After a lost connection: streams end with UNAVAILABLE (clients reconnect;
 * what they did not ack is pending in Redis and comes back). */
static void drop_all(tse_delivery *d)
{
    tse_error err;

    if (!d->lost)
        return;
    d->lost = false;
    tse_error_set(&err, TSE_UNAVAILABLE, NULL, "%s", d->lost_why);
    while (d->subs) {
        tse_sub *sub = d->subs;
        d->subs = sub->next;
        sub->next = NULL;
        tse_dl_forget(d, sub, &err);
    }
}

/* ===================== request handling ================================= */

static void fail_req(tse_req *r, const tse_error *err)
{
    switch (r->kind) {
    case REQ_CREATE:
    case REQ_GET:
    case REQ_DELETE: r->sub_cb(r->arg, err, NULL, 0); break;
    case REQ_ACKNOWLEDGE:
    case REQ_NACK_IDS: r->ack_cb(r->arg, err, 0, NULL, 0); break;
    case REQ_PULL: r->pull_cb(r->arg, err, NULL, 0); break;
    default: break;
    }
}

static void attach(tse_delivery *d, tse_req *r)
{
    tse_subscriber *s = r->s;
    tse_error err;
    tse_sub *sub;

    tse_error_clear(&err);
    sub = r->spec ? tse_dl_create(d, r->spec, &err) : tse_dl_load(d, r->name, &err);
    if (sub == NULL) {
        /* Kept until the transport detaches it: released is the last call. */
        s->ops->attached(s->arg, &err, NULL);
        return;
    }
    s->sub = sub;
    s->credit = sub->def->max_in_flight;
    s->hungry = true;
    s->next = sub->subscribers;
    sub->subscribers = s;
    tse_stats_add(d->stats, TSE_STAT_SUBSCRIBERS, 1);
    s->counted = true;
    s->ops->attached(s->arg, &err, sub->def);
    /* Expired deliveries of earlier subscribers are this one's first work. */
    sub->next_claim_ms = 0;
}

static void unlink_subscriber(tse_subscriber *s)
{
    if (s->sub == NULL)
        return;
    for (tse_subscriber **p = &s->sub->subscribers; *p; p = &(*p)->next) {
        if (*p == s) {
            *p = s->next;
            break;
        }
    }
}

static void detach(tse_delivery *d, tse_subscriber *s)
{
    unlink_subscriber(s);
    tse_dl_release(d, s);
}

static void get(tse_delivery *d, tse_req *r)
{
    Tracseq__Events__V1__Subscription **out = NULL;
    size_t n = 0;
    tse_error err;

    tse_error_clear(&err);
    if (r->name != NULL) {
        tse_sub *sub = tse_dl_load(d, r->name, &err);
        if (sub == NULL) {
            r->sub_cb(r->arg, &err, NULL, 0);
            return;
        }
        out = calloc(1, sizeof(*out));
        out[n++] = tse_dl_describe(d, sub);
    } else {
        const char *argv[] = {"HKEYS", TSE_SUBS_KEY};
        redisReply *keys = tse_dl_cmd(d, 2, argv, NULL);
        if (keys == NULL || keys->type != REDIS_REPLY_ARRAY) {
            tse_error_set(&err, TSE_UNAVAILABLE, NULL, "Redis is unavailable");
            if (keys)
                freeReplyObject(keys);
            r->sub_cb(r->arg, &err, NULL, 0);
            return;
        }
        out = calloc(keys->elements + 1, sizeof(*out));
        for (size_t i = 0; out && i < keys->elements; i++) {
            tse_sub *sub = tse_dl_load(d, keys->element[i]->str, &err);
            if (sub != NULL)
                out[n++] = tse_dl_describe(d, sub);
        }
        freeReplyObject(keys);
        tse_error_clear(&err);
    }
    r->sub_cb(r->arg, &err, (const Tracseq__Events__V1__Subscription *const *)out, n);
    for (size_t i = 0; i < n; i++)
        if (out[i])
            protobuf_c_message_free_unpacked(&out[i]->base, NULL);
    free(out);
}

static void create(tse_delivery *d, tse_req *r)
{
    tse_error err;
    tse_sub *sub;

    tse_error_clear(&err);
    sub = tse_dl_create(d, r->spec, &err);
    if (sub == NULL) {
        r->sub_cb(r->arg, &err, NULL, 0);
        return;
    }
    Tracseq__Events__V1__Subscription *desc = tse_dl_describe(d, sub);
    r->sub_cb(r->arg, &err, (const Tracseq__Events__V1__Subscription *const *)&desc, 1);
    protobuf_c_message_free_unpacked(&desc->base, NULL);
}

static void acknowledge(tse_delivery *d, tse_req *r)
{
    char **unknown = NULL;
    size_t n_unknown = 0;
    uint32_t done;
    tse_error err;
    tse_sub *sub;

    tse_error_clear(&err);
    sub = tse_dl_load(d, r->name, &err);
    if (sub == NULL) {
        r->ack_cb(r->arg, &err, 0, NULL, 0);
        return;
    }
    if (r->kind == REQ_ACKNOWLEDGE) {
        done = tse_dl_ack_ids(d, sub, r->ids, r->n, &unknown, &n_unknown);
    } else {
        done = tse_dl_nack_ids(d, sub, NULL, r->ids, r->n, r->num, false, &unknown, &n_unknown);
    }
    /* Ids a live stream subscriber holds give its credit back too. */
    for (tse_subscriber *s = sub->subscribers; s; s = s->next)
        for (size_t i = 0; !s->is_pull && i < r->n; i++)
            tse_dl_forget_inflight(s, r->ids[i]);
    if (d->ctx == NULL)
        tse_error_set(&err, TSE_UNAVAILABLE, NULL, "Redis is unavailable");
    r->ack_cb(r->arg, &err, done, (const char *const *)unknown, n_unknown);
    free(unknown);
}

static void pull(tse_delivery *d, tse_req *r)
{
    tse_subscriber *s;
    tse_error err;
    tse_sub *sub;

    tse_error_clear(&err);
    sub = tse_dl_load(d, r->name, &err);
    s = sub ? calloc(1, sizeof(*s)) : NULL;
    if (s == NULL) {
        if (sub != NULL)
            tse_error_set(&err, TSE_NOMEM, NULL, "out of memory");
        r->pull_cb(r->arg, &err, NULL, 0);
        return;
    }
    s->is_pull = true;
    s->sub = sub;
    s->credit = r->num;
    s->hungry = true;
    s->pull_cb = r->pull_cb;
    s->pull_arg = r->arg;
    s->pull_deadline_ms = tse_dl_now_ms() + r->wait_ms;
    s->pull_id = r->pull_id;
    if (r->ids[0][0] != '\0')
        snprintf(s->consumer, sizeof(s->consumer), "%s", r->ids[0]);
    else
        snprintf(s->consumer, sizeof(s->consumer), "%s-pull", d->instance);
    s->next = sub->subscribers;
    sub->subscribers = s;
    /* Expired deliveries first, then new events. */
    tse_dl_claim_scan(d, sub, s);
    tse_dl_fill(d, s);
}

/* Ends a waiting pull whose caller went away, so it holds nothing more (it
 * would otherwise read events for nobody until its wait ran out). */
static void pull_cancel(tse_delivery *d, uint64_t pull_id)
{
    tse_error err;

    tse_error_set(&err, TSE_CANCELLED, NULL, "the pull was cancelled");
    for (tse_sub *sub = d->subs; sub; sub = sub->next) {
        for (tse_subscriber **p = &sub->subscribers; *p; p = &(*p)->next) {
            tse_subscriber *s = *p;
            if (!s->is_pull || s->pull_id != pull_id)
                continue;
            *p = s->next;
            s->pull_cb(s->pull_arg, &err, NULL, 0);
            tse_dl_release(d, s);
            return;
        }
    }
}

static void handle(tse_delivery *d, tse_req *r)
{
    tse_error err;

    if (d->ctx == NULL && r->kind != REQ_DETACH && r->kind != REQ_PULL_CANCEL) {
        tse_error_set(&err, TSE_UNAVAILABLE, NULL, "Redis is unavailable; retry later");
        if (r->kind == REQ_ATTACH) {
            r->s->ops->attached(r->s->arg, &err, NULL); /* detach releases it */
        } else if (r->kind != REQ_ACK && r->kind != REQ_NACK && r->kind != REQ_EXTEND) {
            fail_req(r, &err);
        }
        return;
    }
    switch (r->kind) {
    case REQ_ATTACH: attach(d, r); break;
    case REQ_DETACH: detach(d, r->s); break;
    case REQ_ACK:
        if (r->s->sub)
            tse_dl_ack_ids(d, r->s->sub, r->ids, r->n, NULL, NULL);
        for (size_t i = 0; i < r->n; i++)
            tse_dl_forget_inflight(r->s, r->ids[i]);
        break;
    case REQ_NACK:
    case REQ_EXTEND:
        if (r->s->sub)
            tse_dl_nack_ids(d, r->s->sub, r->s->consumer, r->ids, r->n, r->num,
                            r->kind == REQ_EXTEND, NULL, NULL);
        for (size_t i = 0; r->kind == REQ_NACK && i < r->n; i++)
            tse_dl_forget_inflight(r->s, r->ids[i]);
        break;
    case REQ_CREATE: create(d, r); break;
    case REQ_GET: get(d, r); break;
    case REQ_DELETE:
        tse_error_clear(&err);
        tse_dl_delete(d, r->name, &err);
        r->sub_cb(r->arg, &err, NULL, 0);
        break;
    case REQ_ACKNOWLEDGE:
    case REQ_NACK_IDS: acknowledge(d, r); break;
    case REQ_PULL: pull(d, r); break;
    case REQ_PULL_CANCEL: pull_cancel(d, r->pull_id); break;
    }
}

/* ===================== the engine loop ================================== */

/* Subscribers that have credit look for work: all of them on a local
 * publish or at each poll. */
static void make_hungry(tse_delivery *d)
{
    for (tse_sub *sub = d->subs; sub; sub = sub->next) {
        sub->drained = false;
        for (tse_subscriber *s = sub->subscribers; s; s = s->next)
            if (s->credit > 0)
                s->hungry = true;
    }
}

/* Pull requests whose wait is over are answered empty. */
static void expire_pulls(tse_delivery *d, int64_t now)
{
    for (tse_sub *sub = d->subs; sub; sub = sub->next) {
        tse_subscriber **p = &sub->subscribers;
        while (*p) {
            tse_subscriber *s = *p;
            if (s->is_pull && now >= s->pull_deadline_ms) {
                *p = s->next;
                s->pull_cb(s->pull_arg, NULL, NULL, 0);
                tse_dl_release(d, s);
                continue;
            }
            p = &s->next;
        }
    }
}

/* The first subscriber of a list reads first: rotate it to the end so that
 * subscribers of one subscription take turns. */
static void rotate(tse_sub *sub)
{
    tse_subscriber *first = sub->subscribers, *last;

    if (first == NULL || first->next == NULL)
        return;
    sub->subscribers = first->next;
    for (last = sub->subscribers; last->next; last = last->next)
        ;
    last->next = first;
    first->next = NULL;
}

static void work(tse_delivery *d, int64_t now)
{
    if (now >= d->next_discover_ms) {
        tse_dl_discover(d);
        d->next_discover_ms = now + TSE_DISCOVER_MS;
        tse_dl_reap(d);
    }
    for (tse_sub *sub = d->subs; d->ctx && sub; sub = sub->next) {
        if (now >= sub->next_claim_ms && (sub->subscribers || sub->ext)) {
            tse_dl_extensions(d, sub);
            tse_dl_claim_scan(d, sub, NULL);
            int64_t every = sub->def->ack_deadline_ms / 4;
            sub->next_claim_ms = now + (every < 50 ? 50 : every > 1000 ? 1000 : every);
        }
    }
    for (tse_sub *sub = d->subs; d->ctx && sub; sub = sub->next) {
        tse_subscriber *s = sub->subscribers, *next;
        for (; d->ctx && s; s = next) {
            next = s->next; /* a pull may complete and leave the list */
            if (sub->drained && s->ready == NULL)
                s->hungry = false; /* the group has nothing new this round */
            else if (s->hungry && (s->credit > 0 || s->ready))
                tse_dl_fill(d, s);
        }
        rotate(sub);
    }
    expire_pulls(d, now);
}

/* The next moment something is due, as a wait bound. */
static int64_t next_due(tse_delivery *d, int64_t now)
{
    int64_t due = d->ctx ? d->next_poll_ms : d->next_connect_ms;

    for (tse_sub *sub = d->subs; sub; sub = sub->next) {
        if ((sub->subscribers || sub->ext) && sub->next_claim_ms < due)
            due = sub->next_claim_ms;
        for (tse_subscriber *s = sub->subscribers; s; s = s->next)
            if (s->is_pull && s->pull_deadline_ms < due)
                due = s->pull_deadline_ms;
    }
    if (d->next_discover_ms < due)
        due = d->next_discover_ms;
    return due < now ? now : due;
}

static void wait_until(tse_delivery *d, int64_t due_ms)
{
    int64_t delta = due_ms - tse_dl_now_ms();
    struct timespec ts;

    if (delta <= 0 || d->head || d->stop || atomic_load(&d->notified))
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += delta / 1000;
    ts.tv_nsec += (delta % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&d->cond, &d->mu, &ts);
}

static void reconnect(tse_delivery *d, int64_t now)
{
    if (d->ctx != NULL || now < d->next_connect_ms)
        return;
    if (connect_redis(d)) {
        d->backoff_ms = 100;
        d->next_discover_ms = 0;
        return;
    }
    d->next_connect_ms = now + d->backoff_ms;
    d->backoff_ms = d->backoff_ms * 2 > 2000 ? 2000 : d->backoff_ms * 2;
}

static bool anyone_listening(const tse_delivery *d)
{
    for (const tse_sub *sub = d->subs; sub; sub = sub->next)
        if (sub->subscribers != NULL)
            return true;
    return false;
}

static void *engine_main(void *arg)
{
    tse_delivery *d = arg;
    sigset_t all;

    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    for (;;) {
        tse_req *batch;
        int64_t now = tse_dl_now_ms();

        pthread_mutex_lock(&d->mu);
        wait_until(d, next_due(d, now));
        batch = d->head;
        d->head = d->tail = NULL;
        bool stop = d->stop;
        pthread_mutex_unlock(&d->mu);
        if (stop) {
            /* Requests queued at stop are answered by destroy. */
            pthread_mutex_lock(&d->mu);
            d->head = batch;
            for (tse_req *r = batch; r; r = r->next)
                d->tail = r;
            pthread_mutex_unlock(&d->mu);
            break;
        }
        now = tse_dl_now_ms();
        reconnect(d, now);
        while (batch) {
            tse_req *next = batch->next;
            handle(d, batch);
            req_free(batch);
            drop_all(d);
            batch = next;
        }
        bool notified = atomic_exchange(&d->notified, false);
        if (notified && d->ctx) {
            /* A local publish may be of a new type: look soon, at most
             * every 100 ms. */
            if (now - d->last_discover_ms >= 100)
                tse_dl_discover(d);
            else if (d->next_discover_ms > d->last_discover_ms + 100)
                d->next_discover_ms = d->last_discover_ms + 100;
        }
        if (notified || now >= d->next_poll_ms) {
            make_hungry(d);
            if (now >= d->next_poll_ms)
                d->next_poll_ms = now + d->opts.poll_ms;
        }
        if (d->ctx)
            work(d, tse_dl_now_ms());
        drop_all(d);
        atomic_store(&d->listening, anyone_listening(d));
    }
    return NULL;
}

tse_status tse_delivery_create(const tse_delivery_options *opts, tse_stats *stats,
                               tse_delivery **out, tse_error *err)
{
    tse_delivery *d = calloc(1, sizeof(*d));

    if (d == NULL)
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory");
    d->opts = *opts;
    snprintf(d->instance, sizeof(d->instance), "%s", opts->instance ? opts->instance : "tse");
    d->opts.instance = d->instance;
    if (d->opts.poll_ms <= 0)
        d->opts.poll_ms = 100;
    d->stats = stats;
    d->backoff_ms = 100;
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cond, NULL);
    if (pthread_create(&d->thread, NULL, engine_main, d) != 0) {
        pthread_mutex_destroy(&d->mu);
        pthread_cond_destroy(&d->cond);
        free(d);
        return tse_error_set(err, TSE_INTERNAL, NULL, "cannot start the delivery thread");
    }
    pthread_setname_np(d->thread, "tse-delivery");
    *out = d;
    return TSE_OK;
}

void tse_delivery_destroy(tse_delivery *d)
{
    tse_error err;

    if (d == NULL)
        return;
    pthread_mutex_lock(&d->mu);
    d->stop = true;
    pthread_cond_signal(&d->cond);
    pthread_mutex_unlock(&d->mu);
    pthread_join(d->thread, NULL);
    tse_error_set(&err, TSE_UNAVAILABLE, NULL, "the server is shutting down");
    while (d->subs) {
        tse_sub *sub = d->subs;
        d->subs = sub->next;
        sub->next = NULL;
        tse_dl_forget(d, sub, &err);
    }
    while (d->head) {
        tse_req *r = d->head;
        d->head = r->next;
        if (r->kind == REQ_ATTACH) {
            /* No detach can follow once the engine is gone. */
            r->s->ops->attached(r->s->arg, &err, NULL);
            tse_dl_release(d, r->s);
        } else if (r->kind == REQ_DETACH) {
            tse_dl_release(d, r->s);
        } else {
            fail_req(r, &err);
        }
        req_free(r);
    }
    redisFree(d->ctx);
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->cond);
    free(d);
}
