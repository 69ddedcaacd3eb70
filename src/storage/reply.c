/*
 * reply.c - the reply shapes every storage operation reads (conn_internal.h):
 * an integer, a flat [name, value, ...] map, an array read item by item
 * into a vector, and the end of a command whose reply was parsed.
 *
 * Pure: no I/O. Every element's type is checked before it is used, so a
 * reply of an unexpected shape is refused or skipped, never a crash.
 */
#include <stdlib.h>
#include <string.h>

#include "storage/conn_internal.h"

tse_status tse_reply_finish(redisReply *r, tse_status st)
{
    if (r == NULL)
        return TSE_CONN_GONE;
    freeReplyObject(r);
    return st;
}

tse_status tse_reply_integer(const redisReply *r, long long *n)
{
    *n = is_int(r) ? r->integer : 0;
    return is_int(r) ? TSE_OK : TSE_INTERNAL;
}

tse_status tse_conn_integer(tse_conn *c, int argc, const char **argv, const size_t *lens,
                            long long *n)
{
    redisReply *r = tse_conn_command(c, argc, argv, lens);

    return tse_reply_finish(r, tse_reply_integer(r, n));
}

tse_status tse_conn_flag(tse_conn *c, int argc, const char **argv, const size_t *lens, bool *yes)
{
    long long n;
    tse_status st = tse_conn_integer(c, argc, argv, lens, &n);

    *yes = n == 1;
    return st;
}

const redisReply *tse_reply_field(const redisReply *map, const char *name)
{
    for (size_t i = 0; is_array(map) && i + 1 < map->elements; i += 2)
        if (is_str(map->element[i]) && strcmp(map->element[i]->str, name) == 0)
            return map->element[i + 1];
    return NULL;
}

tse_status tse_reply_items(const redisReply *r, size_t size, tse_reply_item_fn item, void *vec,
                           size_t *n)
{
    tse_status st = TSE_OK;
    char *v;

    *n = 0;
    if (!is_array(r))
        return TSE_INTERNAL;
    if ((v = calloc(r->elements ? r->elements : 1, size)) == NULL)
        return TSE_NOMEM;
    /* memcpy: vec is a T ** of the caller's type, not a void **. */
    memcpy(vec, &v, sizeof(v));
    for (size_t i = 0; i < r->elements && st == TSE_OK; i++) {
        st = item(r->element[i], v + *n * size);
        if (st == TSE_OK)
            (*n)++;
        else if (st != TSE_NOMEM)
            st = TSE_OK; /* skipped */
    }
    return st;
}
