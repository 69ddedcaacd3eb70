/*
 * log.h - structured logs: one JSON object per line on stderr.
 *
 * Every line has "ts" (RFC 3339 UTC, microseconds), "level" and "msg"; extra
 * keys follow. Request lines (tse_log_request) carry method, status,
 * latency_us and correlation_id so one grep follows a request across
 * services. Lines are written with one write(2) so concurrent threads never
 * interleave within a line.
 *
 * The level and format are write-once settings made at start
 * (tse_log_setup) before any thread starts; logging is thread-safe.
 */
#ifndef TSE_OBS_LOG_H
#define TSE_OBS_LOG_H

#include <stdbool.h>
#include <stdint.h>

typedef enum tse_log_level {
    TSE_LOG_DEBUG = 0,
    TSE_LOG_INFO,
    TSE_LOG_WARN,
    TSE_LOG_ERROR
} tse_log_level;

/* Sets the minimum level and the format (json=false: human-readable text). */
void tse_log_setup(tse_log_level level, bool json);

/* True when lines of this level are written (skip costly formatting). */
bool tse_log_enabled(tse_log_level level);

/* Parses "debug", "info", "warn", "error"; false when unknown. */
bool tse_log_level_parse(const char *s, tse_log_level *out);

/*
 * Writes a line. kv is an optional NULL-terminated list of key, value string
 * pairs added to the line (values are JSON-escaped), e.g.
 * tse_log(TSE_LOG_WARN, "redis unreachable", (const char *[]){"error", msg, NULL}).
 */
void tse_log(tse_log_level level, const char *msg, const char *const *kv);

/* printf-style convenience: a message with no extra keys. */
void tse_logf(tse_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * The line of one finished request: method, status name, latency in
 * microseconds, correlation id (may be NULL) and optional kv pairs. Level is
 * info for OK, warn for client errors, error for INTERNAL/UNAVAILABLE.
 */
void tse_log_request(const char *method, const char *status, int64_t latency_us,
                     const char *correlation_id, const char *const *kv);

#endif
