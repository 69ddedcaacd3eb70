/*
 * backoff.h - when a Redis connection (a writer lane's, the delivery
 * engine's) tries again after a failure (backoff.c): the reconnect schedule
 * and the probe rule, shared so every connection of the service keeps the
 * same pace.
 *
 * Pure: no I/O, no state; reentrant. Times are milliseconds of the
 * monotonic clock (common/clock.h).
 */
#ifndef TSE_STORAGE_BACKOFF_H
#define TSE_STORAGE_BACKOFF_H

#include <stdbool.h>
#include <stdint.h>

/* Reconnect schedule of every Redis connection (the lanes and the delivery
 * engine): the first retry after TSE_BROKER_RETRY_MIN_MS, the wait doubling
 * after each failure up to TSE_BROKER_RETRY_MAX_MS. */
#define TSE_BROKER_RETRY_MIN_MS 100
#define TSE_BROKER_RETRY_MAX_MS 2000
/* A request arriving while Redis is away does not wait for the backoff: it
 * rides on a connect attempt made at once (a probe), at most one per
 * connection this often, so a flood of requests during an outage never
 * becomes a connect storm. */
#define TSE_BROKER_PROBE_MS     100

/* The wait after a failed connect that followed a wait of prev_ms (0: the
 * first failure): TSE_BROKER_RETRY_MIN_MS, then doubling, at most
 * TSE_BROKER_RETRY_MAX_MS. */
int64_t tse_backoff_next(int64_t prev_ms);

/* Whether a request may make a connect attempt now (a probe), the last
 * attempt (or loss of the connection) having been at last_attempt_ms. */
bool tse_backoff_may_probe(int64_t now_ms, int64_t last_attempt_ms);

#endif
