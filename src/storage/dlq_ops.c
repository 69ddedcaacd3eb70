/*
 * dlq_ops.c - whole stream entries (dlq_ops.h): decoding XRANGE replies
 * into owned copies, the dead-letter stream of a subscription, and the
 * one-event append of the dead-letter target.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "domain/limits.h"
#include "storage/conn_internal.h"
#include "storage/dlq_ops.h"
#include "storage/keys.h"

#define DLQ_KEY_MAX (TSE_SUBSCRIPTION_NAME_MAX + 64)

/* ===================== entries ========================================== */

void tse_stream_entry_cleanup(tse_stream_entry *e)
{
    if (e == NULL)
        return;
    for (size_t i = 0; i < e->n_fields; i++) {
        free(e->fields[i].name);
        free(e->fields[i].value);
    }
    free(e->fields);
    free(e->id);
    memset(e, 0, sizeof(*e));
}

void tse_stream_entries_cleanup(tse_stream_entries *e)
{
    if (e == NULL)
        return;
    for (size_t i = 0; i < e->n; i++)
        tse_stream_entry_cleanup(&e->v[i]);
    free(e->v);
    e->v = NULL;
    e->n = 0;
}

const char *tse_stream_entry_field(const tse_stream_entry *e, const char *name, size_t *len)
{
    for (size_t i = 0; i < e->n_fields; i++) {
        if (strcmp(e->fields[i].name, name) != 0)
            continue;
        if (len != NULL)
            *len = e->fields[i].len;
        return e->fields[i].value;
    }
    return NULL;
}

static char *copy_bytes(const char *s, size_t len)
{
    char *p = malloc(len + 1);

    if (p != NULL) {
        memcpy(p, s, len);
        p[len] = '\0';
    }
    return p;
}

/* Decodes [id, [field, value, ...]] into slot, a zeroed tse_stream_entry:
 * TSE_OK, TSE_INTERNAL for another shape (it stays empty), TSE_NOMEM (an
 * item of tse_reply_items). Field pairs that are not two strings are
 * skipped. */
static tse_status entry_of(const redisReply *e, void *slot)
{
    tse_stream_entry *out = slot;
    const redisReply *f;

    if (!is_array(e) || e->elements != 2 || !is_str(e->element[0]) || !is_array(e->element[1]))
        return TSE_INTERNAL;
    f = e->element[1];
    if ((out->id = strdup(e->element[0]->str)) == NULL ||
        (out->fields = calloc(f->elements / 2 + 1, sizeof(*out->fields))) == NULL) {
        tse_stream_entry_cleanup(out);
        return TSE_NOMEM;
    }
    for (size_t i = 0; i + 1 < f->elements; i += 2) {
        tse_entry_field *x = &out->fields[out->n_fields];
        if (!is_str(f->element[i]) || !is_str(f->element[i + 1]))
            continue;
        x->name = strdup(f->element[i]->str);
        x->value = copy_bytes(f->element[i + 1]->str, f->element[i + 1]->len);
        x->len = f->element[i + 1]->len;
        out->n_fields++;
        if (x->name == NULL || x->value == NULL) {
            tse_stream_entry_cleanup(out);
            return TSE_NOMEM;
        }
    }
    return TSE_OK;
}

tse_status tse_stream_entries_parse(const redisReply *r, tse_stream_entries *out)
{
    tse_stream_entries_cleanup(out);
    return tse_reply_items(r, sizeof(*out->v), entry_of, &out->v, &out->n);
}

/* XRANGE key start end [COUNT count] into out. */
static tse_status range(tse_conn *c, const char *key, const char *start, const char *end,
                        uint32_t count, tse_stream_entries *out)
{
    char n[16];
    redisReply *r;

    snprintf(n, sizeof(n), "%u", count);
    r = tse_conn_command(c, count ? 6 : 4, (const char *[]){"XRANGE", key, start, end, "COUNT", n},
                         NULL);
    return tse_reply_finish(r, tse_stream_entries_parse(r, out));
}

tse_status tse_stream_entry_get(tse_conn *c, const char *key, const char *id, tse_stream_entry *out)
{
    tse_stream_entries all = {0};
    tse_status st = range(c, key, id, id, 0, &all);

    memset(out, 0, sizeof(*out));
    if (st == TSE_OK && all.n != 1)
        st = TSE_NOT_FOUND;
    if (st == TSE_OK) {
        *out = all.v[0];
        memset(&all.v[0], 0, sizeof(all.v[0]));
    }
    tse_stream_entries_cleanup(&all);
    return st;
}

tse_status tse_stream_append(tse_conn *c, const tse_append *a, tse_append_reply *out,
                             bool *new_stream)
{
    tse_cmd cmd;
    redisReply *r;
    tse_status st;

    *new_stream = false;
    memset(out, 0, sizeof(*out));
    /* Registered first, so a stored event's stream is always found by
     * discovery (the set is another slot: two commands). */
    tse_register_stream_command(a->stream_key, &cmd);
    r = tse_conn_command(c, cmd.argc, cmd.argv, cmd.lens);
    if (!is_int(r)) {
        st = failed(r);
        snprintf(out->message, sizeof(out->message), "%s",
                 r && r->type == REDIS_REPLY_ERROR && r->str ? r->str : "Redis is unavailable");
        if (r)
            freeReplyObject(r);
        return out->status = st;
    }
    *new_stream = r->integer == 1;
    freeReplyObject(r);
    tse_append_command(a, &cmd);
    if ((r = tse_conn_command(c, cmd.argc, cmd.argv, cmd.lens)) == NULL) {
        snprintf(out->message, sizeof(out->message), "Redis is unavailable");
        return out->status = TSE_CONN_GONE;
    }
    st = tse_append_decode(r, false, out);
    if (st == TSE_OK) {
        /* Copied: the reply goes now. */
        snprintf(out->id, sizeof(out->id), "%s", out->stream_id ? out->stream_id : "");
        out->stream_id = out->id;
    }
    freeReplyObject(r);
    return st;
}

/* ===================== dead letters ===================================== */

tse_status tse_dlq_length(tse_conn *c, const char *subscription, long long *n)
{
    char key[DLQ_KEY_MAX];

    tse_key_dlq(subscription, key, sizeof(key));
    return tse_conn_integer(c, 2, (const char *[]){"XLEN", key}, NULL, n);
}

tse_status tse_dlq_range(tse_conn *c, const char *subscription, const char *start, uint32_t count,
                         tse_stream_entries *out)
{
    char key[DLQ_KEY_MAX];

    tse_key_dlq(subscription, key, sizeof(key));
    return range(c, key, start, "+", count, out);
}

tse_status tse_dlq_get(tse_conn *c, const char *subscription, const char *id, tse_stream_entry *out)
{
    char key[DLQ_KEY_MAX];

    tse_key_dlq(subscription, key, sizeof(key));
    return tse_stream_entry_get(c, key, id, out);
}

tse_status tse_dlq_add(tse_conn *c, const char *subscription, const char *key, const char *id,
                       long long attempts, const char *reason, const tse_stream_entry *orig)
{
    size_t n = orig ? orig->n_fields : 0, argc = 0;
    const char **argv = calloc(2 * n + 11, sizeof(*argv));
    size_t *lens = calloc(2 * n + 11, sizeof(*lens));
    char dlq[DLQ_KEY_MAX], att[24];
    redisReply *r = NULL;
    tse_status st = TSE_NOMEM;

    tse_key_dlq(subscription, dlq, sizeof(dlq));
    snprintf(att, sizeof(att), "%lld", attempts);
    if (argv && lens) {
        const char *head[] = {"XADD",         dlq, "*",          "dlq_stream", key, "dlq_id", id,
                              "dlq_attempts", att, "dlq_reason", reason};
        for (size_t i = 0; i < 11; i++) {
            argv[argc] = head[i];
            lens[argc++] = strlen(head[i]);
        }
        for (size_t i = 0; i < n; i++) {
            argv[argc] = orig->fields[i].name;
            lens[argc++] = strlen(orig->fields[i].name);
            argv[argc] = orig->fields[i].value;
            lens[argc++] = orig->fields[i].len;
        }
        r = tse_conn_command(c, (int)argc, argv, lens);
        st = is_str(r) ? TSE_OK : failed(r);
    }
    if (r)
        freeReplyObject(r);
    free(argv);
    free(lens);
    return st;
}

tse_status tse_dlq_delete(tse_conn *c, const char *subscription, const char *id, bool *deleted)
{
    char key[DLQ_KEY_MAX];

    tse_key_dlq(subscription, key, sizeof(key));
    return tse_conn_flag(c, 3, (const char *[]){"XDEL", key, id}, NULL, deleted);
}
