/*
 * resp_reply.h - a hiredis reply decoded from RESP bytes written by hand,
 * exactly as a connection hands it over: for the unit tests of what reads
 * Redis replies (src/storage). Header-only (static inline); include after
 * <cmocka.h> (it asserts).
 */
#ifndef TSE_TEST_RESP_REPLY_H
#define TSE_TEST_RESP_REPLY_H

#include <hiredis/hiredis.h>
#include <stddef.h>

/* The reply hiredis reads from the len bytes at resp (one whole reply).
 * Caller frees with freeReplyObject. */
static inline redisReply *read_reply_n(const char *resp, size_t len)
{
    redisReader *r = redisReaderCreate();
    void *out = NULL;

    assert_non_null(r);
    assert_int_equal(redisReaderFeed(r, resp, len), REDIS_OK);
    assert_int_equal(redisReaderGetReply(r, &out), REDIS_OK);
    assert_non_null(out);
    redisReaderFree(r);
    return out;
}

/* A string literal of RESP, NUL bytes included. */
#define read_reply(lit) read_reply_n(lit, sizeof(lit) - 1)

#endif
