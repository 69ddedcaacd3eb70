/*
 * resp.h - RESP encoding of commands (resp.c): arrays of bulk strings, the
 * form redisAppendFormattedCommand takes as is.
 *
 * Pure: no I/O, no state.
 */
#ifndef TSE_STORAGE_RESP_H
#define TSE_STORAGE_RESP_H

#include <stddef.h>

/* Bytes of the RESP array of argc bulk strings with these lengths. */
size_t tse_resp_size(int argc, const size_t *lens);
/* Writes that array at dst (tse_resp_size bytes); returns the end. */
char *tse_resp_write(char *dst, int argc, const char *const *argv, const size_t *lens);
/* The same into a malloc'd buffer (caller frees); NULL when out of memory. */
char *tse_resp_format(int argc, const char *const *argv, const size_t *lens, size_t *out_len);

#endif
