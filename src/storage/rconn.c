/*
 * rconn.c - one thread's connection to a single Redis or a Redis Cluster
 * (rconn.h): routing by slot, pipelines split per node, redirections,
 * failover.
 *
 * Invariants: nodes[] only grows, so a node's index stays valid for the
 * connection's life (the slot map is rebuilt, the node table is not); a
 * node's ctx is NULL or a connection that completed the handshake and
 * loaded every script. The pipeline q[0..n) holds commands in the order
 * appended; once it ran, each entry is done with a reply or a failure, and
 * q[next..n) are the replies still to be taken.
 *
 * A pipeline runs in rounds: route every pending command (its ASK target,
 * else the map's owner of its slot), send each node's commands in order,
 * read each node's replies in the same order, then sort the replies: an
 * answer is final; MOVED, ASK, TRYAGAIN and CLUSTERDOWN leave the command
 * pending for the next round. Rounds go on until nothing is pending or the
 * deadline passed, sleeping between them unless the last one only followed
 * redirections.
 */
#include "storage/rconn.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <hiredis/sds.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "common/alloc.h"
#include "common/clock.h"
#include "storage/cluster_map.h"
#include "storage/rconn_internal.h"
#include "storage/redis_connect.h"
#include "storage/resp.h"

/* Redirections one command may follow before it is failed: a slot moving
 * back and forth this often means a cluster in trouble. */
#define MAX_REDIRECTS  16
/* Sleep between rounds that made no progress: doubling from the first to
 * the last, never past the deadline. */
#define RETRY_FIRST_MS 10
#define RETRY_MAX_MS   200
/* The send buffer is kept between rounds up to this size. */
#define OUT_KEEP       ((size_t)4 * 1024 * 1024)

typedef struct rnode {
    char host[256];
    int port;
    redisContext *ctx;
    bool opened;      /* ctx was set once */
    uint64_t conn_id; /* counters.connects when ctx was opened */
} rnode;

typedef struct entry {
    const char *cmd; /* RESP: own, or the caller's (tse_rconn_append_resp_borrowed) */
    char *own;       /* cmd when owned, else NULL */
    size_t len;
    int slot; /* 0..16383, or TSE_SLOT_ANY */
    int ask;  /* node to send ASKING + the command to, or -1 */
    int node; /* node of this round, or -1 */
    int redirects;
    bool moving; /* its last round: the slot's node answered MOVED, ASK or TRYAGAIN */
    bool done;
    bool raw;          /* an array reply comes as its RESP bytes (tse_rconn_raw_reply) */
    redisReply *reply; /* done and TSE_OK; pending: the last transient error */
    tse_status st;
    char why[TSE_ERROR_MESSAGE_MAX]; /* done and failed, or why still pending */
} entry;

struct tse_rconn {
    tse_redis_target target;
    int timeout_ms;
    tse_cluster_map *map; /* cluster: NULL until fetched */
    bool refresh;         /* cluster: fetch the map before routing */
    rnode *nodes;
    size_t nnodes, node_cap;
    entry *q;
    size_t n, cap, next;
    bool ran;
    bool sent;    /* the first round is sent (tse_rconn_send), its replies unread */
    int *node_of; /* scratch of a round, cap entries */
    size_t *order;
    size_t *start; /* node_cap + 1 */
    char **scripts;
    size_t nscripts;
    tse_rconn_counters counters;
    bool no_reopen; /* tse_rconn_set_reopen(false) */
    int moving_ms;  /* tse_rconn_set_moving_ms */
    char *out;      /* send buffer of a node's commands in a round */
    size_t out_len, out_cap;
};

/* -------------------------------------------------------------------------
 * The plan of a round (pure)
 * ---------------------------------------------------------------------- */

size_t tse_rconn_plan(const int *node_of, size_t n, size_t nnodes, size_t *order, size_t *start)
{
    memset(start, 0, (nnodes + 1) * sizeof(*start));
    for (size_t i = 0; i < n; i++)
        if (node_of[i] >= 0 && (size_t)node_of[i] < nnodes)
            start[node_of[i] + 1]++;
    for (size_t k = 0; k < nnodes; k++)
        start[k + 1] += start[k];
    /* start[k] is node k's next free place while filling; shifted back
     * after. */
    for (size_t i = 0; i < n; i++)
        if (node_of[i] >= 0 && (size_t)node_of[i] < nnodes)
            order[start[node_of[i]]++] = i;
    for (size_t k = nnodes; k > 0; k--)
        start[k] = start[k - 1];
    start[0] = 0;
    return start[nnodes];
}

/* -------------------------------------------------------------------------
 * Nodes and their connections
 * ---------------------------------------------------------------------- */

/* The index of host:port in the node table, added when new; -1 when out of
 * memory or the table is full. */
static int node_find(tse_rconn *c, const char *host, int port)
{
    for (size_t i = 0; i < c->nnodes; i++)
        if (c->nodes[i].port == port && strcmp(c->nodes[i].host, host) == 0)
            return (int)i;
    if (c->nnodes == TSE_CLUSTER_MAX_NODES || strlen(host) >= sizeof(c->nodes[0].host))
        return -1;
    if (c->nnodes == c->node_cap) {
        size_t cap = c->node_cap ? c->node_cap * 2 : 8;
        rnode *nodes = realloc(c->nodes, cap * sizeof(*nodes));
        size_t *start;

        if (nodes == NULL)
            return -1;
        c->nodes = nodes;
        start = realloc(c->start, (cap + 1) * sizeof(*start));
        if (start == NULL)
            return -1;
        c->start = start;
        c->node_cap = cap;
    }
    memset(&c->nodes[c->nnodes], 0, sizeof(rnode));
    strcpy(c->nodes[c->nnodes].host, host);
    c->nodes[c->nnodes].port = port;
    return (int)c->nnodes++;
}

static void node_drop(tse_rconn *c, rnode *n)
{
    if (n->ctx == NULL)
        return;
    redisFree(n->ctx);
    n->ctx = NULL;
    c->counters.node_drops++;
}

/* Whether the server closed ctx (or sent what nobody asked for) while it
 * was idle: then it must not be given a command. No outstanding replies
 * here, so any readable byte or end of file means the connection is done. */
static bool idle_connection_broken(redisContext *ctx)
{
    struct pollfd p = {.fd = ctx->fd, .events = POLLIN};
    char byte;

    if (ctx->err)
        return true;
    if (poll(&p, 1, 0) <= 0)
        return false;
    return recv(ctx->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) != -1 ||
           (errno != EAGAIN && errno != EWOULDBLOCK);
}

/* The target of node n: the connection's own, at n's address. */
static void node_target(const tse_rconn *c, const rnode *n, tse_redis_target *t)
{
    *t = c->target;
    strcpy(t->host, n->host);
    t->port = n->port;
}

static bool load_scripts(tse_rconn *c, rnode *n, char *why, size_t len)
{
    tse_redis_target t;

    node_target(c, n, &t);
    for (size_t i = 0; i < c->nscripts; i++) {
        const char *argv[3] = {"SCRIPT", "LOAD", c->scripts[i]};

        if (!tse_redis_handshake(n->ctx, &t, c->timeout_ms, 3, argv, NULL, why, len))
            return false;
    }
    return true;
}

/* A connection to node n, opened (handshake, scripts) when it has none or
 * an idle one the server closed (unless reopening is off). False with why
 * set when it cannot be. */
static bool node_ready(tse_rconn *c, rnode *n, char *why, size_t len)
{
    tse_redis_target t;

    /* Without reopening, a closed connection fails its next command
     * anyway: no poll to pay for on every round. */
    if (n->ctx != NULL && (c->no_reopen || !idle_connection_broken(n->ctx)))
        return true;
    node_drop(c, n);
    if (n->opened && c->no_reopen) {
        tse_redis_say(why, len, "redis %s:%d: connection lost", n->host, n->port);
        return false;
    }
    node_target(c, n, &t);
    n->ctx = tse_redis_connect(&t, c->timeout_ms, why, len);
    if (n->ctx == NULL)
        return false;
    c->counters.connects++;
    n->conn_id = c->counters.connects;
    n->opened = true;
    if (!load_scripts(c, n, why, len)) {
        node_drop(c, n);
        return false;
    }
    return true;
}

/* -------------------------------------------------------------------------
 * The slot map
 * ---------------------------------------------------------------------- */

/* The map as node n sees it (CLUSTER SHARDS, else CLUSTER SLOTS), or NULL
 * with why set. */
static tse_cluster_map *map_from_node(tse_rconn *c, rnode *n, char *why, size_t len)
{
    static const char *const shards[] = {"CLUSTER", "SHARDS"}, *const slots[] = {"CLUSTER",
                                                                                 "SLOTS"};
    tse_cluster_map *m = NULL;
    redisReply *r;
    tse_error err;
    tse_status st;

    if (!node_ready(c, n, why, len))
        return NULL;
    r = redisCommandArgv(n->ctx, 2, (const char **)shards, NULL);
    if (r != NULL && r->type == REDIS_REPLY_ERROR) {
        /* Redis before 7.0 has no CLUSTER SHARDS. */
        freeReplyObject(r);
        r = redisCommandArgv(n->ctx, 2, (const char **)slots, NULL);
        st = r == NULL || r->type == REDIS_REPLY_ERROR
                 ? TSE_UNAVAILABLE
                 : tse_cluster_map_from_slots(r, n->host, &m, &err);
    } else {
        st = r == NULL ? TSE_UNAVAILABLE : tse_cluster_map_from_shards(r, n->host, &m, &err);
    }
    if (r == NULL) {
        tse_redis_target t;

        node_target(c, n, &t);
        tse_redis_describe_failure(n->ctx, &t, c->timeout_ms, "CLUSTER SHARDS", why, len);
        node_drop(c, n);
    } else if (r->type == REDIS_REPLY_ERROR) {
        tse_redis_say(why, len, "redis %s:%d: CLUSTER SLOTS: %s", n->host, n->port, r->str);
    } else if (st != TSE_OK) {
        tse_redis_say(why, len, "redis %s:%d: %s: %s", n->host, n->port, err.field, err.message);
    }
    if (r != NULL)
        freeReplyObject(r);
    return m;
}

/* Fetches the map from the first node that answers: the known nodes from
 * the last one that answered on, then the seeds. False with why set when
 * none did; the old map stays. */
static bool map_refresh(tse_rconn *c, char *why, size_t len)
{
    for (int i = 0; i < c->target.nseeds; i++)
        if (node_find(c, c->target.seeds[i].host, c->target.seeds[i].port) < 0) {
            tse_redis_say(why, len, "redis cluster: out of memory");
            return false;
        }
    /* Connected nodes first: asking them costs no connect. */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < c->nnodes; i++) {
            rnode *n = &c->nodes[i];
            tse_cluster_map *m;

            if ((pass == 0) != (n->ctx != NULL))
                continue;
            m = map_from_node(c, n, why, len);
            if (m != NULL) {
                tse_cluster_map_destroy(c->map);
                c->map = m;
                c->refresh = false;
                c->counters.refreshes++;
                return true;
            }
        }
    }
    return false;
}

/* -------------------------------------------------------------------------
 * Rounds
 * ---------------------------------------------------------------------- */

/* r becomes e's reply (the answer, or the last transient error kept for
 * when the deadline passes), replacing the one it had. */
static void entry_keep(entry *e, redisReply *r)
{
    if (e->reply != NULL)
        freeReplyObject(e->reply);
    e->reply = r;
}

static void entry_fail(entry *e, tse_status st, const char *why)
{
    entry_keep(e, NULL);
    e->done = true;
    e->st = st;
    if (why != e->why)
        snprintf(e->why, sizeof(e->why), "%s", why);
}

/* node, or -1 when node_find found no room for it. */
static int with_node(entry *e, int node)
{
    if (node < 0)
        tse_redis_say(e->why, sizeof(e->why), "redis cluster: out of memory");
    return node;
}

/* A master for a keyless command: a connected one when there is one (a
 * dead master stays in the map until its replica takes over), else the
 * first the map lists; -1 with e->why set when it lists none. */
static int any_master(tse_rconn *c, entry *e)
{
    int first = -1;

    for (size_t i = 0; i < tse_cluster_map_node_count(c->map); i++) {
        const tse_cluster_node *n = tse_cluster_map_node(c->map, i);
        int k;

        if (!n->master)
            continue;
        k = node_find(c, n->host, n->port);
        if (k >= 0 && c->nodes[k].ctx != NULL)
            return k;
        if (first < 0 && k >= 0)
            first = k;
    }
    if (first < 0)
        tse_redis_say(e->why, sizeof(e->why), "redis cluster: no master known (or no memory)");
    return first;
}

/* Map owners whose node a round remembers (route's memo), so that routing a
 * round's commands compares a host name once per master, not per command. */
#define ROUTE_MEMO 64

/* The node e goes to this round, or -1 with e->why saying why none. memo
 * holds the node of each map owner below ROUTE_MEMO found so far this
 * round, -1 for none yet (the map does not change while a round routes). */
static int route(tse_rconn *c, entry *e, int *memo)
{
    const tse_cluster_node *owner;
    unsigned idx;
    int k;

    if (!tse_rconn_is_cluster(c))
        return 0;
    if (e->ask >= 0)
        return e->ask;
    if (c->map == NULL)
        return -1; /* e->why: the refresh's failure */
    if (e->slot == TSE_SLOT_ANY)
        return any_master(c, e);
    idx = tse_cluster_map_slot_owner(c->map, (unsigned)e->slot);
    if (idx == TSE_CLUSTER_NO_NODE) {
        tse_redis_say(e->why, sizeof(e->why), "redis cluster: no master serves slot %d", e->slot);
        c->refresh = true;
        return -1;
    }
    if (idx < ROUTE_MEMO && memo[idx] >= 0)
        return memo[idx];
    owner = tse_cluster_map_node(c->map, idx);
    k = with_node(e, node_find(c, owner->host, owner->port));
    if (idx < ROUTE_MEMO)
        memo[idx] = k;
    return k;
}

/* Room for len more bytes in the send buffer; false when out of memory. */
static bool out_reserve(tse_rconn *c, size_t len)
{
    return TSE_GROW(realloc, c->out, c->out_cap, c->out_len + len, 16384);
}

/* Writes the send buffer to node k, so every node works on its part of the
 * round while the replies of the first are read. A failed write may have
 * sent some commands: they fail as a lost connection does. The socket is
 * hiredis's, blocking with the timeout, and its own output buffer empty
 * (every other use of the context writes whole commands and waits). */
static bool flush_node(tse_rconn *c, size_t k, size_t from, size_t to)
{
    rnode *n = &c->nodes[k];
    tse_redis_target t;
    char why[TSE_ERROR_MESSAGE_MAX], lost[TSE_ERROR_MESSAGE_MAX];

    if (tse_redis_write_all(n->ctx, c->out, c->out_len))
        return true;
    node_target(c, n, &t);
    tse_redis_describe_failure(n->ctx, &t, c->timeout_ms, "sending", why, sizeof(why));
    tse_redis_say(lost, sizeof(lost), "%s (the command may have run)", why);
    for (size_t j = from; j < to; j++)
        entry_fail(&c->q[c->order[j]], TSE_UNAVAILABLE, lost);
    node_drop(c, n);
    c->refresh = true;
    return false;
}

/* Sends node k's commands of the round. False (entries keep their why)
 * when it could not be reached: nothing was sent. The commands are copied
 * into one buffer the connection keeps from round to round (hiredis's own
 * output buffer starts empty for every write and grows by reallocation,
 * which cost more than the copy), then written. */
static bool send_node(tse_rconn *c, size_t k, size_t from, size_t to)
{
    static const char asking[] = "*1\r\n$6\r\nASKING\r\n";
    rnode *n = &c->nodes[k];
    char why[TSE_ERROR_MESSAGE_MAX];
    bool ok;

    if (!node_ready(c, n, why, sizeof(why))) {
        for (size_t j = from; j < to; j++) {
            entry *e = &c->q[c->order[j]];

            snprintf(e->why, sizeof(e->why), "%s", why);
            e->node = -1;
        }
        c->refresh = true;
        return false;
    }
    c->out_len = 0;
    for (size_t j = from; j < to; j++) {
        entry *e = &c->q[c->order[j]];
        size_t need = e->len + (e->ask >= 0 ? sizeof(asking) - 1 : 0);

        if (!out_reserve(c, need)) {
            /* Nothing was sent: none of its commands go. */
            for (size_t i = from; i < to; i++) {
                entry *f = &c->q[c->order[i]];

                f->node = -1;
                entry_fail(f, TSE_NOMEM, "redis: out of memory appending a command");
            }
            return false;
        }
        if (e->ask >= 0) {
            memcpy(c->out + c->out_len, asking, sizeof(asking) - 1);
            c->out_len += sizeof(asking) - 1;
        }
        memcpy(c->out + c->out_len, e->cmd, e->len);
        c->out_len += e->len;
    }
    ok = flush_node(c, k, from, to);
    c->out_len = 0;
    if (c->out_cap > OUT_KEEP) { /* a rare huge round: not kept */
        free(c->out);
        c->out = NULL;
        c->out_cap = 0;
    }
    return ok;
}

/* What one reply means for the entry that was sent it from node k.
 * Returns whether it was a redirection (progress without sleeping). */
static bool sort_reply(tse_rconn *c, size_t k, entry *e, redisReply *r)
{
    tse_cluster_redirect rd;
    tse_cluster_redirect_kind kind = TSE_REDIRECT_NONE;

    if (tse_rconn_is_cluster(c) && r->type == REDIS_REPLY_ERROR)
        kind = tse_cluster_redirect_parse(r->str, r->len, c->nodes[k].host, &rd);
    if (kind != TSE_REDIRECT_NONE) {
        tse_redis_say(e->why, sizeof(e->why), "redis %s:%d: %s", c->nodes[k].host, c->nodes[k].port,
                      r->str);
        freeReplyObject(r);
        entry_keep(e, NULL);
        if (++e->redirects > MAX_REDIRECTS) {
            entry_fail(e, TSE_UNAVAILABLE, "redis cluster: too many redirections");
            return false;
        }
        e->ask = -1;
        e->moving = true;
        if (kind == TSE_REDIRECT_MOVED) {
            c->counters.moved++;
            c->refresh = true;
            /* The node computed the slot from the keys: a command whose
             * caller named another (tse_rconn_append_resp) goes there
             * next, instead of back to the node that refused it. */
            e->slot = (int)rd.slot;
            if (c->map != NULL)
                tse_cluster_map_set_slot(c->map, rd.slot, rd.host, rd.port, NULL);
        } else {
            c->counters.ask++;
            e->ask = node_find(c, rd.host, rd.port);
            if (e->ask < 0)
                entry_fail(e, TSE_NOMEM, "redis cluster: out of memory");
        }
        return true;
    }
    if (r->type == REDIS_REPLY_ERROR &&
        (strncmp(r->str, "LOADING", 7) == 0 ||
         (tse_rconn_is_cluster(c) &&
          (strncmp(r->str, "TRYAGAIN", 8) == 0 || strncmp(r->str, "CLUSTERDOWN", 11) == 0)))) {
        /* A server loading its data after a restart, a slot half migrated
         * (a multi-key command whose keys are on both sides) or a cluster
         * that lost a master: all pass, and the command did not run. */
        tse_redis_say(e->why, sizeof(e->why), "redis %s:%d: %s", c->nodes[k].host, c->nodes[k].port,
                      r->str);
        c->refresh = c->refresh || r->str[0] == 'C';
        e->moving = r->str[0] == 'T';
        entry_keep(e, r);
        return false;
    }
    entry_keep(e, r);
    e->done = true;
    e->st = TSE_OK;
    return false;
}

/*
 * The next reply on ctx for a raw entry: an array as one REDIS_REPLY_STRING
 * holding its RESP bytes (freed by freeReplyObject like any reply), any
 * other reply (an error, a redirection) as hiredis reads it. The bytes are
 * taken from hiredis's read buffer as they arrive (the walk resumes where
 * it stopped), so no tree of one allocation per element is built. REDIS_ERR
 * as redisGetReply (I/O, timeout, out of memory: ctx->err says).
 */
static int raw_reply(redisContext *ctx, void **out)
{
    redisReader *rd = ctx->reader;
    tse_resp_skip walk = {0};
    redisReply *r;
    int got = 0;

    /* hiredis's own output buffer is empty (flush_node), and its reader is
     * between replies: redisGetReply reads every reply whole. */
    while (rd->err == 0 && rd->ridx == -1) {
        if (rd->len > rd->pos) {
            if (rd->buf[rd->pos] != '*')
                break;
            got = tse_resp_skip_step(&walk, rd->buf + rd->pos, rd->len - rd->pos);
            if (got != 0)
                break;
        }
        if (redisBufferRead(ctx) != REDIS_OK)
            return REDIS_ERR;
    }
    if (got != 1)
        return redisGetReply(ctx, out); /* not an array, or hiredis says why not */
    r = calloc(1, sizeof(*r));
    if (r == NULL || (r->str = malloc(walk.at + 1)) == NULL) {
        free(r);
        ctx->err = REDIS_ERR_OOM;
        snprintf(ctx->errstr, sizeof(ctx->errstr), "Out of memory");
        return REDIS_ERR;
    }
    r->type = REDIS_REPLY_STRING;
    r->len = walk.at;
    memcpy(r->str, rd->buf + rd->pos, walk.at);
    r->str[walk.at] = '\0';
    rd->pos += walk.at;
    if (rd->pos >= 1024) { /* as hiredis: what was read goes */
        sdsrange(rd->buf, (int)rd->pos, -1);
        rd->pos = 0;
        rd->len = sdslen(rd->buf);
    }
    *out = r;
    return REDIS_OK;
}

/* Reads node k's replies of the round into their entries. Returns whether
 * one was a redirection. */
static bool read_node(tse_rconn *c, size_t k, size_t from, size_t to)
{
    rnode *n = &c->nodes[k];
    bool redirected = false;
    char lost[TSE_ERROR_MESSAGE_MAX];

    for (size_t j = from; j < to; j++) {
        entry *e = &c->q[c->order[j]];
        void *r = NULL, *asking = NULL;
        bool ok;

        if (n->ctx == NULL) {
            /* Lost at an earlier reply of this round. */
            entry_fail(e, TSE_UNAVAILABLE, lost);
            continue;
        }
        ok = (e->ask < 0 || redisGetReply(n->ctx, &asking) == REDIS_OK) &&
             (e->raw ? raw_reply(n->ctx, &r) : redisGetReply(n->ctx, &r)) == REDIS_OK;
        if (asking != NULL)
            freeReplyObject(asking);
        if (!ok) {
            tse_redis_target t;
            char why[TSE_ERROR_MESSAGE_MAX];

            node_target(c, n, &t);
            tse_redis_describe_failure(n->ctx, &t, c->timeout_ms, "a command", why, sizeof(why));
            tse_redis_say(lost, sizeof(lost), "%s (the command may have run)", why);
            entry_fail(e, TSE_UNAVAILABLE, lost);
            node_drop(c, n);
            c->refresh = true;
            continue;
        }
        redirected |= sort_reply(c, k, e, r);
    }
    return redirected;
}

/* The first half of a round over the pending entries: routes them and
 * sends each node its commands. Returns whether any was sent (the plan in
 * c->order and c->start then says whose replies round_read takes). */
static bool round_send(tse_rconn *c)
{
    char why[TSE_ERROR_MESSAGE_MAX];
    size_t placed;
    int memo[ROUTE_MEMO];

    if (tse_rconn_is_cluster(c) && (c->refresh || c->map == NULL) &&
        !map_refresh(c, why, sizeof(why))) {
        for (size_t i = 0; i < c->n; i++)
            if (!c->q[i].done && c->map == NULL)
                snprintf(c->q[i].why, sizeof(c->q[i].why), "%s", why);
    }
    memset(memo, -1, sizeof(memo));
    for (size_t i = 0; i < c->n; i++) {
        entry *e = &c->q[i];

        e->node = e->done ? -1 : route(c, e, memo);
        e->moving = false; /* until its node answers this round */
        c->node_of[i] = e->node;
    }
    placed = tse_rconn_plan(c->node_of, c->n, c->nnodes, c->order, c->start);
    if (placed == 0)
        return false;
    c->counters.rounds++;
    for (size_t k = 0; k < c->nnodes; k++)
        if (c->start[k] < c->start[k + 1])
            send_node(c, k, c->start[k], c->start[k + 1]);
    return true;
}

/* The second half: reads each node's replies of the round sent. Returns
 * whether a redirection was followed (the next round may go at once). */
static bool round_read(tse_rconn *c)
{
    bool redirected = false;

    for (size_t k = 0; k < c->nnodes; k++)
        if (c->start[k] < c->start[k + 1] && c->nodes[k].ctx != NULL)
            redirected |= read_node(c, k, c->start[k], c->start[k + 1]);
    return redirected;
}

/* One round over the pending entries (its first sent already when
 * c->sent). Returns whether a redirection was followed. */
static bool round_run(tse_rconn *c)
{
    if (c->sent) {
        c->sent = false;
        return round_read(c);
    }
    return round_send(c) && round_read(c);
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/*
 * Fails the pending entries at the deadline: each with Redis's last answer
 * when it has one, else why its slot has no master. Only those whose node
 * answered in the last round that their slot is moving (MOVED, ASK,
 * TRYAGAIN) are spared, unless all is set: a slot in migration is served,
 * and its command runs once the migration has gone far enough.
 */
static void give_up(tse_rconn *c, bool all)
{
    for (size_t i = 0; i < c->n; i++) {
        entry *e = &c->q[i];
        char why[TSE_ERROR_MESSAGE_MAX];

        if (e->done || (e->moving && !all))
            continue;
        if (e->reply != NULL) {
            /* Redis's own last answer says best what was wrong. */
            e->done = true;
            e->st = TSE_OK;
            continue;
        }
        if (!tse_rconn_is_cluster(c))
            snprintf(why, sizeof(why), "%s", e->why);
        else if (e->slot == TSE_SLOT_ANY)
            tse_redis_say(why, sizeof(why), "redis cluster: no master reachable (%s)", e->why);
        else
            tse_redis_say(why, sizeof(why), "redis cluster: no reachable master for slot %d (%s)",
                          e->slot, e->why);
        entry_fail(e, TSE_UNAVAILABLE, why);
    }
}

static bool any_pending(const tse_rconn *c)
{
    for (size_t i = 0; i < c->n; i++)
        if (!c->q[i].done)
            return true;
    return false;
}

/* Rounds until nothing is pending: past deadline_ms only the commands of
 * moving slots go on, for at most moving_ms more (tse_rconn_set_moving_ms). */
static void pipeline_run(tse_rconn *c, int64_t deadline_ms)
{
    int64_t wait = RETRY_FIRST_MS, end_ms = deadline_ms + c->moving_ms;

    c->ran = true;
    for (;;) {
        bool redirected = round_run(c);
        int64_t now = tse_clock_ms(), until = end_ms;

        if (now >= deadline_ms)
            give_up(c, now >= end_ms);
        if (!any_pending(c))
            return;
        if (!redirected) {
            if (now < deadline_ms)
                until = deadline_ms;
            sleep_ms(wait < until - now ? wait : until - now);
            wait = wait * 2 < RETRY_MAX_MS ? wait * 2 : RETRY_MAX_MS;
        }
    }
}

/* -------------------------------------------------------------------------
 * The API
 * ---------------------------------------------------------------------- */

tse_status tse_rconn_create(const tse_redis_target *t, int timeout_ms, tse_rconn **out,
                            tse_error *err)
{
    tse_rconn *c = calloc(1, sizeof(*c));

    *out = NULL;
    if (c == NULL)
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory");
    c->target = *t;
    c->timeout_ms = timeout_ms;
    if (node_find(c, t->host, t->port) < 0) {
        tse_rconn_destroy(c);
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory");
    }
    *out = c;
    return TSE_OK;
}

static void queue_clear(tse_rconn *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free(c->q[i].own);
        if (c->q[i].reply != NULL)
            freeReplyObject(c->q[i].reply);
    }
    c->n = 0;
    c->next = 0;
    c->ran = false;
    c->sent = false;
}

void tse_rconn_destroy(tse_rconn *c)
{
    if (c == NULL)
        return;
    queue_clear(c);
    for (size_t i = 0; i < c->nnodes; i++)
        node_drop(c, &c->nodes[i]);
    for (size_t i = 0; i < c->nscripts; i++)
        free(c->scripts[i]);
    free(c->scripts);
    tse_cluster_map_destroy(c->map);
    free(c->nodes);
    free(c->start);
    free(c->q);
    free(c->node_of);
    free(c->order);
    free(c->out);
    free(c);
}

void tse_rconn_set_reopen(tse_rconn *c, bool reopen)
{
    c->no_reopen = !reopen;
}

void tse_rconn_set_moving_ms(tse_rconn *c, int ms)
{
    c->moving_ms = ms > 0 ? ms : 0;
}

bool tse_rconn_is_cluster(const tse_rconn *c)
{
    return c->target.cluster;
}

tse_status tse_rconn_connect(tse_rconn *c, int64_t deadline_ms, tse_error *err)
{
    char why[TSE_ERROR_MESSAGE_MAX];
    int64_t wait = RETRY_FIRST_MS, now;

    for (;;) {
        bool ok = tse_rconn_is_cluster(c) ? map_refresh(c, why, sizeof(why))
                                          : node_ready(c, &c->nodes[0], why, sizeof(why));

        if (ok)
            return TSE_OK;
        now = tse_clock_ms();
        if (now >= deadline_ms)
            return tse_error_set(err, TSE_UNAVAILABLE, NULL, "%s", why);
        sleep_ms(wait < deadline_ms - now ? wait : deadline_ms - now);
        wait = wait * 2 < RETRY_MAX_MS ? wait * 2 : RETRY_MAX_MS;
    }
}

tse_status tse_rconn_add_script(tse_rconn *c, const char *body, tse_error *err)
{
    char **scripts = realloc(c->scripts, (c->nscripts + 1) * sizeof(*scripts));
    char why[TSE_ERROR_MESSAGE_MAX];

    if (scripts == NULL)
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory");
    c->scripts = scripts;
    scripts[c->nscripts] = strdup(body);
    if (scripts[c->nscripts] == NULL)
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory");
    c->nscripts++;
    for (size_t i = 0; i < c->nnodes; i++)
        if (c->nodes[i].ctx != NULL && !load_scripts(c, &c->nodes[i], why, sizeof(why)))
            node_drop(c, &c->nodes[i]);
    return TSE_OK;
}

/* Room for one more entry (and the scratch of a round over them). The
 * three arrays share c->cap: each grows from it, and it moves once all
 * three have. */
static bool queue_grow(tse_rconn *c)
{
    size_t cap_q = c->cap, cap_node_of = c->cap, cap_order = c->cap;

    if (!TSE_GROW(realloc, c->q, cap_q, c->n + 1, 16) ||
        !TSE_GROW(realloc, c->node_of, cap_node_of, c->n + 1, 16) ||
        !TSE_GROW(realloc, c->order, cap_order, c->n + 1, 16))
        return false;
    c->cap = cap_q;
    return true;
}

/*
 * The RESP of a command (caller frees), lens NULL meaning NUL-terminated
 * arguments; NULL when out of memory. The C library's malloc, as hiredis
 * uses for the same bytes: an allocator injected for a test (common/
 * alloc.h) fails its owner's structures, not the connection's I/O.
 */
static char *format_command(int argc, const char *const *argv, const size_t *lens, size_t *len)
{
    size_t *own = NULL;
    char *cmd;

    if (lens == NULL) {
        own = malloc((size_t)argc * sizeof(*own));
        if (own == NULL)
            return NULL;
        for (int i = 0; i < argc; i++)
            own[i] = strlen(argv[i]);
        lens = own;
    }
    *len = tse_resp_size(argc, lens);
    cmd = malloc(*len);
    if (cmd != NULL)
        tse_resp_write(cmd, argc, argv, lens);
    free(own);
    return cmd;
}

tse_status tse_rconn_append(tse_rconn *c, int argc, const char *const *argv, const size_t *lens,
                            int slot, tse_error *err)
{
    entry *e;
    tse_status st;

    if (c->ran || c->sent)
        return tse_error_set(err, TSE_FAILED_PRECONDITION, NULL,
                             "redis: replies of the last pipeline are still to be taken");
    if (slot == TSE_RCONN_SLOT_OF_KEYS && tse_rconn_is_cluster(c)) {
        st = tse_command_slot(argc, argv, lens, &slot, err);
        if (st != TSE_OK)
            return st;
    } else if (slot == TSE_RCONN_SLOT_OF_KEYS) {
        slot = TSE_SLOT_ANY;
    } else if (slot < TSE_SLOT_ANY || slot >= 16384) {
        return tse_error_set(err, TSE_INVALID, "slot", "slot %d is not in 0..16383", slot);
    }
    if (argc < 1)
        return tse_error_set(err, TSE_INVALID, "command", "an empty command");
    if (!queue_grow(c))
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory");
    e = &c->q[c->n];
    memset(e, 0, sizeof(*e));
    e->own = format_command(argc, argv, lens, &e->len);
    if (e->own == NULL)
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory");
    e->cmd = e->own;
    e->slot = slot;
    e->ask = -1;
    e->node = -1;
    c->n++;
    return TSE_OK;
}

/* An entry for cmd (copied when copy), nothing appended on failure. */
static tse_status append_formatted(tse_rconn *c, const char *cmd, size_t len, int slot, bool copy,
                                   tse_error *err)
{
    entry *e;

    if (c->ran || c->sent)
        return tse_error_set(err, TSE_FAILED_PRECONDITION, NULL,
                             "redis: replies of the last pipeline are still to be taken");
    if (slot < TSE_SLOT_ANY || slot >= 16384)
        return tse_error_set(err, TSE_INVALID, "slot", "slot %d is not in 0..16383", slot);
    if (len == 0)
        return tse_error_set(err, TSE_INVALID, "command", "an empty command");
    if (!queue_grow(c))
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory");
    e = &c->q[c->n];
    memset(e, 0, sizeof(*e));
    e->cmd = cmd;
    if (copy) {
        e->own = malloc(len);
        if (e->own == NULL)
            return tse_error_set(err, TSE_NOMEM, NULL, "out of memory");
        memcpy(e->own, cmd, len);
        e->cmd = e->own;
    }
    e->len = len;
    e->slot = slot;
    e->ask = -1;
    e->node = -1;
    c->n++;
    return TSE_OK;
}

tse_status tse_rconn_append_resp(tse_rconn *c, const char *cmd, size_t len, int slot,
                                 tse_error *err)
{
    return append_formatted(c, cmd, len, slot, true, err);
}

tse_status tse_rconn_append_resp_borrowed(tse_rconn *c, const char *cmd, size_t len, int slot,
                                          tse_error *err)
{
    return append_formatted(c, cmd, len, slot, false, err);
}

tse_status tse_rconn_get_reply(tse_rconn *c, int64_t deadline_ms, redisReply **reply,
                               tse_error *err)
{
    entry *e;
    tse_status st;

    *reply = NULL;
    if (c->n == 0)
        return tse_error_set(err, TSE_FAILED_PRECONDITION, NULL, "redis: no command appended");
    if (!c->ran)
        pipeline_run(c, deadline_ms);
    e = &c->q[c->next++];
    st = e->st;
    if (st == TSE_OK) {
        *reply = e->reply;
        e->reply = NULL;
    } else {
        tse_error_set(err, st, NULL, "%s", e->why);
    }
    if (c->next == c->n)
        queue_clear(c);
    return st;
}

void tse_rconn_send(tse_rconn *c)
{
    if (c->n > 0 && !c->ran && !c->sent)
        c->sent = round_send(c);
}

void tse_rconn_raw_reply(tse_rconn *c)
{
    if (c->n > 0 && !c->ran)
        c->q[c->n - 1].raw = true;
}

size_t tse_rconn_pending(const tse_rconn *c)
{
    return c->n - c->next;
}

void tse_rconn_discard(tse_rconn *c)
{
    /* Replies on their way are read first: the next command's must not
     * be taken for theirs. */
    if (c->sent)
        pipeline_run(c, 0);
    queue_clear(c);
}

void tse_rconn_idle(tse_rconn *c)
{
    if (c == NULL)
        return;
    /* out_len is 0 outside send_node. */
    free(c->out);
    c->out = NULL;
    c->out_cap = 0;
}

tse_status tse_rconn_command(tse_rconn *c, int argc, const char *const *argv, const size_t *lens,
                             int slot, int64_t deadline_ms, redisReply **reply, tse_error *err)
{
    tse_status st;

    *reply = NULL;
    if (c->n != 0)
        return tse_error_set(err, TSE_FAILED_PRECONDITION, NULL,
                             "redis: a pipeline is pending on this connection");
    st = tse_rconn_append(c, argc, argv, lens, slot, err);
    if (st != TSE_OK)
        return st;
    return tse_rconn_get_reply(c, deadline_ms, reply, err);
}

tse_rconn_counters tse_rconn_get_counters(const tse_rconn *c)
{
    return c->counters;
}

bool tse_rconn_slot_master(const tse_rconn *c, unsigned slot, char *host, size_t len, int *port)
{
    const tse_cluster_node *n;
    unsigned idx;

    if (!tse_rconn_is_cluster(c)) {
        snprintf(host, len, "%s", c->target.host);
        *port = c->target.port;
        return true;
    }
    if (c->map == NULL || (idx = tse_cluster_map_slot_owner(c->map, slot)) == TSE_CLUSTER_NO_NODE)
        return false;
    n = tse_cluster_map_node(c->map, idx);
    snprintf(host, len, "%s", n->host);
    *port = n->port;
    return true;
}

int tse_rconn_slot_owner(const tse_rconn *c, unsigned slot, int *replicas)
{
    unsigned idx;

    if (!tse_rconn_is_cluster(c) || c->map == NULL ||
        (idx = tse_cluster_map_slot_owner(c->map, slot)) == TSE_CLUSTER_NO_NODE)
        return -1;
    if (replicas != NULL)
        *replicas = tse_cluster_map_node(c->map, idx)->replicas;
    return (int)idx;
}

int tse_rconn_slot_replicas(const tse_rconn *c, unsigned slot)
{
    unsigned idx;

    if (!tse_rconn_is_cluster(c) || c->map == NULL ||
        (idx = tse_cluster_map_slot_owner(c->map, slot)) == TSE_CLUSTER_NO_NODE)
        return -1;
    return tse_cluster_map_node(c->map, idx)->replicas;
}

int tse_rconn_master_slots(const tse_rconn *c, int *slots, int max)
{
    unsigned seen[64];
    int count = 0;

    if (!tse_rconn_is_cluster(c) || c->map == NULL)
        return 0;
    if (max > 64)
        max = 64;
    for (unsigned s = 0; s < 16384 && count < max; s++) {
        unsigned idx = tse_cluster_map_slot_owner(c->map, s);
        bool known = idx == TSE_CLUSTER_NO_NODE;

        for (int i = 0; i < count && !known; i++)
            known = seen[i] == idx;
        if (known)
            continue;
        seen[count] = idx;
        slots[count++] = (int)s;
    }
    return count;
}

uint64_t tse_rconn_slot_conn(tse_rconn *c, unsigned slot)
{
    const tse_cluster_node *owner;
    unsigned idx;
    int k;

    if (!tse_rconn_is_cluster(c) || c->map == NULL ||
        (idx = tse_cluster_map_slot_owner(c->map, slot)) == TSE_CLUSTER_NO_NODE)
        return 0;
    owner = tse_cluster_map_node(c->map, idx);
    for (k = 0; k < (int)c->nnodes; k++)
        if (c->nodes[k].port == owner->port && strcmp(c->nodes[k].host, owner->host) == 0)
            return c->nodes[k].ctx != NULL ? c->nodes[k].conn_id : 0;
    return 0;
}
