/*
 * grpc_status.c - the one place where a tse_status becomes a gRPC status
 * code, and where a refusal's field travels as gRPC's richer error model.
 * Handlers never pick codes themselves: every call ends with a tse_error
 * (tse_call_finish_locked) and its code is chosen here.
 *
 * A refusal that names a field (TSE_INVALID with err->field set) also sends
 * a google.rpc.Status in the `grpc-status-details-bin` trailing metadata:
 * the same code and message text as the status, and one
 * google.rpc.BadRequest field violation (field, and the message without the
 * field). Clients in any language read the field from it; the text stays
 * the human sentence "field: message" it always was.
 */
#include <stdio.h>
#include <stdlib.h>

#include "google/protobuf/any.pb-c.h"
#include "google/rpc/error_details.pb-c.h"
#include "google/rpc/status.pb-c.h"
#include "transport/internal.h"

#define BAD_REQUEST_TYPE_URL "type.googleapis.com/google.rpc.BadRequest"

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
    case TSE_FAILED_PRECONDITION: return GRPC_STATUS_FAILED_PRECONDITION;
    case TSE_UNIMPLEMENTED: return GRPC_STATUS_UNIMPLEMENTED;
    case TSE_UNAUTHENTICATED: return GRPC_STATUS_UNAUTHENTICATED;
    case TSE_PERMISSION_DENIED: return GRPC_STATUS_PERMISSION_DENIED;
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

bool tse_error_has_details(const tse_error *err)
{
    return err != NULL && err->code == TSE_INVALID && err->field[0] != '\0';
}

grpc_slice tse_status_details_bin(const tse_error *err, const char *text)
{
    Google__Rpc__BadRequest__FieldViolation violation =
        GOOGLE__RPC__BAD_REQUEST__FIELD_VIOLATION__INIT;
    Google__Rpc__BadRequest__FieldViolation *violations[1] = {&violation};
    Google__Rpc__BadRequest bad = GOOGLE__RPC__BAD_REQUEST__INIT;
    Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
    Google__Protobuf__Any *details[1] = {&any};
    Google__Rpc__Status status = GOOGLE__RPC__STATUS__INIT;
    grpc_slice bad_bytes, out;

    /* protobuf-c wants char * where it only reads. */
    violation.field = (char *)err->field;
    violation.description = (char *)err->message;
    bad.n_field_violations = 1;
    bad.field_violations = violations;
    bad_bytes = tse_pack_slice(&bad.base);
    any.type_url = BAD_REQUEST_TYPE_URL;
    any.value.data = GRPC_SLICE_START_PTR(bad_bytes);
    any.value.len = GRPC_SLICE_LENGTH(bad_bytes);
    status.code = (int32_t)tse_status_to_grpc(err->code);
    status.message = (char *)text;
    status.n_details = 1;
    status.details = details;
    out = tse_pack_slice(&status.base);
    grpc_slice_unref(bad_bytes);
    return out;
}
