/*
 * main.c - the tracseq-events process: settings, then the broker (Redis
 * lanes), the reflection index and the gRPC server; reloads on SIGHUP (the
 * TLS files); waits for SIGINT or SIGTERM and shuts down gracefully (exit 0).
 *
 * Signals are blocked before gRPC starts its threads and taken with sigwait
 * here, so no other thread is ever interrupted by them.
 */
#include <grpc/grpc.h>
#include <malloc.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "auth/auth.h"
#include "common/abseil.h"
#include "common/clock.h"
#include "config/config.h"
#include "delivery/delivery.h"
#include "obs/log.h"
#include "obs/notify.h"
#include "obs/stats.h"
#include "reflection/reflection.h"
#include "storage/keys.h"
#include "storage/migrate.h"
#include "transport/server.h"
#include "writer/broker.h"

extern const unsigned char tse_descriptor_set[];
extern const size_t tse_descriptor_set_len;

/* While Redis stays unreachable, a note says so this often. */
#define REDIS_DOWN_NOTE_MS 30000

/* Routes broker health changes to the server once it exists, and keeps
 * since when Redis is unreachable for the periodic note. */
typedef struct health_link {
    _Atomic(tse_server *) server;
    _Atomic(tse_broker *) broker;
    atomic_llong down_since_ms; /* monotonic; 0 while Redis is up */
    long long last_note_ms;     /* main thread only */
} health_link;

/* The reconnect schedule in words, for the logs. */
static const char *retry_schedule(char *buf, size_t len)
{
    snprintf(buf, len, "every %d ms at first, backing off to every %d ms until it answers",
             TSE_BROKER_RETRY_MIN_MS, TSE_BROKER_RETRY_MAX_MS);
    return buf;
}

static void on_broker_health(void *arg, bool up)
{
    health_link *link = arg;
    tse_server *s = atomic_load(&link->server);
    tse_broker *b = atomic_load(&link->broker);
    char why[256] = "", addr[300] = "", retry[128];

    /* Read the current state rather than trust the order of callbacks. */
    if (s != NULL && b != NULL)
        tse_server_set_serving(s, tse_broker_is_up(b));
    if (b != NULL)
        tse_broker_address(b, addr, sizeof(addr));
    if (up) {
        atomic_store(&link->down_since_ms, 0);
        /* The very first connection may come before the broker is linked
         * here: then the address is not known yet, and left out. */
        tse_log(TSE_LOG_INFO, "redis connected",
                addr[0] != '\0' ? (const char *[]){"redis", addr, NULL} : NULL);
    } else {
        atomic_store(&link->down_since_ms, tse_clock_ms());
        if (b != NULL)
            tse_broker_last_error(b, why, sizeof(why));
        tse_log(TSE_LOG_WARN, "redis unreachable",
                (const char *[]){"redis", addr, "error", why, "retry",
                                 retry_schedule(retry, sizeof(retry)), NULL});
    }
}

/*
 * Redis did not answer before the port opened (Compose and systemd often
 * start us first): say so once, loudly, with where and how we retry; health
 * stays NOT_SERVING until it answers.
 */
static void warn_redis_down_at_start(health_link *link, tse_broker *b)
{
    char why[256] = "", addr[300], retry[128];
    long long none = 0;

    if (tse_broker_is_up(b))
        return;
    atomic_compare_exchange_strong(&link->down_since_ms, &none, tse_clock_ms());
    link->last_note_ms = tse_clock_ms();
    tse_broker_address(b, addr, sizeof(addr));
    tse_broker_last_error(b, why, sizeof(why));
    tse_log(TSE_LOG_WARN, "redis unreachable at start: health NOT_SERVING until it answers",
            (const char *[]){"redis", addr, "error", why, "retry",
                             retry_schedule(retry, sizeof(retry)), NULL});
}

/* While Redis stays away, one note every REDIS_DOWN_NOTE_MS (not one per
 * retry: that would be ten lines a second at first). */
static void note_redis_still_down(health_link *link)
{
    tse_broker *b = atomic_load(&link->broker);
    long long since = atomic_load(&link->down_since_ms), now = tse_clock_ms();
    char why[256] = "", addr[300], down_for[32];

    if (b == NULL || since == 0 || tse_broker_is_up(b) || now - since < REDIS_DOWN_NOTE_MS ||
        now - link->last_note_ms < REDIS_DOWN_NOTE_MS)
        return;
    link->last_note_ms = now;
    tse_broker_address(b, addr, sizeof(addr));
    tse_broker_last_error(b, why, sizeof(why));
    snprintf(down_for, sizeof(down_for), "%llds", (now - since) / 1000);
    tse_log(TSE_LOG_WARN, "redis still unreachable",
            (const char *[]){"redis", addr, "down_for", down_for, "error", why, NULL});
}

static int fail(const tse_error *err)
{
    tse_log(TSE_LOG_ERROR, "cannot start",
            (const char *[]){"error", err->message, "key", err->field, NULL});
    fprintf(stderr, "tracseq-events: %s\n", err->message);
    return 2;
}

static tse_status make_broker(const tse_config *cfg, tse_stats *stats, health_link *link,
                              tse_broker **out, tse_error *err)
{
    tse_broker_options opts = {
        .lanes = cfg->redis_lanes,
        .timeout_ms = (int)cfg->redis_timeout_ms,
        .dedup_window_ms = cfg->dedup_window_ms,
        .retention_ms = cfg->retention_maxlen > 0 ? 0 : cfg->retention_ms,
        .retention_maxlen = cfg->retention_maxlen,
        .max_queue = 65536,
        .round_trip = tse_stats_histogram(stats, TSE_HIST_REDIS_RTT),
    };

    if (tse_redis_url_parse(cfg->redis_url, &opts.target, err) != TSE_OK) {
        char why[TSE_ERROR_MESSAGE_MAX];
        snprintf(why, sizeof(why), "%s", err->message);
        return tse_error_set(err, TSE_INVALID, "REDIS_URL", "invalid REDIS_URL (--redis-url): %s",
                             why);
    }
    if (cfg->redis_min_replicas > 0 && !opts.target.cluster)
        return tse_error_set(err, TSE_INVALID, "REDIS_MIN_REPLICAS",
                             "REDIS_MIN_REPLICAS (--redis-min-replicas) %d needs a Redis Cluster "
                             "(redis+cluster://): on a single Redis publishes are not checked "
                             "by WAIT; use 0 (or -1)",
                             cfg->redis_min_replicas);
    opts.min_replicas = cfg->redis_min_replicas >= 0 ? cfg->redis_min_replicas
                        : opts.target.cluster        ? 1
                                                     : 0;
    return tse_broker_create(&opts, on_broker_health, link, out, err);
}

/*
 * Stream keys of the layout before 1.0 (no hash tag) are moved to their
 * current names before anything publishes or reads (storage/migrate.h: a
 * single Redis only), and said so loudly: docs/operations.md ("Upgrading
 * to the 1.0 key layout"). A bad URL is make_broker's to refuse; a Redis
 * that is down is noted and looked at again at the next start.
 */
static void move_old_keys(const tse_config *cfg)
{
    tse_redis_target target;
    tse_legacy_report rep;
    tse_error err;
    tse_status st;
    char why[256] = "", n[3][24];

    if (tse_redis_url_parse(cfg->redis_url, &target, &err) != TSE_OK || target.cluster)
        return;
    st = tse_storage_migrate_legacy(&target, (int)cfg->redis_timeout_ms, true, &rep, why,
                                    sizeof(why));
    if (st != TSE_OK)
        tse_log(TSE_LOG_WARN, "cannot look for stream keys of the layout before 1.0",
                (const char *[]){"error", why, NULL});
    if (rep.found == 0)
        return;
    snprintf(n[0], sizeof(n[0]), "%zu", rep.found);
    snprintf(n[1], sizeof(n[1]), "%zu", rep.moved);
    snprintf(n[2], sizeof(n[2]), "%zu", rep.kept);
    tse_log(TSE_LOG_WARN,
            "stream keys of the layout before 1.0 found in " TSE_STREAMS_KEY
            ": moved to their hash-tagged names (docs/operations.md)",
            (const char *[]){"found", n[0], "keys", rep.found_names, "moved", n[1], "kept", n[2],
                             "kept_keys", rep.kept_names, NULL});
}

/* Gives Redis up to timeout_ms to answer before the port opens, so that the
 * first calls of a fresh start do not fail needlessly. The service starts
 * anyway (NOT_SERVING) when Redis is down, and connects when it comes. */
static void wait_for_redis(tse_broker *b, int64_t timeout_ms)
{
    struct timespec pause = {0, 10 * 1000000};

    for (int64_t waited = 0; waited < timeout_ms && !tse_broker_is_up(b); waited += 10)
        nanosleep(&pause, NULL);
}

static tse_status make_delivery(const tse_config *cfg, tse_stats *stats, tse_delivery **out,
                                tse_error *err)
{
    tse_delivery_options opts = {.timeout_ms = (int)cfg->redis_timeout_ms,
                                 .poll_ms = (int)cfg->delivery_poll_ms,
                                 .reap_idle_ms = cfg->consumer_reap_ms};
    char host[64] = "host", instance[96];

    if (tse_redis_url_parse(cfg->redis_url, &opts.target, err) != TSE_OK)
        return TSE_INVALID;
    gethostname(host, sizeof(host) - 1);
    /* Consumer names of this process: unique per host and process. */
    snprintf(instance, sizeof(instance), "%s-%d", host, (int)getpid());
    opts.instance = instance;
    return tse_delivery_create(&opts, stats, out, err);
}

/*
 * Whether a gRPC listen address stays on this machine: a loopback host
 * (127.0.0.0/8, ::1, localhost) or a Unix socket. "0.0.0.0:50051",
 * "[::]:50051" and ":50051" listen on every interface.
 */
static bool listen_is_loopback(const char *listen)
{
    char host[256];
    const char *colon;
    size_t len;

    if (strncmp(listen, "unix:", 5) == 0 || strncmp(listen, "unix-abstract:", 14) == 0)
        return true;
    if (strncmp(listen, "ipv4:", 5) == 0 || strncmp(listen, "ipv6:", 5) == 0)
        listen += 5;
    else if (strncmp(listen, "dns:", 4) == 0)
        listen += 4;
    colon = strrchr(listen, ':');
    len = colon ? (size_t)(colon - listen) : strlen(listen);
    if (len >= sizeof(host))
        return false;
    memcpy(host, listen, len);
    host[len] = '\0';
    if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
        memmove(host, host + 1, len - 2);
        host[len - 2] = '\0';
    }
    return strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0 ||
           strcmp(host, "localhost") == 0;
}

/*
 * Authentication (AUTH_TOKENS_FILE), or the safe default without it: the
 * port stays on loopback unless ALLOW_UNAUTHENTICATED_REMOTE says
 * otherwise, and then every start says so.
 */
static tse_status make_auth(const tse_config *cfg, tse_auth **out, tse_error *err)
{
    *out = NULL;
    if (cfg->auth_tokens_file[0] != '\0')
        return tse_auth_create(cfg->auth_tokens_file, out, err);
    if (listen_is_loopback(cfg->listen))
        return TSE_OK;
    if (!cfg->allow_open_remote)
        return tse_error_set(err, TSE_INVALID, "GRPC_LISTEN",
                             "refusing to listen on %s without authentication: set "
                             "AUTH_TOKENS_FILE (docs/security.md), listen on 127.0.0.1, or set "
                             "ALLOW_UNAUTHENTICATED_REMOTE=true to accept anyone who reaches "
                             "the port",
                             cfg->listen);
    tse_log(TSE_LOG_WARN,
            "authentication is off and the port is open beyond loopback "
            "(ALLOW_UNAUTHENTICATED_REMOTE=true): anyone who reaches it may publish, read and "
            "delete anything",
            (const char *[]){"listen", cfg->listen, NULL});
    return TSE_OK;
}

/* SIGHUP: the tokens file again; a bad file keeps the identities in use. */
static void reload_auth(tse_auth *auth)
{
    tse_error err;

    tse_error_clear(&err);
    if (auth == NULL) {
        tse_logf(TSE_LOG_INFO, "SIGHUP: nothing to reload (AUTH_TOKENS_FILE is not set)");
    } else if (tse_auth_reload(auth, &err) != TSE_OK) {
        tse_log(TSE_LOG_ERROR, "tokens file not reloaded; the current identities stay",
                (const char *[]){"error", err.message, "key", err.field, NULL});
    } else {
        const tse_auth_table *t = tse_auth_acquire(auth);
        char n[32];
        snprintf(n, sizeof(n), "%zu", tse_auth_table_count(t));
        tse_auth_release(t);
        tse_log(TSE_LOG_INFO, "tokens file reloaded", (const char *[]){"identities", n, NULL});
    }
}

/*
 * Waits for SIGINT or SIGTERM. Every few seconds meanwhile, hands memory
 * freed after a burst back to the system: glibc keeps it in per-thread
 * arenas otherwise (measured: 31 MB resident after a load test, 20 MB after
 * a trim), and notes a Redis that stays unreachable.
 */
static int wait_for_signal(const sigset_t *set, health_link *link)
{
    struct timespec every = {5, 0};
    int sig;

    for (;;) {
        sig = sigtimedwait(set, NULL, &every);
        if (sig > 0)
            return sig;
        malloc_trim(0);
        note_redis_still_down(link);
    }
}

/* SIGHUP: what can change without a restart is re-read; a failure keeps
 * what was in use and says why. */
static void reload(tse_server *server)
{
    tse_error err;

    tse_error_clear(&err);
    if (tse_server_reload(server, &err) != TSE_OK)
        tse_log(TSE_LOG_ERROR, "SIGHUP: reload failed, keeping what was in use",
                (const char *[]){"error", err.message, "key", err.field, NULL});
}

/* TLS in a word, for the start line. */
static const char *tls_mode(const tse_config *cfg)
{
    static const char *const with_client[] = {"on", "on, client certificates optional",
                                              "on, client certificates required"};

    return cfg->tls_cert[0] == '\0' ? "off" : with_client[cfg->tls_client_auth];
}

int main(int argc, char **argv)
{
    static health_link link;
    tse_config cfg;
    tse_error err;
    tse_log_level level;
    tse_broker *broker = NULL;
    tse_delivery *delivery = NULL;
    tse_reflection *refl = NULL;
    tse_server *server = NULL;
    tse_stats *stats = NULL;
    tse_auth *auth = NULL;
    sigset_t set;
    int rc = 0;

    tse_error_clear(&err);
    switch (tse_config_load(&cfg, argc, argv, stdout, &err)) {
    case TSE_CONFIG_HELP: return 0;
    case TSE_CONFIG_ERROR: return fail(&err);
    case TSE_CONFIG_RUN: break;
    }
    tse_log_level_parse(cfg.log_level, &level);
    tse_log_setup(level, cfg.log_json);

    /* Fewer malloc arenas: less memory held per thread, same speed. */
    mallopt(M_ARENA_MAX, 2);
    /* glibc's own default threshold, fixed: blocks of 128 kB and more are
     * mapped, and a freed one no longer raises it (glibc's dynamic
     * threshold, up to 32 MB, and the trim threshold to twice that).
     * Raised, the blocks below it come from the arenas, and the top of a
     * thread arena is given back only past the trim threshold, never by
     * malloc_trim: ~2 MB stayed resident when idle after a load (issue 14,
     * docs/benchmarks.md). */
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* As in the SDK (client.c): no OpenSSL exit handler under gRPC's
     * threads, which may still be in a handshake when main returns. */
    OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT, NULL);
    /* Debian's Abseil checks lock order in every gRPC lock: 7 % of a
     * unary Publish's instructions (common/abseil.h). */
    tse_abseil_lock_checks_off();
    grpc_init();

    if (make_auth(&cfg, &auth, &err) != TSE_OK) {
        rc = fail(&err);
        goto out;
    }
    stats = tse_stats_create();
    refl = tse_reflection_create(tse_descriptor_set, tse_descriptor_set_len, tse_server_services,
                                 &err);
    if (stats == NULL || refl == NULL) {
        rc = fail(&err);
        goto out;
    }
    move_old_keys(&cfg);
    if (make_broker(&cfg, stats, &link, &broker, &err) != TSE_OK) {
        rc = fail(&err);
        goto out;
    }
    atomic_store(&link.broker, broker);
    if (make_delivery(&cfg, stats, &delivery, &err) != TSE_OK) {
        rc = fail(&err);
        goto out;
    }
    wait_for_redis(broker, cfg.redis_timeout_ms);
    tse_server_deps deps = {
        .config = &cfg,
        .broker = broker,
        .delivery = delivery,
        .stats = stats,
        .reflection = refl,
        .auth = auth,
    };
    if (tse_server_create(&deps, &server, &err) != TSE_OK ||
        tse_server_start(server, &err) != TSE_OK) {
        rc = fail(&err);
        goto out;
    }
    atomic_store(&link.server, server);
    tse_server_set_serving(server, tse_broker_is_up(broker));
    tse_log(TSE_LOG_INFO, "tracseq-events started",
            (const char *[]){"listen", cfg.listen, "version", TSE_VERSION, "validation_mode",
                             cfg.strict ? "strict" : "lenient", "authentication",
                             auth ? "tokens" : "off", "tls", tls_mode(&cfg), NULL});
    warn_redis_down_at_start(&link, broker);
    /* systemd (Type=notify): ready only now that the port accepts calls. */
    if (tse_notify("READY=1", &err) != TSE_OK)
        tse_log(TSE_LOG_WARN, "cannot notify systemd",
                (const char *[]){"error", err.message, NULL});

    int sig;
    while ((sig = wait_for_signal(&set, &link)) == SIGHUP) {
        reload_auth(auth);
        reload(server);
    }
    tse_notify("STOPPING=1", NULL);
    tse_logf(TSE_LOG_INFO, "%s received: shutting down (grace %lld ms)", strsignal(sig),
             (long long)cfg.shutdown_grace_ms);
    if (!tse_server_shutdown(server, cfg.shutdown_grace_ms)) {
        /* gRPC outlived the grace: what was answered is in Redis (no call
         * is left open), so end now rather than outlive the orchestrator's
         * patience; the queued Redis writes are flushed first. */
        tse_delivery_destroy(delivery);
        tse_broker_destroy(broker);
        tse_logf(TSE_LOG_INFO, "stopped (gRPC left to the exit)");
        _exit(0);
    }
    tse_logf(TSE_LOG_INFO, "stopped");
out:
    atomic_store(&link.server, NULL);
    tse_server_destroy(server);
    tse_delivery_destroy(delivery);
    tse_broker_destroy(broker);
    tse_reflection_destroy(refl);
    tse_stats_destroy(stats);
    tse_auth_destroy(auth);
    grpc_shutdown();
    return rc;
}
