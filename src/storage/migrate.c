/*
 * migrate.c - finds the stream keys of the layout before 1.0 in the stream
 * set and moves them to their current names (migrate.h).
 *
 * The move script checks before it renames, all in one step: the old key
 * must exist and the new one must not (RENAME would overwrite it), and the
 * stream set is updated in the same step, so no reader ever sees a stream
 * under both names or under none.
 */
#include "storage/migrate.h"

#include <stdio.h>
#include <string.h>

#include "storage/keys.h"
#include "storage/redis_connect.h"

/* KEYS[1] old name, KEYS[2] new name, KEYS[3] the stream set. Returns 1
 * moved, 0 kept (the new name exists), 2 gone (only unregistered). */
static const char move_script[] = "if redis.call('EXISTS', KEYS[1]) == 0 then\n"
                                  "  redis.call('SREM', KEYS[3], KEYS[1])\n"
                                  "  return 2\n"
                                  "end\n"
                                  "if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end\n"
                                  "redis.call('RENAME', KEYS[1], KEYS[2])\n"
                                  "redis.call('SADD', KEYS[3], KEYS[2])\n"
                                  "redis.call('SREM', KEYS[3], KEYS[1])\n"
                                  "return 1\n";

/* Appends name to the comma-separated list in buf, cut short when full. */
static void add_name(char *buf, size_t len, const char *name)
{
    size_t at = strlen(buf);

    if (at + 1 < len)
        snprintf(buf + at, len - at, "%s%s", at > 0 ? "," : "", name);
}

/* Moves one key; false with why set when Redis failed. */
static bool move_one(redisContext *c, const char *old, tse_legacy_report *out, char *why,
                     size_t len)
{
    char key[512];
    const char *argv[] = {"EVAL", move_script, "3", old, key, TSE_STREAMS_KEY};
    redisReply *r;
    bool ok;

    tse_key_stream_current(old, key, sizeof(key));
    r = redisCommandArgv(c, 6, argv, NULL);
    if (r == NULL) {
        tse_redis_say(why, len, "redis: moving %s: %s", old, c->errstr);
        return false;
    }
    ok = r->type == REDIS_REPLY_INTEGER;
    if (!ok)
        tse_redis_say(why, len, "redis: moving %s: %s", old,
                      r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
    else if (r->integer == 1)
        out->moved++;
    else if (r->integer == 2)
        out->gone++;
    else {
        out->kept++;
        add_name(out->kept_names, sizeof(out->kept_names), old);
    }
    freeReplyObject(r);
    return ok;
}

/* The look and the moves on connection c. */
static tse_status migrate(redisContext *c, bool move, tse_legacy_report *out, char *why, size_t len)
{
    const char *argv[] = {"SMEMBERS", TSE_STREAMS_KEY};
    redisReply *set = redisCommandArgv(c, 2, argv, NULL);
    tse_status st = TSE_OK;

    if (set == NULL || set->type != REDIS_REPLY_ARRAY) {
        tse_redis_say(why, len, "redis: SMEMBERS %s: %s", TSE_STREAMS_KEY,
                      set == NULL                      ? c->errstr
                      : set->type == REDIS_REPLY_ERROR ? set->str
                                                       : "unexpected reply");
        freeReplyObject(set);
        return TSE_UNAVAILABLE;
    }
    for (size_t i = 0; i < set->elements; i++) {
        const redisReply *k = set->element[i];
        const char *type;
        size_t tlen;
        int prio;

        if (k->type != REDIS_REPLY_STRING ||
            !tse_key_stream_legacy_parse(k->str, k->len, &type, &tlen, &prio) ||
            strlen(k->str) != k->len)
            continue;
        out->found++;
        add_name(out->found_names, sizeof(out->found_names), k->str);
        if (move && st == TSE_OK && !move_one(c, k->str, out, why, len))
            st = TSE_UNAVAILABLE;
    }
    freeReplyObject(set);
    return st;
}

tse_status tse_storage_migrate_legacy(const tse_redis_target *t, int timeout_ms, bool move,
                                      tse_legacy_report *out, char *why, size_t len)
{
    redisContext *c;
    tse_status st;

    memset(out, 0, sizeof(*out));
    if (t->cluster) {
        snprintf(why, len, "redis: a cluster never held the layout before 1.0");
        return TSE_INVALID;
    }
    if ((c = tse_redis_connect(t, timeout_ms, why, len)) == NULL)
        return TSE_UNAVAILABLE;
    st = migrate(c, move, out, why, len);
    redisFree(c);
    return st;
}
