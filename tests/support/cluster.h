/*
 * cluster.h - a real Redis Cluster on loopback for integration tests
 * (cluster.c): started with replicas, its slots moved from master to master
 * (the steps of a live resharding, one at a time or all), and a master
 * killed with SIGKILL until its replica takes over.
 *
 * Every helper waits for the state it brings about, as every node sees it,
 * so a test that follows sees no stale node; none sleeps a fixed time.
 * Single-threaded; nodes are tse_test_redis (harness.h), stopped by
 * tse_test_redis_cluster_stop.
 */
#ifndef TSE_TEST_CLUSTER_H
#define TSE_TEST_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "harness.h"

/*
 * Starts masters * (1 + replicas) nodes (at most TSE_TEST_CLUSTER_MAX) with
 * --cluster-node-timeout node_timeout_ms, joins them with `redis-cli
 * --cluster create ... --cluster-replicas <replicas> --cluster-yes`, and
 * waits until every node says cluster_state:ok and knows every other, and
 * every replica's link to its master is up. Coverage need not be full
 * (cluster-require-full-coverage no): while one master is down, the others
 * go on serving their slots. NULL (everything stopped, the reason on
 * stderr) on failure.
 */
tse_test_redis_cluster *tse_test_redis_cluster_start_replicated(int masters, int replicas,
                                                                int node_timeout_ms);

/* The index in c->nodes of the node on port, or -1. */
int tse_test_cluster_node_of_port(const tse_test_redis_cluster *c, int port);

/* The index of a replica of master i, or -1. */
int tse_test_cluster_replica_of(const tse_test_redis_cluster *c, int master);

/* CONFIG SET name value on node i; false (reason on stderr) on failure. */
bool tse_test_cluster_config_set(const tse_test_redis_cluster *c, int i, const char *name,
                                 const char *value);

/* Whether node i runs and is a master. */
bool tse_test_cluster_is_master(const tse_test_redis_cluster *c, int i);

/* The index of the master serving slot as the first running node sees it,
 * or -1. */
int tse_test_cluster_slot_master(const tse_test_redis_cluster *c, unsigned slot);

/*
 * The steps of moving slot from its master to master `to`: begin (to
 * IMPORTING, the owner MIGRATING), move up to max_keys of its keys (MIGRATE;
 * returns how many moved, -1 on failure), finish (SETSLOT NODE on every
 * master, then wait until every running node says `to` serves it).
 * migrate_slot does all three. False (the reason on stderr) on failure.
 */
bool tse_test_cluster_slot_begin(tse_test_redis_cluster *c, unsigned slot, int to);
int tse_test_cluster_slot_move_keys(tse_test_redis_cluster *c, unsigned slot, int to, int max_keys);
bool tse_test_cluster_slot_finish(tse_test_redis_cluster *c, unsigned slot, int to);
bool tse_test_cluster_migrate_slot(tse_test_redis_cluster *c, unsigned slot, int to);

/*
 * Kills master i with SIGKILL (its pid becomes 0; the node stays in
 * c->nodes) and returns at once.
 */
void tse_test_cluster_kill(tse_test_redis_cluster *c, int i);

/*
 * Waits until every running node says a running master serves slot and
 * cluster_state:ok, at most timeout_ms; returns that master's index, -1 on
 * timeout (reason on stderr). After tse_test_cluster_kill of the slot's
 * master: the promoted replica.
 */
int tse_test_cluster_wait_slot_served(const tse_test_redis_cluster *c, unsigned slot,
                                      int timeout_ms);

/*
 * A front of c (harness.h: tse_test_redis.whole) that takes c over: its url
 * is redis+cluster:// with every node as a seed (the service's REDIS_URL),
 * tse_test_redis_cmd on it reaches the master of a command's key, and
 * tse_test_redis_stop of it stops every node. NULL when c is NULL (so
 * tse_test_cluster_front(tse_test_redis_cluster_start(3)) is safe) or out
 * of memory (c stopped).
 */
tse_test_redis *tse_test_cluster_front(tse_test_redis_cluster *c);

/* The index of the master serving key's slot (storage/keys.h's
 * tse_key_slot), as the first running node sees it; -1 when none. */
int tse_test_cluster_key_master(const tse_test_redis_cluster *c, const char *key);

/* The index of the first running master other than i, -1 when none. */
int tse_test_cluster_other_master(const tse_test_redis_cluster *c, int i);

/*
 * A live resharding by Redis's own tool: `redis-cli --cluster reshard
 * <node of from> --cluster-from <id of from> --cluster-to <id of to>
 * --cluster-slots n --cluster-yes --cluster-pipeline 1` in a child
 * process, which returns at once, so the test loads the cluster meanwhile.
 * One key per MIGRATE: a slot holding many keys stays half moved (its
 * moved keys answered ASK) for as long as it takes to move them one by
 * one, a window the load can meet. The tool takes the n
 * lowest slots that from serves (tse_test_cluster_lowest_slots lists
 * them). At most TSE_TEST_RESHARD_MAX slots.
 */
#define TSE_TEST_RESHARD_MAX 2048
typedef struct tse_test_reshard tse_test_reshard;

/* NULL (the reason on stderr) when the tool cannot be started. */
tse_test_reshard *tse_test_cluster_reshard_start(tse_test_redis_cluster *c, int from, int to,
                                                 int n);
/* The n lowest slots master from serves now (those the reshard above
 * would move) into slots, ascending; returns how many (fewer when it
 * serves fewer), -1 when no node answers. */
int tse_test_cluster_lowest_slots(const tse_test_redis_cluster *c, int from, int n,
                                  unsigned *slots);
/* Whether the tool is still running. */
bool tse_test_cluster_reshard_running(tse_test_reshard *r);
/*
 * Waits (at most timeout_ms) for the tool to exit, then for every running
 * node to see master `to` serve every slot it moved, and frees r. True
 * when the tool exited 0 and the nodes agree; otherwise false, with the
 * tool's output on stderr (it is killed on timeout).
 */
bool tse_test_cluster_reshard_finish(tse_test_reshard *r, int timeout_ms);

/*
 * Kills master i with SIGKILL and waits (at most timeout_ms) until every
 * running node sees a running master (its promoted replica) serve the slots
 * i served; returns that master's index, -1 on timeout (reason on stderr).
 */
int tse_test_cluster_kill_master(tse_test_redis_cluster *c, int i, int timeout_ms);

#endif
