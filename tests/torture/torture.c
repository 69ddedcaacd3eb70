/*
 * torture.c - a randomized, seeded, stateful test of the whole public API
 * against a model of what must hold.
 *
 * A real redis-server, the real service and the real REST bridge (started by
 * tests/support/harness.c). CLIENTS threads each draw operations from their
 * own generator, seeded from SEED: Publish, PublishStream, PublishBatch,
 * PublishBatchStream and PublishCloudEvent (catalog and generic types,
 * priorities 0-5, client ids with repeats, invalid events), Subscribe
 * (spec or name, random consumer names, acks/nacks/extends with valid,
 * stale, foreign and garbage ack ids, vanishing without a word), Pull
 * with random max_events and wait_ms,
 * Acknowledge/Nack, subscription create/get/list/delete/re-create while
 * subscribers are attached and pulls wait, the same through the REST bridge
 * (publish, pull, ack, nack, SSE readers, subscription endpoints), GetStats,
 * dead letters (list, get, redrive, purge, garbage ids), snapshots (create,
 * list, delete) and Seek (to latest on auto-ack subscriptions; elsewhere
 * without a target, which is refused), and random short deadlines. One
 * subscription (t-tort) has a retry policy and a dead-letter target
 * (dlt.tort): its dead letters come back as events of that type, to t-dlt
 * and every "*" subscription, and count as dead-lettered for it; some nacks
 * reject (dead-letter at once).
 *
 * The model (checked while running and at the end, after the clients
 * stopped and every checked subscription was drained):
 *   - a publish answered OK is in Redis exactly once; a client id answers
 *     one stream id however often it is sent; an invalid event or an error
 *     answer never carries a stream id and is never stored;
 *   - every stored event reaches every non-auto-ack subscription that
 *     existed unchanged from before its publish to the end, at least once,
 *     unless it was dead-lettered (a purged dead letter counts as one; a
 *     redriven one is excused from the order check below); nothing is delivered that was not
 *     published, nor to a subscription whose patterns it does not match;
 *     first deliveries of one (type, priority) come in publish order within
 *     one Subscribe stream or one Pull;
 *   - every call gets one well-formed answer with a status allowed for it;
 *     the service stays alive, logs only JSON lines, logs no more request
 *     lines than calls were made, stays within bounds of RSS and threads,
 *     and exits 0 on SIGTERM;
 *   - GetStats agrees with Redis and the model where the counts are exact;
 *   - an ack id an Acknowledge answered as acked (a stable subscription
 *     without auto-ack) is off the group's pending list for good: no Pull
 *     or Subscribe that starts after that answer gets it, and no
 *     Acknowledge or Nack that starts after it finds it pending, unless a
 *     redrive handed it back (dead letters: marked before the redrive).
 *     The other half, every delivery not acked comes again, is the drain's
 *     (nothing left pending at the end).
 *
 * Auto-ack subscriptions are checked for phantom and misrouted deliveries
 * only: an auto-acked delivery in flight to a client that vanishes is gone
 * by design (at most once).
 *
 * On failure it prints the seed, the parameters and the last operations of
 * every client, so the run can be replayed (SEED=... CLIENTS=...); with
 * TORTURE_SHRINK=1 (make torture sets it) it re-runs itself with fewer
 * clients, then less time, to find the smallest failing configuration.
 *
 * With --secure=1 (SECURE=1) the whole run goes through the security path
 * (issue 12): the service listens with TLS (a throwaway openssl CA) and a
 * tokens file, every gRPC call carries the bearer token of an identity with
 * every right (admin, publish_on_behalf, publish and subscribe *), the
 * bridge reaches the service over TLS and every REST request carries the
 * same token in its Authorization header, which the bridge forwards.
 *
 * With --cluster=1 (CLUSTER=1) Redis is a Redis Cluster of 3 masters
 * (issue 13): the service gets its redis+cluster:// seed list, and what is
 * stored is read from the master of each key (KEYS from every master).
 *
 * Usage: torture [--seed=N] [--seconds=N] [--clients=N] [--secure=1]
 *        [--cluster=1]
 *        (or SEED, SECONDS, CLIENTS, SECURE, CLUSTER in the environment; no
 *        seed: random)
 * Exit status: 0 pass, 1 failure, 2 the world could not be set up.
 */
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "auth/auth.h"
#include "certs.h"
#include "cluster.h"
#include "grpc_client.h"
#include "harness.h"
#include "tracseq/events/v1/service.pb-c.h"

#define SERVICE        "/tracseq.events.v1.EventService/"
#define M_PUBLISH      SERVICE "Publish"
#define M_PUBLISH_STR  SERVICE "PublishStream"
#define M_BATCH        SERVICE "PublishBatch"
#define M_BATCH_STR    SERVICE "PublishBatchStream"
#define M_CLOUDEVENT   SERVICE "PublishCloudEvent"
#define M_SUBSCRIBE    SERVICE "Subscribe"
#define M_PULL         SERVICE "Pull"
#define M_ACK          SERVICE "Acknowledge"
#define M_NACK         SERVICE "Nack"
#define M_CREATE       SERVICE "CreateSubscription"
#define M_GET          SERVICE "GetSubscription"
#define M_LIST         SERVICE "ListSubscriptions"
#define M_DELETE       SERVICE "DeleteSubscription"
#define M_STATS        SERVICE "GetStats"
#define M_TYPES        SERVICE "ListEventTypes"
#define M_DL_LIST      SERVICE "ListDeadLetters"
#define M_DL_GET       SERVICE "GetDeadLetter"
#define M_DL_REDRIVE   SERVICE "RedriveDeadLetters"
#define M_DL_PURGE     SERVICE "PurgeDeadLetters"
#define M_SEEK         SERVICE "Seek"
#define M_SNAP_CREATE  SERVICE "CreateSnapshot"
#define M_SNAP_LIST    SERVICE "ListSnapshots"
#define M_SNAP_DELETE  SERVICE "DeleteSnapshot"
#define CALL_MS        20000 /* a generous deadline for calls meant to finish */
#define OPLOG_N        48
#define OPLOG_LEN      200
#define MAX_CLIENTS    64
#define CHUNK_BITS     12
#define CHUNK_N        (1 << CHUNK_BITS)
#define MAX_CHUNKS     1024 /* 4M events */
#define DRAIN_QUIET_MS 90000
#define RSS_LIMIT_KB   (1536L * 1024) /* sanitizer builds need room */
#define THREADS_LIMIT  256
/* ASan's quarantine of freed memory (up to 256 MB) grows RSS like a leak. */
#if defined(__SANITIZE_ADDRESS__)
#define RSS_GROWTH_CHECKED 0
#else
#define RSS_GROWTH_CHECKED 1
#endif
#define ACK_LEN 256

typedef Tracseq__Events__V1__Event Event;
typedef Tracseq__Events__V1__Delivery Delivery;
typedef Tracseq__Events__V1__Subscription Subscription;
typedef Tracseq__Events__V1__PublishRequest PublishRequest;
typedef Tracseq__Events__V1__PublishResponse PublishResponse;
typedef Tracseq__Events__V1__PublishBatchRequest BatchRequest;
typedef Tracseq__Events__V1__PublishBatchResponse BatchResponse;
typedef Tracseq__Events__V1__SubscribeRequest SubscribeRequest;
typedef Tracseq__Events__V1__PullRequest PullRequest;
typedef Tracseq__Events__V1__PullResponse PullResponse;
typedef Tracseq__Events__V1__Stats Stats;

/* ===================== generator ========================================= */

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* A client's generator state: streams of different clients never overlap
 * in practice (splitmix64 states differ by a mixed, not a small, offset). */
static uint64_t client_seed(uint64_t seed, int idx)
{
    uint64_t a = seed, b = (uint64_t)idx * 7919 + 1;

    return rng_next(&a) ^ (rng_next(&b) << 1);
}

/* Uniform in [0, n). */
static int rnd(uint64_t *s, int n)
{
    return n <= 1 ? 0 : (int)(rng_next(s) % (uint64_t)n);
}

static bool chance(uint64_t *s, int percent)
{
    return rnd(s, 100) < percent;
}

/* ===================== the world and its clients ========================= */

typedef struct client {
    int idx;
    uint64_t rng;
    tse_client *ch;
    long ops;
    char oplog[OPLOG_N][OPLOG_LEN];
    int oplog_pos;
    char last_ack[4][ACK_LEN];
    char last_ack_sub[4][64]; /* the subscription each came from */
    int eph;                  /* ephemeral subscriptions made */
    char detail[512];         /* the status details of the last unary call */
    long long since;          /* clock when its current Pull or Subscribe started; 0: none */
} client;

typedef struct msub {
    const char *name;
    const char *patterns[3];
    size_t n_patterns;
    bool auto_ack;
    uint32_t deadline_ms, attempts, in_flight;
    uint32_t min_backoff_ms, max_backoff_ms; /* retry policy */
    const char *dead_letter_type;            /* dead-letter target, or NULL */
    bool stable;                             /* created before any client, never deleted */
    pthread_mutex_t mu;                      /* serializes create/delete of a churn subscription */
    bool exists;                             /* under mu (churn) */
    long long since;                         /* clock at the last create's answer */
    int bit;
} msub;

/* One logical event: one subject token "tt-<n>", one id. */
typedef struct mevent {
    int type, prio; /* prio as stored: 0 sent means 3 */
    bool client_id, invalid;
    char id[40];
    long long pub_start;
    _Atomic int ok, nondup_ok, unknown, failed;
    char stream_id[40];         /* under g.ev_mu: the first stream id seen */
    char published_at[2][48];   /* under g.ev_mu: the first answered over gRPC, REST */
    _Atomic unsigned delivered; /* bit per subscription */
    _Atomic unsigned dead;      /* bit per subscription: in its dead-letter stream */
    _Atomic unsigned redriven;  /* bit per subscription: redriven (attempts start over) */
    int stored;                 /* at the end: entries in Redis */
    atomic_bool ready;          /* the fields above event_new sets are written */
} mevent;

static struct world {
    uint64_t seed;
    int seconds, clients;
    /* --secure: TLS and a token on every call (roots_pem NULL otherwise) */
    bool secure;
    tse_test_certs *certs;
    char *roots_pem;
    char token[64];
    char tokens_path[300];
    bool cluster; /* --cluster: a 3-master Redis Cluster (redis is its front) */
    tse_test_redis *redis;
    tse_test_service *service, *bridge;
    atomic_llong clock;
    atomic_bool stop, failed;
    pthread_mutex_t fail_mu;
    char fail_msg[2048];
    client *cl[MAX_CLIENTS];
    pthread_mutex_t ev_mu;
    mevent *chunks[MAX_CHUNKS];
    atomic_int n_events;
    /* events with client ids answered OK, for repeats (ring, under ev_mu) */
    int repeatable[256];
    int n_repeatable;
    atomic_long calls[24]; /* gRPC calls made per method (see M_* index) */
    atomic_long answered[24];
    atomic_long rest_pulls, rest_calls, dup_answers;
    atomic_long dlt_deliveries; /* deliveries of t-tort's republished dead letters */
    atomic_long rest_events;    /* events sent through the bridge (publish, batch) */
    atomic_long grpc_refused;   /* invalid events refused over gRPC (Publish, PublishStream) */
    atomic_int fresh;           /* fresh types used (op_solo) */
    long rss_start_kb, rss_max_kb, threads_max;
    long rss_now_kb, rss_quarter_kb; /* the last sample; the one at a quarter of the run */
} g;

/* ---- the event types and subscriptions ---- */

/* The first N_BASE_TYPES are what clients publish at random; the
 * N_FRESH "fresh.t<k>" ones get one event each, the first ever of its type
 * (op_solo). */
#define N_BASE_TYPES 6
#define N_FRESH      64
#define N_TYPES      (N_BASE_TYPES + N_FRESH)

static char fresh_names[N_FRESH][24];

static struct {
    const char *type;
    Tracseq__Events__V1__Event__PayloadCase payload; /* 0: generic */
} types[N_TYPES] = {
    {"tort.alpha", 0},
    {"tort.beta", 0},
    {"misc.alpha", 0},
    {"misc.gamma_x", 0},
    {"auth.login_failed", TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_LOGIN_FAILED},
    {"auth.user_logged_out", TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_USER_LOGGED_OUT},
};

/* t-tort's dead-letter target: its dead letters come back as events of this
 * type carrying the original's subject (so its token), delivered to every
 * subscription matching it ("*" ones too). They are not model events: a
 * delivery of one is checked against its own rules, and their stream is
 * left out of the stored-events count. */
#define DLT_TYPE "dlt.tort"

static msub subs[] = {
    {.name = "t-all",
     .patterns = {"*"},
     .n_patterns = 1,
     .deadline_ms = 2000,
     .in_flight = 20,
     .stable = true},
    {.name = "t-tort",
     .patterns = {"tort.*"},
     .n_patterns = 1,
     .deadline_ms = 1500,
     .attempts = 3,
     .in_flight = 5,
     .min_backoff_ms = 50,
     .max_backoff_ms = 400,
     .dead_letter_type = DLT_TYPE,
     .stable = true},
    /* Receives t-tort's dead letters (published as DLT_TYPE events). */
    {.name = "t-dlt",
     .patterns = {DLT_TYPE},
     .n_patterns = 1,
     .deadline_ms = 2000,
     .in_flight = 20,
     .stable = true},
    {.name = "t-alpha",
     .patterns = {"*.alpha", "auth.login_failed"},
     .n_patterns = 2,
     .deadline_ms = 3000,
     .attempts = 5,
     .in_flight = 100,
     .stable = true},
    {.name = "t-auto",
     .patterns = {"auth.*", "misc.*"},
     .n_patterns = 2,
     .auto_ack = true,
     .deadline_ms = 2000,
     .in_flight = 10,
     .stable = true},
    {.name = "c-alpha",
     .patterns = {"tort.alpha"},
     .n_patterns = 1,
     .deadline_ms = 2000,
     .in_flight = 50},
    {.name = "c-all",
     .patterns = {"*"},
     .n_patterns = 1,
     .deadline_ms = 2000,
     .attempts = 4,
     .in_flight = 30},
    {.name = "c-misc",
     .patterns = {"misc.*", "*.user_logged_out"},
     .n_patterns = 2,
     .auto_ack = true,
     .deadline_ms = 2000,
     .in_flight = 10},
};
#define N_SUBS ((int)(sizeof(subs) / sizeof(subs[0])))

/* Patterns ephemeral subscriptions draw from. */
static const char *const eph_patterns[] = {"*",      "tort.*",       "*.alpha",
                                           "auth.*", "misc.gamma_x", "nothing.here"};

enum {
    K_PUBLISH,
    K_PUBLISH_STR,
    K_SUBSCRIBE,
    K_PULL,
    K_ACK,
    K_NACK,
    K_CREATE,
    K_GET,
    K_LIST,
    K_DELETE,
    K_STATS,
    K_TYPES,
    K_DL_LIST,
    K_DL_GET,
    K_DL_REDRIVE,
    K_DL_PURGE,
    K_SEEK,
    K_SNAP_CREATE,
    K_SNAP_LIST,
    K_SNAP_DELETE,
    K_BATCH,
    K_BATCH_STR,
    K_CLOUDEVENT
};
static const char *const methods[] = {
    M_PUBLISH,   M_PUBLISH_STR, M_SUBSCRIBE,  M_PULL,      M_ACK,       M_NACK,
    M_CREATE,    M_GET,         M_LIST,       M_DELETE,    M_STATS,     M_TYPES,
    M_DL_LIST,   M_DL_GET,      M_DL_REDRIVE, M_DL_PURGE,  M_SEEK,      M_SNAP_CREATE,
    M_SNAP_LIST, M_SNAP_DELETE, M_BATCH,      M_BATCH_STR, M_CLOUDEVENT};

/* ===================== failure and the operation log ===================== */

static void oplog(client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void oplog(client *c, const char *fmt, ...)
{
    va_list ap;

    if (c == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(c->oplog[c->oplog_pos % OPLOG_N], OPLOG_LEN, fmt, ap);
    va_end(ap);
    c->oplog_pos++;
    c->ops++;
}

static void fail(client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(client *c, const char *fmt, ...)
{
    va_list ap;

    pthread_mutex_lock(&g.fail_mu);
    if (!atomic_load(&g.failed)) {
        int n = snprintf(g.fail_msg, sizeof(g.fail_msg), "client %d: ", c ? c->idx : -1);
        va_start(ap, fmt);
        vsnprintf(g.fail_msg + n, sizeof(g.fail_msg) - (size_t)n, fmt, ap);
        va_end(ap);
        atomic_store(&g.failed, true);
    }
    atomic_store(&g.stop, true);
    pthread_mutex_unlock(&g.fail_mu);
}

static long long tick(void)
{
    return atomic_fetch_add(&g.clock, 1) + 1;
}

/* ===================== the event table =================================== */

static mevent *ev_at(int i)
{
    if (i < 0 || i >= atomic_load(&g.n_events))
        return NULL;
    return &g.chunks[i >> CHUNK_BITS][i & (CHUNK_N - 1)];
}

/* An event some client made, as a delivery or Redis names it: NULL when
 * none is (fully) made under that token. The acquire pairs with event_new's
 * release, which the service's round trip orders but TSan cannot see. */
static mevent *ev_made(int tok)
{
    mevent *e = ev_at(tok);

    return e != NULL && atomic_load_explicit(&e->ready, memory_order_acquire) ? e : NULL;
}

static int ev_new(void)
{
    int i;

    pthread_mutex_lock(&g.ev_mu);
    i = atomic_load(&g.n_events);
    if ((i >> CHUNK_BITS) >= MAX_CHUNKS) {
        pthread_mutex_unlock(&g.ev_mu);
        return -1;
    }
    if (g.chunks[i >> CHUNK_BITS] == NULL)
        g.chunks[i >> CHUNK_BITS] = calloc(CHUNK_N, sizeof(mevent));
    atomic_store(&g.n_events, i + 1);
    pthread_mutex_unlock(&g.ev_mu);
    return i;
}

static int token_of(const char *subject)
{
    char *end;
    long v;

    if (subject == NULL || strncmp(subject, "tt-", 3) != 0)
        return -1;
    v = strtol(subject + 3, &end, 10);
    return *end == '\0' && v >= 0 && v < INT32_MAX ? (int)v : -1;
}

static void uuid_make(uint64_t *rng, char *out)
{
    uint64_t a = rng_next(rng), b = rng_next(rng);

    snprintf(out, 37, "%08x-%04x-4%03x-%04x-%012llx", (unsigned)(a >> 32),
             (unsigned)(a >> 16) & 0xffff, (unsigned)a & 0xfff,
             (unsigned)(0x8000 | ((b >> 48) & 0x3fff)),
             (unsigned long long)(b & 0xffffffffffffULL));
}

static void stream_key(const mevent *e, char *buf, size_t len)
{
    snprintf(buf, len, "tracseq:events:{%s}:p%d", types[e->type].type, e->prio);
}

static bool stream_id_ok(const char *s)
{
    unsigned long long a, b;
    int n = 0;

    return s != NULL && sscanf(s, "%llu-%llu%n", &a, &b, &n) == 2 && s[n] == '\0';
}

/*
 * Records a stream id the service told for e (publish answer or delivery):
 * every one must be the same.
 */
static void ev_stream_id(client *c, mevent *e, int tok, const char *sid, const char *what)
{
    pthread_mutex_lock(&g.ev_mu);
    if (e->stream_id[0] == '\0')
        snprintf(e->stream_id, sizeof(e->stream_id), "%s", sid);
    else if (strcmp(e->stream_id, sid) != 0)
        fail(c, "tt-%d (id %s): %s says stream id %s, earlier %s", tok, e->id, what, sid,
             e->stream_id);
    pthread_mutex_unlock(&g.ev_mu);
}

/* Every answer for one event tells the same published_at (the stored
 * event's, not the retry's); kept per transport, whose formats differ. */
static void ev_published_at(client *c, mevent *e, int tok, int rest, const char *text,
                            const char *via)
{
    pthread_mutex_lock(&g.ev_mu);
    if (e->published_at[rest][0] == '\0')
        snprintf(e->published_at[rest], sizeof(e->published_at[rest]), "%s", text);
    else if (strcmp(e->published_at[rest], text) != 0)
        fail(c, "tt-%d (id %s): %s answers published_at %s, earlier %s", tok, e->id, via, text,
             e->published_at[rest]);
    pthread_mutex_unlock(&g.ev_mu);
}

static void repeatable_add(int tok)
{
    pthread_mutex_lock(&g.ev_mu);
    g.repeatable[g.n_repeatable++ % 256] = tok;
    pthread_mutex_unlock(&g.ev_mu);
}

static int repeatable_pick(client *c)
{
    int tok = -1;

    pthread_mutex_lock(&g.ev_mu);
    if (g.n_repeatable > 0)
        tok = g.repeatable[rnd(&c->rng, g.n_repeatable < 256 ? g.n_repeatable : 256)];
    pthread_mutex_unlock(&g.ev_mu);
    return tok;
}

/* ===================== patterns ========================================== */

/* "*" alone: everything; otherwise as many segments, each equal or "*". */
static bool pattern_match(const char *pat, const char *type)
{
    if (strcmp(pat, "*") == 0)
        return true;
    while (*pat && *type) {
        const char *pe = strchr(pat, '.'), *te = strchr(type, '.');
        size_t pl = pe ? (size_t)(pe - pat) : strlen(pat),
               tl = te ? (size_t)(te - type) : strlen(type);
        if (!(pl == 1 && pat[0] == '*') && (pl != tl || memcmp(pat, type, pl) != 0))
            return false;
        if ((pe == NULL) != (te == NULL))
            return false;
        if (pe == NULL)
            return true;
        pat = pe + 1;
        type = te + 1;
    }
    return false;
}

static bool patterns_match(const char *const *pats, size_t n, const char *type)
{
    for (size_t i = 0; i < n; i++)
        if (pattern_match(pats[i], type))
            return true;
    return false;
}

/* ===================== acks an Acknowledge answered ====================== */

/*
 * The ack ids an Acknowledge answered as acked (not unknown), per stable
 * subscription without auto-ack, with the clock when the answer came; an
 * id a redrive is about to hand back is marked for good (tick -1: not
 * checked again), as the model marks a redriven event before the call.
 * An open-addressing table (linear probing, at most half full).
 */
typedef struct acked_id {
    char *id; /* NULL: a free slot */
    int sub;  /* msub.bit */
    long long tick;
} acked_id;

static struct {
    pthread_mutex_t mu;
    acked_id *v;
    size_t n, cap; /* cap: 0 or a power of two */
} acked = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* The slot of (sub, id), or the free one where it goes. Under mu, cap > 0. */
static acked_id *acked_slot(int sub, const char *id)
{
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)sub;
    size_t i;

    for (const char *p = id; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    i = (size_t)h & (acked.cap - 1);
    while (acked.v[i].id != NULL && (acked.v[i].sub != sub || strcmp(acked.v[i].id, id) != 0))
        i = (i + 1) & (acked.cap - 1);
    return &acked.v[i];
}

/* Room for one more; false when out of memory. Under mu. */
static bool acked_room(void)
{
    acked_id *old = acked.v;
    size_t old_cap = acked.cap, cap = acked.cap ? 2 * acked.cap : 4096;

    if ((acked.n + 1) * 2 <= acked.cap)
        return true;
    if ((acked.v = calloc(cap, sizeof(*acked.v))) == NULL) {
        acked.v = old;
        return false;
    }
    acked.cap = cap;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].id != NULL)
            *acked_slot(old[i].sub, old[i].id) = old[i];
    free(old);
    return true;
}

/* Records id of subscription bit sub as acked at tick (its first answer
 * stays), or as redriven (tick -1, for good). Out of memory: not kept
 * (fewer checks, none wrong). */
static void acked_mark(int sub, const char *id, long long tick)
{
    acked_id *a;

    pthread_mutex_lock(&acked.mu);
    if (acked_room()) {
        a = acked_slot(sub, id);
        if (a->id == NULL && (a->id = strdup(id)) != NULL) {
            a->sub = sub;
            a->tick = tick;
            acked.n++;
        } else if (a->id != NULL && tick < 0) {
            a->tick = -1;
        }
    }
    pthread_mutex_unlock(&acked.mu);
}

/* When an Acknowledge answered id of subscription bit sub as acked: 0
 * never, -1 redriven since (not checked). */
static long long acked_at(int sub, const char *id)
{
    long long tick = 0;

    pthread_mutex_lock(&acked.mu);
    if (acked.cap > 0) {
        acked_id *a = acked_slot(sub, id);
        tick = a->id != NULL ? a->tick : 0;
    }
    pthread_mutex_unlock(&acked.mu);
    return tick;
}

static void acked_free(void)
{
    for (size_t i = 0; i < acked.cap; i++)
        free(acked.v[i].id);
    free(acked.v);
}

/* ms when its acks are checked this way (stable, not auto-ack), else NULL. */
static msub *ack_checked(msub *ms)
{
    return ms != NULL && ms->stable && !ms->auto_ack ? ms : NULL;
}

/* ===================== checking deliveries =============================== */

/* Per Subscribe stream or Pull: the last first-delivery stream id per key. */
typedef struct order {
    unsigned long long ms[N_TYPES][6], seq[N_TYPES][6];
} order;

/*
 * One delivery to a subscription with the given patterns (ms: one of ours,
 * NULL for an ephemeral one): published, routed right, consistent, in order.
 */
static void check_delivery(client *c, const char *subname, const char *const *pats, size_t n_pats,
                           msub *ms, order *ord, const char *ack_id, unsigned attempt,
                           const char *sid, const char *ev_id, const char *ev_type,
                           const char *subject)
{
    int tok = token_of(subject);
    mevent *e = ev_made(tok);
    char key[160], want_ack[240];
    unsigned long long a, b;

    if (e == NULL) {
        fail(c, "%s: delivered an event never published (subject '%s', type '%s')", subname,
             subject ? subject : "(none)", ev_type ? ev_type : "(none)");
        return;
    }
    if (e->invalid) {
        fail(c, "%s: delivered tt-%d, an invalid event that was refused", subname, tok);
        return;
    }
    if (ev_type != NULL && strcmp(ev_type, DLT_TYPE) == 0) {
        /* A dead letter of t-tort, republished: of one of its types, and
         * routed right; out of the order checks (it is a new event). */
        if (!patterns_match(subs[1].patterns, subs[1].n_patterns, types[e->type].type))
            fail(c, "%s: tt-%d of type %s came back as a dead letter of t-tort", subname, tok,
                 types[e->type].type);
        if (!patterns_match(pats, n_pats, ev_type))
            fail(c, "%s: a %s event delivered, matching none of its patterns", subname, ev_type);
        atomic_fetch_or(&e->dead, 1u << subs[1].bit);
        atomic_fetch_add(&g.dlt_deliveries, 1);
        return;
    }
    if (ev_type == NULL || strcmp(ev_type, types[e->type].type) != 0) {
        fail(c, "%s: tt-%d delivered as type '%s', published as %s", subname, tok,
             ev_type ? ev_type : "", types[e->type].type);
        return;
    }
    if (e->client_id && (ev_id == NULL || strcmp(ev_id, e->id) != 0))
        fail(c, "%s: tt-%d delivered with id '%s', published with %s", subname, tok,
             ev_id ? ev_id : "", e->id);
    if (!patterns_match(pats, n_pats, ev_type))
        fail(c, "%s: tt-%d of type %s delivered, matching none of its patterns", subname, tok,
             ev_type);
    if (attempt < 1 || (ms != NULL && ms->attempts > 0 && attempt > ms->attempts))
        fail(c, "%s: tt-%d delivered with attempt %u (max_delivery_attempts %u)", subname, tok,
             attempt, ms ? ms->attempts : 0);
    if (!stream_id_ok(sid)) {
        fail(c, "%s: tt-%d delivered with stream id '%s'", subname, tok, sid ? sid : "");
        return;
    }
    stream_key(e, key, sizeof(key));
    snprintf(want_ack, sizeof(want_ack), "%s/%s", key, sid);
    if (ack_id == NULL || strcmp(ack_id, want_ack) != 0)
        fail(c, "%s: tt-%d ack id '%s', expected '%s'", subname, tok, ack_id ? ack_id : "",
             want_ack);
    if (c != NULL && c->since > 0 && ack_checked(ms) && ack_id != NULL) {
        long long at = acked_at(ms->bit, ack_id);
        if (at > 0 && at < c->since)
            fail(c,
                 "%s: tt-%d (%s, attempt %u) delivered to a call started at clock %lld, though "
                 "an Acknowledge answered at %lld had acked it",
                 subname, tok, ack_id, attempt, c->since, at);
    }
    ev_stream_id(c, e, tok, sid, "a delivery");
    if (ms != NULL)
        atomic_fetch_or(&e->delivered, 1u << ms->bit);
    /* A redriven dead letter comes back with attempt 1, out of order. */
    if (ms != NULL && (atomic_load(&e->redriven) & (1u << ms->bit)))
        ord = NULL;
    if (ord != NULL && attempt == 1 && sscanf(sid, "%llu-%llu", &a, &b) == 2) {
        unsigned long long *pm = &ord->ms[e->type][e->prio], *ps = &ord->seq[e->type][e->prio];
        if (a < *pm || (a == *pm && b <= *ps))
            fail(c, "%s: first deliveries of %s out of order: %s after %llu-%llu", subname, key,
                 sid, *pm, *ps);
        *pm = a;
        *ps = b;
    }
    if (c != NULL) {
        int k = rnd(&c->rng, 4);
        snprintf(c->last_ack[k], ACK_LEN, "%s", ack_id ? ack_id : "");
        snprintf(c->last_ack_sub[k], sizeof(c->last_ack_sub[k]), "%s", subname);
    }
}

static void check_pb_delivery(client *c, const char *subname, const char *const *pats, size_t n,
                              msub *ms, order *ord, const Delivery *d)
{
    if (d->event == NULL) {
        fail(c, "%s: a delivery without an event (ack id '%s')", subname, d->ack_id);
        return;
    }
    check_delivery(c, subname, pats, n, ms, ord, d->ack_id, d->delivery_attempt, d->stream_id,
                   d->event->id, d->event->event_type, d->event->subject);
}

static void check_json_delivery(client *c, const char *subname, const char *const *pats, size_t n,
                                msub *ms, order *ord, json_t *d, const char *ack_id)
{
    json_t *ev = json_object_get(d, "event");

    if (!json_is_object(ev)) {
        fail(c, "%s: a delivery without an event object", subname);
        return;
    }
    check_delivery(c, subname, pats, n, ms, ord,
                   ack_id ? ack_id : json_string_value(json_object_get(d, "ack_id")),
                   (unsigned)json_integer_value(json_object_get(d, "delivery_attempt")),
                   json_string_value(json_object_get(d, "stream_id")),
                   json_string_value(json_object_get(ev, "id")),
                   json_string_value(json_object_get(ev, "event_type")),
                   json_string_value(json_object_get(ev, "subject")));
}

/* ===================== building events =================================== */

typedef struct pub {
    Event ev;
    Google__Protobuf__Struct data;
    Google__Protobuf__Struct__FieldsEntry entry, *entries[1];
    Google__Protobuf__Value value;
    Tracseq__Events__V1__LoginFailed lf;
    Tracseq__Events__V1__UserLoggedOut lo;
    Google__Protobuf__Timestamp ts;
    char subject[24], id[40], type[64];
    char traceparent[64], tracestate[32];
    int tok;
} pub;

typedef enum { BAD_NONE, BAD_TYPE, BAD_PRIO, BAD_SOURCE, BAD_ID, BAD_TRACE, BAD_KINDS } bad_kind;

/* The W3C trace context event tok carries: every third event has one
 * (trace-id and parent-id from the token, never all zero), half of those
 * with a tracestate; "" otherwise. Stored and delivered as published. */
static void trace_of(int tok, char *tp, size_t tp_len, char *ts, size_t ts_len)
{
    tp[0] = ts[0] = '\0';
    if (tok % 3 != 0)
        return;
    snprintf(tp, tp_len, "00-%032llx-%016llx-01", (unsigned long long)tok + 1,
             (unsigned long long)tok + 7);
    if (tok % 2 == 0)
        snprintf(ts, ts_len, "tt=%d,torture=x", tok);
}

/* Fills p with event tok as the model has it; bad: how to spoil it. */
static void pub_fill(pub *p, int tok, bad_kind bad, bool other_prio)
{
    mevent *e = ev_at(tok);
    Event ev = TRACSEQ__EVENTS__V1__EVENT__INIT;
    Google__Protobuf__Struct data = GOOGLE__PROTOBUF__STRUCT__INIT;
    Google__Protobuf__Struct__FieldsEntry entry = GOOGLE__PROTOBUF__STRUCT__FIELDS_ENTRY__INIT;
    Google__Protobuf__Value value = GOOGLE__PROTOBUF__VALUE__INIT;
    Tracseq__Events__V1__LoginFailed lf = TRACSEQ__EVENTS__V1__LOGIN_FAILED__INIT;
    Tracseq__Events__V1__UserLoggedOut lo = TRACSEQ__EVENTS__V1__USER_LOGGED_OUT__INIT;
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    int type = e->type;

    p->ev = ev;
    p->data = data;
    p->entry = entry;
    p->value = value;
    p->lf = lf;
    p->lo = lo;
    p->ts = ts;
    p->tok = tok;
    p->ts.seconds = 1764900000 + tok;
    snprintf(p->subject, sizeof(p->subject), "tt-%d", tok);
    snprintf(p->id, sizeof(p->id), "%s", e->client_id ? e->id : "");
    snprintf(p->type, sizeof(p->type), "%s", types[type].type);
    p->ev.event_type = p->type;
    p->ev.source_service = "torture";
    p->ev.subject = p->subject;
    p->ev.id = p->id;
    p->ev.priority = other_prio ? e->prio % 5 + 1 : e->prio == 3 && (tok & 1) ? 0 : e->prio;
    trace_of(tok, p->traceparent, sizeof(p->traceparent), p->tracestate, sizeof(p->tracestate));
    if (p->traceparent[0] != '\0')
        p->ev.traceparent = p->traceparent;
    if (p->tracestate[0] != '\0')
        p->ev.tracestate = p->tracestate;
    switch (types[type].payload) {
    case TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_LOGIN_FAILED:
        p->lf.username = "user";
        p->lf.failure_reason = "bad_password";
        p->lf.failed_at = &p->ts;
        p->ev.payload_case = types[type].payload;
        p->ev.login_failed = &p->lf;
        break;
    case TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_USER_LOGGED_OUT:
        p->lo.user_id = "u1";
        p->lo.username = "user";
        p->lo.session_id = "s1";
        p->lo.logout_reason = "timeout";
        p->lo.logout_at = &p->ts;
        p->ev.payload_case = types[type].payload;
        p->ev.user_logged_out = &p->lo;
        break;
    default:
        p->value.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
        p->value.number_value = tok;
        p->entry.key = "n";
        p->entry.value = &p->value;
        p->entries[0] = &p->entry;
        p->data.n_fields = 1;
        p->data.fields = p->entries;
        p->ev.payload_case = TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_DATA;
        p->ev.data = &p->data;
        break;
    }
    switch (bad) {
    case BAD_TYPE:
        snprintf(p->type, sizeof(p->type), "%s", tok & 1 ? "Tort..Bad" : "nodots");
        break;
    case BAD_PRIO: p->ev.priority = tok & 1 ? 6 : -1; break;
    case BAD_SOURCE: p->ev.source_service = ""; break;
    case BAD_ID: snprintf(p->id, sizeof(p->id), "not-a-uuid-%d", tok); break;
    case BAD_TRACE: /* uppercase hex: not W3C Trace Context */
        snprintf(p->traceparent, sizeof(p->traceparent), "00-%032X-%016X-01", 0xABCDu + tok, 0xEFu);
        p->ev.traceparent = p->traceparent;
        break;
    default: break;
    }
}

/* A new logical event in the model; bad events are marked invalid. */
static int event_new(client *c, bad_kind bad)
{
    int tok = ev_new();
    mevent *e = ev_at(tok);

    if (e == NULL)
        return -1;
    e->type = rnd(&c->rng, N_BASE_TYPES);
    e->prio = 1 + rnd(&c->rng, 5);
    e->client_id = chance(&c->rng, 50) || bad == BAD_ID;
    e->invalid = bad != BAD_NONE;
    if (e->client_id)
        uuid_make(&c->rng, e->id);
    e->pub_start = tick();
    atomic_store_explicit(&e->ready, true, memory_order_release);
    /* Repeats may race the first attempt: the id is up for them at once. */
    if (e->client_id && !e->invalid)
        repeatable_add(tok);
    return tok;
}

/* The outcome of one publish of tok (gRPC unary, stream or REST). */
static void publish_outcome(client *c, int tok, bool ok, bool error_answer, bool unknown,
                            const char *ev_id, const char *sid, const char *stream, bool duplicate,
                            const char *via)
{
    mevent *e = ev_at(tok);
    char key[160];

    if (unknown) {
        atomic_fetch_add(&e->unknown, 1);
        return;
    }
    if (!ok) {
        if (!e->invalid)
            fail(c, "%s of valid tt-%d refused (%s)", via, tok, error_answer ? c->detail : "?");
        else if (sid != NULL && sid[0] != '\0')
            fail(c, "%s of invalid tt-%d answered an error carrying stream id '%s'", via, tok, sid);
        atomic_fetch_add(&e->failed, 1);
        if (error_answer && strncmp(via, "Publish", 7) == 0)
            atomic_fetch_add(&g.grpc_refused, 1);
        return;
    }
    if (e->invalid) {
        fail(c, "%s of invalid tt-%d answered OK (stream id %s)", via, tok, sid ? sid : "");
        return;
    }
    if (!stream_id_ok(sid)) {
        fail(c, "%s of tt-%d answered OK with stream id '%s'", via, tok, sid ? sid : "");
        return;
    }
    if (ev_id == NULL || (e->client_id && strcmp(ev_id, e->id) != 0) || strlen(ev_id) != 36)
        fail(c, "%s of tt-%d answered event id '%s' (sent '%s')", via, tok, ev_id ? ev_id : "",
             e->id);
    stream_key(e, key, sizeof(key));
    if (stream != NULL && stream[0] != '\0' && strcmp(stream, key) != 0)
        fail(c, "%s of tt-%d answered stream '%s', stored in %s", via, tok, stream, key);
    if (!e->client_id) {
        pthread_mutex_lock(&g.ev_mu);
        if (e->id[0] == '\0')
            snprintf(e->id, sizeof(e->id), "%s", ev_id ? ev_id : "");
        pthread_mutex_unlock(&g.ev_mu);
    }
    ev_stream_id(c, e, tok, sid, via);
    atomic_fetch_add(&e->ok, 1);
    if (duplicate)
        atomic_fetch_add(&g.dup_answers, 1);
    else if (atomic_fetch_add(&e->nondup_ok, 1) > 0)
        fail(c, "%s of tt-%d (id %s): a second answer with duplicate=false", via, tok, e->id);
}

/* ===================== gRPC helpers ====================================== */

static bool status_in(grpc_status_code code, const grpc_status_code *allowed, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (code == allowed[i])
            return true;
    return false;
}

#define ALLOWED(...)                                                                               \
    (const grpc_status_code[]){__VA_ARGS__},                                                       \
        sizeof((grpc_status_code[]){__VA_ARGS__}) / sizeof(grpc_status_code)

/*
 * One unary call with a status from allowed (DEADLINE_EXCEEDED and
 * CANCELLED always allowed when the deadline was short); OK must carry a
 * message that decodes.
 */
static grpc_status_code unary(client *c, int m, const ProtobufCMessage *req,
                              const ProtobufCMessageDescriptor *desc, ProtobufCMessage **resp,
                              int timeout_ms, const grpc_status_code *allowed, size_t n_allowed)
{
    tse_test_status st;
    grpc_status_code code;

    atomic_fetch_add(&g.calls[m], 1);
    code = tse_test_unary(c->ch, methods[m], req, desc, resp, &st, timeout_ms, NULL, NULL);
    snprintf(c->detail, sizeof(c->detail), "%d %.480s", code, st.details);
    if (code != GRPC_STATUS_DEADLINE_EXCEEDED && code != GRPC_STATUS_CANCELLED)
        atomic_fetch_add(&g.answered[m], 1);
    if (code == GRPC_STATUS_OK && *resp == NULL)
        fail(c, "%s answered OK without a message that decodes", methods[m]);
    else if (code == GRPC_STATUS_DEADLINE_EXCEEDED && timeout_ms < CALL_MS)
        ;
    else if (!status_in(code, allowed, n_allowed))
        fail(c, "%s answered status %d '%s' (deadline %d ms)", methods[m], code, st.details,
             timeout_ms);
    return code;
}

static int short_or_long(client *c, int percent_short)
{
    return chance(&c->rng, percent_short) ? 1 + rnd(&c->rng, 40) : CALL_MS;
}

static void sub_spec(const msub *s, Subscription *sub)
{
    Subscription init = TRACSEQ__EVENTS__V1__SUBSCRIPTION__INIT;

    *sub = init;
    sub->name = (char *)s->name;
    sub->n_event_types = s->n_patterns;
    sub->event_types = (char **)s->patterns;
    sub->start = TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_LATEST;
    sub->ack_deadline_ms = s->deadline_ms;
    sub->max_delivery_attempts = s->attempts;
    sub->max_in_flight = s->in_flight;
    sub->auto_ack = s->auto_ack;
    sub->min_backoff_ms = s->min_backoff_ms;
    sub->max_backoff_ms = s->max_backoff_ms;
    sub->dead_letter_type = (char *)(s->dead_letter_type ? s->dead_letter_type : "");
}

/* The settings of an answered subscription are the model's. */
static void check_sub(client *c, const Subscription *got, const msub *s)
{
    bool same = got->name && strcmp(got->name, s->name) == 0 &&
                got->n_event_types == s->n_patterns && got->ack_deadline_ms == s->deadline_ms &&
                got->max_delivery_attempts == s->attempts && got->max_in_flight == s->in_flight &&
                got->auto_ack == s->auto_ack && got->min_backoff_ms == s->min_backoff_ms &&
                got->max_backoff_ms == s->max_backoff_ms &&
                strcmp(got->dead_letter_type ? got->dead_letter_type : "",
                       s->dead_letter_type ? s->dead_letter_type : "") == 0;

    for (size_t i = 0; same && i < s->n_patterns; i++)
        same = strcmp(got->event_types[i], s->patterns[i]) == 0;
    if (!same)
        fail(c, "subscription %s answered with other settings", s->name);
}

/* ===================== publish =========================================== */

/* Chooses what to publish: a new event, a repeat, or an invalid one. */
static int choose_event(client *c, bad_kind *bad, bool *other_prio)
{
    int r = rnd(&c->rng, 100);

    *bad = BAD_NONE;
    *other_prio = false;
    if (r < 12) {
        int tok = repeatable_pick(c);
        if (tok >= 0) {
            /* Same id and type under another priority, only once it is
             * stored (so the stored priority is known): it must answer
             * where that one is. The dedup scope is one event type. */
            *other_prio = atomic_load(&ev_at(tok)->ok) > 0 && chance(&c->rng, 20);
            return tok;
        }
    } else if (r < 20) {
        *bad = (bad_kind)(1 + rnd(&c->rng, BAD_KINDS - 1));
    }
    return event_new(c, *bad);
}

static void op_publish(client *c)
{
    PublishRequest req = TRACSEQ__EVENTS__V1__PUBLISH_REQUEST__INIT;
    PublishResponse *resp = NULL;
    bad_kind bad;
    bool other;
    int tok = choose_event(c, &bad, &other), timeout = short_or_long(c, 8);
    grpc_status_code code;
    pub p;

    if (tok < 0)
        return;
    pub_fill(&p, tok, bad, other);
    req.event = &p.ev;
    oplog(c, "Publish tt-%d %s p%d id=%s bad=%d other=%d deadline=%d", tok, p.type, p.ev.priority,
          p.id, bad, other, timeout);
    code = unary(c, K_PUBLISH, &req.base, &tracseq__events__v1__publish_response__descriptor,
                 (ProtobufCMessage **)&resp, timeout,
                 ALLOWED(GRPC_STATUS_OK, GRPC_STATUS_INVALID_ARGUMENT));
    if (code == GRPC_STATUS_OK && resp != NULL) {
        if (resp->error != NULL)
            fail(c, "Publish of tt-%d answered OK carrying an error '%s'", tok,
                 resp->error->message);
        char at[48];
        snprintf(at, sizeof(at), "%lld.%09d",
                 resp->published_at ? (long long)resp->published_at->seconds : -1LL,
                 resp->published_at ? resp->published_at->nanos : 0);
        ev_published_at(c, ev_at(tok), tok, 0, at, "Publish");
        publish_outcome(c, tok, true, false, false, resp->event_id, resp->stream_id, resp->stream,
                        resp->duplicate, "Publish");
    } else if (code == GRPC_STATUS_DEADLINE_EXCEEDED || code == GRPC_STATUS_CANCELLED) {
        publish_outcome(c, tok, false, false, true, NULL, NULL, NULL, false, "Publish");
    } else if (code != GRPC_STATUS_OK) {
        publish_outcome(c, tok, false, true, false, NULL, NULL, NULL, false, "Publish");
    }
    if (resp)
        protobuf_c_message_free_unpacked(&resp->base, NULL);
}

static void op_publish_stream(client *c)
{
    int n = 1 + rnd(&c->rng, 24), toks[24], got = 0, sent;
    bool cancel = chance(&c->rng, 10);
    tse_test_stream *s;
    tse_test_status st;
    grpc_status_code code;

    atomic_fetch_add(&g.calls[K_PUBLISH_STR], 1);
    s = tse_test_stream_open(c->ch, M_PUBLISH_STR, CALL_MS, NULL, NULL);
    oplog(c, "PublishStream n=%d cancel=%d", n, cancel);
    for (int i = 0; i < n; i++) {
        PublishRequest req = TRACSEQ__EVENTS__V1__PUBLISH_REQUEST__INIT;
        bad_kind bad;
        bool other;
        pub p;
        toks[i] = choose_event(c, &bad, &other);
        if (toks[i] < 0) {
            n = i;
            break;
        }
        pub_fill(&p, toks[i], bad, other);
        req.event = &p.ev;
        oplog(c, "  stream tt-%d %s p%d id=%s bad=%d other=%d", toks[i], p.type, p.ev.priority,
              p.id, bad, other);
        if (!tse_test_stream_send(s, &req.base)) {
            fail(c, "PublishStream: send %d of %d failed", i + 1, n);
            n = i + 1;
            break;
        }
    }
    sent = n;
    if (cancel)
        n = rnd(&c->rng, n + 1);
    for (; got < n; got++) {
        PublishResponse *r = (PublishResponse *)tse_test_stream_recv(
            s, &tracseq__events__v1__publish_response__descriptor, CALL_MS, NULL);
        if (r == NULL) {
            fail(c, "PublishStream: answer %d of %d missing", got + 1, n);
            break;
        }
        if (r->error != NULL)
            snprintf(c->detail, sizeof(c->detail), "error %d %s", r->error->code,
                     r->error->message);
        if (r->error != NULL)
            publish_outcome(c, toks[got], false, true, false, NULL, r->stream_id, NULL, false,
                            "PublishStream");
        else {
            char at[48];
            snprintf(at, sizeof(at), "%lld.%09d",
                     r->published_at ? (long long)r->published_at->seconds : -1LL,
                     r->published_at ? r->published_at->nanos : 0);
            ev_published_at(c, ev_at(toks[got]), toks[got], 0, at, "PublishStream");
            publish_outcome(c, toks[got], true, false, false, r->event_id, r->stream_id, r->stream,
                            r->duplicate, "PublishStream");
        }
        protobuf_c_message_free_unpacked(&r->base, NULL);
    }
    if (cancel) {
        tse_test_stream_cancel(s);
        for (int i = got; i < sent; i++)
            publish_outcome(c, toks[i], false, false, true, NULL, NULL, NULL, false,
                            "PublishStream");
        return;
    }
    tse_test_stream_close_send(s);
    code = tse_test_stream_finish(s, &st);
    atomic_fetch_add(&g.answered[K_PUBLISH_STR], 1);
    if (code != GRPC_STATUS_OK)
        fail(c, "PublishStream ended with status %d '%s'", code, st.details);
}

#define BATCH_MAX 24

/* Fills up to BATCH_MAX events of a new batch; their tokens in toks. */
static size_t batch_fill(client *c, pub *ps, Event **evs, int *toks, const char *what)
{
    size_t n = 1 + (size_t)rnd(&c->rng, BATCH_MAX);

    for (size_t i = 0; i < n; i++) {
        bad_kind bad;
        bool other;
        toks[i] = choose_event(c, &bad, &other);
        if (toks[i] < 0)
            return i;
        pub_fill(&ps[i], toks[i], bad, other);
        evs[i] = &ps[i].ev;
        oplog(c, "  %s tt-%d %s p%d id=%s bad=%d other=%d", what, toks[i], ps[i].type,
              ps[i].ev.priority, ps[i].id, bad, other);
    }
    return n;
}

/* The results of one answered batch, checked against the model in order. */
static void batch_outcomes(client *c, const BatchResponse *r, const int *toks, size_t n,
                           const char *via)
{
    if (r->error != NULL || r->n_results != n) {
        fail(c, "%s: %zu results for %zu events (error %s)", via, r->n_results, n,
             r->error ? r->error->message : "none");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const PublishResponse *one = r->results[i];
        char at[48];
        if (one->error != NULL) {
            publish_outcome(c, toks[i], false, true, false, NULL, one->stream_id, NULL, false, via);
            continue;
        }
        snprintf(at, sizeof(at), "%lld.%09d",
                 one->published_at ? (long long)one->published_at->seconds : -1LL,
                 one->published_at ? one->published_at->nanos : 0);
        ev_published_at(c, ev_at(toks[i]), toks[i], 0, at, via);
        publish_outcome(c, toks[i], true, false, false, one->event_id, one->stream_id, one->stream,
                        one->duplicate, via);
    }
}

static void op_publish_batch(client *c)
{
    pub *ps = calloc(BATCH_MAX, sizeof(*ps));
    Event *evs[BATCH_MAX];
    int toks[BATCH_MAX], timeout = short_or_long(c, 8);
    BatchRequest req = TRACSEQ__EVENTS__V1__PUBLISH_BATCH_REQUEST__INIT;
    BatchResponse *resp = NULL;
    grpc_status_code code;
    size_t n;

    oplog(c, "PublishBatch deadline=%d", timeout);
    n = batch_fill(c, ps, evs, toks, "batch");
    req.n_events = n;
    req.events = evs;
    code = unary(c, K_BATCH, &req.base, &tracseq__events__v1__publish_batch_response__descriptor,
                 (ProtobufCMessage **)&resp, timeout, ALLOWED(GRPC_STATUS_OK));
    if (code == GRPC_STATUS_OK && resp != NULL) {
        batch_outcomes(c, resp, toks, n, "PublishBatch");
    } else {
        for (size_t i = 0; i < n; i++)
            publish_outcome(c, toks[i], false, false, true, NULL, NULL, NULL, false,
                            "PublishBatch");
    }
    if (resp)
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    free(ps);
}

static void op_publish_batch_stream(client *c)
{
    int batches = 1 + rnd(&c->rng, 3), toks[3][BATCH_MAX];
    pub *ps = calloc(3 * BATCH_MAX, sizeof(*ps));
    size_t n[3] = {0};
    tse_test_stream *s;
    tse_test_status st;
    grpc_status_code code;

    atomic_fetch_add(&g.calls[K_BATCH_STR], 1);
    s = tse_test_stream_open(c->ch, M_BATCH_STR, CALL_MS, NULL, NULL);
    oplog(c, "PublishBatchStream batches=%d", batches);
    for (int b = 0; b < batches; b++) {
        BatchRequest req = TRACSEQ__EVENTS__V1__PUBLISH_BATCH_REQUEST__INIT;
        Event *evs[BATCH_MAX];
        n[b] = batch_fill(c, ps + b * BATCH_MAX, evs, toks[b], "batch stream");
        req.n_events = n[b];
        req.events = evs;
        if (!tse_test_stream_send(s, &req.base)) {
            fail(c, "PublishBatchStream: send of batch %d failed", b + 1);
            batches = b + 1;
            break;
        }
    }
    for (int b = 0; b < batches; b++) {
        BatchResponse *r = (BatchResponse *)tse_test_stream_recv(
            s, &tracseq__events__v1__publish_batch_response__descriptor, CALL_MS, NULL);
        if (r == NULL) {
            fail(c, "PublishBatchStream: answer %d of %d missing", b + 1, batches);
            break;
        }
        batch_outcomes(c, r, toks[b], n[b], "PublishBatchStream");
        protobuf_c_message_free_unpacked(&r->base, NULL);
    }
    tse_test_stream_close_send(s);
    code = tse_test_stream_finish(s, &st);
    atomic_fetch_add(&g.answered[K_BATCH_STR], 1);
    if (code != GRPC_STATUS_OK)
        fail(c, "PublishBatchStream ended with status %d '%s'", code, st.details);
    free(ps);
}

/* ===================== ack ids =========================================== */

/*
 * Whether ack id (of a delivery to subscription from) can be sent to
 * subscription to as stale or foreign without acking what the model
 * counts as not received: an ack id names a stream entry, not a
 * subscription, so another subscription's id whose type `to` matches may
 * legitimately ack an entry of `to` pending with a vanished subscriber.
 */
static bool odd_id_harmless(const char *id, const char *from, const char *to)
{
    const char *type = id + strlen("tracseq:events:{"), *end = strrchr(id, ':');
    char buf[160];

    if (strcmp(from, to) == 0)
        return true; /* stale: we received it, so it counts already */
    for (int i = 0; i < N_SUBS; i++) {
        if (strcmp(subs[i].name, to) != 0)
            continue;
        if (strncmp(id, "tracseq:events:{", 16) != 0 || end == NULL || end <= type ||
            end[-1] != '}')
            return true;
        snprintf(buf, sizeof(buf), "%.*s", (int)(end - 1 - type), type);
        return !patterns_match(subs[i].patterns, subs[i].n_patterns, buf);
    }
    return false; /* an ephemeral target: patterns unknown here */
}

/* A garbage, stale or foreign ack id, for subscription to. */
static const char *odd_ack_id(client *c, const char *to)
{
    static const char *const garbage[] = {
        "garbage",
        "tracseq:events:{tort.alpha}:p3/99999999999999-0",
        "tracseq:events:{nope}:p9/1-1",
        "tracseq:events:{tort.alpha}:p3/notanid",
        "/",
        "tracseq:dlq:t-all/1-0",
    };
    int r = rnd(&c->rng, 10);

    if (r < 4 && c->last_ack[r][0] != '\0' &&
        odd_id_harmless(c->last_ack[r], c->last_ack_sub[r], to))
        return c->last_ack[r]; /* stale (acked already) or foreign (another subscription's) */
    return garbage[rnd(&c->rng, (int)(sizeof(garbage) / sizeof(garbage[0])))];
}

/* Up to max ids: the given ones, then maybe odd ones; returns how many. */
static size_t ack_list(client *c, const char *to, char **out, size_t max, char *const *ids,
                       size_t n, bool *odd)
{
    size_t k = 0;

    for (size_t i = 0; i < n && k < max; i++)
        out[k++] = ids[i];
    *odd = false;
    if (k < max && chance(&c->rng, 15)) {
        const char *o = odd_ack_id(c, to);
        bool dup = false;
        for (size_t i = 0; i < k; i++)
            dup |= strcmp(out[i], o) == 0;
        if (!dup) {
            out[k++] = (char *)o;
            *odd = true;
        }
    }
    return k;
}

/* ===================== subscribe ========================================= */

typedef struct session {
    client *c;
    const char *name;
    const char *const *pats;
    size_t n_pats;
    msub *ms;
    order ord;
    char **held; /* unacked ack ids (malloc'd) */
    size_t n_held;
    bool odd; /* odd ack ids sent */
    /* max_deliveries_per_message of the first message: 0 (not set), 1, a
     * batch size, or over the bound (the stream must end INVALID_ARGUMENT
     * naming the field). */
    uint32_t per_message;
    bool per_message_bad;
} session;

static void session_send_ids(session *ss, tse_test_stream *s, int what)
{
    SubscribeRequest req = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__INIT;
    Tracseq__Events__V1__AckIds ack = TRACSEQ__EVENTS__V1__ACK_IDS__INIT;
    Tracseq__Events__V1__NackIds nack = TRACSEQ__EVENTS__V1__NACK_IDS__INIT;
    Tracseq__Events__V1__ExtendDeadline ext = TRACSEQ__EVENTS__V1__EXTEND_DEADLINE__INIT;
    char *ids[130];
    bool odd;
    size_t n = ack_list(ss->c, ss->name, ids, 130, ss->held, ss->n_held, &odd);

    if (n == 0)
        return;
    ss->odd |= odd;
    if (what == 0) {
        ack.n_ack_ids = n;
        ack.ack_ids = ids;
        req.request_case = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_ACK;
        req.ack = &ack;
    } else if (what == 1) {
        nack.n_ack_ids = n;
        nack.ack_ids = ids;
        nack.delay_ms = (uint32_t)rnd(&ss->c->rng, 500);
        nack.reject = chance(&ss->c->rng, 10);
        req.request_case = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_NACK;
        req.nack = &nack;
    } else {
        ext.n_ack_ids = n;
        ext.ack_ids = ids;
        ext.deadline_ms = (uint32_t)(500 + rnd(&ss->c->rng, 3000));
        req.request_case = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_EXTEND;
        req.extend = &ext;
    }
    oplog(ss->c, "  %s %zu ids%s",
          what == 0   ? "ack"
          : what == 1 ? "nack"
                      : "extend",
          n, odd ? " +odd" : "");
    tse_test_stream_send(s, &req.base); /* false: the stream ended; recv tells how */
    if (what != 2)
        for (size_t i = 0; i < ss->n_held; i++)
            free(ss->held[i]);
    if (what != 2)
        ss->n_held = 0;
}

static void session_free(session *ss)
{
    for (size_t i = 0; i < ss->n_held; i++)
        free(ss->held[i]);
    free(ss->held);
}

/* A spec for an ephemeral subscription, with random settings. */
static void eph_spec(client *c, Subscription *sub, char *name, size_t len, const char **pats)
{
    Subscription init = TRACSEQ__EVENTS__V1__SUBSCRIPTION__INIT;
    size_t n = 1 + (size_t)rnd(&c->rng, 2);

    *sub = init;
    snprintf(name, len, "eph-%d-%d", c->idx, c->eph++);
    for (size_t i = 0; i < n; i++)
        pats[i] = eph_patterns[rnd(&c->rng, (int)(sizeof(eph_patterns) / sizeof(eph_patterns[0])))];
    sub->name = name;
    sub->n_event_types = n;
    sub->event_types = (char **)pats;
    sub->start = chance(&c->rng, 50) ? TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_EARLIEST
                                     : TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_LATEST;
    sub->ack_deadline_ms = (uint32_t)(1000 + rnd(&c->rng, 4000));
    sub->max_delivery_attempts = (uint32_t)rnd(&c->rng, 4);
    sub->max_in_flight = (uint32_t)(1 + rnd(&c->rng, 60));
    sub->auto_ack = chance(&c->rng, 40);
}

static void delete_named(client *c, const char *name)
{
    Tracseq__Events__V1__DeleteSubscriptionRequest req =
        TRACSEQ__EVENTS__V1__DELETE_SUBSCRIPTION_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;

    req.name = (char *)name;
    oplog(c, "DeleteSubscription %s", name);
    unary(c, K_DELETE, &req.base, &tracseq__events__v1__delete_subscription_response__descriptor,
          &resp, CALL_MS, ALLOWED(GRPC_STATUS_OK, GRPC_STATUS_NOT_FOUND));
    if (resp)
        protobuf_c_message_free_unpacked(resp, NULL);
}

/* Batched delivery: half the streams opt in, a few with a size over the
 * bound. */
static void session_batching(session *ss, SubscribeRequest *first)
{
    static const uint32_t sizes[] = {1, 2, 7, 64, 100, 1000};
    int r = rnd(&ss->c->rng, 100);

    if (r < 45)
        ss->per_message = 0;
    else if (r < 97)
        ss->per_message = sizes[rnd(&ss->c->rng, (int)(sizeof(sizes) / sizeof(sizes[0])))];
    else
        ss->per_message = r < 99 ? 1001 : UINT32_MAX;
    ss->per_message_bad = ss->per_message > 1000;
    first->max_deliveries_per_message = ss->per_message;
}

/* One delivery of a Subscribe message: checked against the model, then
 * held, and sometimes acked, nacked or extended with what is held. */
static void session_delivery(session *ss, tse_test_stream *s, int ending, const Delivery *d)
{
    client *c = ss->c;

    check_pb_delivery(c, ss->name, ss->pats, ss->n_pats, ss->ms, &ss->ord, d);
    oplog(c, "  got %s attempt %u", d->event ? d->event->subject : "?", d->delivery_attempt);
    if (ss->n_held < 128) {
        int r = rnd(&c->rng, 100);
        char **h = realloc(ss->held, (ss->n_held + 1) * sizeof(*h));
        if (h != NULL) {
            ss->held = h;
            ss->held[ss->n_held++] = strdup(d->ack_id);
        }
        if (ending != 9 && r < 8)
            session_send_ids(ss, s, 1);
        else if (ending != 9 && r < 12)
            session_send_ids(ss, s, 2);
        else if (ending != 9 && r < 40)
            session_send_ids(ss, s, 0);
    }
}

/* A Subscribe message: its deliveries (itself and its `more`) within the
 * stream's max_deliveries_per_message, none of them with `more` of its own. */
static void session_message(session *ss, tse_test_stream *s, int ending, const Delivery *d)
{
    client *c = ss->c;
    uint32_t cap = ss->per_message > 1 ? ss->per_message : 1;

    if (ss->per_message_bad)
        fail(c, "Subscribe %s with max_deliveries_per_message %u got a delivery", ss->name,
             ss->per_message);
    if (1 + d->n_more > cap)
        fail(c, "Subscribe %s: %zu deliveries in one message, max_deliveries_per_message %u",
             ss->name, 1 + d->n_more, ss->per_message);
    if (d->n_more > 0)
        oplog(c, "  message of %zu deliveries", 1 + d->n_more);
    session_delivery(ss, s, ending, d);
    for (size_t i = 0; i < d->n_more; i++) {
        if (d->more[i]->n_more > 0)
            fail(c, "Subscribe %s: a delivery in `more` has `more` itself", ss->name);
        session_delivery(ss, s, ending, d->more[i]);
    }
}

static void op_subscribe(client *c)
{
    SubscribeRequest first = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__INIT;
    Subscription spec;
    session ss = {.c = c};
    char eph_name[48], consumer[32] = "";
    const char *eph_pats[3];
    bool eph = chance(&c->rng, 25), conflict = false, short_deadline = chance(&c->rng, 10);
    int life = 200 + rnd(&c->rng, 3000),
        deadline = short_deadline ? 50 + rnd(&c->rng, 2000) : life + CALL_MS;
    long long end = tse_test_now_ms() + life;
    tse_test_stream *s;
    tse_test_status st;
    grpc_status_code code;
    int ending = rnd(&c->rng, 10);

    if (eph) {
        eph_spec(c, &spec, eph_name, sizeof(eph_name), eph_pats);
        ss.name = eph_name;
        ss.pats = eph_pats;
        ss.n_pats = spec.n_event_types;
        first.request_case = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_SUBSCRIPTION;
        first.subscription = &spec;
    } else {
        ss.ms = &subs[rnd(&c->rng, N_SUBS)];
        ss.name = ss.ms->name;
        ss.pats = ss.ms->patterns;
        ss.n_pats = ss.ms->n_patterns;
        if (ss.ms->stable && chance(&c->rng, 50)) {
            sub_spec(ss.ms, &spec);
            conflict = chance(&c->rng, 10);
            if (conflict)
                spec.max_in_flight = ss.ms->in_flight + 1;
            first.request_case = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_SUBSCRIPTION;
            first.subscription = &spec;
        } else {
            first.request_case = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_SUBSCRIPTION_NAME;
            first.subscription_name = (char *)ss.ms->name;
        }
    }
    if (chance(&c->rng, 50))
        snprintf(consumer, sizeof(consumer), "cons-%d", rnd(&c->rng, 4));
    first.consumer_name = consumer;
    session_batching(&ss, &first);
    oplog(c,
          "Subscribe %s%s consumer='%s' life=%d deadline=%d conflict=%d ending=%d per_message=%u",
          ss.name,
          first.request_case == TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_SUBSCRIPTION
              ? " (spec)"
              : "",
          consumer, life, deadline, conflict, ending, ss.per_message);
    atomic_fetch_add(&g.calls[K_SUBSCRIBE], 1);
    c->since = tick();
    s = tse_test_stream_open(c->ch, M_SUBSCRIBE, deadline, NULL, NULL);
    tse_test_stream_send(s, &first.base);
    if (ending == 9)
        tse_test_stream_close_send(s); /* a half-close ends no delivery */
    while (tse_test_now_ms() < end && !atomic_load(&g.stop)) {
        bool timed_out;
        Delivery *d = (Delivery *)tse_test_stream_recv(
            s, &tracseq__events__v1__delivery__descriptor, 50 + rnd(&c->rng, 300), &timed_out);
        if (timed_out) {
            if (ss.n_held > 0 && ending != 9)
                session_send_ids(&ss, s, 0);
            continue;
        }
        if (d == NULL) {
            code = tse_test_stream_finish(s, &st);
            atomic_fetch_add(&g.answered[K_SUBSCRIBE], 1);
            oplog(c, "  Subscribe %s ended: %d '%s'", ss.name, code, st.details);
            if (!(code == GRPC_STATUS_DEADLINE_EXCEEDED && short_deadline) &&
                !(code == GRPC_STATUS_ALREADY_EXISTS && conflict) &&
                !(code == GRPC_STATUS_INVALID_ARGUMENT && ss.odd) &&
                !(code == GRPC_STATUS_INVALID_ARGUMENT && ss.per_message_bad &&
                  strncmp(st.details, "max_deliveries_per_message:", 27) == 0) &&
                !(code == GRPC_STATUS_NOT_FOUND && (ss.ms == NULL || !ss.ms->stable)))
                fail(c, "Subscribe %s ended with status %d '%s'", ss.name, code, st.details);
            goto out;
        }
        if (conflict)
            fail(c, "Subscribe %s with other settings got a delivery", ss.name);
        session_message(&ss, s, ending, d);
        protobuf_c_message_free_unpacked(&d->base, NULL);
    }
    if (ending < 6) {
        oplog(c, "  Subscribe %s: vanish", ss.name);
    } else if (ending < 9) {
        session_send_ids(&ss, s, 0);
        tse_test_stream_close_send(s);
        oplog(c, "  Subscribe %s: acked, half-closed, cancel", ss.name);
    }
    tse_test_stream_cancel(s);
out:
    c->since = 0;
    session_free(&ss);
    if (eph && chance(&c->rng, 60))
        delete_named(c, eph_name);
}

/* ===================== pull, acknowledge, nack =========================== */

/* Whether id is among the n unknown ones. */
static bool among(const char *id, char *const *unknown, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(unknown[i], id) == 0)
            return true;
    return false;
}

/*
 * The answer of an Acknowledge (nack false) or Nack of the k ids of list
 * to ms, started at clock `start`: an id it acked or nacked (not unknown)
 * was pending, which none acked by an earlier answer may be; an id it
 * acked is recorded as acked from now on.
 */
static void settled_ids(client *c, msub *ms, char *const *list, size_t k, char *const *unknown,
                        size_t n_unknown, bool nack, long long start)
{
    for (size_t i = 0; ack_checked(ms) && i < k; i++) {
        long long at;
        if (among(list[i], unknown, n_unknown))
            continue;
        at = acked_at(ms->bit, list[i]);
        if (at > 0 && at < start)
            fail(c,
                 "%s of %s on %s (started at clock %lld) found it pending, though an "
                 "Acknowledge answered at %lld had acked it",
                 nack ? "Nack" : "Acknowledge", list[i], ms->name, start, at);
        if (!nack)
            acked_mark(ms->bit, list[i], tick());
    }
}

/* One of our subscriptions by name; NULL for another. */
static msub *sub_named(const char *name)
{
    for (int i = 0; i < N_SUBS; i++)
        if (strcmp(subs[i].name, name) == 0)
            return &subs[i];
    return NULL;
}

static void ack_rpc(client *c, const char *name, char *const *ids, size_t n, bool nack)
{
    Tracseq__Events__V1__AcknowledgeRequest ar = TRACSEQ__EVENTS__V1__ACKNOWLEDGE_REQUEST__INIT;
    Tracseq__Events__V1__NackRequest nr = TRACSEQ__EVENTS__V1__NACK_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    char *list[1100];
    bool odd;
    size_t k = ack_list(c, name, list, 1100, ids, n, &odd);
    grpc_status_code code;
    long long start = tick();

    if (k == 0)
        return;
    oplog(c, "%s %s %zu ids%s", nack ? "Nack" : "Acknowledge", name, k, odd ? " +odd" : "");
    if (nack) {
        nr.subscription = (char *)name;
        nr.n_ack_ids = k;
        nr.ack_ids = list;
        nr.delay_ms = (uint32_t)rnd(&c->rng, 1000);
        nr.reject = chance(&c->rng, 10);
        code = unary(c, K_NACK, &nr.base, &tracseq__events__v1__nack_response__descriptor, &resp,
                     CALL_MS,
                     ALLOWED(GRPC_STATUS_OK, GRPC_STATUS_NOT_FOUND, GRPC_STATUS_INVALID_ARGUMENT));
    } else {
        ar.subscription = (char *)name;
        ar.n_ack_ids = k;
        ar.ack_ids = list;
        code = unary(c, K_ACK, &ar.base, &tracseq__events__v1__acknowledge_response__descriptor,
                     &resp, CALL_MS,
                     ALLOWED(GRPC_STATUS_OK, GRPC_STATUS_NOT_FOUND, GRPC_STATUS_INVALID_ARGUMENT));
    }
    if (code == GRPC_STATUS_INVALID_ARGUMENT && !odd)
        fail(c, "%s of %zu ack ids just delivered: INVALID_ARGUMENT", nack ? "Nack" : "Acknowledge",
             k);
    if (code == GRPC_STATUS_OK && resp != NULL) {
        uint32_t done = nack ? ((Tracseq__Events__V1__NackResponse *)resp)->nacked
                             : ((Tracseq__Events__V1__AcknowledgeResponse *)resp)->acked;
        size_t unknown =
            nack ? ((Tracseq__Events__V1__NackResponse *)resp)->n_unknown_ack_ids
                 : ((Tracseq__Events__V1__AcknowledgeResponse *)resp)->n_unknown_ack_ids;
        if (done + unknown != k)
            fail(c, "%s of %zu ids on %s: %u done + %zu unknown", nack ? "Nack" : "Acknowledge", k,
                 name, done, unknown);
        settled_ids(c, sub_named(name), list, k,
                    nack ? ((Tracseq__Events__V1__NackResponse *)resp)->unknown_ack_ids
                         : ((Tracseq__Events__V1__AcknowledgeResponse *)resp)->unknown_ack_ids,
                    unknown, nack, start);
    }
    if (resp)
        protobuf_c_message_free_unpacked(resp, NULL);
}

/* One Pull; returns the deliveries checked (0 on error). */
static size_t pull_once(client *c, msub *ms, const char *name, uint32_t max, uint32_t wait,
                        int timeout, bool ack_all)
{
    PullRequest req = TRACSEQ__EVENTS__V1__PULL_REQUEST__INIT;
    PullResponse *resp = NULL;
    order ord;
    grpc_status_code code;
    char *ids[1000];
    size_t n = 0;
    bool stable = ms != NULL && ms->stable;

    memset(&ord, 0, sizeof(ord));
    req.subscription = (char *)name;
    req.max_events = max;
    req.wait_ms = wait;
    oplog(c, "Pull %s max=%u wait=%u deadline=%d", name, max, wait, timeout);
    c->since = tick();
    if (stable)
        code = unary(c, K_PULL, &req.base, &tracseq__events__v1__pull_response__descriptor,
                     (ProtobufCMessage **)&resp, timeout, ALLOWED(GRPC_STATUS_OK));
    else
        code = unary(c, K_PULL, &req.base, &tracseq__events__v1__pull_response__descriptor,
                     (ProtobufCMessage **)&resp, timeout,
                     ALLOWED(GRPC_STATUS_OK, GRPC_STATUS_NOT_FOUND));
    if (code != GRPC_STATUS_OK || resp == NULL) {
        if (resp)
            protobuf_c_message_free_unpacked(&resp->base, NULL);
        c->since = 0;
        return 0;
    }
    if (ms == NULL)
        fail(c, "Pull of unknown subscription %s answered OK", name);
    if (max > 0 && resp->n_deliveries > max)
        fail(c, "Pull %s max=%u answered %zu deliveries", name, max, resp->n_deliveries);
    for (size_t i = 0; ms != NULL && i < resp->n_deliveries; i++) {
        check_pb_delivery(c, name, ms->patterns, ms->n_patterns, ms, &ord, resp->deliveries[i]);
        if (n < 1000)
            ids[n++] = resp->deliveries[i]->ack_id;
    }
    oplog(c, "  Pull %s: %zu deliveries", name, resp->n_deliveries);
    c->since = 0;
    if (ms != NULL && !ms->auto_ack && n > 0) {
        int r = ack_all ? 0 : rnd(&c->rng, 100);
        if (r < 75)
            ack_rpc(c, name, ids, n, false);
        else if (r < 85)
            ack_rpc(c, name, ids, n, true);
    }
    n = resp->n_deliveries;
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return n;
}

static void op_pull(client *c)
{
    int r = rnd(&c->rng, 100);
    msub *ms = r < 3 ? NULL : &subs[rnd(&c->rng, N_SUBS)];
    uint32_t max = (uint32_t)rnd(&c->rng, 60), wait = (uint32_t)rnd(&c->rng, 1500);
    int timeout = chance(&c->rng, 12) ? 1 + rnd(&c->rng, (int)wait + 50) : (int)wait + CALL_MS;

    pull_once(c, ms, ms ? ms->name : "no-such-sub", max, wait, timeout, false);
}

/* ===================== a long poll on a new type ========================= */

typedef struct solo_pull {
    client *c; /* its generator is not touched from this thread */
    const char *name;
    PullResponse *resp;
    grpc_status_code code;
    long long started_ms;
} solo_pull;

#define SOLO_WAIT_MS 10000

static void *solo_pull_main(void *arg)
{
    solo_pull *sp = arg;
    PullRequest req = TRACSEQ__EVENTS__V1__PULL_REQUEST__INIT;
    tse_test_status st;

    req.subscription = (char *)sp->name;
    req.max_events = 10;
    req.wait_ms = SOLO_WAIT_MS;
    sp->started_ms = tse_test_now_ms();
    atomic_fetch_add(&g.calls[K_PULL], 1);
    sp->code = tse_test_unary(
        sp->c->ch, M_PULL, &req.base, &tracseq__events__v1__pull_response__descriptor,
        (ProtobufCMessage **)&sp->resp, &st, SOLO_WAIT_MS + CALL_MS, NULL, NULL);
    if (sp->code == GRPC_STATUS_OK)
        atomic_fetch_add(&g.answered[K_PULL], 1);
    return NULL;
}

/*
 * A subscription of its own on a type nobody published yet, the first
 * event of that type, and a long poll started before or after the publish:
 * the poll answers that event (a new stream is found while a pull waits),
 * unless the publish itself took nearly the whole wait.
 */
static void op_solo(client *c)
{
    Tracseq__Events__V1__CreateSubscriptionRequest creq =
        TRACSEQ__EVENTS__V1__CREATE_SUBSCRIPTION_REQUEST__INIT;
    PublishRequest preq = TRACSEQ__EVENTS__V1__PUBLISH_REQUEST__INIT;
    Subscription spec = TRACSEQ__EVENTS__V1__SUBSCRIPTION__INIT, *got = NULL;
    PublishResponse *presp = NULL;
    int k = atomic_fetch_add(&g.fresh, 1), tok;
    bool before = chance(&c->rng, 50);
    solo_pull sp = {.c = c};
    char name[32];
    const char *pats[1];
    long long published_ms;
    pthread_t th;
    mevent *e;
    pub p;

    if (k >= N_FRESH)
        return;
    snprintf(name, sizeof(name), "solo-%d", k);
    pats[0] = types[N_BASE_TYPES + k].type;
    spec.name = name;
    spec.n_event_types = 1;
    spec.event_types = (char **)pats;
    spec.start = TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_LATEST;
    creq.subscription = &spec;
    oplog(c, "Solo %s on %s, pull %s the publish", name, pats[0], before ? "before" : "after");
    if (unary(c, K_CREATE, &creq.base, &tracseq__events__v1__subscription__descriptor,
              (ProtobufCMessage **)&got, CALL_MS, ALLOWED(GRPC_STATUS_OK)) != GRPC_STATUS_OK)
        return;
    protobuf_c_message_free_unpacked(&got->base, NULL);
    if ((tok = ev_new()) < 0)
        return;
    e = ev_at(tok);
    e->type = N_BASE_TYPES + k;
    e->prio = 1 + rnd(&c->rng, 5);
    e->pub_start = tick();
    atomic_store_explicit(&e->ready, true, memory_order_release);
    sp.name = name;
    if (before) {
        pthread_create(&th, NULL, solo_pull_main, &sp);
        usleep((useconds_t)(100000 + rnd(&c->rng, 400000)));
    }
    pub_fill(&p, tok, BAD_NONE, false);
    preq.event = &p.ev;
    if (unary(c, K_PUBLISH, &preq.base, &tracseq__events__v1__publish_response__descriptor,
              (ProtobufCMessage **)&presp, CALL_MS, ALLOWED(GRPC_STATUS_OK)) == GRPC_STATUS_OK)
        publish_outcome(c, tok, true, false, false, presp->event_id, presp->stream_id,
                        presp->stream, presp->duplicate, "Publish (solo)");
    published_ms = tse_test_now_ms();
    if (presp)
        protobuf_c_message_free_unpacked(&presp->base, NULL);
    if (before)
        pthread_join(th, NULL);
    else
        solo_pull_main(&sp);
    if (sp.code != GRPC_STATUS_OK || sp.resp == NULL)
        fail(c, "Pull %s (wait %d ms): status %d", name, SOLO_WAIT_MS, sp.code);
    else if (sp.resp->n_deliveries != 1 && published_ms - sp.started_ms < SOLO_WAIT_MS - 2000)
        fail(c,
             "Pull %s (wait %d ms) started %s tt-%d, the first %s, was published: %zu deliveries",
             name, SOLO_WAIT_MS, before ? "before" : "after", tok, pats[0], sp.resp->n_deliveries);
    else if (sp.resp->n_deliveries == 1) {
        char *ids[1] = {sp.resp->deliveries[0]->ack_id};
        check_pb_delivery(c, name, pats, 1, NULL, NULL, sp.resp->deliveries[0]);
        if (token_of(sp.resp->deliveries[0]->event ? sp.resp->deliveries[0]->event->subject
                                                   : NULL) != tok)
            fail(c, "Pull %s answered another event than tt-%d", name, tok);
        ack_rpc(c, name, ids, 1, false);
    }
    if (sp.resp)
        protobuf_c_message_free_unpacked(&sp.resp->base, NULL);
    delete_named(c, name);
}

/* ===================== subscription admin ================================ */

static void op_admin(client *c)
{
    msub *ms = &subs[rnd(&c->rng, N_SUBS)];
    Subscription *got = NULL;
    int r = rnd(&c->rng, 100);

    if (ms->stable || r < 15) {
        Tracseq__Events__V1__ListSubscriptionsRequest lr =
            TRACSEQ__EVENTS__V1__LIST_SUBSCRIPTIONS_REQUEST__INIT;
        Tracseq__Events__V1__ListSubscriptionsResponse *lresp = NULL;
        oplog(c, "ListSubscriptions");
        if (unary(
                c, K_LIST, &lr.base, &tracseq__events__v1__list_subscriptions_response__descriptor,
                (ProtobufCMessage **)&lresp, CALL_MS, ALLOWED(GRPC_STATUS_OK)) == GRPC_STATUS_OK &&
            lresp != NULL) {
            for (int i = 0; i < N_SUBS; i++) {
                bool found = false;
                for (size_t j = 0; j < lresp->n_subscriptions; j++)
                    if (strcmp(lresp->subscriptions[j]->name, subs[i].name) == 0) {
                        found = true;
                        check_sub(c, lresp->subscriptions[j], &subs[i]);
                    }
                if (subs[i].stable && !found)
                    fail(c, "ListSubscriptions lacks %s", subs[i].name);
            }
        }
        if (lresp)
            protobuf_c_message_free_unpacked(&lresp->base, NULL);
        return;
    }
    pthread_mutex_lock(&ms->mu);
    if (r < 55) {
        Tracseq__Events__V1__CreateSubscriptionRequest req =
            TRACSEQ__EVENTS__V1__CREATE_SUBSCRIPTION_REQUEST__INIT;
        Subscription spec;
        bool other = ms->exists && chance(&c->rng, 15);
        grpc_status_code code;
        sub_spec(ms, &spec);
        if (other)
            spec.ack_deadline_ms += 1000;
        req.subscription = &spec;
        oplog(c, "CreateSubscription %s other=%d (exists=%d)", ms->name, other, ms->exists);
        code = unary(c, K_CREATE, &req.base, &tracseq__events__v1__subscription__descriptor,
                     (ProtobufCMessage **)&got, CALL_MS,
                     ALLOWED(GRPC_STATUS_OK, GRPC_STATUS_ALREADY_EXISTS));
        if (other && code != GRPC_STATUS_ALREADY_EXISTS)
            fail(c, "CreateSubscription %s with other settings: status %d", ms->name, code);
        if (!other && code != GRPC_STATUS_OK)
            fail(c, "CreateSubscription %s with its own settings: status %d", ms->name, code);
        if (!other && code == GRPC_STATUS_OK && got != NULL) {
            check_sub(c, got, ms);
            if (!ms->exists) {
                ms->exists = true;
                ms->since = tick();
            }
        }
    } else if (r < 75) {
        Tracseq__Events__V1__DeleteSubscriptionRequest req =
            TRACSEQ__EVENTS__V1__DELETE_SUBSCRIPTION_REQUEST__INIT;
        ProtobufCMessage *resp = NULL;
        grpc_status_code code;
        req.name = (char *)ms->name;
        oplog(c, "DeleteSubscription %s (exists=%d)", ms->name, ms->exists);
        code = unary(c, K_DELETE, &req.base,
                     &tracseq__events__v1__delete_subscription_response__descriptor, &resp, CALL_MS,
                     ALLOWED(GRPC_STATUS_OK, GRPC_STATUS_NOT_FOUND));
        if (code != (ms->exists ? GRPC_STATUS_OK : GRPC_STATUS_NOT_FOUND))
            fail(c, "DeleteSubscription %s (exists=%d): status %d", ms->name, ms->exists, code);
        ms->exists = false;
        if (resp)
            protobuf_c_message_free_unpacked(resp, NULL);
    } else {
        Tracseq__Events__V1__GetSubscriptionRequest req =
            TRACSEQ__EVENTS__V1__GET_SUBSCRIPTION_REQUEST__INIT;
        grpc_status_code code;
        req.name = (char *)ms->name;
        oplog(c, "GetSubscription %s (exists=%d)", ms->name, ms->exists);
        code = unary(c, K_GET, &req.base, &tracseq__events__v1__subscription__descriptor,
                     (ProtobufCMessage **)&got, CALL_MS,
                     ALLOWED(GRPC_STATUS_OK, GRPC_STATUS_NOT_FOUND));
        if (code != (ms->exists ? GRPC_STATUS_OK : GRPC_STATUS_NOT_FOUND))
            fail(c, "GetSubscription %s (exists=%d): status %d", ms->name, ms->exists, code);
        if (code == GRPC_STATUS_OK && got != NULL)
            check_sub(c, got, ms);
    }
    pthread_mutex_unlock(&ms->mu);
    if (got)
        protobuf_c_message_free_unpacked(&got->base, NULL);
}

/* ---- dead letters, seek, snapshots ---- */

/* A listed dead letter of ms is one of its events, dead-lettered rightly;
 * its token, or -1. */
static int check_dead_letter(client *c, const msub *ms, const Tracseq__Events__V1__DeadLetter *dl)
{
    int tok = dl->event ? token_of(dl->event->subject) : -1;
    mevent *e = ev_made(tok);
    char key[160];

    if (e == NULL) {
        fail(c, "%s: dead letter %s holds an event never published", ms->name, dl->id);
        return -1;
    }
    stream_key(e, key, sizeof(key));
    if (strcmp(dl->event->event_type, DLT_TYPE) == 0) /* t-tort's, republished */
        snprintf(key, sizeof(key), "tracseq:events:{%s}:p%d", DLT_TYPE, e->prio);
    /* Rightly: it used up the attempts, or a nack rejected it (any time). */
    if (strcmp(dl->subscription, ms->name) != 0 || strcmp(dl->stream, key) != 0 ||
        (dl->reason == TRACSEQ__EVENTS__V1__DEAD_LETTER_REASON__DEAD_LETTER_REASON_REJECTED
             ? dl->attempts < 1
             : dl->reason !=
                       TRACSEQ__EVENTS__V1__DEAD_LETTER_REASON__DEAD_LETTER_REASON_MAX_DELIVERY_ATTEMPTS ||
                   ms->attempts == 0 || dl->attempts < ms->attempts))
        fail(c, "%s: dead letter %s of tt-%d: subscription %s stream %s reason %d attempts %u",
             ms->name, dl->id, tok, dl->subscription, dl->stream, dl->reason, dl->attempts);
    return tok;
}

/* Redrives or purges up to 3 listed dead letters, marking them first in
 * the model: a redriven one may come again with attempt 1, a purged one
 * never comes. */
static void dead_letters_act(client *c, const msub *ms,
                             const Tracseq__Events__V1__ListDeadLettersResponse *list, bool purge)
{
    char *ids[3];
    size_t n = 0;
    ProtobufCMessage *resp = NULL;

    for (size_t i = 0; i < list->n_dead_letters && n < 3; i++) {
        int tok = check_dead_letter(c, ms, list->dead_letters[i]);
        if (tok < 0 || chance(&c->rng, 50))
            continue;
        atomic_fetch_or(purge ? &ev_at(tok)->dead : &ev_at(tok)->redriven, 1u << ms->bit);
        if (!purge) { /* its entry may be pending again, acked or not before */
            char ack_id[ACK_LEN];
            snprintf(ack_id, sizeof(ack_id), "%s/%s", list->dead_letters[i]->stream,
                     list->dead_letters[i]->stream_id);
            acked_mark(ms->bit, ack_id, -1);
        }
        ids[n++] = list->dead_letters[i]->id;
    }
    if (n == 0)
        return;
    oplog(c, "%s %s %zu ids", purge ? "PurgeDeadLetters" : "RedriveDeadLetters", ms->name, n);
    if (purge) {
        Tracseq__Events__V1__PurgeDeadLettersRequest req =
            TRACSEQ__EVENTS__V1__PURGE_DEAD_LETTERS_REQUEST__INIT;
        req.subscription = (char *)ms->name;
        req.n_ids = n;
        req.ids = ids;
        unary(c, K_DL_PURGE, &req.base,
              &tracseq__events__v1__purge_dead_letters_response__descriptor, &resp, CALL_MS,
              ALLOWED(GRPC_STATUS_OK, GRPC_STATUS_NOT_FOUND));
    } else {
        Tracseq__Events__V1__RedriveDeadLettersRequest req =
            TRACSEQ__EVENTS__V1__REDRIVE_DEAD_LETTERS_REQUEST__INIT;
        req.subscription = (char *)ms->name;
        req.n_ids = n;
        req.ids = ids;
        unary(c, K_DL_REDRIVE, &req.base,
              &tracseq__events__v1__redrive_dead_letters_response__descriptor, &resp, CALL_MS,
              ALLOWED(GRPC_STATUS_OK, GRPC_STATUS_NOT_FOUND));
    }
    if (resp)
        protobuf_c_message_free_unpacked(resp, NULL);
}

static void op_dead_letters(client *c)
{
    msub *ms = &subs[rnd(&c->rng, N_SUBS)];
    Tracseq__Events__V1__ListDeadLettersRequest req =
        TRACSEQ__EVENTS__V1__LIST_DEAD_LETTERS_REQUEST__INIT;
    Tracseq__Events__V1__ListDeadLettersResponse *list = NULL;
    ProtobufCMessage *resp = NULL;
    int r = rnd(&c->rng, 100);

    if (r < 10) {
        /* Garbage ids are refused before anything happens. */
        Tracseq__Events__V1__RedriveDeadLettersRequest bad =
            TRACSEQ__EVENTS__V1__REDRIVE_DEAD_LETTERS_REQUEST__INIT;
        char *ids[] = {(char *)"tt-not-an-id"};
        bad.subscription = (char *)ms->name;
        bad.n_ids = 1;
        bad.ids = ids;
        oplog(c, "RedriveDeadLetters %s garbage", ms->name);
        unary(c, K_DL_REDRIVE, &bad.base,
              &tracseq__events__v1__redrive_dead_letters_response__descriptor, &resp, CALL_MS,
              ALLOWED(GRPC_STATUS_INVALID_ARGUMENT));
        if (resp)
            protobuf_c_message_free_unpacked(resp, NULL);
        return;
    }
    req.subscription = (char *)ms->name;
    req.page_size = (uint32_t)rnd(&c->rng, 50);
    oplog(c, "ListDeadLetters %s page=%u", ms->name, req.page_size);
    if (unary(c, K_DL_LIST, &req.base, &tracseq__events__v1__list_dead_letters_response__descriptor,
              (ProtobufCMessage **)&list, CALL_MS,
              ALLOWED(GRPC_STATUS_OK, GRPC_STATUS_NOT_FOUND)) != GRPC_STATUS_OK ||
        list == NULL)
        goto out;
    if (ms->stable && list->n_dead_letters > (req.page_size ? req.page_size : 100))
        fail(c, "ListDeadLetters %s: %zu on a page of %u", ms->name, list->n_dead_letters,
             req.page_size);
    if (r < 40)
        dead_letters_act(c, ms, list, false);
    else if (r < 55)
        dead_letters_act(c, ms, list, true);
    else if (r < 70 && list->n_dead_letters > 0) {
        Tracseq__Events__V1__GetDeadLetterRequest get =
            TRACSEQ__EVENTS__V1__GET_DEAD_LETTER_REQUEST__INIT;
        Tracseq__Events__V1__DeadLetter *one = NULL;
        get.subscription = (char *)ms->name;
        get.id = list->dead_letters[0]->id;
        oplog(c, "GetDeadLetter %s %s", ms->name, get.id);
        if (unary(c, K_DL_GET, &get.base, &tracseq__events__v1__dead_letter__descriptor,
                  (ProtobufCMessage **)&one, CALL_MS,
                  ALLOWED(GRPC_STATUS_OK, GRPC_STATUS_NOT_FOUND)) == GRPC_STATUS_OK &&
            one != NULL)
            check_dead_letter(c, ms, one);
        if (one)
            protobuf_c_message_free_unpacked(&one->base, NULL);
    } else {
        for (size_t i = 0; i < list->n_dead_letters; i++)
            check_dead_letter(c, ms, list->dead_letters[i]);
    }
out:
    if (list)
        protobuf_c_message_free_unpacked(&list->base, NULL);
}

/* Snapshots come and go on any subscription; a seek that moves delivery
 * (to latest) only on auto-ack ones, whose deliveries the model does not
 * count; elsewhere a seek without a target, refused. */
static void op_seek(client *c)
{
    msub *ms = &subs[rnd(&c->rng, N_SUBS)];
    char name[16];
    ProtobufCMessage *resp = NULL;
    int r = rnd(&c->rng, 100);

    snprintf(name, sizeof(name), "snap-%d", rnd(&c->rng, 3));
    if (r < 25) {
        Tracseq__Events__V1__CreateSnapshotRequest req =
            TRACSEQ__EVENTS__V1__CREATE_SNAPSHOT_REQUEST__INIT;
        req.subscription = (char *)ms->name;
        req.name = name;
        oplog(c, "CreateSnapshot %s %s", ms->name, name);
        unary(c, K_SNAP_CREATE, &req.base, &tracseq__events__v1__snapshot__descriptor, &resp,
              CALL_MS, ALLOWED(GRPC_STATUS_OK, GRPC_STATUS_NOT_FOUND, GRPC_STATUS_ALREADY_EXISTS));
    } else if (r < 45) {
        Tracseq__Events__V1__ListSnapshotsRequest req =
            TRACSEQ__EVENTS__V1__LIST_SNAPSHOTS_REQUEST__INIT;
        req.subscription = (char *)ms->name;
        oplog(c, "ListSnapshots %s", ms->name);
        unary(c, K_SNAP_LIST, &req.base, &tracseq__events__v1__list_snapshots_response__descriptor,
              &resp, CALL_MS, ALLOWED(GRPC_STATUS_OK, GRPC_STATUS_NOT_FOUND));
    } else if (r < 65) {
        Tracseq__Events__V1__DeleteSnapshotRequest req =
            TRACSEQ__EVENTS__V1__DELETE_SNAPSHOT_REQUEST__INIT;
        req.subscription = (char *)ms->name;
        req.name = name;
        oplog(c, "DeleteSnapshot %s %s", ms->name, name);
        unary(c, K_SNAP_DELETE, &req.base,
              &tracseq__events__v1__delete_snapshot_response__descriptor, &resp, CALL_MS,
              ALLOWED(GRPC_STATUS_OK, GRPC_STATUS_NOT_FOUND));
    } else {
        Tracseq__Events__V1__SeekRequest req = TRACSEQ__EVENTS__V1__SEEK_REQUEST__INIT;
        req.subscription = (char *)ms->name;
        if (ms->auto_ack)
            req.position = TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_LATEST;
        oplog(c, "Seek %s position=%d", ms->name, req.position);
        if (ms->auto_ack)
            unary(c, K_SEEK, &req.base, &tracseq__events__v1__seek_response__descriptor, &resp,
                  CALL_MS, ALLOWED(GRPC_STATUS_OK, GRPC_STATUS_NOT_FOUND));
        else
            unary(c, K_SEEK, &req.base, &tracseq__events__v1__seek_response__descriptor, &resp,
                  CALL_MS, ALLOWED(GRPC_STATUS_INVALID_ARGUMENT));
    }
    if (resp)
        protobuf_c_message_free_unpacked(resp, NULL);
}

static void op_stats(client *c, uint64_t *last_published)
{
    Tracseq__Events__V1__GetStatsRequest req = TRACSEQ__EVENTS__V1__GET_STATS_REQUEST__INIT;
    Tracseq__Events__V1__ListEventTypesRequest treq =
        TRACSEQ__EVENTS__V1__LIST_EVENT_TYPES_REQUEST__INIT;
    Stats *st = NULL;
    ProtobufCMessage *types_resp = NULL;

    oplog(c, "GetStats");
    if (unary(c, K_STATS, &req.base, &tracseq__events__v1__stats__descriptor,
              (ProtobufCMessage **)&st, CALL_MS, ALLOWED(GRPC_STATUS_OK)) == GRPC_STATUS_OK &&
        st != NULL) {
        if (st->events_published < *last_published)
            fail(c, "GetStats: events_published went back from %" PRIu64 " to %" PRIu64,
                 *last_published, st->events_published);
        *last_published = st->events_published;
        if (st->subscriptions < 4)
            fail(c, "GetStats: %u subscriptions, at least 4 exist", st->subscriptions);
        if (!st->redis_connected)
            fail(c, "GetStats: redis_connected false");
    }
    if (st)
        protobuf_c_message_free_unpacked(&st->base, NULL);
    if (chance(&c->rng, 20)) {
        oplog(c, "ListEventTypes");
        unary(c, K_TYPES, &treq.base, &tracseq__events__v1__list_event_types_response__descriptor,
              &types_resp, CALL_MS, ALLOWED(GRPC_STATUS_OK));
        if (types_resp)
            protobuf_c_message_free_unpacked(types_resp, NULL);
    }
}

/* ===================== HTTP through the bridge =========================== */

typedef struct hresp {
    int status;
    char *buf; /* whole response, NUL-terminated */
    size_t len;
    char *body; /* into buf */
} hresp;

static int http_connect(int port, int timeout_ms)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static bool send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* accept: an SSE request, sent as HTTP/1.0 so the stream comes unchunked;
 * ctype: the body's (NULL: application/json). */
static bool http_send(int fd, const char *method, const char *path, const char *body,
                      const char *ctype, const char *accept)
{
    char ct[96] = "", auth[96] = "";
    char head[1024];
    size_t blen = body ? strlen(body) : 0;

    if (body != NULL)
        snprintf(ct, sizeof(ct), "Content-Type: %s\r\n", ctype ? ctype : "application/json");
    if (g.secure)
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s\r\n", g.token);
    snprintf(head, sizeof(head),
             "%s %s HTTP/1.%d\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s%s%s%s%s\r\n", method,
             path, accept ? 0 : 1, auth, ct, accept ? "Accept: " : "", accept ? accept : "",
             accept ? "\r\n" : "");
    if (body) {
        size_t l = strlen(head);
        snprintf(head + l - 2, sizeof(head) - l + 2, "Content-Length: %zu\r\n\r\n", blen);
    }
    return send_all(fd, head, strlen(head)) && (blen == 0 || send_all(fd, body, blen));
}

/*
 * One request on its own connection (Connection: close), read to the end.
 * vanish: hang up right after sending (returns 0). Returns the status, -1
 * when no well-formed answer came within timeout_ms.
 */
static int http_do_as(const char *method, const char *path, const char *body, const char *ctype,
                      int timeout_ms, bool vanish, hresp *r)
{
    int fd = http_connect(g.bridge->port, timeout_ms);
    size_t cap = 16384;

    memset(r, 0, sizeof(*r));
    r->status = -1;
    if (fd < 0)
        return -1;
    atomic_fetch_add(&g.rest_calls, 1);
    if (!http_send(fd, method, path, body, ctype, NULL) || vanish) {
        close(fd);
        return vanish ? 0 : -1;
    }
    r->buf = malloc(cap);
    for (;;) {
        ssize_t n;
        if (r->len + 1 >= cap) {
            char *b = cap < (64u << 20) ? realloc(r->buf, cap *= 2) : NULL;
            if (b == NULL)
                break;
            r->buf = b;
        }
        n = recv(fd, r->buf + r->len, cap - r->len - 1, 0);
        if (n <= 0)
            break;
        r->len += (size_t)n;
    }
    close(fd);
    r->buf[r->len] = '\0';
    if (sscanf(r->buf, "HTTP/1.1 %d", &r->status) != 1 ||
        (r->body = strstr(r->buf, "\r\n\r\n")) == NULL) {
        r->status = -1;
        return -1;
    }
    r->body += 4;
    return r->status;
}

static int http_do(const char *method, const char *path, const char *body, int timeout_ms,
                   bool vanish, hresp *r)
{
    return http_do_as(method, path, body, NULL, timeout_ms, vanish, r);
}

static void hresp_free(hresp *r)
{
    free(r->buf);
}

/* The body as JSON (an object), or a failure naming the request. */
static json_t *http_json(client *c, const hresp *r, const char *what)
{
    json_error_t err;
    json_t *j = json_loads(r->body ? r->body : "", 0, &err);

    if (!json_is_object(j)) {
        fail(c, "%s: %d answer is not a JSON object: %.200s", what, r->status,
             r->body ? r->body : "");
        json_decref(j);
        return NULL;
    }
    return j;
}

static void json_event(json_t *o, pub *p)
{
    json_t *payload;
    char ts[40];

    json_object_set_new(o, "event_type", json_string(p->type));
    json_object_set_new(o, "source_service", json_string(p->ev.source_service));
    json_object_set_new(o, "subject", json_string(p->subject));
    if (p->ev.priority != 0) /* REST: absent means 3; 0 is refused */
        json_object_set_new(o, "priority", json_integer(p->ev.priority));
    if (p->id[0] != '\0')
        json_object_set_new(o, "id", json_string(p->id));
    if (p->ev.traceparent != NULL && p->ev.traceparent[0] != '\0')
        json_object_set_new(o, "traceparent", json_string(p->ev.traceparent));
    if (p->ev.tracestate != NULL && p->ev.tracestate[0] != '\0')
        json_object_set_new(o, "tracestate", json_string(p->ev.tracestate));
    snprintf(ts, sizeof(ts), "2025-12-05T07:%02d:%02dZ", (p->tok / 60) % 60, p->tok % 60);
    switch (p->ev.payload_case) {
    case TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_LOGIN_FAILED:
        payload = json_pack("{s:s, s:s, s:s}", "username", "user", "failure_reason", "bad_password",
                            "failed_at", ts);
        break;
    case TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_USER_LOGGED_OUT:
        payload = json_pack("{s:s, s:s, s:s, s:s, s:s}", "user_id", "u1", "username", "user",
                            "session_id", "s1", "logout_reason", "timeout", "logout_at", ts);
        break;
    default: payload = json_pack("{s:i}", "n", p->tok); break;
    }
    json_object_set_new(o, "payload", payload);
}

static void rest_publish(client *c)
{
    bad_kind bad;
    bool other, vanish = chance(&c->rng, 5), cloud = chance(&c->rng, 25);
    int tok = choose_event(c, &bad, &other);
    json_t *o, *ans;
    char *body;
    hresp r;
    pub p;

    if (tok < 0)
        return;
    pub_fill(&p, tok, bad, other);
    /* A CloudEvent needs its id (so events the server names go as REST), and
     * takes any non-empty string as one (so a "bad" id is not refused). */
    cloud = cloud && p.id[0] != '\0' && bad != BAD_ID;
    o = json_object();
    json_event(o, &p);
    if (cloud) { /* the same event as a structured-mode CloudEvent */
        json_t *ce = json_pack(
            "{s:s, s:O, s:O, s:O}", "specversion", "1.0", "type", json_object_get(o, "event_type"),
            "source", json_object_get(o, "source_service"), "data", json_object_get(o, "payload"));
        json_object_update(o, ce);
        json_decref(ce);
    }
    if (cloud) {
        json_object_del(o, "event_type");
        json_object_del(o, "source_service");
        json_object_del(o, "payload");
    }
    body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    oplog(c, "REST publish tt-%d %s p%d id=%s bad=%d other=%d vanish=%d cloud=%d", tok, p.type,
          p.ev.priority, p.id, bad, other, vanish, cloud);
    atomic_fetch_add(&g.rest_events, 1);
    http_do_as("POST", "/api/v1/events/publish", body,
               cloud ? "application/cloudevents+json" : NULL, CALL_MS, vanish, &r);
    free(body);
    if (vanish) {
        publish_outcome(c, tok, false, false, true, NULL, NULL, NULL, false, "REST publish");
        return;
    }
    if (r.status < 0) {
        fail(c, "REST publish of tt-%d: no well-formed answer", tok);
        hresp_free(&r);
        return;
    }
    ans = http_json(c, &r, "REST publish");
    if (ans != NULL) {
        const char *sid = json_string_value(json_object_get(ans, "stream_id"));
        if (r.status != 200 && !ev_at(tok)->invalid)
            fail(c, "REST publish of valid tt-%d: status %d %.300s", tok, r.status, r.body);
        if (r.status == 200) {
            const char *at = json_string_value(json_object_get(ans, "published_at"));
            if (at == NULL)
                fail(c, "REST publish of tt-%d: 200 without published_at", tok);
            else
                ev_published_at(c, ev_at(tok), tok, 1, at, "REST publish");
        }
        if (r.status == 200)
            publish_outcome(c, tok, true, false, false,
                            json_string_value(json_object_get(ans, "event_id")), sid,
                            json_string_value(json_object_get(ans, "stream")),
                            json_is_true(json_object_get(ans, "duplicate")), "REST publish");
        else if (r.status == 422 || r.status == 400)
            publish_outcome(c, tok, false, true, false, NULL, sid, NULL, false, "REST publish");
        else
            fail(c, "REST publish of tt-%d: status %d %.200s", tok, r.status, r.body);
        json_decref(ans);
    }
    hresp_free(&r);
}

/* One entry of a batch answer: its own status and, when 200, the publish
 * answer's fields. */
static void batch_result(client *c, int tok, json_t *res)
{
    int status = (int)json_integer_value(json_object_get(res, "status"));
    const char *sid = json_string_value(json_object_get(res, "stream_id"));

    if (status == 200) {
        const char *at = json_string_value(json_object_get(res, "published_at"));
        if (at != NULL)
            ev_published_at(c, ev_at(tok), tok, 1, at, "REST batch");
        publish_outcome(c, tok, true, false, false,
                        json_string_value(json_object_get(res, "event_id")), sid,
                        json_string_value(json_object_get(res, "stream")),
                        json_is_true(json_object_get(res, "duplicate")), "REST batch");
    } else {
        if (!ev_at(tok)->invalid)
            fail(c, "REST batch entry tt-%d: status %d", tok, status);
        publish_outcome(c, tok, false, true, false, NULL, sid, NULL, false, "REST batch");
    }
}

static void rest_batch(client *c)
{
    int n = 1 + rnd(&c->rng, 12), toks[12], k = 0;
    json_t *arr = json_array(), *o, *ans, *results;
    char *body;
    hresp r;

    for (int i = 0; i < n; i++) {
        bad_kind bad;
        bool other;
        pub p;
        if ((toks[k] = choose_event(c, &bad, &other)) < 0)
            break;
        pub_fill(&p, toks[k], bad, other);
        o = json_object();
        json_event(o, &p);
        json_array_append_new(arr, o);
        oplog(c, "  batch tt-%d %s p%d id=%s bad=%d other=%d", toks[k], p.type, p.ev.priority, p.id,
              bad, other);
        k++;
    }
    o = json_pack("{s:o}", "events", arr);
    body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    oplog(c, "REST batch of %d", k);
    atomic_fetch_add(&g.rest_events, k);
    http_do("POST", "/api/v1/events/batch", body, CALL_MS, false, &r);
    free(body);
    if (r.status != 200 || (ans = http_json(c, &r, "REST batch")) == NULL) {
        fail(c, "REST batch of %d: status %d %.300s", k, r.status, r.body ? r.body : "");
        hresp_free(&r);
        return;
    }
    results = json_object_get(ans, "results");
    if (!json_is_array(results) || json_array_size(results) != (size_t)k)
        fail(c, "REST batch of %d: %zu results", k, json_array_size(results));
    for (size_t i = 0; i < json_array_size(results) && i < (size_t)k; i++) {
        json_t *res = json_array_get(results, i);
        if (json_integer_value(json_object_get(res, "index")) != (json_int_t)i)
            fail(c, "REST batch: result %zu has index %lld", i,
                 (long long)json_integer_value(json_object_get(res, "index")));
        batch_result(c, toks[i], res);
    }
    json_decref(ans);
    hresp_free(&r);
}

static void rest_ack(client *c, const char *name, json_t *ids, bool nack)
{
    char path[160], *body;
    json_t *o = json_pack("{s:O}", "ack_ids", ids);
    hresp r;

    if (nack)
        json_object_set_new(o, "delay_ms", json_integer(rnd(&c->rng, 800)));
    if (nack && chance(&c->rng, 10))
        json_object_set_new(o, "reject", json_true());
    if (chance(&c->rng, 10))
        json_array_append_new(json_object_get(o, "ack_ids"), json_string(odd_ack_id(c, name)));
    snprintf(path, sizeof(path), "/api/v1/subscriptions/%s/%s", name, nack ? "nack" : "ack");
    body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    oplog(c, "REST %s %s %zu ids", nack ? "nack" : "ack", name, json_array_size(ids));
    http_do("POST", path, body, CALL_MS, false, &r);
    free(body);
    if (r.status != 200 && r.status != 404 && r.status != 422 && r.status != 400)
        fail(c, "REST %s on %s: status %d %.200s", nack ? "nack" : "ack", name, r.status,
             r.body ? r.body : "");
    else
        json_decref(http_json(c, &r, "REST ack"));
    hresp_free(&r);
}

static void rest_pull(client *c)
{
    msub *ms = chance(&c->rng, 3) ? NULL : &subs[rnd(&c->rng, N_SUBS)];
    const char *name = ms ? ms->name : "no-such-sub";
    int max = 1 + rnd(&c->rng, 40), wait = rnd(&c->rng, 1500);
    bool vanish = ms != NULL && !ms->auto_ack && chance(&c->rng, 5);
    char path[200];
    json_t *ans, *events, *ids;
    order ord;
    hresp r;

    memset(&ord, 0, sizeof(ord));
    snprintf(path, sizeof(path), "/api/v1/subscriptions/%s/events?max=%d&wait_ms=%d", name, max,
             wait);
    oplog(c, "REST pull %s max=%d wait=%d vanish=%d", name, max, wait, vanish);
    atomic_fetch_add(&g.rest_pulls, 1);
    http_do("GET", path, NULL, wait + CALL_MS, vanish, &r);
    if (vanish)
        return;
    if (r.status == 404 && (ms == NULL || !ms->stable)) {
        json_decref(http_json(c, &r, "REST pull"));
        hresp_free(&r);
        return;
    }
    if (r.status != 200 || (ans = http_json(c, &r, "REST pull")) == NULL) {
        fail(c, "REST pull %s: status %d %.200s", name, r.status, r.body ? r.body : "");
        hresp_free(&r);
        return;
    }
    if (ms == NULL)
        fail(c, "REST pull of unknown subscription answered 200");
    events = json_object_get(ans, "events");
    ids = json_array();
    if (!json_is_array(events) || json_array_size(events) > (size_t)max)
        fail(c, "REST pull %s max=%d: events not an array of at most max", name, max);
    for (size_t i = 0; ms != NULL && i < json_array_size(events); i++) {
        json_t *d = json_array_get(events, i);
        check_json_delivery(c, name, ms->patterns, ms->n_patterns, ms, &ord, d, NULL);
        json_array_append(ids, json_object_get(d, "ack_id"));
    }
    oplog(c, "  REST pull %s: %zu events", name, json_array_size(events));
    if (ms != NULL && !ms->auto_ack && json_array_size(ids) > 0 && chance(&c->rng, 85))
        rest_ack(c, name, ids, chance(&c->rng, 12));
    json_decref(ids);
    json_decref(ans);
    hresp_free(&r);
}

/* One SSE reader: reads events for a while, then hangs up. */
static void rest_sse(client *c)
{
    msub *ms = &subs[rnd(&c->rng, N_SUBS)];
    int life = 200 + rnd(&c->rng, 2000), fd = http_connect(g.bridge->port, CALL_MS);
    long long end = tse_test_now_ms() + life;
    char path[160], *buf = NULL;
    size_t len = 0, cap = 0;
    bool head_done = false;
    order ord;

    memset(&ord, 0, sizeof(ord));
    if (fd < 0) {
        fail(c, "SSE: cannot connect to the bridge");
        return;
    }
    snprintf(path, sizeof(path), "/api/v1/subscriptions/%s/events", ms->name);
    oplog(c, "SSE %s life=%d", ms->name, life);
    atomic_fetch_add(&g.rest_calls, 1);
    http_send(fd, "GET", path, NULL, NULL, "text/event-stream");
    while (tse_test_now_ms() < end && !atomic_load(&g.stop)) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        ssize_t n;
        char *sep;
        if (poll(&pfd, 1, 100) <= 0)
            continue;
        if (len + 4097 > cap) {
            char *b = realloc(buf, cap = cap ? cap * 2 : 65536);
            if (b == NULL)
                break;
            buf = b;
        }
        n = recv(fd, buf + len, cap - len - 1, 0);
        if (n <= 0)
            break;
        len += (size_t)n;
        buf[len] = '\0';
        if (!head_done) {
            int status = 0;
            if ((sep = strstr(buf, "\r\n\r\n")) == NULL)
                continue;
            sscanf(buf, "HTTP/1.%*d %d", &status);
            if (status == 404 && !ms->stable)
                break;
            if (status != 200) {
                fail(c, "SSE %s: status %d %.200s", ms->name, status, buf);
                break;
            }
            head_done = true;
            sep += 4;
            len -= (size_t)(sep - buf);
            memmove(buf, sep, len + 1);
        }
        /* Events end with a blank line; bodies may come chunked: only
         * "id:", "event:" and "data:" lines are read. */
        while ((sep = strstr(buf, "\n\n")) != NULL) {
            char *line = buf, *id = NULL, *data = NULL, *event = NULL;
            *sep = '\0';
            while (line != NULL && *line) {
                char *nl = strchr(line, '\n');
                if (nl)
                    *nl = '\0';
                if (strncmp(line, "id: ", 4) == 0)
                    id = line + 4;
                else if (strncmp(line, "event: ", 7) == 0)
                    event = line + 7;
                else if (strncmp(line, "data: ", 6) == 0)
                    data = line + 6;
                line = nl ? nl + 1 : NULL;
            }
            if (event != NULL && strcmp(event, "error") == 0) {
                oplog(c, "  SSE %s: error %.100s", ms->name, data ? data : "");
                if (ms->stable)
                    fail(c, "SSE %s: error event %.200s", ms->name, data ? data : "");
                goto out;
            }
            if (data != NULL) {
                json_error_t err;
                json_t *ev = json_loads(data, 0, &err),
                       *d = json_pack("{s:O?, s:i}", "event", ev, "delivery_attempt", 1);
                const char *sid = id ? strrchr(id, '/') : NULL;
                if (ev == NULL)
                    fail(c, "SSE %s: data is not JSON: %.200s", ms->name, data);
                else {
                    json_object_set_new(d, "stream_id", json_string(sid ? sid + 1 : ""));
                    check_json_delivery(c, ms->name, ms->patterns, ms->n_patterns, ms, NULL, d, id);
                }
                json_decref(ev);
                json_decref(d);
            }
            len -= (size_t)(sep + 2 - buf);
            memmove(buf, sep + 2, len + 1);
        }
    }
out:
    close(fd);
    free(buf);
}

static void rest_admin(client *c)
{
    int r = rnd(&c->rng, 100);
    msub *ms = &subs[rnd(&c->rng, N_SUBS)];
    char path[160];
    hresp h;
    json_t *j;

    if (r < 30) {
        oplog(c, "REST stats");
        http_do("GET", "/api/v1/stats", NULL, CALL_MS, false, &h);
        if (h.status != 200 || (j = http_json(c, &h, "REST stats")) == NULL)
            fail(c, "REST stats: status %d", h.status);
        else {
            if (!json_is_integer(json_object_get(j, "events_published")))
                fail(c, "REST stats without events_published");
            json_decref(j);
        }
    } else if (r < 45) {
        oplog(c, "REST list subscriptions");
        http_do("GET", "/api/v1/subscriptions", NULL, CALL_MS, false, &h);
        if (h.status != 200)
            fail(c, "REST list subscriptions: status %d", h.status);
        else
            json_decref(http_json(c, &h, "REST list"));
    } else if (r < 55) {
        /* an ephemeral subscription through the original's endpoint, then gone */
        char body[200];
        snprintf(body, sizeof(body),
                 "{\"name\":\"rest-eph-%d-%d\",\"event_types\":[\"tort.*\"],\"auto_ack\":false}",
                 c->idx, c->eph);
        oplog(c, "REST subscribe rest-eph-%d-%d", c->idx, c->eph);
        http_do("POST", "/api/v1/events/subscribe", body, CALL_MS, false, &h);
        if (h.status != 200)
            fail(c, "REST subscribe: status %d %.200s", h.status, h.body ? h.body : "");
        else
            json_decref(http_json(c, &h, "REST subscribe"));
        hresp_free(&h);
        snprintf(path, sizeof(path), "/api/v1/subscriptions/rest-eph-%d-%d", c->idx, c->eph++);
        http_do("DELETE", path, NULL, CALL_MS, false, &h);
        if (h.status != 200)
            fail(c, "REST delete %s: status %d %.200s", path, h.status, h.body ? h.body : "");
    } else {
        /* get or delete one of ours; churn ones under their lock */
        bool del = !ms->stable && r >= 80;
        int want;
        snprintf(path, sizeof(path), "/api/v1/subscriptions/%s", ms->name);
        if (!ms->stable)
            pthread_mutex_lock(&ms->mu);
        want = ms->stable || ms->exists ? 200 : 404;
        oplog(c, "REST %s %s (exists=%d)", del ? "DELETE" : "GET", ms->name, want == 200);
        http_do(del ? "DELETE" : "GET", path, NULL, CALL_MS, false, &h);
        if (h.status != want)
            fail(c, "REST %s %s: status %d, expected %d: %.200s", del ? "DELETE" : "GET", ms->name,
                 h.status, want, h.body ? h.body : "");
        else
            json_decref(http_json(c, &h, "REST subscription"));
        if (del)
            ms->exists = false;
        if (!ms->stable)
            pthread_mutex_unlock(&ms->mu);
    }
    hresp_free(&h);
}

/* ===================== PublishCloudEvent ================================ */

typedef Io__Cloudevents__V1__CloudEvent__CloudEventAttributeValue CeValue;
typedef Io__Cloudevents__V1__CloudEvent__AttributesEntry CeEntry;

/*
 * The event of op_publish as a CloudEvent in the protobuf format: id,
 * source, type; subject and priority as attributes; the payload as JSON
 * text_data. Only events with their own id (a CloudEvent needs one) and
 * without a bad id (any string is a CloudEvent id).
 */
static void op_publish_cloudevent(client *c)
{
    Tracseq__Events__V1__PublishCloudEventRequest req =
        TRACSEQ__EVENTS__V1__PUBLISH_CLOUD_EVENT_REQUEST__INIT;
    Io__Cloudevents__V1__CloudEvent ce;
    CeValue v[5];
    CeEntry e[5];
    CeEntry *entries[5];
    size_t n = 2;
    PublishResponse *resp = NULL;
    bad_kind bad;
    bool other;
    int tok = choose_event(c, &bad, &other);
    grpc_status_code code;
    json_t *o;
    char *text;
    pub p;

    if (tok < 0)
        return;
    io__cloudevents__v1__cloud_event__init(&ce);
    for (int i = 0; i < 5; i++) {
        io__cloudevents__v1__cloud_event__cloud_event_attribute_value__init(&v[i]);
        io__cloudevents__v1__cloud_event__attributes_entry__init(&e[i]);
    }
    pub_fill(&p, tok, bad, other);
    if (p.id[0] == '\0' || bad == BAD_ID) {
        publish_outcome(c, tok, false, false, true, NULL, NULL, NULL, false, "PublishCloudEvent");
        return;
    }
    o = json_object();
    json_event(o, &p);
    text = json_dumps(json_object_get(o, "payload"), JSON_COMPACT);
    json_decref(o);
    ce.id = p.id;
    ce.source = (char *)p.ev.source_service;
    ce.spec_version = "1.0";
    ce.type = p.type;
    e[0].key = "subject";
    v[0].attr_case = IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_STRING;
    v[0].ce_string = p.subject;
    e[1].key = "datacontenttype";
    v[1].attr_case = IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_STRING;
    v[1].ce_string = "application/json";
    if (p.ev.priority != 0) {
        e[n].key = "priority";
        v[n].attr_case =
            IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_INTEGER;
        v[n++].ce_integer = p.ev.priority;
    }
    /* The distributed-tracing extension carries the event's trace context. */
    if (p.ev.traceparent != NULL && p.ev.traceparent[0] != '\0') {
        e[n].key = "traceparent";
        v[n].attr_case =
            IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_STRING;
        v[n++].ce_string = p.ev.traceparent;
    }
    if (p.ev.tracestate != NULL && p.ev.tracestate[0] != '\0') {
        e[n].key = "tracestate";
        v[n].attr_case =
            IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_STRING;
        v[n++].ce_string = p.ev.tracestate;
    }
    for (size_t i = 0; i < n; i++) {
        e[i].value = &v[i];
        entries[i] = &e[i];
    }
    ce.n_attributes = n;
    ce.attributes = entries;
    ce.data_case = IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_TEXT_DATA;
    ce.text_data = text;
    req.event = &ce;
    oplog(c, "PublishCloudEvent tt-%d %s p%d id=%s bad=%d other=%d", tok, p.type, p.ev.priority,
          p.id, bad, other);
    code = unary(c, K_CLOUDEVENT, &req.base, &tracseq__events__v1__publish_response__descriptor,
                 (ProtobufCMessage **)&resp, CALL_MS,
                 ALLOWED(GRPC_STATUS_OK, GRPC_STATUS_INVALID_ARGUMENT));
    free(text);
    if (code == GRPC_STATUS_OK && resp != NULL) {
        char at[48];
        snprintf(at, sizeof(at), "%lld.%09d",
                 resp->published_at ? (long long)resp->published_at->seconds : -1LL,
                 resp->published_at ? resp->published_at->nanos : 0);
        ev_published_at(c, ev_at(tok), tok, 0, at, "PublishCloudEvent");
        publish_outcome(c, tok, true, false, false, resp->event_id, resp->stream_id, resp->stream,
                        resp->duplicate, "PublishCloudEvent");
    } else if (code == GRPC_STATUS_DEADLINE_EXCEEDED || code == GRPC_STATUS_CANCELLED) {
        publish_outcome(c, tok, false, false, true, NULL, NULL, NULL, false, "PublishCloudEvent");
    } else if (code != GRPC_STATUS_OK) {
        publish_outcome(c, tok, false, true, false, NULL, NULL, NULL, false, "PublishCloudEvent");
    }
    if (resp)
        protobuf_c_message_free_unpacked(&resp->base, NULL);
}

/* ===================== the clients ======================================= */

static void *client_main(void *arg)
{
    client *c = arg;
    uint64_t last_published = 0;

    while (!atomic_load(&g.stop)) {
        int r = rnd(&c->rng, 100);
        if (r < 22)
            chance(&c->rng, 20) ? op_publish_cloudevent(c) : op_publish(c);
        else if (r < 27)
            op_publish_stream(c);
        else if (r < 29)
            op_publish_batch(c);
        else if (r < 30)
            op_publish_batch_stream(c);
        else if (r < 42)
            op_subscribe(c);
        else if (r < 54)
            op_pull(c);
        else if (r < 62)
            op_admin(c);
        else if (r < 63)
            op_stats(c, &last_published);
        else if (r < 64)
            chance(&c->rng, 60) ? op_dead_letters(c) : op_seek(c);
        else if (r < 65)
            op_solo(c);
        else if (r < 74)
            rest_publish(c);
        else if (r < 77)
            rest_batch(c);
        else if (r < 87)
            rest_pull(c);
        else if (r < 91)
            rest_sse(c);
        else
            rest_admin(c);
    }
    return NULL;
}

/* ===================== the service process =============================== */

static void proc_sample(void)
{
    char path[64], line[256];
    FILE *f;
    long rss = -1, threads = -1;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)g.service->pid);
    if ((f = fopen(path, "r")) == NULL)
        return;
    while (fgets(line, sizeof(line), f) != NULL) {
        sscanf(line, "VmRSS: %ld", &rss);
        sscanf(line, "Threads: %ld", &threads);
    }
    fclose(f);
    if (g.rss_start_kb == 0)
        g.rss_start_kb = rss;
    g.rss_now_kb = rss;
    if (rss > g.rss_max_kb)
        g.rss_max_kb = rss;
    if (threads > g.threads_max)
        g.threads_max = threads;
    if (rss > RSS_LIMIT_KB)
        fail(NULL, "service RSS %ld kB over %ld kB", rss, RSS_LIMIT_KB);
    if (threads > THREADS_LIMIT)
        fail(NULL, "service has %ld threads, over %d", threads, THREADS_LIMIT);
}

/* The service is alive; when it died, fails and forgets its pid. */
static bool service_alive(void)
{
    int status;

    if (g.service->pid > 0 && waitpid(g.service->pid, &status, WNOHANG) == g.service->pid) {
        fail(NULL, "the service died: %s %d (log %s)",
             WIFSIGNALED(status) ? "signal" : "exit status",
             WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), g.service->log);
        g.service->pid = 0;
        return false;
    }
    return g.service->pid > 0;
}

/* Every line of the log is one JSON object; counts lines holding needle. */
static long log_check(const char *path, const char *needle, long *internal)
{
    FILE *f = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long count = 0, lineno = 0;

    *internal = 0;
    if (f == NULL) {
        fail(NULL, "cannot read the log %s", path);
        return 0;
    }
    while ((n = getline(&line, &cap, f)) > 0) {
        json_error_t err;
        json_t *j;
        lineno++;
        if (line[n - 1] == '\n')
            line[n - 1] = '\0';
        j = json_loads(line, 0, &err);
        if (!json_is_object(j))
            fail(NULL, "%s line %ld is not a JSON object: %.300s", path, lineno, line);
        json_decref(j);
        /* Audit lines name a method too; they are not request lines. */
        if (strstr(line, needle) != NULL && strstr(line, "\"msg\":\"audit\"") == NULL)
            count++;
        if (strstr(line, "\"status\":\"INTERNAL\"") != NULL)
            (*internal)++;
    }
    free(line);
    fclose(f);
    return count;
}

/* ===================== Redis: what is stored ============================= */

static const char *reply_field(const redisReply *fields, const char *name, size_t *len)
{
    for (size_t i = 0; fields && i + 1 < fields->elements; i += 2)
        if (fields->element[i]->type == REDIS_REPLY_STRING &&
            strcmp(fields->element[i]->str, name) == 0) {
            *len = fields->element[i + 1]->len;
            return fields->element[i + 1]->str;
        }
    return NULL;
}

/* Calls fn on every entry of key (paged XRANGE, on the master of key in a
 * cluster). */
static void xrange_all(const char *key, void (*fn)(const char *key, const redisReply *entry))
{
    char start[64] = "-";

    for (;;) {
        redisReply *r = tse_test_redis_reply(g.redis, "XRANGE %s %s + COUNT 5000", key, start);
        size_t n;
        if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
            fail(NULL, "XRANGE %s failed", key);
            if (r)
                freeReplyObject(r);
            return;
        }
        n = r->elements;
        for (size_t i = 0; i < n; i++)
            fn(key, r->element[i]);
        if (n > 0)
            snprintf(start, sizeof(start), "(%s", r->element[n - 1]->element[0]->str);
        freeReplyObject(r);
        if (n < 5000)
            return;
    }
}

static int entry_token(const redisReply *entry, const char *key)
{
    size_t len;
    const char *env = reply_field(entry->element[1], "event", &len);
    Event *ev = env ? tracseq__events__v1__event__unpack(NULL, len, (const uint8_t *)env) : NULL;
    int tok;

    if (ev == NULL) {
        fail(NULL, "%s %s: no event envelope that decodes", key, entry->element[0]->str);
        return -1;
    }
    tok = token_of(ev->subject);
    if (ev_made(tok) == NULL)
        fail(NULL, "%s %s: stored an event never published (subject '%s')", key,
             entry->element[0]->str, ev->subject);
    else {
        char tp[64], ts[32];
        trace_of(tok, tp, sizeof(tp), ts, sizeof(ts));
        if (strcmp(ev->traceparent, tp) != 0 || strcmp(ev->tracestate, ts) != 0)
            fail(NULL, "%s %s: tt-%d stored with trace context '%s' '%s', published with '%s' '%s'",
                 key, entry->element[0]->str, tok, ev->traceparent, ev->tracestate, tp, ts);
    }
    tracseq__events__v1__event__free_unpacked(ev, NULL);
    return ev_made(tok) ? tok : -1;
}

static long stored_total;

static void count_stored(const char *key, const redisReply *entry)
{
    int tok = entry_token(entry, key);
    mevent *e = ev_at(tok);
    char want[160];
    size_t len = 0;
    const char *id = reply_field(entry->element[1], "id", &len);

    stored_total++;
    if (e == NULL)
        return;
    stream_key(e, want, sizeof(want));
    if (strcmp(key, want) != 0)
        fail(NULL, "tt-%d stored in %s, published to %s", tok, key, want);
    if (e->client_id && (id == NULL || strncmp(id, e->id, len) != 0 || strlen(e->id) != len))
        fail(NULL, "tt-%d stored with id '%.*s', published with %s", tok, (int)len, id ? id : "",
             e->id);
    e->stored++;
    if (e->stream_id[0] != '\0' && strcmp(e->stream_id, entry->element[0]->str) != 0)
        fail(NULL, "tt-%d stored as %s, answered %s", tok, entry->element[0]->str, e->stream_id);
}

static int dead_bit;

static void mark_dead(const char *key, const redisReply *entry)
{
    size_t len = 0;
    const char *type = reply_field(entry->element[1], "type", &len);
    int tok;

    /* A republished dead letter of t-tort that another subscription gave
     * up on says nothing of the original event for that subscription. */
    if (strncmp(key, "tracseq:dlq:", 12) == 0 && type != NULL && len == strlen(DLT_TYPE) &&
        memcmp(type, DLT_TYPE, len) == 0)
        return;
    tok = entry_token(entry, key);

    if (tok >= 0)
        atomic_fetch_or(&ev_at(tok)->dead, 1u << dead_bit);
}

/* Counts every stored entry per event (e->stored); returns the total. The
 * stream keys are listed by every master (all of Redis when single). */
static long scan_stored(void)
{
    const tse_test_redis *masters[TSE_TEST_CLUSTER_MAX];
    int n = atomic_load(&g.n_events), n_masters = tse_test_redis_masters(g.redis, masters, 6);

    for (int i = 0; i < n; i++)
        ev_at(i)->stored = 0;
    stored_total = 0;
    if (n_masters == 0)
        fail(NULL, "no Redis master answers");
    for (int m = 0; m < n_masters; m++) {
        redisReply *keys = tse_test_redis_reply(masters[m], "KEYS tracseq:events:*");
        if (keys == NULL || keys->type != REDIS_REPLY_ARRAY)
            fail(NULL, "KEYS on Redis :%d failed", masters[m]->port);
        for (size_t i = 0; keys && i < keys->elements; i++)
            if (strncmp(keys->element[i]->str,
                        "tracseq:events:{" DLT_TYPE "}:", 18 + strlen(DLT_TYPE)) != 0)
                xrange_all(keys->element[i]->str, count_stored);
        if (keys)
            freeReplyObject(keys);
    }
    return stored_total;
}

static void scan_dead(msub *ms)
{
    char key[128];

    snprintf(key, sizeof(key), "tracseq:dlq:%s", ms->name);
    dead_bit = ms->bit;
    xrange_all(key, mark_dead);
    /* Dead letters sent to its target: events of that type, any priority. */
    for (int p = 1; ms->dead_letter_type != NULL && p <= 5; p++) {
        snprintf(key, sizeof(key), "tracseq:events:{%s}:p%d", ms->dead_letter_type, p);
        xrange_all(key, mark_dead);
    }
}

/* ===================== the end: drain and check ========================== */

static bool checked(const msub *ms)
{
    return !ms->auto_ack && (ms->stable || ms->exists);
}

/* Events that must reach ms and have not (yet). */
static long missing_for(const msub *ms, int *first)
{
    int n = atomic_load(&g.n_events);
    long missing = 0;

    *first = -1;
    for (int i = 0; i < n; i++) {
        mevent *e = ev_at(i);
        unsigned bit = 1u << ms->bit;
        if (e->stored == 0 || e->pub_start <= ms->since ||
            !patterns_match(ms->patterns, ms->n_patterns, types[e->type].type))
            continue;
        if ((atomic_load(&e->delivered) & bit) || (atomic_load(&e->dead) & bit))
            continue;
        if (*first < 0)
            *first = i;
        missing++;
    }
    return missing;
}

/* How many stored events ms must get, and how many of them went to its
 * dead-letter stream. */
static long expected_for(const msub *ms, long *dead)
{
    int n = atomic_load(&g.n_events);
    long want = 0;

    *dead = 0;
    for (int i = 0; i < n; i++) {
        mevent *e = ev_at(i);
        if (e->stored == 0 || e->pub_start <= ms->since ||
            !patterns_match(ms->patterns, ms->n_patterns, types[e->type].type))
            continue;
        want++;
        if ((atomic_load(&e->dead) & (1u << ms->bit)) &&
            !(atomic_load(&e->delivered) & (1u << ms->bit)))
            (*dead)++;
    }
    return want;
}

/* Prints what Redis knows of a missing event: its group's state and its
 * pending entry (who holds it, how idle, how often delivered). */
static void diagnose(const mevent *e, const msub *ms)
{
    char key[160], *groups, *pending, *consumers;

    stream_key(e, key, sizeof(key));
    groups = tse_test_redis_cmd(g.redis, "XINFO GROUPS %s", key);
    pending = tse_test_redis_cmd(g.redis, "XPENDING %s %s %s %s 1", key, ms->name, e->stream_id,
                                 e->stream_id);
    consumers = tse_test_redis_cmd(g.redis, "XINFO CONSUMERS %s %s", key, ms->name);
    for (char *p = groups; p && *p; p++)
        *p = *p == '\n' ? ' ' : *p;
    for (char *p = consumers; p && *p; p++)
        *p = *p == '\n' ? ' ' : *p;
    fprintf(stderr,
            "torture: %s groups: %s\ntorture: pending %s in %s: %s\ntorture: consumers: %.2000s\n",
            key, groups ? groups : "?", e->stream_id, ms->name,
            pending && *pending ? pending : "(not pending)", consumers ? consumers : "?");
    free(groups);
    free(pending);
    free(consumers);
}

static void drain(client *c)
{
    long long last_progress = tse_test_now_ms();
    long total = 0;

    for (;;) {
        long missing = 0, got = 0;
        int first = -1;
        msub *first_sub = NULL;
        for (int i = 0; i < N_SUBS; i++) {
            msub *ms = &subs[i];
            int f;
            long m;
            if (!checked(ms))
                continue;
            while (pull_once(c, ms, ms->name, 500, 200, CALL_MS, true) > 0)
                got++;
            scan_dead(ms);
            m = missing_for(ms, &f);
            if (m > 0 && first < 0) {
                first = f;
                first_sub = ms;
            }
            missing += m;
        }
        if (got > 0)
            last_progress = tse_test_now_ms();
        if (missing == 0 || atomic_load(&g.failed))
            break;
        if (tse_test_now_ms() - last_progress > DRAIN_QUIET_MS) {
            mevent *e = ev_at(first);
            if (e == NULL || first_sub == NULL)
                break;
            fail(c,
                 "%ld stored events never reached a subscription that matched them, e.g. tt-%d "
                 "(%s p%d id %s stream id %s, ok %d unknown %d, clock %lld) to %s (since clock "
                 "%lld)",
                 missing, first, types[e->type].type, e->prio, e->id, e->stream_id, e->ok,
                 e->unknown, e->pub_start, first_sub->name, first_sub->since);
            diagnose(e, first_sub);
            break;
        }
        total += got;
        usleep(200000);
    }
    for (int i = 0; i < N_SUBS && !atomic_load(&g.failed); i++) {
        long dead, want;
        if (!checked(&subs[i]))
            continue;
        want = expected_for(&subs[i], &dead);
        printf("torture: %s: all %ld events it had to get came (%ld only dead-lettered)\n",
               subs[i].name, want, dead);
    }
    (void)total;
}

/*
 * Once everything was drained and acked, a subscription's stats must say
 * so: nothing pending, no lag. Deliveries held by vanished subscribers come
 * back after the ack deadline (or go to the dead-letter stream), so this
 * pulls and acks until the stats read 0 or 60 s passed.
 */
static void check_quiescent_stats(client *c)
{
    for (int i = 0; i < N_SUBS && !atomic_load(&g.failed); i++) {
        msub *ms = &subs[i];
        long long deadline = tse_test_now_ms() + 60000;
        uint64_t lag = 0, pending = 0;
        if (!ms->stable || ms->auto_ack)
            continue;
        for (;;) {
            Tracseq__Events__V1__GetSubscriptionRequest req =
                TRACSEQ__EVENTS__V1__GET_SUBSCRIPTION_REQUEST__INIT;
            Subscription *got = NULL;
            while (pull_once(c, ms, ms->name, 500, 100, CALL_MS, true) > 0)
                ;
            req.name = (char *)ms->name;
            if (unary(c, K_GET, &req.base, &tracseq__events__v1__subscription__descriptor,
                      (ProtobufCMessage **)&got, CALL_MS,
                      ALLOWED(GRPC_STATUS_OK)) != GRPC_STATUS_OK ||
                got == NULL)
                return;
            lag = got->stats ? got->stats->lag : 1;
            pending = got->stats ? got->stats->pending : 1;
            protobuf_c_message_free_unpacked(&got->base, NULL);
            if ((lag == 0 && pending == 0) || tse_test_now_ms() > deadline)
                break;
            usleep(500000);
        }
        if (lag != 0 || pending != 0)
            fail(c, "%s drained and acked, yet its stats say lag %" PRIu64 " pending %" PRIu64,
                 ms->name, lag, pending);
    }
}

static void check_exactly_once(void)
{
    int n = atomic_load(&g.n_events);

    for (int i = 0; i < n && !atomic_load(&g.failed); i++) {
        mevent *e = ev_at(i);
        if (e->stored > 1)
            fail(NULL, "tt-%d (id %s) stored %d times", i, e->id, e->stored);
        else if (e->ok > 0 && e->stored == 0)
            fail(NULL, "tt-%d (id %s, stream id %s) answered OK %d times but is not in Redis", i,
                 e->id, e->stream_id, e->ok);
        else if (e->invalid && e->stored > 0)
            fail(NULL, "invalid tt-%d was stored", i);
        else if (e->ok == 0 && e->unknown == 0 && e->failed > 0 && e->stored > 0)
            fail(NULL, "tt-%d was refused but stored", i);
    }
}

static void check_stats(client *c, long stored)
{
    Tracseq__Events__V1__GetStatsRequest req = TRACSEQ__EVENTS__V1__GET_STATS_REQUEST__INIT;
    Stats *st = NULL;
    redisReply *r;
    int subs_now = 0;

    if (unary(c, K_STATS, &req.base, &tracseq__events__v1__stats__descriptor,
              (ProtobufCMessage **)&st, CALL_MS, ALLOWED(GRPC_STATUS_OK)) != GRPC_STATUS_OK ||
        st == NULL)
        return;
    if ((long)st->events_published != stored)
        fail(c, "GetStats: events_published %" PRIu64 ", Redis holds %ld events",
             st->events_published, stored);
    if ((long)st->events_duplicate < atomic_load(&g.dup_answers))
        fail(c, "GetStats: events_duplicate %" PRIu64 ", %ld duplicates answered",
             st->events_duplicate, atomic_load(&g.dup_answers));
    if ((long)st->events_invalid < atomic_load(&g.grpc_refused))
        fail(c, "GetStats: events_invalid %" PRIu64 ", %ld invalid events refused over gRPC alone",
             st->events_invalid, atomic_load(&g.grpc_refused));
    r = tse_test_redis_reply(g.redis, "HLEN tracseq:subs");
    if (r == NULL || r->type != REDIS_REPLY_INTEGER)
        fail(c, "HLEN tracseq:subs: no number");
    else
        subs_now = (int)r->integer;
    if (r)
        freeReplyObject(r);
    if ((int)st->subscriptions != subs_now)
        fail(c, "GetStats: %u subscriptions, Redis holds %d", st->subscriptions, subs_now);
    for (size_t i = 0; i < st->n_stream_lengths; i++) {
        r = tse_test_redis_reply(g.redis, "XLEN %s", st->stream_lengths[i]->key);
        if (r && r->type == REDIS_REPLY_INTEGER &&
            (uint64_t)r->integer != st->stream_lengths[i]->value &&
            strncmp(st->stream_lengths[i]->key, "tracseq:", 8) == 0)
            fail(c, "GetStats: stream %s length %" PRIu64 ", XLEN %lld", st->stream_lengths[i]->key,
                 st->stream_lengths[i]->value, r->integer);
        if (r)
            freeReplyObject(r);
    }
    for (int i = 0; i < N_SUBS; i++) {
        bool found = false;
        for (size_t j = 0; j < st->n_subscription_stats; j++)
            found |= strcmp(st->subscription_stats[j]->name, subs[i].name) == 0;
        if (found != (subs[i].stable || subs[i].exists))
            fail(c, "GetStats: subscription %s listed %d, exists %d", subs[i].name, found,
                 subs[i].stable || subs[i].exists);
    }
    printf("torture: stats: published %" PRIu64 " duplicate %" PRIu64 " invalid %" PRIu64
           " consumed %" PRIu64 " acked %" PRIu64 " redelivered %" PRIu64 " dead-lettered %" PRIu64
           " subscriptions %u\n",
           st->events_published, st->events_duplicate, st->events_invalid, st->events_consumed,
           st->events_acked, st->events_redelivered, st->events_dead_lettered, st->subscriptions);
    printf("torture: %ld deliveries of t-tort's dead letters (" DLT_TYPE " events)\n",
           atomic_load(&g.dlt_deliveries));
    protobuf_c_message_free_unpacked(&st->base, NULL);
}

/* Waits until the count of stored events stays still (late publishes of
 * cancelled calls land), then returns it. */
static long settle(void)
{
    long before = -1, now;

    for (int i = 0; i < 30; i++) {
        now = scan_stored();
        if (now == before)
            return now;
        before = now;
        sleep(1);
    }
    return before;
}

static void report_failure(void)
{
    fprintf(stderr, "\ntorture: FAILED: %s\n", g.fail_msg);
    for (int i = 0; i < g.clients; i++) {
        client *c = g.cl[i];
        int from = c->oplog_pos > OPLOG_N ? c->oplog_pos - OPLOG_N : 0;
        fprintf(stderr, "--- client %d: %ld ops, the last %d:\n", i, c->ops, c->oplog_pos - from);
        for (int k = from; k < c->oplog_pos; k++)
            fprintf(stderr, "  %s\n", c->oplog[k % OPLOG_N]);
    }
    fprintf(stderr, "torture: service log %s (kept)\n", g.service->log);
    fprintf(stderr, "torture: replay with SEED=%" PRIu64 " SECONDS=%d CLIENTS=%d\n", g.seed,
            g.seconds, g.clients);
}

/* Frees the model and the clients (their channels are gone already). */
static void world_free(void)
{
    for (int i = 0; i < g.clients; i++)
        free(g.cl[i]);
    for (int i = 0; i < MAX_CHUNKS; i++)
        free(g.chunks[i]);
    acked_free();
    free(g.roots_pem);
    tse_test_certs_remove(g.certs);
}

/* ===================== shrinking ========================================= */

/* Runs this program again with clients and seconds (same seed), its output
 * into out; true when that run failed (found the failure again). */
static bool rerun_fails(int clients, int seconds, const char *out)
{
    char seed[32], cl[32], sec[32], secure[32], cluster[32];
    pid_t pid;
    int status;

    snprintf(seed, sizeof(seed), "--seed=%" PRIu64, g.seed);
    snprintf(cl, sizeof(cl), "--clients=%d", clients);
    snprintf(sec, sizeof(sec), "--seconds=%d", seconds);
    snprintf(secure, sizeof(secure), "--secure=%d", g.secure);
    snprintf(cluster, sizeof(cluster), "--cluster=%d", g.cluster);
    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        setenv("TORTURE_SHRINK", "0", 1);
        execl("/proc/self/exe", "torture", seed, cl, sec, secure, cluster, (char *)NULL);
        _exit(127);
    }
    if (pid < 0 || waitpid(pid, &status, 0) != pid)
        return false;
    return WIFEXITED(status) && WEXITSTATUS(status) == 1;
}

/*
 * TORTURE_SHRINK=1: after a failure, the same seed with half the clients,
 * then half the time, as long as it still fails; prints the smallest
 * configuration that failed and where its full output is. Timing is not
 * reproducible, so this is a search, not a proof: a configuration that
 * passed once may fail another time.
 */
static void shrink(void)
{
    int clients = g.clients, seconds = g.seconds, tries = 0;
    char out[128], best[128] = "";
    const char *env = getenv("TORTURE_SHRINK");

    if (env == NULL || strcmp(env, "1") != 0)
        return;
    fprintf(stderr,
            "torture: shrinking (TORTURE_SHRINK=1): same seed, fewer clients, then less time\n");
    while (clients > 1 && tries < 8) {
        snprintf(out, sizeof(out), "/tmp/torture-%" PRIu64 "-c%d-s%d.out", g.seed, clients / 2,
                 seconds);
        tries++;
        if (!rerun_fails(clients / 2, seconds, out))
            break;
        clients /= 2;
        snprintf(best, sizeof(best), "%s", out);
        fprintf(stderr, "torture:   still fails with CLIENTS=%d SECONDS=%d\n", clients, seconds);
    }
    while (seconds > 2 && tries < 12) {
        snprintf(out, sizeof(out), "/tmp/torture-%" PRIu64 "-c%d-s%d.out", g.seed, clients,
                 seconds / 2);
        tries++;
        if (!rerun_fails(clients, seconds / 2, out))
            break;
        seconds /= 2;
        snprintf(best, sizeof(best), "%s", out);
        fprintf(stderr, "torture:   still fails with CLIENTS=%d SECONDS=%d\n", clients, seconds);
    }
    if (best[0] != '\0')
        fprintf(stderr,
                "torture: smallest failing run: SEED=%" PRIu64
                " SECONDS=%d CLIENTS=%d (output: %s)\n",
                g.seed, seconds, clients, best);
    else
        fprintf(stderr, "torture: no smaller run failed; replay the original\n");
}

/* ===================== main ============================================== */

static long param(int argc, char **argv, const char *flag, const char *env, long dflt, bool *given)
{
    size_t fl = strlen(flag);

    for (int i = 1; i < argc; i++)
        if (strncmp(argv[i], flag, fl) == 0 && argv[i][fl] == '=') {
            *given = true;
            return strtol(argv[i] + fl + 1, NULL, 0);
        }
    if (getenv(env) != NULL && getenv(env)[0] != '\0') {
        *given = true;
        return strtol(getenv(env), NULL, 0);
    }
    *given = false;
    return dflt;
}

/* The bridge says healthy (it reaches the service and Redis): a slow
 * (sanitized) service may take a while to complete its first handshake,
 * and until then the bridge rightly answers 503. */
static bool bridge_ready(void)
{
    long long deadline = tse_test_now_ms() + 60000;
    hresp h;

    while (tse_test_now_ms() < deadline) {
        int status = http_do("GET", "/health", NULL, 5000, false, &h);
        hresp_free(&h);
        if (status == 200)
            return true;
        usleep(100000);
    }
    fprintf(stderr, "torture: the bridge never said healthy\n");
    return false;
}

/* A client of the service: over TLS with the token when secure. */
static tse_client *channel(void)
{
    if (!g.secure)
        return tse_test_channel(g.service->addr);
    return tse_test_channel_secure(g.service->addr, g.roots_pem, g.token);
}

/* --secure: certificates, a token and the tokens file naming its one
 * identity with every right. False when a file cannot be written. */
static bool secure_setup(void)
{
    uint8_t h[TSE_AUTH_HASH_LEN];
    FILE *f;

    g.certs = tse_test_certs_make();
    g.roots_pem = tse_test_certs_read(g.certs, "ca.pem");
    snprintf(g.token, sizeof(g.token), "tse_torture-%016" PRIx64, g.seed * 2654435761u + 1);
    tse_test_certs_path(g.certs, "tokens", g.tokens_path, sizeof(g.tokens_path));
    if (!tse_auth_sha256(g.token, strlen(g.token), h) || (f = fopen(g.tokens_path, "w")) == NULL)
        return false;
    fputs("torture sha256=", f);
    for (int i = 0; i < TSE_AUTH_HASH_LEN; i++)
        fprintf(f, "%02x", h[i]);
    fputs(" admin publish_on_behalf publish=* subscribe=*\n", f);
    return fclose(f) == 0;
}

static bool setup(void)
{
    static char cert[340], key[340], tokens[340], ca[360];
    const char *args[6] = {"--redis-timeout=10s", "--shutdown-grace=5s", NULL};
    const char *bridge_args[2] = {NULL};
    char path[300];
    client boot = {.idx = -1};

    if (g.secure) {
        if (!secure_setup())
            return false;
        snprintf(cert, sizeof(cert), "--tls-cert=%s",
                 tse_test_certs_path(g.certs, "server.pem", path, sizeof(path)));
        snprintf(key, sizeof(key), "--tls-key=%s",
                 tse_test_certs_path(g.certs, "server.key", path, sizeof(path)));
        snprintf(tokens, sizeof(tokens), "--auth-tokens-file=%s", g.tokens_path);
        snprintf(ca, sizeof(ca), "--event-service-tls-ca=%s",
                 tse_test_certs_path(g.certs, "ca.pem", path, sizeof(path)));
        args[2] = cert;
        args[3] = key;
        args[4] = tokens;
        bridge_args[0] = ca;
    }
    g.redis = g.cluster ? tse_test_cluster_front(tse_test_redis_cluster_start(3))
                        : tse_test_redis_start(false);
    if (g.redis == NULL)
        return false;
    g.service = tse_test_service_start(g.redis, args);
    if (g.service == NULL)
        return false;
    g.bridge = tse_test_bridge_start(g.service->addr, bridge_args);
    if (g.bridge == NULL || !bridge_ready())
        return false;
    boot.ch = channel();
    /* Every subscription exists before the first publish. */
    for (int i = 0; i < N_SUBS; i++) {
        Tracseq__Events__V1__CreateSubscriptionRequest req =
            TRACSEQ__EVENTS__V1__CREATE_SUBSCRIPTION_REQUEST__INIT;
        Subscription spec, *got = NULL;
        subs[i].bit = i;
        pthread_mutex_init(&subs[i].mu, NULL);
        sub_spec(&subs[i], &spec);
        req.subscription = &spec;
        if (unary(&boot, K_CREATE, &req.base, &tracseq__events__v1__subscription__descriptor,
                  (ProtobufCMessage **)&got, CALL_MS, ALLOWED(GRPC_STATUS_OK)) != GRPC_STATUS_OK)
            return false;
        protobuf_c_message_free_unpacked(&got->base, NULL);
        subs[i].exists = true;
        subs[i].since = tick();
    }
    tse_test_channel_destroy(boot.ch);
    return true;
}

int main(int argc, char **argv)
{
    bool given;
    uint64_t seed = (uint64_t)param(argc, argv, "--seed", "SEED", 0, &given);
    pthread_t th[MAX_CLIENTS];
    client *final;
    long long start, end;
    long stored, internal, pull_lines, publish_lines;
    int rc_service, rc_bridge;
    char bridge_log[256];

    if (!given) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = ((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid()) %
               1000000000ULL;
    }
    g.seed = seed;
    g.seconds = (int)param(argc, argv, "--seconds", "SECONDS", 20, &given);
    g.clients = (int)param(argc, argv, "--clients", "CLIENTS", 8, &given);
    g.secure = param(argc, argv, "--secure", "SECURE", 0, &given) != 0;
    g.cluster = param(argc, argv, "--cluster", "CLUSTER", 0, &given) != 0;
    if (g.clients < 1 || g.clients > MAX_CLIENTS || g.seconds < 1) {
        fprintf(stderr, "torture: CLIENTS must be 1..%d, SECONDS at least 1\n", MAX_CLIENTS);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    printf("torture: SEED=%" PRIu64 " SECONDS=%d CLIENTS=%d%s%s\n", g.seed, g.seconds, g.clients,
           g.secure ? " SECURE=1 (TLS, tokens)" : "",
           g.cluster ? " CLUSTER=1 (3-master Redis Cluster)" : "");
    for (int i = 0; i < N_FRESH; i++) {
        snprintf(fresh_names[i], sizeof(fresh_names[i]), "fresh.t%d", i);
        types[N_BASE_TYPES + i].type = fresh_names[i];
    }
    pthread_mutex_init(&g.fail_mu, NULL);
    pthread_mutex_init(&g.ev_mu, NULL);
    if (!setup()) {
        fprintf(stderr, "torture: could not set up Redis, the service and the bridge\n");
        return 2;
    }
    for (int i = 0; i < g.clients; i++) {
        g.cl[i] = calloc(1, sizeof(client));
        g.cl[i]->idx = i;
        g.cl[i]->rng = client_seed(g.seed, i);
        g.cl[i]->ch = channel();
        pthread_create(&th[i], NULL, client_main, g.cl[i]);
    }
    start = tse_test_now_ms();
    end = start + (long long)g.seconds * 1000;
    while (tse_test_now_ms() < end && !atomic_load(&g.stop)) {
        usleep(250000);
        if (service_alive())
            proc_sample();
        if (g.rss_quarter_kb == 0 && tse_test_now_ms() - start >= (long long)g.seconds * 250)
            g.rss_quarter_kb = g.rss_now_kb;
    }
    atomic_store(&g.stop, true);
    for (int i = 0; i < g.clients; i++)
        pthread_join(th[i], NULL);
    printf("torture: %d events in the model after %.1f s\n", atomic_load(&g.n_events),
           (tse_test_now_ms() - start) / 1000.0);
    final = calloc(1, sizeof(client));
    final->idx = g.clients;
    final->rng = g.seed;
    final->ch = channel();
    if (!atomic_load(&g.failed) && service_alive()) {
        stored = settle();
        drain(final);
        if (!atomic_load(&g.failed)) {
            check_quiescent_stats(final);
            stored = scan_stored();
            check_exactly_once();
            check_stats(final, stored);
        }
        proc_sample();
        printf("torture: %ld events stored; RSS %ld kB at start, %ld kB at a quarter of the run, "
               "%ld kB max, "
               "%ld kB at the end; %ld threads max\n",
               stored, g.rss_start_kb, g.rss_quarter_kb, g.rss_max_kb, g.rss_now_kb, g.threads_max);
        /* A leak shows over a long run as growth after the warm-up; the
         * state that may grow (ephemeral subscriptions) stays far below. */
        if (RSS_GROWTH_CHECKED && g.seconds >= 300 && g.rss_now_kb > 2 * g.rss_quarter_kb + 32768)
            fail(NULL, "service RSS grew from %ld kB at a quarter of the run to %ld kB at the end",
                 g.rss_quarter_kb, g.rss_now_kb);
    }
    tse_test_channel_destroy(final->ch);
    free(final);
    snprintf(bridge_log, sizeof(bridge_log), "%s", g.bridge->log);
    for (int i = 0; i < g.clients; i++)
        tse_test_channel_destroy(g.cl[i]->ch);
    rc_bridge = tse_test_service_stop(g.bridge);
    if (rc_bridge != 0)
        fail(NULL, "the bridge exited with %d on SIGTERM", rc_bridge);
    if (g.service->pid > 0) {
        static tse_test_service gone;
        tse_test_service *s = g.service;
        snprintf(gone.log, sizeof(gone.log), "%s", s->log);
        g.service = &gone;
        rc_service = tse_test_service_stop(s);
        if (rc_service != 0)
            fail(NULL, "the service exited with %d on SIGTERM", rc_service);
    }
    pull_lines = log_check(g.service->log, "\"method\":\"Pull\"", &internal);
    /* Only this program calls Publish (the bridge publishes on streams),
     * but for REST events carrying a token: the bridge publishes each as a
     * unary call with it, so as not to act with its own rights. */
    publish_lines = log_check(g.service->log, "\"method\":\"Publish\"", &internal);
    if (publish_lines >
            atomic_load(&g.calls[K_PUBLISH]) + (g.secure ? atomic_load(&g.rest_events) : 0) ||
        publish_lines < atomic_load(&g.answered[K_PUBLISH]))
        fail(NULL, "%ld Publish request lines for %ld calls made, %ld answered", publish_lines,
             atomic_load(&g.calls[K_PUBLISH]), atomic_load(&g.answered[K_PUBLISH]));
    if (internal > 0)
        fail(NULL, "%ld request lines with status INTERNAL in %s", internal, g.service->log);
    if (pull_lines > atomic_load(&g.calls[K_PULL]) + atomic_load(&g.rest_pulls))
        fail(NULL, "%ld Pull request lines for %ld pulls made", pull_lines,
             atomic_load(&g.calls[K_PULL]) + atomic_load(&g.rest_pulls));
    if (pull_lines < atomic_load(&g.answered[K_PULL]))
        fail(NULL, "%ld Pull request lines for %ld pulls answered", pull_lines,
             atomic_load(&g.answered[K_PULL]));
    printf("torture: %zu ack ids an Acknowledge acked, none pending again after its answer\n",
           acked.n);
    printf("torture: %d first events of a new type long-polled\n",
           atomic_load(&g.fresh) < N_FRESH ? atomic_load(&g.fresh) : N_FRESH);
    printf("torture: calls: batch %ld batch stream %ld cloudevent %ld (answered %ld)\n",
           atomic_load(&g.calls[K_BATCH]), atomic_load(&g.calls[K_BATCH_STR]),
           atomic_load(&g.calls[K_CLOUDEVENT]), atomic_load(&g.answered[K_CLOUDEVENT]));
    printf("torture: calls: publish %ld stream %ld subscribe %ld pull %ld ack %ld nack %ld admin "
           "%ld rest %ld\n",
           atomic_load(&g.calls[K_PUBLISH]), atomic_load(&g.calls[K_PUBLISH_STR]),
           atomic_load(&g.calls[K_SUBSCRIBE]), atomic_load(&g.calls[K_PULL]),
           atomic_load(&g.calls[K_ACK]), atomic_load(&g.calls[K_NACK]),
           atomic_load(&g.calls[K_CREATE]) + atomic_load(&g.calls[K_GET]) +
               atomic_load(&g.calls[K_LIST]) + atomic_load(&g.calls[K_DELETE]),
           atomic_load(&g.rest_calls));
    if (atomic_load(&g.failed)) {
        report_failure();
        tse_test_redis_stop(g.redis);
        world_free();
        shrink();
        return 1;
    }
    tse_test_redis_stop(g.redis);
    unlink(g.service->log);
    unlink(bridge_log);
    world_free();
    printf("torture: PASS (SEED=%" PRIu64 ")\n", g.seed);
    return 0;
}
