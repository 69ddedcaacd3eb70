/*
 * format.c - the textual formats an event's fields must have: event types,
 * UUIDs and UTF-8. See validate.h.
 *
 * Hand-written matchers rather than regcomp(): the formats are tiny, these
 * run on every published event, and they must not depend on the locale.
 */
#include "domain/validate.h"

#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <uuid/uuid.h>

/* ---- event types ---------------------------------------------------------- */

static bool is_lower(char c)
{
    return c >= 'a' && c <= 'z';
}

static bool is_segment_char(char c)
{
    return is_lower(c) || (c >= '0' && c <= '9') || c == '_';
}

/* ^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$: two or more dot-separated segments. */
bool tse_event_type_valid(const char *type)
{
    const char *p = type;
    size_t segments = 0;

    if (type == NULL || strnlen(type, TSE_EVENT_TYPE_MAX + 1) > TSE_EVENT_TYPE_MAX)
        return false;
    for (;;) {
        if (!is_lower(*p))
            return false;
        for (p++; is_segment_char(*p); p++)
            ;
        segments++;
        if (*p == '\0')
            break;
        if (*p != '.')
            return false;
        p++;
    }
    return segments >= 2;
}

/* ---- UUIDs ---------------------------------------------------------------- */

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

bool tse_uuid_valid(const char *s)
{
    if (s == NULL || strnlen(s, 37) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !is_hex(s[i]))
            return false;
    }
    return true;
}

/*
 * Random bytes for UUIDs, taken from the kernel 4 KiB at a time per thread:
 * libuuid's uuid_generate_random makes a system call and several more
 * lookups per id, which showed as 17% of the publish path's CPU.
 */
#define UUID_POOL 4096
static _Thread_local unsigned char uuid_pool[UUID_POOL];
static _Thread_local size_t uuid_pool_used = UUID_POOL;

static bool random_bytes(unsigned char out[16])
{
    if (uuid_pool_used + 16 > UUID_POOL) {
        size_t got = 0;
        while (got < UUID_POOL) {
            ssize_t n = getrandom(uuid_pool + got, UUID_POOL - got, 0);
            if (n <= 0)
                return false;
            got += (size_t)n;
        }
        uuid_pool_used = 0;
    }
    memcpy(out, uuid_pool + uuid_pool_used, 16);
    uuid_pool_used += 16;
    return true;
}

void tse_uuid_generate(char *buf)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char u[16];
    size_t j = 0;

    if (!random_bytes(u)) {
        uuid_t fallback;
        uuid_generate_random(fallback);
        memcpy(u, fallback, 16);
    }
    u[6] = (unsigned char)((u[6] & 0x0F) | 0x40); /* version 4 */
    u[8] = (unsigned char)((u[8] & 0x3F) | 0x80); /* RFC 4122 variant */
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            buf[j++] = '-';
        buf[j++] = hex[u[i] >> 4];
        buf[j++] = hex[u[i] & 0x0F];
    }
    buf[j] = '\0';
}

/* ---- UTF-8 ---------------------------------------------------------------- */

static bool is_cont(unsigned char c)
{
    return (c & 0xC0) == 0x80;
}

/*
 * The length of the well-formed sequence at p (1..4), or 0. The second byte's
 * range depends on the lead byte: that is what excludes overlong forms
 * (E0 80..9F, F0 80..8F), surrogates (ED A0..BF) and code points above
 * U+10FFFF (F4 90..BF). The string's NUL stops every check, as it is no
 * continuation byte.
 */
static size_t sequence_length(const unsigned char *p)
{
    unsigned char c = p[0], lo = 0x80, hi = 0xBF;
    size_t n;

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        n = 3;
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4;
    else
        return 0;
    if (c == 0xE0)
        lo = 0xA0;
    else if (c == 0xED)
        hi = 0x9F;
    else if (c == 0xF0)
        lo = 0x90;
    else if (c == 0xF4)
        hi = 0x8F;
    if (p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (!is_cont(p[i]))
            return 0;
    return n;
}

bool tse_utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    if (s == NULL)
        return true;
    while (*p != '\0') {
        size_t n = sequence_length(p);
        if (n == 0)
            return false;
        p += n;
    }
    return true;
}

size_t tse_utf8_length(const char *s)
{
    size_t n = 0;

    if (s == NULL)
        return 0;
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++)
        if (!is_cont(*p))
            n++;
    return n;
}

void tse_utf8_trim(char *s)
{
    size_t len, lead, want;
    unsigned char c;

    if (s == NULL)
        return;
    /* Find the lead byte of the last sequence; a cut left it unfinished. */
    len = strlen(s);
    lead = len;
    while (lead > 0 && len - lead < 4 && is_cont((unsigned char)s[lead - 1]))
        lead--;
    if (lead == 0)
        return;
    c = (unsigned char)s[--lead];
    want = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if (len - lead < want)
        s[lead] = '\0';
}
