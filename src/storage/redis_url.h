/*
 * redis_url.h - where and how to reach Redis (a tse_redis_target), parsed
 * from REDIS_URL (redis_url.c).
 *
 * Pure: no I/O, no state; reentrant.
 */
#ifndef TSE_STORAGE_REDIS_URL_H
#define TSE_STORAGE_REDIS_URL_H

#include <stdbool.h>

#include "common/status.h"

/* Most seeds a redis+cluster:// URL may list: a few are enough to find the
 * cluster (each seed answers for all of it); more is a mistake. */
#define TSE_REDIS_MAX_SEEDS 16

/* One host:port of a cluster seed list. */
typedef struct tse_redis_seed {
    char host[256];
    int port;
} tse_redis_seed;

/* Where and how to reach Redis; parsed from a redis:// or redis+cluster://
 * URL. */
typedef struct tse_redis_target {
    char host[256];     /* cluster: the first seed's */
    int port;           /* cluster: the first seed's */
    char username[128]; /* empty: AUTH with password only */
    char password[256]; /* empty: no AUTH; cluster: every node's */
    int db;             /* SELECT when non-zero; always 0 in a cluster */
    bool cluster;       /* redis+cluster://: seeds[0..nseeds) are set */
    int nseeds;
    tse_redis_seed seeds[TSE_REDIS_MAX_SEEDS];
} tse_redis_target;

/*
 * Parses "redis://[[user]:password@]host[:port][/db]" or, for Redis Cluster,
 * "redis+cluster://[[user]:password@]host[:port][,host[:port]...][/0]" (a
 * seed list of 1..TSE_REDIS_MAX_SEEDS nodes; no db but 0). Defaults: port
 * 6379, db 0. Percent-escapes in user and password are decoded. TSE_INVALID
 * with field "redis_url" and a message naming what is wrong otherwise.
 */
tse_status tse_redis_url_parse(const char *url, tse_redis_target *out, tse_error *err);

#endif
