/*
 * test_storage_pipe_io.c - the writer lanes' pipeline (storage/pipe.h)
 * against a real redis-server: a pipeline larger than the first send
 * buffer is answered in order; the send buffer is kept from flush to flush
 * and given back when the owner says the pipe is idle (issue 14: hiredis's
 * buffer, reallocated for every round, left ~2 MB resident in an idle
 * service), but not while commands wait for a flush; an unusually large
 * round's buffer is not kept; a write without blocking leaves what the
 * socket did not take for the next flush.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "storage/pipe.h"
#include "storage/redis_url.h"

typedef struct fixture {
    tse_test_redis *redis;
    tse_pipe *p;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    tse_redis_target t;
    tse_error err;
    char why[256] = "";

    assert_non_null(f);
    *state = f;
    f->redis = tse_test_redis_start(false);
    assert_non_null(f->redis);
    assert_int_equal(tse_redis_url_parse(f->redis->url, &t, &err), TSE_OK);
    f->p = tse_pipe_open(&t, 5000, why, sizeof(why));
    if (f->p == NULL)
        fail_msg("tse_pipe_open: %s", why);
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;

    if (f != NULL) {
        if (f->redis != NULL && f->redis->pid > 0)
            kill(f->redis->pid, SIGCONT); /* never leave a stopped server */
        tse_pipe_close(f->p);
        tse_test_redis_stop(f->redis);
    }
    free(f);
    return 0;
}

/* Appends n INCRs of key (RESP), without flushing. */
static void append_incrs(tse_pipe *p, const char *key, int n)
{
    char cmd[128];
    int len = snprintf(cmd, sizeof(cmd), "*2\r\n$4\r\nINCR\r\n$%zu\r\n%s\r\n", strlen(key), key);

    for (int i = 0; i < n; i++)
        assert_true(tse_pipe_append(p, cmd, (size_t)len));
}

/* Appends one SET of pipe:big to a value of vlen bytes, without flushing. */
static void append_big_set(tse_pipe *p, size_t vlen)
{
    char head[64];
    int hlen = snprintf(head, sizeof(head), "*3\r\n$3\r\nSET\r\n$8\r\npipe:big\r\n$%zu\r\n", vlen);
    char *value = malloc(vlen + 2);

    assert_non_null(value);
    memset(value, 'v', vlen);
    memcpy(value + vlen, "\r\n", 2);
    assert_true(tse_pipe_append(p, head, (size_t)hlen));
    assert_true(tse_pipe_append(p, value, vlen + 2));
    free(value);
}

/* Flushes, then expects the replies first, first + 1, ... (n of them). */
static void flush_and_expect(tse_pipe *p, long long first, int n)
{
    char why[256] = "";

    if (!tse_pipe_flush(p, why, sizeof(why)))
        fail_msg("flush: %s", why);
    for (int i = 0; i < n; i++) {
        struct redisReply *r = NULL;

        if (!tse_pipe_read(p, true, &r, why, sizeof(why)))
            fail_msg("read %d: %s", i, why);
        assert_non_null(r);
        assert_true(tse_reply_is_integer(r, first + i));
        tse_reply_free(r);
    }
}

static void a_pipeline_larger_than_the_first_buffer_answers_in_order(void **state)
{
    fixture *f = *state;

    /* ~30 bytes per INCR: 200 kB, several doublings of the buffer. */
    append_incrs(f->p, "pipe:order", 7000);
    flush_and_expect(f->p, 1, 7000);
    append_incrs(f->p, "pipe:order", 3);
    flush_and_expect(f->p, 7001, 3);
}

static void the_send_buffer_is_kept_between_flushes_and_freed_when_idle(void **state)
{
    fixture *f = *state;
    size_t kept;

    assert_int_equal(tse_pipe_buffer_size(f->p), 0);
    append_incrs(f->p, "pipe:idle", 7000);
    flush_and_expect(f->p, 1, 7000);
    kept = tse_pipe_buffer_size(f->p);
    assert_true(kept >= (size_t)7000 * 30);
    append_incrs(f->p, "pipe:idle", 10);
    flush_and_expect(f->p, 7001, 10);
    assert_int_equal(tse_pipe_buffer_size(f->p), kept);

    tse_pipe_idle(f->p);
    assert_int_equal(tse_pipe_buffer_size(f->p), 0);
    /* Usable again: the next append allocates a buffer. */
    append_incrs(f->p, "pipe:idle", 2);
    flush_and_expect(f->p, 7011, 2);
    assert_true(tse_pipe_buffer_size(f->p) > 0);
    tse_pipe_idle(NULL);
}

static void commands_waiting_for_a_flush_survive_idle(void **state)
{
    fixture *f = *state;

    append_incrs(f->p, "pipe:waiting", 5);
    tse_pipe_idle(f->p);
    assert_true(tse_pipe_buffer_size(f->p) > 0);
    flush_and_expect(f->p, 1, 5);
}

static void an_unusually_large_round_is_not_kept(void **state)
{
    fixture *f = *state;
    char why[256] = "";
    struct redisReply *r = NULL;

    /* One SET of a 5 MB value: above what a lane's round can reach. */
    append_big_set(f->p, (size_t)5 * 1024 * 1024);
    if (!tse_pipe_flush(f->p, why, sizeof(why)))
        fail_msg("flush: %s", why);
    assert_int_equal(tse_pipe_buffer_size(f->p), 0);
    if (!tse_pipe_read(f->p, true, &r, why, sizeof(why)))
        fail_msg("read: %s", why);
    assert_false(tse_reply_error(r, NULL, NULL));
    tse_reply_free(r);
}

/* Redis stopped: a non-blocking write of more than the socket takes
 * leaves the rest unsent, and tse_pipe_flush writes it (once Redis reads)
 * before what is appended after it. */
static void a_write_without_blocking_leaves_the_rest_for_the_flush(void **state)
{
    fixture *f = *state;
    char why[256] = "";
    struct redisReply *r = NULL;
    size_t left;

    append_incrs(f->p, "pipe:some", 1);
    assert_int_equal(tse_pipe_flush_some(f->p), 0); /* a small one goes whole */
    assert_int_equal(tse_pipe_unsent(f->p), 0);
    kill(f->redis->pid, SIGSTOP);
    append_big_set(f->p, (size_t)32 * 1024 * 1024);
    left = tse_pipe_flush_some(f->p);
    assert_true(left > 0);
    assert_int_equal(tse_pipe_unsent(f->p), left);
    append_incrs(f->p, "pipe:some", 1);
    kill(f->redis->pid, SIGCONT);
    if (!tse_pipe_flush(f->p, why, sizeof(why)))
        fail_msg("flush: %s", why);
    assert_int_equal(tse_pipe_unsent(f->p), 0);
    for (long long want = 1; want <= 2; want++) {
        if (!tse_pipe_read(f->p, true, &r, why, sizeof(why)))
            fail_msg("read: %s", why);
        assert_true(tse_reply_is_integer(r, want));
        tse_reply_free(r);
        if (want == 1) { /* the SET's answer comes between the INCRs */
            if (!tse_pipe_read(f->p, true, &r, why, sizeof(why)))
                fail_msg("read: %s", why);
            assert_false(tse_reply_error(r, NULL, NULL));
            tse_reply_free(r);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(a_pipeline_larger_than_the_first_buffer_answers_in_order,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(the_send_buffer_is_kept_between_flushes_and_freed_when_idle,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(commands_waiting_for_a_flush_survive_idle, setup, teardown),
        cmocka_unit_test_setup_teardown(an_unusually_large_round_is_not_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(a_write_without_blocking_leaves_the_rest_for_the_flush,
                                        setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
