/*
 * redis_url.c - parses "redis://[[user]:password@]host[:port][/db]" and the
 * cluster seed list "redis+cluster://[[user]:password@]h1[:p1],h2[:p2],..."
 * into a tse_redis_target.
 *
 * Pure. Every rejection names the part at fault (scheme, credentials, user,
 * password, host, port, db) and never echoes the password. The credentials
 * end at the last '@', so a password may hold '@', '/' or ':' raw; user and
 * password are percent-decoded and may not decode to NUL. IPv6 hosts are
 * written in brackets ("redis://[::1]:6379").
 */
#include "storage/redis_url.h"

#include <ctype.h>
#include <limits.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "common/hex.h"

#define FIELD "redis_url"

/* Size of every host buffer of a tse_redis_target (NUL included). */
#define HOST_MAX 256
_Static_assert(sizeof(((tse_redis_target *)0)->host) == HOST_MAX, "target host size");
_Static_assert(sizeof(((tse_redis_seed *)0)->host) == HOST_MAX, "seed host size");

/* Percent-decodes [s, end) into out (size cap, NUL-terminated). */
static tse_status decode(const char *s, const char *end, char *out, size_t cap, const char *part,
                         tse_error *err)
{
    size_t n = 0;

    for (; s < end; s++) {
        int c = (unsigned char)*s;

        if (c == '%') {
            int hi = end - s > 2 ? tse_hex_value(s[1]) : -1;
            int lo = end - s > 2 ? tse_hex_value(s[2]) : -1;

            if (hi < 0 || lo < 0)
                return tse_error_set(err, TSE_INVALID, FIELD,
                                     "%s has a bad percent-escape (want %%XX)", part);
            c = hi * 16 + lo;
            if (c == 0)
                return tse_error_set(err, TSE_INVALID, FIELD, "%s must not contain %%00", part);
            s += 2;
        }
        if (n + 1 >= cap)
            return tse_error_set(err, TSE_INVALID, FIELD, "%s is longer than %zu bytes", part,
                                 cap - 1);
        out[n++] = (char)c;
    }
    out[n] = '\0';
    return TSE_OK;
}

static tse_status parse_credentials(const char *s, const char *at, tse_redis_target *t,
                                    tse_error *err)
{
    const char *colon = memchr(s, ':', (size_t)(at - s));
    tse_status st;

    if (colon == NULL)
        return tse_error_set(err, TSE_INVALID, FIELD,
                             "credentials before '@' must be [user]:password");
    st = decode(s, colon, t->username, sizeof(t->username), "user", err);
    if (st != TSE_OK)
        return st;
    return decode(colon + 1, at, t->password, sizeof(t->password), "password", err);
}

/* Parses all-digit [s, end) into *out within [min, max]. */
static bool parse_number(const char *s, const char *end, long min, long max, int *out)
{
    long v = 0;

    if (s == end || end - s > 10)
        return false;
    for (; s < end; s++) {
        if (!isdigit((unsigned char)*s))
            return false;
        v = v * 10 + (*s - '0');
    }
    if (v < min || v > max)
        return false;
    *out = (int)v;
    return true;
}

/* Host (bracketed for IPv6) from s into host[256]; *rest points past it. An
 * unbracketed host ends at any of stop. */
static tse_status parse_host(const char *s, const char **rest, char *host, const char *stop,
                             tse_error *err)
{
    const char *start = s, *end;

    if (*s == '[') {
        start = s + 1;
        end = strchr(start, ']');
        if (end == NULL)
            return tse_error_set(err, TSE_INVALID, FIELD, "host has '[' without ']'");
        *rest = end + 1;
    } else {
        end = start + strcspn(start, stop);
        *rest = end;
    }
    if (end == start)
        return tse_error_set(err, TSE_INVALID, FIELD, "host is empty");
    if ((size_t)(end - start) >= HOST_MAX)
        return tse_error_set(err, TSE_INVALID, FIELD, "host is longer than %d bytes", HOST_MAX - 1);
    memcpy(host, start, (size_t)(end - start));
    host[end - start] = '\0';
    return TSE_OK;
}

/* The seed list of a cluster URL from s (after the credentials): seeds
 * separated by ',', each host[:port], then an optional "/0". */
static tse_status parse_seeds(const char *s, tse_redis_target *t, tse_error *err)
{
    tse_status st;

    for (;;) {
        tse_redis_seed *seed;
        const char *end;

        if (t->nseeds == TSE_REDIS_MAX_SEEDS)
            return tse_error_set(err, TSE_INVALID, FIELD,
                                 "a cluster seed list has at most %d nodes", TSE_REDIS_MAX_SEEDS);
        seed = &t->seeds[t->nseeds++];
        seed->port = 6379;
        st = parse_host(s, &s, seed->host, ":,/?#", err);
        if (st != TSE_OK)
            return st;
        if (*s == ':') {
            end = s + 1 + strcspn(s + 1, ",/?#");
            if (!parse_number(s + 1, end, 1, 65535, &seed->port))
                return tse_error_set(err, TSE_INVALID, FIELD,
                                     "port of seed %d must be a number in 1..65535", t->nseeds);
            s = end;
        }
        if (*s != ',')
            break;
        s++;
    }
    if (strcmp(s, "/") == 0 || strcmp(s, "/0") == 0)
        s += strlen(s);
    else if (*s == '/')
        return tse_error_set(err, TSE_INVALID, FIELD, "a cluster has only db 0");
    if (*s != '\0')
        return tse_error_set(err, TSE_INVALID, FIELD,
                             "unexpected \"%.32s\" after the seed list (no query or options "
                             "allowed)",
                             s);
    memcpy(t->host, t->seeds[0].host, sizeof(t->host));
    t->port = t->seeds[0].port;
    t->cluster = true;
    return TSE_OK;
}

/* ":port" and "/db" after the host. */
static tse_status parse_port_db(const char *s, tse_redis_target *t, tse_error *err)
{
    const char *end;

    if (*s == ':') {
        end = s + 1 + strcspn(s + 1, "/?#");
        if (!parse_number(s + 1, end, 1, 65535, &t->port))
            return tse_error_set(err, TSE_INVALID, FIELD, "port must be a number in 1..65535");
        s = end;
    }
    if (*s == '/') {
        end = s + 1 + strcspn(s + 1, "?#");
        if (end > s + 1 && !parse_number(s + 1, end, 0, INT_MAX, &t->db))
            return tse_error_set(err, TSE_INVALID, FIELD, "db must be a non-negative number");
        s = end;
    }
    if (*s != '\0')
        return tse_error_set(err, TSE_INVALID, FIELD,
                             "unexpected \"%.32s\" after the host (no query or options allowed)",
                             s);
    return TSE_OK;
}

tse_status tse_redis_url_parse(const char *url, tse_redis_target *out, tse_error *err)
{
    tse_redis_target t = {.port = 6379};
    const char *s, *at;
    bool cluster = false;
    tse_status st;

    if (url == NULL || url[0] == '\0')
        return tse_error_set(err, TSE_INVALID, FIELD, "Redis URL is empty");
    if (strncasecmp(url, "rediss://", 9) == 0)
        return tse_error_set(err, TSE_INVALID, FIELD,
                             "scheme rediss:// (TLS) is not supported; use redis://");
    if (strncasecmp(url, "redis+cluster://", 16) == 0) {
        cluster = true;
        s = url + 16;
    } else if (strncasecmp(url, "redis://", 8) == 0)
        s = url + 8;
    else
        return tse_error_set(err, TSE_INVALID, FIELD,
                             "scheme must be redis:// or redis+cluster://");
    at = strrchr(s, '@');
    if (at != NULL) {
        st = parse_credentials(s, at, &t, err);
        if (st != TSE_OK)
            return st;
        s = at + 1;
    }
    if (cluster) {
        st = parse_seeds(s, &t, err);
    } else {
        st = parse_host(s, &s, t.host, ":/?#", err);
        if (st == TSE_OK)
            st = parse_port_db(s, &t, err);
    }
    if (st != TSE_OK)
        return st;
    *out = t;
    return TSE_OK;
}
