/*
 * resp.c - encodes commands as RESP arrays of bulk strings
 * ("*N\r\n$len\r\n<bytes>\r\n..."), the form redisAppendFormattedCommand
 * takes as is. Arguments are length-delimited, so they may hold any bytes
 * (NUL, "\r\n"): event envelopes go in unescaped.
 *
 * Pure: no I/O, no state. Formatting here rather than through hiredis's
 * printf-style API measurably cuts the publisher's CPU (measured.md).
 */
#include "storage/resp.h"

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
