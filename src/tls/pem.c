/*
 * pem.c - PEM files and the key-certificate check; see pem.h.
 */
#include "tls/pem.h"

#include <errno.h>
#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *tse_pem_read(const char *path, const char *key, tse_error *err)
{
    FILE *f = fopen(path, "re");
    char *buf;
    size_t len;

    if (f == NULL) {
        tse_error_set(err, TSE_INVALID, key, "cannot read %s %s: %s", key, path, strerror(errno));
        return NULL;
    }
    if ((buf = malloc(TSE_PEM_FILE_MAX + 1)) == NULL) {
        fclose(f);
        tse_error_set(err, TSE_NOMEM, key, "out of memory reading %s", key);
        return NULL;
    }
    len = fread(buf, 1, TSE_PEM_FILE_MAX + 1, f);
    buf[len > TSE_PEM_FILE_MAX ? TSE_PEM_FILE_MAX : len] = '\0';
    if (ferror(f) || len > TSE_PEM_FILE_MAX || strstr(buf, "-----BEGIN ") == NULL) {
        tse_error_set(err, TSE_INVALID, key, "%s %s is not a PEM file (of at most %d bytes)", key,
                      path, TSE_PEM_FILE_MAX);
        tse_pem_free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

void tse_pem_free(char *pem)
{
    if (pem == NULL)
        return;
    explicit_bzero(pem, strlen(pem));
    free(pem);
}

/* The public key, DER, into out (gnutls_free). */
static bool pubkey_der(gnutls_pubkey_t pk, gnutls_datum_t *out)
{
    return gnutls_pubkey_export2(pk, GNUTLS_X509_FMT_DER, out) == 0;
}

/* Whether key is the private key of the first certificate of chain. */
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

tse_status tse_pem_check_pair(const char *chain, const char *key, const char *cert_path,
                              const char *key_path, const char *key_setting, tse_error *err)
{
    if (key_matches(chain, key))
        return TSE_OK;
    return tse_error_set(err, TSE_INVALID, key_setting,
                         "%s %s is not the private key of the certificate %s (or either is not "
                         "valid PEM)",
                         key_setting, key_path, cert_path);
}
