/*
 * pbunpack.h - a client's protobuf bytes to a message: the wire scan
 * (pbscan.h) first, then protobuf-c's unpack through our allocator
 * (common/alloc.h), telling bad bytes (TSE_INVALID) from memory running out
 * (TSE_NOMEM), which protobuf-c alone reports alike (NULL).
 *
 * Thread-safe; no global state beyond the allocator setting.
 */
#ifndef TSE_CODEC_PBUNPACK_H
#define TSE_CODEC_PBUNPACK_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "codec/pbscan.h"
#include "common/status.h"

/*
 * Scans len bytes at data (may be NULL when len is 0) as a desc, nesting at
 * most max_depth levels (pbscan.h), and unpacks them into *out, which the
 * caller frees with protobuf_c_message_free_unpacked(*out, NULL).
 *
 * Returns TSE_OK; TSE_INVALID with err naming the field ("request" when the
 * bytes are not the message at all: "not a valid <full name> (<why>)"); or
 * TSE_NOMEM. *out is NULL on every failure; nothing is left allocated.
 */
tse_status tse_pb_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                         unsigned max_depth, ProtobufCMessage **out, tse_error *err);

/* tse_pb_unpack, also filling *info (may be NULL) with what the scan
 * noticed (pbscan.h). */
tse_status tse_pb_unpack_with(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
                              size_t len, unsigned max_depth, ProtobufCMessage **out,
                              tse_pbscan_info *info, tse_error *err);

/*
 * Unpacks len bytes at data as a desc without scanning them: only for bytes
 * a scan already accepted as part of an enclosing message (e.g. one entry
 * of a repeated field, unpacked alone). Errors as tse_pb_unpack's for the
 * unpacking itself ("request": "not a valid <desc>"; TSE_NOMEM).
 */
tse_status tse_pb_unpack_scanned(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
                                 size_t len, ProtobufCMessage **out, tse_error *err);

/*
 * The scan alone, with the error tse_pb_unpack would report: TSE_OK or
 * TSE_INVALID.
 */
tse_status tse_pb_check(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                        unsigned max_depth, tse_error *err);

/* tse_pb_check, also filling *info (may be NULL) as the scan goes. */
tse_status tse_pb_check_with(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
                             size_t len, unsigned max_depth, tse_pbscan_info *info, tse_error *err);

#endif
