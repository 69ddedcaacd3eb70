/*
 * trace.c - the W3C Trace Context checks of trace.h.
 *
 * Both parsers walk the bytes once, look at nothing beyond len, and write
 * nothing but *out and err; a refusal names the caller's field and the rule
 * broken, in the spec's words where it has them.
 */
#include "domain/trace.h"

#include <string.h>

#include "common/hex.h"

/* ---- traceparent --------------------------------------------------------------- */

/* Version 00's length, and where its parts start. */
#define TP_LEN       55
#define TP_TRACE_AT  3
#define TP_PARENT_AT 36
#define TP_FLAGS_AT  53

static bool is_lchex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/* n lowercase hex digits at s; *all_zero tells whether every one is '0'. */
static bool lchex_run(const char *s, size_t n, bool *all_zero)
{
    bool zero = true;

    for (size_t i = 0; i < n; i++) {
        if (!is_lchex(s[i]))
            return false;
        zero = zero && s[i] == '0';
    }
    if (all_zero != NULL)
        *all_zero = zero;
    return true;
}

/* Version 00's layout in the first 55 bytes of s (len >= 55). */
static tse_status parse_v00(const char *s, tse_traceparent *out, const char *field, tse_error *err)
{
    bool zero;

    if (s[2] != '-' || s[TP_PARENT_AT - 1] != '-' || s[TP_FLAGS_AT - 1] != '-')
        return tse_error_set(err, TSE_INVALID, field,
                             "%s must read 00-<trace-id>-<parent-id>-<flags> (dashes at 3, 36 "
                             "and 53)",
                             field);
    if (!lchex_run(s + TP_TRACE_AT, 32, &zero))
        return tse_error_set(err, TSE_INVALID, field,
                             "%s: trace-id must be 32 lowercase hex digits", field);
    if (zero)
        return tse_error_set(err, TSE_INVALID, field, "%s: trace-id must not be all zero", field);
    if (!lchex_run(s + TP_PARENT_AT, 16, &zero))
        return tse_error_set(err, TSE_INVALID, field,
                             "%s: parent-id must be 16 lowercase hex digits", field);
    if (zero)
        return tse_error_set(err, TSE_INVALID, field, "%s: parent-id must not be all zero", field);
    if (!lchex_run(s + TP_FLAGS_AT, 2, NULL))
        return tse_error_set(err, TSE_INVALID, field,
                             "%s: trace-flags must be 2 lowercase hex digits", field);
    if (out != NULL) {
        memcpy(out->trace_id, s + TP_TRACE_AT, 32);
        out->trace_id[32] = '\0';
        memcpy(out->parent_id, s + TP_PARENT_AT, 16);
        out->parent_id[16] = '\0';
        out->flags =
            (uint8_t)(tse_hex_value(s[TP_FLAGS_AT]) << 4 | tse_hex_value(s[TP_FLAGS_AT + 1]));
    }
    return TSE_OK;
}

tse_status tse_traceparent_parse(const char *s, size_t len, tse_traceparent *out, const char *field,
                                 tse_error *err)
{
    uint8_t version;
    tse_status st;

    if (s == NULL || len == 0)
        return tse_error_set(err, TSE_INVALID, field, "%s must not be empty", field);
    if (len > TSE_TRACEPARENT_MAX)
        return tse_error_set(err, TSE_INVALID, field, "%s must be at most %d characters", field,
                             TSE_TRACEPARENT_MAX);
    if (len < 2 || !lchex_run(s, 2, NULL))
        return tse_error_set(err, TSE_INVALID, field, "%s: version must be 2 lowercase hex digits",
                             field);
    version = (uint8_t)(tse_hex_value(s[0]) << 4 | tse_hex_value(s[1]));
    if (version == 0xff)
        return tse_error_set(err, TSE_INVALID, field, "%s: version ff is invalid", field);
    if (version == 0 && len != TP_LEN)
        return tse_error_set(err, TSE_INVALID, field,
                             "%s of version 00 must be exactly %d characters", field, TP_LEN);
    if (len < TP_LEN)
        return tse_error_set(err, TSE_INVALID, field, "%s must be at least %d characters", field,
                             TP_LEN);
    if ((st = parse_v00(s, out, field, err)) != TSE_OK)
        return st;
    /* A later version may add fields after a dash; we keep them, so they
     * must be printable and no more than visible ASCII. */
    if (len > TP_LEN && s[TP_LEN] != '-')
        return tse_error_set(err, TSE_INVALID, field,
                             "%s: what follows the flags of a later version must start with '-'",
                             field);
    for (size_t i = TP_LEN; i < len; i++)
        if (s[i] <= 0x20 || s[i] >= 0x7f)
            return tse_error_set(err, TSE_INVALID, field,
                                 "%s must be visible ASCII characters only", field);
    if (out != NULL)
        out->version = version;
    return TSE_OK;
}

/* ---- tracestate ---------------------------------------------------------------- */

static bool is_lcalpha(char c)
{
    return c >= 'a' && c <= 'z';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* lcalpha / DIGIT / "_" / "-" / "*" / "/": what follows a key's first character. */
static bool is_key_char(char c)
{
    return is_lcalpha(c) || is_digit(c) || c == '_' || c == '-' || c == '*' || c == '/';
}

static bool key_chars(const char *s, size_t n)
{
    for (size_t i = 1; i < n; i++)
        if (!is_key_char(s[i]))
            return false;
    return true;
}

/* simple-key = lcalpha 0*255(key char);
 * multi-tenant-key = (lcalpha / DIGIT) 0*240(key char) "@" lcalpha 0*13(key char). */
static bool key_valid(const char *k, size_t n)
{
    const char *at = memchr(k, '@', n);
    size_t tenant, system;

    if (at == NULL)
        return n >= 1 && n <= 256 && is_lcalpha(k[0]) && key_chars(k, n);
    tenant = (size_t)(at - k);
    system = n - tenant - 1;
    return tenant >= 1 && tenant <= 241 && (is_lcalpha(k[0]) || is_digit(k[0])) &&
           key_chars(k, tenant) && system >= 1 && system <= 14 && is_lcalpha(at[1]) &&
           key_chars(at + 1, system);
}

/* value = 0*255(chr) nblk-chr; chr = %x20 / nblk-chr;
 * nblk-chr = %x21-2B / %x2D-3C / %x3E-7E (printable, not ',' or '='). */
static bool value_valid(const char *v, size_t n)
{
    if (n < 1 || n > 256 || v[n - 1] == ' ')
        return false;
    for (size_t i = 0; i < n; i++)
        if (v[i] < 0x20 || v[i] > 0x7e || v[i] == ',' || v[i] == '=')
            return false;
    return true;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* One member's bounds, OWS trimmed. */
typedef struct member {
    const char *s;
    size_t n;
} member;

static tse_status check_member(const member *m, const member *seen, size_t n_seen,
                               const char *field, tse_error *err)
{
    const char *eq = memchr(m->s, '=', m->n);
    size_t klen;

    if (eq == NULL)
        return tse_error_set(err, TSE_INVALID, field, "%s: each list member must be key=value",
                             field);
    klen = (size_t)(eq - m->s);
    if (!key_valid(m->s, klen))
        return tse_error_set(err, TSE_INVALID, field,
                             "%s: key %zu must be lowercase a-z 0-9 _ - * / (tenant@system), "
                             "starting with a letter",
                             field, n_seen + 1);
    if (!value_valid(eq + 1, m->n - klen - 1))
        return tse_error_set(err, TSE_INVALID, field,
                             "%s: value %zu must be 1 to 256 printable characters, not ',' or "
                             "'=', not ending in a space",
                             field, n_seen + 1);
    for (size_t i = 0; i < n_seen; i++) {
        const char *seq = memchr(seen[i].s, '=', seen[i].n);
        if ((size_t)(seq - seen[i].s) == klen && memcmp(seen[i].s, m->s, klen) == 0)
            return tse_error_set(err, TSE_INVALID, field, "%s: keys must be unique", field);
    }
    return TSE_OK;
}

tse_status tse_tracestate_check(const char *s, size_t len, const char *field, tse_error *err)
{
    member seen[TSE_TRACESTATE_MAX_MEMBERS];
    size_t n_seen = 0, i = 0;
    tse_status st;

    if (len > TSE_TRACESTATE_MAX)
        return tse_error_set(err, TSE_INVALID, field, "%s must be at most %d characters", field,
                             TSE_TRACESTATE_MAX);
    while (i < len) {
        const char *comma = memchr(s + i, ',', len - i);
        size_t end = comma ? (size_t)(comma - s) : len;
        member m;

        while (i < end && is_ows(s[i]))
            i++;
        m.s = s + i;
        m.n = end - i;
        while (m.n > 0 && is_ows(m.s[m.n - 1]))
            m.n--;
        i = end + 1;
        if (m.n == 0)
            continue; /* empty members are allowed */
        if (n_seen == TSE_TRACESTATE_MAX_MEMBERS)
            return tse_error_set(err, TSE_INVALID, field, "%s must have at most %d list members",
                                 field, TSE_TRACESTATE_MAX_MEMBERS);
        if ((st = check_member(&m, seen, n_seen, field, err)) != TSE_OK)
            return st;
        seen[n_seen++] = m;
    }
    return TSE_OK;
}

/* ---- the pair ------------------------------------------------------------------ */

static bool is_set(const char *s)
{
    return s != NULL && s[0] != '\0';
}

tse_status tse_trace_context_check(const char *traceparent, const char *tracestate,
                                   const char *traceparent_field, const char *tracestate_field,
                                   tse_error *err)
{
    tse_status st;

    if (!is_set(traceparent)) {
        if (is_set(tracestate))
            return tse_error_set(err, TSE_INVALID, tracestate_field, "%s is allowed only with a %s",
                                 tracestate_field, traceparent_field);
        return TSE_OK;
    }
    st = tse_traceparent_parse(traceparent, strnlen(traceparent, TSE_TRACEPARENT_MAX + 1), NULL,
                               traceparent_field, err);
    if (st != TSE_OK || !is_set(tracestate))
        return st;
    return tse_tracestate_check(tracestate, strnlen(tracestate, TSE_TRACESTATE_MAX + 1),
                                tracestate_field, err);
}

bool tse_trace_id(const char *traceparent, char out[33])
{
    out[0] = '\0';
    if (traceparent == NULL || strnlen(traceparent, TP_LEN) < TP_LEN)
        return false;
    memcpy(out, traceparent + TP_TRACE_AT, 32);
    out[32] = '\0';
    return true;
}
