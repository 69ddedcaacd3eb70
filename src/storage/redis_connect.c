/*
 * redis_connect.c - the one way a broker thread (a writer lane, the delivery
 * engine) reaches Redis: a blocking connect bounded by the timeout, then the
 * handshake the target asks for (AUTH, SELECT), and failures described in
 * words a log reader understands. Blocking: each caller is a thread of its
 * own, never a completion-queue thread.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "storage/redis_connect.h"

void tse_redis_say(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}

bool tse_redis_write_all(redisContext *c, const char *buf, size_t len)
{
    size_t off = 0;

    while (off < len) {
        ssize_t w = write(c->fd, buf + off, len - off);

        if (w > 0) {
            off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        c->err = REDIS_ERR_IO;
        snprintf(c->errstr, sizeof(c->errstr), "%s",
                 w < 0 ? strerror(errno) : "Server closed the connection");
        return false;
    }
    return true;
}

void tse_redis_describe_failure(const redisContext *c, const tse_redis_target *t, int timeout_ms,
                                const char *doing, char *buf, size_t len)
{
    if (c != NULL && c->err == REDIS_ERR_IO &&
        (strstr(c->errstr, "temporarily unavailable") || strstr(c->errstr, "timed out")))
        tse_redis_say(buf, len, "redis %s:%d: no answer to %s within %d ms", t->host, t->port,
                      doing, timeout_ms);
    else
        tse_redis_say(buf, len, "redis %s:%d: %s failed: %s", t->host, t->port, doing,
                      c != NULL && c->err ? c->errstr : "connection lost");
}

bool tse_redis_handshake(redisContext *c, const tse_redis_target *t, int timeout_ms, int argc,
                         const char **argv, redisReply **out, char *why, size_t len)
{
    redisReply *r = redisCommandArgv(c, argc, argv, NULL);

    if (r == NULL) {
        tse_redis_describe_failure(c, t, timeout_ms, argv[0], why, len);
        return false;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        tse_redis_say(why, len, "redis %s:%d: %s: %s", t->host, t->port, argv[0], r->str);
        freeReplyObject(r);
        return false;
    }
    if (out != NULL)
        *out = r;
    else
        freeReplyObject(r);
    return true;
}

/* AUTH and SELECT, as the target asks. */
static bool authenticate(redisContext *c, const tse_redis_target *t, int timeout_ms, char *why,
                         size_t len)
{
    const char *argv[3] = {"AUTH"};
    int argc = 1;
    char db[16];

    if (t->password[0] != '\0') {
        if (t->username[0] != '\0')
            argv[argc++] = t->username;
        argv[argc++] = t->password;
        if (!tse_redis_handshake(c, t, timeout_ms, argc, argv, NULL, why, len))
            return false;
    }
    if (t->db != 0) {
        snprintf(db, sizeof(db), "%d", t->db);
        argv[0] = "SELECT";
        argv[1] = db;
        if (!tse_redis_handshake(c, t, timeout_ms, 2, argv, NULL, why, len))
            return false;
    }
    return true;
}

redisContext *tse_redis_connect(const tse_redis_target *t, int timeout_ms, char *why, size_t len)
{
    struct timeval tv = {timeout_ms / 1000, (suseconds_t)(timeout_ms % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout(t->host, t->port, tv);

    if (c == NULL || c->err) {
        tse_redis_describe_failure(c, t, timeout_ms, "connect", why, len);
        goto fail;
    }
    if (redisSetTimeout(c, tv) != REDIS_OK) {
        tse_redis_describe_failure(c, t, timeout_ms, "setting the timeout", why, len);
        goto fail;
    }
    redisEnableKeepAlive(c);
    if (authenticate(c, t, timeout_ms, why, len))
        return c;
fail:
    redisFree(c);
    return NULL;
}
