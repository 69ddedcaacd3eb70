/*
 * hex.h - one hexadecimal digit's value, for the parsers that read hex
 * (percent-escapes in REDIS_URL and in CloudEvents headers, SHA-256 digests
 * in the tokens file, UUIDs, traceparent).
 * Header-only and stateless, so every layer and program may use it.
 */
#ifndef TSE_COMMON_HEX_H
#define TSE_COMMON_HEX_H

/* The value 0-15 of C as a hex digit of either case, or -1. */
static inline int tse_hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

#endif
