/*
 * cluster_map.c - the slot map of a Redis Cluster (slot -> node) from
 * CLUSTER SLOTS or CLUSTER SHARDS, and the MOVED/ASK redirection parser.
 *
 * Invariants: every slot's owner is TSE_CLUSTER_NO_NODE or an index below
 * nnodes, and that node is a master; nodes are unique by (host, port). A
 * reply is checked element by element (types, counts, ranges) before it is
 * trusted: it comes from the network, so a hostile or broken node must get
 * TSE_INVALID, never a crash. Building works on a fresh map that the caller
 * gets only on success.
 */
#include "storage/cluster_map.h"

#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "storage/keys.h"

struct tse_cluster_map {
    uint16_t owner[TSE_KEY_SLOTS];
    tse_cluster_node *nodes;
    size_t nnodes, cap;
};

/* -------------------------------------------------------------------------
 * The map
 * ---------------------------------------------------------------------- */

static tse_cluster_map *map_new(void)
{
    tse_cluster_map *m = calloc(1, sizeof(*m));

    if (m == NULL)
        return NULL;
    for (size_t i = 0; i < TSE_KEY_SLOTS; i++)
        m->owner[i] = TSE_CLUSTER_NO_NODE;
    return m;
}

void tse_cluster_map_destroy(tse_cluster_map *m)
{
    if (m == NULL)
        return;
    free(m->nodes);
    free(m);
}

/* The index of host:port (hlen bytes of host), added when new; master is
 * sticky. -1 with err set when full or out of memory. */
static long node_index(tse_cluster_map *m, const char *host, size_t hlen, int port, bool master,
                       const char *field, tse_error *err)
{
    tse_cluster_node *n;

    for (size_t i = 0; i < m->nnodes; i++) {
        n = &m->nodes[i];
        if (n->port == port && strlen(n->host) == hlen && memcmp(n->host, host, hlen) == 0) {
            n->master = n->master || master;
            return (long)i;
        }
    }
    if (hlen >= sizeof(n->host) || port < 1 || port > 65535) {
        tse_error_set(err, TSE_INVALID, field, "node address is not host:port (1..65535)");
        return -1;
    }
    if (m->nnodes == TSE_CLUSTER_MAX_NODES) {
        tse_error_set(err, TSE_INVALID, field, "more than %d nodes", TSE_CLUSTER_MAX_NODES);
        return -1;
    }
    if (!TSE_GROW(realloc, m->nodes, m->cap, m->nnodes + 1, 8)) {
        tse_error_set(err, TSE_NOMEM, field, "out of memory");
        return -1;
    }
    n = &m->nodes[m->nnodes];
    memcpy(n->host, host, hlen);
    n->host[hlen] = '\0';
    n->port = port;
    n->master = master;
    n->replicas = 0;
    return (long)m->nnodes++;
}

size_t tse_cluster_map_node_count(const tse_cluster_map *m)
{
    return m->nnodes;
}

const tse_cluster_node *tse_cluster_map_node(const tse_cluster_map *m, size_t i)
{
    return i < m->nnodes ? &m->nodes[i] : NULL;
}

unsigned tse_cluster_map_slot_owner(const tse_cluster_map *m, unsigned slot)
{
    return slot < TSE_KEY_SLOTS ? m->owner[slot] : TSE_CLUSTER_NO_NODE;
}

const tse_cluster_node *tse_cluster_map_node_for_key(const tse_cluster_map *m, const char *key,
                                                     size_t len)
{
    unsigned owner = m->owner[tse_key_slot(key, len)];

    return owner == TSE_CLUSTER_NO_NODE ? NULL : &m->nodes[owner];
}

size_t tse_cluster_map_slots_covered(const tse_cluster_map *m)
{
    size_t n = 0;

    for (size_t i = 0; i < TSE_KEY_SLOTS; i++)
        n += m->owner[i] != TSE_CLUSTER_NO_NODE;
    return n;
}

tse_status tse_cluster_map_set_slot(tse_cluster_map *m, unsigned slot, const char *host, int port,
                                    tse_error *err)
{
    long i;

    if (slot >= TSE_KEY_SLOTS)
        return tse_error_set(err, TSE_INVALID, "slot", "slot %u is not in 0..16383", slot);
    i = node_index(m, host, strlen(host), port, true, "MOVED", err);
    if (i < 0)
        return err != NULL ? err->code : TSE_INVALID;
    m->owner[slot] = (uint16_t)i;
    return TSE_OK;
}

/* -------------------------------------------------------------------------
 * CLUSTER SLOTS: [[start, end, [host, port, id, ...], [replica...]...]...]
 * ---------------------------------------------------------------------- */

/* RESP3 reply types exist from hiredis 1.0 on (Debian 12 has 0.14). */
#ifdef REDIS_REPLY_MAP
#define IS_RESP3(r, t) ((r)->type == REDIS_REPLY_##t)
#else
#define IS_RESP3(r, t) false
#endif

static bool is_array(const redisReply *r)
{
    return r != NULL && (r->type == REDIS_REPLY_ARRAY || IS_RESP3(r, SET)) &&
           (r->elements == 0 || r->element != NULL);
}

static bool is_string(const redisReply *r)
{
    return r != NULL &&
           (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS || IS_RESP3(r, VERB)) &&
           r->str != NULL;
}

static bool slot_of(const redisReply *r, unsigned *out)
{
    if (r == NULL || r->type != REDIS_REPLY_INTEGER || r->integer < 0 ||
        r->integer >= TSE_KEY_SLOTS)
        return false;
    *out = (unsigned)r->integer;
    return true;
}

/* -1 (a malformed node), with err set. */
static long node_fail(tse_error *err, const char *field, const char *message)
{
    tse_error_set(err, TSE_INVALID, field, "%s", message);
    return -1;
}

/* The node at host h (hlen bytes, no NUL) and port, as node_index; "" is
 * the connection's own host, "?" an unknown endpoint (-2: left out). */
static long node_at(tse_cluster_map *m, const char *h, size_t hlen, const char *conn_host,
                    long long port, bool master, const char *what, tse_error *err)
{
    if (hlen == 1 && h[0] == '?')
        return -2;
    if (hlen == 0) {
        h = conn_host;
        hlen = strlen(conn_host);
    }
    return node_index(m, h, hlen, (int)port, master, what, err);
}

/*
 * The index of the node described by [host, port, ...] (a SLOTS entry's
 * node), or -2 for a node to leave out (unknown endpoint "?"); -1 and err
 * on a malformed one.
 */
static long slots_node(tse_cluster_map *m, const redisReply *r, const char *conn_host, bool master,
                       tse_error *err)
{
    const redisReply *host, *port;

    if (!is_array(r) || r->elements < 2)
        return node_fail(err, "CLUSTER SLOTS", "a node is not [host, port, ...]");
    host = r->element[0];
    port = r->element[1];
    if (port == NULL || port->type != REDIS_REPLY_INTEGER || port->integer < 1 ||
        port->integer > 65535)
        return node_fail(err, "CLUSTER SLOTS", "a node's port is not 1..65535");
    if (host != NULL && host->type == REDIS_REPLY_NIL)
        return node_at(m, "", 0, conn_host, port->integer, master, "CLUSTER SLOTS", err);
    if (!is_string(host))
        return node_fail(err, "CLUSTER SLOTS", "a node's host is not a string");
    if (memchr(host->str, '\0', host->len) != NULL)
        return node_fail(err, "CLUSTER SLOTS", "a node's host holds a NUL");
    return node_at(m, host->str, host->len, conn_host, port->integer, master, "CLUSTER SLOTS", err);
}

static tse_status slots_entry(tse_cluster_map *m, const redisReply *e, const char *conn_host,
                              tse_error *err)
{
    unsigned start, end;
    long master;
    int replicas = 0;

    if (!is_array(e) || e->elements < 3 || !slot_of(e->element[0], &start) ||
        !slot_of(e->element[1], &end) || start > end)
        return tse_error_set(err, TSE_INVALID, "CLUSTER SLOTS",
                             "an entry is not [start, end, master, replicas...] with 0 <= start "
                             "<= end <= 16383");
    master = slots_node(m, e->element[2], conn_host, true, err);
    if (master == -1)
        return err != NULL ? err->code : TSE_INVALID;
    for (size_t i = 3; i < e->elements; i++) {
        long n = slots_node(m, e->element[i], conn_host, false, err);
        if (n == -1)
            return err != NULL ? err->code : TSE_INVALID;
        replicas += n >= 0;
    }
    if (master >= 0)
        m->nodes[master].replicas = replicas;
    for (unsigned s = start; master >= 0 && s <= end; s++)
        m->owner[s] = (uint16_t)master;
    return TSE_OK;
}

/* One element of a CLUSTER SLOTS or CLUSTER SHARDS reply into m. */
typedef tse_status (*entry_fn)(tse_cluster_map *m, const redisReply *e, const char *conn_host,
                               tse_error *err);

/* A map built from every element of reply by entry, handed to *out only
 * when all of them were taken. */
static tse_status build(const redisReply *reply, const char *conn_host, tse_cluster_map **out,
                        entry_fn entry, const char *field, tse_error *err)
{
    tse_cluster_map *m;
    tse_status st;

    if (!is_array(reply))
        return tse_error_set(err, TSE_INVALID, field, "the reply is not an array");
    m = map_new();
    if (m == NULL)
        return tse_error_set(err, TSE_NOMEM, field, "out of memory");
    st = TSE_OK;
    for (size_t i = 0; i < reply->elements && st == TSE_OK; i++)
        st = entry(m, reply->element[i], conn_host != NULL ? conn_host : "", err);
    if (st != TSE_OK) {
        tse_cluster_map_destroy(m);
        return st;
    }
    *out = m;
    return TSE_OK;
}

tse_status tse_cluster_map_from_slots(const redisReply *reply, const char *conn_host,
                                      tse_cluster_map **out, tse_error *err)
{
    return build(reply, conn_host, out, slots_entry, "CLUSTER SLOTS", err);
}

/* -------------------------------------------------------------------------
 * CLUSTER SHARDS: [{slots: [s, e, ...], nodes: [{ip, endpoint, port, role,
 * ...}, ...]}, ...] with maps as RESP3 maps or RESP2 flat arrays.
 * ---------------------------------------------------------------------- */

#define SHARDS "CLUSTER SHARDS"

/* The value of key in a map reply (RESP3 map or RESP2 [k, v, k, v...]). */
static const redisReply *map_get(const redisReply *r, const char *key)
{
    if (r == NULL || (!IS_RESP3(r, MAP) && r->type != REDIS_REPLY_ARRAY) ||
        (r->elements > 0 && r->element == NULL))
        return NULL;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *k = r->element[i];
        if (is_string(k) && k->len == strlen(key) && memcmp(k->str, key, k->len) == 0)
            return r->element[i + 1];
    }
    return NULL;
}

static bool string_is(const redisReply *r, const char *s)
{
    return is_string(r) && r->len == strlen(s) && memcmp(r->str, s, r->len) == 0;
}

/* The index of a shard's node (master or not), -2 to leave it out. */
static long shards_node(tse_cluster_map *m, const redisReply *n, const char *conn_host,
                        tse_error *err)
{
    const redisReply *host = map_get(n, "endpoint"), *port = map_get(n, "port");
    bool master = string_is(map_get(n, "role"), "master");

    if (!is_string(host) || host->len == 0 || (host->len == 1 && host->str[0] == '?'))
        host = map_get(n, "ip");
    if (port == NULL || host == NULL)
        return -2;
    if (port->type != REDIS_REPLY_INTEGER || port->integer < 1 || port->integer > 65535 ||
        !is_string(host) || memchr(host->str, '\0', host->len) != NULL)
        return node_fail(err, SHARDS, "a node's ip or port is malformed");
    return node_at(m, host->str, host->len, conn_host, port->integer, master, SHARDS, err);
}

static tse_status shards_entry(tse_cluster_map *m, const redisReply *shard, const char *conn_host,
                               tse_error *err)
{
    const redisReply *slots = map_get(shard, "slots"), *nodes = map_get(shard, "nodes");
    long master = -2;
    int replicas = 0;

    if (!is_array(slots) || !is_array(nodes) || slots->elements % 2 != 0)
        return tse_error_set(err, TSE_INVALID, SHARDS,
                             "a shard has no slots [start, end, ...] or nodes array");
    for (size_t i = 0; i < nodes->elements; i++) {
        long n = shards_node(m, nodes->element[i], conn_host, err);
        if (n == -1)
            return err != NULL ? err->code : TSE_INVALID;
        if (n >= 0 && master < 0 && string_is(map_get(nodes->element[i], "role"), "master"))
            master = n;
        else if (n >= 0)
            replicas++;
    }
    if (master >= 0)
        m->nodes[master].replicas = replicas;
    for (size_t i = 0; i < slots->elements; i += 2) {
        unsigned start, end;
        if (!slot_of(slots->element[i], &start) || !slot_of(slots->element[i + 1], &end) ||
            start > end)
            return tse_error_set(err, TSE_INVALID, SHARDS, "a slot range is not 0..16383");
        for (unsigned s = start; master >= 0 && s <= end; s++)
            m->owner[s] = (uint16_t)master;
    }
    return TSE_OK;
}

tse_status tse_cluster_map_from_shards(const redisReply *reply, const char *conn_host,
                                       tse_cluster_map **out, tse_error *err)
{
    return build(reply, conn_host, out, shards_entry, SHARDS, err);
}

/* -------------------------------------------------------------------------
 * MOVED / ASK
 * ---------------------------------------------------------------------- */

/* All-digit [s, s + n) as a number in [0, max], -1 otherwise. */
static long number(const char *s, size_t n, long max)
{
    long v = 0;

    if (n == 0 || n > 5)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v <= max ? v : -1;
}

static tse_cluster_redirect_kind redirect_fail(tse_cluster_redirect *out)
{
    memset(out, 0, sizeof(*out));
    return TSE_REDIRECT_NONE;
}

tse_cluster_redirect_kind tse_cluster_redirect_parse(const char *text, size_t len,
                                                     const char *conn_host,
                                                     tse_cluster_redirect *out)
{
    const char *end, *sp, *colon, *h;
    size_t hlen;
    long slot, port;
    tse_cluster_redirect_kind kind;

    if (text == NULL)
        return redirect_fail(out);
    if (len > 0 && text[0] == '-')
        text++, len--;
    end = text + len;
    while (end > text && (end[-1] == '\r' || end[-1] == '\n'))
        end--;
    if (end - text > 6 && memcmp(text, "MOVED ", 6) == 0)
        kind = TSE_REDIRECT_MOVED, text += 6;
    else if (end - text > 4 && memcmp(text, "ASK ", 4) == 0)
        kind = TSE_REDIRECT_ASK, text += 4;
    else
        return redirect_fail(out);
    sp = memchr(text, ' ', (size_t)(end - text));
    if (sp == NULL || (slot = number(text, (size_t)(sp - text), TSE_KEY_SLOTS - 1)) < 0)
        return redirect_fail(out);
    h = sp + 1;
    for (colon = end; colon > h && colon[-1] != ':'; colon--)
        ;
    if (colon == h || (port = number(colon, (size_t)(end - colon), 65535)) < 1)
        return redirect_fail(out);
    hlen = (size_t)(colon - 1 - h);
    if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']')
        h++, hlen -= 2;
    if (hlen == 0) {
        h = conn_host != NULL ? conn_host : "";
        hlen = strlen(h);
    }
    if (hlen == 0 || hlen >= sizeof(out->host) || memchr(h, '\0', hlen) != NULL ||
        memchr(h, ' ', hlen) != NULL || (hlen == 1 && h[0] == '?'))
        return redirect_fail(out);
    out->kind = kind;
    out->slot = (unsigned)slot;
    memcpy(out->host, h, hlen);
    out->host[hlen] = '\0';
    out->port = (int)port;
    return kind;
}
