/*
 * https.c - the HTTPS certificate of the bridge, reloadable; see https.h.
 */
#include "https.h"

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "tls/pem.h"

/* Certificates in one chain, at most. */
#define CHAIN_MAX 8

/* A certificate chain and its key, as GnuTLS hands them out. */
typedef struct cert_set {
    gnutls_pcert_st pcerts[CHAIN_MAX];
    unsigned n;
    gnutls_privkey_t key;
    struct cert_set *older; /* replaced ones, kept until destroy */
} cert_set;

struct tsb_https {
    const tsb_bridge_config *cfg;
    _Atomic(cert_set *) current;
};

/* The process's certificate: GnuTLS's callback has no closure. */
static _Atomic(tsb_https *) serving;

static void cert_set_free(cert_set *c)
{
    while (c != NULL) {
        cert_set *older = c->older;
        for (unsigned i = 0; i < c->n; i++)
            gnutls_pcert_deinit(&c->pcerts[i]);
        if (c->key != NULL)
            gnutls_privkey_deinit(c->key);
        free(c);
        c = older;
    }
}

/* The chain and key texts into a new set; NULL when GnuTLS refuses them. */
static cert_set *cert_set_import(const char *chain, const char *key)
{
    cert_set *c = calloc(1, sizeof(*c));
    gnutls_datum_t cd = {(unsigned char *)chain, (unsigned)strlen(chain)};
    gnutls_datum_t kd = {(unsigned char *)key, (unsigned)strlen(key)};
    unsigned n = CHAIN_MAX;

    if (c == NULL)
        return NULL;
    if (gnutls_pcert_list_import_x509_raw(c->pcerts, &n, &cd, GNUTLS_X509_FMT_PEM, 0) < 0) {
        free(c);
        return NULL;
    }
    c->n = n;
    if (gnutls_privkey_init(&c->key) < 0 ||
        gnutls_privkey_import_x509_raw(c->key, &kd, GNUTLS_X509_FMT_PEM, NULL, 0) < 0) {
        cert_set_free(c);
        return NULL;
    }
    return c;
}

static cert_set *load(const tsb_bridge_config *cfg, tse_error *err)
{
    char *chain = NULL, *key = NULL;
    cert_set *c = NULL;

    if ((chain = tse_pem_read(cfg->tls_cert, "TLS_CERT", err)) == NULL ||
        (key = tse_pem_read(cfg->tls_key, "TLS_KEY", err)) == NULL ||
        tse_pem_check_pair(chain, key, cfg->tls_cert, cfg->tls_key, "TLS_KEY", err) != TSE_OK)
        goto out;
    if ((c = cert_set_import(chain, key)) == NULL)
        tse_error_set(err, TSE_INVALID, "TLS_CERT",
                      "GnuTLS refused TLS_CERT %s (more than %d certificates, or not X.509)",
                      cfg->tls_cert, CHAIN_MAX);
out:
    free(chain);
    tse_pem_free(key);
    return c;
}

/* gnutls_certificate_retrieve_function2: before each handshake. */
static int retrieve(gnutls_session_t session, const gnutls_datum_t *req_ca_dn, int nreqs,
                    const gnutls_pk_algorithm_t *algos, int nalgos, gnutls_pcert_st **pcert,
                    unsigned int *pcert_length, gnutls_privkey_t *key)
{
    tsb_https *h = atomic_load(&serving);
    cert_set *c = h != NULL ? atomic_load(&h->current) : NULL;

    (void)session, (void)req_ca_dn, (void)nreqs, (void)algos, (void)nalgos;
    if (c == NULL)
        return -1;
    *pcert = c->pcerts;
    *pcert_length = c->n;
    *key = c->key;
    return 0;
}

void *tsb_https_callback(void)
{
    return (void *)retrieve;
}

tse_status tsb_https_create(const tsb_bridge_config *cfg, tsb_https **out, tse_error *err)
{
    tsb_https *h = calloc(1, sizeof(*h));
    cert_set *c;

    if (h == NULL)
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory");
    h->cfg = cfg;
    if ((c = load(cfg, err)) == NULL) {
        free(h);
        return err != NULL ? err->code : TSE_INVALID;
    }
    atomic_store(&h->current, c);
    atomic_store(&serving, h);
    *out = h;
    return TSE_OK;
}

tse_status tsb_https_reload(tsb_https *h, tse_error *err)
{
    cert_set *c = load(h->cfg, err);

    if (c == NULL)
        return err != NULL ? err->code : TSE_INVALID;
    c->older = atomic_load(&h->current); /* reloads come from one thread */
    atomic_store(&h->current, c);
    return TSE_OK;
}

void tsb_https_destroy(tsb_https *h)
{
    if (h == NULL)
        return;
    tsb_https *self = h;
    atomic_compare_exchange_strong(&serving, &self, NULL);
    cert_set_free(atomic_load(&h->current));
    free(h);
}
