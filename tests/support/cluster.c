/*
 * cluster.c - a real Redis Cluster on loopback for integration tests; see
 * cluster.h (and harness.h for the masters-only start).
 *
 * Nodes are asked over a fresh hiredis connection per question (a killed
 * node must not leave a broken connection behind); a node that does not
 * answer counts as not running. Slots are computed by storage/keys.h's
 * tse_key_slot, the service's own (test_storage_keys checks it against
 * Redis's CLUSTER KEYSLOT).
 */
#include "cluster.h"

#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "storage/keys.h"
#include "wait.h"

/* How long a cluster may take to settle (create, migrate, agree). */
#define SETTLE_MS 30000

/* -------------------------------------------------------------------------
 * Asking nodes
 * ---------------------------------------------------------------------- */

/* The reply of node r to a command, NULL when it does not answer. Caller
 * frees. */
static redisReply *node_command(const tse_test_redis *r, const char *fmt, ...)
{
    /* Generous: a node slow to answer on a loaded host is no dead node
     * (a killed one refuses at once). */
    struct timeval tv = {10, 0};
    redisContext *ctx;
    redisReply *rep;
    va_list ap;

    if (r == NULL || r->pid <= 0)
        return NULL;
    ctx = redisConnectWithTimeout("127.0.0.1", r->port, tv);
    if (ctx == NULL || ctx->err) {
        redisFree(ctx);
        return NULL;
    }
    redisSetTimeout(ctx, tv);
    va_start(ap, fmt);
    rep = redisvCommand(ctx, fmt, ap);
    va_end(ap);
    redisFree(ctx);
    return rep;
}

/* Whether node r answers the command with anything but an error; the
 * error goes to stderr. */
static bool node_ok(const tse_test_redis *r, const char *what, redisReply *rep)
{
    bool ok = rep != NULL && rep->type != REDIS_REPLY_ERROR;

    if (!ok)
        fprintf(stderr, "redis :%d: %s: %s\n", r->port, what, rep != NULL ? rep->str : "no answer");
    if (rep != NULL)
        freeReplyObject(rep);
    return ok;
}

/* Whether `<cmd> <sub>` (CLUSTER INFO, INFO replication) of node r says
 * needle. */
static bool info_has(const tse_test_redis *r, const char *cmd, const char *sub, const char *needle)
{
    redisReply *rep = node_command(r, "%s %s", cmd, sub);
    bool has = rep != NULL && rep->type == REDIS_REPLY_STRING && strstr(rep->str, needle) != NULL;

    if (rep != NULL)
        freeReplyObject(rep);
    return has;
}

static bool node_id(const tse_test_redis *r, char *out, size_t len)
{
    redisReply *rep = node_command(r, "CLUSTER MYID");
    bool ok = rep != NULL && rep->type == REDIS_REPLY_STRING;

    if (ok)
        snprintf(out, len, "%s", rep->str);
    if (rep != NULL)
        freeReplyObject(rep);
    return ok;
}

int tse_test_cluster_node_of_port(const tse_test_redis_cluster *c, int port)
{
    for (int i = 0; i < c->n; i++)
        if (c->nodes[i]->port == port)
            return i;
    return -1;
}

int tse_test_cluster_replica_of(const tse_test_redis_cluster *c, int master)
{
    redisReply *rep = node_command(c->nodes[master], "INFO replication");
    const char *at;
    int port = -1;

    if (rep != NULL && rep->type == REDIS_REPLY_STRING &&
        (at = strstr(rep->str, "slave0:")) != NULL && (at = strstr(at, "port=")) != NULL)
        port = atoi(at + 5);
    if (rep != NULL)
        freeReplyObject(rep);
    return port > 0 ? tse_test_cluster_node_of_port(c, port) : -1;
}

bool tse_test_cluster_config_set(const tse_test_redis_cluster *c, int i, const char *name,
                                 const char *value)
{
    return node_ok(c->nodes[i], "CONFIG SET",
                   node_command(c->nodes[i], "CONFIG SET %s %s", name, value));
}

bool tse_test_cluster_is_master(const tse_test_redis_cluster *c, int i)
{
    return info_has(c->nodes[i], "INFO", "replication", "role:master");
}

/* The master of slot as node r sees it (index), -1 when r does not answer
 * or knows none. */
static int slot_master_seen_by(const tse_test_redis_cluster *c, const tse_test_redis *r,
                               unsigned slot)
{
    redisReply *rep = node_command(r, "CLUSTER SLOTS");
    int owner = -1;

    for (size_t i = 0; rep != NULL && rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++) {
        redisReply *range = rep->element[i];

        if (range->elements >= 3 && (unsigned)range->element[0]->integer <= slot &&
            slot <= (unsigned)range->element[1]->integer)
            owner = tse_test_cluster_node_of_port(c, (int)range->element[2]->element[1]->integer);
    }
    if (rep != NULL)
        freeReplyObject(rep);
    return owner;
}

int tse_test_cluster_slot_master(const tse_test_redis_cluster *c, unsigned slot)
{
    for (int i = 0; i < c->n; i++)
        if (c->nodes[i]->pid > 0)
            return slot_master_seen_by(c, c->nodes[i], slot);
    return -1;
}

int tse_test_cluster_key_master(const tse_test_redis_cluster *c, const char *key)
{
    return tse_test_cluster_slot_master(c, tse_key_slot(key, strlen(key)));
}

int tse_test_cluster_other_master(const tse_test_redis_cluster *c, int i)
{
    for (int j = 0; j < c->n; j++)
        if (j != i && c->nodes[j]->pid > 0 && tse_test_cluster_is_master(c, j))
            return j;
    return -1;
}

/* Marks in owned[] the slots master serves as the first running node sees
 * them; false when no node answers. */
static bool slots_of(const tse_test_redis_cluster *c, int master, bool owned[TSE_KEY_SLOTS])
{
    redisReply *rep = NULL;

    memset(owned, 0, TSE_KEY_SLOTS * sizeof(owned[0]));
    for (int i = 0; i < c->n && rep == NULL; i++)
        if (c->nodes[i]->pid > 0)
            rep = node_command(c->nodes[i], "CLUSTER SLOTS");
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY) {
        if (rep != NULL)
            freeReplyObject(rep);
        return false;
    }
    for (size_t i = 0; i < rep->elements; i++) {
        redisReply *range = rep->element[i];

        if (range->elements >= 3 &&
            tse_test_cluster_node_of_port(c, (int)range->element[2]->element[1]->integer) == master)
            for (long long s = range->element[0]->integer; s <= range->element[1]->integer; s++)
                owned[s] = true;
    }
    freeReplyObject(rep);
    return true;
}

/* -------------------------------------------------------------------------
 * Start and stop
 * ---------------------------------------------------------------------- */

tse_test_redis *tse_test_cluster_front(tse_test_redis_cluster *c)
{
    tse_test_redis *front;
    size_t used;

    if (c == NULL)
        return NULL;
    front = calloc(1, sizeof(*front));
    if (front == NULL) {
        tse_test_redis_cluster_stop(c);
        return NULL;
    }
    front->whole = c;
    front->cluster = true;
    front->pid = c->nodes[0]->pid;
    front->port = c->nodes[0]->port;
    used = (size_t)snprintf(front->url, sizeof(front->url), "redis+cluster://");
    for (int i = 0; i < c->n && used < sizeof(front->url); i++)
        used += (size_t)snprintf(front->url + used, sizeof(front->url) - used, "%s127.0.0.1:%d",
                                 i > 0 ? "," : "", c->nodes[i]->port);
    return front;
}

void tse_test_redis_cluster_stop(tse_test_redis_cluster *c)
{
    if (c == NULL)
        return;
    for (int i = 0; i < c->n; i++)
        tse_test_redis_stop(c->nodes[i]);
    free(c);
}

/* Runs `redis-cli --cluster create` over c's nodes; true when it succeeded. */
static bool cluster_create(const tse_test_redis_cluster *c, int replicas)
{
    char cmd[1024] = "redis-cli --cluster create";
    char log[64];
    int status;

    for (int i = 0; i < c->n; i++)
        snprintf(cmd + strlen(cmd), sizeof(cmd) - strlen(cmd), " 127.0.0.1:%d", c->nodes[i]->port);
    snprintf(log, sizeof(log), "/tmp/tse-cluster-%d.log", (int)getpid());
    snprintf(cmd + strlen(cmd), sizeof(cmd) - strlen(cmd),
             " --cluster-replicas %d --cluster-yes > %s 2>&1", replicas, log);
    status = system(cmd);
    if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "redis-cli --cluster create failed: see %s\n", log);
        return false;
    }
    unlink(log);
    return true;
}

/* Whether node i is settled: cluster_state:ok, every node known, and a
 * replica's link to its master up. */
static bool node_settled(const tse_test_redis_cluster *c, int i)
{
    char known[64];
    redisReply *rep;
    bool replica;

    snprintf(known, sizeof(known), "cluster_known_nodes:%d\r", c->n);
    if (!info_has(c->nodes[i], "CLUSTER", "INFO", "cluster_state:ok") ||
        !info_has(c->nodes[i], "CLUSTER", "INFO", known))
        return false;
    rep = node_command(c->nodes[i], "INFO replication");
    if (rep == NULL)
        return false;
    replica = rep->type == REDIS_REPLY_STRING && strstr(rep->str, "role:slave") != NULL;
    if (replica && strstr(rep->str, "master_link_status:up") == NULL) {
        freeReplyObject(rep);
        return false;
    }
    freeReplyObject(rep);
    return true;
}

static bool all_settled(void *arg)
{
    const tse_test_redis_cluster *c = arg;

    for (int i = 0; i < c->n; i++)
        if (!node_settled(c, i))
            return false;
    return true;
}

static tse_test_redis_cluster *cluster_start(int masters, int replicas, int node_timeout_ms)
{
    tse_test_redis_cluster *c;
    int total = masters * (1 + replicas);

    if (masters < 3 || replicas < 0 || total > TSE_TEST_CLUSTER_MAX)
        return NULL;
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    for (c->n = 0; c->n < total; c->n++) {
        c->nodes[c->n] = tse_test_redis_start_cluster_node(node_timeout_ms);
        if (c->nodes[c->n] == NULL)
            goto fail;
    }
    if (!cluster_create(c, replicas))
        goto fail;
    if (!tse_test_wait_until(all_settled, c, SETTLE_MS, "a cluster of %d nodes settled", c->n))
        goto fail;
    for (int i = 0; i < c->n && replicas > 0; i++)
        if (!tse_test_cluster_config_set(c, i, "cluster-require-full-coverage", "no"))
            goto fail;
    return c;
fail:
    tse_test_redis_cluster_stop(c);
    return NULL;
}

tse_test_redis_cluster *tse_test_redis_cluster_start(int masters)
{
    return cluster_start(masters, 0, 0);
}

tse_test_redis_cluster *tse_test_redis_cluster_start_replicated(int masters, int replicas,
                                                                int node_timeout_ms)
{
    return cluster_start(masters, replicas, node_timeout_ms);
}

/* -------------------------------------------------------------------------
 * Moving a slot
 * ---------------------------------------------------------------------- */

bool tse_test_cluster_slot_begin(tse_test_redis_cluster *c, unsigned slot, int to)
{
    int from = tse_test_cluster_slot_master(c, slot);
    char from_id[64], to_id[64];

    if (from < 0 || from == to || !node_id(c->nodes[from], from_id, sizeof(from_id)) ||
        !node_id(c->nodes[to], to_id, sizeof(to_id))) {
        fprintf(stderr, "slot %u: cannot move from node %d to node %d\n", slot, from, to);
        return false;
    }
    return node_ok(c->nodes[to], "SETSLOT IMPORTING",
                   node_command(c->nodes[to], "CLUSTER SETSLOT %u IMPORTING %s", slot, from_id)) &&
           node_ok(c->nodes[from], "SETSLOT MIGRATING",
                   node_command(c->nodes[from], "CLUSTER SETSLOT %u MIGRATING %s", slot, to_id));
}

int tse_test_cluster_slot_move_keys(tse_test_redis_cluster *c, unsigned slot, int to, int max_keys)
{
    int from = tse_test_cluster_slot_master(c, slot), moved = 0;
    redisReply *keys;

    if (from < 0)
        return -1;
    keys = node_command(c->nodes[from], "CLUSTER GETKEYSINSLOT %u %d", slot, max_keys);
    if (keys == NULL || keys->type != REDIS_REPLY_ARRAY) {
        node_ok(c->nodes[from], "GETKEYSINSLOT", keys);
        return -1;
    }
    for (size_t i = 0; i < keys->elements; i++) {
        redisReply *k = keys->element[i];

        if (!node_ok(c->nodes[from], "MIGRATE",
                     node_command(c->nodes[from], "MIGRATE 127.0.0.1 %d %b 0 5000",
                                  c->nodes[to]->port, k->str, (size_t)k->len))) {
            freeReplyObject(keys);
            return -1;
        }
        moved++;
    }
    freeReplyObject(keys);
    return moved;
}

typedef struct slot_wait {
    const tse_test_redis_cluster *c;
    unsigned slot;
    int owner; /* the owner every running node must see; -1: any running master */
    int seen;
} slot_wait;

/* Whether every running node sees the same running master serve the slot
 * (w->owner when set) and says cluster_state:ok. */
static bool slot_agreed(void *arg)
{
    slot_wait *w = arg;
    int seen = -1;

    for (int i = 0; i < w->c->n; i++) {
        const tse_test_redis *r = w->c->nodes[i];
        int owner;

        if (r->pid <= 0)
            continue;
        owner = slot_master_seen_by(w->c, r, w->slot);
        if (owner < 0 || w->c->nodes[owner]->pid <= 0 || (seen >= 0 && owner != seen) ||
            (w->owner >= 0 && owner != w->owner) ||
            !info_has(r, "CLUSTER", "INFO", "cluster_state:ok"))
            return false;
        seen = owner;
    }
    w->seen = seen;
    return seen >= 0;
}

bool tse_test_cluster_slot_finish(tse_test_redis_cluster *c, unsigned slot, int to)
{
    slot_wait w = {c, slot, to, -1};
    char to_id[64];

    if (!node_id(c->nodes[to], to_id, sizeof(to_id)))
        return false;
    /* The new owner first, so the slot is never without one (Redis's
     * documented order), then every other master. */
    if (!node_ok(c->nodes[to], "SETSLOT NODE",
                 node_command(c->nodes[to], "CLUSTER SETSLOT %u NODE %s", slot, to_id)))
        return false;
    for (int i = 0; i < c->n; i++)
        if (i != to && c->nodes[i]->pid > 0 && tse_test_cluster_is_master(c, i) &&
            !node_ok(c->nodes[i], "SETSLOT NODE",
                     node_command(c->nodes[i], "CLUSTER SETSLOT %u NODE %s", slot, to_id)))
            return false;
    return tse_test_wait_until(slot_agreed, &w, SETTLE_MS, "every node to see slot %u on node %d",
                               slot, to);
}

bool tse_test_cluster_migrate_slot(tse_test_redis_cluster *c, unsigned slot, int to)
{
    int moved;

    if (!tse_test_cluster_slot_begin(c, slot, to))
        return false;
    do
        moved = tse_test_cluster_slot_move_keys(c, slot, to, 100);
    while (moved > 0);
    return moved == 0 && tse_test_cluster_slot_finish(c, slot, to);
}

/* -------------------------------------------------------------------------
 * Resharding with redis-cli
 * ---------------------------------------------------------------------- */

struct tse_test_reshard {
    tse_test_redis_cluster *c;
    pid_t pid;
    int status;
    int to;
    int n;
    unsigned slots[TSE_TEST_RESHARD_MAX]; /* the slots the tool moves */
    char log[64];
};

int tse_test_cluster_lowest_slots(const tse_test_redis_cluster *c, int from, int n, unsigned *slots)
{
    static bool owned[TSE_KEY_SLOTS];
    int found = 0;

    if (!slots_of(c, from, owned))
        return -1;
    for (unsigned s = 0; s < TSE_KEY_SLOTS && found < n; s++)
        if (owned[s])
            slots[found++] = s;
    return found;
}

/* The child: redis-cli, its output to log, killed with the test. */
static pid_t reshard_spawn(const tse_test_redis *node, const char *from_id, const char *to_id,
                           int n, const char *log)
{
    char addr[32], slots[16];
    pid_t pid, parent;
    int fd;

    snprintf(addr, sizeof(addr), "127.0.0.1:%d", node->port);
    snprintf(slots, sizeof(slots), "%d", n);
    parent = getpid();
    pid = fork();
    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    /* A test that died before prctl would never send the signal. */
    if (getppid() != parent)
        _exit(127);
    fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        close(fd);
    }
    execlp("redis-cli", "redis-cli", "--cluster", "reshard", addr, "--cluster-from", from_id,
           "--cluster-to", to_id, "--cluster-slots", slots, "--cluster-yes", "--cluster-pipeline",
           "1", (char *)NULL);
    _exit(127);
}

tse_test_reshard *tse_test_cluster_reshard_start(tse_test_redis_cluster *c, int from, int to, int n)
{
    char from_id[64], to_id[64];
    tse_test_reshard *r = calloc(1, sizeof(*r));

    if (r == NULL)
        return NULL;
    if (n < 1 || n > TSE_TEST_RESHARD_MAX || !node_id(c->nodes[from], from_id, sizeof(from_id)) ||
        !node_id(c->nodes[to], to_id, sizeof(to_id)) ||
        (r->n = tse_test_cluster_lowest_slots(c, from, n, r->slots)) != n) {
        fprintf(stderr, "reshard of %d slots from node %d to node %d: cannot start\n", n, from, to);
        free(r);
        return NULL;
    }
    r->c = c;
    r->to = to;
    snprintf(r->log, sizeof(r->log), "/tmp/tse-reshard-%d.log", (int)getpid());
    r->pid = reshard_spawn(c->nodes[from], from_id, to_id, n, r->log);
    if (r->pid < 0) {
        fprintf(stderr, "reshard: fork failed\n");
        free(r);
        return NULL;
    }
    return r;
}

bool tse_test_cluster_reshard_running(tse_test_reshard *r)
{
    if (r->pid > 0 && waitpid(r->pid, &r->status, WNOHANG) == r->pid)
        r->pid = 0;
    return r->pid > 0;
}

static bool reshard_exited(void *arg)
{
    return !tse_test_cluster_reshard_running(arg);
}

/* Whether every running node says cluster_state:ok and sees r->to serve
 * every slot r moved. */
static bool reshard_agreed(void *arg)
{
    tse_test_reshard *r = arg;
    tse_test_redis_cluster *c = r->c;

    for (int i = 0; i < c->n; i++) {
        if (c->nodes[i]->pid <= 0)
            continue;
        if (!info_has(c->nodes[i], "CLUSTER", "INFO", "cluster_state:ok"))
            return false;
        /* The first, the last and a middle slot: the tool moves them in
         * order, and each node learns the owner of each one by one. */
        for (int k = 0; k < 3; k++)
            if (slot_master_seen_by(c, c->nodes[i],
                                    r->slots[k == 0   ? 0
                                             : k == 1 ? r->n / 2
                                                      : r->n - 1]) != r->to)
                return false;
    }
    return true;
}

/* The tool's output to stderr. */
static void reshard_print_log(const tse_test_reshard *r)
{
    char line[512];
    FILE *f = fopen(r->log, "r");

    fprintf(stderr, "---- redis-cli --cluster reshard ----\n");
    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
        fputs(line, stderr);
    if (f != NULL)
        fclose(f);
}

bool tse_test_cluster_reshard_finish(tse_test_reshard *r, int timeout_ms)
{
    bool ok;

    if (r == NULL)
        return false;
    ok = tse_test_wait_until(reshard_exited, r, timeout_ms, "redis-cli --cluster reshard to end");
    if (!ok) {
        kill(r->pid, SIGKILL);
        waitpid(r->pid, &r->status, 0);
    } else if (!WIFEXITED(r->status) || WEXITSTATUS(r->status) != 0) {
        fprintf(stderr, "redis-cli --cluster reshard exited with status %d\n", r->status);
        ok = false;
    }
    ok = ok &&
         tse_test_wait_until(reshard_agreed, r, timeout_ms,
                             "every node to see node %d serve the %d slots moved", r->to, r->n);
    if (!ok)
        reshard_print_log(r);
    unlink(r->log);
    free(r);
    return ok;
}

/* -------------------------------------------------------------------------
 * Failover
 * ---------------------------------------------------------------------- */

void tse_test_cluster_kill(tse_test_redis_cluster *c, int i)
{
    tse_test_redis_kill(c->nodes[i]);
}

int tse_test_cluster_wait_slot_served(const tse_test_redis_cluster *c, unsigned slot,
                                      int timeout_ms)
{
    slot_wait w = {c, slot, -1, -1};

    if (!tse_test_wait_until(slot_agreed, &w, timeout_ms,
                             "every running node to see a running master serve slot %u", slot))
        return -1;
    return w.seen;
}

int tse_test_cluster_kill_master(tse_test_redis_cluster *c, int i, int timeout_ms)
{
    static bool owned[TSE_KEY_SLOTS];
    unsigned slot = 0;

    if (!slots_of(c, i, owned))
        return -1;
    while (slot < TSE_KEY_SLOTS && !owned[slot])
        slot++;
    if (slot == TSE_KEY_SLOTS) {
        fprintf(stderr, "node %d serves no slot\n", i);
        return -1;
    }
    tse_test_cluster_kill(c, i);
    /* A replica takes over all of a master's slots at once. */
    return tse_test_cluster_wait_slot_served(c, slot, timeout_ms);
}
