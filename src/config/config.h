/*
 * config.h - the event service's settings, from the settings file
 * (TSE_CONFIG_DIR "/tracseq-events.conf" when present, or --config /
 * TRACSEQ_EVENTS_CONFIG), the environment and the command line (a flag wins
 * over its environment variable, which wins over the file), validated at
 * start with an error naming the bad key.
 *
 * A tse_config is filled once at start and read-only afterwards.
 */
#ifndef TSE_CONFIG_CONFIG_H
#define TSE_CONFIG_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "common/status.h"
#include "config/settings.h"

/* Where the installed programs' settings files live (the Debian package's
 * conffiles). */
#ifndef TSE_CONFIG_DIR
#define TSE_CONFIG_DIR "/etc/tracseq-events"
#endif

typedef struct tse_config {
    char redis_url[512];        /* REDIS_URL */
    char listen[256];           /* GRPC_LISTEN */
    char log_level[16];         /* LOG_LEVEL */
    bool log_json;              /* LOG_FORMAT json|text */
    bool strict;                /* VALIDATION_MODE strict|lenient */
    int64_t dedup_window_ms;    /* DEDUP_WINDOW */
    int64_t retention_ms;       /* RETENTION_AGE (0: no age trimming) */
    int64_t retention_maxlen;   /* RETENTION_MAXLEN (0: none; wins over age) */
    int64_t redis_timeout_ms;   /* REDIS_TIMEOUT */
    int redis_lanes;            /* REDIS_CONNECTIONS */
    int redis_min_replicas;     /* REDIS_MIN_REPLICAS (-1: by the URL) */
    int threads;                /* GRPC_THREADS */
    int64_t max_message_bytes;  /* MAX_MESSAGE_BYTES */
    int64_t shutdown_grace_ms;  /* SHUTDOWN_GRACE */
    int stream_window;          /* PUBLISH_STREAM_WINDOW */
    int64_t delivery_poll_ms;   /* DELIVERY_POLL */
    int64_t consumer_reap_ms;   /* CONSUMER_REAP_IDLE */
    int max_patterns;           /* MAX_SUBSCRIPTION_PATTERNS */
    int max_subscribers;        /* MAX_SUBSCRIBER_STREAMS */
    int max_ack_ids;            /* MAX_ACK_IDS */
    char auth_tokens_file[512]; /* AUTH_TOKENS_FILE ("": authentication off) */
    bool allow_open_remote;     /* ALLOW_UNAUTHENTICATED_REMOTE */
    char tls_cert[1024];        /* TLS_CERT: PEM chain; "" with TLS_KEY "": plaintext */
    char tls_key[1024];         /* TLS_KEY */
    char tls_client_ca[1024];   /* TLS_CLIENT_CA: PEM roots of client certificates */
    int tls_client_auth;        /* TLS_CLIENT_AUTH: a tse_tls_client_auth */
} tse_config;

/* TLS_CLIENT_AUTH: whether clients must present a certificate signed by
 * TLS_CLIENT_CA (mutual TLS). */
typedef enum tse_tls_client_auth {
    TSE_TLS_CLIENT_OFF,      /* not asked for */
    TSE_TLS_CLIENT_OPTIONAL, /* asked for; verified when presented */
    TSE_TLS_CLIENT_REQUIRE   /* a handshake without a valid one fails */
} tse_tls_client_auth;

/*
 * Fills cfg from defaults, then the environment (getenv), then argv
 * ("--key=value" or "--key value"). Writes --help / --version text to out.
 */
tse_config_outcome tse_config_load(tse_config *cfg, int argc, char **argv, FILE *out,
                                   tse_error *err);

/* Prints the settings table (for --help and the README). */
void tse_config_print_help(FILE *out);

#endif
