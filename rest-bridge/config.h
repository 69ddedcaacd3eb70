/*
 * config.h - the REST bridge's settings, from the settings file
 * (TSE_CONFIG_DIR "/rest-bridge.conf" when present, or --config /
 * TRACSEQ_BRIDGE_CONFIG), the environment and the command line (a flag wins
 * over its environment variable, which wins over the file), validated at
 * start with an error naming the bad key. Same conventions as the event
 * service's src/config/config.h.
 *
 * A tsb_bridge_config is filled once at start and read-only afterwards.
 */
#ifndef TSB_BRIDGE_CONFIG_H
#define TSB_BRIDGE_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "common/status.h"
#include "config/config.h"

typedef struct tsb_bridge_config {
    char host[256];            /* HOST: address to listen on */
    int port;                  /* PORT */
    char service_addr[256];    /* EVENT_SERVICE_ADDR: host:port of the gRPC service */
    int64_t max_body_bytes;    /* MAX_BODY_BYTES */
    int64_t max_header_bytes;  /* MAX_HEADER_BYTES: request line and headers */
    int max_batch;             /* MAX_BATCH_EVENTS */
    int threads;               /* HTTP_THREADS (0: one per CPU) */
    int max_connections;       /* MAX_CONNECTIONS */
    int64_t read_timeout_ms;   /* READ_TIMEOUT: silence (idle keep-alive, body) timeout */
    int64_t header_timeout_ms; /* HEADER_TIMEOUT: bound of a request's whole header phase */
    int64_t body_timeout_ms;   /* BODY_TIMEOUT: bound of reading a request's body */
    int64_t rpc_timeout_ms;    /* RPC_TIMEOUT: deadline of each gRPC call */
    int64_t health_timeout_ms; /* HEALTH_TIMEOUT: deadline of /health's probes */
    int retry_after_s;         /* RETRY_AFTER: Retry-After of 503 answers */
    int grpc_channels;         /* GRPC_CHANNELS: HTTP/2 connections to the service */
    int64_t sse_keepalive_ms;  /* SSE_KEEPALIVE: comment on idle event streams this often */
    char log_level[16];        /* LOG_LEVEL */
    bool log_json;             /* LOG_FORMAT json|text */
    char tls_cert[1024];       /* TLS_CERT: HTTPS certificate chain ("": plain HTTP) */
    char tls_key[1024];        /* TLS_KEY */
    char service_ca[1024];     /* EVENT_SERVICE_TLS_CA: TLS to the service ("": plaintext) */
    char service_cert[1024];   /* EVENT_SERVICE_TLS_CERT: the bridge's client certificate */
    char service_key[1024];    /* EVENT_SERVICE_TLS_KEY */
    char service_name[256];    /* EVENT_SERVICE_TLS_SERVER_NAME: name in the service's cert */
} tsb_bridge_config;

/*
 * Fills cfg from defaults, then the environment, then argv ("--key=value" or
 * "--key value"). Writes --help / --version text to out. On
 * TSE_CONFIG_ERROR err names the bad key (its environment variable).
 */
tse_config_outcome tsb_bridge_config_load(tsb_bridge_config *cfg, int argc, char **argv, FILE *out,
                                          tse_error *err);

#endif
