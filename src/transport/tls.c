/*
 * tls.c - TLS on the gRPC port: the server certificate, its key and the CA
 * of client certificates (TLS_CERT, TLS_KEY, TLS_CLIENT_CA), read from
 * their files at start and again on tse_server_reload (SIGHUP).
 *
 * gRPC asks a certificate config fetcher for news before every handshake;
 * ours answers "unchanged" unless a reload left a new config, which it then
 * hands over once (gRPC owns it from there and builds its handshaker from
 * it). Connections already open keep the certificate they were made with;
 * only new connections see the new one. A file that cannot be read, or a
 * key that does not match its certificate, fails the reload and the old
 * certificate stays in use.
 *
 * Thread-safety: the fetcher runs on gRPC's threads, reloads on the main
 * thread; the pending config is handed over under the mutex.
 */
#include <grpc/grpc_security.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "tls/pem.h"
#include "transport/internal.h"

struct tse_tls {
    const tse_config *cfg;
    pthread_mutex_t lock;
    grpc_ssl_server_certificate_config *pending; /* for the next handshake */
    atomic_bool has_pending;
};

/* Reads the three files into a new certificate config. */
static grpc_ssl_server_certificate_config *load_config(const tse_config *cfg, tse_error *err)
{
    grpc_ssl_server_certificate_config *config = NULL;
    char *chain = NULL, *key = NULL, *roots = NULL;

    if ((chain = tse_pem_read(cfg->tls_cert, "TLS_CERT", err)) == NULL ||
        (key = tse_pem_read(cfg->tls_key, "TLS_KEY", err)) == NULL)
        goto out;
    if (cfg->tls_client_ca[0] != '\0' &&
        (roots = tse_pem_read(cfg->tls_client_ca, "TLS_CLIENT_CA", err)) == NULL)
        goto out;
    /* gRPC would only find a mismatch at the next handshake, and then keep
     * the old certificate with a terse log line: say it here. */
    if (tse_pem_check_pair(chain, key, cfg->tls_cert, cfg->tls_key, "TLS_KEY", err) != TSE_OK)
        goto out;
    grpc_ssl_pem_key_cert_pair pair = {.private_key = key, .cert_chain = chain};
    /* gRPC 1.51 asserts that a fetched config has client roots even when
     * it asks for no client certificate (TLS_CLIENT_AUTH off: then they
     * are never used nor sent): its own chain stands in. */
    config = grpc_ssl_server_certificate_config_create(roots != NULL ? roots : chain, &pair, 1);
    if (config == NULL)
        tse_error_set(err, TSE_INVALID, "TLS_CERT", "gRPC refused TLS_CERT %s", cfg->tls_cert);
out:
    tse_pem_free(key); /* gRPC keeps its own copy */
    free(chain);
    free(roots);
    return config;
}

static grpc_ssl_certificate_config_reload_status fetch(void *arg,
                                                       grpc_ssl_server_certificate_config **out)
{
    tse_tls *t = arg;

    if (!atomic_load_explicit(&t->has_pending, memory_order_acquire))
        return GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED;
    pthread_mutex_lock(&t->lock);
    *out = t->pending;
    t->pending = NULL;
    atomic_store(&t->has_pending, false);
    pthread_mutex_unlock(&t->lock);
    return *out != NULL ? GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW
                        : GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED;
}

/* Leaves config for the next handshake, replacing one not yet taken. */
static void offer(tse_tls *t, grpc_ssl_server_certificate_config *config)
{
    pthread_mutex_lock(&t->lock);
    if (t->pending != NULL)
        grpc_ssl_server_certificate_config_destroy(t->pending);
    t->pending = config;
    atomic_store(&t->has_pending, true);
    pthread_mutex_unlock(&t->lock);
}

tse_status tse_tls_create(const tse_config *cfg, tse_tls **out, tse_error *err)
{
    grpc_ssl_server_certificate_config *config;
    tse_tls *t;

    if ((config = load_config(cfg, err)) == NULL)
        return err != NULL ? err->code : TSE_INVALID;
    if ((t = calloc(1, sizeof(*t))) == NULL) {
        grpc_ssl_server_certificate_config_destroy(config);
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory");
    }
    t->cfg = cfg;
    pthread_mutex_init(&t->lock, NULL);
    offer(t, config); /* gRPC fetches the first one when the port is added */
    *out = t;
    return TSE_OK;
}

grpc_server_credentials *tse_tls_credentials(tse_tls *t)
{
    static const grpc_ssl_client_certificate_request_type request[] = {
        [TSE_TLS_CLIENT_OFF] = GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
        [TSE_TLS_CLIENT_OPTIONAL] = GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY,
        [TSE_TLS_CLIENT_REQUIRE] = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY,
    };
    grpc_ssl_server_credentials_options *o =
        grpc_ssl_server_credentials_create_options_using_config_fetcher(
            request[t->cfg->tls_client_auth], fetch, t);

    /* Takes ownership of the options. */
    return o != NULL ? grpc_ssl_server_credentials_create_with_options(o) : NULL;
}

tse_status tse_tls_reload(tse_tls *t, tse_error *err)
{
    grpc_ssl_server_certificate_config *config = load_config(t->cfg, err);

    if (config == NULL)
        return err != NULL ? err->code : TSE_INVALID;
    offer(t, config);
    return TSE_OK;
}

void tse_tls_destroy(tse_tls *t)
{
    if (t == NULL)
        return;
    if (t->pending != NULL)
        grpc_ssl_server_certificate_config_destroy(t->pending);
    pthread_mutex_destroy(&t->lock);
    free(t);
}
