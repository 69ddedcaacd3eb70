/*
 * group_ops.c - the consumer-group operations of group_ops.h: each builds
 * its command(s), runs them on the connection and decodes the reply into
 * plain C values. The decoding checks every element's type before using
 * it: a reply of an unexpected shape is TSE_INTERNAL or skipped, never a
 * crash. The scripts that must be atomic per stream (the lag count, the
 * acknowledged position, a seek) live here too.
 *
 * XREADGROUP's reply is read raw (rconn.h, tse_rconn_raw_reply) and decoded
 * from its RESP bytes with resp.h's cursor: hiredis's reply tree cost ten
 * allocations per entry read (the entry, its id, its field array and three
 * fields and values), 9.6k of the ~17k instructions the service spent per
 * delivered event (docs/benchmarks.md, "The drain: reading XREADGROUP's
 * reply without hiredis's tree").
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "domain/operate.h"
#include "storage/conn_internal.h"
#include "storage/group_ops.h"
#include "storage/keys.h"
#include "storage/resp.h"
#include "storage/slot_groups.h"

/* ===================== entries ========================================== */

void tse_group_entries_cleanup(tse_group_entries *e)
{
    if (e == NULL)
        return;
    for (size_t i = 0; i < e->n_held; i++)
        freeReplyObject(e->held[i]);
    free(e->held);
    free(e->v);
    memset(e, 0, sizeof(*e));
}

/* Room for one more reply held by out; false when out of memory. */
static bool held_reserve(tse_group_entries *out)
{
    return TSE_GROW(realloc, out->held, out->cap_held, out->n_held + 1, 4);
}

/* An entry id the engine can keep: a C string (no NUL inside: it becomes
 * the ack id's text), not empty, with room for its NUL in the entry.
 * Redis never makes another; a reply that holds one skips that entry. */
static bool id_usable(const char *id, size_t len)
{
    return len > 0 && len < TSE_GROUP_ID_MAX && memchr(id, '\0', len) == NULL;
}

/* The next entry of out (room made for it), id and stream set; NULL when
 * out of memory. Not counted until the caller says (out->n++). */
static tse_group_entry *entry_next(tse_group_entries *out, const char *id, size_t id_len,
                                   size_t stream, uint32_t attempt)
{
    tse_group_entry *g;

    if (!TSE_GROW(realloc, out->v, out->cap, out->n + 1, 64))
        return NULL;
    g = &out->v[out->n];
    g->stream = stream;
    g->attempt = attempt;
    memcpy(g->id, id, id_len);
    g->id[id_len] = '\0';
    return g;
}

/* The "event" field of an entry's field/value array, or NULL. */
static const redisReply *envelope_of(const redisReply *fields)
{
    const redisReply *v = tse_reply_field(fields, "event");

    return v != NULL && v->type == REDIS_REPLY_STRING ? v : NULL;
}

/*
 * Appends entry e ([id, [field, value, ...]]) to out when it has an
 * envelope (borrowed from e). TSE_OK also for an entry skipped (no
 * envelope, another shape); TSE_NOMEM.
 */
static tse_status add_entry(tse_group_entries *out, const redisReply *e, size_t stream,
                            uint32_t attempt)
{
    const redisReply *env;
    tse_group_entry *g;

    if (!is_array(e) || e->elements != 2 || !is_str(e->element[0]) ||
        !id_usable(e->element[0]->str, e->element[0]->len))
        return TSE_OK;
    if ((env = envelope_of(e->element[1])) == NULL)
        return TSE_OK;
    if ((g = entry_next(out, e->element[0]->str, e->element[0]->len, stream, attempt)) == NULL)
        return TSE_NOMEM;
    g->envelope = (const uint8_t *)env->str;
    g->envelope_len = env->len;
    out->n++;
    return TSE_OK;
}

/* Reads a bulk string at c, or skips whatever value is there (*s NULL);
 * false when the bytes end. */
static bool bulk_or_skip(tse_resp_cursor *c, const char **s, size_t *len)
{
    if (tse_resp_read_bulk(c, s, len))
        return true;
    *s = NULL;
    return tse_resp_skip_value(c);
}

/*
 * One entry of a raw read, [id, [field, value, ...]], at c: appended to
 * out (stream `stream`) when the value after its first "event" field is a
 * string. An entry of another shape (deleted: nil fields) is skipped
 * whole. False when the bytes end early or memory ran out (*st NOMEM).
 */
static bool raw_entry(tse_resp_cursor *c, size_t stream, tse_group_entries *out, tse_status *st)
{
    tse_resp_cursor start = *c;
    const char *id, *name, *value, *env = NULL;
    size_t id_len, name_len, value_len, env_len = 0;
    bool seen = false;
    long long two, nf;
    tse_group_entry *g;

    if (!tse_resp_read_array(c, &two) || two != 2 || !tse_resp_read_bulk(c, &id, &id_len) ||
        id == NULL || !id_usable(id, id_len) || !tse_resp_read_array(c, &nf) || nf < 0 ||
        nf % 2 != 0) {
        *c = start;
        return tse_resp_skip_value(c);
    }
    for (long long f = 0; f < nf; f += 2) {
        if (!bulk_or_skip(c, &name, &name_len) || !bulk_or_skip(c, &value, &value_len))
            return false;
        if (!seen && name != NULL && name_len == 5 && memcmp(name, "event", 5) == 0) {
            seen = true;
            env = value;
            env_len = value_len;
        }
    }
    if (env == NULL)
        return true;
    if ((g = entry_next(out, id, id_len, stream, 1)) == NULL) {
        *st = TSE_NOMEM;
        return false;
    }
    g->envelope = (const uint8_t *)env;
    g->envelope_len = env_len;
    out->n++;
    return true;
}

/* One stream of a raw read, [key, [entry, ...]], at c; a stream not
 * asked for, or of another shape, is skipped whole. */
static bool raw_stream(tse_resp_cursor *c, const char *const *keys, size_t k,
                       tse_group_entries *out, size_t *per_stream, tse_status *st)
{
    tse_resp_cursor start = *c;
    const char *key;
    size_t key_len, which = k;
    long long two, n;

    if (!tse_resp_read_array(c, &two) || two != 2 || !tse_resp_read_bulk(c, &key, &key_len) ||
        key == NULL)
        goto skip;
    for (size_t j = 0; j < k && which == k; j++)
        if (strlen(keys[j]) == key_len && memcmp(keys[j], key, key_len) == 0)
            which = j;
    if (which == k || !tse_resp_read_array(c, &n))
        goto skip;
    /* Added, not set: Redis names a stream once, but bytes that name it
     * twice must not report fewer entries than were kept (fuzz_redis_reply). */
    if (per_stream && n > 0)
        per_stream[which] += (size_t)n;
    for (long long i = 0; i < n; i++) {
        tse_status entry_st = TSE_OK;
        if (!raw_entry(c, which, out, &entry_st)) {
            *st = entry_st == TSE_NOMEM ? TSE_NOMEM : TSE_INTERNAL;
            return false;
        }
    }
    return true;
skip:
    *c = start;
    return tse_resp_skip_value(c);
}

tse_status tse_group_read_parse(const char *resp, size_t len, const char *const *keys, size_t k,
                                tse_group_entries *out, size_t *per_stream)
{
    tse_resp_cursor c = {resp, resp + len};
    tse_status st = TSE_OK;
    long long n;

    for (size_t i = 0; per_stream && i < k; i++)
        per_stream[i] = 0;
    if (!tse_resp_read_array(&c, &n))
        return TSE_INTERNAL; /* an error reply, or no array */
    for (long long i = 0; i < n; i++)
        if (!raw_stream(&c, keys, k, out, per_stream, &st))
            return st == TSE_OK ? TSE_INTERNAL : st;
    return TSE_OK; /* n -1: nothing new on any stream */
}

/* XREADGROUP GROUP <group> <consumer> COUNT <count> STREAMS <keys> > ...
 * into argv (room for 7 + 2 k); returns argc. */
static int read_command(const char **argv, const char *group, const char *consumer,
                        const char *count, const char *const *keys, size_t k)
{
    int argc = 0;

    argv[argc++] = "XREADGROUP";
    argv[argc++] = "GROUP";
    argv[argc++] = group;
    argv[argc++] = consumer;
    argv[argc++] = "COUNT";
    argv[argc++] = count;
    argv[argc++] = "STREAMS";
    for (size_t i = 0; i < k; i++)
        argv[argc++] = keys[i];
    for (size_t i = 0; i < k; i++)
        argv[argc++] = ">";
    return argc;
}

/* One read's reply into out (its RESP bytes: a raw reply, rconn.h), which
 * holds it for the envelopes that point into it. */
static tse_status read_reply(redisReply *r, const char *const *keys, size_t k,
                             tse_group_entries *out, size_t *per_stream)
{
    tse_status st = TSE_INTERNAL;

    if (r == NULL)
        return TSE_CONN_GONE;
    if (r->type == REDIS_REPLY_NIL) {
        st = TSE_OK;
    } else if (r->type == REDIS_REPLY_STRING) {
        size_t first = out->n;
        if (!held_reserve(out)) {
            freeReplyObject(r);
            return TSE_NOMEM;
        }
        st = tse_group_read_parse(r->str, r->len, keys, k, out, per_stream);
        if (out->n > first) {
            out->held[out->n_held++] = r;
            return st;
        }
    }
    freeReplyObject(r);
    return st;
}

/* What a read over slots needs: keys[]'s indices grouped by slot, and the
 * keys and per-stream counts of one group. */
typedef struct slot_read {
    unsigned *slots;
    size_t *order, *start, *counts;
    const char **keys, **argv;
    size_t groups;
} slot_read;

static void slot_read_cleanup(slot_read *sr)
{
    free(sr->slots);
    free(sr->order);
    free(sr->start);
    free(sr->counts);
    free(sr->keys);
    free(sr->argv);
}

static bool slot_read_init(slot_read *sr, const char *const *keys, size_t k)
{
    memset(sr, 0, sizeof(*sr));
    sr->slots = calloc(k, sizeof(*sr->slots));
    sr->order = calloc(k, sizeof(*sr->order));
    sr->start = calloc(k + 1, sizeof(*sr->start));
    sr->counts = calloc(k, sizeof(*sr->counts));
    sr->keys = calloc(k, sizeof(*sr->keys));
    sr->argv = calloc(7 + 2 * k, sizeof(*sr->argv));
    if (!sr->slots || !sr->order || !sr->start || !sr->counts || !sr->keys || !sr->argv) {
        slot_read_cleanup(sr);
        return false;
    }
    for (size_t i = 0; i < k; i++)
        sr->slots[i] = tse_key_slot(keys[i], strlen(keys[i]));
    sr->groups = tse_slot_groups(sr->slots, k, sr->order, sr->start);
    return true;
}

/* The keys of group g into sr->keys; returns how many. */
static size_t group_keys(slot_read *sr, const char *const *keys, size_t g)
{
    size_t n = 0;

    for (size_t i = sr->start[g]; i < sr->start[g + 1]; i++)
        sr->keys[n++] = keys[sr->order[i]];
    return n;
}

/* Appends read commands of every slot group of sr (one XREADGROUP per
 * slot: the connection sends each master its share at once); returns how
 * many went (fewer: the connection was lost, or out of memory). */
static size_t slot_read_send(tse_conn *c, slot_read *sr, const char *group, const char *consumer,
                             const char *const *keys, const char *count)
{
    size_t sent = 0;

    for (; sent < sr->groups; sent++) {
        size_t n = group_keys(sr, keys, sent);
        if (!tse_conn_append_raw(c, read_command(sr->argv, group, consumer, count, sr->keys, n),
                                 sr->argv, NULL))
            break;
    }
    return sent;
}

/*
 * The replies of the `sent` slot groups of a read on a cluster, merged.
 * Each stream's entries keep their order; streams come slot by slot, the
 * slot of the first key first. An error reply of one slot (TSE_INTERNAL),
 * or no reply from its master while the connection lives (TSE_CONN_GONE:
 * a node down, conn.h), leaves what the others read in out: those entries
 * are delivered to the consumer now, read or not.
 */
static tse_status slot_read_collect(tse_conn *c, slot_read *sr, const char *const *keys,
                                    size_t sent, tse_group_entries *out, size_t *per_stream)
{
    tse_status st = TSE_OK;

    if (sent < sr->groups)
        st = tse_conn_lost(c) ? TSE_CONN_GONE : TSE_NOMEM;
    for (size_t g = 0; g < sent; g++) {
        size_t n = group_keys(sr, keys, g), first = out->n;
        tse_status got;

        memset(sr->counts, 0, n * sizeof(*sr->counts));
        got = read_reply(tse_conn_reply(c), sr->keys, n, out, sr->counts);
        if (got == TSE_CONN_GONE && tse_conn_lost(c)) {
            st = got; /* lost: no reply follows */
            break;
        }
        for (size_t e = first; e < out->n; e++)
            out->v[e].stream = sr->order[sr->start[g] + out->v[e].stream];
        for (size_t i = 0; per_stream && i < n; i++)
            per_stream[sr->order[sr->start[g] + i]] = sr->counts[i];
        if (st == TSE_OK)
            st = got;
    }
    return st;
}

/* ===================== acks ============================================= */

/* Appends one XACK per run of ids of one stream (keys[i] NULL: skipped)
 * into the pipeline, argv room for n + 3; returns how many went. *all:
 * whether every run went. */
static size_t ack_append(tse_conn *c, const char *group, const char *const *keys,
                         const char *const *ids, size_t n, const char **argv, bool *all)
{
    size_t sent = 0, i = 0;

    *all = true;
    while (i < n) {
        int argc = 0;
        const char *key = keys[i];
        if (key == NULL) {
            i++;
            continue;
        }
        argv[argc++] = "XACK";
        argv[argc++] = key;
        argv[argc++] = group;
        argv[argc++] = ids[i++];
        for (; i < n && (keys[i] == NULL || strcmp(keys[i], key) == 0); i++)
            if (keys[i] != NULL)
                argv[argc++] = ids[i];
        if (!tse_conn_append(c, argc, argv, NULL)) {
            *all = false;
            break;
        }
        sent++;
    }
    return sent;
}

/* Takes the replies of `sent` XACKs appended by ack_append: how many Redis
 * acked into *acked. TSE_CONN_GONE when one is missing (lost: no reply
 * follows; else one slot's master was out of reach, the others answered). */
static tse_status ack_collect(tse_conn *c, size_t sent, uint32_t *acked)
{
    bool gone = false;

    *acked = 0;
    for (size_t k = 0; k < sent; k++) {
        redisReply *r = tse_conn_reply(c);
        if (r == NULL) {
            if (tse_conn_lost(c))
                return TSE_CONN_GONE;
            gone = true;
            continue;
        }
        if (is_int(r) && r->integer > 0)
            *acked += (uint32_t)r->integer;
        freeReplyObject(r);
    }
    return gone || tse_conn_lost(c) ? TSE_CONN_GONE : TSE_OK;
}

tse_status tse_group_ack_runs(tse_conn *c, const char *group, const char *const *keys,
                              const char *const *ids, size_t n, uint32_t *acked)
{
    const char **argv = calloc(n + 3, sizeof(*argv));
    size_t sent;
    bool all;
    tse_status st;

    *acked = 0;
    if (argv == NULL)
        return TSE_NOMEM;
    sent = ack_append(c, group, keys, ids, n, argv, &all);
    free(argv);
    st = ack_collect(c, sent, acked);
    return st == TSE_OK && !all && tse_conn_lost(c) ? TSE_CONN_GONE : st;
}

/* ===================== reads ============================================ */

tse_status tse_group_read(tse_conn *c, const char *group, const char *consumer,
                          const char *const *keys, size_t k, uint32_t count, tse_group_entries *out,
                          size_t *per_stream)
{
    return tse_group_ack_read(c, group, NULL, consumer, keys, k, count, out, per_stream);
}

/* A read sent, its replies not yet taken (tse_group_read_send). */
struct tse_group_sent_read {
    tse_conn *c;
    tse_group_acks *acks;
    const char *const *keys;
    size_t k, acks_sent, reads_sent;
    bool by_slot, all;
    slot_read sr;
};

tse_status tse_group_read_send(tse_conn *c, const char *group, tse_group_acks *acks,
                               const char *consumer, const char *const *keys, size_t k,
                               uint32_t count, tse_group_sent_read **out)
{
    size_t n_acks = acks ? acks->n : 0;
    tse_group_sent_read *op = calloc(1, sizeof(*op));
    const char **argv = calloc((n_acks + 3 > 7 + 2 * k ? n_acks + 3 : 7 + 2 * k), sizeof(*argv));
    char count_buf[16];

    *out = NULL;
    if (acks) {
        acks->acked = 0;
        acks->st = TSE_NOMEM;
    }
    if (op == NULL || argv == NULL)
        goto nomem;
    op->by_slot = k > 1 && tse_conn_is_cluster(c);
    if (op->by_slot && !slot_read_init(&op->sr, keys, k))
        goto nomem;
    op->c = c;
    op->acks = acks;
    op->keys = keys;
    op->k = k;
    op->all = true;
    snprintf(count_buf, sizeof(count_buf), "%u", count);
    /* The acks first: Redis applies them before the read, in one round
     * trip with it. */
    if (n_acks > 0)
        op->acks_sent = ack_append(c, group, acks->keys, acks->ids, n_acks, argv, &op->all);
    if (op->by_slot)
        op->reads_sent = slot_read_send(c, &op->sr, group, consumer, keys, count_buf);
    else
        op->reads_sent = tse_conn_append_raw(
            c, read_command(argv, group, consumer, count_buf, keys, k), argv, NULL);
    free(argv);
    tse_conn_send(c);
    *out = op;
    return TSE_OK;
nomem:
    free(op);
    free(argv);
    return TSE_NOMEM;
}

tse_status tse_group_read_take(tse_group_sent_read *op, tse_group_entries *out, size_t *per_stream)
{
    tse_conn *c = op->c;
    tse_status st;

    for (size_t i = 0; per_stream && i < op->k; i++)
        per_stream[i] = 0;
    if (op->acks) {
        op->acks->st = ack_collect(c, op->acks_sent, &op->acks->acked);
        if (op->acks->st == TSE_OK && !op->all && tse_conn_lost(c))
            op->acks->st = TSE_CONN_GONE;
    }
    if (op->by_slot) {
        st = slot_read_collect(c, &op->sr, op->keys, op->reads_sent, out, per_stream);
        slot_read_cleanup(&op->sr);
    } else {
        st =
            read_reply(op->reads_sent ? tse_conn_reply(c) : NULL, op->keys, op->k, out, per_stream);
    }
    free(op);
    return st;
}

tse_status tse_group_ack_read(tse_conn *c, const char *group, tse_group_acks *acks,
                              const char *consumer, const char *const *keys, size_t k,
                              uint32_t count, tse_group_entries *out, size_t *per_stream)
{
    tse_group_sent_read *op;
    tse_status st = tse_group_read_send(c, group, acks, consumer, keys, k, count, &op);

    if (st != TSE_OK) {
        for (size_t i = 0; per_stream && i < k; i++)
            per_stream[i] = 0;
        return st;
    }
    return tse_group_read_take(op, out, per_stream);
}

tse_status tse_group_claim_parse(const redisReply *r, const char *const *ids,
                                 const long long *delivered, size_t n, tse_group_entries *out)
{
    if (!is_array(r))
        return TSE_INTERNAL;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        long long count = 1;
        if (!is_array(e) || e->elements != 2 || !is_str(e->element[0]))
            continue;
        for (size_t j = 0; j < n; j++)
            if (strcmp(e->element[0]->str, ids[j]) == 0)
                count = delivered[j];
        if (add_entry(out, e, 0, (uint32_t)count + 1) != TSE_OK)
            return TSE_NOMEM;
    }
    return TSE_OK;
}

tse_status tse_group_claim(tse_conn *c, const char *key, const char *group, const char *consumer,
                           uint32_t min_idle_ms, const char *const *ids, const long long *delivered,
                           size_t n, tse_group_entries *out)
{
    const char **argv = calloc(n + 5, sizeof(*argv));
    char idle[16];
    size_t argc = 0;
    redisReply *r;
    tse_status st;

    if (argv == NULL)
        return TSE_NOMEM;
    snprintf(idle, sizeof(idle), "%u", min_idle_ms);
    argv[argc++] = "XCLAIM";
    argv[argc++] = key;
    argv[argc++] = group;
    argv[argc++] = consumer;
    argv[argc++] = idle;
    for (size_t i = 0; i < n; i++)
        argv[argc++] = ids[i];
    r = tse_conn_command(c, (int)argc, argv, NULL);
    free(argv);
    if (r == NULL)
        return TSE_CONN_GONE;
    if (!held_reserve(out)) {
        freeReplyObject(r);
        return TSE_NOMEM;
    }
    st = tse_group_claim_parse(r, ids, delivered, n, out);
    out->held[out->n_held++] = r; /* the envelopes point into it */
    return st;
}

/* ===================== pending entries ================================== */

void tse_pending_list_cleanup(tse_pending_list *p)
{
    if (p == NULL)
        return;
    free(p->v);
    p->v = NULL;
    p->n = 0;
}

/* One entry of XPENDING's extended form: [id, consumer, idle, delivered],
 * into slot, a tse_pending_entry (an item of tse_reply_items). */
static tse_status pending_entry(const redisReply *p, void *slot)
{
    tse_pending_entry *out = slot;

    if (!is_array(p) || p->elements != 4 || !is_str(p->element[0]) || !is_int(p->element[2]) ||
        !is_int(p->element[3]) || strlen(p->element[0]->str) >= sizeof(out->id))
        return TSE_INTERNAL;
    snprintf(out->id, sizeof(out->id), "%s", p->element[0]->str);
    out->idle_ms = p->element[2]->integer;
    out->delivered = p->element[3]->integer;
    return TSE_OK;
}

tse_status tse_group_pending_parse(const redisReply *r, tse_pending_list *out)
{
    tse_pending_list_cleanup(out);
    return tse_reply_items(r, sizeof(*out->v), pending_entry, &out->v, &out->n);
}

tse_status tse_group_pending(tse_conn *c, const char *key, const char *group, uint32_t min_idle_ms,
                             uint32_t count, tse_pending_list *out)
{
    char idle[16], n[16];
    redisReply *r;

    snprintf(idle, sizeof(idle), "%u", min_idle_ms);
    snprintf(n, sizeof(n), "%u", count);
    r = tse_conn_command(c, 8, (const char *[]){"XPENDING", key, group, "IDLE", idle, "-", "+", n},
                         NULL);
    return tse_reply_finish(r, tse_group_pending_parse(r, out));
}

tse_status tse_group_pending_count(tse_conn *c, const char *key, const char *group, const char *id,
                                   long long *delivered)
{
    redisReply *r =
        tse_conn_command(c, 6, (const char *[]){"XPENDING", key, group, id, id, "1"}, NULL);
    tse_pending_entry p;

    *delivered = 0;
    if (!is_array(r)) {
        tse_status st = failed(r);
        if (r)
            freeReplyObject(r);
        return st;
    }
    if (r->elements == 1 && pending_entry(r->element[0], &p) == TSE_OK)
        *delivered = p.delivered;
    freeReplyObject(r);
    return TSE_OK;
}

tse_status tse_group_oldest_pending_parse(const redisReply *r, long long *ms)
{
    *ms = -1;
    if (!is_array(r) || r->elements != 4)
        return TSE_INTERNAL;
    if (is_str(r->element[1]))
        *ms = strtoll(r->element[1]->str, NULL, 10);
    return TSE_OK;
}

tse_status tse_group_oldest_pending(tse_conn *c, const char *key, const char *group, long long *ms)
{
    redisReply *r = tse_conn_command(c, 3, (const char *[]){"XPENDING", key, group}, NULL);

    return tse_reply_finish(r, tse_group_oldest_pending_parse(r, ms));
}

tse_status tse_group_ack_each(tse_conn *c, const char *group, const char *const *keys,
                              const char *const *ids, size_t n, bool *acked, bool *unreached)
{
    bool *sent = calloc(n ? n : 1, sizeof(*sent)), gone = false;

    for (size_t i = 0; i < n; i++) {
        acked[i] = false;
        if (unreached)
            unreached[i] = false;
    }
    if (sent == NULL)
        return TSE_NOMEM;
    /* Sent in order, so the replies come in the order of the ids sent. */
    for (size_t i = 0; i < n; i++)
        sent[i] = keys[i] != NULL &&
                  tse_conn_append(c, 4, (const char *[]){"XACK", keys[i], group, ids[i]}, NULL);
    for (size_t i = 0; i < n; i++) {
        redisReply *r;
        if (!sent[i]) {
            /* Not sent: the connection is lost or its slot out of reach. */
            if (keys[i] != NULL) {
                gone = true;
                if (unreached)
                    unreached[i] = true;
            }
            continue;
        }
        if ((r = tse_conn_reply(c)) == NULL) {
            /* Not acked (it may have been: at least once). A slot out of
             * reach is one reply; a lost connection, all the rest. */
            gone = true;
            if (unreached)
                unreached[i] = true;
            if (tse_conn_lost(c)) {
                for (size_t j = i + 1; unreached && j < n; j++)
                    unreached[j] = keys[j] != NULL;
                break;
            }
            continue;
        }
        acked[i] = is_int(r) && r->integer == 1;
        freeReplyObject(r);
    }
    free(sent);
    return gone || tse_conn_lost(c) ? TSE_CONN_GONE : TSE_OK;
}

/* ===================== idle times ======================================= */

/* An XCLAIM ... JUSTID of one id: *claimed when Redis answered it. */
static tse_status claim_justid(tse_conn *c, int argc, const char **argv, bool *claimed)
{
    redisReply *r = tse_conn_command(c, argc, argv, NULL);
    tse_status st = is_array(r) ? TSE_OK : failed(r);

    *claimed = is_array(r) && r->elements == 1;
    if (r)
        freeReplyObject(r);
    return st;
}

tse_status tse_group_set_idle(tse_conn *c, const char *key, const char *group, const char *owner,
                              const char *id, uint32_t idle_ms, bool *pending)
{
    char idle[16];

    snprintf(idle, sizeof(idle), "%u", idle_ms);
    return claim_justid(
        c, 9, (const char *[]){"XCLAIM", key, group, owner, "0", id, "IDLE", idle, "JUSTID"},
        pending);
}

tse_status tse_group_redrive(tse_conn *c, const char *key, const char *group, const char *consumer,
                             const char *id, uint32_t idle_ms, bool *claimed)
{
    char idle[16];

    snprintf(idle, sizeof(idle), "%u", idle_ms);
    return claim_justid(c, 12,
                        (const char *[]){"XCLAIM", key, group, consumer, "0", id, "IDLE", idle,
                                         "RETRYCOUNT", "0", "FORCE", "JUSTID"},
                        claimed);
}

/* ===================== the group ======================================== */

/* A command whose reply only says done or not: an error reply is INTERNAL
 * unless it starts with `fine` (NULL: none is). */
static tse_status simple_cmd(tse_conn *c, int argc, const char **argv, const char *fine)
{
    redisReply *r = tse_conn_command(c, argc, argv, NULL);
    tse_status st = TSE_OK;

    if (r == NULL)
        return TSE_CONN_GONE;
    if (r->type == REDIS_REPLY_ERROR &&
        (fine == NULL || r->str == NULL || strncmp(r->str, fine, strlen(fine)) != 0))
        st = TSE_INTERNAL;
    freeReplyObject(r);
    return st;
}

tse_status tse_group_create(tse_conn *c, const char *key, const char *group, const char *start)
{
    return simple_cmd(c, 6, (const char *[]){"XGROUP", "CREATE", key, group, start, "MKSTREAM"},
                      "BUSYGROUP");
}

tse_status tse_group_destroy(tse_conn *c, const char *key, const char *group)
{
    return simple_cmd(c, 4, (const char *[]){"XGROUP", "DESTROY", key, group}, NULL);
}

tse_status tse_group_delete_consumer(tse_conn *c, const char *key, const char *group,
                                     const char *consumer)
{
    return simple_cmd(c, 5, (const char *[]){"XGROUP", "DELCONSUMER", key, group, consumer}, NULL);
}

void tse_consumer_list_cleanup(tse_consumer_list *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].name);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

/* One consumer of XINFO CONSUMERS into slot, a tse_consumer_info (an item
 * of tse_reply_items); one without a name is skipped. */
static tse_status consumer_item(const redisReply *f, void *slot)
{
    const redisReply *name = tse_reply_field(f, "name");
    const redisReply *pending = tse_reply_field(f, "pending"), *idle = tse_reply_field(f, "idle");
    tse_consumer_info *out = slot;

    if (!is_str(name))
        return TSE_INTERNAL;
    if ((out->name = strdup(name->str)) == NULL)
        return TSE_NOMEM;
    out->pending = is_int(pending) ? pending->integer : -1;
    out->idle_ms = is_int(idle) ? idle->integer : -1;
    return TSE_OK;
}

tse_status tse_group_consumers_parse(const redisReply *r, tse_consumer_list *out)
{
    tse_consumer_list_cleanup(out);
    return tse_reply_items(r, sizeof(*out->v), consumer_item, &out->v, &out->n);
}

tse_status tse_group_consumers(tse_conn *c, const char *key, const char *group,
                               tse_consumer_list *out)
{
    redisReply *r =
        tse_conn_command(c, 4, (const char *[]){"XINFO", "CONSUMERS", key, group}, NULL);

    return tse_reply_finish(r, tse_group_consumers_parse(r, out));
}

tse_status tse_group_info_parse(const redisReply *r, const char *group, tse_group_info *out)
{
    memset(out, 0, sizeof(*out));
    if (!is_array(r))
        return TSE_INTERNAL;
    for (size_t g = 0; !out->found && g < r->elements; g++) {
        const redisReply *f = r->element[g], *name = tse_reply_field(f, "name");
        const redisReply *pending = tse_reply_field(f, "pending"), *lag = tse_reply_field(f, "lag");
        const redisReply *consumers = tse_reply_field(f, "consumers");
        if (!is_str(name) || strcmp(name->str, group) != 0)
            continue;
        out->found = true;
        out->pending = is_int(pending) ? (uint64_t)pending->integer : 0;
        out->consumers = is_int(consumers) ? (uint64_t)consumers->integer : 0;
        out->lag_known = is_int(lag) && lag->integer >= 0;
        out->lag = out->lag_known ? (uint64_t)lag->integer : 0;
    }
    return TSE_OK;
}

tse_status tse_group_info_get(tse_conn *c, const char *key, const char *group, tse_group_info *out)
{
    redisReply *r = tse_conn_command(c, 3, (const char *[]){"XINFO", "GROUPS", key}, NULL);

    return tse_reply_finish(r, tse_group_info_parse(r, group, out));
}

/* ===================== the lag count ==================================== */

/*
 * The lag of a group whose lag Redis cannot report (delivery_subs.c says
 * when, and how the engine bounds the cost): the entries after its
 * last-delivered id, counted from both sides at once up to ARGV[2]
 * entries, handed back to Redis when exact (XGROUP SETID ... ENTRIESREAD);
 * else the figure kept (ARGV[3..6]: last id, entries-added,
 * max-deleted-entry-id, lag) plus the entries added since, when nothing
 * moved; else an estimate by the time the uncounted entries span.
 * Returns {lag, how, entries-added, max-deleted-entry-id, last-delivered
 * id} and, for how 0 and 1, the entries read; {-1} when the group does not
 * exist.
 */
static const char lag_script[] =
    "local function fields(a)\n"
    "  local f = {}\n"
    "  for i = 1, #a, 2 do f[a[i]] = a[i + 1] end\n"
    "  return f\n"
    "end\n"
    "local g\n"
    "for _, a in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do\n"
    "  local f = fields(a)\n"
    "  if f['name'] == ARGV[1] then g = f end\n"
    "end\n"
    "if not g then return {-1} end\n"
    "local last = g['last-delivered-id']\n"
    "local s = fields(redis.call('XINFO', 'STREAM', KEYS[1]))\n"
    "local len, added, dead = s['length'], s['entries-added'], s['max-deleted-entry-id']\n"
    "if type(g['lag']) == 'number' then return {g['lag'], 3, added, dead, last} end\n"
    "local function id(x)\n"
    "  local a, b = string.match(x, '^(%d+)-(%d+)$')\n"
    "  return tonumber(a), tonumber(b)\n"
    "end\n"
    "local function le(am, as, bm, bs) return am < bm or (am == bm and as <= bs) end\n"
    "local lm, ls = id(last)\n"
    "local nm, ns = id(s['last-generated-id'])\n"
    "if len == 0 or le(nm, ns, lm, ls) then return {0, 3, added, dead, last} end\n"
    "local fm, fs = id(s['first-entry'][1])\n"
    "if not le(fm, fs, lm, ls) then return {len, 3, added, dead, last} end\n"
    "local grew = added - tonumber(ARGV[4])\n"
    "if last == ARGV[3] and dead == ARGV[5] and grew >= 0 then\n"
    "  return {tonumber(ARGV[6]) + grew, 2, added, dead, last}\n"
    "end\n"
    "local cap, page = tonumber(ARGV[2]), 500\n"
    "local fwd, back, after, upto, lag = last, last, 0, 0, nil\n"
    "local back_from = last\n"
    "while after + upto < cap do\n"
    "  local p = redis.call('XRANGE', KEYS[1], '(' .. fwd, '+', 'COUNT', page)\n"
    "  after = after + #p\n"
    "  if #p < page then lag = after break end\n"
    "  fwd = p[#p][1]\n"
    "  local q = redis.call('XREVRANGE', KEYS[1], back_from, '-', 'COUNT', page)\n"
    "  upto = upto + #q\n"
    "  if #q < page then lag = len - upto break end\n"
    "  back = q[#q][1]\n"
    "  back_from = '(' .. back\n"
    "end\n"
    "if lag then\n"
    "  redis.call('XGROUP', 'SETID', KEYS[1], ARGV[1], last, 'ENTRIESREAD', added - lag)\n"
    "  return {lag, 1, added, dead, last, after + upto}\n"
    "end\n"
    "local function ms(id) return tonumber(string.match(id, '^(%d+)')) end\n"
    "local first, newest = ms(s['first-entry'][1]), ms(s['last-generated-id'])\n"
    "local a, b = newest - ms(fwd), ms(back) - first\n"
    "local unknown, est = len - after - upto, after\n"
    "if unknown > 0 and a + b > 0 then\n"
    "  est = after + math.floor(unknown * a / (a + b))\n"
    "end\n"
    "return {est, 0, added, dead, last, after + upto}\n";

tse_status tse_group_lag_parse(const redisReply *r, tse_lag_answer *out)
{
    memset(out, 0, sizeof(*out));
    if (is_array(r) && r->elements == 1 && is_int(r->element[0]) && r->element[0]->integer < 0)
        return TSE_NOT_FOUND;
    if (!is_array(r) || r->elements < 5 || !is_int(r->element[0]) || r->element[0]->integer < 0 ||
        !is_int(r->element[1]) || !is_int(r->element[2]) || !is_str(r->element[3]) ||
        !is_str(r->element[4]))
        return TSE_INTERNAL;
    out->lag = (uint64_t)r->element[0]->integer;
    out->how = (int)r->element[1]->integer;
    out->entries_added = r->element[2]->integer;
    out->read = r->elements == 6 && is_int(r->element[5]) ? r->element[5]->integer : 0;
    snprintf(out->max_deleted, sizeof(out->max_deleted), "%s", r->element[3]->str);
    snprintf(out->last_id, sizeof(out->last_id), "%s", r->element[4]->str);
    return TSE_OK;
}

tse_status tse_group_lag(tse_conn *c, const char *key, const char *group, const tse_lag_query *q,
                         tse_lag_answer *out)
{
    char max_read[16], added[24], kept[24];
    redisReply *r;

    snprintf(max_read, sizeof(max_read), "%u", q->max_read);
    snprintf(added, sizeof(added), "%lld", q->entries_added);
    snprintf(kept, sizeof(kept), "%" PRIu64, q->lag);
    r = tse_conn_command(c, 10,
                         (const char *[]){"EVAL", lag_script, "1", key, group, max_read, q->last_id,
                                          added, q->max_deleted, kept},
                         NULL);
    return tse_reply_finish(r, tse_group_lag_parse(r, out));
}

/* ===================== position and seek ================================ */

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

tse_status tse_group_acked_position_parse(const redisReply *r, char *out, size_t len)
{
    snprintf(out, len, "0-0");
    if (r != NULL && r->type == REDIS_REPLY_NIL)
        return TSE_NOT_FOUND; /* the script's false */
    if (!is_array(r) || r->elements != 2 || !is_str(r->element[0]) || !is_str(r->element[1]))
        return TSE_INTERNAL;
    if (r->element[1]->str[0] != '\0')
        id_before(r->element[1]->str, out, len);
    else
        snprintf(out, len, "%s", r->element[0]->str);
    return TSE_OK;
}

tse_status tse_group_acked_position(tse_conn *c, const char *key, const char *group, char *out,
                                    size_t len)
{
    redisReply *r = tse_conn_command(
        c, 5, (const char *[]){"EVAL", acked_position_script, "1", key, group}, NULL);

    return tse_reply_finish(r, tse_group_acked_position_parse(r, out, len));
}

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

tse_status tse_group_seek(tse_conn *c, const char *key, const char *group, const char *to,
                          uint64_t *cleared, char *why, size_t why_len)
{
    redisReply *r =
        tse_conn_command(c, 6, (const char *[]){"EVAL", seek_script, "1", key, group, to}, NULL);
    tse_status st = TSE_OK;

    *cleared = 0;
    if (why_len > 0)
        why[0] = '\0';
    if (r == NULL)
        return TSE_CONN_GONE;
    if (is_int(r)) {
        *cleared = r->integer > 0 ? (uint64_t)r->integer : 0;
    } else {
        st = TSE_INTERNAL;
        snprintf(why, why_len, "%s", r->type == REDIS_REPLY_ERROR && r->str ? r->str : "");
    }
    freeReplyObject(r);
    return st;
}
