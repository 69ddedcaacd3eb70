/*
 * delivery.c - the delivery engine's thread, its Redis connection and the
 * request queue through which other threads reach it. See delivery.h.
 *
 * Invariants: only the engine thread touches engine state and the Redis
 * connection; a request is answered (its callback called) exactly once; a
 * subscriber gets `released` exactly once, as its last callback, after
 * which the engine never touches it again.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "common/alloc.h"
#include "common/clock.h"
#include "delivery/delivery_internal.h"
#include "obs/log.h"

/* ===================== requests from other threads ====================== */

static void ids_free(tse_id_list *l)
{
    for (size_t i = 0; l->ids && i < l->n; i++)
        tse_free(l->ids[i]);
    tse_free(l->ids);
}

static void spec_free(Tracseq__Events__V1__Subscription *spec)
{
    if (spec)
        protobuf_c_message_free_unpacked(&spec->base, NULL);
}

/* Frees a request and its copies (not a detach: it lives in its subscriber). */
static void req_free(tse_req *r)
{
    if (r == NULL)
        return;
    switch (r->kind) {
    case REQ_ATTACH:
        spec_free(r->u.attach.spec);
        tse_free(r->u.attach.name);
        break;
    case REQ_DETACH: return;
    case REQ_ACK: ids_free(&r->u.ack.ids); break;
    case REQ_NACK: ids_free(&r->u.nack.ids); break;
    case REQ_EXTEND: ids_free(&r->u.extend.ids); break;
    case REQ_CREATE: spec_free(r->u.create.spec); break;
    case REQ_GET: tse_free(r->u.get.name); break;
    case REQ_DELETE: tse_free(r->u.del.name); break;
    case REQ_ACKNOWLEDGE:
        tse_free(r->u.acknowledge.subscription);
        ids_free(&r->u.acknowledge.ids);
        break;
    case REQ_NACK_IDS:
        tse_free(r->u.nack_ids.subscription);
        ids_free(&r->u.nack_ids.ids);
        break;
    case REQ_PULL:
        tse_free(r->u.pull.subscription);
        tse_free(r->u.pull.consumer);
        break;
    case REQ_PULL_CANCEL: break;
    case REQ_OPERATE:
        if (r->u.operate.req)
            protobuf_c_message_free_unpacked(r->u.operate.req, NULL);
        break;
    }
    tse_free(r);
}

static tse_req *req_new(tse_req_kind kind)
{
    tse_req *r = tse_calloc(1, sizeof(*r));

    if (r != NULL)
        r->kind = kind;
    return r;
}

/* Copies ids into l; false when out of memory (l then holds what it copied,
 * for req_free). */
static bool copy_ids(tse_id_list *l, char *const *ids, size_t n)
{
    l->ids = tse_calloc(n ? n : 1, sizeof(*l->ids));
    if (l->ids == NULL)
        return false;
    for (; l->n < n; l->n++) {
        char *copy = tse_strdup(ids[l->n] ? ids[l->n] : "");
        if (copy == NULL)
            return false;
        l->ids[l->n] = copy;
    }
    return true;
}

/* *out = a copy of s (NULL stays NULL); false when out of memory. */
static bool copy_str(char **out, const char *s)
{
    if (s == NULL)
        return true;
    *out = tse_strdup(s);
    return *out != NULL;
}

/* A deep copy of a subscription spec (pack, unpack). */
static Tracseq__Events__V1__Subscription *copy_spec(const Tracseq__Events__V1__Subscription *spec)
{
    size_t len = protobuf_c_message_get_packed_size(&spec->base);
    uint8_t *buf = tse_malloc(len ? len : 1);
    Tracseq__Events__V1__Subscription *out = NULL;

    if (buf == NULL)
        return NULL;
    protobuf_c_message_pack(&spec->base, buf);
    out = tracseq__events__v1__subscription__unpack(NULL, len, buf);
    tse_free(buf);
    return out;
}

/* *out = a copy of spec; false when out of memory. */
static bool copy_spec_to(Tracseq__Events__V1__Subscription **out,
                         const Tracseq__Events__V1__Subscription *spec)
{
    *out = copy_spec(spec);
    return *out != NULL;
}

/* A request that could not be built: freed, and the caller told. */
static tse_status refuse(tse_req *r, tse_error *err)
{
    req_free(r);
    return tse_error_set(err, TSE_NOMEM, NULL, "out of memory");
}

/* Queues r for the engine thread. Detaches only: they are never refused. */
static void enqueue(tse_delivery *d, tse_req *r)
{
    if (d->tail)
        d->tail->next = r;
    else
        d->head = r;
    d->tail = r;
    pthread_cond_signal(&d->cond);
}

/* Queues r; once the engine is stopping, frees it and refuses (nothing
 * would answer it). */
static tse_status push(tse_delivery *d, tse_req *r, tse_error *err)
{
    bool stopping;

    pthread_mutex_lock(&d->mu);
    stopping = d->stop;
    if (!stopping)
        enqueue(d, r);
    pthread_mutex_unlock(&d->mu);
    if (!stopping)
        return TSE_OK;
    req_free(r);
    return tse_error_set(err, TSE_UNAVAILABLE, NULL, "the server is shutting down");
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

void tse_delivery_notify_new_stream(tse_delivery *d)
{
    if (d == NULL)
        return;
    atomic_store(&d->new_stream, true);
    /* Nobody waiting: the next pull or subscriber checks the stream set
     * itself; no need to wake the engine. */
    if (!atomic_load_explicit(&d->listening, memory_order_relaxed))
        return;
    pthread_mutex_lock(&d->mu);
    pthread_cond_signal(&d->cond);
    pthread_mutex_unlock(&d->mu);
}

tse_status tse_delivery_attach(tse_delivery *d, const Tracseq__Events__V1__Subscription *spec,
                               const char *name, const char *consumer,
                               const tse_subscriber_ops *ops, void *arg, tse_subscriber **out,
                               tse_error *err)
{
    tse_req *r = req_new(REQ_ATTACH);
    tse_subscriber *s = tse_calloc(1, sizeof(*s));
    tse_status st;

    if (s == NULL || r == NULL || (spec && !copy_spec_to(&r->u.attach.spec, spec)) ||
        (!spec && !copy_str(&r->u.attach.name, name))) {
        tse_free(s);
        return refuse(r, err);
    }
    s->ops = ops;
    s->arg = arg;
    s->detach_req.kind = REQ_DETACH;
    s->detach_req.u.detach.s = s;
    if (consumer != NULL && consumer[0] != '\0')
        snprintf(s->consumer, sizeof(s->consumer), "%s", consumer);
    else
        snprintf(s->consumer, sizeof(s->consumer), "%s-%u", d->instance,
                 atomic_fetch_add(&d->next_consumer, 1));
    r->u.attach.s = s;
    st = push(d, r, err);
    if (st != TSE_OK) {
        tse_free(s);
        return st;
    }
    *out = s;
    return TSE_OK;
}

void tse_delivery_detach(tse_delivery *d, tse_subscriber *s)
{
    /* Even while the engine stops: destroy releases what is queued. */
    pthread_mutex_lock(&d->mu);
    s->detach_queued = true;
    enqueue(d, &s->detach_req);
    pthread_mutex_unlock(&d->mu);
}

tse_status tse_delivery_ack(tse_delivery *d, tse_subscriber *s, char *const *ids, size_t n,
                            tse_error *err)
{
    tse_req *r = req_new(REQ_ACK);

    if (r == NULL || !copy_ids(&r->u.ack.ids, ids, n))
        return refuse(r, err);
    r->u.ack.s = s;
    return push(d, r, err);
}

tse_status tse_delivery_ack_take(tse_delivery *d, tse_subscriber *s, char **ids, size_t n,
                                 tse_error *err)
{
    tse_req *r = req_new(REQ_ACK);

    if (r == NULL) {
        tse_id_list l = {ids, n};
        ids_free(&l);
        return refuse(r, err);
    }
    r->u.ack.ids.ids = ids;
    r->u.ack.ids.n = n;
    r->u.ack.s = s;
    return push(d, r, err);
}

tse_status tse_delivery_nack(tse_delivery *d, tse_subscriber *s, char *const *ids, size_t n,
                             uint32_t delay_ms, bool reject, tse_error *err)
{
    tse_req *r = req_new(REQ_NACK);

    if (r == NULL || !copy_ids(&r->u.nack.ids, ids, n))
        return refuse(r, err);
    r->u.nack.s = s;
    r->u.nack.delay_ms = delay_ms;
    r->u.nack.reject = reject;
    return push(d, r, err);
}

tse_status tse_delivery_extend(tse_delivery *d, tse_subscriber *s, char *const *ids, size_t n,
                               uint32_t deadline_ms, tse_error *err)
{
    tse_req *r = req_new(REQ_EXTEND);

    if (r == NULL || !copy_ids(&r->u.extend.ids, ids, n))
        return refuse(r, err);
    r->u.extend.s = s;
    r->u.extend.deadline_ms = deadline_ms;
    return push(d, r, err);
}

tse_status tse_delivery_create_subscription(tse_delivery *d,
                                            const Tracseq__Events__V1__Subscription *spec,
                                            tse_subscription_cb cb, void *arg, tse_error *err)
{
    tse_req *r = req_new(REQ_CREATE);

    if (r == NULL || !copy_spec_to(&r->u.create.spec, spec))
        return refuse(r, err);
    r->u.create.cb = cb;
    r->u.create.arg = arg;
    return push(d, r, err);
}

tse_status tse_delivery_get_subscriptions(tse_delivery *d, const char *name, tse_subscription_cb cb,
                                          void *arg, tse_error *err)
{
    tse_req *r = req_new(REQ_GET);

    if (r == NULL || !copy_str(&r->u.get.name, name))
        return refuse(r, err);
    r->u.get.cb = cb;
    r->u.get.arg = arg;
    return push(d, r, err);
}

tse_status tse_delivery_delete_subscription(tse_delivery *d, const char *name,
                                            tse_subscription_cb cb, void *arg, tse_error *err)
{
    tse_req *r = req_new(REQ_DELETE);

    if (r == NULL || !copy_str(&r->u.del.name, name ? name : ""))
        return refuse(r, err);
    r->u.del.cb = cb;
    r->u.del.arg = arg;
    return push(d, r, err);
}

/* A deep copy of any message (pack, unpack); NULL when out of memory. */
static ProtobufCMessage *copy_message(const ProtobufCMessage *msg)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = tse_malloc(len ? len : 1);
    ProtobufCMessage *out = NULL;

    if (buf == NULL)
        return NULL;
    protobuf_c_message_pack(msg, buf);
    out = protobuf_c_message_unpack(msg->descriptor, NULL, len, buf);
    tse_free(buf);
    return out;
}

tse_status tse_delivery_operate(tse_delivery *d, const ProtobufCMessage *req, tse_operate_cb cb,
                                void *arg, tse_error *err)
{
    tse_req *r = req_new(REQ_OPERATE);

    if (r == NULL || (r->u.operate.req = copy_message(req)) == NULL)
        return refuse(r, err);
    r->u.operate.cb = cb;
    r->u.operate.arg = arg;
    return push(d, r, err);
}

tse_status tse_delivery_acknowledge(tse_delivery *d, const char *subscription, char *const *ack_ids,
                                    size_t n, tse_ack_cb cb, void *arg, tse_error *err)
{
    tse_req *r = req_new(REQ_ACKNOWLEDGE);

    if (r == NULL || !copy_str(&r->u.acknowledge.subscription, subscription ? subscription : "") ||
        !copy_ids(&r->u.acknowledge.ids, ack_ids, n))
        return refuse(r, err);
    r->u.acknowledge.cb = cb;
    r->u.acknowledge.arg = arg;
    return push(d, r, err);
}

tse_status tse_delivery_nack_ids(tse_delivery *d, const char *subscription, char *const *ack_ids,
                                 size_t n, uint32_t delay_ms, bool reject, tse_ack_cb cb, void *arg,
                                 tse_error *err)
{
    tse_req *r = req_new(REQ_NACK_IDS);

    if (r == NULL || !copy_str(&r->u.nack_ids.subscription, subscription ? subscription : "") ||
        !copy_ids(&r->u.nack_ids.ids, ack_ids, n))
        return refuse(r, err);
    r->u.nack_ids.delay_ms = delay_ms;
    r->u.nack_ids.reject = reject;
    r->u.nack_ids.cb = cb;
    r->u.nack_ids.arg = arg;
    return push(d, r, err);
}

tse_status tse_delivery_pull(tse_delivery *d, const char *subscription, const char *consumer,
                             uint32_t max, uint32_t wait_ms, uint64_t pull_id, tse_pull_cb cb,
                             void *arg, tse_error *err)
{
    tse_req *r = req_new(REQ_PULL);

    if (r == NULL || !copy_str(&r->u.pull.subscription, subscription ? subscription : "") ||
        !copy_str(&r->u.pull.consumer, consumer ? consumer : ""))
        return refuse(r, err);
    r->u.pull.max = max;
    r->u.pull.wait_ms = wait_ms;
    r->u.pull.pull_id = pull_id;
    r->u.pull.cb = cb;
    r->u.pull.arg = arg;
    return push(d, r, err);
}

tse_status tse_delivery_pull_cancel(tse_delivery *d, uint64_t pull_id, tse_error *err)
{
    tse_req *r = req_new(REQ_PULL_CANCEL);

    if (r == NULL)
        return refuse(r, err);
    r->u.pull_cancel.pull_id = pull_id;
    return push(d, r, err);
}

void tse_delivery_end_pulls(tse_delivery *d)
{
    /* A flag, not a request: this must work when nothing can be allocated. */
    pthread_mutex_lock(&d->mu);
    d->end_pulls = true;
    pthread_cond_signal(&d->cond);
    pthread_mutex_unlock(&d->mu);
}

/* ===================== the Redis connection ============================= */

void tse_dl_release(tse_delivery *d, tse_subscriber *s)
{
    if (s->is_pull && s->pull_cb != NULL) {
        /* Every path answers a pull before releasing it; never leave its
         * caller waiting should one forget. */
        tse_error err;
        tse_logf(TSE_LOG_ERROR, "delivery: a pull (%llu) was released unanswered",
                 (unsigned long long)s->pull_id);
        tse_error_set(&err, TSE_INTERNAL, NULL, "the pull ended without an answer");
        tse_dl_pull_answer(d, s, &err);
    }
    while (s->ready) {
        tse_ready *next = s->ready->next;
        tse_dl_ready_free(s->ready);
        s->ready = next;
    }
    for (size_t i = s->inflight_head; i < s->inflight_end; i++)
        free(s->inflight[i]);
    tse_free(s->inflight);
    if (s->counted)
        tse_stats_add(d->stats, TSE_STAT_SUBSCRIBERS, -1);
    if (s->ops && s->ops->released)
        s->ops->released(s->arg);
    free(s);
}

/* Drops the connection (d->conn becomes NULL; every storage operation on
 * it fails at once); every subscriber is ended with UNAVAILABLE at the
 * loop's next step (never under a caller's feet). */
static void disconnect(tse_delivery *d, const char *why)
{
    /* Lost inside an operation, which may still hold it: closed later. */
    if (d->conn != NULL && tse_conn_lost(d->conn)) {
        tse_conn_close(d->dropped);
        d->dropped = d->conn;
    } else {
        tse_conn_close(d->conn);
    }
    d->conn = NULL;
    d->last_attempt_ms = tse_clock_ms(); /* a loss counts as an attempt */
    d->next_connect_ms = d->last_attempt_ms + d->backoff_ms;
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

    tse_conn_close(d->dropped);
    d->dropped = NULL;
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

static void expire_pulls(tse_delivery *d, int64_t now);

/* Answers r with err instead of doing it (a request without an answer, such
 * as an ack from a live stream, is dropped). An attach gets `attached` with
 * the error; its subscriber is released at its detach. */
static void fail_req(tse_req *r, const tse_error *err)
{
    switch (r->kind) {
    case REQ_ATTACH: r->u.attach.s->ops->attached(r->u.attach.s->arg, err, NULL); break;
    case REQ_CREATE: r->u.create.cb(r->u.create.arg, err, NULL, 0); break;
    case REQ_GET: r->u.get.cb(r->u.get.arg, err, NULL, 0); break;
    case REQ_DELETE: r->u.del.cb(r->u.del.arg, err, NULL, 0); break;
    case REQ_ACKNOWLEDGE: r->u.acknowledge.cb(r->u.acknowledge.arg, err, 0, NULL, 0); break;
    case REQ_NACK_IDS: r->u.nack_ids.cb(r->u.nack_ids.arg, err, 0, NULL, 0); break;
    case REQ_PULL: r->u.pull.cb(r->u.pull.arg, err, NULL, 0); break;
    case REQ_OPERATE: r->u.operate.cb(r->u.operate.arg, err, NULL); break;
    case REQ_DETACH:
    case REQ_ACK:
    case REQ_NACK:
    case REQ_EXTEND:
    case REQ_PULL_CANCEL: break;
    }
}

static void attach(tse_delivery *d, tse_req_attach *r)
{
    tse_subscriber *s = r->s;
    tse_error err;
    tse_sub *sub;

    tse_error_clear(&err);
    /* Streams new since the last discovery are this subscriber's too, from
     * its first read (before the lookup: discovery may drop subscriptions
     * deleted elsewhere). */
    tse_dl_check_streams(d);
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

/* Acks from a live stream give the credit back at once; the XACKs go with
 * the group's next read (tse_dl_owe_acks). */
static void ack(tse_delivery *d, tse_req_ack *r)
{
    tse_dl_unreached un = {0};

    for (size_t i = 0; i < r->ids.n; i++)
        tse_dl_forget_inflight(r->s, r->ids.ids[i]);
    if (r->s->sub == NULL || tse_dl_owe_acks(r->s->sub, &r->ids))
        return;
    tse_dl_note_unreached(r->s->sub, "ack", r->ids.n,
                          tse_dl_ack_ids(d, r->s->sub, r->ids.ids, r->ids.n, NULL, NULL, &un), &un);
}

static void nack(tse_delivery *d, tse_req_nack *r)
{
    tse_dl_unreached un = {0};

    if (r->s->sub && r->reject)
        tse_dl_note_unreached(
            r->s->sub, "reject", r->ids.n,
            tse_dl_reject_ids(d, r->s->sub, r->ids.ids, r->ids.n, NULL, NULL, NULL, &un), &un);
    else if (r->s->sub)
        tse_dl_note_unreached(r->s->sub, "nack", r->ids.n,
                              tse_dl_nack_ids(d, r->s->sub, r->s->consumer, r->ids.ids, r->ids.n,
                                              r->delay_ms, false, NULL, NULL, &un),
                              &un);
    for (size_t i = 0; i < r->ids.n; i++)
        tse_dl_forget_inflight(r->s, r->ids.ids[i]);
}

/* An extension keeps the deliveries in flight: no credit comes back. */
static void extend(tse_delivery *d, tse_req_extend *r)
{
    if (r->s->sub)
        tse_dl_nack_ids(d, r->s->sub, r->s->consumer, r->ids.ids, r->ids.n, r->deadline_ms, true,
                        NULL, NULL, NULL);
}

/* The names of every stored subscription; false with err UNAVAILABLE. */
static bool subscription_names(tse_delivery *d, tse_strings *names, tse_error *err)
{
    if (tse_subs_names(d->conn, names) == TSE_OK)
        return true;
    tse_error_set(err, TSE_UNAVAILABLE, NULL, "Redis is unavailable");
    return false;
}

/*
 * Describes (stats included) the subscription r->name, or every stored one
 * when r->name is NULL (those that fail to load are left out), into out
 * (room for every name). Returns how many; err set when the answer is an
 * error instead.
 */
static size_t describe_into(tse_delivery *d, const tse_req_get *r, const tse_strings *keys,
                            Tracseq__Events__V1__Subscription **out, tse_error *err)
{
    size_t n = 0, names = keys ? keys->n : 1;

    for (size_t i = 0; i < names; i++) {
        tse_error load_err;
        tse_sub *sub;

        tse_error_clear(&load_err);
        sub = keys ? tse_dl_load(d, keys->v[i], &load_err)
                   : tse_dl_load_current(d, r->name, &load_err);
        if (sub == NULL && keys == NULL)
            *err = load_err;
        if (sub == NULL)
            continue;
        out[n] = tse_dl_describe(d, sub);
        if (out[n] == NULL) {
            tse_error_set(err, TSE_NOMEM, NULL, "out of memory");
            break;
        }
        n++;
    }
    return n;
}

static void get(tse_delivery *d, tse_req_get *r)
{
    Tracseq__Events__V1__Subscription **out = NULL;
    tse_strings names = {0};
    const tse_strings *keys = r->name == NULL ? &names : NULL;
    size_t n = 0;
    tse_error err;

    tse_error_clear(&err);
    if (keys != NULL && !subscription_names(d, &names, &err))
        goto answer;
    out = calloc(keys ? keys->n + 1 : 1, sizeof(*out));
    if (out == NULL) {
        tse_error_set(&err, TSE_NOMEM, NULL, "out of memory");
        goto answer;
    }
    n = describe_into(d, r, keys, out, &err);
answer:
    if (err.code != TSE_OK)
        r->cb(r->arg, &err, NULL, 0);
    else
        r->cb(r->arg, &err, (const Tracseq__Events__V1__Subscription *const *)out, n);
    for (size_t i = 0; i < n; i++)
        protobuf_c_message_free_unpacked(&out[i]->base, NULL);
    free(out);
    tse_strings_cleanup(&names);
}

static void create(tse_delivery *d, tse_req_create *r)
{
    Tracseq__Events__V1__Subscription *desc;
    tse_error err;
    tse_sub *sub;

    tse_error_clear(&err);
    sub = tse_dl_create(d, r->spec, &err);
    if (sub == NULL) {
        r->cb(r->arg, &err, NULL, 0);
        return;
    }
    desc = tse_dl_describe(d, sub);
    if (desc == NULL) {
        /* Created all the same: the client's retry finds it, same settings. */
        tse_error_set(&err, TSE_NOMEM, NULL, "out of memory");
        r->cb(r->arg, &err, NULL, 0);
        return;
    }
    r->cb(r->arg, &err, (const Tracseq__Events__V1__Subscription *const *)&desc, 1);
    protobuf_c_message_free_unpacked(&desc->base, NULL);
}

static void delete_subscription(tse_delivery *d, tse_req_delete *r)
{
    tse_error err;

    tse_error_clear(&err);
    tse_dl_delete(d, r->name, &err);
    r->cb(r->arg, &err, NULL, 0);
}

/* Acknowledge, Nack or reject by subscription name: ids a live stream
 * subscriber holds give its credit back too. */
/* What an ack by name does with its ids. */
typedef enum settle { SETTLE_ACK, SETTLE_NACK, SETTLE_REJECT } settle;

static void ack_by_name(tse_delivery *d, const char *name, const tse_id_list *ids, settle how,
                        uint32_t delay_ms, tse_ack_cb cb, void *arg)
{
    char **unknown = NULL;
    size_t n_unknown = 0, n_stuck = 0;
    tse_dl_unreached un = {0};
    uint32_t done;
    tse_error err;
    tse_sub *sub;

    tse_error_clear(&err);
    sub = tse_dl_load(d, name, &err);
    if (sub == NULL) {
        cb(arg, &err, 0, NULL, 0);
        return;
    }
    if (how == SETTLE_NACK)
        done = tse_dl_nack_ids(d, sub, NULL, ids->ids, ids->n, delay_ms, false, &unknown,
                               &n_unknown, &un);
    else if (how == SETTLE_REJECT)
        done = tse_dl_reject_ids(d, sub, ids->ids, ids->n, &unknown, &n_unknown, &n_stuck, &un);
    else
        done = tse_dl_ack_ids(d, sub, ids->ids, ids->n, &unknown, &n_unknown, &un);
    for (tse_subscriber *s = sub->subscribers; s; s = s->next)
        for (size_t i = 0; !s->is_pull && i < ids->n; i++)
            tse_dl_forget_inflight(s, ids->ids[i]);
    if (d->conn == NULL)
        tse_error_set(&err, TSE_UNAVAILABLE, NULL, "Redis is unavailable");
    else if (tse_dl_unreached_error(&un, ids->n,
                                    how == SETTLE_NACK     ? "nacks"
                                    : how == SETTLE_REJECT ? "rejects"
                                                           : "acks",
                                    &err))
        ; /* the others are done: a retry of all is safe */
    else if (n_stuck > 0)
        tse_error_set(&err, TSE_UNAVAILABLE, NULL,
                      "%zu of %zu rejected deliveries could not be dead-lettered (Redis refused "
                      "to store them): they stay pending and come again; retry the reject",
                      n_stuck, ids->n);
    cb(arg, &err, done, (const char *const *)unknown, n_unknown);
    free(unknown);
}

static void pull(tse_delivery *d, tse_req_pull *r)
{
    tse_subscriber *s;
    tse_error err;
    tse_sub *sub;

    tse_error_clear(&err);
    /* An event of a type first published a moment ago (its stream not yet
     * discovered) is there for this pull: look first, one SCARD (before the
     * lookup: discovery may drop subscriptions deleted elsewhere). */
    tse_dl_check_streams(d);
    sub = tse_dl_load(d, r->subscription, &err);
    s = sub ? calloc(1, sizeof(*s)) : NULL;
    if (s == NULL) {
        if (sub != NULL)
            tse_error_set(&err, TSE_NOMEM, NULL, "out of memory");
        r->cb(r->arg, &err, NULL, 0);
        return;
    }
    s->is_pull = true;
    s->sub = sub;
    s->credit = r->max;
    s->hungry = true;
    s->pull_cb = r->cb;
    s->pull_arg = r->arg;
    s->pull_deadline_ms = tse_clock_ms() + (d->pulls_ended ? 0 : r->wait_ms);
    s->pull_id = r->pull_id;
    if (r->consumer[0] != '\0')
        snprintf(s->consumer, sizeof(s->consumer), "%s", r->consumer);
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
            tse_dl_pull_answer(d, s, &err);
            tse_dl_release(d, s);
            return;
        }
    }
}

/* Does what r asks (a detach or a pull cancel even without Redis). */
static void handle(tse_delivery *d, tse_req *r)
{
    tse_error err;

    if (d->conn == NULL && r->kind != REQ_DETACH && r->kind != REQ_PULL_CANCEL) {
        tse_error_set(&err, TSE_UNAVAILABLE, NULL, "Redis is unavailable; retry later");
        fail_req(r, &err);
        return;
    }
    switch (r->kind) {
    case REQ_ATTACH: attach(d, &r->u.attach); break;
    case REQ_DETACH: detach(d, r->u.detach.s); break;
    case REQ_ACK: ack(d, &r->u.ack); break;
    case REQ_NACK: nack(d, &r->u.nack); break;
    case REQ_EXTEND: extend(d, &r->u.extend); break;
    case REQ_CREATE: create(d, &r->u.create); break;
    case REQ_GET: get(d, &r->u.get); break;
    case REQ_DELETE: delete_subscription(d, &r->u.del); break;
    case REQ_ACKNOWLEDGE:
        ack_by_name(d, r->u.acknowledge.subscription, &r->u.acknowledge.ids, SETTLE_ACK, 0,
                    r->u.acknowledge.cb, r->u.acknowledge.arg);
        break;
    case REQ_NACK_IDS:
        ack_by_name(d, r->u.nack_ids.subscription, &r->u.nack_ids.ids,
                    r->u.nack_ids.reject ? SETTLE_REJECT : SETTLE_NACK, r->u.nack_ids.delay_ms,
                    r->u.nack_ids.cb, r->u.nack_ids.arg);
        break;
    case REQ_PULL: pull(d, &r->u.pull); break;
    case REQ_PULL_CANCEL: pull_cancel(d, r->u.pull_cancel.pull_id); break;
    case REQ_OPERATE: tse_dl_operate(d, r->u.operate.req, r->u.operate.cb, r->u.operate.arg); break;
    }
}

/* Handles r and frees it. A detach lives in the subscriber it releases:
 * neither it nor its subscriber may be touched after. */
static void run(tse_delivery *d, tse_req *r)
{
    bool is_detach = r->kind == REQ_DETACH;

    handle(d, r);
    if (!is_detach)
        req_free(r);
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
                tse_dl_pull_answer(d, s, NULL);
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
        tse_dl_flush_all_acks(d);
        tse_dl_discover(d);
        d->next_discover_ms = now + TSE_DISCOVER_MS;
        tse_dl_reap(d);
    }
    for (tse_sub *sub = d->subs; d->conn && sub; sub = sub->next) {
        if (now >= sub->next_claim_ms && (sub->subscribers || sub->ext)) {
            tse_dl_flush_acks(d, sub); /* an acked entry is not claimed */
            tse_dl_extensions(d, sub);
            tse_dl_claim_scan(d, sub, NULL);
            int64_t every = sub->def->ack_deadline_ms / 4;
            sub->next_claim_ms = now + (every < 50 ? 50 : every > 1000 ? 1000 : every);
        }
    }
    d->pass++;
    /* Entries read last pass and held for this one go out first: they wait
     * for no other subscriber's read (only for their own's send). */
    for (tse_sub *sub = d->subs; d->conn && sub; sub = sub->next)
        for (tse_subscriber *s = sub->subscribers; d->conn && s; s = s->next)
            if (s->deferred) {
                s->deferred = false;
                s->fill_pass = d->pass;
                tse_dl_fill(d, s);
            }
    for (tse_sub *sub = d->subs; d->conn && sub; sub = sub->next) {
        tse_subscriber *s = sub->subscribers, *next;
        for (; d->conn && s; s = next) {
            next = s->next; /* a pull may complete and leave the list */
            if (s->fill_pass == d->pass)
                continue; /* filled first, above */
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
    int64_t due = d->next_poll_ms;

    /* Without a connection nothing but the next attempt is due: discovery,
     * claims and pulls need Redis (subscriptions were dropped with it).
     * Counting their deadlines here made the loop spin while Redis was
     * down, burning a core. */
    if (d->conn == NULL)
        return d->next_connect_ms > now ? d->next_connect_ms : now;
    for (tse_sub *sub = d->subs; sub; sub = sub->next) {
        if ((sub->subscribers || sub->ext) && sub->next_claim_ms < due)
            due = sub->next_claim_ms;
        for (tse_subscriber *s = sub->subscribers; s; s = s->next)
            if (s->is_pull && s->pull_deadline_ms < due)
                due = s->pull_deadline_ms;
    }
    if (d->next_discover_ms < due)
        due = d->next_discover_ms;
    if (d->next_acks_ms < due)
        due = d->next_acks_ms;
    return due < now ? now : due;
}

static void wait_until(tse_delivery *d, int64_t due_ms)
{
    int64_t delta = due_ms - tse_clock_ms();
    struct timespec ts;

    if (delta <= 0 || d->head || d->stop || d->end_pulls || atomic_load(&d->notified))
        return;
    ts = tse_clock_deadline_on(CLOCK_REALTIME, delta);
    pthread_cond_timedwait(&d->cond, &d->mu, &ts);
}

/*
 * Connects when the backoff is over, or at once when requests wait (asked):
 * a request must not fail for up to 2 s of backoff after Redis came back.
 * Such probes are at least TSE_BROKER_PROBE_MS apart, so a flood of requests
 * during an outage never becomes a connect storm.
 */
/* The connection was lost inside an operation (conn.h). */
static void lost(void *arg, const char *why)
{
    disconnect(arg, why);
}

static void reconnect(tse_delivery *d, int64_t now, bool asked)
{
    char why[320];

    if (d->conn != NULL)
        return;
    if (now < d->next_connect_ms && !(asked && tse_backoff_may_probe(now, d->last_attempt_ms)))
        return;
    d->last_attempt_ms = now;
    d->conn = tse_conn_open(&d->opts.target, d->opts.timeout_ms, lost, d, why, sizeof(why));
    if (d->conn != NULL) {
        d->backoff_ms = TSE_BROKER_RETRY_MIN_MS;
        d->next_discover_ms = 0;
        return;
    }
    d->next_connect_ms = now + d->backoff_ms;
    d->backoff_ms = tse_backoff_next(d->backoff_ms);
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
        int64_t now = tse_clock_ms();

        pthread_mutex_lock(&d->mu);
        wait_until(d, next_due(d, now));
        batch = d->head;
        d->head = d->tail = NULL;
        bool stop = d->stop;
        bool end_pulls = d->end_pulls;
        d->end_pulls = false;
        pthread_mutex_unlock(&d->mu);
        if (stop) {
            tse_dl_flush_all_acks(d); /* what was acked is Redis's before the end */
            /* Requests queued at stop are answered by destroy. */
            pthread_mutex_lock(&d->mu);
            d->head = batch;
            for (tse_req *r = batch; r; r = r->next)
                d->tail = r;
            pthread_mutex_unlock(&d->mu);
            break;
        }
        now = tse_clock_ms();
        reconnect(d, now, batch != NULL);
        /* Stopping: pulls from now on wait for nothing, and every waiting
         * pull is answered with what it has. */
        if (end_pulls)
            d->pulls_ended = true;
        while (batch) {
            tse_req *next = batch->next;
            /* Owed acks are Redis's before anything else is done. */
            if (batch->kind != REQ_ACK)
                tse_dl_flush_all_acks(d);
            run(d, batch);
            drop_all(d);
            batch = next;
        }
        if (end_pulls)
            expire_pulls(d, INT64_MAX);
        bool notified = atomic_exchange(&d->notified, false);
        bool new_stream = atomic_exchange(&d->new_stream, false);
        bool poll = now >= d->next_poll_ms;
        if (d->conn && (new_stream || (poll && anyone_listening(d))))
            tse_dl_flush_all_acks(d); /* discovery may drop subscriptions */
        if (d->conn && new_stream) {
            /* This process registered a stream: whoever waits for its type
             * gets it now. */
            tse_dl_discover(d);
        } else if (d->conn && poll && anyone_listening(d)) {
            /* Streams registered by other processes: one SCARD per poll
             * while someone waits, a discovery only when the set grew. */
            tse_dl_check_streams(d);
        }
        if (notified || poll) {
            make_hungry(d);
            if (poll)
                d->next_poll_ms = now + d->opts.poll_ms;
        }
        if (d->conn)
            work(d, tse_clock_ms());
        /* Acks no read took along go once they waited long enough. */
        d->next_acks_ms = tse_dl_flush_due_acks(d, tse_clock_ms());
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
    d->backoff_ms = TSE_BROKER_RETRY_MIN_MS;
    d->next_acks_ms = INT64_MAX;
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

const char *tse_delivery_instance(const tse_delivery *d)
{
    return d->instance;
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
        if (r->kind == REQ_DETACH) {
            tse_dl_release(d, r->u.detach.s); /* frees r with it */
            continue;
        }
        fail_req(r, &err);
        /* No detach can follow now, unless one is queued behind. */
        if (r->kind == REQ_ATTACH && !r->u.attach.s->detach_queued)
            tse_dl_release(d, r->u.attach.s);
        req_free(r);
    }
    tse_conn_close(d->conn);
    tse_conn_close(d->dropped);
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->cond);
    free(d);
}
