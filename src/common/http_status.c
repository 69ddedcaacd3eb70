/*
 * http_status.c - the status -> HTTP table; see http_status.h.
 *
 * Retryable conditions (the service or Redis unreachable, a deadline, a
 * cancelled call) are all 503 SERVICE_UNAVAILABLE so that a REST client
 * needs one rule to retry; an allocation failure of the bridge itself is a
 * 500, while the service's own (sent as RESOURCE_EXHAUSTED) is a 429.
 */
#include "common/http_status.h"

#include <stddef.h>

static const struct {
    tse_status status;
    unsigned http;
    const char *code;
} table[] = {
    {TSE_OK, 200, "OK"},
    {TSE_INVALID, 422, "VALIDATION_FAILED"},
    {TSE_NOT_FOUND, 404, "NOT_FOUND"},
    {TSE_ALREADY_EXISTS, 409, "ALREADY_EXISTS"},
    {TSE_FAILED_PRECONDITION, 409, "FAILED_PRECONDITION"},
    {TSE_RESOURCE_EXHAUSTED, 429, "RESOURCE_EXHAUSTED"},
    {TSE_UNAVAILABLE, 503, "SERVICE_UNAVAILABLE"},
    {TSE_DEADLINE, 503, "SERVICE_UNAVAILABLE"},
    {TSE_CANCELLED, 503, "SERVICE_UNAVAILABLE"},
    {TSE_UNIMPLEMENTED, 501, "NOT_IMPLEMENTED"},
    {TSE_UNAUTHENTICATED, 401, "UNAUTHENTICATED"},
    {TSE_PERMISSION_DENIED, 403, "PERMISSION_DENIED"},
    {TSE_NOMEM, 500, "INTERNAL"},
    {TSE_INTERNAL, 500, "INTERNAL"},
};

unsigned tse_status_to_http(tse_status st, const char **machine_code)
{
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        if (table[i].status == st) {
            if (machine_code != NULL)
                *machine_code = table[i].code;
            return table[i].http;
        }
    }
    if (machine_code != NULL)
        *machine_code = "INTERNAL";
    return 500;
}
