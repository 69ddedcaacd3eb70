/*
 * harness.h - real processes for integration tests: a redis-server on a
 * loopback port of its own with its data in a scratch folder, and the event
 * service binary pointed at it.
 *
 * Every start has its stop; stops are safe on NULL and on processes that
 * already died. Processes are started in their own process group and killed
 * at test-process exit should a test abort midway.
 *
 * Ports come from ports.h: claimed for the test process (no other test
 * process and no outgoing connection gets them) until it exits, so a port
 * stays the test's across a server's stop and restart. A start succeeds
 * only once the very process it spawned listens on its port (not merely
 * once something accepts connections there).
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

/*
 * A loopback TCP port nothing listens on, claimed for this test process
 * until it exits (tse_test_port_claim): for a server a test starts itself,
 * or as an address where nothing listens. -1 when none is left.
 */
int tse_test_free_port(void);

/*
 * The exit code in a wait status (of waitpid, system(), pclose()). Fails
 * the calling cmocka test, saying so, when the command was killed by a
 * signal (a crash must never read as an exit code: WEXITSTATUS of it is 0)
 * or could not be run (status -1). A shell that did not exec the command
 * (it was not the last of `sh -c`) reports its signal N as exit code
 * 128 + N instead.
 */
int tse_test_exit_code(int status);

/* Starts redis-server (AOF everysec when aof) on a claimed port and waits
 * until that process listens there (and on its cluster bus port) and
 * answers PING. */
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
 * --cluster-node-timeout node_timeout_ms (0: 5000) and
 * --cluster-replica-no-failover yes (a test that kills a master and wants
 * its replica promoted sets it to no on that replica). */
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
 * printable reply (caller frees), NULL when Redis is unreachable or gives
 * no reply within 10 s. On a
 * cluster node or front a MOVED or ASK answer is followed (to the node it
 * names, ASKING first for ASK), so a command on one key reaches its
 * master. */
char *tse_test_redis_cmd(const tse_test_redis *r, const char *fmt, ...);

/* The same, returning hiredis's reply (caller frees with
 * freeReplyObject); NULL when Redis is unreachable. */
struct redisReply *tse_test_redis_reply(const tse_test_redis *r, const char *fmt, ...);

/*
 * The servers that hold r's keys: r itself for a server (or a one-node
 * cluster), every running master for a cluster's front (for commands over
 * all keys: KEYS, SCAN, DBSIZE). Up to max into out; returns how many.
 */
int tse_test_redis_masters(const tse_test_redis *r, const tse_test_redis **out, int max);

/*
 * Starts the service binary ($TSE_SERVICE_BIN) listening on a claimed
 * loopback port with REDIS_URL of r, plus extra "--key=value" arguments
 * (NULL-terminated), and waits until that process listens on its port and
 * the port accepts connections. NULL (the reason and its log's end on
 * stderr) when it exited or did not listen within 30 s.
 */
tse_test_service *tse_test_service_start(const tse_test_redis *r, const char *const *extra_args);
/* The same on a given port (to restart a service where clients point): one
 * of tse_test_free_port, or of a service started before. */
tse_test_service *tse_test_service_start_on(const tse_test_redis *r, int port,
                                            const char *const *extra_args);
/*
 * Starts the REST bridge (tracseq-rest-bridge beside $TSE_SERVICE_BIN, in
 * rest-bridge/) on a claimed loopback port in front of service_addr, plus
 * extra "--key=value" arguments, and waits as the service's start does.
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
