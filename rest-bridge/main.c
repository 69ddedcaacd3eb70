/*
 * main.c - the tracseq-rest-bridge process: settings, a gRPC client of the
 * event service and the HTTP server; waits for SIGINT or SIGTERM, then stops
 * accepting, lets requests in progress finish and exits 0.
 *
 * Signals are blocked before any thread starts and taken with sigwait here,
 * so no worker thread is ever interrupted by them.
 */
#include <grpc/grpc.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "bridge.h"
#include "obs/log.h"

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
    if (tse_rpc_create(cfg.service_addr, cfg.grpc_channels, &bridge.rpc, &err) != TSE_OK ||
        tse_bridge_start(&bridge, &err) != TSE_OK) {
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
    tse_rpc_destroy(bridge.rpc);
    tse_metrics_destroy(bridge.metrics);
    grpc_shutdown();
    return rc;
}
