/*
 * pbwire.h - the two pieces of protobuf wire writing the tree does by hand
 * (where a message is spliced from bytes it already holds instead of being
 * packed again: a Delivery around a stored envelope, an envelope with the
 * server's fields appended, the SDK's source field): a varint's size and
 * the varint itself. Reading is pbscan.h's (tse_pbscan_next).
 *
 * Pure, header-only (static inline); thread-safe.
 */
#ifndef TSE_CODEC_PBWIRE_H
#define TSE_CODEC_PBWIRE_H

#include <stddef.h>
#include <stdint.h>

/* Bytes of v as a varint, 1..10. */
static inline size_t tse_pbwire_varint_size(uint64_t v)
{
    size_t n = 1;

    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* Writes v as a varint at p (tse_pbwire_varint_size(v) bytes); returns the
 * end. */
static inline uint8_t *tse_pbwire_put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

#endif
