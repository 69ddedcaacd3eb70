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

#include "common/hex.h"

/* ---- event types ---------------------------------------------------------- */

/* ^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$: two or more dot-separated segments. */
bool tse_event_type_valid(const char *type)
{
    const char *p = type;
    size_t segments = 0;

    if (type == NULL || strnlen(type, TSE_EVENT_TYPE_MAX + 1) > TSE_EVENT_TYPE_MAX)
        return false;
    for (;;) {
        if (!tse_segment_start(*p))
            return false;
        for (p++; tse_segment_char(*p); p++)
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

bool tse_uuid_valid(const char *s)
{
    if (s == NULL || strnlen(s, 37) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : tse_hex_value(s[i]) < 0)
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

/* 16 random bytes: from the pool, else from libuuid. */
static void random16(unsigned char u[16])
{
    if (!random_bytes(u)) {
        uuid_t fallback;
        uuid_generate_random(fallback);
        memcpy(u, fallback, 16);
    }
}

/* u as the text of a version 4, RFC 4122 variant UUID, lower case. */
static void uuid_text(unsigned char u[16], char *buf)
{
    static const char hex[] = "0123456789abcdef";
    size_t j = 0;

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

void tse_uuid_generate(char *buf)
{
    unsigned char u[16];

    random16(u);
    uuid_text(u, buf);
}

/* splitmix64's finalizer: a bijection on 64 bits, so distinct counters give
 * distinct values, and consecutive ones look unrelated. */
static uint64_t mix64(uint64_t x)
{
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

void tse_uuid_seq_init(tse_uuid_seq *s)
{
    unsigned char u[16];

    random16(u);
    memcpy(s->seed, u, sizeof(s->seed));
    atomic_init(&s->next, 0);
}

void tse_uuid_seq_next(tse_uuid_seq *s, char *buf)
{
    uint64_t n = atomic_fetch_add_explicit(&s->next, 1, memory_order_relaxed);
    uint64_t hi = s->seed[0], lo = mix64(s->seed[1] + n);
    unsigned char u[16];

    for (int i = 0; i < 8; i++) {
        u[i] = (unsigned char)(hi >> (56 - 8 * i));
        u[8 + i] = (unsigned char)(lo >> (56 - 8 * i));
    }
    uuid_text(u, buf);
}
