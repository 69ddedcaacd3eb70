/*
 * utf8.c - UTF-8 text; see utf8.h.
 *
 * Hand-written rather than mbrtowc(): the checks run on every string of
 * every request and must not depend on the locale.
 */
#include "codec/utf8.h"

#include <stdint.h>
#include <string.h>

#include "common/alloc.h"

static bool is_cont(unsigned char c)
{
    return (c & 0xC0) == 0x80;
}

/*
 * The second byte's range depends on the lead byte: that is what excludes
 * overlong forms (E0 80..9F, F0 80..8F), surrogates (ED A0..BF) and code
 * points above U+10FFFF (F4 90..BF).
 */
size_t tse_utf8_sequence(const unsigned char *p, size_t n)
{
    unsigned char c = p[0], lo = 0x80, hi = 0xBF;
    size_t len;

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        len = 3;
    else if (c >= 0xF0 && c <= 0xF4)
        len = 4;
    else
        return 0;
    if (len > n)
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
    for (size_t i = 2; i < len; i++)
        if (!is_cont(p[i]))
            return 0;
    return len;
}

/* Whether the 8 bytes at p are all ASCII and none is NUL (the classic
 * "has a zero byte" test on the word; memcpy: p need not be aligned). */
static bool ascii_word(const unsigned char *p)
{
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    uint64_t w;

    memcpy(&w, p, sizeof(w));
    return ((w | ((w - ones) & ~w)) & highs) == 0;
}

size_t tse_utf8_text_span(const unsigned char *p, size_t n)
{
    size_t i = 0;

    while (i < n) {
        size_t len;

        if (n - i >= 8 && ascii_word(p + i)) {
            i += 8;
            continue;
        }
        if (p[i] == 0)
            return i;
        len = p[i] < 0x80 ? 1 : tse_utf8_sequence(p + i, n - i);
        if (len == 0)
            return i;
        i += len;
    }
    return n;
}

bool tse_utf8_valid(const char *s)
{
    size_t n;

    if (s == NULL)
        return true;
    n = strlen(s);
    return tse_utf8_text_span((const unsigned char *)s, n) == n;
}

void tse_utf8_scrub(char *s)
{
    unsigned char *p = (unsigned char *)s, *out = p;

    if (s == NULL)
        return;
    while (*p != '\0') {
        size_t n = tse_utf8_sequence(p, SIZE_MAX);
        if (n == 0) {
            *out++ = '?';
            p++;
            continue;
        }
        memmove(out, p, n);
        out += n;
        p += n;
    }
    *out = '\0';
}

char *tse_utf8_repair(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    char *out = tse_malloc(strlen(s) * 3 + 1);
    size_t o = 0;

    if (out == NULL)
        return NULL;
    while (*p != '\0') {
        size_t n = tse_utf8_sequence(p, SIZE_MAX);

        if (n == 0) {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            p++;
            continue;
        }
        memcpy(out + o, p, n);
        o += n;
        p += n;
    }
    out[o] = '\0';
    return out;
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
