/*
 * subs_ops.c - the subscriptions hash, the stream set, snapshot hashes and
 * the clock (subs_ops.h).
 */
#include <stdlib.h>
#include <string.h>

#include "domain/limits.h"
#include "storage/conn_internal.h"
#include "storage/keys.h"
#include "storage/subs_ops.h"

#define SNAPSHOTS_KEY_MAX (TSE_SUBSCRIPTION_NAME_MAX + 64)

/* ===================== values =========================================== */

void tse_strings_cleanup(tse_strings *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    s->v = NULL;
    s->n = 0;
}

void tse_blob_cleanup(tse_blob *b)
{
    if (b == NULL)
        return;
    free(b->data);
    b->data = NULL;
    b->len = 0;
}

void tse_blobs_cleanup(tse_blobs *b)
{
    if (b == NULL)
        return;
    for (size_t i = 0; i < b->n; i++)
        tse_blob_cleanup(&b->v[i]);
    free(b->v);
    b->v = NULL;
    b->n = 0;
}

static bool blob_of(const redisReply *r, tse_blob *out)
{
    out->len = r->len;
    if ((out->data = malloc(r->len ? r->len : 1)) == NULL)
        return false;
    memcpy(out->data, r->str, r->len);
    return true;
}

/* Items of tse_reply_items: a string element, skipping any other. */
static tse_status string_item(const redisReply *e, void *slot)
{
    char **s = slot;

    if (!is_str(e))
        return TSE_INTERNAL;
    return (*s = strdup(e->str)) != NULL ? TSE_OK : TSE_NOMEM;
}

static tse_status blob_item(const redisReply *e, void *slot)
{
    if (!is_str(e))
        return TSE_INTERNAL;
    return blob_of(e, slot) ? TSE_OK : TSE_NOMEM;
}

tse_status tse_strings_parse(const redisReply *r, tse_strings *out)
{
    tse_strings_cleanup(out);
    return tse_reply_items(r, sizeof(*out->v), string_item, &out->v, &out->n);
}

tse_status tse_blobs_parse(const redisReply *r, tse_blobs *out)
{
    tse_blobs_cleanup(out);
    return tse_reply_items(r, sizeof(*out->v), blob_item, &out->v, &out->n);
}

static tse_status strings_cmd(tse_conn *c, int argc, const char **argv, tse_strings *out)
{
    redisReply *r = tse_conn_command(c, argc, argv, NULL);

    return tse_reply_finish(r, tse_strings_parse(r, out));
}

/* A bulk string reply into out; TSE_NOT_FOUND for nil. */
static tse_status blob_cmd(tse_conn *c, int argc, const char **argv, tse_blob *out)
{
    redisReply *r = tse_conn_command(c, argc, argv, NULL);
    tse_status st = TSE_OK;

    memset(out, 0, sizeof(*out));
    if (r == NULL)
        return TSE_CONN_GONE;
    if (r->type == REDIS_REPLY_NIL)
        st = TSE_NOT_FOUND;
    else if (r->type != REDIS_REPLY_STRING)
        st = TSE_INTERNAL;
    else if (!blob_of(r, out))
        st = TSE_NOMEM;
    freeReplyObject(r);
    return st;
}

/* ===================== subscriptions ==================================== */

tse_status tse_subs_names(tse_conn *c, tse_strings *out)
{
    return strings_cmd(c, 2, (const char *[]){"HKEYS", TSE_SUBS_KEY}, out);
}

tse_status tse_subs_get(tse_conn *c, const char *name, tse_blob *out)
{
    return blob_cmd(c, 3, (const char *[]){"HGET", TSE_SUBS_KEY, name}, out);
}

tse_status tse_subs_put_new(tse_conn *c, const char *name, const uint8_t *packed, size_t len,
                            bool *inserted)
{
    return tse_conn_flag(c, 4, (const char *[]){"HSETNX", TSE_SUBS_KEY, name, (const char *)packed},
                         (const size_t[]){6, strlen(TSE_SUBS_KEY), strlen(name), len}, inserted);
}

tse_status tse_subs_delete(tse_conn *c, const char *name)
{
    char key[SNAPSHOTS_KEY_MAX];
    long long n;

    tse_key_dlq(name, key, sizeof(key));
    tse_conn_integer(c, 2, (const char *[]){"DEL", key}, NULL, &n);
    tse_key_snapshots(name, key, sizeof(key));
    tse_conn_integer(c, 2, (const char *[]){"DEL", key}, NULL, &n);
    return tse_conn_integer(c, 3, (const char *[]){"HDEL", TSE_SUBS_KEY, name}, NULL, &n);
}

/* ===================== the stream set =================================== */

tse_status tse_streams_list(tse_conn *c, tse_strings *out)
{
    return strings_cmd(c, 2, (const char *[]){"SMEMBERS", TSE_STREAMS_KEY}, out);
}

tse_status tse_streams_count(tse_conn *c, long long *n)
{
    return tse_conn_integer(c, 2, (const char *[]){"SCARD", TSE_STREAMS_KEY}, NULL, n);
}

/* ===================== snapshots ======================================== */

tse_status tse_snapshot_exists(tse_conn *c, const char *subscription, const char *name,
                               bool *exists)
{
    char key[SNAPSHOTS_KEY_MAX];

    tse_key_snapshots(subscription, key, sizeof(key));
    return tse_conn_flag(c, 3, (const char *[]){"HEXISTS", key, name}, NULL, exists);
}

tse_status tse_snapshot_count(tse_conn *c, const char *subscription, long long *n)
{
    char key[SNAPSHOTS_KEY_MAX];

    tse_key_snapshots(subscription, key, sizeof(key));
    return tse_conn_integer(c, 2, (const char *[]){"HLEN", key}, NULL, n);
}

tse_status tse_snapshot_put(tse_conn *c, const char *subscription, const char *name,
                            const uint8_t *packed, size_t len)
{
    char key[SNAPSHOTS_KEY_MAX];
    long long n;

    tse_key_snapshots(subscription, key, sizeof(key));
    return tse_conn_integer(c, 4, (const char *[]){"HSET", key, name, (const char *)packed},
                            (const size_t[]){4, strlen(key), strlen(name), len}, &n);
}

tse_status tse_snapshot_all(tse_conn *c, const char *subscription, tse_blobs *out)
{
    char key[SNAPSHOTS_KEY_MAX];
    redisReply *r;

    tse_key_snapshots(subscription, key, sizeof(key));
    r = tse_conn_command(c, 2, (const char *[]){"HVALS", key}, NULL);
    return tse_reply_finish(r, tse_blobs_parse(r, out));
}

tse_status tse_snapshot_get(tse_conn *c, const char *subscription, const char *name, tse_blob *out)
{
    char key[SNAPSHOTS_KEY_MAX];

    tse_key_snapshots(subscription, key, sizeof(key));
    return blob_cmd(c, 3, (const char *[]){"HGET", key, name}, out);
}

tse_status tse_snapshot_delete(tse_conn *c, const char *subscription, const char *name,
                               bool *deleted)
{
    char key[SNAPSHOTS_KEY_MAX];

    tse_key_snapshots(subscription, key, sizeof(key));
    return tse_conn_flag(c, 3, (const char *[]){"HDEL", key, name}, NULL, deleted);
}

/* ===================== the clock ======================================== */

tse_status tse_redis_time_parse(const redisReply *r, int64_t *sec, int32_t *nanos)
{
    *sec = 0;
    *nanos = 0;
    if (!is_array(r) || r->elements != 2 || !is_str(r->element[0]) || !is_str(r->element[1]))
        return TSE_INTERNAL;
    *sec = strtoll(r->element[0]->str, NULL, 10);
    *nanos = (int32_t)(strtol(r->element[1]->str, NULL, 10) * 1000);
    return TSE_OK;
}

tse_status tse_redis_time(tse_conn *c, int64_t *sec, int32_t *nanos)
{
    redisReply *r = tse_conn_command(c, 1, (const char *[]){"TIME"}, NULL);

    return tse_reply_finish(r, tse_redis_time_parse(r, sec, nanos));
}
