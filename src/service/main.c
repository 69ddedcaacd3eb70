/*
 * main.c - the tracseq-events process: settings, then the broker (Redis
 * lanes), the reflection index and the gRPC server; waits for SIGINT or
 * SIGTERM and shuts down gracefully (exit 0).
 *
 * Signals are blocked before gRPC starts its threads and taken with sigwait
 * here, so no other thread is ever interrupted by them.
 */
#include <grpc/grpc.h>
#include <malloc.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "broker/broker.h"
#include "broker/delivery.h"
#include "config/config.h"
#include "obs/log.h"
#include "obs/notify.h"
#include "obs/stats.h"
#include "reflection/reflection.h"
#include "transport/server.h"

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

static long long mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

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
        atomic_store(&link->down_since_ms, mono_ms());
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
    atomic_compare_exchange_strong(&link->down_since_ms, &none, mono_ms());
    link->last_note_ms = mono_ms();
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
    long long since = atomic_load(&link->down_since_ms), now = mono_ms();
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

static tse_status make_broker(const tse_config *cfg, health_link *link, tse_broker **out,
                              tse_error *err)
{
    tse_broker_options opts = {
        .lanes = cfg->redis_lanes,
        .timeout_ms = (int)cfg->redis_timeout_ms,
        .dedup_window_ms = cfg->dedup_window_ms,
        .retention_ms = cfg->retention_maxlen > 0 ? 0 : cfg->retention_ms,
        .retention_maxlen = cfg->retention_maxlen,
        .max_queue = 65536,
    };

    if (tse_redis_url_parse(cfg->redis_url, &opts.target, err) != TSE_OK) {
        char why[TSE_ERROR_MESSAGE_MAX];
        snprintf(why, sizeof(why), "%s", err->message);
        return tse_error_set(err, TSE_INVALID, "REDIS_URL", "invalid REDIS_URL (--redis-url): %s",
                             why);
    }
    return tse_broker_create(&opts, on_broker_health, link, out, err);
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
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    grpc_init();

    stats = tse_stats_create();
    refl = tse_reflection_create(tse_descriptor_set, tse_descriptor_set_len, tse_server_services,
                                 &err);
    if (stats == NULL || refl == NULL) {
        rc = fail(&err);
        goto out;
    }
    if (make_broker(&cfg, &link, &broker, &err) != TSE_OK) {
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
        .config = &cfg, .broker = broker, .delivery = delivery, .stats = stats, .reflection = refl};
    if (tse_server_create(&deps, &server, &err) != TSE_OK ||
        tse_server_start(server, &err) != TSE_OK) {
        rc = fail(&err);
        goto out;
    }
    atomic_store(&link.server, server);
    tse_server_set_serving(server, tse_broker_is_up(broker));
    tse_log(TSE_LOG_INFO, "tracseq-events started",
            (const char *[]){"listen", cfg.listen, "version", TSE_VERSION, "validation_mode",
                             cfg.strict ? "strict" : "lenient", NULL});
    warn_redis_down_at_start(&link, broker);
    /* systemd (Type=notify): ready only now that the port accepts calls. */
    if (tse_notify("READY=1", &err) != TSE_OK)
        tse_log(TSE_LOG_WARN, "cannot notify systemd",
                (const char *[]){"error", err.message, NULL});

    int sig = wait_for_signal(&set, &link);
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
    grpc_shutdown();
    return rc;
}
