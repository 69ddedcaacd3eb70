/*
 * main.c - the tracseq-rest-bridge process: settings, the C SDK's client of
 * the event service (publishers, asynchronous calls: calls.h) and event
 * streams (sse.h), and the HTTP server; waits for SIGINT or SIGTERM, then
 * stops accepting, ends streams and long-polls, lets the other requests in
 * progress finish and exits 0.
 *
 * Signals are blocked before any thread starts and taken with sigwait here,
 * so no worker thread is ever interrupted by them. Stop order matters: the
 * HTTP server first (no new calls; no connection left suspended), then the
 * publish and event streams are cancelled, the unary calls end, and the
 * SDK's client is destroyed (every callback ran) before the objects its
 * callbacks use are freed.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bridge.h"
#include "common/abseil.h"
#include "header_timer.h"
#include "https.h"
#include "obs/log.h"
#include "obs/notify.h"
#include "sse.h"
#include "tls/pem.h"

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

/* The SDK's client of the event service: the bridge's reconnect backoff
 * (back within about a second of a service restart). */
static tse_status connect_sdk(tsb_bridge *b, tse_error *err)
{
    const tsb_bridge_config *cfg = b->cfg;
    tse_client_options o = {
        .target = cfg->service_addr,
        .source_service = "tracseq-rest-bridge",
        .timeout_ms = (int)cfg->rpc_timeout_ms,
        .reconnect_initial_ms = 100,
        .reconnect_max_ms = 1000,
        .channels = cfg->grpc_channels,
        .tls_server_name = cfg->service_name[0] ? cfg->service_name : NULL,
    };
    char *ca = NULL, *cert = NULL, *key = NULL;
    tse_client_error cerr;
    tse_status st = TSE_OK;

    /* TLS to the service: the files are read once, here (the SDK copies
     * them); a new CA or client certificate takes a restart. */
    if (cfg->service_ca[0] != '\0' && (o.tls_root_certs_pem = ca = tse_pem_read(
                                           cfg->service_ca, "EVENT_SERVICE_TLS_CA", err)) == NULL)
        return TSE_INVALID;
    if (cfg->service_cert[0] != '\0' &&
        ((o.tls_cert_pem = cert = tse_pem_read(cfg->service_cert, "EVENT_SERVICE_TLS_CERT", err)) ==
             NULL ||
         (o.tls_key_pem = key = tse_pem_read(cfg->service_key, "EVENT_SERVICE_TLS_KEY", err)) ==
             NULL ||
         tse_pem_check_pair(cert, key, cfg->service_cert, cfg->service_key, "EVENT_SERVICE_TLS_KEY",
                            err) != TSE_OK))
        st = TSE_INVALID;
    if (st == TSE_OK && tse_client_connect(&o, &b->client, &cerr) != TSE_CLIENT_OK)
        st = tse_error_set(err, TSE_INVALID, "EVENT_SERVICE_ADDR", "%s", cerr.message);
    free(ca);
    free(cert);
    tse_pem_free(key);
    return st == TSE_OK ? tsb_publishers_start(b, err) : st;
}

/* The gRPC side: client, publish streams, event-stream hub, cache. */
static tse_status make_clients(tsb_bridge *b, tse_error *err)
{
    const tsb_bridge_config *cfg = b->cfg;

    if (connect_sdk(b, err) != TSE_OK)
        return err->code;
    if (tsb_calls_create(b->client, &b->calls, err) != TSE_OK)
        return TSE_UNAVAILABLE;
    b->sse = tsb_sse_hub_create(b, (int)cfg->sse_keepalive_ms);
    b->subcache = tsb_subcache_create();
    if (b->sse == NULL || b->subcache == NULL)
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory");
    return TSE_OK;
}

/* SIGHUP: the HTTPS certificate is re-read; a failure keeps the one in
 * use and says why. */
static void reload(tsb_bridge *b)
{
    tse_error err;

    tse_error_clear(&err);
    if (b->https == NULL)
        return;
    if (tsb_https_reload(b->https, &err) != TSE_OK)
        tse_log(TSE_LOG_ERROR, "SIGHUP: reload failed, keeping what was in use",
                (const char *[]){"error", err.message, "key", err.field, NULL});
    else
        tse_log(TSE_LOG_INFO, "tls certificate reloaded: new connections use it",
                (const char *[]){"cert", b->cfg->tls_cert, NULL});
}

int main(int argc, char **argv)
{
    tsb_bridge_config cfg;
    tsb_bridge bridge;
    tse_log_level level = TSE_LOG_INFO;
    tse_error err;
    sigset_t set;
    char port[16];
    int rc = 0;

    tse_error_clear(&err);
    switch (tsb_bridge_config_load(&cfg, argc, argv, stdout, &err)) {
    case TSE_CONFIG_HELP: return 0;
    case TSE_CONFIG_ERROR: return fail(&err);
    case TSE_CONFIG_RUN: break;
    }
    tse_log_level_parse(cfg.log_level, &level);
    tse_log_setup(level, cfg.log_json);

    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* Before the SDK's grpc_init: Debian's Abseil checks lock order in every
     * gRPC lock, 10 % of a single publish's instructions (common/abseil.h). */
    tse_abseil_lock_checks_off();
    memset(&bridge, 0, sizeof(bridge));
    bridge.cfg = &cfg;
    bridge.started_us = tse_clock_us();
    bridge.metrics = tsb_metrics_create(tsb_route_name, tsb_route_count());
    if (bridge.metrics == NULL) {
        rc = fail(&(tse_error){.code = TSE_NOMEM, .message = "out of memory"});
        goto out;
    }
    raise_fd_limit();
    if (make_clients(&bridge, &err) != TSE_OK || tsb_bridge_start(&bridge, &err) != TSE_OK) {
        rc = fail(&err);
        goto out;
    }
    snprintf(port, sizeof(port), "%d", cfg.port);
    tse_log(TSE_LOG_INFO, "tracseq-rest-bridge started",
            (const char *[]){"host", cfg.host, "port", port, "event_service", cfg.service_addr,
                             "version", TSE_VERSION, "https", cfg.tls_cert[0] ? "on" : "off",
                             "event_service_tls", cfg.service_ca[0] ? "on" : "off", NULL});
    /* systemd (Type=notify): ready only now that the HTTP port accepts. */
    if (tse_notify("READY=1", &err) != TSE_OK)
        tse_log(TSE_LOG_WARN, "cannot notify systemd",
                (const char *[]){"error", err.message, NULL});

    int sig;
    while ((sig = wait_for_signal(&set)) == SIGHUP)
        reload(&bridge);
    tse_notify("STOPPING=1", NULL);
    tse_logf(TSE_LOG_INFO, "%s received: shutting down", strsignal(sig));
    if (tsb_bridge_stop(&bridge) != TSE_OK)
        _exit(1); /* the HTTP threads still run: nothing may be freed */
    tse_logf(TSE_LOG_INFO, "stopped");
out:
    tsb_publishers_cancel(&bridge);
    tsb_sse_hub_cancel(bridge.sse);
    tsb_calls_destroy(bridge.calls); /* its ticks end: the header timer is free */
    tsb_header_timer_destroy(bridge.header_timer);
    tsb_publishers_destroy(&bridge);
    tse_client_destroy(bridge.client); /* the streams' last callbacks ran */
    tsb_sse_hub_destroy(bridge.sse);
    tsb_subcache_destroy(bridge.subcache);
    tsb_metrics_destroy(bridge.metrics);
    tsb_https_destroy(bridge.https); /* MHD is stopped */
    return rc;
}
