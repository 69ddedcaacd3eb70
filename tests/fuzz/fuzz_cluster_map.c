/*
 * fuzz_cluster_map.c - libFuzzer target for the Redis Cluster reply parsers
 * of src/storage/cluster_map.c: the slot map from CLUSTER SLOTS and CLUSTER
 * SHARDS replies, and the MOVED/ASK redirection parser. These read what a
 * cluster node sends, so a broken or hostile node must not crash us.
 *
 * The input is RESP bytes (RESP2 or RESP3), decoded by hiredis's reader as
 * off the wire; every reply it yields goes to both map builders and, when
 * it is an error or a string, to the redirection parser. The whole input
 * also goes to the redirection parser as raw text.
 *
 * Checked besides memory safety: a built map has every slot's owner either
 * none or a master node below the node count, each node with a non-empty
 * NUL-terminated host and a port in 1..65535; a failure is TSE_INVALID (or
 * TSE_NOMEM) with the reply's command as field and leaves out NULL; a
 * parsed redirection has a slot below 16384, a port in 1..65535 and a
 * non-empty host.
 */
#include <hiredis/hiredis.h>
#include <stdbool.h>

#include "fuzz_support.h"
#include "storage/cluster_map.h"
#include "storage/keys.h"

static void check_map(const tse_cluster_map *m)
{
    size_t n = tse_cluster_map_node_count(m);

    for (size_t i = 0; i < n; i++) {
        const tse_cluster_node *node = tse_cluster_map_node(m, i);
        FUZZ_CHECK(memchr(node->host, '\0', sizeof(node->host)) && node->host[0] != '\0',
                   "node %zu host", i);
        FUZZ_CHECK(node->port >= 1 && node->port <= 65535, "node %zu port %d", i, node->port);
    }
    for (unsigned s = 0; s < TSE_KEY_SLOTS; s++) {
        unsigned owner = tse_cluster_map_slot_owner(m, s);
        FUZZ_CHECK(owner == TSE_CLUSTER_NO_NODE ||
                       (owner < n && tse_cluster_map_node(m, owner)->master),
                   "slot %u owner %u of %zu nodes", s, owner, n);
    }
    (void)tse_cluster_map_node_for_key(m, "k", 1);
}

static void check_build(const redisReply *r,
                        tse_status (*from)(const struct redisReply *, const char *,
                                           tse_cluster_map **, tse_error *),
                        const char *field)
{
    tse_cluster_map *m = NULL;
    tse_error err;

    tse_error_clear(&err);
    if (from(r, "conn", &m, &err) == TSE_OK) {
        FUZZ_CHECK(m != NULL, "no map");
        check_map(m);
        /* a MOVED to a new node keeps the invariants */
        if (tse_cluster_map_set_slot(m, 7, "moved", 7000, &err) == TSE_OK)
            check_map(m);
        tse_cluster_map_destroy(m);
    } else {
        FUZZ_CHECK(m == NULL, "map set on failure");
        FUZZ_CHECK((err.code == TSE_INVALID || err.code == TSE_NOMEM) &&
                       strcmp(err.field, field) == 0 && err.message[0] != '\0',
                   "error %d %s: %s", err.code, err.field, err.message);
    }
}

static void check_redirect(const char *text, size_t len)
{
    tse_cluster_redirect r;
    tse_cluster_redirect_kind kind = tse_cluster_redirect_parse(text, len, "conn", &r);

    FUZZ_CHECK(kind == r.kind, "kind %d vs %d", kind, r.kind);
    if (kind == TSE_REDIRECT_NONE)
        return;
    FUZZ_CHECK(kind == TSE_REDIRECT_MOVED || kind == TSE_REDIRECT_ASK, "kind %d", kind);
    FUZZ_CHECK(r.slot < TSE_KEY_SLOTS, "slot %u", r.slot);
    FUZZ_CHECK(r.port >= 1 && r.port <= 65535, "port %d", r.port);
    FUZZ_CHECK(memchr(r.host, '\0', sizeof(r.host)) && r.host[0] != '\0', "host");
}

/*
 * Whether data declares an array of more than 100,000 elements: hiredis
 * 0.14 (Debian 12) allocates the element table as declared, before any
 * element arrives, so such inputs only measure hiredis's memory, not ours
 * (on a live connection this is hiredis's limit to set, not the map's).
 */
static bool declares_huge_aggregate(const uint8_t *data, size_t size)
{
    for (size_t i = 0; i < size; i++) {
        long n = 0;
        size_t j = i + 1;

        if (data[i] != '*' && data[i] != '%' && data[i] != '~' && data[i] != '>' && data[i] != '|')
            continue;
        while (j < size && data[j] >= '0' && data[j] <= '9' && n <= 100000)
            n = n * 10 + (data[j++] - '0');
        if (n > 100000)
            return true;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = fuzz_strndup(data, size); /* exact bytes, so ASan sees overreads */
    redisReader *reader = redisReaderCreate();
    void *reply;

    if (reader == NULL)
        abort();
    check_redirect(copy, size);
    if (!declares_huge_aggregate(data, size) && redisReaderFeed(reader, copy, size) == REDIS_OK) {
        for (int i = 0; i < 16; i++) {
            redisReply *r;
            reply = NULL;
            if (redisReaderGetReply(reader, &reply) != REDIS_OK || reply == NULL)
                break;
            r = reply;
            check_build(r, tse_cluster_map_from_slots, "CLUSTER SLOTS");
            check_build(r, tse_cluster_map_from_shards, "CLUSTER SHARDS");
            if (r->type == REDIS_REPLY_ERROR || r->type == REDIS_REPLY_STRING ||
                r->type == REDIS_REPLY_STATUS)
                check_redirect(r->str, r->len);
            freeReplyObject(r);
        }
    }
    redisReaderFree(reader);
    free(copy);
    return 0;
}
