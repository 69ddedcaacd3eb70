/*
 * clock.h - the monotonic clock in microseconds or milliseconds, for
 * deadlines, timeouts and latencies (never the wall clock: it jumps); the
 * wall clock only for what is wall time: events' timestamps and ages.
 * Header-only and stateless, so every layer and program may use it.
 */
#ifndef TSE_COMMON_CLOCK_H
#define TSE_COMMON_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t tse_clock_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static inline int64_t tse_clock_ms(void)
{
    return tse_clock_us() / 1000;
}

/* The wall clock (CLOCK_REALTIME) in microseconds, as events' timestamps are. */
static inline int64_t tse_wall_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The time ms from now on clock id as a timespec: the absolute deadline of
 * a pthread_cond_timedwait on a condition that uses that clock (one made
 * with default attributes uses CLOCK_REALTIME). */
static inline struct timespec tse_clock_deadline_on(clockid_t id, int64_t ms)
{
    struct timespec ts;

    clock_gettime(id, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* The same on CLOCK_MONOTONIC, for a condition made with that clock. */
static inline struct timespec tse_clock_deadline_ts(int64_t ms)
{
    return tse_clock_deadline_on(CLOCK_MONOTONIC, ms);
}

#endif
