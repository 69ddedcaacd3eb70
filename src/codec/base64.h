/*
 * base64.h - base64 (RFC 4648): written in the standard alphabet with
 * padding, read in either the standard or the URL-safe alphabet, padded or
 * not. The one implementation in the tree: bytes fields of the proto3 JSON
 * mapping (pbjson_*.c) and CloudEvents' data_base64 (domain/cloudevent.c)
 * both use it.
 *
 * No I/O and no state: all functions are reentrant.
 */
#ifndef TSE_CODEC_BASE64_H
#define TSE_CODEC_BASE64_H

#include <stddef.h>
#include <stdint.h>

/* Standard base64 with padding, NUL-terminated, or NULL when out of memory.
 * Caller frees with tse_free. */
char *tse_base64_encode(const uint8_t *data, size_t len);

/* Decodes base64 in either alphabet, padded or not, into a new buffer (NULL
 * when empty; caller frees with tse_free). Returns 0, -1 for malformed
 * text, -2 when out of memory. */
int tse_base64_decode(const char *s, size_t len, uint8_t **out, size_t *out_len);

#endif
