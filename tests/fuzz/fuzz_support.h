/*
 * fuzz_support.h - small helpers shared by the fuzz targets (header only).
 *
 * A target's input is raw bytes; most parsers take C strings. fuzz_strings
 * cuts an input into up to n NUL-terminated pieces at '\n' (the last piece
 * takes the rest), each a malloc'd copy of exactly its bytes, so ASan sees a
 * read past any of them. Embedded NULs stay: the string simply ends early,
 * as it would for a client's bytes after protobuf-c or JSON decoding.
 */
#ifndef TSE_FUZZ_SUPPORT_H
#define TSE_FUZZ_SUPPORT_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A malloc'd NUL-terminated copy of n bytes; aborts when out of memory. */
static inline char *fuzz_strndup(const uint8_t *data, size_t n)
{
    char *s = malloc(n + 1);

    if (s == NULL)
        abort();
    memcpy(s, data, n);
    s[n] = '\0';
    return s;
}

/* Cuts data into out[0..n-1] at the first n-1 newlines; missing pieces are "". */
static inline void fuzz_strings(const uint8_t *data, size_t size, char **out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const uint8_t *nl = i + 1 < n ? memchr(data, '\n', size) : NULL;
        size_t len = nl ? (size_t)(nl - data) : size;

        out[i] = fuzz_strndup(data, len);
        data += nl ? len + 1 : len;
        size -= nl ? len + 1 : len;
    }
}

static inline void fuzz_strings_free(char **s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(s[i]);
}

/* Reports a broken property and aborts, so libFuzzer keeps the input. */
#define FUZZ_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz property failed: %s: ", #cond);                                  \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif
