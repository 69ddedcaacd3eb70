/*
 * tokens.c - the tokens file parser (auth.h for the format).
 *
 * Pure: bytes in, a table out. Lines longer than TSE_AUTH_LINE_MAX, more
 * than TSE_AUTH_IDENTITY_MAX identities or TSE_AUTH_PATTERNS_MAX patterns
 * per identity are refused, so the work and memory stay bounded whatever
 * the file holds. Errors name the line and the attribute's key, never its
 * value (a hash is not a secret, but a token pasted by mistake would be).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth/internal.h"
#include "common/alloc.h"
#include "common/hex.h"
#include "domain/subscription.h"

/* What the parser is filling, and where it is. */
typedef struct parse_state {
    tse_auth_table *t;
    size_t cap_ids, cap_hashes;
    int line;
    tse_error *err;
} parse_state;

static tse_status line_error(parse_state *ps, const char *msg)
{
    char field[32];

    snprintf(field, sizeof(field), "line %d", ps->line);
    return tse_error_set(ps->err, TSE_INVALID, field, "%s", msg);
}

static bool name_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '.' || c == '-';
}

static void free_strings(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void tse_auth_table_destroy(tse_auth_table *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->n_ids; i++) {
        free(t->ids[i].cn);
        free_strings(t->ids[i].publish, t->ids[i].n_publish);
        free_strings(t->ids[i].subscribe, t->ids[i].n_subscribe);
    }
    free(t->ids);
    free(t->hashes);
    EVP_MD_free(t->sha256);
    free(t);
}

static tse_status add_hash(parse_state *ps, const char *v, size_t len)
{
    tse_auth_hash *h;

    if (len != 2 * TSE_AUTH_HASH_LEN)
        return line_error(ps, "sha256= needs 64 hex digits");
    if (!TSE_GROW(realloc, ps->t->hashes, ps->cap_hashes, ps->t->n_hashes + 1, 16))
        return tse_error_set(ps->err, TSE_NOMEM, NULL, "out of memory");
    h = &ps->t->hashes[ps->t->n_hashes];
    for (size_t i = 0; i < TSE_AUTH_HASH_LEN; i++) {
        int hi = tse_hex_value(v[2 * i]), lo = tse_hex_value(v[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return line_error(ps, "sha256= needs 64 hex digits");
        h->hash[i] = (uint8_t)(hi * 16 + lo);
    }
    h->identity = ps->t->n_ids - 1;
    ps->t->n_hashes++;
    return TSE_OK;
}

/* Appends the comma-separated patterns of v to *list. */
static tse_status add_patterns(parse_state *ps, const char *key, const char *v, size_t len,
                               char ***list, size_t *n)
{
    char msg[96];
    size_t start = 0;

    for (size_t i = 0; i <= len; i++) {
        if (i < len && v[i] != ',')
            continue;
        size_t plen = i - start;
        char *p, **more;
        if (*n == TSE_AUTH_PATTERNS_MAX) {
            snprintf(msg, sizeof(msg), "%s= may list at most %d patterns", key,
                     TSE_AUTH_PATTERNS_MAX);
            return line_error(ps, msg);
        }
        p = strndup(v + start, plen);
        more = p ? realloc(*list, (*n + 1) * sizeof(char *)) : NULL;
        if (more == NULL) {
            free(p);
            return tse_error_set(ps->err, TSE_NOMEM, NULL, "out of memory");
        }
        *list = more;
        (*list)[(*n)++] = p;
        if (!tse_pattern_valid(p)) {
            snprintf(msg, sizeof(msg), "%s= holds a malformed pattern (see subscription patterns)",
                     key);
            return line_error(ps, msg);
        }
        start = i + 1;
    }
    return TSE_OK;
}

/* A positive integer of at most max. */
static bool parse_count(const char *v, size_t len, long long max, long long *out)
{
    long long n = 0;

    if (len == 0 || len > 9)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)v[i]))
            return false;
        n = n * 10 + (v[i] - '0');
    }
    *out = n;
    return n >= 1 && n <= max;
}

/* YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ, UTC, into Unix seconds. */
static bool parse_date(const char *v, size_t len, int64_t *out)
{
    char buf[32];
    struct tm tm;
    const char *end;

    if (len != 10 && len != 20)
        return false;
    memcpy(buf, v, len);
    buf[len] = '\0';
    memset(&tm, 0, sizeof(tm));
    end = strptime(buf, len == 10 ? "%Y-%m-%d" : "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (end == NULL || *end != '\0')
        return false;
    *out = (int64_t)timegm(&tm);
    return *out > 0;
}

static tse_status set_rate(parse_state *ps, tse_identity *id, long long rate, long long burst)
{
    if (rate == 0 && burst != 0)
        return line_error(ps, "burst= needs rate=");
    if (rate == 0)
        return TSE_OK;
    if (burst == 0)
        burst = rate;
    id->interval_us = 1000000 / rate;
    if (id->interval_us == 0)
        id->interval_us = 1;
    id->burst_us = id->interval_us * (burst - 1);
    return TSE_OK;
}

/* One "key=value" or flag of an identity's line. */
static tse_status attribute(parse_state *ps, tse_identity *id, const char *a, size_t len,
                            long long *rate, long long *burst)
{
    const char *eq = memchr(a, '=', len);
    size_t klen = eq ? (size_t)(eq - a) : len;
    const char *v = eq ? eq + 1 : NULL;
    size_t vlen = eq ? len - klen - 1 : 0;

#define KEY(k) (klen == sizeof(k) - 1 && memcmp(a, k, klen) == 0)
    if (eq == NULL && KEY("admin"))
        id->admin = true;
    else if (eq == NULL && KEY("publish_on_behalf"))
        id->on_behalf = true;
    else if (eq == NULL)
        return line_error(ps, "unknown flag (admin, publish_on_behalf) or a key without '='");
    else if (KEY("sha256"))
        return add_hash(ps, v, vlen);
    else if (KEY("publish"))
        return add_patterns(ps, "publish", v, vlen, &id->publish, &id->n_publish);
    else if (KEY("subscribe"))
        return add_patterns(ps, "subscribe", v, vlen, &id->subscribe, &id->n_subscribe);
    else if (KEY("cn")) {
        if (id->cn != NULL || vlen == 0 || vlen > 256)
            return line_error(ps, "cn= must be given once, 1..256 characters");
        id->cn = strndup(v, vlen);
        if (id->cn == NULL)
            return tse_error_set(ps->err, TSE_NOMEM, NULL, "out of memory");
    } else if (KEY("rate")) {
        if (!parse_count(v, vlen, 1000000, rate))
            return line_error(ps, "rate= must be events per second, 1..1000000");
    } else if (KEY("burst")) {
        if (!parse_count(v, vlen, 1000000, burst))
            return line_error(ps, "burst= must be events, 1..1000000");
    } else if (KEY("expires")) {
        if (!parse_date(v, vlen, &id->expires_s))
            return line_error(ps, "expires= must be YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ");
    } else {
        return line_error(ps, "unknown key (sha256, cn, publish, subscribe, rate, burst, "
                              "expires)");
    }
#undef KEY
    return TSE_OK;
}

static tse_identity *new_identity(parse_state *ps, const char *name, size_t len)
{
    tse_auth_table *t = ps->t;
    tse_identity *id;

    if (!TSE_GROW(realloc, t->ids, ps->cap_ids, t->n_ids + 1, 8)) {
        tse_error_set(ps->err, TSE_NOMEM, NULL, "out of memory");
        return NULL;
    }
    id = &t->ids[t->n_ids++];
    memset(id, 0, sizeof(*id));
    memcpy(id->name, name, len);
    id->name[len] = '\0';
    atomic_init(&id->tat_us, 0);
    atomic_init(&id->limited_line_s, 0);
    atomic_init(&id->limited_unlogged, 0);
    return id;
}

/* Splits line into whitespace-separated words: the name, then attributes. */
static tse_status parse_line(parse_state *ps, const char *s, size_t len)
{
    const char *end = s + len, *w;
    tse_identity *id = NULL;
    long long rate = 0, burst = 0;
    tse_status st;

    while (s < end && isspace((unsigned char)*s))
        s++;
    if (s == end || *s == '#')
        return TSE_OK;
    for (w = s; s < end && !isspace((unsigned char)*s); s++)
        if (!name_char(*s))
            return line_error(ps, "an identity name is 1..64 of A-Z a-z 0-9 _ . -");
    if (s - w > TSE_AUTH_NAME_MAX)
        return line_error(ps, "an identity name is 1..64 of A-Z a-z 0-9 _ . -");
    if (ps->t->n_ids >= TSE_AUTH_IDENTITY_MAX)
        return line_error(ps, "too many identities (at most 10000)");
    for (size_t i = 0; i < ps->t->n_ids; i++)
        if (strlen(ps->t->ids[i].name) == (size_t)(s - w) &&
            memcmp(ps->t->ids[i].name, w, (size_t)(s - w)) == 0)
            return line_error(ps, "this identity is already defined above");
    id = new_identity(ps, w, (size_t)(s - w));
    if (id == NULL)
        return TSE_NOMEM;
    for (;;) {
        while (s < end && isspace((unsigned char)*s))
            s++;
        if (s == end)
            break;
        for (w = s; s < end && !isspace((unsigned char)*s); s++)
            ;
        st = attribute(ps, id, w, (size_t)(s - w), &rate, &burst);
        if (st != TSE_OK)
            return st;
    }
    return set_rate(ps, id, rate, burst);
}

/* Sorts the hash index; a token proving two identities is refused. */
static tse_status index_hashes(parse_state *ps)
{
    tse_auth_table *t = ps->t;

    if (t->n_hashes > 1)
        qsort(t->hashes, t->n_hashes, sizeof(*t->hashes), tse_auth_hash_cmp);
    for (size_t i = 1; i < t->n_hashes; i++)
        if (tse_auth_hash_cmp(&t->hashes[i - 1], &t->hashes[i]) == 0) {
            ps->line = 0;
            return tse_error_set(ps->err, TSE_INVALID, "tokens file",
                                 "one token hash appears twice (identities %s and %s)",
                                 t->ids[t->hashes[i - 1].identity].name,
                                 t->ids[t->hashes[i].identity].name);
        }
    return TSE_OK;
}

tse_status tse_auth_table_parse(const char *text, size_t len, tse_auth_table **out, tse_error *err)
{
    parse_state ps = {.err = err};
    size_t start = 0;
    tse_status st = TSE_OK;

    *out = NULL;
    ps.t = calloc(1, sizeof(*ps.t));
    if (ps.t == NULL)
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory");
    atomic_init(&ps.t->refs, 1);
    ps.t->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (ps.t->sha256 == NULL) {
        free(ps.t);
        return tse_error_set(err, TSE_INTERNAL, NULL, "libcrypto has no SHA-256");
    }
    for (size_t i = 0; i <= len && st == TSE_OK; i++) {
        if (i < len && text[i] != '\n')
            continue;
        ps.line++;
        if (i - start > TSE_AUTH_LINE_MAX)
            st = line_error(&ps, "line longer than 8192 bytes");
        else if (memchr(text + start, '\0', i - start) != NULL)
            st = line_error(&ps, "NUL byte");
        else
            st = parse_line(&ps, text + start, i - start);
        start = i + 1;
    }
    if (st == TSE_OK)
        st = index_hashes(&ps);
    if (st != TSE_OK) {
        tse_auth_table_destroy(ps.t);
        return st;
    }
    *out = ps.t;
    return TSE_OK;
}
