/*
 * config.c - the event service's settings table; the engine (defaults,
 * environment, flags, validation, --help) is settings.c.
 */
#include "config/config.h"

#include <stddef.h>
#include <string.h>

#include "domain/limits.h"

#define STR(f) offsetof(tse_config, f), sizeof(((tse_config *)0)->f)
#define NUM(f) offsetof(tse_config, f), 0

static const tse_setting settings[] = {
    {"redis-url", "REDIS_URL", TSE_SETTING_STRING, STR(redis_url), 0, 0, "redis://127.0.0.1:6379",
     "Redis to store events in: redis://[[user]:password@]host[:port][/db], or a Redis Cluster: "
     "redis+cluster://[[user]:password@]host[:port][,host[:port]...] (seed nodes)"},
    {"listen", "GRPC_LISTEN", TSE_SETTING_STRING, STR(listen), 0, 0, "127.0.0.1:50051",
     "gRPC listen address, host:port (beyond loopback only with AUTH_TOKENS_FILE, or with "
     "ALLOW_UNAUTHENTICATED_REMOTE=true)"},
    {"log-level", "LOG_LEVEL", TSE_SETTING_LEVEL, STR(log_level), 0, 0, "info",
     "debug|info|warn|error"},
    {"log-format", "LOG_FORMAT", TSE_SETTING_FORMAT, NUM(log_json), 0, 0, "json",
     "json (one object per line) or text"},
    {"validation-mode", "VALIDATION_MODE", TSE_SETTING_MODE, NUM(strict), 0, 0, "lenient",
     "lenient: store misfit catalog payloads as generic data, flagged; strict: reject them"},
    {"dedup-window", "DEDUP_WINDOW", TSE_SETTING_DURATION, NUM(dedup_window_ms), 1, 86400000LL * 7,
     "2m", "how long a client-set event id is remembered for idempotent publish"},
    {"retention-age", "RETENTION_AGE", TSE_SETTING_DURATION, NUM(retention_ms), 0,
     86400000LL * 3650, "7d", "trim stream entries older than this (0: keep forever)"},
    {"retention-maxlen", "RETENTION_MAXLEN", TSE_SETTING_INT, NUM(retention_maxlen), 0, INT64_MAX,
     "0", "keep about this many entries per stream instead of trimming by age (0: off)"},
    {"redis-timeout", "REDIS_TIMEOUT", TSE_SETTING_DURATION, NUM(redis_timeout_ms), 10, 60000, "2s",
     "bound on connecting to Redis and on every Redis reply"},
    {"redis-connections", "REDIS_CONNECTIONS", TSE_SETTING_INT, NUM(redis_lanes), 1, 16, "2",
     "Redis writer connections (one thread each)"},
    {"redis-min-replicas", "REDIS_MIN_REPLICAS", TSE_SETTING_INT, NUM(redis_min_replicas), -1, 16,
     "-1",
     "on a Redis Cluster, a publish is answered OK once this many replicas of its master have it "
     "(WAIT; capped at the replicas a master has; 0: off, OK once the master has it); -1: 1 on "
     "redis+cluster://, 0 on a single Redis, where only 0 is accepted"},
    {"threads", "GRPC_THREADS", TSE_SETTING_INT, NUM(threads), 1, 64, "2",
     "gRPC completion-queue threads"},
    {"max-message-bytes", "MAX_MESSAGE_BYTES", TSE_SETTING_BYTES, NUM(max_message_bytes), 1024,
     64LL << 20, "4MiB", "largest request message accepted"},
    {"shutdown-grace", "SHUTDOWN_GRACE", TSE_SETTING_DURATION, NUM(shutdown_grace_ms), 0, 600000,
     "10s",
     "on SIGTERM/SIGINT, how long in-flight calls may finish before they are cancelled (the "
     "bound on the exit, whatever clients do)"},
    {"publish-stream-window", "PUBLISH_STREAM_WINDOW", TSE_SETTING_INT, NUM(stream_window), 1,
     65536, "4096", "unanswered events one PublishStream may have in flight"},
    {"delivery-poll", "DELIVERY_POLL", TSE_SETTING_DURATION, NUM(delivery_poll_ms), 5, 10000,
     "100ms",
     "how often idle subscribers look for events published by other processes (events "
     "published through this process wake them at once)"},
    {"consumer-reap-idle", "CONSUMER_REAP_IDLE", TSE_SETTING_DURATION, NUM(consumer_reap_ms), 0,
     86400000LL * 30, "10m",
     "delete subscription consumers idle this long that hold no pending event (0: never)"},
    /* Limits a client cannot exceed: refused naming the setting, within the
     * domain's hard caps. */
    {"max-subscription-patterns", "MAX_SUBSCRIPTION_PATTERNS", TSE_SETTING_INT, NUM(max_patterns),
     1, TSE_SUBSCRIPTION_PATTERNS_MAX, "32",
     "event type patterns a subscription may have when it is created"},
    {"max-subscriber-streams", "MAX_SUBSCRIBER_STREAMS", TSE_SETTING_INT, NUM(max_subscribers), 1,
     100000, "1000", "Subscribe streams open at once (more are refused RESOURCE_EXHAUSTED)"},
    {"max-ack-ids", "MAX_ACK_IDS", TSE_SETTING_INT, NUM(max_ack_ids), TSE_PULL_MAX_EVENTS, 100000,
     "1000", "ack ids in one Acknowledge, Nack or Subscribe message (at least a full pull's 1000)"},
    {"auth-tokens-file", "AUTH_TOKENS_FILE", TSE_SETTING_OPTIONAL, STR(auth_tokens_file), 0, 0, "",
     "identities and the SHA-256 of their tokens (docs/security.md); reloaded on SIGHUP. Empty: "
     "no authentication, every caller may do anything"},
    {"allow-unauthenticated-remote", "ALLOW_UNAUTHENTICATED_REMOTE", TSE_SETTING_BOOL,
     NUM(allow_open_remote), 0, 0, "false",
     "true: listen beyond loopback without AUTH_TOKENS_FILE (anyone who reaches the port may "
     "publish, read and delete anything; warned at every start)"},
    /* TLS on the gRPC port: the files are read at start and again on
     * SIGHUP (transport/tls.c). */
    {"tls-cert", "TLS_CERT", TSE_SETTING_OPTIONAL, STR(tls_cert), 0, 0, "",
     "PEM certificate chain of the gRPC port; with TLS_KEY turns TLS on ('': plaintext); "
     "re-read on SIGHUP"},
    {"tls-key", "TLS_KEY", TSE_SETTING_OPTIONAL, STR(tls_key), 0, 0, "",
     "PEM private key of TLS_CERT; re-read on SIGHUP"},
    {"tls-client-ca", "TLS_CLIENT_CA", TSE_SETTING_OPTIONAL, STR(tls_client_ca), 0, 0, "",
     "PEM CA certificates that sign client certificates (mutual TLS); re-read on SIGHUP"},
    {"tls-client-auth", "TLS_CLIENT_AUTH", TSE_SETTING_CHOICE, NUM(tls_client_auth), 0, 0,
     "off|optional|require",
     "client certificates (mutual TLS): off, optional (verified when presented) or require "
     "(needs TLS_CLIENT_CA)"},
};

static const tse_settings service_settings = {
    .table = settings,
    .n = sizeof(settings) / sizeof(settings[0]),
    .program = "tracseq-events",
    .about = "The TracSeq event service: gRPC on --listen, events in Redis Streams.",
    .config_env = "TRACSEQ_EVENTS_CONFIG",
    .config_default = TSE_CONFIG_DIR "/tracseq-events.conf",
};

/* The TLS settings make sense together, or the service does not start. */
static tse_status check_tls(const tse_config *cfg, tse_error *err)
{
    if ((cfg->tls_cert[0] == '\0') != (cfg->tls_key[0] == '\0'))
        return tse_error_set(err, TSE_INVALID, cfg->tls_cert[0] ? "TLS_KEY" : "TLS_CERT",
                             "TLS_CERT (--tls-cert) and TLS_KEY (--tls-key) go together: set both "
                             "for TLS, neither for plaintext");
    if (cfg->tls_client_auth != TSE_TLS_CLIENT_OFF && cfg->tls_cert[0] == '\0')
        return tse_error_set(err, TSE_INVALID, "TLS_CLIENT_AUTH",
                             "TLS_CLIENT_AUTH (--tls-client-auth) needs TLS: set TLS_CERT and "
                             "TLS_KEY");
    if (cfg->tls_client_auth != TSE_TLS_CLIENT_OFF && cfg->tls_client_ca[0] == '\0')
        return tse_error_set(err, TSE_INVALID, "TLS_CLIENT_CA",
                             "TLS_CLIENT_AUTH (--tls-client-auth) needs TLS_CLIENT_CA "
                             "(--tls-client-ca), the CA that signs client certificates");
    if (cfg->tls_client_auth == TSE_TLS_CLIENT_OFF && cfg->tls_client_ca[0] != '\0')
        return tse_error_set(err, TSE_INVALID, "TLS_CLIENT_AUTH",
                             "TLS_CLIENT_CA (--tls-client-ca) is set but TLS_CLIENT_AUTH "
                             "(--tls-client-auth) is off: say optional or require");
    return TSE_OK;
}

tse_config_outcome tse_config_load(tse_config *cfg, int argc, char **argv, FILE *out,
                                   tse_error *err)
{
    tse_config_outcome o;

    memset(cfg, 0, sizeof(*cfg));
    o = tse_settings_load(&service_settings, cfg, argc, argv, out, err);
    if (o == TSE_CONFIG_RUN && check_tls(cfg, err) != TSE_OK)
        return TSE_CONFIG_ERROR;
    return o;
}

void tse_config_print_help(FILE *out)
{
    tse_settings_print_help(&service_settings, out);
}
