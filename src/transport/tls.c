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
#include <errno.h>
#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <grpc/grpc_security.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "obs/log.h"
#include "transport/internal.h"

/* A PEM file larger than this is not a certificate chain or a key. */
#define TLS_FILE_MAX (1 << 20)

struct tse_tls {
    const tse_config *cfg;
    pthread_mutex_t lock;
    grpc_ssl_server_certificate_config *pending; /* for the next handshake */
    atomic_bool has_pending;
};

/* The whole of a PEM file, NUL-terminated; caller frees. */
static char *read_pem(const char *path, const char *key, tse_error *err)
{
    FILE *f = fopen(path, "re");
    char *buf;
    size_t len;

    if (f == NULL) {
        tse_error_set(err, TSE_INVALID, key, "cannot read %s %s: %s", key, path, strerror(errno));
        return NULL;
    }
    if ((buf = malloc(TLS_FILE_MAX + 1)) == NULL) {
        fclose(f);
        tse_error_set(err, TSE_NOMEM, key, "out of memory reading %s", key);
        return NULL;
    }
    len = fread(buf, 1, TLS_FILE_MAX + 1, f);
    buf[len > TLS_FILE_MAX ? TLS_FILE_MAX : len] = '\0';
    if (ferror(f) || len > TLS_FILE_MAX || strstr(buf, "-----BEGIN ") == NULL) {
        tse_error_set(err, TSE_INVALID, key, "%s %s is not a PEM file (of at most %d bytes)", key,
                      path, TLS_FILE_MAX);
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

/* The public key of a certificate or a private key, DER, into out. */
static bool pubkey_der(gnutls_pubkey_t pk, gnutls_datum_t *out)
{
    return gnutls_pubkey_export2(pk, GNUTLS_X509_FMT_DER, out) == 0;
}

/*
 * Whether key is the private key of the first certificate of chain. gRPC
 * would only find out at the next handshake (and then keep the old
 * certificate, logging a terse error): checking here names the files.
 */
static bool key_matches(const char *chain, const char *key)
{
    gnutls_datum_t c = {(unsigned char *)chain, (unsigned)strlen(chain)};
    gnutls_datum_t k = {(unsigned char *)key, (unsigned)strlen(key)};
    gnutls_x509_crt_t crt = NULL;
    gnutls_privkey_t priv = NULL;
    gnutls_pubkey_t from_crt = NULL, from_key = NULL;
    gnutls_datum_t a = {NULL, 0}, b = {NULL, 0};
    bool ok = false;

    if (gnutls_x509_crt_init(&crt) || gnutls_privkey_init(&priv) || gnutls_pubkey_init(&from_crt) ||
        gnutls_pubkey_init(&from_key))
        goto out;
    if (gnutls_x509_crt_import(crt, &c, GNUTLS_X509_FMT_PEM) ||
        gnutls_privkey_import_x509_raw(priv, &k, GNUTLS_X509_FMT_PEM, NULL, 0) ||
        gnutls_pubkey_import_x509(from_crt, crt, 0) ||
        gnutls_pubkey_import_privkey(from_key, priv, 0, 0))
        goto out;
    ok = pubkey_der(from_crt, &a) && pubkey_der(from_key, &b) && a.size == b.size &&
         memcmp(a.data, b.data, a.size) == 0;
out:
    gnutls_free(a.data);
    gnutls_free(b.data);
    gnutls_pubkey_deinit(from_key);
    gnutls_pubkey_deinit(from_crt);
    gnutls_privkey_deinit(priv);
    gnutls_x509_crt_deinit(crt);
    return ok;
}

/* Reads the three files into a new certificate config. */
static grpc_ssl_server_certificate_config *load_config(const tse_config *cfg, tse_error *err)
{
    grpc_ssl_server_certificate_config *config = NULL;
    char *chain = NULL, *key = NULL, *roots = NULL;

    if ((chain = read_pem(cfg->tls_cert, "TLS_CERT", err)) == NULL ||
        (key = read_pem(cfg->tls_key, "TLS_KEY", err)) == NULL)
        goto out;
    if (cfg->tls_client_ca[0] != '\0' &&
        (roots = read_pem(cfg->tls_client_ca, "TLS_CLIENT_CA", err)) == NULL)
        goto out;
    if (!key_matches(chain, key)) {
        tse_error_set(err, TSE_INVALID, "TLS_KEY",
                      "TLS_KEY %s is not the private key of TLS_CERT %s (or either is not valid "
                      "PEM)",
                      cfg->tls_key, cfg->tls_cert);
        goto out;
    }
    grpc_ssl_pem_key_cert_pair pair = {.private_key = key, .cert_chain = chain};
    /* gRPC 1.51 asserts that a fetched config has client roots even when
     * it asks for no client certificate (TLS_CLIENT_AUTH off: then they
     * are never used nor sent): its own chain stands in. */
    config = grpc_ssl_server_certificate_config_create(roots != NULL ? roots : chain, &pair, 1);
    if (config == NULL)
        tse_error_set(err, TSE_INVALID, "TLS_CERT", "gRPC refused TLS_CERT %s", cfg->tls_cert);
out:
    if (key != NULL)
        memset(key, 0, strlen(key)); /* gRPC keeps its own copy */
    free(key);
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
