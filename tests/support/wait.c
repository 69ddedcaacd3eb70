/*
 * wait.c - waiting for a condition with a timeout; see wait.h.
 */
#include "wait.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <time.h>

#include "harness.h"

/* The longest pause between two checks: short against the timeouts tests
 * use, long enough that a condition asking Redis or the service costs
 * them little. */
#define MAX_SLEEP_MS 50

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0) {
    }
}

void tse_test_waiter_init(tse_test_waiter *w, int timeout_ms)
{
    w->start_ms = tse_test_now_ms();
    w->deadline_ms = w->start_ms + (timeout_ms > 0 ? timeout_ms : 0);
    w->checks = 0;
    w->next_sleep_ms = 2;
}

bool tse_test_waiter_poll(tse_test_waiter *w)
{
    long long left = w->deadline_ms - tse_test_now_ms();
    int ms = w->next_sleep_ms;

    w->checks++;
    if (left <= 0)
        return false;
    if (ms > left)
        ms = (int)left;
    sleep_ms(ms);
    if (w->next_sleep_ms < MAX_SLEEP_MS)
        w->next_sleep_ms =
            w->next_sleep_ms * 2 < MAX_SLEEP_MS ? w->next_sleep_ms * 2 : MAX_SLEEP_MS;
    return true;
}

/* "gave up after N ms (M checks) waiting for <what>" into buf. */
__attribute__((format(printf, 4, 0))) static void describe(const tse_test_waiter *w, char *buf,
                                                           size_t len, const char *what, va_list ap)
{
    int n = snprintf(buf, len, "gave up after %lld ms (%d checks) waiting for ",
                     tse_test_now_ms() - w->start_ms, w->checks);

    if (n >= 0 && (size_t)n < len)
        vsnprintf(buf + n, len - (size_t)n, what, ap);
}

bool tse_test_wait_until(tse_test_cond cond, void *arg, int timeout_ms, const char *what, ...)
{
    tse_test_waiter w;
    char msg[512];
    va_list ap;

    tse_test_waiter_init(&w, timeout_ms);
    while (!cond(arg)) {
        if (!tse_test_waiter_poll(&w)) {
            va_start(ap, what);
            describe(&w, msg, sizeof(msg), what, ap);
            va_end(ap);
            print_message("%s\n", msg);
            return false;
        }
    }
    return true;
}

void tse_test_waiter_fail(const tse_test_waiter *w, const char *file, int line, const char *expr,
                          const char *what, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, what);
    describe(w, msg, sizeof(msg), what, ap);
    va_end(ap);
    print_error("%s (until %s)\n", msg, expr);
    _fail(file, line);
}
