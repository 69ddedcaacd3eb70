/*
 * format.c - the textual formats an event's fields must have: event types
 * and UUIDs (UTF-8 is codec/utf8.h). See validate.h.
 *
 * Hand-written matchers rather than regcomp(): the formats are tiny, these
 * run on every published event, and they must not depend on the locale.
 */
#include "domain/validate.h"

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
