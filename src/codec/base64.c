/*
 * base64.c - see base64.h. Reading both alphabets, padded or not, is what
 * the proto3 JSON mapping asks of bytes fields.
 */
#include "codec/base64.h"

#include "common/alloc.h"

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* The 6-bit value of c in the standard or the URL-safe alphabet, or -1. */
static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

char *tse_base64_encode(const uint8_t *data, size_t len)
{
    char *out = tse_malloc((len + 2) / 3 * 4 + 1);
    size_t o = 0;

    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)data[i] << 16;

        if (i + 1 < len)
            v |= (uint32_t)data[i + 1] << 8;
        if (i + 2 < len)
            v |= data[i + 2];
        out[o++] = b64_alphabet[v >> 18 & 63];
        out[o++] = b64_alphabet[v >> 12 & 63];
        out[o++] = i + 1 < len ? b64_alphabet[v >> 6 & 63] : '=';
        out[o++] = i + 2 < len ? b64_alphabet[v & 63] : '=';
    }
    out[o] = '\0';
    return out;
}

int tse_base64_decode(const char *s, size_t len, uint8_t **out, size_t *out_len)
{
    size_t core = len, pad = 0, n, o = 0;
    uint32_t acc = 0;
    uint8_t *buf;

    while (core > 0 && s[core - 1] == '=' && pad < 2) {
        core--;
        pad++;
    }
    if (core % 4 == 1 || (pad > 0 && (len % 4 != 0 || core % 4 != 4 - pad)))
        return -1;
    n = core / 4 * 3 + (core % 4 ? core % 4 - 1 : 0);
    *out = NULL;
    *out_len = 0;
    if (n == 0)
        return 0;
    buf = tse_malloc(n);
    if (buf == NULL)
        return -2;
    for (size_t i = 0; i < core; i++) {
        int v = b64_value((unsigned char)s[i]);

        if (v < 0) {
            tse_free(buf);
            return -1;
        }
        acc = acc << 6 | (uint32_t)v;
        if (i % 4 == 3) {
            buf[o++] = (uint8_t)(acc >> 16);
            buf[o++] = (uint8_t)(acc >> 8);
            buf[o++] = (uint8_t)acc;
        }
    }
    if (core % 4 >= 2)
        buf[o++] = (uint8_t)(acc >> (core % 4 == 2 ? 4 : 10));
    if (core % 4 == 3)
        buf[o++] = (uint8_t)(acc >> 2);
    *out = buf;
    *out_len = n;
    return 0;
}
