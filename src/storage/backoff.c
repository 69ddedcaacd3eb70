/*
 * backoff.c - the reconnect schedule and probe rule of backoff.h.
 */
#include "storage/backoff.h"

int64_t tse_backoff_next(int64_t prev_ms)
{
    if (prev_ms <= 0)
        return TSE_BROKER_RETRY_MIN_MS;
    return prev_ms * 2 > TSE_BROKER_RETRY_MAX_MS ? TSE_BROKER_RETRY_MAX_MS : prev_ms * 2;
}

bool tse_backoff_may_probe(int64_t now_ms, int64_t last_attempt_ms)
{
    return now_ms - last_attempt_ms >= TSE_BROKER_PROBE_MS;
}
