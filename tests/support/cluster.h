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

#endif
