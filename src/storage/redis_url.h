/*
 * redis_url.h - where and how to reach Redis (a tse_redis_target), parsed
 * from REDIS_URL (redis_url.c).
 *
 * Pure: no I/O, no state; reentrant.
 */
#ifndef TSE_STORAGE_REDIS_URL_H
#define TSE_STORAGE_REDIS_URL_H

#include "common/status.h"

/* Where and how to reach Redis; parsed from a redis:// URL. */
typedef struct tse_redis_target {
    char host[256];
    int port;
    char username[128]; /* empty: AUTH with password only */
    char password[256]; /* empty: no AUTH */
    int db;             /* SELECT when non-zero */
} tse_redis_target;

/*
 * Parses "redis://[[user]:password@]host[:port][/db]". Defaults: port 6379,
 * db 0. Percent-escapes in user and password are decoded. TSE_INVALID with a
 * message naming what is wrong otherwise.
 */
tse_status tse_redis_url_parse(const char *url, tse_redis_target *out, tse_error *err);

#endif
