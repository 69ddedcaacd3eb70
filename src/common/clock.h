/*
 * clock.h - the monotonic clock in microseconds or milliseconds, for
 * deadlines, timeouts and latencies (never the wall clock: it jumps).
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

#endif
