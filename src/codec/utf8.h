/*
 * utf8.h - UTF-8 text: the one check of well-formed sequences in the tree
 * (shortest forms only, no surrogates, nothing above U+10FFFF) and the
 * string helpers built on it. The wire scan (pbscan.c), the JSON transcoder
 * (pbjson_*.c) and the domain's validation all use these.
 *
 * No I/O and no state: all functions are reentrant.
 */
#ifndef TSE_CODEC_UTF8_H
#define TSE_CODEC_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/*
 * The length (1..4) of the well-formed UTF-8 sequence that starts the n bytes
 * at p (n >= 1), or 0 when there is none. A NUL is never part of a longer
 * sequence, so for a C string n may be SIZE_MAX: the check stops at the NUL.
 */
size_t tse_utf8_sequence(const unsigned char *p, size_t n);

/*
 * How many of the n bytes at p (p may be NULL when n is 0) are text from the
 * start: well-formed UTF-8 without NUL. n when all of them are; otherwise
 * the offset of the first NUL or of the first byte that starts no
 * well-formed sequence. Every string of every request goes through it, so
 * runs of ASCII are checked a word at a time.
 */
size_t tse_utf8_text_span(const unsigned char *p, size_t n);

/*
 * True when s is well-formed UTF-8: shortest forms only, no surrogates,
 * nothing above U+10FFFF. NULL counts as the empty string.
 */
bool tse_utf8_valid(const char *s);

/*
 * Replaces each byte of s that does not start a well-formed UTF-8 sequence
 * with '?', in place, so s is valid UTF-8 after (text from a client, such
 * as a request path, quoted in an answer that must be JSON). NULL is a no-op.
 */
void tse_utf8_scrub(char *s);

/*
 * A copy of s with each byte that does not start a well-formed UTF-8
 * sequence replaced by U+FFFD, or NULL when out of memory. Caller frees with
 * tse_free.
 */
char *tse_utf8_repair(const char *s);

/*
 * The number of code points in s, which must be valid UTF-8. The length
 * limits of the domain (TSE_*_MAX) count code points, not bytes.
 */
size_t tse_utf8_length(const char *s);

/*
 * Cuts s back so that it ends on a whole UTF-8 sequence: for strings that a
 * byte bound (snprintf into a tse_error) may have cut mid-character.
 */
void tse_utf8_trim(char *s);

#endif
