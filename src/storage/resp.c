/*
 * resp.c - encodes commands as RESP arrays of bulk strings
 * ("*N\r\n$len\r\n<bytes>\r\n..."), the form redisAppendFormattedCommand
 * takes as is. Arguments are length-delimited, so they may hold any bytes
 * (NUL, "\r\n"): event envelopes go in unescaped.
 *
 * Pure: no I/O, no state. Formatting here rather than through hiredis's
 * printf-style API measurably cuts the publisher's CPU (measured.md).
 *
 * Reading: a header is a type byte, a line and CR LF; a bulk string's
 * bytes follow its header, with their own CR LF. Lengths and counts are
 * checked (digits only, no overflow, nothing past the end) before use, so
 * bytes from the network never make a read leave the buffer.
 */
#include "storage/resp.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"

static size_t digits(size_t n)
{
    size_t d = 1;

    while (n >= 10) {
        n /= 10;
        d++;
    }
    return d;
}

/* Writes prefix, n in decimal and "\r\n"; returns the end. */
static char *write_header(char *dst, char prefix, size_t n)
{
    size_t d = digits(n);

    *dst++ = prefix;
    for (size_t i = d; i > 0; i--) {
        dst[i - 1] = (char)('0' + n % 10);
        n /= 10;
    }
    dst += d;
    *dst++ = '\r';
    *dst++ = '\n';
    return dst;
}

size_t tse_resp_size(int argc, const size_t *lens)
{
    size_t size = 1 + digits((size_t)argc) + 2;

    for (int i = 0; i < argc; i++)
        size += 1 + digits(lens[i]) + 2 + lens[i] + 2;
    return size;
}

char *tse_resp_write(char *dst, int argc, const char *const *argv, const size_t *lens)
{
    dst = write_header(dst, '*', (size_t)argc);
    for (int i = 0; i < argc; i++) {
        dst = write_header(dst, '$', lens[i]);
        if (lens[i] > 0)
            memcpy(dst, argv[i], lens[i]);
        dst += lens[i];
        *dst++ = '\r';
        *dst++ = '\n';
    }
    return dst;
}

char *tse_resp_format(int argc, const char *const *argv, const size_t *lens, size_t *out_len)
{
    size_t size = tse_resp_size(argc, lens);
    char *buf = tse_malloc(size);

    if (buf == NULL)
        return NULL;
    tse_resp_write(buf, argc, argv, lens);
    *out_len = size;
    return buf;
}

/* ===================== reading ========================================== */

/* Longest header line read (a type byte, a 64-bit number, CR LF). */
#define LINE_MAX_LEN 24

/*
 * The header at p (before end): its type, its number (for : $ *), and
 * where its line ends (after CR LF). 1 read, 0 cut short, -1 malformed.
 * + and - lines may be of any length.
 */
static int read_header(const char *p, const char *end, char *type, long long *num,
                       const char **next)
{
    const char *cr, *q;
    bool neg = false;
    long long n = 0;

    if (p >= end)
        return 0;
    *type = *p;
    if (*type == '+' || *type == '-') {
        cr = memchr(p, '\r', (size_t)(end - p));
        if (cr == NULL || cr + 1 >= end)
            return 0;
        if (cr[1] != '\n')
            return -1;
        *num = 0;
        *next = cr + 2;
        return 1;
    }
    if (*type != ':' && *type != '$' && *type != '*')
        return -1;
    q = p + 1;
    if (q < end && *q == '-') {
        neg = true;
        q++;
    }
    /* The line's length is checked digit by digit, so that bytes cut
     * short anywhere give the answer the whole line gives (0 until then):
     * a walk resumed as bytes arrive must agree with one over them all. */
    for (; q < end && *q >= '0' && *q <= '9'; q++) {
        if (n > (INT64_MAX - 9) / 10 || q - p >= LINE_MAX_LEN - 2)
            return -1;
        n = n * 10 + (*q - '0');
    }
    if (q + 1 >= end)
        return 0;
    if (q[0] != '\r' || q[1] != '\n' || q == p + 1 + neg)
        return -1;
    *num = neg ? -n : n;
    *next = q + 2;
    return 1;
}

int tse_resp_skip_step(tse_resp_skip *s, const char *buf, size_t len)
{
    const char *end = buf + len;

    for (;;) {
        const char *next;
        char type;
        long long n;
        int got = read_header(buf + s->at, end, &type, &n, &next);

        if (got <= 0)
            return got;
        if (type == '$' && n >= 0) {
            if ((size_t)(end - next) < (size_t)n + 2)
                return 0; /* its bytes are still to come */
            if (next[n] != '\r' || next[n + 1] != '\n')
                return -1;
            next += n + 2;
        } else if ((type == '$' || type == '*') && n < -1) {
            return -1;
        }
        s->at = (size_t)(next - buf);
        if (type == '*' && n > 0) {
            if (s->depth == TSE_RESP_SKIP_DEPTH)
                return -1;
            s->left[s->depth++] = n;
            continue;
        }
        /* One value done: close the arrays it completes. */
        while (s->depth > 0 && --s->left[s->depth - 1] == 0)
            s->depth--;
        if (s->depth == 0)
            return 1;
    }
}

bool tse_resp_read_array(tse_resp_cursor *c, long long *n)
{
    const char *next;
    char type;

    if (read_header(c->p, c->end, &type, n, &next) != 1 || type != '*' || *n < -1)
        return false;
    c->p = next;
    return true;
}

bool tse_resp_read_bulk(tse_resp_cursor *c, const char **s, size_t *len)
{
    const char *next;
    long long n;
    char type;

    if (read_header(c->p, c->end, &type, &n, &next) != 1 || type != '$' || n < -1)
        return false;
    if (n == -1) {
        *s = NULL;
        *len = 0;
        c->p = next;
        return true;
    }
    if ((size_t)(c->end - next) < (size_t)n + 2 || next[n] != '\r' || next[n + 1] != '\n')
        return false;
    *s = next;
    *len = (size_t)n;
    c->p = next + n + 2;
    return true;
}

bool tse_resp_skip_value(tse_resp_cursor *c)
{
    tse_resp_skip s = {0};

    if (tse_resp_skip_step(&s, c->p, (size_t)(c->end - c->p)) != 1)
        return false;
    c->p += s.at;
    return true;
}
