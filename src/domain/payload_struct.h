/*
 * payload_struct.h - the fast path from a google.protobuf.Struct payload to
 * a catalog message, without the JSON tree the general path builds.
 *
 * It handles the common shape only: every key is a field's proto name (not
 * its JSON name), every field is a plain string or repeated string field
 * (not in a oneof), and every value is a string or a list of strings. For
 * those inputs the general path (tse_pbjson_from_struct, then
 * tse_pbjson_to_message) always succeeds and builds the same message; the
 * fast path declines everything else, and then the caller runs the general
 * path, so the two agree by construction on what is declined. A decline is
 * not an error. Running out of memory is reported (TSE_NOMEM), as the
 * general path would report it, not declined.
 *
 * Thread-safety: none needed (no state). Internal to the domain module.
 */
#ifndef TSE_DOMAIN_PAYLOAD_STRUCT_H
#define TSE_DOMAIN_PAYLOAD_STRUCT_H

#include <protobuf-c/protobuf-c.h>

#include "common/status.h"

#include "google/protobuf/struct.pb-c.h"

/*
 * Converts s into a new message of desc in *out (caller frees with
 * protobuf_c_message_free_unpacked(*out, NULL)); *out is NULL when the fast
 * path declines s. Returns TSE_OK (converted or declined) or TSE_NOMEM
 * (*out NULL). Borrows s.
 */
tse_status tse_payload_struct_fast(const Google__Protobuf__Struct *s,
                                   const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out);

#endif
