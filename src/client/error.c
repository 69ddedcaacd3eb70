/*
 * error.c - the SDK's error values: status names, and the one place gRPC
 * codes and the layers' tse_status map to tse_client_status.
 *
 * Invariant: the strings of a tse_client_error are always NUL-terminated and
 * truncated to their bounds, whatever the server sent.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/internal.h"

#define EXPORT __attribute__((visibility("default")))

EXPORT const char *tse_client_status_name(tse_client_status status)
{
    switch (status) {
    case TSE_CLIENT_OK: return "OK";
    case TSE_CLIENT_INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case TSE_CLIENT_NOT_FOUND: return "NOT_FOUND";
    case TSE_CLIENT_ALREADY_EXISTS: return "ALREADY_EXISTS";
    case TSE_CLIENT_FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case TSE_CLIENT_RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case TSE_CLIENT_UNAVAILABLE: return "UNAVAILABLE";
    case TSE_CLIENT_DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case TSE_CLIENT_CANCELLED: return "CANCELLED";
    case TSE_CLIENT_UNAUTHENTICATED: return "UNAUTHENTICATED";
    case TSE_CLIENT_PERMISSION_DENIED: return "PERMISSION_DENIED";
    case TSE_CLIENT_UNIMPLEMENTED: return "UNIMPLEMENTED";
    case TSE_CLIENT_INTERNAL: return "INTERNAL";
    case TSE_CLIENT_NO_MEMORY: return "NO_MEMORY";
    }
    return "UNKNOWN";
}

EXPORT const char *tse_client_version(void)
{
    return TSE_VERSION;
}

EXPORT void tse_client_free(void *p)
{
    free(p);
}

void tse_client_error_clear(tse_client_error *err)
{
    if (err == NULL)
        return;
    err->status = TSE_CLIENT_OK;
    err->grpc_code = -1;
    err->field[0] = '\0';
    err->message[0] = '\0';
}

tse_client_status tse_client_fail(tse_client_error *err, tse_client_status status, int grpc_code,
                                  const char *field, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return status;
    err->status = status;
    err->grpc_code = grpc_code;
    snprintf(err->field, sizeof(err->field), "%s", field ? field : "");
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    return status;
}

/*
 * Codes the service never sends on purpose (UNKNOWN, DATA_LOSS) are
 * INTERNAL; ABORTED is a conflict worth retrying, so UNAVAILABLE;
 * OUT_OF_RANGE is a bad argument.
 */
tse_client_status tse_client_status_from_grpc(grpc_status_code code)
{
    switch (code) {
    case GRPC_STATUS_OK: return TSE_CLIENT_OK;
    case GRPC_STATUS_CANCELLED: return TSE_CLIENT_CANCELLED;
    case GRPC_STATUS_INVALID_ARGUMENT:
    case GRPC_STATUS_OUT_OF_RANGE: return TSE_CLIENT_INVALID_ARGUMENT;
    case GRPC_STATUS_DEADLINE_EXCEEDED: return TSE_CLIENT_DEADLINE_EXCEEDED;
    case GRPC_STATUS_NOT_FOUND: return TSE_CLIENT_NOT_FOUND;
    case GRPC_STATUS_ALREADY_EXISTS: return TSE_CLIENT_ALREADY_EXISTS;
    case GRPC_STATUS_PERMISSION_DENIED: return TSE_CLIENT_PERMISSION_DENIED;
    case GRPC_STATUS_RESOURCE_EXHAUSTED: return TSE_CLIENT_RESOURCE_EXHAUSTED;
    case GRPC_STATUS_FAILED_PRECONDITION: return TSE_CLIENT_FAILED_PRECONDITION;
    case GRPC_STATUS_ABORTED:
    case GRPC_STATUS_UNAVAILABLE: return TSE_CLIENT_UNAVAILABLE;
    case GRPC_STATUS_UNIMPLEMENTED: return TSE_CLIENT_UNIMPLEMENTED;
    case GRPC_STATUS_UNAUTHENTICATED: return TSE_CLIENT_UNAUTHENTICATED;
    default: return TSE_CLIENT_INTERNAL;
    }
}

tse_client_status tse_client_status_from_tse(tse_status s)
{
    switch (s) {
    case TSE_OK: return TSE_CLIENT_OK;
    case TSE_INVALID: return TSE_CLIENT_INVALID_ARGUMENT;
    case TSE_NOT_FOUND: return TSE_CLIENT_NOT_FOUND;
    case TSE_ALREADY_EXISTS: return TSE_CLIENT_ALREADY_EXISTS;
    case TSE_RESOURCE_EXHAUSTED: return TSE_CLIENT_RESOURCE_EXHAUSTED;
    case TSE_UNAVAILABLE: return TSE_CLIENT_UNAVAILABLE;
    case TSE_DEADLINE: return TSE_CLIENT_DEADLINE_EXCEEDED;
    case TSE_CANCELLED: return TSE_CLIENT_CANCELLED;
    case TSE_NOMEM: return TSE_CLIENT_NO_MEMORY;
    case TSE_INTERNAL: return TSE_CLIENT_INTERNAL;
    }
    return TSE_CLIENT_INTERNAL;
}

tse_client_status tse_client_from_tse_error(const tse_error *e, const char *prefix,
                                            tse_client_error *err)
{
    char field[TSE_CLIENT_ERROR_FIELD_MAX];

    if (prefix != NULL && e->field[0] != '\0')
        snprintf(field, sizeof(field), "%.20s.%.100s", prefix, e->field);
    else
        snprintf(field, sizeof(field), "%s", prefix != NULL ? prefix : e->field);
    return tse_client_fail(err, tse_client_status_from_tse(e->code), -1, field, "%s%s%s",
                           field[0] ? field : "", field[0] ? ": " : "", e->message);
}

/*
 * The server's INVALID_ARGUMENT details start with the field path, as in
 * "event.payload.barcode: barcode is required"; the SDK keeps the whole
 * sentence and also lifts the path into err->field when it looks like one.
 */
static void field_from_details(const char *msg, char *field, size_t cap)
{
    size_t n = strcspn(msg, ": ");

    field[0] = '\0';
    if (n == 0 || n >= cap || msg[n] != ':' || msg[n + 1] != ' ')
        return;
    for (size_t i = 0; i < n; i++) {
        char ch = msg[i];
        if (!(ch == '.' || ch == '_' || ch == '[' || ch == ']' || (ch >= 'a' && ch <= 'z') ||
              (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')))
            return;
    }
    memcpy(field, msg, n);
    field[n] = '\0';
}

tse_client_status tse_client_from_grpc_error(grpc_status_code code, const char *details, size_t len,
                                             tse_client_error *err)
{
    char msg[TSE_CLIENT_ERROR_MESSAGE_MAX];
    char field[TSE_CLIENT_ERROR_FIELD_MAX];
    tse_client_status st = tse_client_status_from_grpc(code);

    snprintf(msg, sizeof(msg), "%.*s", (int)(len < sizeof(msg) ? len : sizeof(msg) - 1),
             details ? details : "");
    if (msg[0] == '\0')
        snprintf(msg, sizeof(msg), "the call failed with %s", tse_client_status_name(st));
    field_from_details(msg, field, sizeof(field));
    return tse_client_fail(err, st, (int)code, field, "%s", msg);
}
