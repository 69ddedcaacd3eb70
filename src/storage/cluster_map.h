/*
 * cluster_map.h - which Redis Cluster node owns which hash slot, built from
 * a CLUSTER SLOTS or CLUSTER SHARDS reply, and the parser of the -MOVED and
 * -ASK redirections a node answers for a slot it does not serve.
 *
 * No I/O: replies in (hiredis redisReply, decoded by the caller), values
 * out, so every function is testable and fuzzable on bytes. A map is not
 * thread-safe: one owner builds it, reads it and destroys it (a refresh
 * builds a new map and swaps it in, so a bad reply never spoils a good map).
 * The cluster connection (rconn.h) routes through it.
 */
#ifndef TSE_STORAGE_CLUSTER_MAP_H
#define TSE_STORAGE_CLUSTER_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

struct redisReply;

/* Most nodes a map holds (Redis advises clusters of at most 1000 nodes). */
#define TSE_CLUSTER_MAX_NODES 2048
/* The slot owner of a slot no node serves. */
#define TSE_CLUSTER_NO_NODE   0xffffu

/* One node of the cluster, as the map knows it. */
typedef struct tse_cluster_node {
    char host[256]; /* IP or hostname, without brackets */
    int port;
    bool master;
    int replicas; /* a master's replicas the reply listed (whatever their health) */
} tse_cluster_node;

typedef struct tse_cluster_map tse_cluster_map;

/*
 * Builds a map from a CLUSTER SLOTS reply (RESP2 or RESP3). A node whose
 * endpoint is NULL or "" is at conn_host (the host the reply came from, as
 * Redis documents); one whose endpoint is "?" (unknown) is left out, and so
 * are the slots it masters. TSE_INVALID (field "CLUSTER SLOTS") on a reply
 * of the wrong shape, out untouched. Caller destroys *out.
 */
tse_status tse_cluster_map_from_slots(const struct redisReply *reply, const char *conn_host,
                                      tse_cluster_map **out, tse_error *err);

/*
 * The same from a CLUSTER SHARDS reply (Redis >= 7.0): each shard's slot
 * ranges belong to its node whose role is "master"; a node's address is its
 * "endpoint" (else "ip"), its "port" (a TLS-only node, without "port", is
 * left out). Field "CLUSTER SHARDS" on errors.
 */
tse_status tse_cluster_map_from_shards(const struct redisReply *reply, const char *conn_host,
                                       tse_cluster_map **out, tse_error *err);

/* Frees m; NULL is a no-op. */
void tse_cluster_map_destroy(tse_cluster_map *m);

/* Number of nodes (masters and replicas) and node i (< count). Borrowed:
 * valid while m lives and is not changed. */
size_t tse_cluster_map_node_count(const tse_cluster_map *m);
const tse_cluster_node *tse_cluster_map_node(const tse_cluster_map *m, size_t i);

/* The index of the node serving slot (< TSE_KEY_SLOTS), TSE_CLUSTER_NO_NODE
 * when none does. */
unsigned tse_cluster_map_slot_owner(const tse_cluster_map *m, unsigned slot);

/* The node serving key (len bytes, hash tags honoured), NULL when none
 * does. Borrowed as for tse_cluster_map_node. */
const tse_cluster_node *tse_cluster_map_node_for_key(const tse_cluster_map *m, const char *key,
                                                     size_t len);

/* How many of the 16384 slots have an owner (16384: the map covers all). */
size_t tse_cluster_map_slots_covered(const tse_cluster_map *m);

/*
 * Records that host:port now masters slot, as a MOVED says, adding the node
 * when the map does not know it. TSE_NOMEM (or TSE_INVALID beyond
 * TSE_CLUSTER_MAX_NODES nodes, or for a bad slot/port), m unchanged.
 */
tse_status tse_cluster_map_set_slot(tse_cluster_map *m, unsigned slot, const char *host, int port,
                                    tse_error *err);

/* -------------------------------------------------------------------------
 * Redirections
 * ---------------------------------------------------------------------- */

typedef enum tse_cluster_redirect_kind {
    TSE_REDIRECT_NONE = 0, /* not a (well-formed) redirection */
    TSE_REDIRECT_MOVED,    /* the slot lives there now: update the map, retry */
    TSE_REDIRECT_ASK,      /* this once: ASKING then the command, map unchanged */
} tse_cluster_redirect_kind;

typedef struct tse_cluster_redirect {
    tse_cluster_redirect_kind kind;
    unsigned slot;
    char host[256];
    int port;
} tse_cluster_redirect;

/*
 * Parses an error reply's text (len bytes, with or without the leading '-'
 * of the wire) "MOVED <slot> <host>:<port>" or "ASK <slot> <host>:<port>".
 * The host is the text before the last ':': "::1:7000" (as Redis prints an
 * IPv6 address), "[::1]:7000", a hostname or an IP; an empty host (":7000")
 * means conn_host, the host the error came from. Anything else, including a
 * slot outside 0..16383, a port outside 1..65535, a host "?" or longer than
 * 255 bytes, yields TSE_REDIRECT_NONE; *out is set either way.
 */
tse_cluster_redirect_kind tse_cluster_redirect_parse(const char *text, size_t len,
                                                     const char *conn_host,
                                                     tse_cluster_redirect *out);

#endif
