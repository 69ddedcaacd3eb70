/*
 * config.c - the bridge's settings table; the engine (defaults,
 * environment, flags, validation, --help) is the service's
 * src/config/settings.c, so both processes read "30s" or "1MiB" the same
 * way and report a bad value the same way.
 */
#include "config.h"

#include <stddef.h>
#include <string.h>

#define STR(f) offsetof(tsb_bridge_config, f), sizeof(((tsb_bridge_config *)0)->f)
#define NUM(f) offsetof(tsb_bridge_config, f), 0

static const tse_setting settings[] = {
    {"host", "HOST", TSE_SETTING_STRING, STR(host), 0, 0, "127.0.0.1",
     "address the HTTP server listens on (0.0.0.0: every interface; the service's "
     "AUTH_TOKENS_FILE then decides who may do what, docs/security.md)"},
    {"port", "PORT", TSE_SETTING_INT, NUM(port), 0, 65535, "8087", "HTTP port (0: any free port)"},
    {"event-service-addr", "EVENT_SERVICE_ADDR", TSE_SETTING_STRING, STR(service_addr), 0, 0,
     "127.0.0.1:50051", "the event service's gRPC address, host:port"},
    {"max-body-bytes", "MAX_BODY_BYTES", TSE_SETTING_BYTES, NUM(max_body_bytes), 1024, 64LL << 20,
     "1MiB", "largest request body accepted (413 beyond)"},
    {"max-header-bytes", "MAX_HEADER_BYTES", TSE_SETTING_BYTES, NUM(max_header_bytes), 1024,
     1LL << 20, "8KiB", "largest request line plus headers accepted (431 beyond)"},
    {"max-batch-events", "MAX_BATCH_EVENTS", TSE_SETTING_INT, NUM(max_batch), 1, 4096, "1000",
     "most events one POST /api/v1/events/batch may carry"},
    {"http-threads", "HTTP_THREADS", TSE_SETTING_INT, NUM(threads), 0, 1024, "0",
     "HTTP worker threads (0: one per CPU); they never wait for the event service"},
    {"max-connections", "MAX_CONNECTIONS", TSE_SETTING_INT, NUM(max_connections), 1, 1000000,
     "10000", "concurrent HTTP connections accepted"},
    {"read-timeout", "READ_TIMEOUT", TSE_SETTING_DURATION, NUM(read_timeout_ms), 1000, 3600000,
     "30s", "a connection silent this long (keep-alive idle, or within a request) is closed"},
    {"header-timeout", "HEADER_TIMEOUT", TSE_SETTING_DURATION, NUM(header_timeout_ms), 100, 3600000,
     "10s", "a request's headers must all arrive within this (408 and close beyond; slowloris)"},
    {"body-timeout", "BODY_TIMEOUT", TSE_SETTING_DURATION, NUM(body_timeout_ms), 100, 3600000,
     "60s", "a request's body must all arrive within this after its headers (408 beyond)"},
    {"rpc-timeout", "RPC_TIMEOUT", TSE_SETTING_DURATION, NUM(rpc_timeout_ms), 10, 600000, "10s",
     "deadline of each call to the event service"},
    {"health-timeout", "HEALTH_TIMEOUT", TSE_SETTING_DURATION, NUM(health_timeout_ms), 10, 60000,
     "1s", "deadline of the probes behind GET /health"},
    {"retry-after", "RETRY_AFTER", TSE_SETTING_INT, NUM(retry_after_s), 0, 3600, "1",
     "seconds in the Retry-After header of 503 answers"},
    {"grpc-channels", "GRPC_CHANNELS", TSE_SETTING_INT, NUM(grpc_channels), 1, 64, "2",
     "HTTP/2 connections to the event service: one publish stream each, and as many for the "
     "other calls, used round-robin"},
    {"sse-keepalive", "SSE_KEEPALIVE", TSE_SETTING_DURATION, NUM(sse_keepalive_ms), 100, 3600000,
     "15s", "a comment line goes to idle Server-Sent Events streams this often"},
    {"log-level", "LOG_LEVEL", TSE_SETTING_LEVEL, STR(log_level), 0, 0, "info",
     "debug|info|warn|error"},
    {"log-format", "LOG_FORMAT", TSE_SETTING_FORMAT, NUM(log_json), 0, 0, "json",
     "json (one object per line) or text"},
    {"tls-cert", "TLS_CERT", TSE_SETTING_OPTIONAL, STR(tls_cert), 0, 0, "",
     "PEM certificate chain of HTTPS; with TLS_KEY the port speaks HTTPS only ('': HTTP); "
     "re-read on SIGHUP"},
    {"tls-key", "TLS_KEY", TSE_SETTING_OPTIONAL, STR(tls_key), 0, 0, "",
     "PEM private key of TLS_CERT; re-read on SIGHUP"},
    {"event-service-tls-ca", "EVENT_SERVICE_TLS_CA", TSE_SETTING_OPTIONAL, STR(service_ca), 0, 0,
     "", "PEM CA of the event service's certificate: TLS to the service ('': plaintext)"},
    {"event-service-tls-cert", "EVENT_SERVICE_TLS_CERT", TSE_SETTING_OPTIONAL, STR(service_cert), 0,
     0, "", "PEM client certificate of the bridge, for a service that asks for one (mTLS)"},
    {"event-service-tls-key", "EVENT_SERVICE_TLS_KEY", TSE_SETTING_OPTIONAL, STR(service_key), 0, 0,
     "", "PEM private key of EVENT_SERVICE_TLS_CERT"},
    {"event-service-tls-server-name", "EVENT_SERVICE_TLS_SERVER_NAME", TSE_SETTING_OPTIONAL,
     STR(service_name), 0, 0, "",
     "the name the service's certificate carries when it is not EVENT_SERVICE_ADDR's host"},
};

static const tse_settings bridge_settings = {
    .table = settings,
    .n = sizeof(settings) / sizeof(settings[0]),
    .program = "tracseq-rest-bridge",
    .about = "The TracSeq REST bridge: JSON over HTTP/1.1 on --host:--port, translated to\n"
             "gRPC calls on the event service at --event-service-addr.",
    .config_env = "TRACSEQ_BRIDGE_CONFIG",
    .config_default = TSE_CONFIG_DIR "/rest-bridge.conf",
};

/* The TLS settings make sense together, or the bridge does not start. */
static tse_status check_tls(const tsb_bridge_config *cfg, tse_error *err)
{
    if ((cfg->tls_cert[0] == '\0') != (cfg->tls_key[0] == '\0'))
        return tse_error_set(err, TSE_INVALID, cfg->tls_cert[0] ? "TLS_KEY" : "TLS_CERT",
                             "TLS_CERT (--tls-cert) and TLS_KEY (--tls-key) go together: set both "
                             "for HTTPS, neither for HTTP");
    if ((cfg->service_cert[0] == '\0') != (cfg->service_key[0] == '\0'))
        return tse_error_set(err, TSE_INVALID,
                             cfg->service_cert[0] ? "EVENT_SERVICE_TLS_KEY"
                                                  : "EVENT_SERVICE_TLS_CERT",
                             "EVENT_SERVICE_TLS_CERT and EVENT_SERVICE_TLS_KEY go together");
    if (cfg->service_ca[0] == '\0' &&
        (cfg->service_cert[0] != '\0' || cfg->service_name[0] != '\0'))
        return tse_error_set(err, TSE_INVALID, "EVENT_SERVICE_TLS_CA",
                             "TLS to the event service needs EVENT_SERVICE_TLS_CA, the CA of its "
                             "certificate");
    return TSE_OK;
}

tse_config_outcome tsb_bridge_config_load(tsb_bridge_config *cfg, int argc, char **argv, FILE *out,
                                          tse_error *err)
{
    tse_config_outcome o;

    memset(cfg, 0, sizeof(*cfg));
    o = tse_settings_load(&bridge_settings, cfg, argc, argv, out, err);
    if (o == TSE_CONFIG_RUN && check_tls(cfg, err) != TSE_OK)
        return TSE_CONFIG_ERROR;
    return o;
}
