/*
 * ops.c - typed storage operations run on the writer's lanes: the commands
 * of storage/ops.h are queued like any job, in order with the lane's
 * publishes, and their replies are decoded on the lane thread before the
 * caller's callback sees plain values. Callers above the writer never see
 * a Redis reply.
 *
 * GetStats' lengths are an SMEMBERS of the stream set and then one XLEN
 * per registered stream, queued from the SMEMBERS reply on the same lane:
 * every command touches one slot. The XLEN replies come in the order they
 * were queued, so the n-th reply is the n-th key's.
 */
#include "writer/internal.h"

#include <stdlib.h>

#include "common/alloc.h"

typedef struct lengths_op {
    tse_stream_lengths_cb cb;
    void *arg;
    tse_broker *b;
    int lane;
    tse_status status;
    tse_stream_lengths lengths;
    char **keys; /* the registered streams, one XLEN each */
    size_t n_keys;
    size_t queued;   /* XLENs queued */
    size_t answered; /* of them, answered */
} lengths_op;

static void lengths_done(lengths_op *op)
{
    op->cb(op->arg, op->status, op->status == TSE_OK ? &op->lengths : NULL);
    tse_stream_lengths_cleanup(&op->lengths);
    tse_stream_keys_free(op->keys, op->n_keys);
    tse_free(op);
}

static void on_length(void *arg, tse_status status, const struct redisReply *reply,
                      const char *message)
{
    lengths_op *op = arg;

    (void)message;
    if (status != TSE_OK)
        op->status = status;
    else if (tse_reply_error(reply, NULL, NULL))
        op->status = TSE_INTERNAL;
    else
        tse_stream_lengths_add(&op->lengths, op->keys[op->answered], reply);
    if (++op->answered == op->queued)
        lengths_done(op);
}

/* Queues one XLEN per key; a refused one ends the queuing (the answer is
 * then that failure, once those queued are answered). */
static void queue_lengths(lengths_op *op)
{
    for (size_t i = 0; i < op->n_keys; i++) {
        tse_cmd c;
        tse_status st;

        tse_stream_length_command(op->keys[i], &c);
        st = tse_broker_command(op->b, op->lane, c.argc, c.argv, c.lens, on_length, op);
        if (st != TSE_OK) {
            op->status = st;
            break;
        }
        op->queued++;
    }
}

static void on_set(void *arg, tse_status status, const struct redisReply *reply,
                   const char *message)
{
    lengths_op *op = arg;

    (void)message;
    if (status == TSE_OK)
        status = tse_stream_set_parse(reply, &op->keys, &op->n_keys);
    if (status == TSE_OK)
        status = tse_stream_lengths_init(&op->lengths, op->n_keys);
    op->status = status;
    if (status == TSE_OK)
        queue_lengths(op);
    if (op->queued == 0)
        lengths_done(op);
}

tse_status tse_broker_stream_lengths(tse_broker *b, int lane, tse_stream_lengths_cb cb, void *arg)
{
    lengths_op *op;
    tse_status st;
    tse_cmd c;

    if (cb == NULL)
        return TSE_INVALID;
    op = tse_calloc(1, sizeof(*op));
    if (op == NULL)
        return TSE_NOMEM;
    op->cb = cb;
    op->arg = arg;
    op->b = b;
    op->lane = lane;
    tse_stream_set_command(&c);
    st = tse_broker_command(b, lane, c.argc, c.argv, c.lens, on_set, op);
    if (st != TSE_OK)
        tse_free(op);
    return st;
}
