/*
 * error.c - the SDK's error values: status names, and the one place gRPC
 * codes and the layers' tse_status map to tse_client_status.
 *
 * A refused call's field comes from the google.rpc.Status the service sends
 * in the `grpc-status-details-bin` trailing metadata (its first
 * google.rpc.BadRequest field violation); the message is the status text as
 * sent. Only when a server sends no such details is the field read from the
 * text ("field: message").
 *
 * Invariant: the strings of a tse_client_error are always NUL-terminated and
 * truncated to their bounds, whatever the server sent.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/internal.h"
#include "google/rpc/error_details.pb-c.h"
#include "google/rpc/status.pb-c.h"

#define STATUS_DETAILS_KEY "grpc-status-details-bin"
#define BAD_REQUEST_TYPE   "google.rpc.BadRequest"

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

EXPORT const char *tse_client_error_problem(const tse_client_error *err)
{
    size_t n;

    if (err == NULL)
        return "";
    n = strlen(err->field);
    if (n > 0 && strncmp(err->message, err->field, n) == 0 &&
        strncmp(err->message + n, ": ", 2) == 0)
        return err->message + n + 2;
    return err->message;
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

/* The other way, for a status the SDK itself ends a call or an event with
 * (a cancel, a stream that ended before answering): the SDK's one table of
 * the codes it chooses. */
grpc_status_code tse_client_grpc_from_status(tse_client_status status)
{
    static const struct {
        tse_client_status st;
        grpc_status_code code;
    } map[] = {
        {TSE_CLIENT_OK, GRPC_STATUS_OK},
        {TSE_CLIENT_CANCELLED, GRPC_STATUS_CANCELLED},
        {TSE_CLIENT_INVALID_ARGUMENT, GRPC_STATUS_INVALID_ARGUMENT},
        {TSE_CLIENT_DEADLINE_EXCEEDED, GRPC_STATUS_DEADLINE_EXCEEDED},
        {TSE_CLIENT_NOT_FOUND, GRPC_STATUS_NOT_FOUND},
        {TSE_CLIENT_ALREADY_EXISTS, GRPC_STATUS_ALREADY_EXISTS},
        {TSE_CLIENT_PERMISSION_DENIED, GRPC_STATUS_PERMISSION_DENIED},
        {TSE_CLIENT_RESOURCE_EXHAUSTED, GRPC_STATUS_RESOURCE_EXHAUSTED},
        {TSE_CLIENT_FAILED_PRECONDITION, GRPC_STATUS_FAILED_PRECONDITION},
        {TSE_CLIENT_UNAVAILABLE, GRPC_STATUS_UNAVAILABLE},
        {TSE_CLIENT_UNIMPLEMENTED, GRPC_STATUS_UNIMPLEMENTED},
        {TSE_CLIENT_UNAUTHENTICATED, GRPC_STATUS_UNAUTHENTICATED},
    };

    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (map[i].st == status)
            return map[i].code;
    return GRPC_STATUS_INTERNAL;
}

static tse_client_status status_from_tse(tse_status s)
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
    case TSE_FAILED_PRECONDITION: return TSE_CLIENT_FAILED_PRECONDITION;
    case TSE_UNIMPLEMENTED: return TSE_CLIENT_UNIMPLEMENTED;
    case TSE_UNAUTHENTICATED: return TSE_CLIENT_UNAUTHENTICATED;
    case TSE_PERMISSION_DENIED: return TSE_CLIENT_PERMISSION_DENIED;
    }
    return TSE_CLIENT_INTERNAL;
}

bool tse_client_status_fatal(tse_client_status st)
{
    switch (st) {
    case TSE_CLIENT_NOT_FOUND:
    case TSE_CLIENT_INVALID_ARGUMENT:
    case TSE_CLIENT_ALREADY_EXISTS:
    case TSE_CLIENT_FAILED_PRECONDITION:
    case TSE_CLIENT_PERMISSION_DENIED:
    case TSE_CLIENT_UNAUTHENTICATED:
    case TSE_CLIENT_UNIMPLEMENTED: return true;
    default: return false;
    }
}

tse_client_status tse_client_from_tse_error(const tse_error *e, const char *prefix,
                                            tse_client_error *err)
{
    char field[TSE_CLIENT_ERROR_FIELD_MAX];

    if (prefix != NULL && e->field[0] != '\0')
        snprintf(field, sizeof(field), "%.20s.%.100s", prefix, e->field);
    else
        snprintf(field, sizeof(field), "%s", prefix != NULL ? prefix : e->field);
    return tse_client_fail(err, status_from_tse(e->code), -1, field, "%s%s%s",
                           field[0] ? field : "", field[0] ? ": " : "", e->message);
}

/* The first field violation of a packed google.rpc.BadRequest into field. */
static bool field_from_bad_request(const ProtobufCBinaryData *bytes, char *field, size_t cap)
{
    Google__Rpc__BadRequest *bad = google__rpc__bad_request__unpack(NULL, bytes->len, bytes->data);
    bool found =
        bad != NULL && bad->n_field_violations > 0 && bad->field_violations[0]->field[0] != '\0';

    if (found)
        snprintf(field, cap, "%s", bad->field_violations[0]->field);
    if (bad != NULL)
        google__rpc__bad_request__free_unpacked(bad, NULL);
    return found;
}

/* Whether an Any's type URL names type: "<anything>/<type>". */
static bool any_is(const Google__Protobuf__Any *any, const char *type)
{
    const char *slash = strrchr(any->type_url, '/');

    return slash != NULL && strcmp(slash + 1, type) == 0;
}

/*
 * The field of the first BadRequest field violation in a trailing
 * `grpc-status-details-bin` (a packed google.rpc.Status); false when there
 * is none to read.
 */
static bool field_from_status_details(const grpc_metadata_array *trailing, char *field, size_t cap)
{
    Google__Rpc__Status *status = NULL;
    bool found = false;

    for (size_t i = 0; trailing != NULL && i < trailing->count && status == NULL; i++) {
        const grpc_metadata *md = &trailing->metadata[i];
        if (grpc_slice_str_cmp(md->key, STATUS_DETAILS_KEY) == 0)
            status = google__rpc__status__unpack(NULL, GRPC_SLICE_LENGTH(md->value),
                                                 GRPC_SLICE_START_PTR(md->value));
    }
    for (size_t i = 0; status != NULL && i < status->n_details && !found; i++)
        if (any_is(status->details[i], BAD_REQUEST_TYPE))
            found = field_from_bad_request(&status->details[i]->value, field, cap);
    if (status != NULL)
        google__rpc__status__free_unpacked(status, NULL);
    return found;
}

/*
 * The fallback, for a server that sends no details: INVALID_ARGUMENT text
 * starts with the field path, as in "event.payload.barcode: barcode is
 * required", and the path is lifted into err->field when it looks like one.
 */
static void field_from_text(const char *msg, char *field, size_t cap)
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

tse_client_status tse_client_from_grpc_status(grpc_status_code code, const char *details,
                                              size_t len, const grpc_metadata_array *trailing,
                                              tse_client_error *err)
{
    char msg[TSE_CLIENT_ERROR_MESSAGE_MAX];
    char field[TSE_CLIENT_ERROR_FIELD_MAX];
    tse_client_status st = tse_client_status_from_grpc(code);

    snprintf(msg, sizeof(msg), "%.*s", (int)(len < sizeof(msg) ? len : sizeof(msg) - 1),
             details ? details : "");
    if (msg[0] == '\0')
        snprintf(msg, sizeof(msg), "the call failed with %s", tse_client_status_name(st));
    if (!field_from_status_details(trailing, field, sizeof(field)))
        field_from_text(msg, field, sizeof(field));
    return tse_client_fail(err, st, (int)code, field, "%s", msg);
}
