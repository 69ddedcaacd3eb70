/*
 * ops.c - the commands of the typed storage operations of ops.h and the
 * decoding of their replies.
 *
 * Decoding reads only what it checked the shape of: a reply from Redis is
 * trusted to be RESP, not to be what the script meant to return (another
 * process may have written anything under our keys).
 */
#include "storage/ops.h"

#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "storage/keys.h"
#include "storage/redis_connect.h"

/* ===================== stream lengths =================================== */

/* Every registered stream with its length, in one round trip. Reads keys
 * it is not given (the members of the set): one Redis only, see
 * docs/architecture.md ("Redis keys and slots"). */
static const char stream_lengths_script[] =
    "local out = {}\n"
    "for _, k in ipairs(redis.call('SMEMBERS', KEYS[1])) do\n"
    "  out[#out + 1] = k\n"
    "  out[#out + 1] = redis.call('XLEN', k)\n"
    "end\n"
    "return out\n";

void tse_stream_lengths_command(const char *argv[TSE_STREAM_LENGTHS_ARGC])
{
    argv[0] = "EVAL";
    argv[1] = stream_lengths_script;
    argv[2] = "1";
    argv[3] = TSE_STREAMS_KEY;
}

/* Adds a stream's length to its event type's total (priorities summed). */
static void add_length(tse_stream_lengths *out, size_t cap, const char *key, size_t key_len,
                       uint64_t len)
{
    const char *type;
    size_t tlen;
    int prio;

    if (!tse_key_stream_parse(key, key_len, &type, &tlen, &prio) || tlen > TSE_EVENT_TYPE_MAX)
        return;
    for (size_t i = 0; i < out->n; i++) {
        if (strlen(out->types[i].type) == tlen && memcmp(out->types[i].type, type, tlen) == 0) {
            out->types[i].length += len;
            return;
        }
    }
    if (out->n == cap)
        return;
    memcpy(out->types[out->n].type, type, tlen);
    out->types[out->n].type[tlen] = '\0';
    out->types[out->n].length = len;
    out->n++;
}

tse_status tse_stream_lengths_parse(const redisReply *reply, tse_stream_lengths *out)
{
    size_t streams;

    memset(out, 0, sizeof(*out));
    if (reply->type == REDIS_REPLY_ERROR)
        return TSE_INTERNAL;
    streams = reply->type == REDIS_REPLY_ARRAY ? reply->elements / 2 : 0;
    out->types = tse_calloc(streams + 1, sizeof(*out->types));
    if (out->types == NULL)
        return TSE_NOMEM;
    for (size_t i = 0; i < streams; i++) {
        const redisReply *k = reply->element[2 * i], *v = reply->element[2 * i + 1];

        if (k->type == REDIS_REPLY_STRING && v->type == REDIS_REPLY_INTEGER && v->integer >= 0)
            add_length(out, streams, k->str, k->len, (uint64_t)v->integer);
    }
    return TSE_OK;
}

void tse_stream_lengths_cleanup(tse_stream_lengths *out)
{
    if (out == NULL)
        return;
    tse_free(out->types);
    memset(out, 0, sizeof(*out));
}
