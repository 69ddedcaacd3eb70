/*
 * pbscan.h - a check of protobuf wire bytes before they are unpacked: how
 * deep the message nests and whether its strings are valid UTF-8, without
 * recursion and without allocating.
 *
 * Why: protobuf-c unpacks recursively, one C stack frame chain per level,
 * and checks neither depth nor UTF-8. A 30 KB request nesting 4,400 levels
 * overflowed a worker's stack; a limit checked after unpacking comes too
 * late. Every request the service receives is scanned here first
 * (src/transport/call.c, tse_decode), so unpacking only ever sees bounded
 * nesting, and every string field of every request is checked at the
 * boundary, naming the field.
 *
 * Depth is counted as JSON counts it (the codec's TSE_PBJSON_MAX_DEPTH, so
 * anything accepted here can also be shown as JSON, and the error reads the
 * same): the root message is level 0; every message below it is one level,
 * except google.protobuf.Value, map entries and Timestamp (a JSON scalar or
 * transparent wrappers); a repeated field or map adds one level
 * (the JSON array or object), except the fields of Struct and ListValue,
 * which are the object or array themselves. Nesting on the wire is also
 * capped at TSE_PBSCAN_MAX_FRAMES messages, whatever the count says.
 *
 * Paths read as JSON paths below the root: "event.data.x[0][0]",
 * "subscription.event_types[3]", "ack_ids[0]". Map keys appear when they
 * precede their values on the wire (every encoder we know writes them
 * first), "*" otherwise.
 *
 * Pure: bytes in, verdict out; thread-safe; no global state. Fuzzable as
 * is (tests/fuzz).
 */
#ifndef TSE_CODEC_PBSCAN_H
#define TSE_CODEC_PBSCAN_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

/* Messages nested on the wire that a scan follows at most. */
#define TSE_PBSCAN_MAX_FRAMES 256

typedef enum tse_pbscan_verdict {
    TSE_PBSCAN_OK = 0,
    TSE_PBSCAN_MALFORMED, /* not protobuf wire format (truncated, bad tag, groups) */
    TSE_PBSCAN_TOO_DEEP,  /* nests deeper than max_depth levels */
    TSE_PBSCAN_BAD_TEXT   /* a string field is not valid UTF-8 or holds a NUL */
} tse_pbscan_verdict;

/*
 * Scans len bytes at data (may be NULL when len is 0) as a message of desc.
 * On any verdict but OK, err (may be NULL) is set: code TSE_INVALID, field
 * the JSON path of the culprit ("" when the root itself is malformed), and a
 * message such as "nests deeper than 64 levels" (field "event.data.x[0]..."),
 * "must be valid UTF-8" (field "subscription.name"), "keys must be valid
 * UTF-8" (field "event.metadata") or "truncated length at byte 17".
 *
 * OK does not mean the bytes unpack: fields with the wrong wire type, for
 * one, are left to protobuf-c to refuse. It means unpacking recurses at
 * most TSE_PBSCAN_MAX_FRAMES levels and the strings it yields are text.
 */
tse_pbscan_verdict tse_pbscan(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
                              size_t len, unsigned max_depth, tse_error *err);

/* What a scan noticed besides its verdict. */
typedef struct tse_pbscan_info {
    /* A singular message field occurs more than once within one message
     * (at any depth; conservatively also a field past the 64th of its
     * message). protobuf-c keeps the last occurrence, where the protobuf
     * spec merges them: other parsers read such bytes differently, so they
     * are never stored as they came (domain/envelope.h). */
    bool message_repeated;
} tse_pbscan_info;

/* tse_pbscan, filling *info (may be NULL) as it goes. */
tse_pbscan_verdict tse_pbscan_with(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
                                   size_t len, unsigned max_depth, tse_pbscan_info *info,
                                   tse_error *err);

/*
 * How many times field field_id occurs at the root of len bytes at data
 * (NULL when len is 0), without unpacking anything: the entries of a
 * repeated field, counted so that a batch over its limit is refused before
 * protobuf-c allocates one struct per entry (a 2-byte empty entry would
 * otherwise cost a whole message's struct). Counts up to the first
 * malformed byte, which the full scan (tse_pbscan) then refuses.
 */
size_t tse_pbscan_count(const uint8_t *data, size_t len, uint32_t field_id);

/*
 * The google.protobuf.Timestamp in field field_id at the root of len bytes
 * at data (NULL when len is 0), read without unpacking: the delivery engine
 * takes an event's publish time from its stored envelope this way, per
 * delivery, without allocating. True with *sec and *nanos set when the
 * field is there and well formed (nanos within 0..999,999,999); false when
 * it is absent or any byte of the message is malformed.
 */
bool tse_pbscan_timestamp(const uint8_t *data, size_t len, uint32_t field_id, int64_t *sec,
                          int32_t *nanos);

/*
 * The value of length-delimited field field_id at the root of len bytes at
 * data (the last occurrence, as unpacking keeps), without unpacking: e.g.
 * an envelope's traceparent for a delivery's log line. True and *value,
 * *value_len (pointing into data) set when found before any malformed
 * byte; false otherwise.
 */
bool tse_pbscan_bytes(const uint8_t *data, size_t len, uint32_t field_id, const uint8_t **value,
                      size_t *value_len);

/* One field at the root of a message, as tse_pbscan_next reads it. */
typedef struct tse_pbscan_field {
    uint32_t id;         /* the field number */
    unsigned wire;       /* its wire type: 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32 */
    uint64_t varint;     /* wire 0: the value */
    const uint8_t *data; /* wire 2: the value's bytes (into the message); 1, 5: the raw bytes */
    size_t len;          /* wire 1, 2, 5: their length */
} tse_pbscan_field;

/*
 * The root field of len bytes at data (NULL when len is 0) that starts at
 * *pos (0 for the first), without unpacking anything: true with *f set and
 * *pos moved past it; false at the end (*pos == len) or at a malformed
 * byte or a group (*pos < len), which tse_pbscan refuses. Nested messages
 * are not entered: their bytes are the value of a length-delimited field.
 */
bool tse_pbscan_next(const uint8_t *data, size_t len, size_t *pos, tse_pbscan_field *f);

#endif
