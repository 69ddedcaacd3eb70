/*
 * main.c - the tracseq-rest-bridge process: settings, a gRPC client of the
 * event service (rpc.h) with its publish streams (publisher.h) and event
 * streams (sse.h), and the HTTP server; waits for SIGINT or SIGTERM, then
 * stops accepting, ends streams and long-polls, lets the other requests in
 * progress finish and exits 0.
 *
 * Signals are blocked before any thread starts and taken with sigwait here,
 * so no worker thread is ever interrupted by them. Stop order matters: the
 * HTTP server first (no new calls; no connection left suspended), then the
 * publish streams are cancelled, then the gRPC queue drains (every call
 * ended), and only then are the objects its callbacks use freed.
 */
#include <grpc/grpc.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "bridge.h"
#include "obs/log.h"
#include "publisher.h"
#include "sse.h"

static int fail(const tse_error *err)
{
    tse_log(TSE_LOG_ERROR, "cannot start",
            (const char *[]){"error", err->message, "key", err->field, NULL});
    fprintf(stderr, "tracseq-rest-bridge: %s\n", err->message);
    return 2;
}

static int wait_for_signal(const sigset_t *set)
{
    int sig = 0;

    while (sigwait(set, &sig) != 0)
        ;
    return sig;
}

/* Every connection is a descriptor: allow as many as the hard limit. */
static void raise_fd_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* The gRPC side: client, publish streams, event-stream hub, cache. */
static tse_status make_clients(tse_bridge *b, tse_error *err)
{
    const tse_bridge_config *cfg = b->cfg;

    if (tse_rpc_create(cfg->service_addr, cfg->grpc_channels, &b->rpc, err) != TSE_OK)
        return TSE_UNAVAILABLE;
    b->publisher = tse_publisher_create(b->rpc, cfg->grpc_channels, (int)cfg->rpc_timeout_ms);
    b->sse = tse_sse_hub_create(b, (int)cfg->sse_keepalive_ms);
    b->subcache = tse_subcache_create();
    if (b->publisher == NULL || b->sse == NULL || b->subcache == NULL)
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory");
    return TSE_OK;
}

int main(int argc, char **argv)
{
    tse_bridge_config cfg;
    tse_bridge bridge;
    tse_log_level level = TSE_LOG_INFO;
    tse_error err;
    sigset_t set;
    char port[16];
    int rc = 0;

    tse_error_clear(&err);
    switch (tse_bridge_config_load(&cfg, argc, argv, stdout, &err)) {
    case TSE_CONFIG_HELP: return 0;
    case TSE_CONFIG_ERROR: return fail(&err);
    case TSE_CONFIG_RUN: break;
    }
    tse_log_level_parse(cfg.log_level, &level);
    tse_log_setup(level, cfg.log_json);

    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    grpc_init();

    memset(&bridge, 0, sizeof(bridge));
    bridge.cfg = &cfg;
    bridge.started_us = tse_now_us();
    bridge.metrics = tse_metrics_create(tse_route_names(), tse_route_count());
    if (bridge.metrics == NULL) {
        rc = fail(&(tse_error){.code = TSE_NOMEM, .message = "out of memory"});
        goto out;
    }
    raise_fd_limit();
    if (make_clients(&bridge, &err) != TSE_OK || tse_bridge_start(&bridge, &err) != TSE_OK) {
        rc = fail(&err);
        goto out;
    }
    snprintf(port, sizeof(port), "%d", cfg.port);
    tse_log(TSE_LOG_INFO, "tracseq-rest-bridge started",
            (const char *[]){"host", cfg.host, "port", port, "event_service", cfg.service_addr,
                             "version", TSE_VERSION, NULL});

    int sig = wait_for_signal(&set);
    tse_logf(TSE_LOG_INFO, "%s received: shutting down", strsignal(sig));
    tse_bridge_stop(&bridge);
    tse_logf(TSE_LOG_INFO, "stopped");
out:
    tse_publisher_cancel(bridge.publisher);
    tse_sse_hub_cancel(bridge.sse);
    tse_rpc_destroy(bridge.rpc);
    tse_publisher_destroy(bridge.publisher);
    tse_sse_hub_destroy(bridge.sse);
    tse_subcache_destroy(bridge.subcache);
    tse_metrics_destroy(bridge.metrics);
    grpc_shutdown();
    return rc;
}
