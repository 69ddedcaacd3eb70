/*
 * grpc_status.c - the one place where a tse_status becomes a gRPC status
 * code. Handlers never pick codes themselves.
 */
#include <stdio.h>

#include "transport/internal.h"

grpc_status_code tse_status_to_grpc(tse_status st)
{
    switch (st) {
    case TSE_OK: return GRPC_STATUS_OK;
    case TSE_INVALID: return GRPC_STATUS_INVALID_ARGUMENT;
    case TSE_NOT_FOUND: return GRPC_STATUS_NOT_FOUND;
    case TSE_ALREADY_EXISTS: return GRPC_STATUS_ALREADY_EXISTS;
    case TSE_RESOURCE_EXHAUSTED: return GRPC_STATUS_RESOURCE_EXHAUSTED;
    case TSE_UNAVAILABLE: return GRPC_STATUS_UNAVAILABLE;
    case TSE_DEADLINE: return GRPC_STATUS_DEADLINE_EXCEEDED;
    case TSE_CANCELLED: return GRPC_STATUS_CANCELLED;
    case TSE_NOMEM: return GRPC_STATUS_RESOURCE_EXHAUSTED;
    case TSE_INTERNAL: return GRPC_STATUS_INTERNAL;
    }
    return GRPC_STATUS_INTERNAL;
}

const char *tse_grpc_code_name(grpc_status_code code)
{
    static const char *const names[] = {"OK",
                                        "CANCELLED",
                                        "UNKNOWN",
                                        "INVALID_ARGUMENT",
                                        "DEADLINE_EXCEEDED",
                                        "NOT_FOUND",
                                        "ALREADY_EXISTS",
                                        "PERMISSION_DENIED",
                                        "RESOURCE_EXHAUSTED",
                                        "FAILED_PRECONDITION",
                                        "ABORTED",
                                        "OUT_OF_RANGE",
                                        "UNIMPLEMENTED",
                                        "INTERNAL",
                                        "UNAVAILABLE",
                                        "DATA_LOSS",
                                        "UNAUTHENTICATED"};

    if ((int)code >= 0 && (size_t)code < sizeof(names) / sizeof(names[0]))
        return names[code];
    return "UNKNOWN";
}

void tse_error_describe(const tse_error *err, char *buf, size_t len)
{
    if (err->field[0] != '\0' && err->message[0] != '\0')
        snprintf(buf, len, "%s: %s", err->field, err->message);
    else
        snprintf(buf, len, "%s", err->message[0] ? err->message : tse_status_name(err->code));
}
