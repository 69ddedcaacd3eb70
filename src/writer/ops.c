/*
 * ops.c - typed storage operations run on the writer's lanes: the command
 * of storage/ops.h is queued like any job, in order with the lane's
 * publishes, and its reply is decoded on the lane thread before the
 * caller's callback sees plain values. Callers above the writer never see
 * a Redis reply.
 */
#include "writer/internal.h"

#include <stdlib.h>

#include "common/alloc.h"

typedef struct lengths_op {
    tse_stream_lengths_cb cb;
    void *arg;
} lengths_op;

static void on_lengths(void *arg, tse_status status, const redisReply *reply, const char *message)
{
    lengths_op *op = arg;
    tse_stream_lengths lengths = {0};

    (void)message;
    if (status == TSE_OK)
        status = tse_stream_lengths_parse(reply, &lengths);
    op->cb(op->arg, status, status == TSE_OK ? &lengths : NULL);
    tse_stream_lengths_cleanup(&lengths);
    tse_free(op);
}

tse_status tse_broker_stream_lengths(tse_broker *b, int lane, tse_stream_lengths_cb cb, void *arg)
{
    const char *argv[TSE_STREAM_LENGTHS_ARGC];
    lengths_op *op;
    tse_status st;

    if (cb == NULL)
        return TSE_INVALID;
    op = tse_malloc(sizeof(*op));
    if (op == NULL)
        return TSE_NOMEM;
    op->cb = cb;
    op->arg = arg;
    tse_stream_lengths_command(argv);
    st = tse_broker_command(b, lane, TSE_STREAM_LENGTHS_ARGC, argv, NULL, on_lengths, op);
    if (st != TSE_OK)
        tse_free(op);
    return st;
}
