/*
 * wait.h - integration tests wait for a condition, never for a fixed time.
 *
 * A fixed sleep is either too short on a loaded host (the test flakes) or
 * too long everywhere else (the suite crawls). Instead a test names what it
 * waits for: a condition polled until it holds or a timeout passes. The
 * timeout is only a bound on a failure, so it may be generous; a test that
 * passes never waits longer than the condition takes. On timeout the helper
 * says what it waited for and for how long.
 *
 * A sleep that is itself the subject of a test ("nothing arrives within X",
 * "not before the deadline", pacing a slow client) is not a wait for a
 * condition; such a test keeps its sleep and says why.
 *
 * Single-threaded per waiter; the helpers keep no global state.
 */
#ifndef TSE_TEST_WAIT_H
#define TSE_TEST_WAIT_H

#include <stdbool.h>

/* A condition: true once it holds. It may be called many times. */
typedef bool (*tse_test_cond)(void *arg);

/*
 * Polls cond(arg) until it returns true or timeout_ms passed; cond is
 * called at least once, and once more at or after the deadline. True when
 * it held. On timeout prints "gave up after N ms (M checks) waiting for
 * <what>" (what: a printf format and its arguments) and returns false.
 */
bool tse_test_wait_until(tse_test_cond cond, void *arg, int timeout_ms, const char *what, ...)
    __attribute__((format(printf, 4, 5)));

/* One wait in progress; the TSE_TEST_AWAIT macro keeps it on the stack. */
typedef struct tse_test_waiter {
    long long start_ms;
    long long deadline_ms;
    int checks;
    int next_sleep_ms;
} tse_test_waiter;

void tse_test_waiter_init(tse_test_waiter *w, int timeout_ms);
/* After a check that failed: false when the deadline has passed, else
 * sleeps a short while (a few ms at first, growing to 50 ms, never past
 * the deadline) and returns true to check again. */
bool tse_test_waiter_poll(tse_test_waiter *w);
/* Fails the calling cmocka test at file:line, naming what was awaited. */
void tse_test_waiter_fail(const tse_test_waiter *w, const char *file, int line, const char *expr,
                          const char *what, ...) __attribute__((format(printf, 5, 6)));

/*
 * Waits until expr (evaluated in the caller, any number of times) is true,
 * failing the test at this line after timeout_ms otherwise; the failure
 * names the expression and the description (a printf format and its
 * arguments). For example:
 *
 *   TSE_TEST_AWAIT(redis_pending(w, key, "grp") == 0, 5000, "%s acked", key);
 */
#define TSE_TEST_AWAIT(expr, timeout_ms, ...)                                                      \
    do {                                                                                           \
        tse_test_waiter tse_waiter_;                                                               \
        tse_test_waiter_init(&tse_waiter_, (timeout_ms));                                          \
        while (!(expr)) {                                                                          \
            if (!tse_test_waiter_poll(&tse_waiter_)) {                                             \
                tse_test_waiter_fail(&tse_waiter_, __FILE__, __LINE__, #expr, __VA_ARGS__);        \
                break;                                                                             \
            }                                                                                      \
        }                                                                                          \
    } while (0)

#endif
