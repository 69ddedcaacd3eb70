/*
 * harness.c - real redis-server and service processes for integration tests;
 * see harness.h.
 */
#include "harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <libgen.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cluster.h"
#include "ports.h"

/* The longest a server may take to listen (and Redis to answer) after its
 * start: only a bound on a failure, so generous for a loaded sanitizer
 * build; a start that works waits only as long as it takes. */
#define START_MS 30000

/* Children to kill should the test process exit without stopping them. */
#define MAX_CHILDREN 64
static pid_t children[MAX_CHILDREN];

static void kill_children(void)
{
    for (int i = 0; i < MAX_CHILDREN; i++) {
        if (children[i] > 0) {
            kill(children[i], SIGKILL);
            waitpid(children[i], NULL, 0);
            children[i] = 0;
        }
    }
}

static void track_child(pid_t pid, bool add)
{
    static bool registered;

    if (!registered) {
        atexit(kill_children);
        registered = true;
    }
    for (int i = 0; i < MAX_CHILDREN; i++) {
        if (add && children[i] == 0) {
            children[i] = pid;
            return;
        }
        if (!add && children[i] == pid) {
            children[i] = 0;
            return;
        }
    }
}

long long tse_test_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int tse_test_free_port(void)
{
    return tse_test_port_claim();
}

int tse_test_exit_code(int status)
{
    if (status == -1)
        fail_msg("the command could not be run or waited for: %s", strerror(errno));
    if (WIFSIGNALED(status))
        fail_msg("the command was killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    if (!WIFEXITED(status))
        fail_msg("the command did not exit (wait status %#x)", (unsigned)status);
    return WEXITSTATUS(status);
}

static bool port_accepts(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                             .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    bool ok;

    if (fd < 0)
        return false;
    ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return ok;
}

static pid_t spawn(char *const argv[], char *const envp[], const char *log_path)
{
    pid_t parent = getpid(), pid = fork();

    if (pid != 0) {
        if (pid > 0) {
            /* Here too: a stop may signal the group before the child ran. */
            setpgid(pid, pid);
            track_child(pid, true);
        }
        return pid;
    }
    setpgid(0, 0);
    /* Dies with the test, even one that aborts midway; one that died
     * before this line would never send the signal. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    int fd = open(log_path ? log_path : "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        close(fd);
    }
    if (envp)
        execve(argv[0], argv, envp);
    else
        execvp(argv[0], argv);
    _exit(127);
}

/*
 * Prints the last lines of a process's log to stderr: a sanitizer's report
 * or a crash a service wrote there shows in the test's output (CI keeps
 * only that), not only in a file under /tmp.
 */
static void print_log_tail(const char *path, int lines)
{
    FILE *f = fopen(path, "r");
    long size, from;
    char *text;
    int seen = 0;

    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0) {
        if (f != NULL)
            fclose(f);
        return;
    }
    from = size > 65536 ? size - 65536 : 0;
    text = calloc(1, (size_t)(size - from) + 1);
    if (text != NULL && fseek(f, from, SEEK_SET) == 0) {
        size_t n = fread(text, 1, (size_t)(size - from), f);
        size_t start = n;
        while (start > 0 && seen <= lines)
            if (text[--start] == '\n')
                seen++;
        fprintf(stderr, "---- the end of %s ----\n%s\n----\n", path, text + start);
    }
    free(text);
    fclose(f);
}

/* What a wait status says, for a message: "exit status N" or "signal N". */
static void describe_status(int status, char *buf, size_t len)
{
    if (WIFSIGNALED(status))
        snprintf(buf, len, "signal %d", WTERMSIG(status));
    else
        snprintf(buf, len, "exit status %d", WEXITSTATUS(status));
}

/* Whether the child pid listens on port and on port2 (unless 0) and port
 * accepts connections: the process there is ours, not one that took the
 * port meanwhile. */
static bool child_listens(pid_t pid, int port, int port2)
{
    return tse_test_port_listened_by(port, pid) &&
           (port2 == 0 || tse_test_port_listened_by(port2, pid)) && port_accepts(port);
}

/*
 * Waits (at most START_MS) until the child *pid, started as what with its
 * output in log, listens on port (and port2 unless 0). False, the reason
 * and the log's end on stderr, when it exited (reaped, *pid = 0) or did
 * not listen in time (left running: the caller stops it).
 */
static bool await_listening(pid_t *pid, const char *what, const char *log, int port, int port2)
{
    long long deadline = tse_test_now_ms() + START_MS;
    char why[32];
    int status;

    while (!child_listens(*pid, port, port2)) {
        if (waitpid(*pid, &status, WNOHANG) == *pid) {
            track_child(*pid, false);
            *pid = 0;
            describe_status(status, why, sizeof(why));
            fprintf(stderr, "%s exited at start (%s) instead of listening on port %d\n", what, why,
                    port);
            print_log_tail(log, 20);
            return false;
        }
        if (tse_test_now_ms() > deadline) {
            fprintf(stderr, "%s (pid %d) did not listen on port %d%s within %d ms\n", what,
                    (int)*pid, port, port2 != 0 ? " and its bus port" : "", START_MS);
            print_log_tail(log, 20);
            return false;
        }
        usleep(10000);
    }
    return true;
}

static void reap(pid_t *pid, int sig, int grace_ms)
{
    int status;

    if (*pid <= 0)
        return;
    /* The whole group: Redis forks children (AOF rewrite) that would keep
     * its port bound after the parent died. */
    kill(-*pid, sig);
    kill(*pid, sig);
    for (int waited = 0; waited < grace_ms; waited += 10) {
        if (waitpid(*pid, &status, WNOHANG) == *pid)
            goto done;
        usleep(10000);
    }
    kill(-*pid, SIGKILL);
    kill(*pid, SIGKILL);
    waitpid(*pid, &status, 0);
done:
    track_child(*pid, false);
    *pid = 0;
}

static bool redis_launch(tse_test_redis *r)
{
    char port[16], bus_port[16], node_timeout[16], log[300];
    char *argv[] = {"redis-server",
                    "--port",
                    port,
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    r->dir,
                    "--save",
                    "",
                    "--appendonly",
                    r->aof ? "yes" : "no",
                    "--appendfsync",
                    r->appendfsync,
                    "--protected-mode",
                    "no",
                    NULL, /* the cluster options, when r->cluster */
                    NULL,
                    NULL,
                    NULL,
                    NULL,
                    NULL,
                    NULL,
                    NULL,
                    NULL,
                    NULL,
                    NULL};

    snprintf(port, sizeof(port), "%d", r->port);
    if (r->cluster) {
        char **opt = &argv[sizeof(argv) / sizeof(argv[0]) - 11];
        opt[0] = "--cluster-enabled";
        opt[1] = "yes";
        opt[2] = "--cluster-config-file";
        opt[3] = "nodes.conf";
        opt[4] = "--cluster-node-timeout";
        opt[5] = node_timeout;
        opt[6] = "--cluster-port";
        opt[7] = bus_port;
        /* No replica takes over on its own: on a loaded machine a master
         * that answers late looks dead after node_timeout_ms, and a
         * failover nobody asked for breaks a test (a reshard's SETSLOT
         * then meets a replica). A test that wants one says so:
         * tse_test_cluster_config_set(c, replica,
         * "cluster-replica-no-failover", "no"). */
        opt[8] = "--cluster-replica-no-failover";
        opt[9] = "yes";
        snprintf(bus_port, sizeof(bus_port), "%d", r->bus_port);
        snprintf(node_timeout, sizeof(node_timeout), "%d",
                 r->node_timeout_ms > 0 ? r->node_timeout_ms : 5000);
    }
    /* After a crash the port may still be held for a moment. */
    for (int i = 0; i < 500 && port_accepts(r->port); i++)
        usleep(10000);
    snprintf(log, sizeof(log), "/tmp/tse-redis-%d-%d.log", (int)getpid(), r->port);
    r->pid = spawn(argv, NULL, log);
    if (r->pid < 0) {
        r->pid = 0;
        return false;
    }
    if (!await_listening(&r->pid, "redis-server", log, r->port, r->cluster ? r->bus_port : 0))
        return false;
    /* It listens: it answers (-LOADING, while it reads its AOF, counts). */
    for (long long deadline = tse_test_now_ms() + START_MS; tse_test_now_ms() < deadline;) {
        char *pong = tse_test_redis_cmd(r, "PING");

        if (pong != NULL) {
            free(pong);
            return true;
        }
        if (waitpid(r->pid, NULL, WNOHANG) == r->pid) {
            track_child(r->pid, false);
            r->pid = 0;
            break;
        }
        usleep(10000);
    }
    fprintf(stderr, "redis-server on port %d does not answer PING; see %s\n", r->port, log);
    return false;
}

static tse_test_redis *redis_start(bool aof, const char *appendfsync, bool cluster,
                                   int node_timeout_ms)
{
    tse_test_redis *r = calloc(1, sizeof(*r));

    if (r == NULL)
        return NULL;
    r->aof = aof;
    r->cluster = cluster;
    r->node_timeout_ms = node_timeout_ms;
    snprintf(r->appendfsync, sizeof(r->appendfsync), "%s", appendfsync);
    snprintf(r->dir, sizeof(r->dir), "/tmp/tse-redis-XXXXXX");
    if (mkdtemp(r->dir) == NULL)
        goto fail;
    r->port = tse_test_free_port();
    r->bus_port = cluster ? tse_test_free_port() : 0;
    if (r->port < 0 || r->bus_port < 0)
        goto fail;
    snprintf(r->url, sizeof(r->url), "redis://127.0.0.1:%d", r->port);
    if (!redis_launch(r))
        goto fail;
    return r;
fail:
    tse_test_redis_stop(r);
    return NULL;
}

tse_test_redis *tse_test_redis_start(bool aof)
{
    /* TSE_TEST_REDIS=one-node-cluster: the test's Redis is a cluster of one
     * node (AOF off), so a command over several slots fails (CROSSSLOT). */
    const char *kind = getenv("TSE_TEST_REDIS");

    if (kind != NULL && strcmp(kind, "one-node-cluster") == 0)
        return tse_test_redis_start_one_node_cluster();
    if (kind != NULL && strcmp(kind, "cluster") == 0)
        return tse_test_cluster_front(tse_test_redis_cluster_start(3));
    return redis_start(aof, "everysec", false, 0);
}

tse_test_redis *tse_test_redis_start_aof(const char *appendfsync)
{
    return redis_start(true, appendfsync, false, 0);
}

tse_test_redis *tse_test_redis_start_cluster_node(int node_timeout_ms)
{
    return redis_start(false, "everysec", true, node_timeout_ms);
}

static bool one_node_cluster_ok(const tse_test_redis *r)
{
    char *info = tse_test_redis_cmd(r, "CLUSTER INFO");
    bool ok = info != NULL && strstr(info, "cluster_state:ok") != NULL;

    free(info);
    return ok;
}

tse_test_redis *tse_test_redis_start_one_node_cluster(void)
{
    tse_test_redis *r = tse_test_redis_start_cluster_node(0);
    char *ok;

    if (r == NULL)
        return NULL;
    ok = tse_test_redis_cmd(r, "CLUSTER ADDSLOTSRANGE 0 16383");
    if (ok == NULL || strcmp(ok, "OK") != 0) {
        fprintf(stderr, "CLUSTER ADDSLOTSRANGE: %s\n", ok ? ok : "no answer");
        free(ok);
        tse_test_redis_stop(r);
        return NULL;
    }
    free(ok);
    for (int tries = 0; !one_node_cluster_ok(r) && tries < 1000; tries++)
        usleep(10000);
    if (!one_node_cluster_ok(r)) {
        tse_test_redis_stop(r);
        return NULL;
    }
    return r;
}

void tse_test_redis_kill(tse_test_redis *r)
{
    if (r != NULL && r->whole != NULL)
        fprintf(stderr, "a cluster's front cannot be killed: kill one of its nodes\n");
    else if (r != NULL)
        reap(&r->pid, SIGKILL, 0);
}

bool tse_test_redis_restart(tse_test_redis *r)
{
    return r->whole == NULL && redis_launch(r);
}

void tse_test_redis_stop(tse_test_redis *r)
{
    char cmd[300];

    if (r == NULL)
        return;
    if (r->whole != NULL) {
        tse_test_redis_cluster_stop(r->whole);
        free(r);
        return;
    }
    reap(&r->pid, SIGTERM, 3000);
    if (r->dir[0] != '\0') {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", r->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", r->dir);
    }
    free(r);
}

static void reply_append(const redisReply *rep, char *buf, size_t len)
{
    size_t used = strlen(buf);

    switch (rep->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
        snprintf(buf + used, len - used, "%.*s", (int)rep->len, rep->str);
        break;
    case REDIS_REPLY_INTEGER: snprintf(buf + used, len - used, "%lld", rep->integer); break;
    case REDIS_REPLY_NIL: snprintf(buf + used, len - used, "(nil)"); break;
    case REDIS_REPLY_ARRAY:
        for (size_t i = 0; i < rep->elements; i++) {
            if (i > 0)
                snprintf(buf + strlen(buf), len - strlen(buf), "\n");
            reply_append(rep->element[i], buf, len);
        }
        break;
    default: break;
    }
}

/* The port a command to r goes to first: a front's first running node. */
static int entry_port(const tse_test_redis *r)
{
    if (r->whole == NULL)
        return r->port;
    for (int i = 0; i < r->whole->n; i++)
        if (r->whole->nodes[i]->pid > 0)
            return r->whole->nodes[i]->port;
    return -1;
}

/* The port a "MOVED <slot> <host>:<port>" or "ASK ..." error names, or -1
 * when rep is no such redirection; *ask tells which it was. */
static int redirect_port(const redisReply *rep, bool *ask)
{
    const char *colon;

    if (rep->type != REDIS_REPLY_ERROR)
        return -1;
    *ask = strncmp(rep->str, "ASK ", 4) == 0;
    if (!*ask && strncmp(rep->str, "MOVED ", 6) != 0)
        return -1;
    colon = strrchr(rep->str, ':');
    return colon != NULL ? atoi(colon + 1) : -1;
}

/* One formatted command to the server on port (ASKING first when ask); its
 * reply, NULL when the server does not answer within timeout_s. */
static redisReply *send_to(int port, const char *cmd, int len, bool ask, int timeout_s)
{
    struct timeval tv = {timeout_s, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    void *rep = NULL;

    if (c == NULL || c->err) {
        redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    if (ask) {
        redisAppendCommand(c, "ASKING");
        if (redisGetReply(c, &rep) != REDIS_OK) {
            redisFree(c);
            return NULL;
        }
        freeReplyObject(rep);
        rep = NULL;
    }
    if (redisAppendFormattedCommand(c, cmd, (size_t)len) != REDIS_OK ||
        redisGetReply(c, &rep) != REDIS_OK)
        rep = NULL;
    redisFree(c);
    return rep;
}

/* A command to r; on a cluster node or front, MOVED and ASK are followed
 * (a few hops: a slot moving twice meanwhile is no test's business). */
static redisReply *routed_command(const tse_test_redis *r, int timeout_s, const char *fmt,
                                  va_list ap)
{
    bool follow = r->cluster || r->whole != NULL, ask = false;
    int port = entry_port(r), len, next;
    redisReply *rep = NULL;
    char *cmd;

    len = redisvFormatCommand(&cmd, fmt, ap);
    if (len < 0 || port < 0)
        return NULL;
    for (int hops = 0; hops < 5; hops++) {
        rep = send_to(port, cmd, len, ask, timeout_s);
        if (rep == NULL || !follow || (next = redirect_port(rep, &ask)) < 0)
            break;
        freeReplyObject(rep);
        rep = NULL;
        port = next;
    }
    redisFreeCommand(cmd);
    return rep;
}

struct redisReply *tse_test_redis_reply(const tse_test_redis *r, const char *fmt, ...)
{
    redisReply *rep;
    va_list ap;

    /* Long enough for a large reply on a loaded machine (the torture's
     * pages of 5,000 entries). */
    va_start(ap, fmt);
    rep = routed_command(r, 10, fmt, ap);
    va_end(ap);
    return rep;
}

char *tse_test_redis_cmd(const tse_test_redis *r, const char *fmt, ...)
{
    redisReply *rep;
    va_list ap;
    char *out;

    va_start(ap, fmt);
    /* As long as tse_test_redis_reply: a Redis that answers slowly on a
     * loaded host is no unreachable Redis (one that is down refuses
     * at once). */
    rep = routed_command(r, 10, fmt, ap);
    va_end(ap);
    if (rep == NULL)
        return NULL;
    out = calloc(1, 1 << 20);
    if (out != NULL)
        reply_append(rep, out, 1 << 20);
    freeReplyObject(rep);
    return out;
}

int tse_test_redis_masters(const tse_test_redis *r, const tse_test_redis **out, int max)
{
    int n = 0;

    if (r->whole == NULL) {
        if (max > 0)
            out[n++] = r;
        return n;
    }
    for (int i = 0; i < r->whole->n && n < max; i++)
        if (r->whole->nodes[i]->pid > 0 && tse_test_cluster_is_master(r->whole, i))
            out[n++] = r->whole->nodes[i];
    return n;
}

/*
 * Runs bin on port with fixed args, then extra ones (each NULL-terminated),
 * and waits until it listens there; NULL when it exited or never listened
 * (stopped; the end of its log on stderr says why).
 */
static tse_test_service *server_start(const char *bin, const char *what, int port,
                                      const char *const *fixed, const char *const *extra)
{
    tse_test_service *s = calloc(1, sizeof(*s));
    char *argv[40];
    int n = 0;

    if (bin == NULL || s == NULL || port <= 0) {
        free(s);
        return NULL;
    }
    s->port = port;
    snprintf(s->addr, sizeof(s->addr), "127.0.0.1:%d", port);
    snprintf(s->log, sizeof(s->log), "/tmp/tse-%s-%d-%d.log", what, (int)getpid(), port);
    argv[n++] = (char *)bin;
    for (int i = 0; fixed[i] && n < 20; i++)
        argv[n++] = (char *)fixed[i];
    for (int i = 0; extra && extra[i] && n < 38; i++)
        argv[n++] = (char *)extra[i];
    argv[n] = NULL;
    s->pid = spawn(argv, NULL, s->log);
    if (s->pid > 0 && await_listening(&s->pid, what, s->log, port, 0))
        return s;
    if (s->pid > 0)
        reap(&s->pid, SIGKILL, 0);
    free(s);
    return NULL;
}

tse_test_service *tse_test_service_start_on(const tse_test_redis *r, int port,
                                            const char *const *extra_args)
{
    char listen[96], redis[160];

    snprintf(listen, sizeof(listen), "--listen=127.0.0.1:%d", port);
    snprintf(redis, sizeof(redis), "--redis-url=%s", r ? r->url : "redis://127.0.0.1:1");
    return server_start(getenv("TSE_SERVICE_BIN"), "service", port,
                        (const char *const[]){listen, redis, NULL}, extra_args);
}

tse_test_service *tse_test_service_start(const tse_test_redis *r, const char *const *extra_args)
{
    return tse_test_service_start_on(r, tse_test_free_port(), extra_args);
}

void tse_test_bridge_path(char *buf, size_t len)
{
    const char *service_bin = getenv("TSE_SERVICE_BIN");
    char dir[512];

    snprintf(dir, sizeof(dir), "%s", service_bin ? service_bin : "./tracseq-events");
    snprintf(buf, len, "%s/rest-bridge/tracseq-rest-bridge", dirname(dir));
}

tse_test_service *tse_test_bridge_start(const char *service_addr, const char *const *extra_args)
{
    return tse_test_bridge_start_on(service_addr, tse_test_free_port(), extra_args);
}

tse_test_service *tse_test_bridge_start_on(const char *service_addr, int port,
                                           const char *const *extra_args)
{
    char bin[600], port_arg[32], svc[160];

    tse_test_bridge_path(bin, sizeof(bin));
    snprintf(port_arg, sizeof(port_arg), "--port=%d", port);
    snprintf(svc, sizeof(svc), "--event-service-addr=%s", service_addr);
    return server_start(bin, "bridge", port,
                        (const char *const[]){"--host=127.0.0.1", port_arg, svc, NULL}, extra_args);
}

void tse_test_service_kill(tse_test_service *s)
{
    if (s == NULL)
        return;
    if (s->pid > 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        track_child(s->pid, false);
    }
    free(s);
}

int tse_test_service_stop(tse_test_service *s)
{
    long long elapsed;

    return tse_test_service_stop_timed(s, &elapsed);
}

int tse_test_service_stop_timed(tse_test_service *s, long long *elapsed_ms)
{
    long long start = tse_test_now_ms();
    int status = -1;

    *elapsed_ms = 0;
    if (s == NULL)
        return -1;
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        while (tse_test_now_ms() - start < 15000) {
            if (waitpid(s->pid, &status, WNOHANG) == s->pid)
                break;
            usleep(2000);
        }
        *elapsed_ms = tse_test_now_ms() - start;
        if (status == -1) {
            kill(s->pid, SIGKILL);
            waitpid(s->pid, &status, 0);
            status = -2;
        }
        track_child(s->pid, false);
    }
    if (status >= 0 && WIFEXITED(status))
        status = WEXITSTATUS(status);
    else if (status >= 0)
        status = 128 + WTERMSIG(status);
    if (status != 0 && s->log[0] != '\0') {
        fprintf(stderr, "%s stopped with status %d\n", s->log, status);
        print_log_tail(s->log, 40);
    }
    free(s);
    return status;
}
