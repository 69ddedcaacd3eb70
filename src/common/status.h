/*
 * status.h - the status codes and error detail every fallible function of
 * TracSeq Events returns.
 *
 * A function returns a tse_status; when it fails and the caller passed a
 * tse_error, the error holds the same code, the offending field's path (if
 * one is to blame) and one clear sentence. Both strings are bounded and
 * always NUL-terminated. A status becomes a gRPC code in one place
 * (tse_status_to_grpc, transport/grpc_status.c) and an HTTP status in one
 * place (tse_status_to_http, common/http_status.h): handlers return a
 * tse_error, never a code.
 *
 * Thread-safety: everything here is reentrant; a tse_error belongs to the
 * caller that passed it.
 */
#ifndef TSE_COMMON_STATUS_H
#define TSE_COMMON_STATUS_H

#include <stdarg.h>

typedef enum tse_status {
    TSE_OK = 0,
    TSE_INVALID,             /* bad input; field names the culprit */
    TSE_NOT_FOUND,           /* unknown subscription, type, ... */
    TSE_ALREADY_EXISTS,      /* exists with other settings */
    TSE_RESOURCE_EXHAUSTED,  /* over a size or count limit */
    TSE_UNAVAILABLE,         /* Redis (or a peer) unreachable: retryable */
    TSE_DEADLINE,            /* the caller's deadline passed */
    TSE_CANCELLED,           /* the caller went away */
    TSE_NOMEM,               /* allocation failed */
    TSE_FAILED_PRECONDITION, /* not possible in the current state */
    TSE_UNIMPLEMENTED,       /* no such method or operation */
    TSE_UNAUTHENTICATED,     /* no credentials, or ones that prove no identity */
    TSE_PERMISSION_DENIED,   /* the caller's identity may not do this */
    TSE_INTERNAL             /* a bug; stays last */
} tse_status;

#define TSE_ERROR_FIELD_MAX   128
#define TSE_ERROR_MESSAGE_MAX 256

typedef struct tse_error {
    tse_status code;
    char field[TSE_ERROR_FIELD_MAX];
    char message[TSE_ERROR_MESSAGE_MAX];
} tse_error;

/*
 * A constant error for a fixed sentence, where a handler answers at once:
 * tse_call_fail(c, TSE_ERROR(TSE_NOT_FOUND, "", "unknown service")). Both
 * strings must be literals within their bounds (a longer one does not
 * compile).
 */
#define TSE_ERROR(code, field, message) (&(const tse_error){(code), field, message})

/*
 * How a RESOURCE_EXHAUSTED refusal that can be retried says when, at the end
 * of its message (printf format, a long long of milliseconds): the REST
 * bridge reads it back for Retry-After (tse_retry_after_ms).
 */
#define TSE_RETRY_AFTER_TEXT "retry after %lld ms"

/* The milliseconds of a message ending in TSE_RETRY_AFTER_TEXT, or -1. */
long long tse_retry_after_ms(const char *message);

/* Clears err (code TSE_OK, empty strings). err may be NULL. */
void tse_error_clear(tse_error *err);

/*
 * Sets err and returns code, so a failing path can read
 * `return tse_error_set(err, TSE_INVALID, "event.priority", "...")`.
 * err may be NULL; field may be NULL (no field to blame). Strings longer than
 * their bounds are truncated.
 */
tse_status tse_error_set(tse_error *err, tse_status code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Prefixes err->field with prefix and a dot ("payload" + "barcode"). */
void tse_error_prefix_field(tse_error *err, const char *prefix);

/* A stable upper-case name, e.g. "INVALID_ARGUMENT" for TSE_INVALID. */
const char *tse_status_name(tse_status code);

#endif
