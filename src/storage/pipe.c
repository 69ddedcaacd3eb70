/*
 * pipe.c - a streaming pipeline to one Redis (pipe.h) over a blocking
 * hiredis context: appends go to the pipe's own send buffer, a flush writes
 * all of it to hiredis's socket, and replies are taken from hiredis's
 * reader, blocking for the first when asked. The context is never shared:
 * it belongs to the pipe, and the pipe to one thread.
 *
 * Why not hiredis's output buffer: hiredis frees it after every complete
 * write and grows it again by reallocation for the next pipeline, up to
 * ~2 MB for a full lane round. Each such block above glibc's mmap
 * threshold, once freed, raised that threshold (glibc's dynamic
 * threshold), and from then on the rounds' buffers came from a malloc
 * arena whose top malloc_trim never returns: ~2 MB stayed resident in an
 * idle service (issue 14, docs/benchmarks.md). The pipe's buffer is kept
 * from flush to flush instead (no reallocation per round) and freed when
 * the owner says the pipe is idle (tse_pipe_idle).
 */
#include "storage/pipe.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/alloc.h"
#include "storage/redis_connect.h"

/* The send buffer's first size, and the largest kept after a flush: a
 * lane's round is at most ~1 MB (TSE_LANE_MAX_BATCH_BYTES and one job), so
 * only an unusual one is above it. */
#define OUT_FIRST ((size_t)16 * 1024)
#define OUT_KEEP  ((size_t)4 * 1024 * 1024)

struct tse_pipe {
    redisContext *ctx;
    tse_redis_target target;
    int timeout_ms;
    /* send buffer: out_len bytes of whole commands, of which the first
     * out_off were written (by tse_pipe_flush_some) */
    char *out;
    size_t out_off, out_len, out_cap;
};

tse_pipe *tse_pipe_open(const tse_redis_target *t, int timeout_ms, char *why, size_t len)
{
    tse_pipe *p = calloc(1, sizeof(*p));

    if (p == NULL) {
        tse_redis_say(why, len, "redis %s:%d: out of memory", t->host, t->port);
        return NULL;
    }
    p->target = *t;
    p->timeout_ms = timeout_ms;
    p->ctx = tse_redis_connect(t, timeout_ms, why, len);
    if (p->ctx == NULL) {
        free(p);
        return NULL;
    }
    return p;
}

void tse_pipe_close(tse_pipe *p)
{
    if (p == NULL)
        return;
    redisFree(p->ctx);
    free(p->out);
    free(p);
}

static void describe(const tse_pipe *p, const char *doing, char *why, size_t len)
{
    tse_redis_describe_failure(p->ctx, &p->target, p->timeout_ms, doing, why, len);
}

bool tse_pipe_load_script(tse_pipe *p, const char *script, char sha[41], char *why, size_t len)
{
    const char *argv[3] = {"SCRIPT", "LOAD", script};
    redisReply *r = NULL;

    if (!tse_redis_handshake(p->ctx, &p->target, p->timeout_ms, 3, argv, &r, why, len))
        return false;
    if (!tse_reply_sha(r, sha)) {
        tse_redis_say(why, len, "redis: unexpected reply to SCRIPT LOAD");
        freeReplyObject(r);
        return false;
    }
    freeReplyObject(r);
    return true;
}

bool tse_pipe_ping(tse_pipe *p, char *why, size_t len)
{
    redisReply *r = redisCommand(p->ctx, "PING");

    if (r == NULL) {
        describe(p, "PING", why, len);
        return false;
    }
    freeReplyObject(r);
    return true;
}

bool tse_pipe_append(tse_pipe *p, const char *cmd, size_t len)
{
    if (!TSE_GROW(realloc, p->out, p->out_cap, p->out_len + len, OUT_FIRST))
        return false;
    memcpy(p->out + p->out_len, cmd, len);
    p->out_len += len;
    return true;
}

/* Everything appended went out: the buffer is empty again. */
static void written(tse_pipe *p)
{
    p->out_off = p->out_len = 0;
    if (p->out_cap > OUT_KEEP) /* an unusual round: not kept */
        tse_pipe_idle(p);
}

bool tse_pipe_flush(tse_pipe *p, char *why, size_t len)
{
    if (!tse_redis_write_all(p->ctx, p->out + p->out_off, p->out_len - p->out_off)) {
        describe(p, "write", why, len);
        return false;
    }
    written(p);
    return true;
}

size_t tse_pipe_flush_some(tse_pipe *p)
{
    while (p->out_off < p->out_len) {
        /* MSG_NOSIGNAL: the caller's thread may not have SIGPIPE blocked. */
        ssize_t w = send(p->ctx->fd, p->out + p->out_off, p->out_len - p->out_off,
                         MSG_DONTWAIT | MSG_NOSIGNAL);

        if (w > 0)
            p->out_off += (size_t)w;
        else if (w < 0 && errno == EINTR)
            continue;
        else
            return p->out_len - p->out_off; /* full, or failed: tse_pipe_flush's to say */
    }
    written(p);
    return 0;
}

size_t tse_pipe_unsent(const tse_pipe *p)
{
    return p == NULL ? 0 : p->out_len - p->out_off;
}

int tse_pipe_fd(const tse_pipe *p)
{
    return p->ctx->fd;
}

void tse_pipe_idle(tse_pipe *p)
{
    if (p == NULL || p->out_len > 0)
        return;
    free(p->out);
    p->out = NULL;
    p->out_cap = 0;
}

size_t tse_pipe_buffer_size(const tse_pipe *p)
{
    return p == NULL ? 0 : p->out_cap;
}

bool tse_pipe_read(tse_pipe *p, bool wait, struct redisReply **reply, char *why, size_t len)
{
    void *r = NULL;
    int rc = wait ? redisGetReply(p->ctx, &r) : redisGetReplyFromReader(p->ctx, &r);

    *reply = r;
    if (rc != REDIS_OK) {
        describe(p, "read", why, len);
        return false;
    }
    return true;
}

/* ---- replies ------------------------------------------------------------------- */

void tse_reply_free(struct redisReply *r)
{
    if (r != NULL)
        freeReplyObject(r);
}

bool tse_reply_error(const struct redisReply *r, const char **text, size_t *len)
{
    if (r == NULL || r->type != REDIS_REPLY_ERROR)
        return false;
    if (text != NULL)
        *text = r->str;
    if (len != NULL)
        *len = r->len;
    return true;
}

bool tse_reply_error_is(const struct redisReply *r, const char *prefix)
{
    size_t n = strlen(prefix);

    return tse_reply_error(r, NULL, NULL) && r->len >= n && memcmp(r->str, prefix, n) == 0;
}

bool tse_reply_is_integer(const struct redisReply *r, long long n)
{
    return r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer == n;
}

bool tse_reply_integer_at_least(const struct redisReply *r, long long n)
{
    return r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer >= n;
}

int tse_reply_role_replicas(const struct redisReply *r)
{
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
        r->element[0]->type != REDIS_REPLY_STRING || strcmp(r->element[0]->str, "master") != 0 ||
        r->element[2]->type != REDIS_REPLY_ARRAY)
        return -1;
    return (int)r->element[2]->elements;
}

bool tse_reply_sha(const struct redisReply *r, char sha[41])
{
    if (r == NULL || r->type != REDIS_REPLY_STRING || r->len != 40)
        return false;
    memcpy(sha, r->str, 40);
    sha[40] = '\0';
    return true;
}
