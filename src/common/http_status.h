/*
 * http_status.h - the one place a tse_status becomes an HTTP answer: its
 * status code and the machine-readable code of the REST error body
 * ("VALIDATION_FAILED", see rest-api.md "Errors").
 *
 * The REST bridge answers through it every failure that has a status: its
 * own (out of memory, no such endpoint) and the event service's, whose gRPC
 * code it reads back as the tse_status the service sent it for. Answers of
 * HTTP itself that no status describes (a body that is not JSON, a method
 * not allowed, a media type not accepted, a request too large or too slow)
 * are the bridge's alone.
 *
 * A constant table: reentrant, nothing to create or free.
 */
#ifndef TSE_COMMON_HTTP_STATUS_H
#define TSE_COMMON_HTTP_STATUS_H

#include "common/status.h"

/*
 * The HTTP status of st (200 for TSE_OK), and in *machine_code (may be NULL)
 * its machine code, a static string. A status outside the enum is 500
 * "INTERNAL".
 */
unsigned tse_status_to_http(tse_status st, const char **machine_code);

#endif
