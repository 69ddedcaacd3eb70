/*
 * ops.c - the commands of the typed storage operations of ops.h and the
 * decoding of their replies.
 *
 * Decoding reads only what it checked the shape of: a reply from Redis is
 * trusted to be RESP, not to be what the script meant to return (another
 * process may have written anything under our keys).
 */
#include "storage/ops.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "storage/keys.h"
#include "storage/redis_connect.h"

static void add_str(tse_cmd *c, const char *s);

/* ===================== stream lengths =================================== */

void tse_stream_set_command(tse_cmd *out)
{
    memset(out, 0, sizeof(*out));
    add_str(out, "SMEMBERS");
    add_str(out, TSE_STREAMS_KEY);
}

void tse_stream_length_command(const char *stream_key, tse_cmd *out)
{
    memset(out, 0, sizeof(*out));
    add_str(out, "XLEN");
    add_str(out, stream_key);
}

void tse_stream_keys_free(char **keys, size_t n)
{
    for (size_t i = 0; keys != NULL && i < n; i++)
        tse_free(keys[i]);
    tse_free(keys);
}

tse_status tse_stream_set_parse(const redisReply *reply, char ***keys, size_t *n)
{
    const char *type;
    size_t tlen;
    int prio;

    *keys = NULL;
    *n = 0;
    if (reply->type != REDIS_REPLY_ARRAY)
        return TSE_INTERNAL;
    if ((*keys = tse_calloc(reply->elements + 1, sizeof(**keys))) == NULL)
        return TSE_NOMEM;
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *k = reply->element[i];

        if (k->type != REDIS_REPLY_STRING || strlen(k->str) != k->len ||
            !tse_key_stream_parse(k->str, k->len, &type, &tlen, &prio) || tlen > TSE_EVENT_TYPE_MAX)
            continue;
        if (((*keys)[*n] = tse_strdup(k->str)) == NULL) {
            tse_stream_keys_free(*keys, *n);
            *keys = NULL;
            *n = 0;
            return TSE_NOMEM;
        }
        (*n)++;
    }
    return TSE_OK;
}

tse_status tse_stream_lengths_init(tse_stream_lengths *out, size_t n)
{
    memset(out, 0, sizeof(*out));
    out->types = tse_calloc(n + 1, sizeof(*out->types));
    out->cap = n;
    return out->types != NULL ? TSE_OK : TSE_NOMEM;
}

void tse_stream_lengths_add(tse_stream_lengths *out, const char *key, const redisReply *reply)
{
    const char *type;
    size_t tlen;
    int prio;

    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER || reply->integer < 0 ||
        !tse_key_stream_parse(key, strlen(key), &type, &tlen, &prio) || tlen > TSE_EVENT_TYPE_MAX)
        return;
    for (size_t i = 0; i < out->n; i++) {
        if (strlen(out->types[i].type) == tlen && memcmp(out->types[i].type, type, tlen) == 0) {
            out->types[i].length += (uint64_t)reply->integer;
            return;
        }
    }
    if (out->n == out->cap)
        return;
    memcpy(out->types[out->n].type, type, tlen);
    out->types[out->n].type[tlen] = '\0';
    out->types[out->n].length = (uint64_t)reply->integer;
    out->n++;
}

void tse_stream_lengths_cleanup(tse_stream_lengths *out)
{
    if (out == NULL)
        return;
    tse_free(out->types);
    memset(out, 0, sizeof(*out));
}

/* ===================== appending events ================================= */

/*
 * KEYS[1] stream, KEYS[2] dedup key (one slot: both carry the event type's
 * hash tag); ARGV[1] window in ms, ARGV[2] publish time "<sec>.<nanos>",
 * ARGV[3..5] the event id, type and envelope (the XADD's constant words
 * are in the script: every argument costs Redis an object and a Lua string). Returns {0, new id} or
 * {1, "<original id> <sec>.<nanos> <original stream key>"} (before this
 * format: the original id alone). GET and XADD+SET run as one script, so
 * two publishers of the same id cannot both append. The stream is
 * registered in the stream set by the writer before the script runs (the
 * set is another slot: see docs/architecture.md, "Redis keys and slots").
 */
const char tse_dedup_script[] =
    "local prev = redis.call('GET', KEYS[2])\n"
    "if prev then return {1, prev} end\n"
    "local id = redis.call('XADD', KEYS[1], '*', 'id', ARGV[3], 'type', ARGV[4], 'event', "
    "ARGV[5])\n"
    "redis.call('SET', KEYS[2], id .. ' ' .. ARGV[2] .. ' ' .. KEYS[1], 'PX', ARGV[1])\n"
    "return {0, id}\n";

/*
 * The batch's: a stream and a dedup key per event, all of one event type
 * (one slot). Redis pays for every argument of a call twice (an object
 * when it parses the call, a Lua string when the script starts) and for
 * every table the script builds, so the XADD's constant words live in the
 * script, the event type comes once, and the reply is one flat array of
 * (code, value) pairs rather than a table per event: 13 % fewer Redis
 * instructions per event than nine arguments per event and nested replies
 * (docs/benchmarks.md). The entries it appends are the same.
 */
const char tse_dedup_batch_script[] =
    "local window, etype, out = ARGV[1], ARGV[2], {}\n"
    "for i = 1, #KEYS / 2 do\n"
    "  local stream, dkey, a = KEYS[2 * i - 1], KEYS[2 * i], 3 + (i - 1) * 4\n"
    "  local dedup = ARGV[a] == '1'\n"
    "  local prev = dedup and redis.call('GET', dkey)\n"
    "  if prev then\n"
    "    out[2 * i - 1], out[2 * i] = 1, prev\n"
    "  else\n"
    "    local id = redis.pcall('XADD', stream, '*', 'id', ARGV[a + 2], 'type', etype, 'event',\n"
    "                           ARGV[a + 3])\n"
    "    if type(id) == 'table' then\n"
    "      out[2 * i - 1], out[2 * i] = 2, id.err\n"
    "    else\n"
    "      if dedup then\n"
    "        redis.call('SET', dkey, id .. ' ' .. ARGV[a + 1] .. ' ' .. stream, 'PX', window)\n"
    "      end\n"
    "      out[2 * i - 1], out[2 * i] = 0, id\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return out\n";

tse_status tse_redis_error_status(const char *msg, size_t len)
{
    /* Errors that go away by themselves: retrying later may succeed. */
    static const char *const transient[] = {"OOM",         "LOADING",    "BUSY",
                                            "MASTERDOWN",  "TRYAGAIN",   "READONLY",
                                            "CLUSTERDOWN", "NOREPLICAS", "NOSCRIPT"};

    for (size_t i = 0; i < sizeof(transient) / sizeof(transient[0]); i++) {
        size_t n = strlen(transient[i]);

        if (len >= n && memcmp(msg, transient[i], n) == 0 && (len == n || msg[n] == ' '))
            return TSE_UNAVAILABLE;
    }
    return TSE_INTERNAL;
}

bool tse_dedup_reply_stored(const redisReply *reply)
{
    return reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 2 &&
           reply->element[0]->type == REDIS_REPLY_INTEGER && reply->element[0]->integer == 0;
}

/*
 * A duplicate's record "<id> <sec>.<nanos> <stream key>" into out (id copied
 * into out->id, the key pointing into rec). An older record holds the id
 * alone: the key is then the one asked for and the time the entry id's.
 */
static bool parse_dedup_record(const char *rec, tse_append_reply *out)
{
    const char *sp = strchr(rec, ' ');
    long long sec = 0, ms = 0;
    long nanos = 0;
    int used = 0;

    if (sp == NULL) {
        snprintf(out->id, sizeof(out->id), "%s", rec);
        if (sscanf(rec, "%lld", &ms) == 1) {
            out->published_sec = ms / 1000;
            out->published_nanos = (int32_t)(ms % 1000) * 1000000;
        }
        return true;
    }
    if ((size_t)(sp - rec) >= sizeof(out->id) ||
        sscanf(sp + 1, "%lld.%ld %n", &sec, &nanos, &used) != 2 || used == 0 ||
        sp[1 + used] == '\0')
        return false;
    memcpy(out->id, rec, (size_t)(sp - rec));
    out->id[sp - rec] = '\0';
    out->published_sec = sec;
    out->published_nanos = (int32_t)nanos;
    out->stream_key = sp + 1 + used;
    return true;
}

/* One (code, value) answer of a dedup script into out: code 0 and the new
 * entry id, or code 1 and a duplicate's record; false for another shape. */
static bool dedup_pair(const redisReply *code, const redisReply *value, tse_append_reply *out)
{
    if (code->type != REDIS_REPLY_INTEGER || (code->integer != 0 && code->integer != 1) ||
        value->type != REDIS_REPLY_STRING)
        return false;
    out->duplicate = code->integer == 1;
    if (out->duplicate) {
        out->stream_id = out->id;
        return parse_dedup_record(value->str, out);
    }
    out->stream_id = value->str;
    return true;
}

/* The dedup script's reply into out; false when it has another shape. */
static bool dedup_reply(const redisReply *reply, tse_append_reply *out)
{
    return reply->type == REDIS_REPLY_ARRAY && reply->elements >= 2 &&
           dedup_pair(reply->element[0], reply->element[1], out);
}

tse_status tse_append_decode(const redisReply *reply, bool dedup, tse_append_reply *out)
{
    memset(out, 0, sizeof(*out));
    if (reply->type == REDIS_REPLY_ERROR) {
        tse_redis_say(out->message, sizeof(out->message), "redis: %.*s", (int)reply->len,
                      reply->str);
        out->status = tse_redis_error_status(reply->str, reply->len);
        return out->status;
    }
    if (dedup ? dedup_reply(reply, out) : reply->type == REDIS_REPLY_STRING) {
        if (!dedup)
            out->stream_id = reply->str;
        out->status = TSE_OK;
        return TSE_OK;
    }
    memset(out, 0, sizeof(*out));
    snprintf(out->message, sizeof(out->message), "redis: unexpected reply to XADD");
    out->status = TSE_INTERNAL;
    return TSE_INTERNAL;
}

/* ---- building commands ---- */

static void add(tse_cmd *c, const char *s, size_t len)
{
    c->argv[c->argc] = s;
    c->lens[c->argc] = len;
    c->argc++;
}

static void add_str(tse_cmd *c, const char *s)
{
    add(c, s, strlen(s));
}

static void add_i64(tse_cmd *c, int64_t v)
{
    char *buf = c->num[c->nums++];

    add(c, buf, (size_t)snprintf(buf, sizeof(c->num[0]), "%" PRId64, v));
}

void tse_append_command(const tse_append *a, tse_cmd *out)
{
    memset(out, 0, sizeof(*out));
    if (a->dedup_key != NULL) {
        char *when = out->num[out->nums++];

        add_str(out, "EVALSHA");
        add_str(out, a->script_sha);
        add_str(out, "2");
        add_str(out, a->stream_key);
        add_str(out, a->dedup_key);
        add_i64(out, a->dedup_window_ms);
        add(out, when,
            (size_t)snprintf(when, sizeof(out->num[0]), "%" PRId64 ".%09" PRId32, a->timestamp_sec,
                             a->timestamp_nanos));
        add_str(out, a->event_id);
        add_str(out, a->event_type);
        add(out, (const char *)a->envelope, a->envelope_len);
        return;
    }
    add_str(out, "XADD");
    add_str(out, a->stream_key);
    add_str(out, "*");
    add_str(out, "id");
    add_str(out, a->event_id);
    add_str(out, "type");
    add_str(out, a->event_type);
    add_str(out, "event");
    add(out, (const char *)a->envelope, a->envelope_len);
}

void tse_trim_command(const char *stream_key, int64_t maxlen, int64_t min_id_ms, tse_cmd *out)
{
    memset(out, 0, sizeof(*out));
    add_str(out, "XTRIM");
    add_str(out, stream_key);
    if (maxlen > 0) {
        add_str(out, "MAXLEN");
        add_str(out, "~");
        add_i64(out, maxlen);
    } else {
        add_str(out, "MINID");
        add_str(out, "~");
        add_i64(out, min_id_ms > 0 ? min_id_ms : 0);
    }
}

void tse_register_stream_command(const char *stream_key, tse_cmd *out)
{
    memset(out, 0, sizeof(*out));
    add_str(out, "SADD");
    add_str(out, TSE_STREAMS_KEY);
    add_str(out, stream_key);
}

bool tse_cmd_from_argv(int argc, const char *const *argv, const size_t *lens, tse_cmd *out)
{
    memset(out, 0, sizeof(*out));
    if (argc <= 0 || argc > TSE_CMD_MAX_ARGS)
        return false;
    for (int i = 0; i < argc; i++)
        add(out, argv[i], lens ? lens[i] : strlen(argv[i]));
    return true;
}

tse_status tse_append_batch_decode(const redisReply *reply, size_t n, size_t i,
                                   tse_append_reply *out)
{
    const redisReply *code, *value;

    if (reply->type == REDIS_REPLY_ERROR)
        return tse_append_decode(reply, true, out);
    memset(out, 0, sizeof(*out));
    if (reply->type != REDIS_REPLY_ARRAY || n > SIZE_MAX / 2 || reply->elements != 2 * n || i >= n)
        goto unexpected;
    code = reply->element[2 * i];
    value = reply->element[2 * i + 1];
    if (code->type == REDIS_REPLY_INTEGER && code->integer == 2 &&
        value->type == REDIS_REPLY_STRING) {
        tse_redis_say(out->message, sizeof(out->message), "redis: %.*s", (int)value->len,
                      value->str);
        return out->status = tse_redis_error_status(value->str, value->len);
    }
    if (dedup_pair(code, value, out))
        return out->status = TSE_OK;
    memset(out, 0, sizeof(*out));
unexpected:
    snprintf(out->message, sizeof(out->message), "redis: unexpected reply to the batch script");
    return out->status = TSE_INTERNAL;
}
