/*
 * status.c - error detail helpers; see status.h.
 */
#include "common/status.h"

#include <stdio.h>
#include <string.h>

void tse_error_clear(tse_error *err)
{
    if (err == NULL)
        return;
    err->code = TSE_OK;
    err->field[0] = '\0';
    err->message[0] = '\0';
}

tse_status tse_error_set(tse_error *err, tse_status code, const char *field, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return code;
    err->code = code;
    snprintf(err->field, sizeof(err->field), "%s", field ? field : "");
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    return code;
}

void tse_error_prefix_field(tse_error *err, const char *prefix)
{
    char buf[2 * TSE_ERROR_FIELD_MAX];

    if (err == NULL || prefix == NULL || prefix[0] == '\0')
        return;
    if (err->field[0] == '\0')
        snprintf(buf, sizeof(buf), "%s", prefix);
    else
        snprintf(buf, sizeof(buf), "%s.%s", prefix, err->field);
    /* Truncate to the bound rather than lose the field altogether. */
    snprintf(err->field, sizeof(err->field), "%.*s", TSE_ERROR_FIELD_MAX - 1, buf);
}

long long tse_retry_after_ms(const char *message)
{
    const char *at = message ? strstr(message, "retry after ") : NULL;
    long long ms;
    char unit[4];

    if (at == NULL || sscanf(at, TSE_RETRY_AFTER_TEXT "%3s", &ms, unit) != 1 || ms < 0)
        return -1;
    return ms;
}

const char *tse_status_name(tse_status code)
{
    switch (code) {
    case TSE_OK: return "OK";
    case TSE_INVALID: return "INVALID_ARGUMENT";
    case TSE_NOT_FOUND: return "NOT_FOUND";
    case TSE_ALREADY_EXISTS: return "ALREADY_EXISTS";
    case TSE_RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case TSE_UNAVAILABLE: return "UNAVAILABLE";
    case TSE_DEADLINE: return "DEADLINE_EXCEEDED";
    case TSE_CANCELLED: return "CANCELLED";
    case TSE_NOMEM: return "RESOURCE_EXHAUSTED";
    case TSE_INTERNAL: return "INTERNAL";
    case TSE_FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case TSE_UNIMPLEMENTED: return "UNIMPLEMENTED";
    case TSE_UNAUTHENTICATED: return "UNAUTHENTICATED";
    case TSE_PERMISSION_DENIED: return "PERMISSION_DENIED";
    }
    return "INTERNAL";
}
