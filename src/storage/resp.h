/*
 * resp.h - RESP encoding of commands (resp.c): arrays of bulk strings, the
 * form redisAppendFormattedCommand takes as is; and reading replies without
 * building hiredis's reply tree: finding where one reply ends as its bytes
 * arrive, and a cursor over a complete one (for replies read in bulk, such
 * as XREADGROUP's, whose tree of one allocation per element cost more than
 * the rest of a delivery).
 *
 * Pure: no I/O, no state beyond what the caller holds.
 */
#ifndef TSE_STORAGE_RESP_H
#define TSE_STORAGE_RESP_H

#include <stdbool.h>
#include <stddef.h>

/* Bytes of the RESP array of argc bulk strings with these lengths. */
size_t tse_resp_size(int argc, const size_t *lens);
/* Writes that array at dst (tse_resp_size bytes); returns the end. */
char *tse_resp_write(char *dst, int argc, const char *const *argv, const size_t *lens);
/* The same into a malloc'd buffer (caller frees); NULL when out of memory. */
char *tse_resp_format(int argc, const char *const *argv, const size_t *lens, size_t *out_len);

/* ---- reading replies ---- */

/* How deep a reply may nest (XREADGROUP's is 5 arrays deep). */
#define TSE_RESP_SKIP_DEPTH 16

/* Where a walk over one reply stands, so that it resumes where it stopped
 * when more bytes arrive. Zero it before the first step. */
typedef struct tse_resp_skip {
    size_t at; /* offset of the next header */
    int depth; /* arrays open */
    long long left[TSE_RESP_SKIP_DEPTH];
} tse_resp_skip;

/*
 * Walks the reply whose first len bytes are at buf (RESP2: + - : $ *):
 * 1 when it is complete (s->at is then its length), 0 when it needs more
 * bytes (call again with the same s and the bytes so far, more of them),
 * -1 when the bytes are no RESP or nest deeper than TSE_RESP_SKIP_DEPTH.
 */
int tse_resp_skip_step(tse_resp_skip *s, const char *buf, size_t len);

/* A read position in one complete reply. */
typedef struct tse_resp_cursor {
    const char *p, *end;
} tse_resp_cursor;

/* Reads an array header: *n its element count (-1 for a nil array). False,
 * with nothing read, when the next value is not an array. */
bool tse_resp_read_array(tse_resp_cursor *c, long long *n);
/* Reads a bulk string: its bytes (borrowed) and length (NULL, 0 for nil).
 * False, with nothing read, when the next value is not a bulk string. */
bool tse_resp_read_bulk(tse_resp_cursor *c, const char **s, size_t *len);
/* Skips the next value, whatever it is; false when there is none. */
bool tse_resp_skip_value(tse_resp_cursor *c);

#endif
