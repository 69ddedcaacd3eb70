/*
 * harness.h - real processes for integration tests: a redis-server on an
 * ephemeral loopback port with its data in a scratch folder, and the event
 * service binary pointed at it.
 *
 * Every start has its stop; stops are safe on NULL and on processes that
 * already died. Processes are started in their own process group and killed
 * at test-process exit should a test abort midway.
 */
#ifndef TSE_TEST_HARNESS_H
#define TSE_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct redisReply;
struct tse_test_redis_cluster;

typedef struct tse_test_redis {
    pid_t pid;
    int port;
    char dir[256]; /* scratch data folder */
    char url[128]; /* redis://127.0.0.1:<port>; a cluster's front: redis+cluster://<nodes> */
    bool aof;
    char appendfsync[16]; /* AOF fsync policy: everysec unless started otherwise */
    bool cluster;         /* --cluster-enabled yes (nodes.conf in dir) */
    int bus_port;         /* cluster: its cluster bus port (port + 10000 may not exist) */
    int node_timeout_ms;  /* cluster: --cluster-node-timeout (0: 5000) */
    /* A cluster's front (tse_test_cluster_front): no process of its own;
     * commands go to a running node of whole and follow redirections, and
     * stopping it stops the whole cluster. NULL for a server. */
    struct tse_test_redis_cluster *whole;
} tse_test_redis;

/* Most nodes of a test cluster. */
#define TSE_TEST_CLUSTER_MAX 6

/* A Redis Cluster on loopback, each node a tse_test_redis (cluster.c has
 * the helpers that start, reshape and break it). A killed node stays in
 * nodes[] with pid 0. */
typedef struct tse_test_redis_cluster {
    int n;
    tse_test_redis *nodes[TSE_TEST_CLUSTER_MAX];
} tse_test_redis_cluster;

/* One of our server processes: the event service or the REST bridge. */
typedef struct tse_test_service {
    pid_t pid;
    int port;
    char addr[64]; /* 127.0.0.1:<port> */
    char log[256]; /* its stderr, for diagnosis */
} tse_test_service;

/* A free loopback TCP port. */
int tse_test_free_port(void);

/* Starts redis-server (AOF everysec when aof) and waits until it answers PING. */
tse_test_redis *tse_test_redis_start(bool aof);
/*
 * What tse_test_redis_start starts is chosen by TSE_TEST_REDIS: unset, a
 * server; "one-node-cluster", tse_test_redis_start_one_node_cluster;
 * "cluster", the front of a 3-master cluster (tse_test_cluster_front: the
 * service gets its redis+cluster:// url, and tse_test_redis_cmd follows
 * MOVED and ASK). Such a front cannot be killed or restarted.
 */
/* The same with AOF on and the given appendfsync policy ("always",
 * "everysec", "no"), kept across restarts. */
tse_test_redis *tse_test_redis_start_aof(const char *appendfsync);
/* SIGKILL, as in a crash; the struct stays usable for restart. */
void tse_test_redis_kill(tse_test_redis *r);
/* Starts again on the same port and folder. Returns false on failure. */
bool tse_test_redis_restart(tse_test_redis *r);
/* Stops (SIGTERM, then SIGKILL), removes the folder, frees. */
void tse_test_redis_stop(tse_test_redis *r);

/* Starts one cluster-enabled redis-server (not joined to anything) with
 * --cluster-node-timeout node_timeout_ms (0: 5000). */
tse_test_redis *tse_test_redis_start_cluster_node(int node_timeout_ms);

/*
 * Starts masters (3..TSE_TEST_CLUSTER_MAX) cluster-enabled redis-servers,
 * each on its own port and folder, joins them with `redis-cli --cluster
 * create` (slots spread evenly, no replicas) and waits until every node
 * says cluster_state:ok. NULL (everything stopped) on failure. The
 * helpers of replicas, slot migration and failover are in cluster.h.
 */
tse_test_redis_cluster *tse_test_redis_cluster_start(int masters);
/* Stops every node and frees; NULL is a no-op. */
void tse_test_redis_cluster_stop(tse_test_redis_cluster *c);

/*
 * Starts a Redis Cluster of one master that owns every slot (CLUSTER
 * ADDSLOTSRANGE 0 16383) and waits for cluster_state:ok: a client without
 * slot routing reaches every key through its redis:// url, and Redis still
 * answers CROSSSLOT to a command, or a script, whose keys are in several
 * slots (not to a script reading keys it did not declare: that only fails
 * on a node that does not serve them). Stop with tse_test_redis_stop.
 */
tse_test_redis *tse_test_redis_start_one_node_cluster(void);

/* Runs a redis-cli-like command on the test server; returns a malloc'd
 * printable reply (caller frees), NULL when Redis is unreachable. On a
 * cluster node or front a MOVED or ASK answer is followed (to the node it
 * names, ASKING first for ASK), so a command on one key reaches its
 * master. */
char *tse_test_redis_cmd(const tse_test_redis *r, const char *fmt, ...);

/* The same, returning hiredis's reply (caller frees with
 * freeReplyObject), waiting up to 10 s for it (not 1 s); NULL when Redis is
 * unreachable. */
struct redisReply *tse_test_redis_reply(const tse_test_redis *r, const char *fmt, ...);

/*
 * The servers that hold r's keys: r itself for a server (or a one-node
 * cluster), every running master for a cluster's front (for commands over
 * all keys: KEYS, SCAN, DBSIZE). Up to max into out; returns how many.
 */
int tse_test_redis_masters(const tse_test_redis *r, const tse_test_redis **out, int max);

/*
 * Starts the service binary ($TSE_SERVICE_BIN) listening on a free loopback
 * port with REDIS_URL of r, plus extra "--key=value" arguments (NULL-
 * terminated), and waits until its port accepts connections.
 */
tse_test_service *tse_test_service_start(const tse_test_redis *r, const char *const *extra_args);
/* The same on a given port (to restart a service where clients point). */
tse_test_service *tse_test_service_start_on(const tse_test_redis *r, int port,
                                            const char *const *extra_args);
/*
 * Starts the REST bridge (tracseq-rest-bridge beside $TSE_SERVICE_BIN, in
 * rest-bridge/) on a free loopback port in front of service_addr, plus
 * extra "--key=value" arguments, and waits until it accepts connections.
 * Stop it with tse_test_service_stop.
 */
tse_test_service *tse_test_bridge_start(const char *service_addr, const char *const *extra_args);
/* The same on a given port (to restart a bridge where clients point). */
tse_test_service *tse_test_bridge_start_on(const char *service_addr, int port,
                                           const char *const *extra_args);
/* The bridge binary's path into buf. */
void tse_test_bridge_path(char *buf, size_t len);
/* SIGTERM and wait; returns the exit status (0 for a clean exit), frees. */
int tse_test_service_stop(tse_test_service *s);
/* The same, telling how long the process took to exit after the SIGTERM
 * (*elapsed_ms; it is SIGKILLed after 15 s). */
int tse_test_service_stop_timed(tse_test_service *s, long long *elapsed_ms);

/* SIGKILL, as in a crash, and wait; frees. */
void tse_test_service_kill(tse_test_service *s);

/* Milliseconds on the monotonic clock. */
long long tse_test_now_ms(void);

#endif
